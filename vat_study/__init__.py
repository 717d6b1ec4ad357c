"""vat-study: hyperparameter studies and ablations of Virtual Adversarial Training.

The science side (regularizers, models, data, train, probes, objective) imports nothing from
Ray, Optuna or SQLAlchemy; the platform reaches it only through ``vat_study.surface``
(``run_trial`` for one seed, ``run_seeds`` / ``run_lanes`` for several seeds or trials trained
together as one batched model). The names below load on first use, so ``import vat_study`` (and
the command line) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "LanesResult", "SeedsResult", "TrialConfig", "run_lanes", "run_seeds", "run_trial"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed release, with the git commit (and .dirty) in a checkout
        from .platform.provenance import package_version

        return package_version()
    if name in __all__:  # through the surface, which loads torch only for what needs it
        from . import surface

        value = getattr(surface, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"__version__"})
