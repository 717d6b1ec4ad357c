"""``vat-study``: the command line.

    vat-study run STUDY.yaml [--executor ray|local] [--storage URL] [--set k=v]... [--dry-run]
    vat-study status [STUDY] [--storage URL]
    vat-study export STUDY --format csv|parquet [--out FILE] [--storage URL]
    vat-study report STUDY [--storage URL] [--out DIR] [--pdf]
    vat-study compare STUDY_A STUDY_B [--storage URL] [--storage-b URL] [--out DIR] [--pdf]
    vat-study delete STUDY [--yes] / rename OLD NEW [--storage URL]
    vat-study trial [--config FILE.yaml] [--set key=value]...   one run_trial, metrics printed
    vat-study defaults                                          the resolved default trial config
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ..common.yamlio import safe_load, set_dotted

# Nothing heavy at the top: --help, --version, status and export import neither torch nor Ray
# (tests/test_import_boundary.py); each command imports what it needs (the store: SQLAlchemy
# and pandas; the science: vat_study.surface, torch on first use).


def parse_set(items: list[str]) -> dict[str, Any]:
    """``spec.parse_set`` (the study-file module, imported when an override is given)."""
    from .spec import parse_set as parse

    return parse(items) if items else {}


def safe_url(url: str) -> str:
    """``store.safe_url``: the URL without its password."""
    from .store.urls import safe_url as safe

    return safe(url)


def mask_secrets(text: str, url: str) -> str:
    """``store.mask_secrets``: ``text`` with the URL's password masked."""
    from .store.urls import mask_secrets as mask

    return mask(text, url)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter studies and ablations of VAT.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:  # the installed release, with the git commit (and .dirty) when run from a checkout
        from .provenance import package_version

        typer.echo(f"vat-study {package_version()}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Hyperparameter studies and ablations of VAT."""
err = Console(stderr=True, markup=False)  # what is printed is text: a bracket in a message or a table cell is never
out = Console(markup=False)              # Rich markup (only _fail's "error:" prefix is styled, explicitly)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optimizer.lr=0.001", "hidden=[64, 32]"]`` -> nested dict (spec.parse_set, then nested)."""
    result: dict[str, Any] = {}
    for key, value in parse_set(items).items():
        set_dotted(result, key, value)
    return result


def _fail(message: str) -> None:
    """One ``error:`` line and exit 2. The message is printed as written: a bracket in it (``pip
    install 'vat-study[trackers]'``, a grid ``[{eps: [1, 2]}]``) is text, never Rich markup."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(2)


@app.command()
def trial(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with a trial config mapping."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override one setting: --set method.eps=2.0 --set task.optimizer.lr=0.001 (or eps=2.0)"),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-evaluation lines."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: VAT_STUDY_THREADS, "
                                                                         "else 1: reproducible, and on a small model "
                                                                         "faster than many); recorded in the output."),
) -> None:
    """Run one trial (run_trial) and print its metrics. Defaults: semi-supervised VAT on digits."""
    from ..surface import ConfigError, nest, param_path, resolve_config, run_trial, trial_threads

    try:
        threads = trial_threads(threads)
    except ValueError as e:
        _fail(str(e))

    cfg: dict[str, Any] = {}
    if config is not None:
        from ..common.yamlio import FileRefused, read_text

        try:
            loaded = safe_load(read_text(config))  # a regular file under the size bound (not /dev/zero, a FIFO)
        except FileRefused as e:
            _fail(f"--config {e}")
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            _fail(f"--config {config}: {e}")
        if loaded is not None and not isinstance(loaded, dict):
            _fail(f"--config {config}: must hold a mapping of trial keys, got {type(loaded).__name__}")
        if isinstance(loaded, dict) and "name" in loaded:  # a trial config has no name; a study file does
            _fail(f"--config {config}: this is a study file (it has a name: {loaded['name']!r}), not a trial config; "
                  f"run it with: vat-study run {config}")
        cfg = nest(loaded or {})
    try:
        for key, value in parse_set(set_).items():
            set_dotted(cfg, param_path(key) or key, value)
        resolve_config(cfg)  # validate before printing anything
    except (ValueError, ConfigError) as e:
        _fail(str(e))

    def report(step: int, m) -> None:
        if not (quiet or as_json):
            shown = "  ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "train_seconds")
            err.print(f"step {step:>6}  {shown}", highlight=False, soft_wrap=True)

    try:
        metrics = run_trial(cfg, report, threads=threads)
    except ConfigError as e:
        _fail(str(e))
    metrics["torch_threads"] = threads
    if as_json:
        out.print_json(json.dumps({k: v for k, v in metrics.items()}, default=str))
        return
    table = Table(title="run_trial metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        shown = f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)
        table.add_row(k, shown)
    out.print(table)


def _load_study(path: Path, set_: list[str], executor: Optional[str], storage: Optional[str],
                address: Optional[str] = None):
    from .spec import SpecError, load_spec, parse_set

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
    from .spec import SpecError, StudySpec, canonical
    from ..surface import param_path

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
    from ..surface import param_path

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


def _summary_table(name: str, metric: Mapping[str, Any], store) -> Table:
    from .display import status_rows
    from .results import trials_frame

    df = trials_frame(store, name)
    m, mode = metric.get("name", "val_error"), metric.get("mode", "min")
    pct = " (errors in %)" if m.endswith("_error") else ""
    table = Table(title=f"{name}: {m} ({mode}) by configuration, mean +- sd over seeds{pct}",
                  caption="* the best configuration by " + m)
    if df.empty:
        return table
    columns, rows, best = status_rows(df, m, mode)
    table.add_column("")
    for i, c in enumerate(columns):
        table.add_column(c, justify="right" if i >= len(columns) - 5 else "left")
    for i, row in enumerate(rows):
        table.add_row("*" if i == best else "", *row, style="bold" if i == best else None)
    return table


def _reachable(store, field: str):
    """The store, after one connection: an unreachable or refusing database is a clean error."""
    from sqlalchemy.exc import SQLAlchemyError

    from .store import StoreError

    try:
        with store.engine.connect():
            pass
    except StoreError as e:
        _fail(f"{field} {safe_url(store.url)!r}: {e}")
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()[0]
        _fail(f"{field} {safe_url(store.url)!r}: cannot open the database ({mask_secrets(reason, store.url)})")
    return store


def _check_target(path: Path, field: str, folder: bool) -> None:
    """Refuse, before any work, a target that cannot be written: a folder where a file goes (or
    the reverse), or a place under a file or without write permission. Creates nothing."""
    import os

    if path.exists():
        if folder != path.is_dir():
            _fail(f"{field} {str(path)!r}: is {'a folder' if path.is_dir() else 'a file'}; give "
                  f"{'a folder' if folder else 'a file name'}")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            _fail(f"{field} {str(path)!r}: not writable (permission denied)")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        _fail(f"{field} {str(path)!r}: {str(parent)!r} is a file, so nothing can be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        _fail(f"{field} {str(path)!r}: cannot create it under {str(parent)!r} (permission denied)")


def _study_folder(study: str, field: str) -> Path:
    """results/<study>, for a name that cannot leave results/ (a store written before names were
    checked may hold one that could): else the user must give ``field``."""
    from .spec import check_study_name

    try:
        check_study_name(study)
    except ValueError as e:
        _fail(f"study name {study!r} {e}; its default folder results/{study} would not be inside results/: "
              f"give {field}")
    return Path("results") / study


STUDY_HELP = "Study name, or its study file (STUDY.yaml: its name and storage)."
STORAGE_OPTION_HELP = ("SQLAlchemy URL (default: the study file's storage, else $VAT_STUDY_STORAGE, else "
                       "sqlite:///results/vat_study.db).")


class Addressed:
    """The study (None: every study) and store a command addresses, and where the store came
    from, as an error names it: ``--storage``, ``storage (in FILE)``, ``VAT_STUDY_STORAGE``, or
    ``--storage`` for the default."""

    def __init__(self, study: Optional[str], storage: str, field: str) -> None:
        self.study, self.storage, self.field = study, storage, field


def _addressed(study: Optional[str], storage: Optional[str]) -> Addressed:
    """STUDY as users give it: a name, or a study file (an existing file: its ``name`` and its
    ``storage``); the store from ``--storage``, else the file's, else ``VAT_STUDY_STORAGE``, else
    the default. Only the file's name and storage are read (no data or tracker is checked)."""
    from .store.urls import STORAGE_ENV, check_storage_url, default_storage

    field = "--storage"
    if study is not None and Path(study).is_file():
        from .spec import check_study_name

        path = study
        try:
            data = safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            _fail(f"study file {path}: {e}")
        study = data.get("name") if isinstance(data, dict) else None
        if not isinstance(study, str):
            _fail(f"study file {path}: has no name: (give the study's name, or a study file with one)")
        try:
            check_study_name(study)
        except ValueError as e:
            _fail(f"study file {path}: name {study!r} {e}")
        if storage is None and data.get("storage") is not None:
            storage, field = str(data["storage"]), f"storage (in {path})"
    if storage is None:
        try:
            storage = default_storage()
        except ValueError as e:
            _fail(str(e))
        import os

        field = STORAGE_ENV if os.environ.get(STORAGE_ENV, "").strip() else "--storage"
    try:
        check_storage_url(storage)
    except ValueError as e:
        _fail(f"{field} {safe_url(storage)!r}: {e}")
    return Addressed(study, storage, field)


NO_STORE_HINT = ("run a study first (vat-study run STUDY.yaml), or name the store: --storage URL, the study file "
                 "(vat-study status STUDY.yaml reads its storage), or VAT_STUDY_STORAGE=URL")


def _existing_store(storage: str, field: str = "--storage"):
    """A Store for reading: the URL must be valid and (SQLite) the file must exist: reading never creates."""
    from sqlalchemy.engine import make_url

    from .store import Store
    from .store.urls import check_storage_url

    try:
        check_storage_url(storage)
    except ValueError as e:
        _fail(f"{field} {safe_url(storage)!r}: {e}")
    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        _fail(f"{field} {safe_url(storage)!r}: no store there yet; {NO_STORE_HINT}")
    from .store import StoreError
    from .store.health import check_store_file

    try:  # damaged: refused; read-only: opened read-only (no -wal / -shm files made)
        opened = check_store_file(storage, write=False)
    except StoreError as e:
        _fail(f"{field} {safe_url(storage)!r}: {e}")
    store = _reachable(Store(opened), field)
    return store


def _study_store(study: Optional[str] | Addressed, storage: Optional[str] = None):
    """(study name, its store) for status / report / export / delete / rename (STUDY and --storage
    as given, or ``_addressed`` already): the study must be in the store (the error lists those
    that are)."""
    a = study if isinstance(study, Addressed) else _addressed(study, storage)
    store = _existing_store(a.storage, a.field)
    if a.study is not None and store.study_id(a.study) is None:
        _fail(f"study {a.study!r} is not in {safe_url(a.storage)} (known: {', '.join(store.study_names()) or 'none'})")
    return a.study, store


@app.command()
def run(
    study: Path = typer.Argument(..., help="Study file (YAML)."),
    executor: Optional[str] = typer.Option(None, "--executor", "-e", help="ray (default) or local."),
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
    import signal
    import threading

    # SIGINT means "stop: mark running trials interrupted, exit 130", also for a run started in the
    # background by a non-interactive shell (which would otherwise inherit SIGINT as ignored).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from .signals import install_stop_signals

    install_stop_signals()  # SIGTERM / SIGHUP: as Ctrl-C, exit 143 / 129
    spec = _load_study(study, set_, executor, storage, address)
    from .preflight import run_preflight
    from .spec import SpecError

    if not dry_run and spec.executor.kind == "local" and spec.executor.trial_timeout is not None:
        from .executors.isolation import prestart

        prestart()  # the process its trials train in (so the time limit holds): its start overlaps the preflight
    try:  # data located (downloaded once, here, where download: true) and splits checked: before anything is written
        found = run_preflight(spec, download=not dry_run)
    except SpecError as e:
        _fail(str(e))
    if dry_run:
        out.print(_stored_checks(spec, write=False), highlight=False, markup=False, soft_wrap=True)
        for label, n in found.datasets.items():
            out.print(f"data: {label}: {n} training images found")
        for label in found.downloads:
            out.print(f"data: {label}: not there yet; a real run downloads it first (download: true)")
        out.print(f"device: {_planned_device(spec)}")
        from .budget import budget_lines

        for line in budget_lines(spec, found.first, max(int(spec.executor.per_trial.cpu), 1)):
            out.print(line, highlight=False)
        table = Table(title=f"{spec.name}: trials ({spec.executor.kind} executor, storage {safe_url(spec.storage)})")
        if spec.is_optuna:
            o = spec.search.optuna
            out.print(f"{spec.name}: Optuna {o.sampler} search, {o.n_trials} configurations x {len(spec.seeds)} "
                      f"seeds over {', '.join(o.space)}; nothing written")
            return
        trials = spec.expand()
        for c in ("#", "params", "seed", "key"):
            table.add_column(c)
        for i, t in enumerate(trials, 1):
            table.add_row(str(i), json.dumps(t.params), str(t.seed), t.key)
        out.print(table)
        if spec.collapsed():
            out.print(f"{spec.collapsed()} grid point(s) left out: each trains the same trial config as an earlier "
                      "point (a repeated point, or a setting its method does not have)", highlight=False)
        batching = ""
        if spec.executor.lanes > 1 or spec.executor.batch_seeds > 1:
            from .executors.planning import lane_groups

            groups = lane_groups(trials, spec)
            setting = "lanes" if spec.executor.lanes > 1 else "batch_seeds"
            batching = (f", trained as {len(groups)} batched models (executor.{setting}: "
                        f"{max(spec.executor.lanes, spec.executor.batch_seeds)}; sizes {[len(g) for g in groups]})")
        out.print(f"{len(trials)} trials ({len(spec.configurations())} configurations x {len(spec.seeds)} seeds)"
                  f"{batching}; nothing written")
        if spec.sequential is not None:
            sq = spec.sequential
            out.print(f"sequential: then up to {sq.max_seeds - len(spec.seeds)} more paired seeds, {sq.batch} per look, "
                      f"for each compared configuration of {', '.join(f'{a} vs {b}' for a, b in sq.compare)} "
                      f"(alpha {sq.alpha} over all looks, on {sq.metric}): at most "
                      f"{len(trials) + len({m for pair in sq.compare for m in pair}) * (sq.max_seeds - len(spec.seeds))} trials")
        return
    from .executors import run_local, run_ray
    from .store import Store

    from .executors.execution import stopped_text

    if spec.executor.kind == "ray" and spec.executor.address:
        from .executors.ray_tune import join_cluster

        try:  # before the store is opened: a SQLite file on a multi-node cluster is refused, not created
            join_cluster(spec)
        except SpecError as e:
            _fail(str(e))
    _stored_checks(spec, write=True)
    store = Store(spec.storage)
    runner = run_ray if spec.executor.kind == "ray" else run_local
    _record_invocation(set_, spec.storage)
    try:
        summary = runner(spec, spec_path=str(study), progress=not no_progress)
        _record_run_provenance(store, spec.name)
    except SpecError as e:
        _fail(str(e))
    except KeyboardInterrupt as stop:
        from .signals import exit_code, stop_of

        study_id = store.study_id(spec.name)
        if study_id is not None:  # trials this run had started: FAILED (interrupted), redone by the next run
            from .store.claims import process_drivers  # (never those of other drivers of the study)

            store.claims.fail_running(study_id, stopped_text(stop), "interrupted", drivers=process_drivers())
        why = f"stopped by {stop_of(stop).name}" if stop_of(stop) else "interrupted"
        err.print(f"{why}: every finished trial is in {safe_url(spec.storage)}; run the same command "
                  "again to continue the study", highlight=False)
        raise typer.Exit(exit_code(stop)) from None
    except Exception as e:  # a store or disk fault mid-run (disk full, locked, gone): one line, no traceback
        from .store.faults import describe

        line = describe(e, spec.storage) or (describe(e.__context__, spec.storage) if e.__context__ else None)
        if line is None:
            raise
        err.print(f"error: {line}; every finished trial is kept", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(_summary_table(spec.name, spec.metric.model_dump(), store))
    if summary.interrupted_marked:
        out.print(f"{summary.interrupted_marked} trial(s) left RUNNING by an earlier, interrupted run were redone.")
    if summary.by_others:
        out.print(f"{summary.by_others} trial(s) of this run were run by other drivers of {spec.name!r} at the same time.")
    if summary.ran == 0:
        out.print(f"Nothing new to train: all {summary.skipped} trial(s) of {spec.name} are already finished "
                  f"(COMPLETE or PRUNED) in {safe_url(spec.storage)}.", highlight=False)
    else:
        out.print(f"Ran {summary.ran} ({summary.failed} failed), skipped {summary.skipped} already complete, "
                  f"in {summary.seconds:.1f} s. Results: {safe_url(spec.storage)} (study {spec.name!r}).")
    for e in summary.errors:
        err.print(e)
    _say_tracker_problems(store, spec.name)
    _exit_for_failures(spec, store)


def _stored_checks(spec, write: bool) -> str:
    """What ``run`` checks against the store before it trains, in the same words and with the same
    exit status for ``--dry-run`` (``write=False``: nothing is created, upgraded or written): a
    damaged or read-only SQLite file, a database that cannot be opened or was written by a newer
    vat-study, and a stored study of this name whose task, method or probes (or any finished
    trial's resolved config) differ from this file's. Returns a line on what the store holds."""
    from .executors.planning import check_same_configs, check_same_study
    from .spec import SpecError
    from .store import Store, StoreError
    from .store.engine import check_revision, schema_revision
    from .store.health import check_store_file, sqlite_file

    where = safe_url(spec.storage)
    try:  # a damaged or read-only SQLite file: one line, before anything is written
        check_store_file(spec.storage, write=True)
    except StoreError as e:
        _fail(f"storage {where!r}: {e}")
    path = sqlite_file(spec.storage)
    if not write and path is not None and not path.exists():
        return f"storage: no store at {where} yet; the run creates it"
    store = _reachable(Store(spec.storage, upgrade=write), "storage")
    if not write:
        with store.engine.connect() as conn:
            revision = schema_revision(conn)
        try:
            check_revision(revision)
        except StoreError as e:
            _fail(f"storage {where!r}: {e}")
        if revision is None:
            store.dispose()
            return f"storage: {where} holds no study yet"
    try:
        check_same_study(spec, store)
        study_id = store.study_id(spec.name)
        if study_id is not None:
            check_same_configs(spec, store, study_id)
    except SpecError as e:
        _fail(str(e))
    done = 0 if study_id is None else sum(1 for s in store.trial_statuses(study_id).values() if s in FINISHED)
    store.dispose()
    if study_id is None:
        return f"storage: no study {spec.name!r} in {where} yet"
    return f"storage: the study {spec.name!r} in {where} matches this file ({done} trial(s) finished there)"


def _say_tracker_problems(store, name: str) -> None:
    """One warning line per tracker that did not record every trial of the study (wherever the
    trial ran: a Ray worker's own log is not where a user looks)."""
    from .results import trials_frame
    from .tracking import tracker_lines

    for line in tracker_lines(store.tracker_problems(name), len(trials_frame(store, name))):
        err.print(f"warning: {line}", highlight=False, soft_wrap=True)


def _record_invocation(set_: list[str], storage: str) -> None:
    """The command line (argv, a database password masked) and its ``--set`` overrides, for the
    provenance every trial of this run records (``vat_study.platform.provenance``)."""
    from .provenance import set_invocation

    set_invocation([mask_secrets(a, storage) for a in sys.argv[1:]], parse_set(set_))


def _record_run_provenance(store, name: str) -> None:
    """The provenance of this run (``provenance.run_provenance``) kept with the stored study, as
    ``provenance`` beside its spec (the latest run's; each trial keeps its own in ``versions``)."""
    from .provenance import run_provenance

    stored = store.study_spec(name)
    if stored is not None:
        store.get_or_create_study(name, {**stored, "provenance": run_provenance()})


def _planned_device(spec) -> str:
    """Where this study's trials will train, as far as this machine can tell before Ray starts."""
    import torch

    from ..surface import resolve_config

    device = resolve_config(spec.trial_config({}, spec.seeds[0]))["task"]["device"]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = spec.executor.per_trial.gpu
    if device == "cpu" or (device == "auto" and n == 0):
        why = "task.device cpu" if device == "cpu" else "no CUDA device here"
        asks = f"; executor.per_trial.gpu {gpu}" + (" -> 0 GPUs asked of Ray" if gpu == "auto" else "")
        return f"cpu ({why}{asks if spec.executor.kind == 'ray' else ''})"
    if spec.executor.kind == "ray":
        share = spec.executor.per_trial.auto_gpu if gpu == "auto" else gpu
        return f"cuda ({n} CUDA device(s) here; {share:g} GPU per trial on a cluster with GPUs)"
    return f"cuda ({n} CUDA device(s) here)"


FINISHED = ("COMPLETE", "PRUNED")
"""A trial's finished outcomes: trained to the end, or stopped early by the study's pruner
(``search.optuna.pruner``), which is how a pruned search is meant to end. Any other status after
a run (FAILED, or RUNNING left by an interrupted driver) makes ``run`` exit 1."""


def _exit_for_failures(spec, store) -> None:
    """Say how many trials the pruner stopped; exit 1, naming them, when the study has trials
    that did not finish (FAILED or interrupted: not COMPLETE or PRUNED) after this run."""
    from .results import trials_frame
    from .store import failure_line

    study_id = store.study_id(spec.name)
    df = trials_frame(store, spec.name) if study_id is not None else None
    if df is None or df.empty:
        return
    pruned = int((df["status"] == "PRUNED").sum())
    if pruned:
        out.print(f"{pruned} of {len(df)} trial(s) of {spec.name!r} were pruned (stopped early by "
                  f"search.optuna.pruner: finished, not failed; vat-study status {spec.name} shows where).",
                  highlight=False)
    bad = df[~df["status"].isin(FINISHED)]
    planned = spec.planned_config_keys()  # a grid: trials it no longer holds are not this run's
    if planned is not None:
        outside = bad[~bad["config_key"].isin(planned)]
        if not outside.empty:
            err.print(f"{len(outside)} trial(s) of {spec.name!r} that did not complete are no longer in its search "
                      "and are left as they are (the report lists them)", highlight=False)
        bad = bad[bad["config_key"].isin(planned)]
    if bad.empty:
        return
    err.print(f"{len(bad)} of {len(df)} trial(s) of {spec.name!r} did not complete:", highlight=False)
    from .display import trial_text

    for _, t in bad.head(20).iterrows():
        err.print(f"  {trial_text(t, df)}: {t['status']}, " + failure_line(t.get("failure_kind"), t["error"]),
                  highlight=False, soft_wrap=True, markup=False)
    if len(bad) > 20:
        err.print(f"  ... and {len(bad) - 20} more (vat-study status {spec.name})", highlight=False)
    err.print("Run the same command again to redo them.", highlight=False)
    raise typer.Exit(1)


@app.command()
def status(
    study: Optional[str] = typer.Argument(None, help="Study name or study file (default: list all studies)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
) -> None:
    """Studies in the store, or one study's trials by status."""
    from .results import trials_frame

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
    out.print(_summary_table(study, spec_json.get("metric") or {}, store))
    df = trials_frame(store, study)
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    out.print("trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("COMPLETE", "PRUNED", "RUNNING", "FAILED")))
    from .display import pruned_text, trial_text
    from .store.frames import pruned_at

    metric = (spec_json.get("metric") or {}).get("name", "val_error")
    at = pruned_at(store, study, metric) if counts.get("PRUNED") else {}
    for _, r in df[df["status"] == "PRUNED"].iterrows() if not df.empty else ():
        out.print(f"PRUNED {trial_text(r, df)}: {pruned_text(at.get(int(r['trial_id'])), metric)}", highlight=False,
                  markup=False, soft_wrap=True)
    for _, r in df[df["status"] == "FAILED"].iterrows() if not df.empty else ():
        last = (r["error"] or "").strip().splitlines()[-1:] or [""]
        err.print(f"FAILED {trial_text(r, df)} ({r.get('failure_kind') or 'error'}): {last[0]}", highlight=False,
                  markup=False, soft_wrap=True)
    if spec_json.get("sequential"):
        out.print(_sequential_table(study, spec_json, df))
    _check_optuna_records(store, study, spec_json, df)


def _check_optuna_records(store, study: str, spec_json: dict, df) -> None:
    """Say where the study's Optuna study (what optuna-dashboard shows) and the store disagree."""
    from .store.twin import twin_disagreements

    problems = twin_disagreements(store, study, spec_json, df)
    if not problems:
        return
    grid = not (spec_json.get("search") or {}).get("optuna")
    err.print(f"warning: the Optuna study {study!r} disagrees with the store on {len(problems)} configuration(s); "
              + ("the next `vat-study run` of the study rebuilds it from the store" if grid else
                 "the store is what status and the report read"), highlight=False, soft_wrap=True)
    for line in problems[:10]:
        err.print(f"  {line}", highlight=False, soft_wrap=True)
    if len(problems) > 10:
        err.print(f"  ... and {len(problems) - 10} more", highlight=False)


def _sequential_table(study: str, spec_json: dict, df) -> Table:
    """The study's sequential comparisons as they stand (``vat_study.platform.group_sequential``)."""
    from .group_sequential import study_block_comparisons

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


@app.command()
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
    from .results import trials_frame
    from .store.frames import metrics_frame, provenance_frame

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
              highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def report(
    study: str = typer.Argument(..., help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder (default results/<study>/)."),
    pdf: bool = typer.Option(False, "--pdf", help="Each figure as PDF too, beside its PNG."),
) -> None:
    """The study's answer and the figures and tables its factors call for: results/<study>/report.md
    and report.html (one self-contained page), figures as PNG, tables as CSV."""
    addressed = _addressed(study, storage)
    _check_target(out_dir or _study_folder(addressed.study, "--out"), "--out" if out_dir else "the report folder",
                  folder=True)
    study, store = _study_store(addressed)
    from vat_study.analysis.report import write_report

    try:
        path, skipped = write_report(store.url, study, out_dir, pdf=pdf)  # the read-only URL for a read-only store
    except OSError as e:  # (a full disk under the report's folder)
        err.print(f"error: writing the report into {str(out_dir or _study_folder(study, '--out'))!r} failed at "
                  f"{str(e.filename or '?')!r}: {e.strerror or e}; run it again once there is room",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(f"report: {path} and {path.with_name('report.html')}"
              + (f" ({len(skipped)} artifact(s) skipped for lack of data; reasons at its end)" if skipped else ""),
              highlight=False, soft_wrap=True)


@app.command()
def compare(
    study_a: str = typer.Argument(..., help="Study A: a name, or its study file (its name and storage)."),
    study_b: str = typer.Argument(..., help="Study B: a name, or its study file."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP + " Both studies' store."),
    storage_b: Optional[str] = typer.Option(None, "--storage-b",
                                            help="Study B's store where it is not A's (default: as for A)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Folder (default results/compare_<A>_vs_<B>/)."),
    pdf: bool = typer.Option(False, "--pdf", help="Each figure as PDF too, beside its PNG."),
) -> None:
    """Two studies side by side: each method both ran at its best configuration in each, B - A
    paired by seed where the seeds match, and their curves; written like a report."""
    a = _addressed(study_a, storage)
    b = _addressed(study_b, storage_b or storage)
    target = out_dir or _study_folder(f"compare_{a.study}_vs_{b.study}", "--out")
    _check_target(target, "--out" if out_dir else "the comparison folder", folder=True)
    name_a, store_a = _study_store(a)
    name_b, store_b = _study_store(b)
    from vat_study.analysis.compare_studies import NothingInCommon, write_comparison

    try:
        path = write_comparison(store_a.url, name_a, store_b.url, name_b, target, pdf=pdf)
    except NothingInCommon as e:
        _fail(f"STUDY_B {name_b!r}: {e}")
    except OSError as e:  # (a full disk under the comparison's folder)
        err.print(f"error: writing the comparison into {str(target)!r} failed at {str(e.filename or '?')!r}: "
                  f"{e.strerror or e}; run it again once there is room", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(f"comparison: {path} and {path.with_name('report.html')}", highlight=False, soft_wrap=True)


@app.command()
def delete(
    study: str = typer.Argument(..., help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a study from the store: its trials, their metrics, its claims and its Optuna study,
    in one transaction; nothing else (files under results/ stay)."""
    import click

    from .results import trials_frame
    from .store.manage import StudyInUse, delete_study

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
              f"Files under results/{study}/ (reports, models) are left as they are.", highlight=False, markup=False,
              soft_wrap=True)


@app.command()
def rename(
    old: str = typer.Argument(..., help="The study's name, or its study file."),
    new: str = typer.Argument(..., help="Its new name."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
) -> None:
    """Rename a study in the store (and its Optuna study), in one transaction; files under
    results/ are not moved."""
    from .spec import check_study_name
    from .store.manage import StudyInUse, rename_study

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
              markup=False, soft_wrap=True)


@app.command()
def defaults(method: str = typer.Option("vat", "--method", "-m", help="Show this method's settings.")) -> None:
    """Print the fully resolved default trial config (YAML), with the settings of one method."""
    from ..surface import ConfigError, resolve_config

    try:
        sys.stdout.write(yaml.safe_dump(resolve_config({"method": {"name": method}}), sort_keys=False))
    except ConfigError as e:
        _fail(str(e).replace("method.name", "--method"))


if __name__ == "__main__":
    app()
