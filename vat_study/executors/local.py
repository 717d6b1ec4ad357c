"""The in-process executor: the same study, trial after trial, in this Python process. Several
such drivers (and Ray drivers) of one study on one store share its trials (``store.claims``).
Every study is also an Optuna study in the store's database (``records``)."""

from __future__ import annotations

import time

from ..spec import StudySpec
from ..store import Store
from ..store.claims import Driver
from ..display import Progress
from .execution import run_planned, run_shared
from .planning import RunSummary, plan
from .records import sync_grid
from .search import open_study, optuna_loop
from .sequential import run_sequential


def driver_for(spec: StudySpec, store: Store, study_id: int) -> Driver:
    """This run as a driver of the study, with the study's heartbeat settings."""
    return Driver(store, study_id, spec.executor.heartbeat_every, spec.executor.stale_after)


def run_local(spec: StudySpec, *, spec_path: str | None = None, progress: bool = True) -> RunSummary:
    store = Store(spec.storage)
    p = plan(spec, store, spec_path)
    summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
    t0 = time.time()
    with driver_for(spec, store, p.study_id) as driver:
        opened: list = []

        def record(group=None):  # grid studies: finished configurations into the Optuna study, as they finish
            if not spec.is_optuna:
                opened[:] = opened or [open_study(spec)]
                sync_grid(spec, store, p.study_id, None if group is None else [t.params for t in group], opened[0])

        def run_todo(todo):
            return run_shared(store, p.study_id, todo, driver, lambda trials, claim: run_planned(
                spec, store, p.study_id, trials, claim, after_group=record))

        if not spec.is_optuna:
            summary.planned, summary.skipped = len(p.todo) + len(p.done), len(p.done)
            with Progress(spec, store, p.study_id, summary.planned, len(p.done), enabled=progress):
                results, summary.by_others = run_todo(p.todo)
            summary.ran, summary.failed = len(results), sum(m is None for m in results.values())
            if spec.sequential is not None:  # more paired seeds until each comparison is decided
                n, problems = run_sequential(spec, store, p.study_id, lambda todo: run_todo(todo))
                summary.ran += n
                summary.errors += problems
            record()  # every configuration finished by any driver, this run's or an earlier one's
        else:
            total = spec.search.optuna.n_trials * len(spec.seeds)  # type: ignore[union-attr]
            with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)), enabled=progress):
                optuna_loop(spec, store, p.study_id, driver, run_todo, summary)
    summary.seconds = time.time() - t0
    return summary
