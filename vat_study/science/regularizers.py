"""The paper's math as pure torch functions (Miyato, Maeda, Koyama, Ishii, TPAMI 2018).

Read this file next to Section 3 of the paper; every function names the equation it implements.

    kl_divergence                  D[p, p'] as KL (Eq. 17)
    divergence                     D as forward (the paper) or reverse KL
    virtual_adversarial_direction  d <- H d by power iteration (Eq. 9-13; K = 0 is RPT, Eq. 16)
    lds                            LDS(x, theta) = D[p(y|x, theta_hat), p(y|x + r, theta)] (Eq. 5)
    vat_loss                       R_vadv: mean LDS at r = eps * d (Eq. 7, Algorithm 1)
    regularizer_lds                LDS as training computes it, each pass in its configured mode
    rpt_loss                       R^(0): the same with a random unit direction (Section 3.4)
    adversarial_loss               L_adv with r_adv from Eq. 3 (L2) or Eq. 4 (L-inf) (Eq. 1)
    entropy_loss                   R_cent, the conditional entropy (Eq. 18)

Batch normalization. Every forward pass made here runs the model in the mode the caller left it
in (``regularizer_lds``: the mode ``methods.Implementation`` names, via ``passes``); in train mode,
BN normalizes each perturbed batch with that batch's own statistics (as the official code's
``update_batch_stats=False`` passes do) unless ``bn="running"``, and the running statistics are
never updated here: only the caller's labeled forward pass updates them.

Dropout and Gaussian noise. The paper does not say in which passes they act. The power
iteration needs D(r) to be one deterministic function of r (Eq. 9 assumes grad_r D = 0 at r = 0);
with a fresh dropout mask or noise draw per pass, the difference between two masks swamps the
O(xi) signal and the direction is noise. So ``virtual_adversarial_direction`` switches them off
by default (``deterministic=True``) and recomputes the clean logits in that mode if the caller's
were stochastic; ``regularizer_lds`` sets each of the three passes (clean target, power
iteration, perturbed LDS pass) on or off as configured. The measured effect of each setting on
MNIST is in docs/science.md ("Implementation choices").

Numerics (float32). The finite difference of Eq. 12 loses the direction once xi * ||H d|| falls
to the rounding noise of the logits: measured by ``python -m benchmarks.xi_fidelity`` on the
784-1200-600-300-150-10 MLP (untrained / after 600 steps), xi = 1e-6 (the paper's value) gives a
cosine of 0.20 / 0.32 to the exact H d, xi = 1e-2 gives 0.995 / 0.9999, and xi = 10 leaves the
quadratic regime of Eq. 9 (0.04 / 0.25). The default here
is ``DEFAULT_XI = 1e-2``; ``PAPER_XI = 1e-6`` is one setting away, and ``method="hvp"`` computes
H d exactly by double back-propagation (no xi at all).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .passes import (  # noqa: F401  (re-exported: the modes every pass below runs in)
    BNStatistics,
    deterministic_layers,
    frozen_batch_stats,
    has_stochastic_layers,
    regularizer_pass,
)

from .method_settings import Implementation
from .vocabulary import DEFAULT_XI  # noqa: F401  (finite-difference step of Eq. 12; faithful in float32, see above)

PAPER_XI = 1e-6
"""The value the paper uses (Section 4); faithful in float64 only."""

DirectionMethod = Literal["finite_difference", "hvp"]
DIRECTION_METHODS: tuple[str, ...] = ("finite_difference", "hvp")
Divergence = Literal["forward", "reverse"]
DIVERGENCES: tuple[str, ...] = ("forward", "reverse")

NOISE_FREE_PASSES = Implementation(clean_stochastic=False, power_iteration_stochastic=False, lds_stochastic=False)
"""The pass modes of ``regularizer_lds`` when it is given none: dropout / noise off in every pass
(a model in eval mode runs every pass deterministically whatever the modes), the batch's own BN
statistics, the forward KL of Eq. 17. Training passes its method's ``implementation`` block."""


# --------------------------------------------------------------------------------------------
# Small numerically safe helpers
# --------------------------------------------------------------------------------------------


