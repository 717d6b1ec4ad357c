"""The paper's methods as registry entries: the baseline (R = 0), RPT (R^(0), Eq. 16), VAT (R_vadv,
Eq. 7, Algorithm 1), VAT + EntMin (Eq. 18) and adversarial training (L_adv, Eq. 1 with r_adv
from Eq. 3 or 4). Each regularizer is built from the ``regularizers`` functions, so the loss that
trains is the loss the Hessian tests check; torch is imported when one first runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from ..method_settings import NoSettings, Perturbation, RandomPerturbation, VirtualAdversarial
from . import Method, Step, join_per_lane, per_lane, power_method, ramped_alpha, register

if TYPE_CHECKING:
    from torch import Tensor


def _none(s: Step) -> Tensor:
    return s.logits_l.new_zeros(s.n_lanes)


def _adversarial(norm: Literal["l2", "linf"]) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:  # L_adv on the labeled batch (Eq. 1, r_adv from Eq. 3 or 4)
        from ..regularizers import adversarial_loss

        return per_lane(adversarial_loss(s.model, s.x_l, s.y_l, eps=s.eps(s.x_l), norm=norm, reduction="none"),
                        s.n_lanes)
    return reg


def _virtual_adversarial(entropy: bool) -> Callable[[Step], Tensor]:
    def reg(s: Step) -> Tensor:
        from ..regularizers import entropy_loss, has_stochastic_layers, regularizer_lds

        m = s.settings
        impl = m.implementation
        if s.x_reg is None:  # supervised: R on the labeled batch
            x = s.x_l
        elif impl.regularizer_batch == "labeled_and_unlabeled":
            x = join_per_lane(s.x_l, s.x_reg, s.n_lanes)
        else:  # Appendix C: a separate batch from the unlabeled pool (which holds the labeled images too)
            x = s.x_reg
        # The labeled pass already is the clean pass when R uses the labeled batch and the modes agree.
        reuse = x is s.x_l and impl.bn == "batch" and (impl.clean_stochastic or not has_stochastic_layers(s.model))
        lds_x, logits = regularizer_lds(
            s.model, x, eps=s.eps(x), xi=s.xi(x), power_iterations=m.k, method=power_method(m)["method"],
            logits=s.logits_l if reuse else None, d0=s.random_start(x) if s.random_start else None,
            clean_grad=entropy, power_iteration_float32=s.power_iteration_float32, implementation=impl)
        r = per_lane(lds_x, s.n_lanes)  # R_vadv, Eq. 7 (K = 0: RPT, Eq. 16)
        if entropy:
            r = r + per_lane(entropy_loss(logits, reduction="none"), s.n_lanes)  # + R_cent, Eq. 18
        return r
    return reg


for _m in (
    Method("baseline", "none", "no regularizer (R = 0)", _none, NoSettings),
    Method("rpt", "virtual_adversarial", "random perturbation training, R^(0) (Eq. 16)", _virtual_adversarial(False),
           RandomPerturbation),
    Method("vat", "virtual_adversarial", "virtual adversarial training, R_vadv (Eq. 7)", _virtual_adversarial(False),
           VirtualAdversarial, weight=ramped_alpha),
    Method("vat_entmin", "virtual_adversarial", "VAT + conditional entropy (Eq. 18)", _virtual_adversarial(True),
           VirtualAdversarial, entropy=True, weight=ramped_alpha),
    Method("at_l2", "adversarial", "adversarial training, L2 (Eq. 3)", _adversarial("l2"), Perturbation),
    Method("at_linf", "adversarial", "adversarial training, L-inf (Eq. 4)", _adversarial("linf"), Perturbation),
):
    register(_m)
