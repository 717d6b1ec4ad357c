"""The in-process executor: the same study, trial after trial, in this Python process. Several
such drivers (and Ray drivers) of one study on one store share its trials (``store.claims``).
Every study is also an Optuna study in the store's database (``records``)."""

from __future__ import annotations

from ..spec import PlannedTrial, StudySpec
from ..store import Store
from .execution import Claim, run_planned
from .planning import RunSummary
from .records import open_study, sync_grid
from .study import Results, driver_for, run_study

__all__ = ["LocalExecutor", "driver_for", "run_local"]


class LocalExecutor:
    """Trials trained one lane group after another in this process (``execution.run_planned``);
    each finished configuration goes into the study's Optuna records at once (a grid study)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._optuna = None

    def prepare(self) -> None:
        pass

    def open(self, store: Store, study_id: int) -> None:
        self.store, self.study_id = store, study_id

    def start(self) -> None:
        pass

    def _record(self, group: list[PlannedTrial]) -> None:
        if not self.spec.is_optuna:  # (an Optuna study's trials are told by the ask / run / tell loop)
            self._optuna = self._optuna or open_study(self.spec)
            sync_grid(self.spec, self.store, self.study_id, [t.params for t in group], self._optuna)

    def run(self, trials: list[PlannedTrial], claim: Claim) -> Results:
        return run_planned(self.spec, self.store, self.study_id, trials, claim, after_group=self._record)

    def round_size(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def run_local(spec: StudySpec, *, spec_path: str | None = None, progress: bool = True) -> RunSummary:
    """Run ``spec`` in this process (``study.run_study`` with a ``LocalExecutor``)."""
    return run_study(spec, LocalExecutor(spec), spec_path=spec_path, progress=progress)