def kl_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-sample KL(p || q) = sum_y p(y) (log p(y) - log q(y)) from logits (Eq. 17). Shape [N].

    Works in log space: a saturated softmax (p(y) == 0) contributes exactly 0, never NaN.
    """
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def divergence(logits_clean: Tensor, logits_perturbed: Tensor, kind: Divergence = "forward") -> Tensor:
    """D[p, p'] of Eq. 5 per sample, shape [N]: ``"forward"`` is KL(p_clean || p_perturbed), the
    paper's choice (Eq. 17); ``"reverse"`` is KL(p_perturbed || p_clean). Both have the same
    second-order term at r = 0 (the Fisher information), so the power iteration's H is the same."""
    if kind == "forward":
        return kl_divergence(logits_clean, logits_perturbed)
    if kind == "reverse":
        return kl_divergence(logits_perturbed, logits_clean)
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {kind!r}")


_divergence = divergence  # for the functions below, which take a parameter of the same name


def unit_vector(v: Tensor, fallback: Tensor | None = None) -> Tensor:
    """v / ||v||_2 per sample, the norm taken over all non-batch dimensions.

    The vector is first divided by its largest absolute entry (as the official code does), so
    squaring neither underflows for tiny gradients nor overflows for huge ones. A sample whose
    v is zero or not finite gets ``fallback`` (already unit) instead; without a fallback it gets
    zeros, never NaN.
    """
    flat = v.flatten(1)
    scale = flat.abs().amax(dim=1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    flat = flat / torch.where(ok, scale, torch.ones_like(scale))
    norm = flat.norm(dim=1, keepdim=True)
    flat = flat / torch.where(ok, norm, torch.ones_like(norm))
    if fallback is not None:
        flat = torch.where(ok, flat, fallback.flatten(1).to(flat.dtype))
    else:
        flat = torch.where(ok, flat, torch.zeros_like(flat))
    return flat.view_as(v)


def random_unit_direction(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A direction drawn uniformly on the unit sphere, per sample (iid Gaussian, normalized)."""
    device = generator.device if generator is not None else x.device
    d = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return unit_vector(d)


Scalar = float | Tensor
"""eps or xi: one number for the batch, or one per sample (a tensor [N]; lanes, see ``batched``).
A per-sample tensor is checked by its caller (``config.TrialConfig`` validates each lane's value):
checking it here would wait for the device at every step."""


def per_sample(v: Scalar, x: Tensor) -> Scalar:
    """``v`` shaped to scale x sample by sample: a number stays a number; a tensor [N] becomes
    [N, 1, ..., 1] (one value per sample of x)."""
    if isinstance(v, Tensor):
        return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return v


def _check_direction_args(xi: Scalar, power_iterations: int, method: str) -> None:
    if method not in DIRECTION_METHODS:
        raise ValueError(f"method must be one of {DIRECTION_METHODS}, got {method!r}")
    if not isinstance(power_iterations, int) or isinstance(power_iterations, bool) or power_iterations < 0:
        raise ValueError(f"power_iterations must be an integer >= 0, got {power_iterations!r}")
    if method == "finite_difference" and not isinstance(xi, Tensor) and not (xi > 0 and xi < float("inf")):
        raise ValueError(f"xi must be a finite number > 0, got {xi!r}")


# --------------------------------------------------------------------------------------------
# The virtual adversarial direction (Eq. 9-13)
# --------------------------------------------------------------------------------------------


def virtual_adversarial_direction(
    model: nn.Module,
    x: Tensor,
    logits: Tensor | None = None,
    *,
    xi: Scalar = DEFAULT_XI,
    power_iterations: int = 1,
    method: DirectionMethod = "finite_difference",
    generator: torch.Generator | None = None,
    d0: Tensor | None = None,
    divergence: Divergence = "forward",
    deterministic: bool = True,
) -> Tensor:
    """Approximate the dominant eigenvector u(x, theta_hat) of H = grad grad_r D(r, x, theta_hat).

    Power iteration d <- H d (Eq. 11) from a random unit d, K = ``power_iterations`` times:

    * ``method="finite_difference"``: H d ~ grad_r D(r)|_{r = xi d} / xi (Eq. 12), so
      d <- normalize(grad_r D(r)|_{r = xi d}) (Eq. 13); one backward pass per iteration.
    * ``method="hvp"``: H d exactly, by differentiating (grad_r D(r) . d) at r = 0 again
      (double back-propagation); ``xi`` is not used.
    * ``power_iterations=0``: the random unit direction itself (RPT, Eq. 16 with K = 0).

    x: [N, ...]; logits: [N, C] clean logits if already computed (reused only when the model has
    no active dropout/noise, see the module docstring); d0: the random unit start, shaped like x
    (default: drawn uniformly on the sphere with ``generator``). Returns d with ||d_n||_2 = 1 for every
    sample n, same shape as x, with no gradient (VAT ignores the dependence of r_vadv on theta,
    Section 3.3). A sample whose gradient vanishes (e.g. a saturated softmax) keeps its previous
    direction instead of becoming NaN. BN running statistics are left untouched.

    ``divergence``: D as forward or reverse KL (see ``divergence``). ``deterministic=False``
    leaves dropout / noise layers as the caller set them (each pass then draws its own noise, and
    ``logits`` is the reference point as given); the default switches them off (module docstring).
    """
    _check_direction_args(xi, power_iterations, method)
    x = x.detach()
    xi = per_sample(xi, x)
    d = random_unit_direction(x, generator) if d0 is None else d0.detach()
    if power_iterations == 0:
        return d
    layers = deterministic_layers(model) if deterministic else contextlib.nullcontext(False)
    with torch.enable_grad(), frozen_batch_stats(model), layers as was_noisy:
        if logits is None or was_noisy:
            with torch.no_grad():
                logits_p = model(x)
        else:
            logits_p = logits.detach()
        for _ in range(power_iterations):
            if method == "finite_difference":
                r = (xi * d).requires_grad_(True)
                dist = _divergence(logits_p, model(x + r), divergence).sum()  # sum: per-sample grads unscaled
                (grad_r,) = torch.autograd.grad(dist, r)  # = xi * H d + O(xi^2)  (Eq. 12)
            else:
                r = torch.zeros_like(x, requires_grad=True)
                dist = _divergence(logits_p, model(x + r), divergence).sum()
                (g,) = torch.autograd.grad(dist, r, create_graph=True)  # = 0 at r = 0, but carries H
                (grad_r,) = torch.autograd.grad((g * d).sum(), r)  # = H d exactly
            d = unit_vector(grad_r.detach(), fallback=d)
    return d


# --------------------------------------------------------------------------------------------
# Local distributional smoothness and the regularizers
# --------------------------------------------------------------------------------------------


def lds(model: nn.Module, x: Tensor, r: Tensor, logits: Tensor | None = None,
        divergence: Divergence = "forward") -> Tensor:
    """LDS(x, theta) = KL(p(y|x, theta_hat) || p(y|x + r, theta)), per sample: shape [N] (Eq. 5, 17);
    ``divergence="reverse"``: KL(p(y|x + r, theta) || p(y|x, theta_hat)).

    The clean side p(y|x, theta_hat) is a constant (``logits`` detached, or a no-grad forward
    pass); gradients flow into theta only through the perturbed pass. ``r`` is treated as a
    constant too. BN running statistics are not updated.
    """
    with frozen_batch_stats(model):
        if logits is None:
            with torch.no_grad():
                logits = model(x)
        logits_q = model(x.detach() + r.detach())
    return _divergence(logits.detach(), logits_q, divergence)


def vat_loss(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float,
    xi: float = DEFAULT_XI,
    power_iterations: int = 1,
    method: DirectionMethod = "finite_difference",
    logits: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """R_vadv on a mini-batch: mean over x of LDS at r_vadv = eps * d (Eq. 7, 10; Algorithm 1).

    With K = ``power_iterations`` >= 1 this is VAT; with K = 0 it is R^(0), i.e. RPT (Eq. 16).
    The direction carries no gradient (Section 3.3), so the cost is K + 1 passes on top of the
    caller's clean forward pass.
    """
    if not (eps >= 0 and eps < float("inf")):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    d = virtual_adversarial_direction(
        model, x, logits, xi=xi, power_iterations=power_iterations, method=method, generator=generator
    )
    return lds(model, x, eps * d, logits).mean()


def regularizer_lds(
    model: nn.Module,
    x: Tensor,
    *,
    eps: Scalar,
    xi: Scalar = DEFAULT_XI,
    power_iterations: int = 1,
    method: DirectionMethod = "finite_difference",
    implementation: Implementation | None = None,
    logits: Tensor | None = None,
    d0: Tensor | None = None,
    generator: torch.Generator | None = None,
    clean_grad: bool = False,
    power_iteration_float32: bool = False,
) -> tuple[Tensor, Tensor]:
    """LDS at r = eps * d_K per sample (Eq. 5, 7; K = 0: RPT, Eq. 16) as training computes it, each
    of its three passes in the mode its ``implementation`` (a ``methods.Implementation``, the
    method's block; None: ``NOISE_FREE_PASSES``) names (``regularizer_pass``), with its ``bn``
    statistics and its ``divergence``:

    1. the clean target p(y|x, theta_hat): ``logits`` if given (the caller's pass already is
       this one), else a pass with ``clean_stochastic`` (with gradient if ``clean_grad``, for
       EntMin);
    2. the direction d by power iteration (Eq. 9-13), passes with ``power_iteration_stochastic``;
       its reference point is the clean target when both passes have one mode, else a pass in
       the iteration's own mode;
    3. the perturbed pass at x + eps d with ``lds_stochastic``: the only one whose gradient
       reaches theta.

    ``implementation.regularizer_batch`` (which batch R is on) is the caller's: ``x`` is that batch.

    Returns (LDS [N], clean logits [N, C]). With a model in eval mode every pass is the
    deterministic eval-mode pass, whatever the settings. ``eps`` and ``xi`` may be one value per
    sample (tensors [N]: lanes).

    ``power_iteration_float32`` (``task.precision: mixed``): under a bfloat16 autocast, the power
    iteration and the clean pass it starts from run in float32 (autocast off). The finite
    difference of Eq. 12 subtracts two passes whose logits differ by O(xi): in bfloat16 (8 bits of
    mantissa) their rounding, and xi d itself rounded away in the bfloat16 input of the first layer,
    swamp that difference; a bfloat16 reference with a float32 perturbed pass would add their
    mismatch as a first-order term. Outside an autocast it changes nothing.
    """
    modes = NOISE_FREE_PASSES if implementation is None else implementation
    clean_stochastic, power_iteration_stochastic = modes.clean_stochastic, modes.power_iteration_stochastic
    bn, divergence = modes.bn, modes.divergence
    noisy = has_stochastic_layers(model)  # without dropout/noise layers "stochastic" changes nothing
    exact = power_iteration_float32 and power_iterations > 0 and torch.is_autocast_enabled(x.device.type)

    def in_float32() -> contextlib.AbstractContextManager:
        return torch.autocast(x.device.type, enabled=False) if exact else contextlib.nullcontext()

    given = logits is not None  # the caller's pass: under the caller's precision
    if logits is None:
        with regularizer_pass(model, stochastic=clean_stochastic, bn=bn), torch.set_grad_enabled(clean_grad), \
                in_float32():
            logits = model(x)
    same_mode = (power_iteration_stochastic == clean_stochastic or not noisy) and not (exact and given)
    with regularizer_pass(model, stochastic=power_iteration_stochastic, bn=bn), in_float32():
        d = virtual_adversarial_direction(model, x, logits.detach() if same_mode else None, d0=d0, xi=xi,
                                          power_iterations=power_iterations, method=method,
                                          generator=generator, divergence=divergence, deterministic=False)
    with regularizer_pass(model, stochastic=modes.lds_stochastic, bn=bn):
        return lds(model, x, per_sample(eps, x) * d, logits, divergence=divergence), logits


def rpt_loss(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float,
    logits: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random perturbation training: R^(0), LDS at a uniformly random r with ||r|| = eps (Eq. 16)."""
    return vat_loss(model, x, eps=eps, power_iterations=0, logits=logits, generator=generator)


def adversarial_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: Scalar,
    norm: Literal["l2", "linf"] = "l2",
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Adversarial training loss L_adv = D[h(y; y_l), p(y|x + r_adv, theta)] (Eq. 1), D = cross entropy.

    r_adv from the linear approximation: eps * g / ||g||_2 (Eq. 3, ``norm="l2"``) or
    eps * sign(g) (Eq. 4, ``norm="linf"``), with g = grad_x D[h(y; y_l), p(y|x, theta_hat)].
    r_adv carries no gradient; BN running statistics are not updated; dropout/noise are off
    while g is computed.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if not isinstance(eps, Tensor) and not (eps >= 0 and eps < float("inf")):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    x = x.detach()
    eps = per_sample(eps, x)  # one value, or one per sample (lanes)
    with torch.enable_grad(), frozen_batch_stats(model):
        with deterministic_layers(model):
            x_ = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x_), y, reduction="sum"), x_)
        if norm == "l2":
            r_adv = eps * unit_vector(g)  # a zero gradient gives r = 0, never NaN
        else:
            r_adv = eps * torch.sign(g)
        return F.cross_entropy(model(x + r_adv.detach()), y, reduction=reduction)


def entropy_loss(logits: Tensor, reduction: Literal["mean", "none"] = "mean") -> Tensor:
    """R_cent = mean over x of the conditional entropy -sum_y p(y|x) log p(y|x) (Eq. 18);
    ``reduction="none"``: the entropy of each sample, shape [N]."""
    log_p = F.log_softmax(logits, dim=1)
    h = -(log_p.exp() * log_p).sum(dim=1)
    return h if reduction == "none" else h.mean()
