"""Evaluation settings: BN statistics re-estimated for evaluation (task.eval_bn), the test-error
curve probe (probes.test_curve), and the regularizer's default pass modes (the anchors')."""

import pytest
import torch
from torch import nn

from vat_study import run_trial
from vat_study.science.batched import LaneBatch
from vat_study.science.config import TrialConfig, added_settings, upgrade_stored_config
from vat_study.science.methods import Implementation
from vat_study.science.models import build_model
from vat_study.science.objective import run_lanes
from vat_study.science.evaluation import evaluation_bn

TINY = dict(dataset="digits", hidden=[32, 16], steps=30, eval_every=10, noise_sigma=0.3,
            batch=dict(labeled=16, unlabeled=64), probes=dict(rvadv=dict(size=50)))


def _bn_stats(model):
    return {k: b.clone() for k, b in model.named_buffers() if "running" in k}


def test_recomputed_bn_statistics_are_the_pool_average_and_training_statistics_come_back():
    torch.manual_seed(0)
    model = build_model("mlp", [64], 10, hidden=[32, 16], noise_sigma=0.5).train()
    for _ in range(3):  # give the running statistics some history
        model(torch.randn(20, 64) * 3 + 1)
    before = _bn_stats(model)
    pool = torch.randn(2500, 64)  # 3 chunks of 1000, 1000, 500
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    lin = next(m for m in model.modules() if isinstance(m, nn.Linear))
    with evaluation_bn(model, [pool]):
        # the first BN's mean is the chunk-weighted cumulative average of its inputs' batch means
        h = lin(pool).detach()
        chunk_means = torch.stack([h[lo:lo + 1000].mean(0) for lo in range(0, 2500, 1000)])
        assert torch.allclose(first_bn.running_mean, chunk_means.mean(0), atol=1e-5)
        assert not torch.allclose(first_bn.running_mean, before[next(k for k in before if "mean" in k)])
    after = _bn_stats(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and first_bn.momentum == 0.1


def test_recomputed_bn_statistics_agree_between_a_lane_and_its_own_network():
    torch.manual_seed(1)
    nets = [build_model("mlp", [64], 10, hidden=[32, 16], noise_sigma=0.5) for _ in range(2)]
    batch = LaneBatch([nets[0], nets[1]])
    pools = [torch.randn(1200, 64), torch.randn(1200, 64)]
    x = torch.randn(50, 64)
    with evaluation_bn(nets[0], [pools[0]]):
        nets[0].eval()
        alone = nets[0](x)
    with evaluation_bn(batch, pools):
        batch.eval()
        together = batch(torch.cat([x, x]))[:50]
    assert torch.allclose(alone, together, atol=1e-4)


def test_eval_bn_recompute_changes_what_is_measured_but_not_training():
    seen = {}
    for mode in ("running", "recompute"):
        steps = []
        run_trial({**TINY, "eval_bn": mode}, lambda s, x, steps=steps: steps.append((x["loss"], x["val_error"])))
        seen[mode] = steps
    # the losses (training) are identical: evaluation leaves training's statistics alone
    assert [loss for loss, _ in seen["running"]] == [loss for loss, _ in seen["recompute"]]
    assert [v for _, v in seen["running"]] != [v for _, v in seen["recompute"]]
    assert TrialConfig.from_mapping({**TINY, "eval_bn": "recompute"}).task.eval_bn == "recompute"
    with pytest.raises(ValueError, match="eval_bn"):
        TrialConfig.from_mapping({**TINY, "eval_bn": "pool"})


def test_test_curve_probe_reports_the_test_error_at_every_evaluation_and_ends_at_the_final_one():
    rows = []
    m = run_trial({**TINY, "probes": {"rvadv": {"size": 50}, "test_curve": True}}, lambda s, x: rows.append((s, dict(x))))
    assert [s for s, _ in rows] == [10, 20, 30]
    assert all("test_error_curve" in x for _, x in rows)
    assert rows[-1][1]["test_error_curve"] == m["test_error"]
    plain = run_trial(TINY, lambda s, x: rows.append((s, dict(x))))
    assert "test_error_curve" not in rows[-1][1]
    assert plain["test_error"] == m["test_error"]  # the probe changes no training


def test_lanes_report_the_test_curve_per_lane():
    cfgs = [{**TINY, "seed": s, "probes": {"rvadv": {"size": 50}, "test_curve": True}} for s in (0, 1)]
    rows = []
    r = run_lanes(cfgs, lambda lane, s, x: rows.append({**x, "lane": lane}))
    assert {x["lane"] for x in rows} == {0, 1}
    last = {x["lane"]: x["test_error_curve"] for x in rows[-2:]}
    assert [last[0], last[1]] == [r.metrics[0]["test_error"], r.metrics[1]["test_error"]]


def test_default_pass_modes_are_the_anchors_noise_on_in_every_pass():
    impl = Implementation()
    assert (impl.clean_stochastic, impl.power_iteration_stochastic, impl.lds_stochastic) == (True, True, True)


def test_a_stored_config_without_the_new_settings_reads_with_their_legacy_values():
    assert added_settings() == {"task.eval_bn": "running", "task.precision": "float32", "probes.test_curve": False,
                                "probes.diagnostics": None, "method.alpha_rampup": 0}
    now = TrialConfig.from_mapping(TINY).model_dump(mode="json")
    old = {**now, "task": {k: v for k, v in now["task"].items() if k != "eval_bn"},
           "probes": {k: v for k, v in now["probes"].items() if k not in ("test_curve", "diagnostics")}}
    assert upgrade_stored_config(old) == now


def test_diagnostics_read_a_flat_network_and_the_quadratic_regime_correctly():
    from vat_study.science.probes import diagnostics

    torch.manual_seed(0)
    x = torch.randn(64, 5, dtype=torch.float64)
    flat = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)).double()
    with torch.no_grad():
        flat[1].weight.zero_()
        flat[1].bias.zero_()
    d = diagnostics(flat, x, eps=1.0, xi=1e-3)
    assert d["entropy_eval"] == pytest.approx(torch.log(torch.tensor(3.0)).item())
    assert d["top_class_eval"] == 1.0 and d["classes_eval"] == 1.0 and d["pred_eval_c0"] == 1.0
    assert d["kl_xi"] == 0.0 and d["kl_eps"] == 0.0  # nothing moves a flat network
    smooth = nn.Sequential(nn.Linear(5, 3)).double()
    q = diagnostics(smooth, x, eps=1e-2, xi=1e-4)
    assert q["quadratic_ratio"] == pytest.approx(1.0, rel=0.05)  # eps still in the quadratic regime
    assert diagnostics(smooth, x, eps=50.0, xi=1e-4)["quadratic_ratio"] < 0.5  # far beyond it: saturated
    assert 0.0 <= q["power_cosine"] <= 1.0 + 1e-9 and q["xi_underflow"] == 0.0
    tiny = diagnostics(smooth, x.float().double() * 0 + 1e8, eps=1.0, xi=1e-12)
    assert tiny["xi_underflow"] > 0.9  # xi d vanishes next to x = 1e8 in float64
