"""The trial configuration: every key ``run_trial`` accepts, its default and its allowed values.

A config is a plain mapping (YAML, JSON, an Optuna trial's params ...). Unknown keys and invalid
values raise ``ConfigError`` naming each offending field, before anything is loaded or trained.
Defaults give the offline default trial: semi-supervised VAT on scikit-learn's digits.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_serializer, field_validator, model_validator

from ..common.validation import Strict, finite
from ..common.errors import format_validation_error

from . import datasets, methods, probes
from .methods import Implementation  # noqa: F401  (re-exported)
from .vocabulary import CONV_MODELS, MODEL_NAMES
from ..common.yamlio import set_dotted

MAX_STEPS = 10**12
"""The most updates a trial may ask for (``task.steps``): at a millisecond an update, 32 years."""

class ConfigError(ValueError):
    """An invalid trial config; ``str(e)`` lists every bad field and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid trial config:\n" + "\n".join(f"  - {p}" for p in problems))




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


LEGACY_IMPLEMENTATION = {"semi_supervised": dict(clean_stochastic=False, power_iteration_stochastic=False,
                                                 lds_stochastic=True, divergence="forward", bn="batch",
                                                 regularizer_batch="unlabeled"),
                         "supervised": dict(clean_stochastic=True, power_iteration_stochastic=False,
                                            lds_stochastic=True, divergence="forward", bn="batch",
                                            regularizer_batch="unlabeled")}
"""What vat-study before the ``implementation`` block did: configs stored without one are read
with these values (``upgrade_stored_config``)."""

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


def get_path(config: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a (nested) config; None where it has none."""
    for part in path.split("."):
        if not isinstance(config, Mapping):
            return None
        config = config.get(part)
    return config


def is_flat(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is written in the flat vocabulary of vat-study 0.1 (``{"method": "vat",
    "eps": 1.0, "steps": 300, ...}``) rather than nested by section."""
    return isinstance(config.get("method"), str) or any(k not in SECTIONS and param_path(k) for k in config)


def nest(config: Mapping[str, Any]) -> dict[str, Any]:
    """A flat config (``is_flat``) in the nested vocabulary: each key goes where ``param_path``
    says; a key that is no setting stays on top (and is refused there by validation). A nested
    config is returned as it is."""
    if not is_flat(config):
        return dict(config)
    out: dict[str, Any] = {}
    for k, v in sorted(config.items(), key=lambda kv: kv[0] not in SECTIONS or isinstance(kv[1], str)):
        path = k if k in SECTIONS and not isinstance(v, str) else (param_path(k) or k)
        set_dotted(out, path, copy.deepcopy(v))  # whole sections first, then the settings put into them
    return out


def upgrade_stored_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config as stored by any vat-study version, in today's vocabulary: nested
    (``nest``), and a virtual adversarial method without an ``implementation`` block gets the
    behaviour those versions had (``LEGACY_IMPLEMENTATION``). Idempotent."""
    if is_flat(stored) and "implementation" not in stored:
        mode = stored.get("mode", "semi_supervised")
        stored = {**stored, "implementation": dict(LEGACY_IMPLEMENTATION.get(mode, LEGACY_IMPLEMENTATION["semi_supervised"]))}
    out = nest(stored)
    for path, legacy in added_settings().items():  # settings newer than the stored config
        *parents, key = path.split(".")
        block = out
        for part in parents:  # a copy of each block on the way, so the stored config is untouched
            if not isinstance(block.get(part), Mapping):
                break
            block[part] = dict(block[part])
            block = block[part]
        else:
            block.setdefault(key, copy.deepcopy(legacy))
    method = out.get("method")
    if isinstance(method, Mapping) and method.get("name") in methods.REGISTRY:
        entry = methods.REGISTRY[method["name"]]  # settings of other methods dropped, as validation does
        names = methods.setting_names()
        out["method"] = {k: v for k, v in method.items() if k in entry.settings.model_fields or k not in names}
    return out


SETTING_FLAGS: tuple[str, ...] = ("legacy", "lane", "power_iteration_only", "identity", "column")
"""What a setting declares about itself, on its pydantic field (``json_schema_extra``), so that
every place that treats settings differently derives from the field and a new setting is written
in one place:

- ``legacy``: the value a stored config that lacks the setting had in effect (it is newer than
  the config): ``upgrade_stored_config`` fills it in, so an old study still resumes;
- ``lane: True``: lanes of one batched model may differ in it (``LANE_SETTINGS``);
- ``power_iteration_only: True``: it shapes only the power iteration (Eq. 12), so a method without
  one (RPT, K = 0) is unchanged by it (``POWER_ITERATION_ONLY``; the factor analyses);
- ``identity: False``: bookkeeping, not what a trial learns (``BOOKKEEPING_SETTINGS``);
- ``column: True``: a task setting copied into the trials frame's columns (``store.frames``;
  every method and implementation setting gets one anyway)."""


def _setting_models() -> list[tuple[str, type[BaseModel]]]:
    """(dotted prefix, settings model): the task, the probes, every registered method's settings
    and the implementation block nested in them."""
    out: list[tuple[str, type[BaseModel]]] = [("task", Task), ("probes", probes.probes_model())]
    for entry in methods.REGISTRY.values():
        out.append(("method", entry.settings))
        for name, field in entry.settings.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                out.append((f"method.{name}", field.annotation))
    return out


def declared(flag: str) -> dict[str, Any]:
    """{dotted path: declared value} of every setting whose field declares ``flag``
    (``SETTING_FLAGS``), in the order of the models' fields; a setting several methods share
    appears once. Read once per state of the method registry (``methods.register`` changes it),
    since every stored config read is upgraded with it."""
    if flag not in SETTING_FLAGS:
        raise KeyError(f"{flag!r} is not one of {SETTING_FLAGS}")
    registry = (tuple((name, entry.settings) for name, entry in methods.REGISTRY.items()), probes.probes_model())
    return dict(_declared(flag, registry))


@functools.lru_cache(maxsize=32)
def _declared(flag: str, registry: tuple) -> tuple[tuple[str, Any], ...]:
    out: dict[str, Any] = {}
    for prefix, model in _setting_models():
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and flag in extra:
                out.setdefault(f"{prefix}.{name}", extra[flag])
    return tuple(out.items())


def added_settings() -> dict[str, Any]:
    """Settings added after configs were first stored, with the value a stored config that lacks
    one had in effect (``declared("legacy")``): task, probes, method settings and the
    implementation block; a method that lacks one drops it again. ``upgrade_stored_config`` fills
    them in, so a new setting with a default never makes an old study refuse to resume."""
    return declared("legacy")


def comparable_config(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config (as stored, upgraded) with the settings that cannot change its trial
    blanked out, so that two configs compare equal exactly when they train alike: the
    ``*_stochastic`` switches of the implementation block for a network with no dropout or
    noise layer."""
    out = upgrade_stored_config(resolved)
    task, method = dict(out.get("task") or {}), dict(out.get("method") or {})
    stochastic = ((task.get("noise_sigma") or 0) > 0 if task.get("model") in ("mlp", "small_mlp")
                  else (task.get("dropout") or 0) > 0)
    if not stochastic and isinstance(method.get("implementation"), Mapping):
        method["implementation"] = {k: v for k, v in method["implementation"].items() if not k.endswith("_stochastic")}
    out["method"] = method
    return identity_config(out)


