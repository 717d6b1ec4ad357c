"""The ``task:`` block of a trial (``Task``): data, model, optimization and execution, each setting
with its default and its allowed values; and ``param_path``, where a search key lives in a
nested trial config (the task's own settings being one of the places). ``config.TrialConfig``
holds a ``Task``; the defaults a dataset implies come from the dataset registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..common.validation import Strict, finite
from . import datasets, methods
from .vocabulary import CONV_MODELS, MODEL_NAMES

MAX_STEPS = 10**12
"""The most updates a trial may ask for (``task.steps``): at a millisecond an update, 32 years."""


class Batch(Strict):
    labeled: int = Field(64, ge=1, description="labeled mini-batch (the likelihood term)")
    unlabeled: int = Field(256, ge=1, description="regularizer mini-batch from the unlabeled pool (semi-supervised)")


class Decay(Strict):
    """Learning-rate schedule. ``exponential``: lr * rate ** (step // every) (Appendix A).
    ``linear``: constant until ``start`` (default: half of the steps), then linearly to 0 at the
    last step (Appendices B-D); ``beta1_after`` switches Adam's beta1 at ``start``, as the
    official code does (0.9 -> 0.5)."""

    kind: Literal["none", "exponential", "linear"] = "exponential"
    every: int = Field(600, ge=1)
    rate: float = Field(0.9, gt=0, le=1)
    start: int | None = Field(None, ge=0)
    beta1_after: float | None = Field(None, ge=0, lt=1)


class Optimizer(Strict):
    name: Literal["adam"] = "adam"
    lr: float = Field(0.002, gt=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    decay: Decay = Decay()

    _fin = field_validator("lr")(finite)


class Augment(Strict):
    translate: int = Field(0, ge=0, le=8, description="random translation in pixels (Appendix B, D use 2)")
    flip: bool = False


SECTIONS: tuple[str, ...] = ("task", "method", "probes", "seed", "seeds", "model_path")
"""The top-level keys of a trial config (``TrialConfig``), as a study file groups them."""


def param_path(key: str) -> str | None:
    """Where a search key (or a key of the flat vocabulary) lives in the nested trial config: a
    dotted path that starts with a section is itself (``method`` alone is ``method.name``); the
    section may be left out where the first name says which (``eps`` is ``method.eps``, ``steps``
    is ``task.steps``, ``implementation.bn`` is ``method.implementation.bn``). None: no such setting."""
    head = key.split(".")[0]
    if key == "method":
        return "method.name"
    if head in SECTIONS:
        return key
    if head in Task.model_fields:
        return f"task.{key}"
    if head in methods.setting_names():
        return f"method.{key}"
    return None



def _default_text(key: str, otherwise: object) -> str:
    """What each registered dataset implies for a task setting, for its description."""
    def shown(v: object) -> str:
        return ", ".join(f"{k} {x}" for k, x in v.items()) if isinstance(v, dict) else str(v)
    implied = [f"{shown(e.defaults[key])} for {e.name}" for e in datasets.REGISTRY.values() if key in e.defaults]
    return ", ".join(implied + [f"{shown(otherwise)} otherwise"])


class Task(Strict):
    """What is learned and how: data, model, optimization, device (a study file's ``task:``)."""

    # --- data ---
    dataset: str = Field(
        "digits", json_schema_extra={"column": True},
        description="a registered dataset (vat_study.science.datasets): " + ", ".join(
            f"{e.name} ({e.summary})" for e in datasets.REGISTRY.values()) + "; files under data_root")
    data_root: str | None = Field(None, json_schema_extra={"identity": False}, description="where the data files are; default: $VAT_STUDY_DATA, then data/")
    download: bool = Field(False, json_schema_extra={"identity": False}, description="download a missing dataset once, before any trial")
    idx_paths: dict[str, str] | None = Field(None, description="dataset idx: the four files (train_images, "
                                                               "train_labels, test_images, test_labels)")
    mode: Literal["supervised", "semi_supervised"] = Field(
        "semi_supervised", json_schema_extra={"column": True}, description="semi_supervised: n_labeled class-balanced labels, the rest unlabeled")
    n_labeled: int | None = Field(None, ge=1, json_schema_extra={"column": True}, description="semi-supervised default 100; supervised default: all")
    validation: int | None = Field(None, ge=0, description="default: min(1000, 20% of the training set)")
    zca: bool | None = Field(None, description="ZCA whitening fitted on the training images; default: the dataset's "
                                               f"({_default_text('zca', False)}; Appendix B, D)")
    augment: Augment | None = Field(None, description=f"default: the dataset's ({_default_text('augment', 'none')})")
    # --- model ---
    model: Literal[MODEL_NAMES] | None = Field(  # type: ignore[valid-type]
        None, json_schema_extra={"column": True},
        description=f"default: the dataset's ({_default_text('model', 'mlp')}; mlp is 784-1200-600-300-150-10 with BN)")
    hidden: list[int] | None = Field(None, description="the MLP's hidden widths (default: the model's)")
    noise_sigma: float = Field(0.0, ge=0, json_schema_extra={"lane": True, "column": True}, description="SD of Gaussian noise on the MLP's hidden activations "
                                                      "(Appendix C: 0.5)")
    top_bn: bool | None = Field(None, description=f"BN on the logits; default: the dataset's ({_default_text('top_bn', True)}; Table 7)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout of the conv models")
    # --- optimization ---
    steps: int = Field(1000, ge=1, le=MAX_STEPS, json_schema_extra={"column": True},
                       description="parameter updates (at most 10^12)")
    batch: Batch = Batch()
    optimizer: Optimizer = Optimizer()
    eval_every: int = Field(100, ge=1, json_schema_extra={"identity": False}, description="steps between validation (and probe) measurements")
    eval_bn: Literal["running", "recompute"] = Field(
        "running", json_schema_extra={"legacy": "running"},
        description="BN statistics for every validation / test measurement: the running averages training "
                    "kept, or 'recompute': re-estimated over the unlabeled pool (supervised: the training "
                    "set) just before, a cumulative average in train mode without gradient and with dropout / "
                    "noise off, as the official MNIST code does; training's own statistics are restored after")
    # --- execution ---
    device: str = Field("cpu", json_schema_extra={"identity": False}, description="cpu (deterministic for a seed), cuda, cuda:N, or auto (a GPU if "
                                           "there is one)")
    dtype: Literal["float32", "float64"] = "float32"
    precision: Literal["float32", "bfloat16", "mixed", "mixed_delta", "auto"] = Field(
        "float32", json_schema_extra={"legacy": "float32"},
        description="arithmetic of the training passes: float32 (every pass in task.dtype, no autocast); bfloat16: "
                    "every forward pass of an update under torch.autocast in bfloat16 (weights, Adam and every "
                    "measurement stay float32); mixed: bfloat16 but for the power iteration (Eq. 12) and the clean "
                    "pass it starts from, which run in float32 so the finite difference keeps the direction; "
                    "mixed_delta: as mixed, but the power iteration's matrix products run in bfloat16 on the "
                    "difference x + xi d - x from the float32 clean pass, which keeps the direction too; auto: "
                    "mixed_delta where results/precision_mnist/ shows its test error within a point of float32's "
                    "(MNIST, mlp, rpt; VAT's CI is not within a point at n = 3, so VAT runs float32) and the CPU computes "
                    "bfloat16 natively (AVX-512 BF16 or AMX; a GPU: not measured yet), float32 elsewhere, resolved "
                    "when the trial starts and recorded with it (docs/performance.md: step times and the direction's "
                    "cosine per precision)")

    _fin = field_validator("noise_sigma")(finite)

    @model_validator(mode="before")
    @classmethod
    def _method_settings_moved(cls, data: Any) -> Any:
        moved = [k for k in data if param_path(k) == f"method.{k}"] if isinstance(data, Mapping) else []
        if moved:
            raise ValueError(f"{', '.join(moved)}: a setting of the method, not of the task; write it under "
                             f"method: (method.{moved[0]})")
        return data

    @field_validator("dataset")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in datasets.REGISTRY:  # asked at validation time: a dataset registered at run time is allowed
            raise ValueError(f"Input should be {datasets.allowed_text()}")
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(h < 1 for h in v)):
            raise ValueError("must be a non-empty list of layer widths >= 1")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("cpu", "cuda", "auto") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError("must be 'cpu', 'cuda', 'cuda:N' or 'auto'")
        return v

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Task:
        if self.mode == "semi_supervised" and self.n_labeled is None:
            self.n_labeled = 100
        implied = datasets.REGISTRY[self.dataset].defaults  # the dataset's defaults (Appendices A-D)
        if self.model is None:
            self.model = implied.get("model", "mlp")
        if self.top_bn is None:
            self.top_bn = implied.get("top_bn", True)
        if self.zca is None:
            self.zca = implied.get("zca", False)
        if self.augment is None:
            self.augment = Augment(**implied.get("augment", {}))
        if self.precision not in ("float32", "auto") and self.dtype != "float32":
            raise ValueError(f"precision: {self.precision!r} runs autocast from float32 weights; with dtype "
                             f"{self.dtype!r} precision must be 'float32'")
        shape = datasets.REGISTRY[self.dataset].input_shape
        if self.model in CONV_MODELS and shape is not None and (len(shape) != 3 or min(shape[1:]) < 12):
            raise ValueError(f"model: {self.model!r} needs 32x32 images; dataset {self.dataset!r} allows 'mlp' or 'small_mlp'")
        return self
