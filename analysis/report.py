"""``vat-study report``: every artifact a study's data allows, into results/<study>/.

Figures as PNG and PDF, tables as Markdown and CSV, and report.md showing them with a few lines
on what was run. An artifact whose data is missing is skipped with a one-line reason.

The report owns only what it writes: ``MANIFEST`` beside report.md lists those files, and a
rerun removes the ones an earlier report wrote that this one does not (a figure the grown study
no longer allows, a comparison renamed), so the folder never shows a stale artifact beside fresh
ones. Anything else in the folder (the hand-written notes, a COMMAND.txt, the trials' logs) is
never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import (choices, compare, curves, eps_alpha, examples, grad_variance, k_ablation, learning_curves, paper,
               sequential, tables)
from .data import Skip, StudyData, load


def _md_table(df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
    """Markdown table; columns named in ``pct`` (error rates) shown in percent."""
    shown = df.copy()
    for c in shown.columns:
        if c in pct or any(c.startswith(p + "_") and c.endswith(("_mean", "_sd", "_ci")) for p in pct):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    head = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, sep, *body])


class Report:
    def __init__(self, data: StudyData, out: Path) -> None:
        self.data, self.out = data, out
        self.sections: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.written: list[Path] = []

    def table(self, name: str, df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
        csv = self.out / f"{name}.csv"
        df.to_csv(csv, index=False)
        md = _md_table(df, pct)
        (self.out / f"{name}.md").write_text(md + "\n")
        self.written += [csv, self.out / f"{name}.md"]
        return md

    def figure(self, paths: list[Path]) -> str:
        self.written += paths
        png = paths[0].name
        return f"![{png}]({png})  ([PDF]({paths[1].name}))"

    def artifact(self, title: str, build: Callable[[], str]) -> None:
        if self.data.complete.empty:
            self.skipped.append((title, "no complete trials yet"))
            return
        try:
            body = build()
        except Skip as e:
            self.skipped.append((title, str(e)))
            return
        except Exception as e:  # noqa: BLE001  a report never crashes on one artifact
            self.skipped.append((title, f"could not be computed ({type(e).__name__}: {e})"))
            return
        self.sections.append(f"## {title}\n\n{body}\n")


ARTIFACTS: list[tuple[str, Callable[[Report], str]]] = [
    ("Tables 1/3: methods", tables.methods_section),
    ("Table 3 beside the paper (semi-supervised MNIST)", tables.table3_section),
    ("Against the paper", paper.section),
    ("Fig. 3: effect of eps and alpha", eps_alpha.section),
    ("Fig. 4 and Table 6: number of power iterations K", k_ablation.section),
    ("Fig. 7: gradient variance, K = 0 vs K = 1", grad_variance.section),
    ("Fig. 2: error and R_vadv during training", curves.section),
    ("Learning curves: test error during training", learning_curves.section),
    ("Method comparison with seeded repeats", compare.section),
    ("Sequential comparisons: seeds added until decided", sequential.section),
    ("xi and the power method", tables.xi_section),
    ("Implementation choices, one at a time", choices.section),
    ("Fig. 1: prediction and LDS on 2-D data", examples.fig1_section),
    ("Fig. 5: virtual adversarial examples", examples.fig5_section),
    ("Fig. 6: misidentification on virtual adversarial examples", examples.fig6_section),
]
"""Every artifact a report may hold, in order: (title, section(report) -> Markdown). Each
section raises ``Skip`` with a one-line reason when the study lacks its data. A new figure is one
module with a ``section`` function and one line here."""


def _shown_url(url: str) -> str:
    """A SQLite URL under the current folder as a relative one (a committed report names no
    absolute path of the machine that wrote it); other URLs unchanged."""
    if url.startswith("sqlite:////"):
        path = Path(url.removeprefix("sqlite:///"))
        try:
            return "sqlite:///" + str(path.relative_to(Path.cwd()))
        except ValueError:
            return url
    return url


PROVENANCE_KEYS = ("vat-study", "git_commit", "git_dirty", "argv", "overrides", "cpu", "platform", "gpu", "cuda",
                   "cudnn", "torch_threads", "precision")


def provenance_lines(versions: dict) -> list[str]:
    """The report header's provenance of the study's newest trial (``vat_study.provenance``):
    code, command, machine and library versions; a store written before provenance was recorded
    shows what it has."""
    v = dict(versions or {})
    if not v:
        return ["- provenance: none recorded"]
    code = f"vat-study {v.get('vat-study', '?')}"
    if v.get("git_commit"):
        code += f" (commit {str(v['git_commit'])[:12]}" + (", with uncommitted changes)" if v.get("git_dirty")
                                                           else ", clean)")
    lines = [f"- code: {code}"]
    if v.get("argv") is not None:
        lines.append("- command: `vat-study " + " ".join(str(a) for a in v["argv"]) + "`"
                     + (f"; overrides {v['overrides']}" if v.get("overrides") else ""))
    machine = [f"CPU {v['cpu']}" if v.get("cpu") else None,
               f"GPU {v['gpu']}" if v.get("gpu") else ("no GPU" if "gpu" in v else None),
               f"CUDA {v['cuda']}" if v.get("cuda") else None, f"cuDNN {v['cudnn']}" if v.get("cudnn") else None,
               f"torch threads {v['torch_threads']}" if v.get("torch_threads") is not None else None,
               f"task.precision run as {v['precision']}" if v.get("precision") else None]
    if any(machine):
        lines.append("- machine: " + ", ".join(m for m in machine if m))
    libs = {k: x for k, x in v.items() if k not in PROVENANCE_KEYS}
    lines.append("- versions: " + ", ".join(f"{k} {x}" for k, x in libs.items()))
    return lines


def _planned_configs(spec: dict) -> set[str] | None:
    """``StudySpec.planned_config_keys`` of the stored study file; None for one this code cannot
    read (an old store): then the report says nothing rather than something wrong. Only the keys
    that plan trials are read, by the schema alone: the stored spec carries the latest run's
    ``provenance`` beside them (``vat-study run`` records it there), and the checks against this
    machine (``spec_checks``: data files that exist, trackers that are installed) are the run's
    business, not the report's."""
    from vat_study.spec import StudySpec

    keys = ("name", "task", "method", "search", "seeds", "metric", "probes")
    try:
        return StudySpec.model_validate({k: spec[k] for k in keys if k in spec}).planned_config_keys()
    except (ValueError, TypeError):  # SpecError is a ValueError
        return None


