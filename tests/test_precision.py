"""task.precision: float32 / bfloat16 / mixed. What runs in which arithmetic, what is refused, and
the direction's cosine to the exact H d in each precision (against double back-propagation)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from vat_study.science.config import ConfigError, TrialConfig
from vat_study.science.models import build_model
from vat_study.science.probes import diagnostics, hd_cosine, power_iteration_fidelity
from vat_study.science.train import adam, train_step


def cfg(**kw) -> TrialConfig:
    return TrialConfig.from_mapping({"dataset": "digits", "model": "small_mlp", "steps": 5, **kw})


def digits_batch(n: int, seed: int = 0) -> torch.Tensor:
    from sklearn.datasets import load_digits
    x = torch.tensor(load_digits().data[:n] / 16.0, dtype=torch.float32)
    return x.view(n, 1, 8, 8)


def mlp(noise: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    m = build_model("mlp", [1, 8, 8], 10, hidden=[64, 32], noise_sigma=noise)
    with torch.no_grad():  # settle BN's running statistics on real images
        m.train()
        m(digits_batch(256))
    return m


def test_default_is_float32_and_recorded():
    c = cfg(method="vat")
    assert c.task.precision == "float32"
    assert TrialConfig.from_mapping({"precision": "mixed"}).task.precision == "mixed"


def test_bfloat16_with_a_finite_difference_power_iteration_is_refused_with_the_numbers():
    with pytest.raises(ConfigError) as e:
        cfg(method="vat", precision="bfloat16")
    text = str(e.value)
    assert "task.precision" in text and "'mixed'" in text and "hvp" in text and "0.997" in text
    # no power iteration, or the exact HVP: allowed
    assert cfg(method="rpt", precision="bfloat16").task.precision == "bfloat16"
    assert cfg(method="baseline", precision="bfloat16").task.precision == "bfloat16"
    assert cfg(method="vat", precision="bfloat16", direction="hvp").method.direction == "hvp"
    assert cfg(method="vat", precision="mixed").task.precision == "mixed"


def test_unknown_precision_and_float64_autocast_are_refused():
    with pytest.raises(ConfigError, match="precision"):
        cfg(precision="float16")
    with pytest.raises(ConfigError, match="precision"):
        cfg(precision="mixed", dtype="float64")


def _linear_dtypes(model: nn.Module) -> list[torch.dtype]:
    """The output dtype of the first Linear layer at every forward pass (hooked)."""
    seen: list[torch.dtype] = []
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    first.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("precision, expected", [
    # passes of one semi-supervised VAT update: labeled, clean target, power iteration, perturbed LDS
    ("float32", [torch.float32] * 4),
    ("mixed", [torch.bfloat16, torch.float32, torch.float32, torch.bfloat16]),
])
def test_which_pass_runs_in_which_precision(precision, expected):
    c = TrialConfig.from_mapping({"dataset": "digits", "model": "mlp", "hidden": [64, 32], "method": "vat",
                                  "precision": precision})
    model = mlp()
    seen = _linear_dtypes(model)
    x = digits_batch(96)
    train_step(c, model, adam(c, model), x[:32], torch.arange(32) % 10, x[32:])
    assert seen == expected


def test_bfloat16_runs_every_pass_in_bfloat16_and_keeps_float32_weights():
    c = TrialConfig.from_mapping({"dataset": "digits", "model": "mlp", "hidden": [64, 32], "method": "rpt",
                                  "precision": "bfloat16"})
    model = mlp()
    seen = _linear_dtypes(model)
    x = digits_batch(96)
    loss, nll, reg = train_step(c, model, adam(c, model), x[:32], torch.arange(32) % 10, x[32:])
    assert seen == [torch.bfloat16] * 3  # labeled, clean target, perturbed pass (RPT: no power iteration)
    assert loss.dtype == nll.dtype == reg.dtype == torch.float32 and math.isfinite(float(loss))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_mixed_update_is_close_to_float32():
    x, y = digits_batch(96), torch.arange(32) % 10
    losses = {}
    for precision in ("float32", "mixed"):
        c = TrialConfig.from_mapping({"dataset": "digits", "model": "mlp", "hidden": [64, 32], "method": "vat",
                                      "precision": precision})
        model = mlp()
        opt = adam(c, model)
        torch.manual_seed(1)
        losses[precision] = [float(train_step(c, model, opt, x[:32], y, x[32:])[0][0]) for _ in range(5)]
    assert losses["mixed"] == pytest.approx(losses["float32"], rel=0.03)


def test_direction_cosine_per_precision_against_the_exact_hessian():
    model, x = mlp(), digits_batch(64)
    assert hd_cosine(model, x, xi=1e-2) > 0.99  # Eq. 12 in float32 at xi 1e-2 gives H d
    assert hd_cosine(model, x, xi=1e-2, precision="mixed") > 0.99  # mixed: the power iteration in float32
    assert abs(hd_cosine(model, x, xi=1e-2, precision="bfloat16")) < 0.5  # rounded away in bfloat16
    fid32 = power_iteration_fidelity(model, x, xi=1e-2, power_iterations=5, reference_iterations=30)
    fid16 = power_iteration_fidelity(model, x, xi=1e-2, power_iterations=5, reference_iterations=30,
                                     precision="bfloat16")
    assert fid32 > fid16


def test_diagnostics_report_the_precision_loss():
    model, x = mlp(noise=0.5), digits_batch(64)
    d32 = diagnostics(model, x, eps=2.0, xi=1e-2)
    d16 = diagnostics(model, x, eps=2.0, xi=1e-2, precision="bfloat16")
    assert d32["hd_cosine"] > 0.99 and abs(d16["hd_cosine"]) < 0.5
    assert d32["xi_underflow"] < 0.05 < d16["xi_underflow"]  # xi d rounded away in the bfloat16 input


def test_lanes_train_in_bfloat16():
    from vat_study.science.objective import run_lanes, run_trial

    configs = [{"dataset": "digits", "model": "mlp", "hidden": [32], "method": "rpt", "precision": "bfloat16",
                "steps": 6, "eval_every": 3, "eps": e, "seed": 0} for e in (0.5, 1.0)]
    result = run_lanes(configs)
    assert not result.failed
    for c, final in zip(configs, result.metrics):  # each lane as its own run, up to bfloat16 rounding
        alone = run_trial(c)
        assert final["loss"] == pytest.approx(alone["loss"], rel=0.05)
        assert abs(final["val_error"] - alone["val_error"]) <= 0.05


def test_the_gauss_newton_product_is_the_exact_hessian_at_r_0():
    """benchmarks.gauss_newton_bf16 (docs/performance.md): at r = 0, J^T (diag p - p p^T) J d is
    H d of Eq. 9 exactly; checked against the Hessian from torch.autograd.functional.hessian."""
    from benchmarks.gauss_newton_bf16 import gauss_newton_hd
    from helpers import exact_hessian_eig, tanh_mlp

    model = tanh_mlp().eval()
    torch.manual_seed(0)
    x, d = torch.randn(4, 5), torch.randn(4, 5)
    hd = gauss_newton_hd(model, x, d).double()
    for n, (vals, vecs) in enumerate(exact_hessian_eig(model, x)):
        h = vecs @ torch.diag(vals) @ vecs.T
        assert torch.allclose(hd[n], h @ d[n].double(), rtol=1e-4, atol=1e-6)


def test_the_hand_written_forward_mode_pass_gives_the_same_product_on_the_paper_mlp_layers():
    """benchmarks.gauss_newton_bf16's J d through Linear / BN (batch statistics) / ReLU by hand, in
    float32, against autograd's exact H d (double back-propagation in float64)."""
    from benchmarks.gauss_newton_bf16 import gauss_newton_hd_matmuls
    from vat_study.science.passes import deterministic_layers
    from vat_study.science.regularizers import virtual_adversarial_direction

    torch.manual_seed(0)
    model = build_model("mlp", [1, 4, 4], 3, hidden=[12, 8], noise_sigma=0.5).train()
    x, d = torch.rand(32, 1, 4, 4), torch.randn(32, 1, 4, 4)
    with deterministic_layers(model):
        got = gauss_newton_hd_matmuls(model, x, d, torch.float32).double()
        m64 = copy.deepcopy(model).double()
        with deterministic_layers(m64):
            exact = virtual_adversarial_direction(m64, x.double(), power_iterations=1, method="hvp", d0=d.double())
    cos = (got.flatten(1) * exact.flatten(1)).sum(1) / got.flatten(1).norm(dim=1)
    assert float(cos.min()) > 0.9999


