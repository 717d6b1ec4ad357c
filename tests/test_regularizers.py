"""The VAT math against independent references: exact Hessians (torch.autograd.functional.hessian
and eigh), closed forms and scipy, never against the code under test."""

import copy

import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from helpers import exact_hessian_eig, tanh_mlp
from vat_study.science.models import GaussianNoise, build_model
from vat_study.science.regularizers import (
    DEFAULT_XI,
    PAPER_XI,
    adversarial_loss,
    entropy_loss,
    kl_divergence,
    lds,
    rpt_loss,
    unit_vector,
    vat_loss,
    virtual_adversarial_direction,
)


def linear_model(dim=6, classes=4, gaps=(6.0, 1.0, 0.5, 0.2), seed=0):
    """z = W x with W = U diag(gaps) V^T: H = W^T (diag p - p p^T) W has a well-separated top eigenvalue."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(classes, classes, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    w = u @ torch.diag(torch.tensor(gaps, dtype=torch.float64)) @ v[:, :classes].T
    lin = nn.Linear(dim, classes, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w.float())
    return lin


MODELS = {"linear": linear_model, "tanh_mlp": tanh_mlp}


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize(
    "dtype,method,xi",
    [
        (torch.float32, "finite_difference", DEFAULT_XI),
        (torch.float64, "finite_difference", DEFAULT_XI),
        (torch.float64, "finite_difference", PAPER_XI),
        (torch.float32, "hvp", DEFAULT_XI),
        (torch.float64, "hvp", DEFAULT_XI),
    ],
)
def test_direction_matches_exact_dominant_eigenvector(model_name, dtype, method, xi):
    model = MODELS[model_name]().to(dtype)
    x = (0.3 * torch.randn(16, model[0].in_features if isinstance(model, nn.Sequential) else model.in_features,
                           generator=torch.Generator().manual_seed(5))).to(dtype)
    eig = exact_hessian_eig(model, x)
    ratios = torch.tensor([float(vals[1] / vals[0]) for vals, _ in eig])
    assert ratios.max() < 0.35, f"precondition: the spectrum must be well separated, got lambda2/lambda1 {ratios}"
    d = virtual_adversarial_direction(model, x, xi=xi, power_iterations=5, method=method,
                                      generator=torch.Generator().manual_seed(0))
    assert d.dtype == dtype
    u = torch.stack([vecs[:, 0] for _, vecs in eig])
    cos = (d.double() * u).sum(1).abs()
    assert cos.min() > 0.999, cos


def test_paper_xi_loses_the_direction_in_float32_but_default_keeps_it():
    """The reason DEFAULT_XI is not the paper's 1e-6: in float32 the finite difference is rounding noise."""
    torch.manual_seed(0)
    model = build_model("mlp", [784], 10).eval()
    x = torch.rand(64, 784)
    # Exact H d for the same random start d (same generator, same dtype), by double backprop.
    ref = virtual_adversarial_direction(model, x, power_iterations=1, method="hvp",
                                        generator=torch.Generator().manual_seed(3)).double()

    def cos(xi):
        d = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1,
                                          generator=torch.Generator().manual_seed(3))
        return float((d.double() * ref).sum(1).mean())

    assert cos(DEFAULT_XI) > 0.98
    assert cos(PAPER_XI) < 0.8


@pytest.mark.parametrize("method", ["finite_difference", "hvp"])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_unit_norm_per_sample_and_eps_norm_perturbation(method, k):
    model = build_model("mlp", [1, 8, 8], 10, hidden=[32, 16]).train()
    x = torch.rand(20, 1, 8, 8)
    d = virtual_adversarial_direction(model, x, power_iterations=k, method=method)
    assert d.shape == x.shape and not d.requires_grad
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(20), atol=1e-5, rtol=0)
    eps = 2.5
    torch.testing.assert_close((eps * d).flatten(1).norm(dim=1), torch.full((20,), eps), atol=1e-5, rtol=0)


