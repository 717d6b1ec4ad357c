"""One orchestration of a study run for every executor (``run_study``): plan (refuse an edited
study, mark what a killed run left RUNNING), register this run as a driver, then either the grid
(the trials still to run, the sequential looks, the grid's Optuna records) or the Optuna loop (ask,
run, tell; ``search.optuna_loop``), with the progress display. An executor (``Executor``) says
only how a list of planned trials is claimed and trained: in this process (``local``) or as Ray
Tune trials (``ray_tune``). Optuna is wired here once, whichever executor runs the trials."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..display import Progress
from ..spec import PlannedTrial, StudySpec
from ..store import Store
from ..store.claims import Driver
from .execution import Claim, run_shared
from .planning import RunSummary, plan
from .records import sync_grid
from .search import optuna_loop
from .looks import needed_trials, run_sequential


Results = Mapping[str, Mapping[str, Any] | None] | None
"""What an executor's ``run`` returns: trial key -> final metrics (None: failed) of the trials it
ran, or None (``run_shared`` reads them back from the store)."""


class Executor(Protocol):
    """How a study's trials run. ``run_study`` calls ``prepare()`` before the store is opened,
    ``open(store, study_id)`` once the study is planned, ``start()`` once before the first trial
    (only if there is one to run), ``run(trials, claim)`` for each list of planned trials (it
    claims and trains what it can; ``execution.run_shared`` waits for and takes over what other
    drivers hold), ``round_size()`` for the number of Optuna configurations asked at a time (None:
    ``search.ask_batch``), and ``close()`` at the end, whatever happened."""

    def prepare(self) -> None: ...

    def open(self, store: Store, study_id: int) -> None: ...

    def start(self) -> None: ...

    def run(self, trials: list[PlannedTrial], claim: Claim) -> Results: ...

    def round_size(self) -> int | None: ...

    def close(self) -> None: ...


def driver_for(spec: StudySpec, store: Store, study_id: int) -> Driver:
    """This run as a driver of the study, with the study's heartbeat settings."""
    return Driver(store.claims, study_id, spec.executor.heartbeat_every, spec.executor.stale_after)


def _start(spec: StudySpec, executor: Executor, summary: RunSummary) -> None:
    """Before the first trial: the study's trackers set up once, here in the driver (their
    problems said with the run's), then the executor started."""
    if spec.tracking is not None:
        from ..tracking import prepare

        summary.errors += prepare(spec.tracking.model_dump(exclude_none=True), spec.name)
    executor.start()


def run_study(spec: StudySpec, executor: Executor, *, spec_path: str | None = None,
              progress: bool = True) -> RunSummary:
    """Run ``spec`` to completion, its trials run by ``executor``; several drivers of one study
    share its trials (``store.claims``). Returns what this run did."""
    t0 = time.time()
    try:
        executor.prepare()
        store = Store(spec.storage)
        p = plan(spec, store, spec_path)
        summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
        executor.open(store, p.study_id)
        with driver_for(spec, store, p.study_id) as driver:
            def run_todo(todo: list[PlannedTrial]):
                return run_shared(store, p.study_id, todo, driver, executor.run)

            if not spec.is_optuna:
                summary.planned, summary.skipped = len(p.todo) + len(p.done), len(p.done)
                if p.todo or (spec.sequential is not None and needed_trials(spec, store, p.study_id)):
                    _start(spec, executor, summary)
                    if p.todo:
                        with Progress(spec, store, p.study_id, summary.planned, len(p.done), enabled=progress):
                            results, summary.by_others = run_todo(p.todo)
                        summary.ran, summary.failed = len(results), sum(m is None for m in results.values())
                    if spec.sequential is not None:  # more paired seeds until each comparison is decided
                        n, problems = run_sequential(spec, store, p.study_id, run_todo)
                        summary.ran += n
                        summary.errors += problems
                sync_grid(spec, store, p.study_id)  # every finished configuration, any driver's, in its Optuna records
            else:
                _start(spec, executor, summary)
                total = spec.search.optuna.n_trials * len(spec.seeds)  # type: ignore[union-attr]
                with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)),
                              enabled=progress):
                    optuna_loop(spec, store, p.study_id, driver, run_todo, summary, batch=executor.round_size())
        summary.seconds = time.time() - t0
        return summary
    finally:
        executor.close()
