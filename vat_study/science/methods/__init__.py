"""The method registry: one entry per method, the one place that says what each method is.

Each entry names its family, which settings apply to it (a pydantic model whose fields are the
``method:`` block of a trial config and study file; ``name`` picks the entry), the regularizer R
of Eq. 8 it adds to the likelihood at every step, and optionally its weight schedule and a state
with a lifecycle: ``init_state`` (built once the network is, before the first update: e.g. the
Mean Teacher's EMA network), ``after_update`` (after every optimizer step: e.g. the EMA update);
the state is checkpointed with the rest of training. The config (allowed names, RPT's K = 0), the
training loop and the analyses ask this registry; none of them switches on a method's name.

    baseline      R = 0                                              (methods/paper.py)
    rpt           R^(0): LDS at a random r, ||r|| = eps (Eq. 16)
    vat           R_vadv with K = power_iterations (Eq. 7, Algorithm 1)
    vat_entmin    R_vadv + R_cent (Eq. 18; Section 4.1.2)
    at_l2         L_adv on the labeled batch, r_adv from Eq. 3
    at_linf       L_adv on the labeled batch, r_adv from Eq. 4
    pi_model      the squared difference of two stochastic passes' softmaxes   (methods/family.py)
    mean_teacher  the same against an EMA teacher's pass
    pseudo_label  cross entropy to the network's own confident arg-max

A setting another method has but this one does not (``eps`` for baseline) is dropped when the
block is validated, so one study-file ``method:`` block can serve a grid over methods; any other
key is refused. A new method is one entry (``register``, in its own file or beside its family)
and one test; ``register`` adds one at run time (in-process).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..method_settings import (  # noqa: F401  (re-exported)
    Implementation,
    MethodSettings,
    NoSettings,
    Perturbation,
    RandomPerturbation,
    VirtualAdversarial,
)
from ..vocabulary import DEFAULT_XI

if TYPE_CHECKING:  # torch is imported where a regularizer runs, so the settings and the registry load without it
    from torch import Tensor, nn

Family = Literal["none", "virtual_adversarial", "adversarial", "consistency"]
RandomStart = Callable[["Tensor"], "Tensor"]


def power_method(s: MethodSettings) -> dict[str, Any]:
    """xi and the direction method a probe uses to find r_vadv for a trial of this method: the
    trial's own where it runs a power iteration, the defaults otherwise (baseline, RPT, AT, ...)."""
    return {"xi": getattr(s, "xi", DEFAULT_XI), "method": getattr(s, "direction", "finite_difference")}


def implementation_of(s: MethodSettings) -> Implementation:
    """The implementation block of a virtual adversarial method; the default one for the others
    (a probe measuring R_vadv "as training computes it" of a baseline trial)."""
    return getattr(s, "implementation", None) or Implementation()


def per_lane(v: Tensor, n_lanes: int) -> Tensor:
    """Per-sample values [S * B] -> the mean of each lane's block [S]."""
    return v.view(n_lanes, -1).mean(1)


def join_per_lane(a: Tensor, b: Tensor, n_lanes: int) -> Tensor:
    """Two lane-blocked batches [S * A, ...] and [S * B, ...] -> [S * (A + B), ...], lane i's
    block being its A samples of ``a`` followed by its B samples of ``b``."""
    import torch

    return torch.cat([a.view(n_lanes, -1, *a.shape[1:]), b.view(n_lanes, -1, *b.shape[1:])], 1).flatten(0, 1)


def per_lane_sample(values: Tensor, x: Tensor, n_lanes: int) -> Tensor:
    """One value per lane block [S] -> one per sample of the lane-blocked batch x [S * B]."""
    return values.repeat_interleave(x.shape[0] // n_lanes)


@dataclass(frozen=True, kw_only=True)
class Step:
    """What a regularizer, a weight and a lifecycle hook see at one update: the method's settings,
    the update index, the batches and the model (S lanes laid end to end, see ``batched``), and the
    method's state. Built with keywords."""

    settings: MethodSettings  # the trial's ``method:`` block
    model: nn.Module
    x_l: Tensor  # labeled batch [S * B_l, ...]
    y_l: Tensor
    logits_l: Tensor | None  # the labeled pass (the one that updates BN running statistics); None after the update
    x_reg: Tensor | None  # the unlabeled batch [S * B_u, ...]; None: supervised
    step: int = 1  # this update, 1-based
    steps: int = 1  # the updates training runs (task.steps)
    n_lanes: int = 1
    random_start: RandomStart | None = None  # d0 for the samples x (default: the global RNG)
    power_iteration_float32: bool = False  # task.precision mixed: the power iteration out of the autocast
    power_iteration_products: str = "float32"  # task.precision mixed_delta: "bfloat16" (the difference pass)
    lane_values: Mapping[str, Tensor] = field(default_factory=dict)  # a lane setting -> one value per lane [S]
    state: Any = None  # the method's state (``Method.init_state``)

    def value(self, name: str, x: Tensor | None = None) -> Any:
        """A method setting for the samples of x (lane-blocked): the settings' value, or each
        lane's per sample [N] where the lanes differ (x None: one per lane [S])."""
        if name not in self.lane_values:
            return getattr(self.settings, name)
        return self.lane_values[name] if x is None else per_lane_sample(self.lane_values[name], x, self.n_lanes)

    def eps(self, x: Tensor) -> float | Tensor:
        return self.value("eps", x)

    def xi(self, x: Tensor) -> float | Tensor:
        """xi for the samples of x (the default where the method has none: RPT, K = 0)."""
        return power_method(self.settings)["xi"] if "xi" not in self.lane_values else self.value("xi", x)

    def alpha(self) -> float | Tensor:
        """The weight of R (Eq. 8): the method's alpha (1 where it has none: baseline, R = 0), or
        each lane's [S]."""
        return getattr(self.settings, "alpha", 1.0) if "alpha" not in self.lane_values else self.value("alpha")

    def regularizer_batch(self) -> Tensor:
        """The batch R is computed on: the unlabeled one (Appendix C; supervised: the labeled one)."""
        return self.x_l if self.x_reg is None else self.x_reg


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


@dataclass(frozen=True)
class Method:
    name: str
    family: Family
    summary: str
    regularizer: Callable[[Step], Tensor]  # R of Eq. 8 per lane, shape [S]
    settings: type[MethodSettings]  # its ``method:`` block
    entropy: bool = False
    weight: Callable[[Step], float | Tensor] | None = None  # alpha of Eq. 8 at this step; None: Step.alpha()
    init_state: Callable[[MethodSettings, nn.Module], dict[str, Any]] | None = None  # before the first update
    after_update: Callable[[Step], None] | None = None  # after every optimizer step (Step.state is the state)

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


def state_dict(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A method's state as a checkpoint keeps it: each network's ``state_dict``, tensors as they are."""
    if state is None:
        return None
    return {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}


def load_state(state: Mapping[str, Any] | None, saved: Mapping[str, Any] | None) -> None:
    """Put a checkpoint's ``state_dict(state)`` back into ``state`` (in place)."""
    if state is None or saved is None:
        return
    for k, v in state.items():
        if hasattr(v, "load_state_dict"):
            v.load_state_dict(saved[k])
        else:
            v.copy_(saved[k])


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry: from then on configs, studies (in this process: the ``local``
    executor; for Ray workers, put its file beside the built-in ones and name it in this module's
    last import line), training and reports know it. A name already taken is refused."""
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


from . import paper, family  # noqa: E402,F401,I001  (the built-in methods, in this order)

METHOD_NAMES: tuple[str, ...] = tuple(REGISTRY)
"""The built-in methods (``register`` adds more)."""
