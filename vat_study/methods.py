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

Each entry also declares its settings: a pydantic model whose fields are the ``method:`` block of
a trial config and study file (``name`` picks the entry: a union discriminated on the name). A
setting another method has but this one does not (``eps`` for baseline) is dropped when the block
is validated, so one study-file ``method:`` block can serve a grid over methods; any other key is
refused.

A new method is one entry here (and one test); ``register`` adds one at run time (in-process).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .validation import Strict, finite
from .vocabulary import DEFAULT_XI

if TYPE_CHECKING:  # torch is imported where a regularizer runs, so the settings and the registry load without it
    from torch import Tensor, nn

    from .regularizers import adversarial_loss, entropy_loss, has_stochastic_layers, regularizer_lds

_REGULARIZERS = ("adversarial_loss", "entropy_loss", "has_stochastic_layers", "regularizer_lds")


def _bind_regularizers() -> None:
    """Bind the ``regularizers`` functions (and so torch) into this module the first time a
    regularizer runs or one of them is asked for; a name already bound (a test's patch) is kept."""
    if not all(n in globals() for n in _REGULARIZERS):
        from . import regularizers

        for n in _REGULARIZERS:
            globals().setdefault(n, getattr(regularizers, n))


def __getattr__(name: str) -> Any:
    if name in _REGULARIZERS:
        _bind_regularizers()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# ------------------------------------------------------------------------ settings




class Implementation(Strict):
    """How R_vadv / R^(0) (Eq. 5, 7, 16) is computed where the paper leaves it open. Three passes
    make the regularizer: the clean pass (the target p(y|x, theta_hat) of Eq. 5), the power
    iteration's passes at x + xi d (Eq. 12) and the perturbed LDS pass at x + r_vadv. docs/science.md
    "Implementation choices" gives each anchor's choice and the measured effect of each setting
    (``studies/vat_implementation_choices.yaml``). A setting of the virtual adversarial methods."""

    clean_stochastic: bool = Field(True, description="dropout / Gaussian noise on in the clean (target) pass "
                                                     "(default: on, as vat_tf, vat_chainer, VAT-pytorch and USB)")
    power_iteration_stochastic: bool = Field(True, json_schema_extra={"power_iteration_only": True}, description="dropout / noise on in the power iteration's passes "
                                                               "(default: on, as the anchors)")
    lds_stochastic: bool = Field(True, description="dropout / noise on in the perturbed (LDS) pass")
    divergence: Literal["forward", "reverse"] = Field(
        "forward", description="forward: KL(p_clean || p_perturbed) (Eq. 17, the paper); reverse: KL(p_perturbed || p_clean)")
    bn: Literal["batch", "running"] = Field(
        "batch", description="BN statistics in the regularizer's passes: the batch's own, or the running ones")
    regularizer_batch: Literal["unlabeled", "labeled_and_unlabeled"] = Field(
        "unlabeled", description="semi-supervised: R on the unlabeled batch (Appendix C), or on the labeled "
                                 "and unlabeled batches joined")


class MethodSettings(Strict):
    """The ``method:`` block of a trial config: ``name`` and the settings of that method."""

    name: str

    @property
    def k(self) -> int:
        """The number of power iterations training runs (0: none, or a random direction, Eq. 16)."""
        return 0


class NoSettings(MethodSettings):
    """baseline: R = 0, nothing to set."""


class Perturbation(MethodSettings):
    """A regularizer at a perturbation of norm eps, weighted by alpha (Eq. 8)."""

    eps: float = Field(1.0, gt=0, json_schema_extra={"lane": True}, description="||r|| of the perturbation (Eq. 7)")
    alpha: float = Field(1.0, ge=0, json_schema_extra={"lane": True}, description="weight of R in the objective (Eq. 8)")

    _fin = field_validator("eps", "alpha")(finite)


