"""``vat-study report``: a study's answer and the artifacts its factors call for, into results/<study>/.

report.md (for GitHub) and report.html (the same as one self-contained page, figures inline) lead
with the answer (``answer``: the study's question, each method's best configuration with its CI
and n, the paired comparisons, the paper's values), then what was run, then only the artifacts
whose factors the study varied or measured. Figures are PNG (PDF beside them with ``pdf=True``),
tables CSV (their Markdown is inside the report); an index at the top names every file. An
artifact about something the study does not vary or measure (``NotApplicable``) is named in one
line at the end; one whose data is missing (``Skip``) is listed there with its one-line reason.

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

from . import (answer, choices, compare, curves, eps_alpha, examples, grad_variance, html, k_ablation,
               learning_curves, paper, search_plots, sequential, tables)
from .data import NotApplicable, Skip, StudyData, load
from .plotting import figure_formats
from .markdown import md_table
from .runinfo import provenance_lines, run_lines  # noqa: F401  (provenance_lines: the report's API)


class Report:
    """One report being written into ``out``: its sections, what it skipped, the files it wrote
    (``index``: file name -> the section that wrote it)."""

    def __init__(self, data: StudyData, out: Path) -> None:
        self.data, self.out = data, out
        self.sections: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.not_applicable: list[str] = []
        self.written: list[Path] = []
        self.index: dict[str, str] = {}
        self.current = "The answer"

    def _wrote(self, path: Path) -> None:
        self.written.append(path)
        self.index.setdefault(path.name, self.current)

    def table(self, name: str, df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
        """Write ``name``.csv (values as stored: error rates as fractions); returns its Markdown
        (columns named in ``pct`` in percent) for the report to show."""
        csv = self.out / f"{name}.csv"
        df.to_csv(csv, index=False)
        self._wrote(csv)
        return md_table(df, pct)

    def figure(self, paths: list[Path]) -> str:
        """The Markdown showing a figure ``plotting.save`` wrote (PNG first; a PDF beside it linked)."""
        for p in paths:
            self._wrote(p)
        png = paths[0].name
        pdf = [p.name for p in paths if p.suffix == ".pdf"]
        return f"![{png}]({png})" + (f"  ([PDF]({pdf[0]}))" if pdf else "")

    def artifact(self, title: str, build: Callable[[], str]) -> None:
        self.current = title
        if self.data.complete.empty:
            self.skipped.append((title, "no complete trials yet"))
            return
        try:
            body = build()
        except NotApplicable:
            self.not_applicable.append(title)
            return
        except Skip as e:
            self.skipped.append((title, str(e)))
            return
        except Exception as e:  # noqa: BLE001  a report never crashes on one artifact
            self.skipped.append((title, f"could not be computed ({type(e).__name__}: {e})"))
            return
        self.sections.append(f"## {title}\n\n{body}\n")


ARTIFACTS: list[tuple[str, Callable[[Report], str]]] = [
    ("The search, drawn by Optuna", search_plots.section),
    ("Table 3 beside the paper (semi-supervised MNIST)", tables.table3_section),
    ("Fig. 3: effect of eps and alpha", eps_alpha.section),
    ("Fig. 4 and Table 6: number of power iterations K", k_ablation.section),
    ("Fig. 7: gradient variance, K = 0 vs K = 1", grad_variance.section),
    ("Fig. 2: error and R_vadv during training", curves.section),
    ("Learning curves: test error during training", learning_curves.section),
    ("Method comparisons, paired by seed", compare.section),
    ("Sequential comparisons: seeds added until decided", sequential.section),
    ("xi and the power method", tables.xi_section),
    ("Implementation choices, one at a time", choices.section),
    ("Fig. 1: prediction and LDS on 2-D data", examples.fig1_section),
    ("Fig. 5: virtual adversarial examples", examples.fig5_section),
    ("Fig. 6: misidentification on virtual adversarial examples", examples.fig6_section),
]
"""Every artifact a report may hold after its answer, in order: (title, section(report) ->
Markdown). Each section raises ``NotApplicable`` when the study does not vary or measure what it
shows, ``Skip`` with a one-line reason when the study lacks its data. A new figure is one module
with a ``section`` function and one line here."""


MANIFEST = ".report-files"
"""Beside report.md: the names of the files the last report wrote, one a line, sorted."""


def _remove_stale(out_dir: Path, written: list[Path]) -> None:
    """Remove what the last report in ``out_dir`` wrote and this one did not (``MANIFEST``), then
    record this report's files. Names in the manifest that hold a path separator, or are the
    notes, are ignored: the manifest only ever names files the report itself writes here."""
    manifest = out_dir / MANIFEST
    now = sorted({p.name for p in written} | {"report.md", "report.html"})
    before = manifest.read_text().split() if manifest.exists() else []
    for name in set(before) - set(now):
        if "/" in name or "\\" in name or name in (paper.NOTES, MANIFEST) or name.startswith("."):
            continue
        (out_dir / name).unlink(missing_ok=True)
    manifest.write_text("".join(f"{n}\n" for n in now))


def index_lines(r: Report) -> list[str]:
    """The files of the report, grouped by the section that wrote each (figures PNG, tables CSV)."""
    by: dict[str, list[str]] = {}
    for name, title in r.index.items():
        by.setdefault(title, []).append(f"[{name}]({name})")
    return ["**Files**: [report.html](report.html) (this report as one page, figures inline: open it in a "
            "browser, share it as one file); [report.md](report.md) (for GitHub); figures as PNG, tables as CSV:", "",
            *(f"- {title}: {', '.join(names)}" for title, names in by.items())]


def end_lines(r: Report) -> list[str]:
    """The short list at the end: what was skipped for lack of data (with the reason), and the
    artifacts about factors the study does not vary or measure (named only)."""
    if r.data.complete.empty:
        return ["## Not in this report", "", "No trial is complete yet: no figure or table.", ""]
    lines = [f"- {title}: {why}" for title, why in r.skipped]
    if r.not_applicable:
        lines.append("- Not drawn, as the study does not vary or measure what they show: "
                     + "; ".join(t.split(":")[0] for t in r.not_applicable) + ".")
    return ["## Not in this report", "", *lines, ""] if lines else []


def _notes(out_dir: Path) -> list[str]:
    """The hand-written notes beside the report (``PAPER.md``) as a section: included, never written."""
    written = paper.notes(out_dir)
    if not written:
        return []
    title = "Notes"
    if written.startswith("## "):  # the notes' own heading becomes the section's
        title, _, written = written.removeprefix("## ").partition("\n")
    return [f"## {title.strip()}\n\n(Hand-written in `{paper.NOTES}` beside this report; "
            f"`vat-study report` includes it and never writes it.)\n\n{written.strip()}\n"]


def write_report(url: str, study: str, out: str | Path | None = None,
                 pdf: bool = False) -> tuple[Path, list[tuple[str, str]]]:
    """Write report.md, report.html and the files they show; returns report.md's path and the
    (artifact, reason) pairs skipped for lack of data. ``pdf``: each figure as PDF too."""
    data = load(url, study)
    out_dir = Path(out) if out is not None else Path("results") / study
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Report(data, out_dir)
    with figure_formats(pdf=pdf):
        head = answer.section(r)
        for title, build in ARTIFACTS:
            r.artifact(title, lambda build=build: build(r))
    md = "\n".join([f"# Study `{study}`", "",
                    f"<!-- written by vat-study report from the store, and rewritten by every run of it: hand-written "
                    f"text goes in {paper.NOTES} beside this file, which the report includes and never writes -->", "",
                    answer.question(data), "", *index_lines(r), "", "## The answer", "", head, "",
                    "## What was run", "", *run_lines(url, data), *r.sections, *_notes(out_dir), *end_lines(r)])
    (out_dir / "report.md").write_text(md.rstrip() + "\n")
    html.write(md, out_dir, f"Study {study}")
    _remove_stale(out_dir, r.written)
    return out_dir / "report.md", r.skipped