WINDOWED_METRICS: tuple[str, ...] = ("loss", "nll", "reg")
"""Final metrics that are means over the updates since the previous evaluation."""


def identity_config(config: Mapping[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A nested config (or a study's task / method / probes) without ``BOOKKEEPING_SETTINGS``
    (but those in ``keep``): what two trials or studies must agree on to be the same."""
    out = dict(config)
    for path in BOOKKEEPING_SETTINGS:
        section, _, key = path.partition(".")
        if path not in keep and isinstance(out.get(section), Mapping) and key in out[section]:
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


def settings_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config as {dotted path: value} down to each setting of task and method (a block
    such as ``task.optimizer`` or ``probes`` is one value): for comparing two configs setting by
    setting."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping) and prefix in ("", "task", "method"):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            flat[prefix] = v
    walk("", config)
    return flat


def lane_structure(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved trial config without its lane settings, as ``settings_paths``: trials whose
    structures are equal can train as lanes of one batched model (same data, model and widths,
    method, K, direction, batches, steps, optimizer and schedule, stochastic layers, probes,
    device and dtype)."""
    flat = settings_paths(resolved)
    out = {k: v for k, v in flat.items() if k not in LANE_SETTINGS and k not in ("seeds", "model_path")}
    out["noisy"] = (get_path(resolved, "task.noise_sigma") or 0) > 0  # the noise layer exists or not
    return out


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


BOOKKEEPING_SETTINGS: tuple[str, ...] = tuple(p for p, v in declared("identity").items() if v is False)
"""Settings that say where the data lies, whether to fetch it, where to train and how often to
measure, not what a trial learns (``identity: False`` on the field): no part of a study's identity
(``identity_config``), so a study resumes after they change. ``task.eval_every`` changes no update
(the probes draw from their own generators and ``eval_bn: recompute`` restores training's
statistics), only when measurements are taken and the window of the training-loss means reported
with them (``WINDOWED_METRICS``): a study that selects on one of those keeps it in its identity
(``executors.planning``)."""

LANE_SETTINGS: tuple[str, ...] = ("seed", *sorted(declared("lane"), key=lambda p: not p.startswith("method.")))
"""The settings lanes may differ in (``lane: True`` on the field; ``train.train_lanes``,
``objective.run_lanes``): each lane's own initialization, splits and batches (seed), and its eps,
alpha, xi as per-lane tensors; the noise SD per network where the model has noise (whether it
has noise is structural)."""

POWER_ITERATION_ONLY: tuple[str, ...] = tuple(p.rsplit(".", 1)[-1] for p in declared("power_iteration_only"))
"""Settings (by their short name, as a search key ends) that shape only the power iteration
(``power_iteration_only: True``): a method without one (RPT, K = 0) is unchanged by them."""


class TrialConfig(Strict):
    """One trial, nested as a study file is written: ``task`` (data, model, optimization),
    ``method`` (its name and that method's settings, ``methods.REGISTRY``), ``probes``, and the
    seed. The flat vocabulary of vat-study 0.1 (``{"method": "vat", "eps": 1.0, "steps": 300}``)
    is accepted too and read nested (``nest``)."""

    task: Task = Task()
    method: SerializeAsAny[methods.MethodSettings] = Field(default_factory=lambda: {"name": "vat"})
    probes: SerializeAsAny[BaseModel] = Field(default_factory=lambda: probes.settings_of({}),
                                              description="the probes measured during training (science.probes)")
    seed: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, description="train these seeds together as one batched model "
                                                      "(run_seeds); ``seed`` is then unused")
    model_path: str | None = None  # save the trained weights (a state_dict) here

    @field_validator("method", mode="plain")
    @classmethod
    def _method(cls, v: Any) -> methods.MethodSettings:
        return methods.settings_of(v)  # the union, discriminated on the name by the registry

    @field_validator("probes", mode="plain")
    @classmethod
    def _probes(cls, v: Any) -> BaseModel:
        return probes.settings_of(v)  # one field per registered probe

    @field_serializer("method", "probes", mode="wrap")
    def _registered_out(self, v: BaseModel, handler: Any, info: Any) -> Any:
        """Every setting of the method's (the probes') own model (SerializeAsAny, kept with
        ``Strict``'s check of every field wrapped around this one)."""
        return v.model_dump(mode=info.mode, exclude_none=info.exclude_none, exclude_defaults=info.exclude_defaults)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(s < 0 for s in v) or len(set(v)) != len(v)):
            raise ValueError("must be a non-empty list of distinct integers >= 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if self.seeds is not None and self.model_path and "{seed}" not in self.model_path:
            raise ValueError("model_path: with seeds, must contain '{seed}' (one file per seed), "
                             f"got {self.model_path!r}")
        impl = getattr(self.method, "implementation", None)
        if self.task.mode == "supervised" and impl is not None and impl.regularizer_batch != "unlabeled":
            raise ValueError("method.implementation.regularizer_batch: 'labeled_and_unlabeled' applies to mode "
                             "'semi_supervised' only (supervised learning has one batch); allowed here: 'unlabeled'")
        if (self.task.precision == "bfloat16" and self.k > 0
                and getattr(self.method, "direction", "finite_difference") == "finite_difference"):
            raise ValueError(
                "task.precision: 'bfloat16' loses the power iteration's direction: the finite difference of "
                "Eq. 12 is rounded away (cosine of d to the exact H d about 0.0 at every xi from 1e-6 to 1, "
                "against 0.997 in float32 at xi 1e-2, paper MLP; python -m benchmarks.step_time); allowed with a "
                "power iteration: 'mixed_delta' (its products in bfloat16 on the difference from a float32 clean "
                "pass), 'mixed' (the power iteration in float32), 'float32', or method.direction 'hvp'")
        return self

    @property
    def k(self) -> int:
        """The number of power iterations training uses (0 for RPT)."""
        return self.method.k

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | TrialConfig | None) -> TrialConfig:
        """``config`` validated (a mapping, nested or flat); a ``TrialConfig`` is returned as it
        is: validated already (the platform resolves a trial once and hands this object on)."""
        if isinstance(config, TrialConfig):
            return config
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigError([f"config must be a mapping of keys to values, got {type(config).__name__}"])
        try:
            return cls.model_validate(nest(config))
        except ValidationError as e:
            from ..common.errors import model_keys

            known = model_keys(cls, {("method",): methods.setting_names,
                                     ("method", "implementation"): lambda: Implementation.model_fields})
            raise ConfigError(format_validation_error(e, join_named=True, known=known)) from None


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fully resolved trial config (every key, defaults filled in) as a plain dict, exactly as
    run_trial would use it; raises ConfigError naming each bad field. The platform validates
    study files and records trials with this, so it needs nothing else from the science side."""
    return TrialConfig.from_mapping(config).model_dump(mode="json")


def reported_metrics(config: Mapping[str, Any] | None) -> frozenset[str]:
    """The numeric final metrics ``run_trial`` returns for this config (what a study may select
    or optimize by): the loss terms, errors and R_vadv of the last evaluation, the probes the
    config turns on, and the run's bookkeeping numbers. Raises ConfigError for a bad config."""
    cfg = TrialConfig.from_mapping(config)
    names = {"loss", "nll", "reg", "lr", "val_error", "test_error", "train_seconds", "wall_seconds", "steps",
             "n_labeled", "n_validation"}
    return frozenset(names | probes.metric_names(cfg))
