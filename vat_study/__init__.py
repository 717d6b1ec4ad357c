"""vat-study: hyperparameter studies and ablations of Virtual Adversarial Training.

The science side (regularizers, models, data, train, probes, objective) imports nothing from
Ray, Optuna or SQLAlchemy; the platform reaches it only through ``run_trial`` (one seed) and
``run_seeds`` / ``run_lanes`` (several seeds or trials trained together as one batched model).
"""

from .config import ConfigError, TrialConfig
from .objective import LanesResult, SeedsResult, run_lanes, run_seeds, run_trial

__all__ = ["ConfigError", "LanesResult", "SeedsResult", "TrialConfig", "run_lanes", "run_seeds", "run_trial"]
__version__ = "0.3.0"
