"""The settings of the paper's methods (a trial config's ``method:`` block), torch-free: the
base every method's settings extend, the perturbation methods' eps and alpha (Eq. 7, 8), VAT's
power iteration (Eq. 12; K, xi, the direction's product) and the pass modes the paper leaves open
(``Implementation``, read by ``regularizers``). A method's own settings (the consistency family's)
live in its file under ``methods/``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..common.validation import Strict, finite
from .vocabulary import DEFAULT_XI


class Implementation(Strict):
    """How R_vadv / R^(0) (Eq. 5, 7, 16) is computed where the paper leaves it open. Three passes
    make the regularizer: the clean pass (the target p(y|x, theta_hat) of Eq. 5), the power
    iteration's passes at x + xi d (Eq. 12) and the perturbed LDS pass at x + r_vadv. docs/science.md
    "Implementation choices" gives each anchor's choice and the measured effect of each setting
    (``studies/vat_implementation_choices.yaml``). A setting of the virtual adversarial methods."""

    clean_stochastic: bool = Field(True, description="dropout / Gaussian noise on in the clean (target) pass "
                                                     "(default: on, as vat_tf, vat_chainer, VAT-pytorch and USB)")
    power_iteration_stochastic: bool = Field(True, json_schema_extra={"power_iteration_only": True}, description="dropout / noise on in the power iteration's passes "
                                                               "(default: on, as the anchors)")
    lds_stochastic: bool = Field(True, description="dropout / noise on in the perturbed (LDS) pass")
    divergence: Literal["forward", "reverse"] = Field(
        "forward", description="forward: KL(p_clean || p_perturbed) (Eq. 17, the paper); reverse: KL(p_perturbed || p_clean)")
    bn: Literal["batch", "running"] = Field(
        "batch", description="BN statistics in the regularizer's passes: the batch's own, or the running ones")
    regularizer_batch: Literal["unlabeled", "labeled_and_unlabeled"] = Field(
        "unlabeled", description="semi-supervised: R on the unlabeled batch (Appendix C), or on the labeled "
                                 "and unlabeled batches joined")


class MethodSettings(Strict):
    """The ``method:`` block of a trial config: ``name`` and the settings of that method."""

    name: str

    @property
    def k(self) -> int:
        """The number of power iterations training runs (0: none, or a random direction, Eq. 16)."""
        return 0


class NoSettings(MethodSettings):
    """baseline: R = 0, nothing to set."""


class Perturbation(MethodSettings):
    """A regularizer at a perturbation of norm eps, weighted by alpha (Eq. 8)."""

    eps: float = Field(1.0, gt=0, json_schema_extra={"lane": True}, description="||r|| of the perturbation (Eq. 7)")
    alpha: float = Field(1.0, ge=0, json_schema_extra={"lane": True}, description="weight of R in the objective (Eq. 8)")

    _fin = field_validator("eps", "alpha")(finite)


class RandomPerturbation(Perturbation):
    """rpt: R^(0) (Eq. 16), the LDS at a random direction: no power iteration, so no K, xi or
    direction setting (this is the one place that says RPT is K = 0)."""

    implementation: Implementation = Implementation()


class VirtualAdversarial(Perturbation):
    """vat, vat_entmin: R_vadv (Eq. 7) with r_vadv from K power iterations (Eq. 12, Algorithm 1)."""

    xi: float = Field(DEFAULT_XI, gt=0, json_schema_extra={"lane": True, "power_iteration_only": True}, description="finite-difference step of the power iteration (Eq. 12)")
    power_iterations: int = Field(1, ge=0, le=1000, json_schema_extra={"power_iteration_only": True}, description="K (Section 3.3; Fig. 4)")
    direction: Literal["finite_difference", "hvp"] = Field(
        "finite_difference", json_schema_extra={"power_iteration_only": True},
        description="the power iteration's product: a finite difference of gradients (Eq. 12) or an exact Hessian-vector product")
    alpha_rampup: int = Field(
        0, ge=0, json_schema_extra={"legacy": 0},
        description="ramp alpha up over the first N updates: alpha * exp(-5 (1 - min(t, N) / N)^2) at update t "
                    "(the sigmoid-shaped ramp-up of Laine & Aila 2017, as USB and realistic-ssl-evaluation use); "
                    "0: off, alpha from the first update (the paper)")
    implementation: Implementation = Implementation()

    _fin_xi = field_validator("xi")(finite)

    @property
    def k(self) -> int:
        return self.power_iterations
