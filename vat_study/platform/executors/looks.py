"""Scheduling the seeds of a study's sequential comparisons (``sequential:``; the test is
``vat_study.platform.group_sequential``): after the grid's own trials (the first look), add ``batch`` paired
seeds to the chosen configurations of every undecided comparison, run them on the study's
executor like any trials (as lanes where ``executor.lanes`` allows), look again, and stop each
comparison when it is decided or has ``max_seeds``. Everything is read back from the store, so
a rerun continues where the last one stopped."""

from __future__ import annotations

from collections.abc import Callable

from ..group_sequential import RUNNING, Comparison, study_block_comparisons
from ..results import trials_frame
from ..spec import PlannedTrial, StudySpec
from ..store import Store
from ...common.yamlio import digest


def study_comparisons(spec: StudySpec, store: Store) -> list[Comparison]:
    """Where each comparison of ``spec.sequential`` stands in ``store`` now."""
    assert spec.sequential is not None
    return study_block_comparisons(trials_frame(store, spec.name), spec.model_dump(mode="json"))


def needed_trials(spec: StudySpec, store: Store, study_id: int) -> list[PlannedTrial]:
    """The trials the next looks of the undecided comparisons need that are not COMPLETE."""
    params_of = {digest(p): p for p in spec.configurations()}
    statuses = store.trial_statuses(study_id)
    sequence = spec.seed_sequence()
    out: dict[str, PlannedTrial] = {}
    for c in study_comparisons(spec, store):
        if c.outcome.state != RUNNING or c.config_a is None or c.config_b is None or c.outcome.next_n is None:
            continue
        for key in (c.config_a, c.config_b):
            for seed in sequence[: c.outcome.next_n]:
                t = PlannedTrial.make(spec, params_of[key], seed)
                if statuses.get(t.key) != "COMPLETE":
                    out.setdefault(t.key, t)
    return list(out.values())


def run_sequential(spec: StudySpec, store: Store, study_id: int,
                   run_trials: Callable[[list[PlannedTrial]], object]) -> tuple[int, list[str]]:
    """Add seeds until every comparison is decided or at ``max_seeds``; returns (trials run,
    problems). A needed trial that this run already tried and that is still not COMPLETE stops
    the loop (the next ``vat-study run`` retries it), so a failing seed never loops forever."""
    tried: set[str] = set()
    ran = 0
    while True:
        todo = needed_trials(spec, store, study_id)
        if not todo:
            return ran, []
        again = [t for t in todo if t.key in tried]
        if again:
            return ran, [f"sequential: seed {t.seed} of {t.params or '(the configuration)'} did not complete; "
                         "run the study again to retry it" for t in again]
        tried |= {t.key for t in todo}
        run_trials(todo)
        ran += len(todo)
