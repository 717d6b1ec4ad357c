"""vat-study: hyperparameter studies and ablations of Virtual Adversarial Training.

The science side (regularizers, models, data, train, probes, objective) imports nothing from
Ray, Optuna or SQLAlchemy; the platform reaches it only through ``run_trial``.
"""

from .config import ConfigError, TrialConfig
from .objective import run_trial

__all__ = ["ConfigError", "TrialConfig", "run_trial"]
__version__ = "0.1.0"