class RandomPerturbation(Perturbation):
    """rpt: R^(0) (Eq. 16), the LDS at a random direction: no power iteration, so no K, xi or
    direction setting (this is the one place that says RPT is K = 0)."""

    implementation: Implementation = Implementation()


class VirtualAdversarial(Perturbation):
    """vat, vat_entmin: R_vadv (Eq. 7) with r_vadv from K power iterations (Eq. 12, Algorithm 1)."""

    xi: float = Field(DEFAULT_XI, gt=0, json_schema_extra={"lane": True, "power_iteration_only": True}, description="finite-difference step of the power iteration (Eq. 12)")
    power_iterations: int = Field(1, ge=0, le=1000, json_schema_extra={"power_iteration_only": True}, description="K (Section 3.3; Fig. 4)")
    direction: Literal["finite_difference", "hvp"] = Field(
        "finite_difference", json_schema_extra={"power_iteration_only": True},
        description="the power iteration's product: a finite difference of gradients (Eq. 12) or an exact Hessian-vector product")
    alpha_rampup: int = Field(
        0, ge=0, json_schema_extra={"legacy": 0},
        description="ramp alpha up over the first N updates: alpha * exp(-5 (1 - min(t, N) / N)^2) at update t "
                    "(the sigmoid-shaped ramp-up of Laine & Aila 2017, as USB and realistic-ssl-evaluation use); "
                    "0: off, alpha from the first update (the paper)")
    implementation: Implementation = Implementation()

    _fin_xi = field_validator("xi")(finite)

    @property
    def k(self) -> int:
        return self.power_iterations


def power_method(s: MethodSettings) -> dict[str, Any]:
    """xi and the direction method a probe uses to find r_vadv for a trial of this method: the
    trial's own where it runs a power iteration, the defaults otherwise (baseline, RPT, AT)."""
    return {"xi": getattr(s, "xi", DEFAULT_XI), "method": getattr(s, "direction", "finite_difference")}


def implementation_of(s: MethodSettings) -> Implementation:
    """The implementation block of a virtual adversarial method; the default one for the others
    (a probe measuring R_vadv "as training computes it" of a baseline trial)."""
    return getattr(s, "implementation", None) or Implementation()


RandomStart = Callable[["Tensor"], "Tensor"]
Family = Literal["none", "virtual_adversarial", "adversarial"]


def per_lane(v: Tensor, n_lanes: int) -> Tensor:
    """Per-sample values [S * B] -> the mean of each lane's block [S]."""
    return v.view(n_lanes, -1).mean(1)


per_seed = per_lane  # deprecated name (a lane was called a seed)


def join_per_lane(a: Tensor, b: Tensor, n_lanes: int) -> Tensor:
    """Two lane-blocked batches [S * A, ...] and [S * B, ...] -> [S * (A + B), ...], lane i's
    block being its A samples of ``a`` followed by its B samples of ``b``."""
    import torch

    return torch.cat([a.view(n_lanes, -1, *a.shape[1:]), b.view(n_lanes, -1, *b.shape[1:])], 1).flatten(0, 1)


join_per_seed = join_per_lane  # deprecated name


