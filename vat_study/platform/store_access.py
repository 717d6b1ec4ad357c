"""The store a run writes, checked before anything trains, in the same words for the run and its dry
run (which creates, upgrades and writes nothing): a damaged or read-only SQLite file, a database
that cannot be opened or was written by a newer vat-study, and a stored study of this name that
this file would not continue unchanged (``executors.planning.check_identity``). A problem is a
``Refusal`` (one line; the run exits 2 having written nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import SpecError, StudySpec
from .store import Store, StoreError
from .store.urls import mask_secrets, safe_url

FINISHED = ("COMPLETE", "PRUNED")
"""A trial's finished outcomes: trained to the end, or stopped early by the study's pruner
(``search.optuna.pruner``), which is how a pruned search is meant to end."""


class Refusal(Exception):
    """Input refused before anything ran (exit status 2): ``str(e)`` is the one message, ``cause``
    the exception behind it (a ``SpecError`` for the study's identity, a store's error)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def reachable(store: Store, field: str) -> Store:
    """``store``, after one connection: an unreachable or refusing database is a ``Refusal``
    naming ``field`` (where the URL came from) and the URL without its password."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with store.engine.connect():
            pass
    except StoreError as e:
        raise Refusal(f"{field} {safe_url(store.url)!r}: {e}", e) from None
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()[0]
        raise Refusal(f"{field} {safe_url(store.url)!r}: cannot open the database "
                      f"({mask_secrets(reason, store.url)})", e) from None
    return store


@dataclass
class Stored:
    """What the store holds for a study: the store (None: not opened, for a dry run where there
    is none yet), the study's id (None: new) and a line saying so."""

    store: Store | None
    study_id: int | None
    line: str


def _revision_line(spec: StudySpec, store: Store, where: str) -> str | None:
    """For a dry run: the schema the database was written with must be one this version reads;
    a line when it holds no study yet."""
    from .store.engine import check_revision, schema_revision

    with store.engine.connect() as conn:
        revision = schema_revision(conn)
    try:
        check_revision(revision)
    except StoreError as e:
        raise Refusal(f"storage {where!r}: {e}", e) from None
    return f"storage: {where} holds no study yet" if revision is None else None


def open_store(spec: StudySpec, write: bool) -> Stored:
    """The study's store, checked (see the module docstring); ``write=False`` (a dry run):
    nothing is created, upgraded or written, and the store is closed again."""
    from .executors.planning import check_identity
    from .store.health import check_store_file, sqlite_file

    where = safe_url(spec.storage)
    try:  # a damaged or read-only SQLite file: one line, before anything is written
        check_store_file(spec.storage, write=True)
    except StoreError as e:
        raise Refusal(f"storage {where!r}: {e}", e) from None
    path = sqlite_file(spec.storage)
    if not write and path is not None and not path.exists():
        return Stored(None, None, f"storage: no store at {where} yet; the run creates it")
    store = reachable(Store(spec.storage, upgrade=write), "storage")
    if not write:
        line = _revision_line(spec, store, where)
        if line is not None:
            store.dispose()
            return Stored(None, None, line)
    try:
        study_id = check_identity(spec, store)
    except SpecError as e:
        raise Refusal(str(e), e) from None
    if study_id is None:
        line = f"storage: no study {spec.name!r} in {where} yet"
    else:
        done = sum(1 for s in store.trial_statuses(study_id).values() if s in FINISHED)
        line = f"storage: the study {spec.name!r} in {where} matches this file ({done} trial(s) finished there)"
    if not write:
        store.dispose()
        store = None
    return Stored(store, study_id, line)
