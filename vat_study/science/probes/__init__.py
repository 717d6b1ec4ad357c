"""The probe registry: measurements taken during training, one entry per probe, the one place that
says what each probe is. None of them changes the training run: each uses its own random
generator and restores the model's mode, and none updates BN running statistics.

    rvadv          R_vadv (Eq. 7) at a fixed eps and K on fixed images, eval and train mode (Fig. 2, 4); on by default
    grad_variance  the normalized SD norm of grad_theta R^(K) (Eq. 21, Fig. 7)
    fidelity       |cos| of the training direction to H's dominant eigenvector (Eq. 9-10)
    diagnostics    entropy, class histograms, KL at xi and eps, ... (docs/science.md, eps 1-2)
    test_curve     the test error at every evaluation (learning curves; never a study metric)

Each entry names the probe (its key under a trial's ``probes:``), its settings (a torch-free
pydantic model, or an on / off switch), its value when left out, the metric names it reports, and
how to make the object training calls (``make(cfg, settings)``: it says when it is due and
measures every lane). The config (the ``probes:`` block, the metrics a study may select on), the
training loop and the docs ask this registry. A new probe is one file that builds a
``ProbeEntry`` and calls ``register`` (and its test).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field, ValidationError, create_model

from ...common.validation import Strict

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

TrialConfig = Any  # a trial's config (``config.TrialConfig``, which builds its probes: block from this registry)


@dataclass(frozen=True)
class Lane:
    """What a probe sees of one lane (one trial) of the model being trained."""

    cfg: TrialConfig  # the lane's own config (its eps, xi, seed)
    probe_images: Callable[[int], Tensor]  # the first n of the lane's fixed probe images (validation, else the pool)
    reg_pool: Tensor  # the pool the regularizer's batches come from
    probe_gen: torch.Generator  # the lane's probe stream
    net: Callable[[], nn.Module]  # the lane's own network as a plain module
    test: tuple[Tensor, Tensor] | None = None  # the test set (images, labels), where training was given one


class Probe(Protocol):
    follows_evaluation: bool  # measured whenever the loop evaluates, never making it evaluate

    def due(self, step: int) -> bool:
        """Whether the probe measures after update ``step``."""
        ...

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        """Metrics for each lane in ``alive`` (``model``: all lanes as one batched network)."""
        ...


@dataclass(frozen=True)
class Every:
    """Due every ``every`` updates and at the run's ``last``, or at the explicit ``steps``."""

    every: int
    last: int
    steps: tuple[int, ...] | None = None

    def due(self, step: int) -> bool:
        if self.steps is not None:
            return step in self.steps
        return step % self.every == 0 or step == self.last


class Scheduled:
    """A probe measuring on the steps its ``when`` names."""

    when: Every
    follows_evaluation = False

    def due(self, step: int) -> bool:
        return self.when.due(step)


@dataclass(frozen=True, eq=False)  # hashed by identity: the registry's state keys the cached model
class ProbeEntry:
    name: str  # its key under probes:
    summary: str
    settings: type[BaseModel] | None  # its settings; None: an on / off switch
    default: Any  # left out: a settings instance (on), None (off), False (a switch, off)
    metrics: Callable[[Any, TrialConfig], Iterable[str]]  # (its settings, the trial) -> metric names it reports
    make: Callable[[TrialConfig, Any], Probe]  # (the trial, its settings) -> what training calls; imports torch
    selectable: bool = True  # whether a study may select on its metrics (test_curve: never)
    legacy: Any = field(default=...)  # what a stored config without the probe had in effect (...: it has always been there)
    description: str = ""  # the settings field's description in the schema (default: the summary)


REGISTRY: dict[str, ProbeEntry] = {}


def register(entry: ProbeEntry) -> ProbeEntry:
    """Add a probe: from then on configs (the ``probes:`` block), reported metrics and training
    (in this process: the ``local`` executor; for Ray workers, put its file beside the built-in
    ones and name it in this module's last import line) know it. A name already taken is refused."""
    if entry.name in REGISTRY:
        raise ValueError(f"probe {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    return entry


def probes_model() -> type[BaseModel]:
    """The ``probes:`` block's model, one field per registered probe (rebuilt when one is added)."""
    return _model(tuple(REGISTRY.items()))


@functools.lru_cache(maxsize=16)
def _model(registry: tuple) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, e in registry:
        kind: Any = bool if e.settings is None else (e.settings if e.default is not None else e.settings | None)
        extra = {"legacy": e.legacy} if e.legacy is not ... else None
        fields[name] = (kind, Field(e.default, description=e.description or e.summary, json_schema_extra=extra))
    return create_model("Probes", __base__=_Block, __doc__="The probes a trial measures during training.", **fields)


class _Block(Strict):
    """The base of the ``probes:`` block's model. The model is built at run time from the registry,
    so a pickled block (a resolved config sent to a Ray worker or a trial's child process) is
    rebuilt from its values against the registry there, not looked up as a class by name."""

    def __reduce__(self):
        return settings_of, (self.model_dump(),)


def settings_of(block: Any) -> BaseModel:
    """A trial's ``probes:`` block validated against the registered probes (an unknown key is refused)."""
    model = probes_model()
    if isinstance(block, model):
        return block
    if isinstance(block, BaseModel):
        block = block.model_dump()
    if block is None:
        block = {}
    try:
        return model.model_validate(block)
    except ValidationError as e:
        raise ValueError(_first_error(e)) from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def metric_names(cfg: TrialConfig, selectable_only: bool = True) -> set[str]:
    """The metric names the probes a trial turns on report (those a study may select on)."""
    out: set[str] = set()
    for name, e in REGISTRY.items():
        value = getattr(cfg.probes, name, None)
        if value and (e.selectable or not selectable_only):
            out |= set(e.metrics(value, cfg))
    return out


def training_probes(cfg: TrialConfig) -> list[Probe]:
    """What training calls for the probes the trial's config turns on, in the registry's order."""
    return [e.make(cfg, getattr(cfg.probes, name)) for name, e in REGISTRY.items() if getattr(cfg.probes, name, None)]


def regularizer_batch(cfg: TrialConfig) -> int:
    """The size of the batches R is computed on (the unlabeled batch; supervised: the labeled one)."""
    return cfg.task.batch.unlabeled if cfg.task.mode == "semi_supervised" else cfg.task.batch.labeled


def lanes_of(values: Mapping[int, Any], alive: list[int]) -> dict[int, Any]:
    return {i: values[i] for i in alive}


from . import rvadv, grad_variance, fidelity, collapse, test_curve  # noqa: E402,F401,I001  (the built-in probes, in this order)
from .rvadv import rvadv_seeds  # noqa: E402,F401  (re-exported: the measurements themselves)
from .grad_variance import grad_sd_norm  # noqa: E402,F401
from .fidelity import (  # noqa: E402,F401
    dominant_eigenvector,
    hd_cosine,
    power_iteration_fidelity,
    power_products,
    working_precision,
)
from .collapse import diagnostics  # noqa: E402,F401
from ..vocabulary import (  # noqa: E402,F401  (the metric names, re-exported: defined where the config reads them)
    DIAGNOSTICS,
    FIDELITY,
    GRAD_SD_NORM_PREFIX,
    RVADV,
    RVADV_TRAIN,
    TEST_CURVE,
    grad_sd_norm_name,
)
