"""The names a trial config is validated against and the metric names the probes report:
plain data, imported by the config (which imports no torch) and by the torch modules that
define what the names mean (``data``, ``models``, ``regularizers``, ``probes`` re-export them)."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("mlp", "small_mlp", "conv_small_svhn", "conv_small_cifar10", "conv_large")
"""The networks ``models.build_model`` builds."""

CONV_MODELS: tuple[str, ...] = ("conv_small_svhn", "conv_small_cifar10", "conv_large")
"""The networks that take 32x32 images."""

DEFAULT_XI = 1e-2
"""Finite-difference step of Eq. 12; faithful in float32 (see ``regularizers``)."""

RVADV = "rvadv"
"""Metric name of R_vadv measured in eval mode at the probe's fixed eps (Fig. 2, 4)."""

RVADV_TRAIN = "rvadv_train"
"""Metric name of R_vadv measured in train mode (beside ``rvadv``, measured in eval mode)."""

TEST_CURVE = "test_error_curve"
"""Metric name of the test error measured at every evaluation (``probes.test_curve``): for learning
curves only; a study may never select on it (``spec``), and the final ``test_error`` is separate."""

FIDELITY = "fidelity"
"""Metric name of the power iteration's fidelity to the dominant eigenvector of H."""

GRAD_SD_NORM_PREFIX = "grad_sd_norm_k"

DIAGNOSTICS: tuple[str, ...] = ("entropy_eval", "entropy_train", "top_class_eval", "top_class_train", "classes_eval",
                                 "classes_train", "kl_xi", "kl_eps", "quadratic_ratio", "power_cosine", "xi_underflow",
                                 "hd_cosine")
"""Metric names of the diagnostics probe (``probes.diagnostics``), besides the histograms
``pred_eval_c{k}`` / ``pred_train_c{k}`` (the fraction of the probe images predicted as class k)."""


def grad_sd_norm_name(k: int) -> str:
    """Metric name of the gradient-variance probe at K = k (``analysis.grad_variance`` reads it)."""
    return f"{GRAD_SD_NORM_PREFIX}{k}"
