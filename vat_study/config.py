"""The trial configuration: every key ``run_trial`` accepts, its default and its allowed values.

A config is a plain mapping (YAML, JSON, an Optuna trial's params ...). Unknown keys and invalid
values raise ``ConfigError`` naming each offending field, before anything is loaded or trained.
Defaults give the offline default trial: semi-supervised VAT on scikit-learn's digits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import format_validation_error

from . import methods
from .data import DATASET_NAMES
from .methods import METHOD_NAMES
from .models import CONV_MODELS, MODEL_NAMES
from .regularizers import DEFAULT_XI

METHODS: tuple[str, ...] = METHOD_NAMES


class ConfigError(ValueError):
    """An invalid trial config; ``str(e)`` lists every bad field and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid trial config:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    # strict: no silent coercion (true is not 1, "3" is not 3); an int is still a valid float.
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class Batch(_Strict):
    labeled: int = Field(64, ge=1, description="labeled mini-batch (the likelihood term)")
    unlabeled: int = Field(256, ge=1, description="regularizer mini-batch from the unlabeled pool (semi-supervised)")


class Decay(_Strict):
    """Learning-rate schedule. ``exponential``: lr * rate ** (step // every) (Appendix A).
    ``linear``: constant until ``start`` (default: half of the steps), then linearly to 0 at the
    last step (Appendices B-D); ``beta1_after`` switches Adam's beta1 at ``start``, as the
    official code does (0.9 -> 0.5)."""

    kind: Literal["none", "exponential", "linear"] = "exponential"
    every: int = Field(600, ge=1)
    rate: float = Field(0.9, gt=0, le=1)
    start: int | None = Field(None, ge=0)
    beta1_after: float | None = Field(None, ge=0, lt=1)