def test_k0_is_a_random_unit_direction_that_never_calls_the_model():
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("K = 0 must not evaluate the model")

    x = torch.zeros(4000, 10)
    d = virtual_adversarial_direction(Boom(), x, power_iterations=0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(d.norm(dim=1), torch.ones(4000))
    # Uniform on the sphere: each coordinate has mean 0 and E[d_i^2] = 1/10.
    assert d.mean(0).abs().max() < 0.02
    torch.testing.assert_close(d.pow(2).mean(0), torch.full((10,), 0.1), atol=0.01, rtol=0)
    d2 = virtual_adversarial_direction(Boom(), x, power_iterations=0, generator=torch.Generator().manual_seed(2))
    assert (d * d2).sum(1).abs().mean() < 0.35  # different draws, nearly orthogonal in 10-D


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("method", ["finite_difference", "hvp"])
def test_regularizers_leave_bn_running_statistics_unchanged(method):
    model = build_model("mlp", [1, 8, 8], 10, hidden=[32, 16], noise_sigma=0.3).train()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    before = _bn_state(model)
    assert before
    vat_loss(model, x, eps=1.0, power_iterations=2, method=method).backward()
    rpt_loss(model, x, eps=1.0).backward()
    adversarial_loss(model, x, y, eps=0.5, norm="l2").backward()
    adversarial_loss(model, x, y, eps=0.1, norm="linf").backward()
    lds(model, x, 0.1 * torch.randn_like(x)).sum().backward()
    after = _bn_state(model)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    model(x)  # the caller's labeled pass still updates them
    assert not torch.equal(before["net.2.running_mean"], model.state_dict()["net.2.running_mean"])


def test_no_nan_on_saturated_outputs_and_zero_gradients():
    class Saturated(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.lin, self.scale = nn.Linear(5, 3), scale

        def forward(self, x):
            return self.scale * self.lin(x)

    x = torch.randn(16, 5)
    for scale in (1e4, 1e8):
        model = Saturated(scale)
        for method in ("finite_difference", "hvp"):
            d = virtual_adversarial_direction(model, x, power_iterations=2, method=method)
            assert torch.isfinite(d).all()
            torch.testing.assert_close(d.norm(dim=1), torch.ones(16))
            loss = vat_loss(model, x, eps=1.0, method=method)
            loss.backward()
            assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())

    class Constant(nn.Module):  # grad_r D == 0 exactly: the random start is kept
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.b.expand(len(x), 3) + 0 * x.sum(1, keepdim=True)

    d = virtual_adversarial_direction(Constant(), x, power_iterations=3)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(16))
    assert torch.equal(unit_vector(torch.zeros(2, 3)), torch.zeros(2, 3))
    tiny = torch.full((1, 4), 1e-30)
    torch.testing.assert_close(unit_vector(tiny), torch.full((1, 4), 0.5))


def test_dropout_and_noise_are_off_while_the_direction_is_computed():
    torch.manual_seed(0)
    noisy = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), GaussianNoise(1.0), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    x = torch.randn(8, 6)
    d_noisy = virtual_adversarial_direction(noisy, x, power_iterations=2, generator=torch.Generator().manual_seed(4))
    clean = copy.deepcopy(noisy).eval()
    d_clean = virtual_adversarial_direction(clean, x, power_iterations=2, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(d_noisy, d_clean)
    assert noisy[2].training and noisy[3].training  # modes restored


def test_kl_lds_and_entropy_against_independent_formulas():
    torch.manual_seed(0)
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    ref = F.kl_div(F.log_softmax(b, 1), F.log_softmax(a, 1), log_target=True, reduction="none").sum(1)
    torch.testing.assert_close(kl_divergence(a, b), ref)
    p = F.softmax(a, 1).numpy()
    torch.testing.assert_close(entropy_loss(a), torch.tensor(scipy.stats.entropy(p, axis=1).mean(), dtype=torch.float32))

    model = nn.Linear(4, 3)
    x, r = torch.randn(6, 4), 0.1 * torch.randn(6, 4)
    out = lds(model, x, r)
    assert out.shape == (6,)
    out.sum().backward()
    g_ours = model.weight.grad.clone()
    model.zero_grad()
    p_const = F.softmax(model(x), 1).detach()  # clean side is a constant (Eq. 5: theta_hat)
    (p_const * (p_const.log() - F.log_softmax(model(x + r), 1))).sum().backward()
    torch.testing.assert_close(g_ours, model.weight.grad)


def test_vat_gradient_ignores_the_dependence_of_r_on_theta():
    """grad_theta R_vadv equals the gradient of LDS at a frozen r (Section 3.3)."""
    model = tanh_mlp()
    x = torch.randn(10, 5)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    vat_loss(model, x, eps=0.7, generator=gen()).backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    d = virtual_adversarial_direction(model, x, generator=gen())
    p = F.softmax(model(x), 1).detach()
    (p * (p.log() - F.log_softmax(model(x + 0.7 * d), 1))).sum(1).mean().backward()
    for a, b in zip(g1, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b)


def test_adversarial_perturbations_follow_eq3_and_eq4():
    model = nn.Linear(4, 3, bias=False)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    # For a linear model, g = grad_x CE = W^T (softmax(Wx) - onehot(y)), in closed form:
    g = (F.softmax(x @ model.weight.T, 1) - F.one_hot(y, 3).float()) @ model.weight
    with torch.no_grad():
        l2 = F.cross_entropy(model(x + 0.5 * g / g.norm(dim=1, keepdim=True)), y)
        linf = F.cross_entropy(model(x + 0.1 * g.sign()), y)
    torch.testing.assert_close(adversarial_loss(model, x, y, eps=0.5, norm="l2"), l2)
    torch.testing.assert_close(adversarial_loss(model, x, y, eps=0.1, norm="linf"), linf)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(xi=0.0), "xi"),
        (dict(xi=float("nan")), "xi"),
        (dict(power_iterations=-1), "power_iterations"),
        (dict(method="exact"), "method"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        virtual_adversarial_direction(nn.Linear(3, 2), torch.randn(2, 3), **kwargs)
    with pytest.raises(ValueError, match="eps"):
        vat_loss(nn.Linear(3, 2), torch.randn(2, 3), eps=-1.0)