@dataclass(frozen=True, kw_only=True)
class Step:
    """What a regularizer and a weight see at one update: the method's settings, the update index,
    the batches and the model (S lanes laid end to end, see ``batched``). Built with keywords."""

    settings: MethodSettings  # the trial's ``method:`` block
    model: nn.Module
    x_l: Tensor  # labeled batch [S * B_l, ...]
    y_l: Tensor
    logits_l: Tensor  # the labeled pass (the one that updates BN running statistics)
    x_reg: Tensor | None  # the unlabeled batch [S * B_u, ...]; None: supervised
    step: int = 1  # this update, 1-based
    steps: int = 1  # the updates training runs (task.steps)
    n_lanes: int = 1
    random_start: RandomStart | None = None  # d0 for the samples x (default: the global RNG)
    power_iteration_float32: bool = False  # task.precision mixed: the power iteration out of the autocast
    power_iteration_products: str = "float32"  # task.precision mixed_delta: "bfloat16" (the difference pass)
    lane_eps: Tensor | None = None  # one eps per lane block [S] (lanes); None: the settings' eps for all
    lane_xi: Tensor | None = None  # one xi per lane block [S] (lanes); None: the settings' xi for all
    lane_alpha: Tensor | None = None  # one alpha per lane block [S] (lanes); None: the settings' alpha for all

    @property
    def n_seeds(self) -> int:
        """Deprecated name of ``n_lanes``."""
        return self.n_lanes

    def eps(self, x: Tensor) -> float | Tensor:
        """eps for the samples of x (lane-blocked): the method's eps, or each lane's per sample [N]."""
        return self.settings.eps if self.lane_eps is None else per_lane_sample(self.lane_eps, x, self.n_lanes)

    def xi(self, x: Tensor) -> float | Tensor:
        """xi for the samples of x, as ``eps`` (the default where the method has none: RPT, K = 0)."""
        xi = power_method(self.settings)["xi"]
        return xi if self.lane_xi is None else per_lane_sample(self.lane_xi, x, self.n_lanes)

    def alpha(self) -> float | Tensor:
        """The weight of R (Eq. 8): the method's alpha (1 where it has none: baseline, R = 0), or
        each lane's [S]."""
        return getattr(self.settings, "alpha", 1.0) if self.lane_alpha is None else self.lane_alpha


