"""One orchestration of a study run for every executor (``orchestrate``): plan (mark what a
killed run left RUNNING, split the trials into those to run and those done), register this run as
a driver, then either the grid (the trials still to run, the sequential looks, the grid's Optuna
records) or the Optuna loop (ask, run, tell; ``search.optuna_loop``), with the progress display.
An executor (``Executor``; the registry: ``registry``) says only how a list of planned trials is
claimed and trained: in this process (``local``) or as Ray Tune trials (``ray_tune``). Optuna is
wired here once, whichever executor runs the trials. The use case around it (preflight, the
store's health and the study's identity, provenance, stop signals, the exit outcome) is
``vat_study.platform.study.run_study``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..display import Progress
from ..spec import PlannedTrial, StudySpec
from ..store import Store
from ..store.claims import Driver
from .execution import Claim, run_shared
from .looks import needed_trials, run_sequential
from .planning import RunSummary, plan
from .records import sync_grid
from .search import optuna_loop

Results = Mapping[str, Mapping[str, Any] | None] | None
"""What an executor's ``run`` returns: trial key -> final metrics (None: failed) of the trials it
ran, or None (``run_shared`` reads them back from the store)."""


class Executor(Protocol):
    """How a study's trials run. ``run_study`` calls ``prepare()`` before the preflight (nothing is
    written yet), ``connect()`` after it and before the store is opened, ``open(store,
    study_id)`` once the study is planned, ``start()`` once before the first trial (only if there
    is one to run), ``run(trials, claim)`` for each list of planned trials (it claims and trains
    what it can; ``execution.run_shared`` waits for and takes over what other drivers hold),
    ``round_size()`` for the number of Optuna configurations asked at a time (None:
    ``search.ask_batch``), and ``close()`` at the end, whatever happened. ``ExecutorBase`` has
    each but ``run`` doing nothing."""

    def prepare(self) -> None: ...

    def connect(self) -> None: ...

    def open(self, store: Store, study_id: int) -> None: ...

    def start(self) -> None: ...

    def run(self, trials: list[PlannedTrial], claim: Claim) -> Results: ...

    def round_size(self) -> int | None: ...

    def close(self) -> None: ...


class ExecutorBase:
    """An executor's hooks, each doing nothing but ``run``, which a subclass gives."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec

    def prepare(self) -> None:
        pass

    def connect(self) -> None:
        pass

    def open(self, store: Store, study_id: int) -> None:
        self.store, self.study_id = store, study_id

    def start(self) -> None:
        pass

    def run(self, trials: list[PlannedTrial], claim: Claim) -> Results:
        raise NotImplementedError

    def round_size(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def driver_for(spec: StudySpec, store: Store, study_id: int) -> Driver:
    """This run as a driver of the study, with the study's heartbeat settings."""
    return Driver(store.claims, study_id, spec.executor.heartbeat_every, spec.executor.stale_after)


def _start(spec: StudySpec, executor: Executor, summary: RunSummary) -> None:
    """Before the first trial: the study's trackers set up once, here in the driver (their
    problems said with the run's), then the executor started."""
    if spec.tracking:
        from ..tracking import prepare

        summary.errors += prepare(spec.tracking, spec.name)
    executor.start()


def _grid(spec: StudySpec, executor: Executor, store: Store, p, run_todo, summary: RunSummary,
          progress: bool) -> None:
    """A grid study (or one without search): the trials still to run, then the sequential looks."""
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


def orchestrate(spec: StudySpec, executor: Executor, store: Store, *, spec_path: str | None = None,
                progress: bool = True) -> RunSummary:
    """Run ``spec`` to completion in ``store`` (opened, its identity checked), its trials run by
    ``executor`` (prepared; closed by the caller); several drivers of one study share its trials
    (``store.claims``). Returns what this run did."""
    t0 = time.time()
    p = plan(spec, store, spec_path)
    summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
    executor.open(store, p.study_id)
    with driver_for(spec, store, p.study_id) as driver:
        def run_todo(todo: list[PlannedTrial]):
            return run_shared(store, p.study_id, todo, driver, executor.run)

        if not spec.is_optuna:
            _grid(spec, executor, store, p, run_todo, summary, progress)
        else:
            _start(spec, executor, summary)
            total = spec.search.optuna.n_trials * len(spec.seeds)  # type: ignore[union-attr]
            with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)), enabled=progress):
                optuna_loop(spec, store, p.study_id, driver, run_todo, summary, batch=executor.round_size())
    summary.seconds = time.time() - t0
    return summary
