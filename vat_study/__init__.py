"""vat-study: hyperparameter studies and ablations of Virtual Adversarial Training.

The science side (regularizers, models, data, train, probes, objective) imports nothing from
Ray, Optuna or SQLAlchemy; the platform reaches it only through ``run_trial`` (one seed) and
``run_seeds`` (several seeds trained together as one batched model).
"""

from .config import ConfigError, TrialConfig
from .objective import SeedsResult, run_seeds, run_trial

__all__ = ["ConfigError", "SeedsResult", "TrialConfig", "run_seeds", "run_trial"]
__version__ = "0.1.0"