def per_lane_sample(values: Tensor, x: Tensor, n_lanes: int) -> Tensor:
    """One value per lane block [S] -> one per sample of the lane-blocked batch x [S * B]."""
    return values.repeat_interleave(x.shape[0] // n_lanes)


def rampup(step: int, length: int) -> float:
    """The sigmoid-shaped ramp-up exp(-5 (1 - min(t, N) / N)^2) at update t of N (Laine & Aila
    2017; Tarvainen & Valpola 2017): exp(-5) at t = 0, 1 from t = N on; N = 0: 1 (no ramp-up)."""
    if length <= 0:
        return 1.0
    return math.exp(-5.0 * (1.0 - min(step, length) / length) ** 2)


def ramped_alpha(s: Step) -> float | Tensor:
    """The weight of a method with an ``alpha_rampup`` setting: alpha * rampup(t, N); exactly
    alpha (the same number) where N = 0 or the ramp-up is over."""
    n = getattr(s.settings, "alpha_rampup", 0)
    if n <= 0 or s.step >= n:
        return s.alpha()
    return s.alpha() * rampup(s.step, n)


def _none(s: Step) -> Tensor:
    return s.logits_l.new_zeros(s.n_lanes)


def _adversarial(norm: Literal["l2", "linf"]) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:  # L_adv on the labeled batch (Eq. 1, r_adv from Eq. 3 or 4)
        _bind_regularizers()
        return per_lane(adversarial_loss(s.model, s.x_l, s.y_l, eps=s.eps(s.x_l), norm=norm, reduction="none"),
                        s.n_lanes)
    return reg


def _virtual_adversarial(entropy: bool) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:
        _bind_regularizers()
        m = s.settings
        impl = m.implementation
        if s.x_reg is None:  # supervised: R on the labeled batch
            x = s.x_l
        elif impl.regularizer_batch == "labeled_and_unlabeled":
            x = join_per_lane(s.x_l, s.x_reg, s.n_lanes)
        else:  # Appendix C: a separate batch from the unlabeled pool (which holds the labeled images too)
            x = s.x_reg
        # The labeled pass already is the clean pass when R uses the labeled batch and the modes agree.
        reuse = x is s.x_l and impl.bn == "batch" and (impl.clean_stochastic or not has_stochastic_layers(s.model))
        lds_x, logits = regularizer_lds(
            s.model, x, eps=s.eps(x), xi=s.xi(x), power_iterations=m.k, method=power_method(m)["method"],
            logits=s.logits_l if reuse else None, d0=s.random_start(x) if s.random_start else None,
            clean_grad=entropy, power_iteration_float32=s.power_iteration_float32,
            power_iteration_products=s.power_iteration_products, implementation=impl)
        r = per_lane(lds_x, s.n_lanes)  # R_vadv, Eq. 7 (K = 0: RPT, Eq. 16)
        if entropy:
            r = r + per_lane(entropy_loss(logits, reduction="none"), s.n_lanes)  # + R_cent, Eq. 18
        return r
    return reg


@dataclass(frozen=True)
class Method:
    name: str
    family: Family
    summary: str
    regularizer: Callable[[Step], Tensor]  # R of Eq. 8 per lane, shape [S]
    settings: type[MethodSettings]  # its ``method:`` block
    entropy: bool = False
    weight: Callable[[Step], float | Tensor] | None = None  # alpha of Eq. 8 at this step; None: Step.alpha()

    def weight_at(self, s: Step) -> float | Tensor:
        """The weight of R at this update (a number, or one per lane [S]): the entry's schedule
        (e.g. ``ramped_alpha``), or the settings' alpha (each lane's) where it has none."""
        return s.alpha() if self.weight is None else self.weight(s)

    @property
    def uses_eps(self) -> bool:
        return "eps" in self.settings.model_fields

    @property
    def uses_direction(self) -> bool:
        """Whether K, xi and the direction method shape the regularizer (a power iteration runs)."""
        return "power_iterations" in self.settings.model_fields

    @property
    def uses_implementation(self) -> bool:
        """Whether the ``implementation`` block (passes, divergence, BN, batch) applies."""
        return "implementation" in self.settings.model_fields

    def k(self, power_iterations: Any) -> int:
        """K training uses, given a trial's ``power_iterations`` (None / NaN where the method has
        none): 0 for a method without a power iteration (RPT is R^(0), Eq. 16)."""
        return int(power_iterations) if self.uses_direction else 0


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "none", "no regularizer (R = 0)", _none, NoSettings),
    Method("rpt", "virtual_adversarial", "random perturbation training, R^(0) (Eq. 16)", _virtual_adversarial(False),
           RandomPerturbation),
    Method("vat", "virtual_adversarial", "virtual adversarial training, R_vadv (Eq. 7)", _virtual_adversarial(False),
           VirtualAdversarial, weight=ramped_alpha),
    Method("vat_entmin", "virtual_adversarial", "VAT + conditional entropy (Eq. 18)", _virtual_adversarial(True),
           VirtualAdversarial, entropy=True, weight=ramped_alpha),
    Method("at_l2", "adversarial", "adversarial training, L2 (Eq. 3)", _adversarial("l2"), Perturbation),
    Method("at_linf", "adversarial", "adversarial training, L-inf (Eq. 4)", _adversarial("linf"), Perturbation),
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


def setting_names() -> frozenset[str]:
    """Every setting some registered method has (the keys a ``method:`` block may hold)."""
    return frozenset(f for m in REGISTRY.values() for f in m.settings.model_fields)


class _Name(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str = "vat"

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in REGISTRY:  # asked at validation time: a method registered at run time is allowed
            raise ValueError(f"Input should be {allowed_text()}")
        return v


def settings_of(block: Any) -> MethodSettings:
    """Validate a ``method:`` block: its ``name`` (default vat) picks the registry entry, whose
    settings model checks the rest. Settings of other methods that this one lacks are dropped
    (``eps`` for baseline); unknown keys raise. Errors are located inside the block."""
    if isinstance(block, MethodSettings):
        return block
    if not isinstance(block, Mapping):
        raise ValueError("must be a mapping: {name: vat, eps: ..., ...} (the method and its settings)")
    entry = REGISTRY[_Name.model_validate(block).name]
    own, anyones = entry.settings.model_fields, setting_names()
    kept = {k: v for k, v in block.items() if k in own or k not in anyones}
    return entry.settings.model_validate({**kept, "name": entry.name})
