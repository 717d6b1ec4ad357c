"""task.precision: mixed_delta. The power iteration's products in bfloat16 on the difference from the
float32 clean pass (vat_study.science.difference): the finite difference of Eq. 12 kept where a bfloat16
pass loses it, which pass computes which product in which dtype, the direction against the exact
H d, lanes, and the hidden-layer noise drawn under a bfloat16 autocast."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vat_study.science.config import ConfigError, TrialConfig
from vat_study.science.difference import recording, replaying, supported
from vat_study.science.models import GaussianNoise, build_model
from vat_study.science.passes import deterministic_layers, frozen_batch_stats
from vat_study.science.probes import hd_cosine
from vat_study.science.regularizers import random_unit_direction, regularizer_lds
from vat_study.science.train import adam, train_step


def digits_batch(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().data[:n] / 16.0, dtype=torch.float32).view(n, 1, 8, 8)


def mlp(noise: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    m = build_model("mlp", [1, 8, 8], 10, hidden=[64, 32], noise_sigma=noise)
    with torch.no_grad():
        m.train()
        m(digits_batch(256))
    return m


def config(precision: str, method: str = "vat") -> TrialConfig:
    return TrialConfig.from_mapping({"dataset": "digits", "model": "mlp", "hidden": [64, 32], "method": method,
                                     "precision": precision})


def test_the_difference_pass_keeps_the_finite_difference_a_bfloat16_pass_rounds_away():
    model, x = mlp(), digits_batch(64)
    r = 1e-2 * random_unit_direction(x, torch.Generator().manual_seed(0))
    with frozen_batch_stats(model), torch.no_grad():
        z = model(x)
        exact = model(x + r) - z  # the logits' O(xi) difference, float32
        with recording() as clean:
            z_rec = model(x)
        with replaying(clean):
            delta = model(x + r) - z_rec
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model(x + r).float() - model(x).float()
    assert torch.equal(z_rec, z)  # recording changes nothing in the clean pass
    error = lambda got: float((got - exact).norm() / exact.norm())  # noqa: E731
    assert error(delta) < 0.02  # bfloat16 products of the difference: its own relative precision
    assert error(rounded) > 0.3  # a bfloat16 pass: the difference rounded away


def test_a_pass_that_is_not_the_recorded_one_is_refused():
    model, other, x = mlp(), build_model("mlp", [1, 8, 8], 10, hidden=[64, 32]), digits_batch(8)
    with recording() as clean, torch.no_grad():
        model(x)
    with replaying(clean), pytest.raises(RuntimeError, match="difference pass"):
        other(x + 1e-2)


class _Products(TorchDispatchMode):
    """The dtype of every matrix product (mm, addmm, bmm) run inside, and how often the tensor at
    ``watched`` (a weight's storage) is cast."""

    def __init__(self, watched: int = 0) -> None:
        super().__init__()
        self.dtypes: Counter = Counter()
        self.watched, self.casts = watched, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.dtypes[args[-1].dtype] += 1
        if func.overloadpacket is torch.ops.aten._to_copy and args[0].data_ptr() == self.watched:
            self.casts += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("precision, float32_products", [
    ("mixed_delta", 3),  # the clean pass's 3 layers only
    ("mixed", 9),  # the clean pass, and the power iteration's forward and backward products
])
def test_which_products_run_in_float32(precision, float32_products):
    c, model, x = config(precision), mlp(noise=0.5), digits_batch(96)
    opt = adam(c, model)
    with _Products(watched=model.net[1].weight.data_ptr()) as seen:
        train_step(c, model, opt, x[:32], torch.arange(32) % 10, x[32:])
    assert seen.dtypes[torch.float32] == float32_products
    assert seen.dtypes[torch.bfloat16] > 0
    assert seen.casts == 1  # a weight is cast to bfloat16 once per step (autocast's cache), not once per pass


def test_mixed_delta_keeps_the_direction_against_the_exact_hessian():
    model, x = mlp(), digits_batch(64)
    assert hd_cosine(model, x, xi=1e-2, precision="mixed_delta") > 0.99
    assert hd_cosine(model, x, xi=1e-2, precision="mixed_delta") == pytest.approx(
        hd_cosine(model, x, xi=1e-2), abs=2e-3)  # as faithful as float32
    torch.manual_seed(0)  # Conv-Small (Table 7), its running statistics those of the images
    conv = build_model("conv_small_svhn", [3, 12, 12], 10).train()
    images = torch.rand(8, 3, 12, 12)
    for m in conv.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        conv(images)
    fast, exact32 = (hd_cosine(conv, images, xi=1e-3, precision=p) for p in ("mixed_delta", "float32"))
    assert fast > 0.99 and fast == pytest.approx(exact32, abs=2e-3)


def test_mixed_delta_update_is_close_to_float32_and_rpt_is_the_bfloat16_step():
    x, y = digits_batch(96), torch.arange(32) % 10
    losses = {}
    for precision, method in (("float32", "vat"), ("mixed_delta", "vat"), ("mixed_delta", "rpt"), ("bfloat16", "rpt")):
        c, model = config(precision, method), mlp(noise=0.5)
        opt = adam(c, model)
        torch.manual_seed(1)
        losses[precision, method] = [float(train_step(c, model, opt, x[:32], y, x[32:])[0][0]) for _ in range(3)]
    assert losses["mixed_delta", "vat"] == pytest.approx(losses["float32", "vat"], rel=0.03)
    assert losses["mixed_delta", "rpt"] == losses["bfloat16", "rpt"]  # no power iteration: the same arithmetic


def test_mixed_delta_is_accepted_with_a_finite_difference():
    assert config("mixed_delta").task.precision == "mixed_delta"
    with pytest.raises(ConfigError, match="bfloat16"):
        config("bfloat16")


def test_lanes_train_in_mixed_delta_and_vmapped_lanes_keep_a_float32_power_iteration():
    from vat_study.science.batched import LaneBatch
    from vat_study.science.objective import run_lanes, run_trial

    configs = [{"dataset": "digits", "model": "mlp", "hidden": [32], "method": "vat", "precision": "mixed_delta",
                "noise_sigma": 0.3, "steps": 6, "eval_every": 3, "eps": e, "seed": 0} for e in (0.5, 1.0)]
    result = run_lanes(configs)
    assert not result.failed
    alone = run_trial(configs[1])  # a lane as its own run, up to bfloat16 rounding and the noise draws
    assert result.metrics[1]["loss"] == pytest.approx(alone["loss"], rel=0.05)

    torch.manual_seed(0)
    convs = LaneBatch([build_model("conv_small_svhn", [3, 12, 12], 10) for _ in range(2)]).train()
    assert convs.vmapped
    x = torch.rand(8, 3, 12, 12)
    d0 = random_unit_direction(x, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16), deterministic_layers(convs):
        fast = regularizer_lds(convs, x, eps=1.0, d0=d0, power_iteration_float32=True,
                               power_iteration_products="bfloat16")[0]
        mixed = regularizer_lds(convs, x, eps=1.0, d0=d0, power_iteration_float32=True)[0]
    assert torch.equal(fast, mixed)  # through vmap: the float32 power iteration of mixed
    assert not supported(torch.compile(mlp()))  # compiled: its generated code calls the products its own way


def _noise_of(layer: GaussianNoise, h: torch.Tensor) -> torch.Tensor:
    return (layer(h) - h).float()


def test_the_noise_drawn_in_float32_is_the_number_randn_like_draws():
    """models.standard_normal_like draws a bfloat16 layer's noise in float32 (for speed, not
    testable here) and must change no number: the same values as ``torch.randn_like`` from the
    same generator state, in bfloat16 and in float32."""
    layer = GaussianNoise(0.5).train()
    for h in (torch.zeros(64, 300), torch.zeros(64, 300, dtype=torch.bfloat16)):
        torch.manual_seed(3)
        got = layer(h)
        torch.manual_seed(3)
        assert torch.equal(got, h + layer.sigma_t * torch.randn_like(h))


def test_noise_under_bfloat16_is_gaussian_and_independent_across_layers():
    from scipy import stats

    torch.manual_seed(0)
    model = build_model("mlp", [16], 10, hidden=[400, 400], batch_norm=False, noise_sigma=0.5).train()
    layers = [m for m in model.modules() if isinstance(m, GaussianNoise)]
    h = torch.zeros(500, 400, dtype=torch.bfloat16)
    draws = [_noise_of(m, h).flatten() for m in layers]  # 200,000 draws per layer
    for z in draws:
        n = z.numel()
        assert abs(float(z.mean())) < 4 * 0.5 / math.sqrt(n)
        assert float(z.std()) == pytest.approx(0.5, rel=0.01)
        ks = stats.kstest((z / 0.5).numpy(), "norm")
        assert ks.statistic < 0.01  # bfloat16 rounding (3 significant digits) keeps it this close
    corr = float(torch.corrcoef(torch.stack(draws))[0, 1])
    assert abs(corr) < 4 / math.sqrt(draws[0].numel())


def test_a_clean_activation_changed_in_place_is_refused():
    lin, x = nn.Linear(4, 3), torch.rand(5, 4)
    with recording() as clean, torch.no_grad():
        lin(x)
    x.add_(1.0)  # the clean pass's activation, changed after it ran
    with replaying(clean), pytest.raises(RuntimeError, match="changed in place"):
        lin(x + 1e-2)