def test_auto_is_mixed_delta_where_measured_and_the_hardware_has_bfloat16(monkeypatch):
    from vat_study.science import precision

    where = dict(dataset="mnist", model="mlp", method="rpt", device="cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve("auto", **where) == "mixed_delta"
    # VAT: mixed_delta - float32 = +0.63 [-0.91, +2.17] points (results/precision_mnist/, n = 3): not within 1
    assert precision.resolve("auto", **{**where, "method": "vat"}) == "float32"
    for other in ({"dataset": "digits"}, {"model": "conv_small_svhn"}, {"method": "at_l2"}, {"dtype": "float64"}):
        assert precision.resolve("auto", **{**where, **other}) == "float32", other  # not measured there
    assert precision.resolve("mixed", **where) == "mixed"  # a precision named is kept
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve("auto", **where) == "float32"  # no native bfloat16
    assert precision.of_config({"task": {"device": "auto", "precision": "auto", "dataset": "mnist", "model": "mlp"},
                                "method": {"name": "rpt"}}) == "float32"


def test_auto_is_resolved_when_the_trial_starts_and_returned(monkeypatch):
    from vat_study.science import precision
    from vat_study.science.objective import run_trial

    base = {"dataset": "digits", "hidden": [16], "steps": 2, "eval_every": 2, "method": "vat", "precision": "auto"}
    assert run_trial(base)["precision"] == "float32"
    monkeypatch.setattr(precision, "MEASURED", {**precision.MEASURED, "dataset": ("digits",), "method": ("vat",)})
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert run_trial(base)["precision"] == "mixed_delta"
    c = cfg(method="vat", precision="auto")
    with pytest.raises(ValueError, match="resolved before training"):
        model = mlp()
        x = digits_batch(8)
        train_step(c, model, adam(c, model), x, torch.arange(8) % 10, x)
