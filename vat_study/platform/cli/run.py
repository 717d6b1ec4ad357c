"""``vat-study run``: the command line of the use case (``vat_study.platform.study.run_study``, its
dry run ``dry_run.plan_study``): it reads the study file and its overrides, calls it, prints what
it returns and exits with its status (the docs' table: 0, 1, 2, 130, 143, 129)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from .app import _fail, _summary_table, app, err, out, safe_url


def _executor_help() -> str:
    from ..executors.registry import DEFAULT, REGISTRY

    return " or ".join(f"{name}{' (default)' if name == DEFAULT else ''}" for name in REGISTRY) + "."


@app.command()
def run(
    study: Path = typer.Argument(..., help="Study file (YAML)."),
    executor: Optional[str] = typer.Option(None, "--executor", "-e", help=_executor_help()),
    storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL (default: the study's storage, "
                                                                    "else $VAT_STUDY_STORAGE)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a study field: --set task.steps=3000"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Make every check the run makes (the data, the store, the "
                                                         "study stored there) and print the expanded trials; "
                                                         "train and write nothing."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No live progress display."),
    address: Optional[str] = typer.Option(None, "--address", help="Join an existing Ray cluster (ray start --head)."),
) -> None:
    """Run (or continue) a study: every trial lands in the store; finished trials are not rerun."""
    from ..spec import parse_set

    spec = _load_study(study, set_, executor, storage, address)
    if dry_run:
        from ..dry_run import plan_study

        _print_dry_run(spec, plan_study(spec))
        return
    from ..study import run_study

    outcome = run_study(spec, spec_path=str(study), progress=not no_progress,
                        invocation=(sys.argv[1:], parse_set(set_) if set_ else {}))
    _print_outcome(spec, outcome)


def _print_dry_run(spec, report) -> None:
    """What ``plan_study`` found, as ``run --dry-run`` prints it; a refusal is ``_fail``'s line."""
    if report.status:
        _fail(report.message)
    out.print(report.stored, highlight=False, markup=False)
    for label, n in report.datasets.items():
        out.print(f"data: {label}: {n} training images found")
    for label in report.downloads:
        out.print(f"data: {label}: not there yet; a real run downloads it first (download: true)")
    out.print(f"device: {report.device}")
    for line in report.budget:
        out.print(line, highlight=False)
    if report.optuna is not None:
        out.print(f"{spec.name}: {report.optuna}; nothing written")
        return
    table = Table(title=f"{spec.name}: trials ({spec.executor.kind} executor, storage {safe_url(spec.storage)})")
    for c in ("#", "params", "seed", "key"):
        table.add_column(c)
    for i, t in enumerate(report.trials, 1):
        table.add_row(str(i), json.dumps(t.params), str(t.seed), t.key)
    out.print(table)
    if report.collapsed:
        out.print(f"{report.collapsed} grid point(s) left out: each trains the same trial config as an earlier "
                  "point (a repeated point, or a setting its method does not have)", highlight=False)
    batching = ""
    if report.lane_groups is not None:
        setting, value = report.batching
        batching = (f", trained as {len(report.lane_groups)} batched models (executor.{setting}: {value}; sizes "
                    f"{report.lane_groups})")
    out.print(f"{len(report.trials)} trials ({report.configurations} configurations x {len(spec.seeds)} seeds)"
              f"{batching}; nothing written")
    if report.sequential is not None:
        out.print(f"sequential: {report.sequential}")


def _print_outcome(spec, outcome) -> None:
    """What ``run_study`` did, as ``run`` prints it, and its exit status."""
    if outcome.status == 2:
        _fail(outcome.message)
    if outcome.message is not None:  # stopped (130, 143, 129), or a store fault mid-run (1)
        err.print(("error: " if outcome.status == 1 else "") + outcome.message, highlight=False)
        raise typer.Exit(outcome.status)
    where = safe_url(spec.storage)
    out.print(_summary_table(spec.name, spec.metric.model_dump(), outcome.frame))
    if outcome.interrupted_marked:
        out.print(f"{outcome.interrupted_marked} trial(s) left RUNNING by an earlier, interrupted run were redone.")
    if outcome.by_others:
        out.print(f"{outcome.by_others} trial(s) of this run were run by other drivers of {spec.name!r} at the same time.")
    if outcome.ran == 0:
        out.print(f"Nothing new to train: all {outcome.skipped} trial(s) of {spec.name} are already finished "
                  f"(COMPLETE or PRUNED) in {where}.", highlight=False)
    else:
        out.print(f"Ran {outcome.ran} ({outcome.failed} failed), skipped {outcome.skipped} already complete, "
                  f"in {outcome.seconds:.1f} s. Results: {where} (study {spec.name!r}).")
    for e in outcome.errors:
        err.print(e)
    for line in outcome.tracker_warnings:
        err.print(f"warning: {line}", highlight=False)
    _print_exit(spec, outcome)


