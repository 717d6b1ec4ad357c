"""``test_curve``: the test error at every evaluation (metric ``test_error_curve``), measured with
the BN statistics ``task.eval_bn`` names, as the validation error beside it: for learning curves
only; a study may never select on it, and the final ``test_error`` is separate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..vocabulary import TEST_CURVE
from . import ProbeEntry, register

if TYPE_CHECKING:
    from torch import nn


class TestCurveHook:
    """The test error of every lane at once, whenever the loop evaluates (never making it evaluate)."""

    follows_evaluation = True

    def __init__(self, cfg: Any, on: bool) -> None:
        self.cfg = cfg

    def due(self, step: int) -> bool:
        return False

    def measure(self, model: nn.Module, lanes: list, alive: list[int]) -> dict[int, dict[str, float]]:
        from ..evaluation import error_rates, evaluation_bn

        if lanes[0].test is None:
            return {i: {} for i in alive}
        x, y = lanes[0].test
        pools = [lane.reg_pool for lane in lanes] if self.cfg.task.eval_bn == "recompute" else None
        with evaluation_bn(model, pools):
            errors = error_rates(model, [x] * len(lanes), [y] * len(lanes))
        return {i: {TEST_CURVE: errors[i]} for i in alive}


ENTRY = register(ProbeEntry(
    "test_curve", "the test error at every evaluation (learning curves; never a study metric)", None, False,
    lambda s, cfg: (TEST_CURVE,), TestCurveHook, selectable=False, legacy=False,
    description="also measure the test error at every evaluation (metric test_error_curve, for learning curves; "
                "never a study metric)"))
