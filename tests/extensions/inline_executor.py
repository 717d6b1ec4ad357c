"""An executor: the planned trials one at a time in this process, each its own group (no lanes,
no Optuna records), counting what it ran (``executor: {kind: inline}``)."""

from __future__ import annotations

from vat_study.platform.executors.execution import run_planned
from vat_study.platform.executors.orchestration import ExecutorBase
from vat_study.platform.executors.registry import ExecutorEntry, register


class InlineExecutor(ExecutorBase):
    ran: list[str] = []  # the keys of the trials it trained (for its test)

    def run(self, trials, claim):
        results = {}
        for trial in trials:
            results.update(run_planned(self.spec, self.store, self.study_id, [trial], claim) or {})
            InlineExecutor.ran.append(trial.key)
        return results


ENTRY = register(ExecutorEntry("inline", "in this process, one trial at a time, no lanes", InlineExecutor))