def _print_exit(spec, outcome) -> None:
    """The pruned trials counted; the trials that did not finish named (exit 1)."""
    if outcome.pruned:
        out.print(f"{outcome.pruned} of {outcome.trials} trial(s) of {spec.name!r} were pruned (stopped early by "
                  f"search.optuna.pruner: finished, not failed; vat-study status {spec.name} shows where).",
                  highlight=False)
    if outcome.outside:
        err.print(f"{outcome.outside} trial(s) of {spec.name!r} that did not complete are no longer in its search "
                  "and are left as they are (the report lists them)", highlight=False)
    if not outcome.n_unfinished:
        raise typer.Exit(outcome.status)
    err.print(f"{outcome.n_unfinished} of {outcome.trials} trial(s) of {spec.name!r} did not complete:", highlight=False)
    for line in outcome.unfinished:
        err.print(f"  {line}", highlight=False, markup=False)
    if outcome.n_unfinished > len(outcome.unfinished):
        err.print(f"  ... and {outcome.n_unfinished - len(outcome.unfinished)} more (vat-study status {spec.name})",
                  highlight=False)
    err.print("Run the same command again to redo them.", highlight=False)
    raise typer.Exit(outcome.status)


def _load_study(path: Path, set_: list[str], executor: Optional[str], storage: Optional[str],
                address: Optional[str] = None):
    from ..spec import SpecError, load_spec, parse_set

    try:
        overrides = _study_overrides(parse_set(set_))
        if address is not None:
            overrides["executor.address"] = address
        if executor is not None:
            overrides["executor.kind"] = executor
        if storage is not None:
            overrides["storage"] = storage
        spec = load_spec(path, overrides)
        _warn_shadowed(spec, {k: v for k, v in overrides.items() if k.split(".")[0] in ("task", "method", "probes")})
        return spec
    except SpecError as e:
        _fail(str(e))


def _study_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``--set`` for a study file in the shorthand ``trial`` takes too: a key that is no study
    field is the trial setting it names (``eps`` is ``method.eps``, ``steps`` is ``task.steps``,
    ``method=vat`` is ``method.name``); study fields (``seeds``, ``executor.kind``, ...) stay."""
    from ..spec import SpecError, StudySpec, canonical
    from ...surface import param_path

    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in overrides.items():
        head, written = key.split(".")[0], key
        if key == "method" and not isinstance(value, Mapping):
            key = "method.name"
        elif head not in StudySpec.model_fields and head != "seed":
            key = param_path(key) or key
        if key in out and canonical(out[key]) != canonical(value):
            raise SpecError([f"--set {given[key]} and --set {written} are one setting ({key}) with two values; give "
                             "it once"], "--set")
        out[key], given[key] = value, written
    return out


def _warn_shadowed(spec, overrides: Mapping[str, Any]) -> None:
    """Warn about each ``--set`` of a trial setting that the study's search also sets: the grid's
    (or Optuna's) value wins for the points that have it."""
    from ...surface import param_path

    search = spec.search
    blocks = (search.grid or []) if search is not None else []
    keys = [(f"grid block {i + 1}", k) for i, g in enumerate(blocks) for k in g]
    if search is not None and search.optuna is not None:
        keys += [("optuna space", k) for k in search.optuna.space]
    for key in overrides:
        for where, k in keys:
            path = param_path(k) or k
            if key == path or key.startswith(path + ".") or path.startswith(key + "."):
                err.print(f"warning: --set {key}: the study's {where} sets {k} too, and its values win for the "
                          f"points that have it (edit the search, or leave out --set {key})", highlight=False)
