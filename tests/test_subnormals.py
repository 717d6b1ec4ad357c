"""Subnormals flushed while a trial trains (vat_study.science.subnormals), and the caller's setting kept."""

from __future__ import annotations

import torch

from vat_study import run_trial
from vat_study.science import subnormals


def test_training_flushes_subnormals_and_restores_the_callers_setting():
    if not torch.set_flush_denormal(False):
        return  # a CPU without FTZ / DAZ: nothing to flush
    seen: list[bool] = []
    run_trial({"dataset": "digits", "hidden": [8], "steps": 2, "eval_every": 1, "method": "baseline"},
              report=lambda step, m: seen.append(subnormals.flushing()))
    assert seen == [True, True] and not subnormals.flushing()
    torch.set_flush_denormal(True)
    try:
        with subnormals.flushed():
            pass
        assert subnormals.flushing()  # on before, on after
    finally:
        torch.set_flush_denormal(False)
