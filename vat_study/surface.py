"""The one module the platform (the CLI, study files, the store, the executors, the analyses)
reaches the science through.

Importing it loads pydantic and the trial-config models, never torch: the configs, the method
registry (``methods``: names, families, settings models), the settings metadata (declared on
each setting's field, ``config.SETTING_FLAGS``: lane settings, legacy values, what takes part in a
study's identity, what shapes only the power iteration) and the metric names are here at once;
``run_trial``, ``run_lanes``, ``run_seeds``, ``load_trained``, ``DataError``, mid-trial
``checkpoints`` and the two regularizer functions the example figures draw with load torch on
first use (module
``__getattr__``). ``tests/test_import_boundary.py`` checks that the platform imports nothing
else from the science modules.
"""

from __future__ import annotations

import importlib
from typing import Any

from .science import datasets, methods  # noqa: F401  (the registries: torch-free until a dataset loads or a regularizer runs)
from .science.config import (  # noqa: F401
    BOOKKEEPING_SETTINGS,
    WINDOWED_METRICS,
    LANE_SETTINGS,
    LEGACY_IMPLEMENTATION,
    POWER_ITERATION_ONLY,
    SETTING_FLAGS,
    ConfigError,
    Implementation,
    TrialConfig,
    added_settings,
    comparable_config,
    declared,
    get_path,
    identity_config,
    lane_structure,
    nest,
    param_path,
    reported_metrics,
    resolve_config,
    settings_paths,
    upgrade_stored_config,
)
from .common.errors import DataError, DataFileError  # noqa: F401  (torch-free)
from .science.threads import THREADS_ENV, trial_threads  # noqa: F401  (torch-free: the thread policy of every trial)
from .science.vocabulary import (  # noqa: F401
    DIAGNOSTICS,
    FIDELITY,
    GRAD_SD_NORM_PREFIX,
    MODEL_NAMES,
    RVADV,
    RVADV_TRAIN,
    TEST_CURVE,
    grad_sd_norm_name,
)

_LAZY = {  # name -> the science module that defines it (imports torch)
    "run_trial": "objective", "run_lanes": "objective", "run_seeds": "objective", "LanesResult": "objective",
    "SeedsResult": "objective", "load_trained": "objective", "build_for": "objective",
    "load_dataset": "data", "make_splits": "data", "data_root": "data", "time_updates": "timing",
    "lds": "regularizers", "virtual_adversarial_direction": "regularizers", "checkpoints": "checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".science.{_LAZY[name]}", __package__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
