"""The executor registry: one entry per way of running a study's trials, the one place that says
what executors there are.

    ray     Ray Tune (the default): trials as Tune trials, several at once, on this machine or a cluster
    local   in this process, one trial (or lane group) after another: debugging, notebooks, tests

Each entry names the executor, says in one line what it does (the study file's ``executor.kind``,
the CLI's ``--executor`` help and the docs take their text from it), holds the settings model of
the ``executor:`` keys only it reads (torch-free; the study file's ``executor`` block is the
common settings plus each entry's), and a lazy factory: ``"module:attribute"``, imported when a
study runs with it, called with the study (``StudySpec``) to give an object with the methods of
``executors.orchestration.Executor``. A new executor is one file and one entry here; ``register``
adds one at run time (in-process: a study run from this Python process)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from ...common.validation import Strict


class RaySettings(Strict):
    """The ``executor:`` keys only the Ray executor reads."""

    max_concurrent: int | None = Field(None, ge=1, description="default: as many as the resources allow")
    address: str | None = Field(None, description="a Ray cluster to join ('auto': the one ray start runs here); "
                                                  "default: a fresh local Ray")
    max_failures: int = Field(2, ge=0, description="ray: retries of a trial whose worker process died")


@dataclass(frozen=True)
class ExecutorEntry:
    name: str
    summary: str  # one line: what it does (executor.kind, --executor, the docs)
    factory: str | Callable[[Any], Any]  # "module:attribute" (imported on use), or the callable itself
    settings: type[BaseModel] | None = None  # the executor: keys only it reads, with their defaults
    parallel: bool = False  # trains several trials at once (the dry run's time estimate says so)
    gpu_shares: bool = False  # asks its scheduler for a share of a GPU per trial (executor.per_trial.gpu)

    def make(self, spec: Any) -> Any:
        """The executor for ``spec`` (its module imported now)."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        return factory(spec)


REGISTRY: dict[str, ExecutorEntry] = {e.name: e for e in (
    ExecutorEntry("ray", "Ray Tune: several trials at once, on this machine or a cluster",
                  "vat_study.platform.executors.ray_tune:RayExecutor", RaySettings, parallel=True, gpu_shares=True),
    ExecutorEntry("local", "in-process, one trial after another",
                  "vat_study.platform.executors.local:LocalExecutor"),
)}

DEFAULT = "ray"


def register(entry: ExecutorEntry) -> ExecutorEntry:
    """Add an executor at run time (for studies run from this process; the settings of the study
    file's ``executor:`` block are those of the shipped entries). A name taken raises ValueError."""
    if entry.name in REGISTRY:
        raise ValueError(f"executor {entry.name!r} is registered already")
    REGISTRY[entry.name] = entry
    return entry


def executor_named(name: str) -> ExecutorEntry:
    """The entry of ``name``; ValueError listing the registered names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Input should be {allowed_text()}") from None


def allowed_text() -> str:
    """``'ray' or 'local'``: the registered names as an error names them."""
    quoted = [repr(n) for n in REGISTRY]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def summaries() -> str:
    """``ray: Ray Tune ...; local: in-process ...``: each executor in a few words."""
    return "; ".join(f"{e.name}: {e.summary}" for e in REGISTRY.values())


def executor_settings() -> dict[str, Any]:
    """The settings of every registered executor, as (annotation, field) pairs for the ``executor``
    block's model (``spec.schema``)."""
    out: dict[str, Any] = {}
    for e in REGISTRY.values():
        for name, field in (e.settings.model_fields.items() if e.settings is not None else ()):
            out[name] = (field.annotation, field)
    return out
