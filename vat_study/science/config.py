"""The trial configuration: every key ``run_trial`` accepts, its default and its allowed values.

A config is a plain mapping (YAML, JSON, an Optuna trial's params ...). Unknown keys and invalid
values raise ``ConfigError`` naming each offending field, before anything is loaded or trained.
Defaults give the offline default trial: semi-supervised VAT on scikit-learn's digits.
``TrialConfig`` is the whole trial (its ``task:`` block is ``task.Task``, its ``method:`` block
the registered method's settings, its ``probes:`` block the registered probes'); below it, the
vocabulary of stored configs: flat and nested keys, upgrades, identities, lane structures.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_serializer, field_validator, model_validator

from ..common.errors import format_validation_error
from ..common.validation import Strict
from ..common.yamlio import set_dotted
from . import methods, probes
from .methods import Implementation  # noqa: F401  (re-exported)
from .task import MAX_STEPS, SECTIONS, Augment, Batch, Decay, Optimizer, Task, param_path  # noqa: F401  (re-exported)


class ConfigError(ValueError):
    """An invalid trial config; ``str(e)`` lists every bad field and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid trial config:\n" + "\n".join(f"  - {p}" for p in problems))




LEGACY_IMPLEMENTATION = {"semi_supervised": dict(clean_stochastic=False, power_iteration_stochastic=False,
                                                 lds_stochastic=True, divergence="forward", bn="batch",
                                                 regularizer_batch="unlabeled"),
                         "supervised": dict(clean_stochastic=True, power_iteration_stochastic=False,
                                            lds_stochastic=True, divergence="forward", bn="batch",
                                            regularizer_batch="unlabeled")}
"""What vat-study before the ``implementation`` block did: configs stored without one are read
with these values (``upgrade_stored_config``)."""

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
