"""The in-process executor: the same study, trial after trial, in this Python process."""

from __future__ import annotations

import time

from ..spec import StudySpec
from ..store import Store
from ..display import Progress
from .execution import run_configurations, run_planned
from .planning import RunSummary, lane_groups, plan
from .search import ask_batch, begin_optuna, suggest


def run_local(spec: StudySpec, *, spec_path: str | None = None, progress: bool = True) -> RunSummary:
    store = Store(spec.storage)
    p = plan(spec, store, spec_path)
    summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
    t0 = time.time()
    if not spec.is_optuna:
        summary.planned, summary.skipped = len(p.todo) + len(p.done), len(p.done)
        with Progress(spec, store, p.study_id, summary.planned, len(p.done), enabled=progress):
            for group in lane_groups(p.todo, spec):
                for metrics in run_planned(spec, store, p.study_id, group):
                    summary.ran += 1
                    summary.failed += metrics is None
    else:
        import optuna

        study, remaining = begin_optuna(spec, summary)
        total = summary.planned * len(spec.seeds)
        with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)), enabled=progress):
            while remaining > 0:  # with lanes, several configurations per ask (search.ask_batch)
                asked = [study.ask() for _ in range(min(ask_batch(spec), remaining))]
                points = [suggest(trial, spec) for trial in asked]
                values = run_configurations(spec, store, p.study_id, points, [t.number for t in asked])
                for trial, value in zip(asked, values):
                    if isinstance(value, RuntimeError):
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        summary.failed += 1
                        summary.errors.append(f"optuna trial {trial.number}: {value}")
                    else:
                        study.tell(trial, value)
                    summary.ran += 1
                remaining -= len(asked)
    summary.seconds = time.time() - t0
    return summary
