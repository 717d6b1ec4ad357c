"""The commands that read (or manage) a stored study: ``status``, ``export``, ``delete`` and
``rename`` (``report`` and ``compare``: ``reports``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .app import (STORAGE_OPTION_HELP, STUDY_HELP, _addressed, _check_target, _fail, _study_folder, _study_store,
                  _summary_table, err, out, safe_url)


def status(
    study: Optional[str] = typer.Argument(None, help="Study name or study file (default: list all studies)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
) -> None:
    """Studies in the store, or one study's trials by status."""
    from ..results import trials_frame

    addressed = _addressed(study, storage)
    study, store = _study_store(addressed)
    storage = addressed.storage  # (as given: a read-only store is opened through another URL)
    if study is None:
        table = Table(title=f"studies in {safe_url(storage)}")
        for c in ("study", "trials", "complete", "pruned", "running", "failed"):
            table.add_column(c)
        for name in store.study_names():
            df = trials_frame(store, name)
            counts = df["status"].value_counts().to_dict() if not df.empty else {}
            table.add_row(name, str(len(df)), *(str(counts.get(s, 0)) for s in ("COMPLETE", "PRUNED", "RUNNING",
                                                                                "FAILED")))
        out.print(table)
        return
    spec_json = store.study_spec(study) or {}
    df = trials_frame(store, study)
    out.print(_summary_table(study, spec_json.get("metric") or {}, df))
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    out.print("trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("COMPLETE", "PRUNED", "RUNNING", "FAILED")))
    from ..display import pruned_text, trial_text
    from ..store.frames import pruned_at

    metric = (spec_json.get("metric") or {}).get("name", "val_error")
    at = pruned_at(store, study, metric) if counts.get("PRUNED") else {}
    for _, r in df[df["status"] == "PRUNED"].iterrows() if not df.empty else ():
        out.print(f"PRUNED {trial_text(r, df)}: {pruned_text(at.get(int(r['trial_id'])), metric)}", highlight=False,
                  markup=False)
    for _, r in df[df["status"] == "FAILED"].iterrows() if not df.empty else ():
        last = (r["error"] or "").strip().splitlines()[-1:] or [""]
        err.print(f"FAILED {trial_text(r, df)} ({r.get('failure_kind') or 'error'}): {last[0]}", highlight=False,
                  markup=False)
    if spec_json.get("sequential"):
        out.print(_sequential_table(study, spec_json, df))
    _check_optuna_records(store, study, spec_json, df)


def _check_optuna_records(store, study: str, spec_json: dict, df) -> None:
    """Say where the study's Optuna study (what optuna-dashboard shows) and the store disagree."""
    from ..store.twin import twin_disagreements

    problems = twin_disagreements(store, study, spec_json, df)
    if not problems:
        return
    grid = not (spec_json.get("search") or {}).get("optuna")
    err.print(f"warning: the Optuna study {study!r} disagrees with the store on {len(problems)} configuration(s); "
              + ("the next `vat-study run` of the study rebuilds it from the store" if grid else
                 "the store is what status and the report read"), highlight=False)
    for line in problems[:10]:
        err.print(f"  {line}", highlight=False)
    if len(problems) > 10:
        err.print(f"  ... and {len(problems) - 10} more", highlight=False)


def _sequential_table(study: str, spec_json: dict, df) -> Table:
    """The study's sequential comparisons as they stand (``vat_study.platform.group_sequential``)."""
    from ..group_sequential import study_block_comparisons

    sq = spec_json["sequential"]
    cs = study_block_comparisons(df, spec_json)
    pct = sq["metric"].endswith("error")
    table = Table(title=f"{study}: sequential comparisons of {sq['metric']} (alpha {sq['alpha']} over all looks)")
    for c in ("b - a", "decision", "paired seeds", "looks", "b - a" + (" (points)" if pct else ""), "repeated CI"):
        table.add_column(c)
    for c in cs:
        lk = c.outcome.looks[-1] if c.outcome.looks else None
        f = (lambda v: f"{100 * v:+.2f}") if pct else (lambda v: f"{v:+.4g}")
        ci = "" if lk is None else lk.note if lk.ci_low != lk.ci_low else f"[{f(lk.ci_low)}, {f(lk.ci_high)}]"
        table.add_row(f"{c.b} - {c.a}", c.decision, str(c.outcome.n), str(len(c.outcome.looks)),
                      f(lk.mean_diff) if lk else "", ci)
    return table


def export(
    study: str = typer.Argument(..., help=STUDY_HELP),
    format: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="File (default results/<study>/trials.<fmt>)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
) -> None:
    """Write a study's trials (params, seed, status, final metrics, provenance) and per-step metrics
    to files; error rates in percent (columns ending _pct)."""
    if format not in ("csv", "parquet"):
        _fail(f"--format must be 'csv' or 'parquet', got {format!r}")
    addressed = _addressed(study, storage)
    target = out_path or _study_folder(addressed.study, "--out") / f"trials.{format}"
    steps_target = target.with_name(target.stem + "_metrics" + target.suffix)
    for path in (target, steps_target):
        _check_target(path, "--out" if out_path else "the export file", folder=False)
    study, store = _study_store(addressed)
    from ..results import trials_frame
    from ..store.frames import metrics_frame, provenance_frame

    trials, metrics = trials_frame(store, study), metrics_frame(store, study)
    if not trials.empty:
        trials = trials.merge(provenance_frame(store, study), on="trial_id", how="left")
    trials, metrics = _errors_in_percent(trials, metrics)
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            _fail("--format parquet needs pyarrow (pip install pyarrow); csv works without it")
    new = [p for p in (target, steps_target) if not p.exists()]  # what a failed write must not leave behind
    path = target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for df, path in ((trials, target), (metrics, steps_target)):
            df.to_csv(path, index=False) if format == "csv" else df.to_parquet(path, index=False)
    except OSError as e:
        for p in new:
            if p.is_file():
                p.unlink()
        _write_failed(e, path)
    out.print(f"wrote {target} ({len(trials)} trials) and {steps_target} ({len(metrics)} metric rows)")


def is_error(name: str) -> bool:
    """An error rate (a fraction in the store): what status, the report and export show in percent."""
    return name.endswith(("_error", "_error_curve"))


def _errors_in_percent(trials, metrics):
    """The export's frames with every error rate in percent, its name saying so (``test_error_pct``;
    per-step rows ``val_error_pct``), as status and the report show them; other values as stored."""
    trials = trials.copy()
    for c in [c for c in trials.columns if is_error(str(c)) and not str(c).startswith("param.")]:
        trials[c] = trials[c] * 100
        trials = trials.rename(columns={c: f"{c}_pct"})
    if not metrics.empty:
        metrics = metrics.copy()
        errors = metrics["name"].map(is_error)
        metrics.loc[errors, "value"] = metrics.loc[errors, "value"] * 100
        metrics.loc[errors, "name"] = metrics.loc[errors, "name"] + "_pct"
    return trials, metrics


def _write_failed(e: OSError, path: Path) -> None:
    """A write that failed (a full disk, /dev/full, an I/O error): one line naming the file, exit 1."""
    err.print(f"error: cannot write {str(e.filename or path)!r}: {e.strerror or e}; no file of this export is left "
              "half-written",
              highlight=False)
    raise typer.Exit(1)


def delete(
    study: str = typer.Argument(..., help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a study from the store: its trials, their metrics, its claims and its Optuna study,
    in one transaction; nothing else (files under results/ stay)."""
    import click

    from ..results import trials_frame
    from ..store.manage import StudyInUse, delete_study

    study, store = _study_store(study, storage)
    df = trials_frame(store, study)
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    what = (f"study {study!r} in {safe_url(store.url)}: {len(df)} trial(s)"
            + (f" ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})" if counts else ""))
    if not yes:
        try:
            confirmed = typer.confirm(f"Delete the {what}, with their metrics and its Optuna study?", default=False)
        except click.exceptions.Abort:
            confirmed = False
        if not confirmed:
            err.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
    try:
        removed = delete_study(store, study)
    except StudyInUse as e:
        _fail(str(e))
    out.print(f"deleted the {what}; {removed.metric_rows} metric row(s), {removed.optuna_trials} Optuna trial(s). "
              f"Files under results/{study}/ (reports, models) are left as they are.", highlight=False, markup=False)


def rename(
    old: str = typer.Argument(..., help="The study's name, or its study file."),
    new: str = typer.Argument(..., help="Its new name."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
) -> None:
    """Rename a study in the store (and its Optuna study), in one transaction; files under
    results/ are not moved."""
    from ..spec import check_study_name
    from ..store.manage import StudyInUse, rename_study

    try:
        check_study_name(new)
    except ValueError as e:
        _fail(f"NEW {new!r}: {e}")
    old, store = _study_store(old, storage)
    try:
        rename_study(store, old, new)
    except (StudyInUse, ValueError) as e:
        _fail(str(e))
    out.print(f"renamed study {old!r} to {new!r} in {safe_url(store.url)} (its Optuna study too); run its study file "
              f"with name: {new} to continue it. Files under results/{old}/ are not moved.", highlight=False,
              markup=False)
