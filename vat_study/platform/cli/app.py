"""The command line's shared parts: the typer app, its two consoles (text, never Rich markup),
``_fail`` (one ``error:`` line, exit 2), and how STUDY and ``--storage`` address a study and its
store for the commands that read one (``_addressed``, ``_study_store``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ...common.yamlio import safe_load

# Nothing heavy at the top: --help, --version, status and export import neither torch nor Ray
# (tests/test_import_boundary.py); each command imports what it needs (the store: SQLAlchemy
# and pandas; the science: vat_study.surface, torch on first use).


def parse_set(items: list[str]) -> dict[str, Any]:
    """``spec.parse_set`` (the study-file module, imported when an override is given)."""
    from ..spec import parse_set as parse

    return parse(items) if items else {}


def safe_url(url: str) -> str:
    """``store.safe_url``: the URL without its password."""
    from ..store.urls import safe_url as safe

    return safe(url)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter studies and ablations of VAT.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:  # the installed release, with the git commit (and .dirty) when run from a checkout
        from ..provenance import package_version

        typer.echo(f"vat-study {package_version()}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Hyperparameter studies and ablations of VAT."""


# What is printed is text: a bracket in a message or a table cell is never Rich markup (only _fail's
# "error:" prefix is styled, explicitly). A line is never broken by Rich (soft_wrap): piped to a file
# or grep, "data: svhn (PATH): 2200 training images found" stays one line whatever PATH's length.
err = Console(stderr=True, markup=False, soft_wrap=True)
out = Console(markup=False, soft_wrap=True)


def _fail(message: str) -> None:
    """One ``error:`` line and exit 2. The message is printed as written: a bracket in it (``pip
    install 'vat-study[trackers]'``, a grid ``[{eps: [1, 2]}]``) is text, never Rich markup."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(2)


def _summary_table(name: str, metric: Mapping[str, Any], df) -> Table:
    from ..display import status_rows

    m, mode = metric.get("name", "val_error"), metric.get("mode", "min")
    pct = " (errors in %)" if m.endswith("_error") else ""
    table = Table(title=f"{name}: {m} ({mode}) by configuration, mean +- sd over seeds{pct}",
                  caption="* the best configuration by " + m)
    if df is None or df.empty:
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
    from ..store_access import Refusal, reachable

    try:
        return reachable(store, field)
    except Refusal as e:
        _fail(str(e))


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
    from ..spec import check_study_name

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
    from ..store.urls import STORAGE_ENV, check_storage_url, default_storage

    field = "--storage"
    if study is not None and Path(study).is_file():
        from ..spec import check_study_name

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

    from ..store import Store
    from ..store.urls import check_storage_url

    try:
        check_storage_url(storage)
    except ValueError as e:
        _fail(f"{field} {safe_url(storage)!r}: {e}")
    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        _fail(f"{field} {safe_url(storage)!r}: no store there yet; {NO_STORE_HINT}")
    from ..store import StoreError
    from ..store.health import check_store_file

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