MANIFEST = ".report-files"
"""Beside report.md: the names of the files the last report wrote, one a line, sorted."""


def _remove_stale(out_dir: Path, written: list[Path]) -> None:
    """Remove what the last report in ``out_dir`` wrote and this one did not (``MANIFEST``), then
    record this report's files. Names in the manifest that hold a path separator, or are the
    notes, are ignored: the manifest only ever names files the report itself writes here."""
    manifest = out_dir / MANIFEST
    now = sorted({p.name for p in written} | {"report.md"})
    before = manifest.read_text().split() if manifest.exists() else []
    for name in set(before) - set(now):
        if "/" in name or "\\" in name or name in (paper.NOTES, MANIFEST) or name.startswith("."):
            continue
        (out_dir / name).unlink(missing_ok=True)
    manifest.write_text("".join(f"{n}\n" for n in now))


def write_report(url: str, study: str, out: str | Path | None = None) -> tuple[Path, list[tuple[str, str]]]:
    """Write the report; returns report.md's path and the (artifact, reason) pairs skipped."""
    data = load(url, study)
    out_dir = Path(out) if out is not None else Path("results") / study
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Report(data, out_dir)
    for title, build in ARTIFACTS:
        r.artifact(title, lambda build=build: build(r))

    trials = data.trials
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    seeds = sorted(trials["seed"].unique().tolist()) if not trials.empty else []
    steps = sorted(trials["steps"].dropna().unique().tolist()) if "steps" in trials else []
    from vat_study.store import Store, failure_line, safe_url

    versions = Store(url).latest_versions(study)
    head = [f"# Study `{study}`", "",
            f"<!-- written by vat-study report from the store, and rewritten by every run of it: hand-written "
            f"text goes in {paper.NOTES} beside this file, which the report includes and never writes -->", "",
            f"- study file: `{data.spec.get('name')}` as stored ({'search: ' + ('optuna' if (data.spec.get('search') or {}).get('optuna') else 'grid' if data.spec.get('search') else 'none')})",
            f"- storage: `{_shown_url(safe_url(url))}`",
            f"- trials: {len(trials)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'})",
            f"- seeds: {seeds}; budget: {', '.join(str(int(s)) for s in steps) or '?'} updates per trial",
            f"- metric: {data.metric} ({data.mode})",
            *provenance_lines(versions), ""]
    failed = trials[trials["status"].isin(["FAILED", "PRUNED"])] if not trials.empty else trials
    if not failed.empty:
        kinds = failed["failure_kind"].fillna("error").value_counts().to_dict() if "failure_kind" in failed else {}
        head += [f"Trials that did not complete ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
                 "`vat-study run` redoes FAILED ones that the study's search still holds):", ""]
        planned = _planned_configs(data.spec)
        for _, t in failed.iterrows():
            params = ", ".join(f"{c.removeprefix('param.')}={t[c]}" for c in trials.columns
                               if c.startswith("param.") and pd.notna(t[c]))
            head.append(f"- trial {t['trial_id']} ({params or 'no search params'}, seed {t['seed']}): {t['status']}, "
                        + failure_line(t.get("failure_kind"), t["error"])
                        + ("; no longer in the study's search, so not redone"
                           if planned is not None and t["config_key"] not in planned else ""))
        head.append("")
    if r.skipped:
        head += ["Skipped artifacts:", ""] + [f"- {t}: {why}" for t, why in r.skipped] + [""]
    written = paper.notes(out_dir)  # hand-written notes beside the report: included, never written
    if written:
        title = "Notes"
        if written.startswith("## "):  # the notes' own heading becomes the section's
            title, _, written = written.removeprefix("## ").partition("\n")
        r.sections.append(f"## {title.strip()}\n\n(Hand-written in `{paper.NOTES}` beside this report; "
                          f"`vat-study report` includes it and never writes it.)\n\n{written.strip()}\n")
    (out_dir / "report.md").write_text("\n".join(head) + "\n" + "\n".join(r.sections))
    _remove_stale(out_dir, r.written)
    return out_dir / "report.md", r.skipped
