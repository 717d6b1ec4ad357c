"""A probe with its own metric: ``weight_norm``, the L2 norm of each lane's weights, every
``every`` updates and at the last (Scheduled / Every do the timing)."""

from __future__ import annotations

from pydantic import Field

from vat_study.common.validation import Strict
from vat_study.science.probes import Every, ProbeEntry, Scheduled, register


class WeightNormSettings(Strict):
    every: int = Field(2, ge=1, description="measure every N updates (and at the last)")


class WeightNorm(Scheduled):
    def __init__(self, cfg, settings: WeightNormSettings) -> None:
        self.when = Every(settings.every, cfg.task.steps)

    def measure(self, model, lanes, alive):
        import torch

        out = {}
        for i in alive:
            with torch.no_grad():
                norm = torch.sqrt(sum((p.double() ** 2).sum() for p in lanes[i].net().parameters()))
            out[i] = {"weight_norm": float(norm)}
        return out


ENTRY = register(ProbeEntry("weight_norm", "the L2 norm of the network's weights", WeightNormSettings, None,
                            lambda settings, cfg: ("weight_norm",), WeightNorm))
