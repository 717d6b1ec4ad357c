"""The in-process executor: the same study, trial after trial, in this Python process."""

from __future__ import annotations

import time

from ..spec import StudySpec
from ..store import Store
from ..display import Progress
from .execution import run_planned
from .planning import RunSummary, plan
from .search import ask_batch, ask_run_tell, begin_optuna
from .sequential import run_sequential


def run_local(spec: StudySpec, *, spec_path: str | None = None, progress: bool = True) -> RunSummary:
    store = Store(spec.storage)
    p = plan(spec, store, spec_path)
    summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
    t0 = time.time()
    if not spec.is_optuna:
        summary.planned, summary.skipped = len(p.todo) + len(p.done), len(p.done)
        with Progress(spec, store, p.study_id, summary.planned, len(p.done), enabled=progress):
            results = run_planned(spec, store, p.study_id, p.todo)
        summary.ran, summary.failed = len(results), sum(m is None for m in results)
        if spec.sequential is not None:  # more paired seeds until each comparison is decided
            n, problems = run_sequential(spec, store, p.study_id, lambda todo: run_planned(spec, store, p.study_id, todo))
            summary.ran += n
            summary.errors += problems
    else:
        study, remaining = begin_optuna(spec, summary)
        total = summary.planned * len(spec.seeds)
        with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)), enabled=progress):
            while remaining > 0:  # with lanes, several configurations per ask (search.ask_batch)
                k = min(ask_batch(spec), remaining)
                ask_run_tell(spec, store, p.study_id, study, k,
                             lambda todo: run_planned(spec, store, p.study_id, todo), summary)
                remaining -= k
    summary.seconds = time.time() - t0
    return summary
