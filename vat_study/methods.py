"""The method registry: one entry per method, the one place that says what each method is.

Each entry names its family, which settings apply to it, and the regularizer R of Eq. 8 it adds
to the likelihood at every step, built from the ``regularizers`` functions (so the loss that
trains is the loss the Hessian tests check). The config (allowed names, RPT's K = 0), the training
loop and the analyses ask this registry; none of them switches on a method's name.

    baseline    R = 0
    rpt         R^(0): LDS at a random r, ||r|| = eps (Eq. 16)
    vat         R_vadv with K = power_iterations (Eq. 7, Algorithm 1)
    vat_entmin  R_vadv + R_cent (Eq. 18; Section 4.1.2)
    at_l2       L_adv on the labeled batch, r_adv from Eq. 3
    at_linf     L_adv on the labeled batch, r_adv from Eq. 4

A new method is one entry here (and one test); ``register`` adds one at run time (in-process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from .regularizers import adversarial_loss, entropy_loss, has_stochastic_layers, regularizer_lds

if TYPE_CHECKING:
    from .config import TrialConfig

RandomStart = Callable[[Tensor], Tensor]
Family = Literal["none", "virtual_adversarial", "adversarial"]


def per_seed(v: Tensor, n_seeds: int) -> Tensor:
    """Per-sample values [S * B] -> the mean of each seed's block [S]."""
    return v.view(n_seeds, -1).mean(1)


def join_per_seed(a: Tensor, b: Tensor, n_seeds: int) -> Tensor:
    """Two seed-blocked batches [S * A, ...] and [S * B, ...] -> [S * (A + B), ...], seed i's
    block being its A samples of ``a`` followed by its B samples of ``b``."""
    return torch.cat([a.view(n_seeds, -1, *a.shape[1:]), b.view(n_seeds, -1, *b.shape[1:])], 1).flatten(0, 1)


@dataclass(frozen=True)
class Step:
    """What a regularizer sees at one update (S seeds laid end to end, see ``batched``)."""

    cfg: TrialConfig
    model: nn.Module
    x_l: Tensor  # labeled batch [S * B_l, ...]
    y_l: Tensor
    logits_l: Tensor  # the labeled pass (the one that updates BN running statistics)
    x_reg: Tensor | None  # the unlabeled batch [S * B_u, ...]; None: supervised
    n_seeds: int = 1
    random_start: RandomStart | None = None  # d0 for the samples x (default: the global RNG)
    lane_eps: Tensor | None = None  # one eps per seed block [S] (lanes); None: cfg.eps for all
    lane_xi: Tensor | None = None  # one xi per seed block [S] (lanes); None: cfg.xi for all

    def eps(self, x: Tensor) -> float | Tensor:
        """eps for the samples of x (seed-blocked): cfg.eps, or each lane's eps per sample [N]."""
        return self.cfg.eps if self.lane_eps is None else per_lane_sample(self.lane_eps, x, self.n_seeds)

    def xi(self, x: Tensor) -> float | Tensor:
        """xi for the samples of x, as ``eps``."""
        return self.cfg.xi if self.lane_xi is None else per_lane_sample(self.lane_xi, x, self.n_seeds)


def per_lane_sample(values: Tensor, x: Tensor, n_seeds: int) -> Tensor:
    """One value per seed block [S] -> one per sample of the seed-blocked batch x [S * B]."""
    return values.repeat_interleave(x.shape[0] // n_seeds)


def _none(s: Step) -> Tensor:
    return s.logits_l.new_zeros(s.n_seeds)


def _adversarial(norm: Literal["l2", "linf"]) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:  # L_adv on the labeled batch (Eq. 1, r_adv from Eq. 3 or 4)
        return per_seed(adversarial_loss(s.model, s.x_l, s.y_l, eps=s.eps(s.x_l), norm=norm, reduction="none"),
                        s.n_seeds)
    return reg


def _virtual_adversarial(entropy: bool) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:
        cfg, impl = s.cfg, s.cfg.implementation
        if s.x_reg is None:  # supervised: R on the labeled batch
            x = s.x_l
        elif impl.regularizer_batch == "labeled_and_unlabeled":
            x = join_per_seed(s.x_l, s.x_reg, s.n_seeds)
        else:  # Appendix C: a separate batch from the unlabeled pool (which holds the labeled images too)
            x = s.x_reg
        # The labeled pass already is the clean pass when R uses the labeled batch and the modes agree.
        reuse = x is s.x_l and impl.bn == "batch" and (impl.clean_stochastic or not has_stochastic_layers(s.model))
        lds_x, logits = regularizer_lds(
            s.model, x, eps=s.eps(x), xi=s.xi(x), power_iterations=cfg.k, method=cfg.direction,
            logits=s.logits_l if reuse else None, d0=s.random_start(x) if s.random_start else None,
            clean_grad=entropy, **impl.passes())
        r = per_seed(lds_x, s.n_seeds)  # R_vadv, Eq. 7 (K = 0: RPT, Eq. 16)
        if entropy:
            r = r + per_seed(entropy_loss(logits, reduction="none"), s.n_seeds)  # + R_cent, Eq. 18
        return r
    return reg


@dataclass(frozen=True)
class Method:
    name: str
    family: Family
    summary: str
    regularizer: Callable[[Step], Tensor]  # R of Eq. 8 per seed, shape [S]
    uses_eps: bool = True
    fixed_k: int | None = None  # K forced whatever power_iterations says (RPT: 0)
    entropy: bool = False

    @property
    def uses_direction(self) -> bool:
        """Whether K, xi and the direction method shape the regularizer (a power iteration runs)."""
        return self.family == "virtual_adversarial" and self.fixed_k != 0

    @property
    def uses_implementation(self) -> bool:
        """Whether the ``implementation`` block (passes, divergence, BN, batch) applies."""
        return self.family == "virtual_adversarial"

    def k(self, power_iterations: int) -> int:
        """The number of power iterations training uses."""
        return self.fixed_k if self.fixed_k is not None else power_iterations


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "none", "no regularizer (R = 0)", _none, uses_eps=False),
    Method("rpt", "virtual_adversarial", "random perturbation training, R^(0) (Eq. 16)", _virtual_adversarial(False),
           fixed_k=0),
    Method("vat", "virtual_adversarial", "virtual adversarial training, R_vadv (Eq. 7)", _virtual_adversarial(False)),
    Method("vat_entmin", "virtual_adversarial", "VAT + conditional entropy (Eq. 18)", _virtual_adversarial(True),
           entropy=True),
    Method("at_l2", "adversarial", "adversarial training, L2 (Eq. 3)", _adversarial("l2")),
    Method("at_linf", "adversarial", "adversarial training, L-inf (Eq. 4)", _adversarial("linf")),
)}

METHOD_NAMES: tuple[str, ...] = tuple(REGISTRY)
"""The built-in methods (``register`` adds more)."""


def register(method: Method) -> Method:
    """Add a method to the registry: from then on configs, studies (in this process: the ``local``
    executor; for Ray workers, add the entry to ``REGISTRY`` above), training and reports know it.
    A name already taken is refused."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    REGISTRY[method.name] = method
    return method


def allowed_text() -> str:
    """The registered names as a validation error lists them: 'a', 'b' or 'c'."""
    quoted = [repr(n) for n in REGISTRY]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def get(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"method must be one of {tuple(REGISTRY)}, got {name!r}") from None


def names(**where: bool | str) -> tuple[str, ...]:
    """Method names whose attributes match, e.g. ``names(uses_direction=True)``."""
    return tuple(m.name for m in REGISTRY.values() if all(getattr(m, k) == v for k, v in where.items()))
