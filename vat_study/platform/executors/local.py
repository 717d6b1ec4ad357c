"""The in-process executor (``local``): the same study, trial after trial, in this Python process.
Several such drivers (and Ray drivers) of one study on one store share its trials
(``store.claims``). Every study is also an Optuna study in the store's database (``records``)."""

from __future__ import annotations

from ..spec import PlannedTrial
from .execution import Claim, run_planned
from .orchestration import ExecutorBase, Results
from .records import open_study, sync_grid

__all__ = ["LocalExecutor"]


class LocalExecutor(ExecutorBase):
    """Trials trained one lane group after another in this process (``execution.run_planned``);
    each finished configuration goes into the study's Optuna records at once (a grid study)."""

    _optuna = None

    def prepare(self) -> None:
        if self.spec.executor.trial_timeout is not None:
            from .isolation import prestart

            prestart()  # the process its trials train in (so the time limit holds): its start overlaps the preflight

    def _record(self, group: list[PlannedTrial]) -> None:
        if not self.spec.is_optuna:  # (an Optuna study's trials are told by the ask / run / tell loop)
            self._optuna = self._optuna or open_study(self.spec)
            sync_grid(self.spec, self.store, self.study_id, [t.params for t in group], self._optuna)

    def run(self, trials: list[PlannedTrial], claim: Claim) -> Results:
        return run_planned(self.spec, self.store, self.study_id, trials, claim, after_group=self._record)
