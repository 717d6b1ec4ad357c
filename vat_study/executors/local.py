"""The in-process executor: the same study, trial after trial, in this Python process."""

from __future__ import annotations

import time

from ..spec import StudySpec
from ..store import Store
from ..display import Progress
from .execution import run_configuration, run_planned
from .planning import RunSummary, plan, seed_groups
from .search import begin_optuna, suggest


def run_local(spec: StudySpec, *, spec_path: str | None = None, progress: bool = True) -> RunSummary:
    store = Store(spec.storage)
    p = plan(spec, store, spec_path)
    summary = RunSummary(spec.name, interrupted_marked=p.interrupted)
    t0 = time.time()
    if not spec.is_optuna:
        summary.planned, summary.skipped = len(p.todo) + len(p.done), len(p.done)
        with Progress(spec, store, p.study_id, summary.planned, len(p.done), enabled=progress):
            for group in seed_groups(p.todo, spec.executor.batch_seeds):
                for metrics in run_planned(spec, store, p.study_id, group):
                    summary.ran += 1
                    summary.failed += metrics is None
    else:
        import optuna

        study, remaining = begin_optuna(spec, summary)
        total = summary.planned * len(spec.seeds)
        with Progress(spec, store, p.study_id, total, len(store.trial_statuses(p.study_id)), enabled=progress):
            for _ in range(remaining):
                trial = study.ask()
                params = suggest(trial, spec)
                try:
                    value = run_configuration(spec, store, p.study_id, params, trial.number)
                except RuntimeError as e:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    summary.failed += 1
                    summary.errors.append(f"optuna trial {trial.number}: {e}")
                else:
                    study.tell(trial, value)
                summary.ran += 1
    summary.seconds = time.time() - t0
    return summary
