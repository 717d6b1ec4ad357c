"""The narrow step: a registry entry sees the method's settings, the update index and the lane
helpers (not the trial config) and owns its weight schedule: the alpha ramp-up of VAT
(``alpha_rampup``: alpha * exp(-5 (1 - min(t, N) / N)^2), Laine & Aila 2017)."""

from __future__ import annotations

import math

import pytest
import torch

from vat_study import ConfigError, run_lanes, run_trial
from vat_study.science import methods
from vat_study.science.config import TrialConfig, comparable_config, upgrade_stored_config

TASK = {"dataset": "digits", "hidden": [32], "steps": 20, "eval_every": 10,
        "batch": {"labeled": 16, "unlabeled": 32}, "probes": {"rvadv": {"size": 20}}}
KEYS = ("val_error", "test_error", "rvadv", "rvadv_train", "loss", "nll", "reg")


def _step(settings: methods.MethodSettings, step: int, lane_alpha: torch.Tensor | None = None) -> methods.Step:
    z = torch.zeros(2, 1)
    return methods.Step(settings=settings, model=torch.nn.Identity(), x_l=z, y_l=z, logits_l=z, x_reg=None,
                        step=step, steps=40, n_lanes=1 if lane_alpha is None else len(lane_alpha),
                        lane_values={} if lane_alpha is None else {"alpha": lane_alpha})


def test_step_is_built_from_keywords_and_holds_no_trial_config():
    assert "cfg" not in methods.Step.__dataclass_fields__
    with pytest.raises(TypeError):
        methods.Step(TrialConfig.from_mapping({}).method, None, None, None, None, None)  # positional: refused
    s = _step(TrialConfig.from_mapping({"eps": 2.5, "xi": 0.1}).method, 3)
    x = torch.zeros(4, 1)
    assert (s.eps(x), s.xi(x), s.n_lanes, s.step, s.steps) == (2.5, 0.1, 1, 3, 40)


def test_rampup_weight_at_1_half_n_and_2n():
    n = 10
    vat = methods.get("vat")
    settings = TrialConfig.from_mapping({"method": "vat", "alpha": 0.5, "alpha_rampup": n}).method
    got = {t: vat.weight_at(_step(settings, t)) for t in (1, n // 2, n, 2 * n)}
    assert got == {1: 0.5 * math.exp(-5 * (1 - 1 / n) ** 2), n // 2: 0.5 * math.exp(-5 * 0.25), n: 0.5, 2 * n: 0.5}
    assert got[1] == pytest.approx(0.5 * math.exp(-4.05), rel=1e-15)
    assert got[n // 2] == pytest.approx(0.5 * 0.28650479686019010, rel=1e-15)
    assert methods.rampup(0, n) == math.exp(-5) and methods.rampup(7, 0) == 1.0
    # off (the paper): exactly alpha from the first update; lanes: each lane's alpha times the ramp
    off = TrialConfig.from_mapping({"method": "vat", "alpha": 0.5}).method
    assert off.alpha_rampup == 0 and vat.weight_at(_step(off, 1)) == 0.5
    lanes = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(vat.weight_at(_step(settings, n // 2, lanes)), lanes * math.exp(-1.25), rtol=0, atol=0)
    assert vat.weight_at(_step(settings, n, lanes)) is lanes
    # an entry without a schedule weights R by its alpha; baseline (no alpha) by 1
    assert methods.get("at_l2").weight_at(_step(TrialConfig.from_mapping({"method": "at_l2", "alpha": 3.0}).method, 1)) \
        == 3.0
    assert methods.get("baseline").weight_at(_step(TrialConfig.from_mapping({"method": "baseline"}).method, 1)) == 1.0


def _trajectory(cfg: dict) -> tuple[dict, list]:
    steps: list = []
    final = run_trial(cfg, lambda step, m: steps.append((step, {k: v for k, v in m.items() if "seconds" not in k})))
    return final, steps  # every reported value but the wall-clock times


def test_rampup_changes_training_and_zero_is_bit_identical_to_unset():
    cfg = {**TASK, "method": "vat", "alpha": 2.0}
    plain, plain_steps = _trajectory(cfg)
    zero, zero_steps = _trajectory({**cfg, "alpha_rampup": 0})
    ramped, ramped_steps = _trajectory({**cfg, "alpha_rampup": 20})
    assert {k: zero[k] for k in KEYS} == {k: plain[k] for k in KEYS} and zero_steps == plain_steps
    assert [s for s, _ in ramped_steps] == [s for s, _ in plain_steps]
    assert all(r["loss"] != p["loss"] for (_, r), (_, p) in zip(ramped_steps, plain_steps))
    # the weight of the first 10 updates is below alpha, so the mean objective is too
    assert ramped_steps[0][1]["loss"] < plain_steps[0][1]["loss"]


def test_lanes_with_the_rampup_give_each_lane_its_single_run():
    cfg = {**TASK, "method": "vat", "dtype": "float64", "alpha_rampup": 12}
    lanes = [{"seed": 0, "eps": 0.5, "alpha": 1.0}, {"seed": 1, "eps": 2.0, "alpha": 0.5}]
    res = run_lanes([{**cfg, **lane} for lane in lanes])
    assert not res.failed and all(m["lanes"] == 2 for m in res.metrics)
    for i, lane in enumerate(lanes):
        alone = run_trial({**cfg, **lane})
        for k in KEYS:
            assert res.metrics[i][k] == pytest.approx(alone[k], rel=1e-9, abs=1e-12), (i, k)


def test_a_stored_config_without_alpha_rampup_reads_as_off():
    now = TrialConfig.from_mapping({"method": "vat"}).model_dump(mode="json")
    old = {**now, "method": {k: v for k, v in now["method"].items() if k != "alpha_rampup"}}
    assert upgrade_stored_config(old)["method"]["alpha_rampup"] == 0
    assert upgrade_stored_config(old) == upgrade_stored_config(now)
    assert comparable_config(old) == comparable_config(now)  # what a resume compares (check_same_configs)
    rpt = TrialConfig.from_mapping({"method": "rpt"}).model_dump(mode="json")
    assert "alpha_rampup" not in upgrade_stored_config(rpt)["method"]  # a method without the setting


def test_a_bad_alpha_rampup_names_the_field():
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="alpha_rampup"):
            TrialConfig.from_mapping({"method": "vat", "alpha_rampup": bad})