class Optimizer(_Strict):
    name: Literal["adam"] = "adam"
    lr: float = Field(0.002, gt=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    decay: Decay = Decay()

    _fin = field_validator("lr")(_finite)


class Augment(_Strict):
    translate: int = Field(0, ge=0, le=8, description="random translation in pixels (Appendix B, D use 2)")
    flip: bool = False


class RvadvProbe(_Strict):
    """R_vadv (Eq. 7) measured in eval mode on a fixed subset at a fixed eps and K (Fig. 2, 4)."""

    eps: float = Field(2.0, gt=0, description="evaluation eps (Fig. 2 uses 2.0 on MNIST)")
    power_iterations: int = Field(1, ge=0)
    size: int = Field(1000, ge=1)
    every: int | None = Field(None, ge=1, description="steps between measurements (default: eval_every)")


class GradVarianceProbe(_Strict):
    """Normalized SD norm of grad_theta R^(K) (Eq. 21) from ``samples`` resampled mini-batches and
    perturbations, for each K in ``power_iterations`` (Fig. 7: K = 0 vs 1)."""

    power_iterations: list[int] = Field(default_factory=lambda: [0, 1])
    samples: int = Field(20, ge=2)
    batch: int | None = Field(None, ge=1, description="M (default: the regularizer batch)")
    eps: float | None = Field(None, gt=0, description="default: the trial's eps")
    every: int | None = Field(None, ge=1)
    steps: list[int] | None = Field(None, description="explicit steps to measure at (instead of every)")

    @field_validator("power_iterations")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        if not v or any(k < 0 for k in v):
            raise ValueError("must be a non-empty list of integers >= 0")
        return v


class FidelityProbe(_Strict):
    """|cos| between the direction training uses and the dominant eigenvector of H (Eq. 9-10),
    estimated by ``reference_iterations`` exact Hessian-vector power iterations, eval mode."""

    size: int = Field(100, ge=1)
    reference_iterations: int = Field(50, ge=1)
    every: int | None = Field(None, ge=1)


class Implementation(_Strict):
    """How R_vadv / R^(0) (Eq. 5, 7, 16) is computed where the paper leaves it open. Three passes
    make the regularizer: the clean pass (the target p(y|x, theta_hat) of Eq. 5), the power
    iteration's passes at x + xi d (Eq. 12) and the perturbed LDS pass at x + r_vadv. README
    "Implementation choices" gives each anchor's choice and the measured effect of each setting
    (``studies/vat_implementation_choices.yaml``). Methods at_l2 / at_linf and baseline ignore it."""

    clean_stochastic: bool = Field(False, description="dropout / Gaussian noise on in the clean (target) pass")
    power_iteration_stochastic: bool = Field(False, description="dropout / noise on in the power iteration's passes")
    lds_stochastic: bool = Field(True, description="dropout / noise on in the perturbed (LDS) pass")
    divergence: Literal["forward", "reverse"] = Field(
        "forward", description="forward: KL(p_clean || p_perturbed) (Eq. 17, the paper); reverse: KL(p_perturbed || p_clean)")
    bn: Literal["batch", "running"] = Field(
        "batch", description="BN statistics in the regularizer's passes: the batch's own, or the running ones")
    regularizer_batch: Literal["unlabeled", "labeled_and_unlabeled"] = Field(
        "unlabeled", description="semi-supervised: R on the unlabeled batch (Appendix C), or on the labeled "
                                 "and unlabeled batches joined")

    def passes(self) -> dict[str, Any]:
        """The keyword arguments of ``regularizers.regularizer_lds`` (every setting but the batch)."""
        return self.model_dump(exclude={"regularizer_batch"})


LEGACY_IMPLEMENTATION = {"semi_supervised": dict(clean_stochastic=False, power_iteration_stochastic=False,
                                                 lds_stochastic=True, divergence="forward", bn="batch",
                                                 regularizer_batch="unlabeled"),
                         "supervised": dict(clean_stochastic=True, power_iteration_stochastic=False,
                                            lds_stochastic=True, divergence="forward", bn="batch",
                                            regularizer_batch="unlabeled")}
"""What vat-study 0.1.x / 0.2.x did (it had no ``implementation`` block): configs stored by those
versions are read with these values (``upgrade_stored_config``)."""


def upgrade_stored_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config as stored by an older vat-study, in today's vocabulary: the missing
    ``implementation`` block is the behaviour that version had (``LEGACY_IMPLEMENTATION``)."""
    out = dict(stored)
    if "implementation" not in out:
        out["implementation"] = dict(LEGACY_IMPLEMENTATION.get(out.get("mode", "semi_supervised"),
                                                               LEGACY_IMPLEMENTATION["semi_supervised"]))
    return out


def comparable_config(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config (as stored, upgraded) with the settings that cannot change its trial
    blanked out, so that two configs compare equal exactly when they train alike: the
    ``implementation`` block for methods without a virtual adversarial regularizer (baseline, AT),
    and its ``*_stochastic`` switches for a network with no dropout or noise layer."""
    out = upgrade_stored_config(resolved)
    impl = dict(out.get("implementation") or {})
    if out.get("method") in methods.names(uses_implementation=False):
        impl = {}
    model = out.get("model")
    stochastic = (out.get("noise_sigma") or 0) > 0 if model in ("mlp", "small_mlp") else (out.get("dropout") or 0) > 0
    if not stochastic:
        impl = {k: v for k, v in impl.items() if not k.endswith("_stochastic")}
    out["implementation"] = impl
    return out


LANE_SETTINGS: tuple[str, ...] = ("seed", "eps", "alpha", "xi", "noise_sigma")
"""The settings lanes may differ in (``train.train_lanes``, ``objective.run_lanes``): each lane's
own initialization, splits and batches (seed), and its eps, alpha, xi as per-lane tensors; the
noise SD per network where the model has noise (whether it has noise is structural)."""


def lane_structure(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved trial config without its lane settings: trials whose structures are equal can
    train as lanes of one batched model (same data, model and widths, method, K, direction,
    batches, steps, optimizer and schedule, stochastic layers, probes, device and dtype)."""
    out = {k: v for k, v in resolved.items() if k not in LANE_SETTINGS and k not in ("seeds", "model_path")}
    out["noisy"] = (resolved.get("noise_sigma") or 0) > 0  # the noise layer exists or not
    return out


class Probes(_Strict):
    rvadv: RvadvProbe = RvadvProbe()
    grad_variance: GradVarianceProbe | None = None
    fidelity: FidelityProbe | None = None


class TrialConfig(_Strict):
    # --- data ---
    dataset: Literal[DATASET_NAMES] = "digits"  # type: ignore[valid-type]
    data_root: str | None = None
    download: bool = False
    idx_paths: dict[str, str] | None = None
    mode: Literal["supervised", "semi_supervised"] = "semi_supervised"
    n_labeled: int | None = Field(None, ge=1, description="semi-supervised default 100; supervised default: all")
    validation: int | None = Field(None, ge=0, description="default: min(1000, 20% of the training set)")
    zca: bool | None = None  # default: True for cifar10 (Appendix B, D)
    augment: Augment | None = None  # default: translate 2 for cifar10/svhn, flip for cifar10
    # --- model ---
    model: Literal[MODEL_NAMES] | None = None  # type: ignore[valid-type]  # default by dataset
    hidden: list[int] | None = None
    noise_sigma: float = Field(0.0, ge=0)
    top_bn: bool | None = None  # default: False on cifar10 (Table 7 caption), else True
    dropout: float = Field(0.5, ge=0, lt=1)
    # --- method (Eq. 8: loss = nll + alpha * R) ---
    method: str = "vat"  # a name in the method registry (methods.REGISTRY), checked below
    eps: float = Field(1.0, gt=0, description="||r|| of the perturbation (Eq. 7); unused by baseline")
    alpha: float = Field(1.0, ge=0)
    xi: float = Field(DEFAULT_XI, gt=0)
    power_iterations: int = Field(1, ge=0, le=1000)
    direction: Literal["finite_difference", "hvp"] = "finite_difference"
    implementation: Implementation = Implementation()
    # --- optimization ---
    seed: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, description="train these seeds together as one batched model "
                                                      "(vat_study.batched); ``seed`` is then unused")
    steps: int = Field(1000, ge=1)
    batch: Batch = Batch()
    optimizer: Optimizer = Optimizer()
    eval_every: int = Field(100, ge=1)
    probes: Probes = Probes()
    # --- execution ---
    model_path: str | None = None  # save the trained weights (a state_dict) here
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"

    _fin = field_validator("eps", "alpha", "xi", "noise_sigma")(_finite)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in methods.REGISTRY:  # asked at validation time: a registered method is allowed
            raise ValueError(f"Input should be {methods.allowed_text()}")
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(h < 1 for h in v)):
            raise ValueError("must be a non-empty list of layer widths >= 1")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(s < 0 for s in v) or len(set(v)) != len(v)):
            raise ValueError("must be a non-empty list of distinct integers >= 0")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("cpu", "cuda", "auto") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError("must be 'cpu', 'cuda', 'cuda:N' or 'auto'")
        return v

    @model_validator(mode="after")
    def _resolve_defaults(self) -> TrialConfig:
        if self.mode == "semi_supervised" and self.n_labeled is None:
            self.n_labeled = 100
        if self.model is None:
            self.model = {"moons": "small_mlp", "cifar10": "conv_large", "svhn": "conv_small_svhn"}.get(
                self.dataset, "mlp")
        if self.top_bn is None:
            self.top_bn = self.dataset != "cifar10"
        if self.zca is None:
            self.zca = self.dataset == "cifar10"
        if self.augment is None:
            self.augment = Augment(translate=2 if self.dataset in ("cifar10", "svhn") else 0,
                                   flip=self.dataset == "cifar10")
        fixed = methods.get(self.method).fixed_k
        if fixed is not None:  # RPT is R^(0) (Eq. 16): K = 0 whatever a shared default says
            self.power_iterations = fixed
        if self.seeds is not None and self.model_path and "{seed}" not in self.model_path:
            raise ValueError("model_path: with seeds, must contain '{seed}' (one file per seed), "
                             f"got {self.model_path!r}")
        if self.mode == "supervised" and self.implementation.regularizer_batch != "unlabeled":
            raise ValueError("implementation.regularizer_batch: 'labeled_and_unlabeled' applies to mode "
                             "'semi_supervised' only (supervised learning has one batch); allowed here: 'unlabeled'")
        if self.model in CONV_MODELS and self.dataset in ("digits", "moons"):
            raise ValueError(f"model: {self.model!r} needs 32x32 images; dataset {self.dataset!r} allows 'mlp' or 'small_mlp'")
        return self

    @property
    def k(self) -> int:
        """The number of power iterations training uses (0 for RPT)."""
        return methods.get(self.method).k(self.power_iterations)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None) -> TrialConfig:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigError([f"config must be a mapping of keys to values, got {type(config).__name__}"])
        try:
            return cls.model_validate(dict(config))
        except ValidationError as e:
            raise ConfigError(format_validation_error(e)) from None
