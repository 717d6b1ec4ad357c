"""Managing the studies of a store: delete one, rename one (``vat-study delete`` / ``rename``).

Each is one transaction over both records of a study: vat-study's (the study row, its trials,
their per-step and final metrics, its drivers' claims) and its Optuna twin in the same database
(Optuna's ``studies`` row and every row of its trials and attributes), so a failure leaves the
store as it was. Nothing else in the store is touched, and no file: a study's folder under
``results/``, saved models and tracker runs stay where they are.

Optuna's public API deletes a study (``optuna.delete_study``) only in a transaction of its own
and renames none, so both are done here in SQL on Optuna's RDB schema (its ``studies`` table,
with ``study_name``, and its ``trials`` table; no Optuna module is imported): every table whose
foreign key points at those two is found by reflection, so a table a later Optuna adds is
covered without a list here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import MetaData, Table, delete, select, update
from sqlalchemy.engine import Connection

from .claims import STALE_AFTER
from .repository import Store
from .schema import DriverRow, FinalMetricRow, MetricRow, StudyRow, TrialRow

OPTUNA_STUDIES, OPTUNA_TRIALS = "studies", "trials"
"""The tables of Optuna's RDB storage that hold its studies and its trials."""


class StudyInUse(RuntimeError):
    """A live driver is running the study: deleting or renaming it would pull the store out from under it."""


@dataclass
class Removed:
    trials: int = 0
    metric_rows: int = 0
    drivers: int = 0
    optuna_trials: int = 0


def live_drivers(store: Store, name: str) -> list[str]:
    """``host pid`` of each live driver of the study (heartbeat fresher than its ``stale_after``)."""
    sid = store.study_id(name)
    if sid is None:
        return []
    spec = store.study_spec(name) or {}
    stale = float(((spec.get("executor") or {}).get("stale_after")) or STALE_AFTER)
    dead = store.claims.dead_drivers(sid, stale)
    drivers = store.claims.drivers_frame(sid)
    return [f"{r.host} pid {r.pid}" for r in drivers.itertuples() if r.token not in dead]


def _refuse_in_use(store: Store, name: str, what: str) -> None:
    live = live_drivers(store, name)
    if live:
        raise StudyInUse(f"study {name!r} is being run now by {len(live)} driver(s) ({', '.join(live)}); stop them "
                         f"(or let them finish) before you {what} it")


def _optuna_tables(conn: Connection) -> tuple[Table, Table, list[tuple[Table, str]], list[tuple[Table, str]]] | None:
    """Optuna's studies and trials tables and the tables (with their column) that point at each;
    None where the database holds no Optuna storage."""
    meta = MetaData()
    meta.reflect(bind=conn)
    studies, trials = meta.tables.get(OPTUNA_STUDIES), meta.tables.get(OPTUNA_TRIALS)
    if studies is None or "study_name" not in studies.c:
        return None
    of_trials, of_studies = [], []
    for table in meta.tables.values():
        for fk in table.foreign_keys:
            target = fk.column.table.name
            if target == OPTUNA_TRIALS and table is not trials:
                of_trials.append((table, fk.parent.name))
            elif target == OPTUNA_STUDIES and table is not trials:
                of_studies.append((table, fk.parent.name))
    return studies, trials, of_trials, of_studies


def _delete_optuna(conn: Connection, name: str) -> int:
    """Delete the Optuna study ``name`` and everything of it; returns its number of trials."""
    tables = _optuna_tables(conn)
    if tables is None:
        return 0
    studies, trials, of_trials, of_studies = tables
    ids = list(conn.scalars(select(studies.c.study_id).where(studies.c.study_name == name)))
    if not ids or trials is None:
        return 0
    trial_ids = select(trials.c.trial_id).where(trials.c.study_id.in_(ids))
    for table, column in of_trials:
        conn.execute(delete(table).where(table.c[column].in_(trial_ids)))
    n = conn.execute(delete(trials).where(trials.c.study_id.in_(ids))).rowcount
    for table, column in of_studies:
        conn.execute(delete(table).where(table.c[column].in_(ids)))
    conn.execute(delete(studies).where(studies.c.study_id.in_(ids)))
    return n


def delete_study(store: Store, name: str) -> Removed:
    """Remove the study ``name`` (KeyError if the store has none of that name) with its trials,
    their metrics, its drivers' claims and its Optuna twin, in one transaction."""
    _refuse_in_use(store, name, "delete")
    out = Removed()
    with store.write() as s:
        sid = s.scalar(select(StudyRow.id).where(StudyRow.name == name))
        if sid is None:
            raise KeyError(name)
        trial_ids = select(TrialRow.id).where(TrialRow.study_id == sid)
        out.metric_rows = s.execute(delete(MetricRow).where(MetricRow.trial_id.in_(trial_ids))).rowcount
        out.metric_rows += s.execute(delete(FinalMetricRow).where(FinalMetricRow.trial_id.in_(trial_ids))).rowcount
        out.trials = s.execute(delete(TrialRow).where(TrialRow.study_id == sid)).rowcount
        out.drivers = s.execute(delete(DriverRow).where(DriverRow.study_id == sid)).rowcount
        s.execute(delete(StudyRow).where(StudyRow.id == sid))
        out.optuna_trials = _delete_optuna(s.connection(), name)
    return out


def rename_study(store: Store, old: str, new: str) -> None:
    """Rename the study ``old`` to ``new`` (the study row, the name in its stored spec, its Optuna
    twin) in one transaction. KeyError: no study ``old``; ValueError: ``new`` is taken."""
    _refuse_in_use(store, old, "rename")
    with store.write() as s:
        row = s.scalar(select(StudyRow).where(StudyRow.name == old).with_for_update())
        if row is None:
            raise KeyError(old)
        if s.scalar(select(StudyRow.id).where(StudyRow.name == new)) is not None:
            raise ValueError(f"the store already has a study {new!r}")
        conn = s.connection()
        tables = _optuna_tables(conn)
        if tables is not None:
            studies = tables[0]
            if conn.scalar(select(studies.c.study_id).where(studies.c.study_name == new)) is not None:
                raise ValueError(f"the store already has an Optuna study {new!r}")
            conn.execute(update(studies).where(studies.c.study_name == old).values(study_name=new))
        row.name = new
        row.spec = {**(row.spec or {}), "name": new}
