"""The consistency family beside VAT, as registry entries under one protocol: each adds R (Eq. 8's
regularizer) on the regularizer's batch (the unlabeled one, Appendix C), weighted by alpha ramped
up over the first ``alpha_rampup`` updates (``ramped_alpha``: exp(-5 (1 - t/N)^2), Laine & Aila
2017), the target side detached as VAT's p(y|x, theta_hat) is (Oliver et al. 2018's choice):

    pi_model      (1/C) ||f(x; noise) - f(x; noise')||^2, two stochastic passes of the network
                  (Laine & Aila 2017, Algorithm 1)
    mean_teacher  the same against a teacher whose weights are the exponential moving average of
                  the network's, theta'_t = decay theta'_{t-1} + (1 - decay) theta_t (Tarvainen &
                  Valpola 2017, Eq. 1, 2); the teacher is the method's state (checkpointed)
    pseudo_label  cross entropy to the network's own arg-max class where its confidence is at least
                  ``threshold`` (Lee 2013, Eq. 1, 15; the threshold as in Oliver et al. 2018)

Every pass runs as VAT's regularizer passes do: dropout / noise on, BN on the batch's own
statistics, running statistics untouched (``passes.regularizer_pass``). The costs are
``consistency``'s functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ...common.validation import finite
from ..method_settings import MethodSettings
from . import Method, Step, per_lane, ramped_alpha, register

if TYPE_CHECKING:
    from torch import Tensor, nn


class Consistency(MethodSettings):
    """A consistency cost weighted by alpha (Eq. 8's weight), ramped up over the first updates."""

    alpha: float = Field(10.0, ge=0, json_schema_extra={"lane": True},
                         description="the cost's weight once ramped up (w_max of Laine & Aila 2017)")
    alpha_rampup: int = Field(4000, ge=0, description="ramp alpha up over the first N updates: alpha * exp(-5 (1 - "
                                                      "min(t, N) / N)^2) at update t; 0: alpha from the first update")

    _fin = field_validator("alpha")(finite)


class MeanTeacherSettings(Consistency):
    """mean_teacher: the consistency cost to an EMA teacher."""

    ema_decay: float = Field(0.99, ge=0, lt=1, description="the teacher's EMA decay (Tarvainen & Valpola 2017: 0.99 "
                                                           "early, 0.999 later; Oliver et al. 2018: 0.95)")


class PseudoLabelSettings(Consistency):
    """pseudo_label: cross entropy to the network's own confident arg-max."""

    alpha: float = Field(1.0, ge=0, json_schema_extra={"lane": True},
                         description="the cost's weight once ramped up (alpha_f of Lee 2013)")
    threshold: float = Field(0.95, ge=0, le=1, description="the confidence a prediction needs to be a target "
                                                           "(0: every prediction, Lee 2013)")


def _pass(net: nn.Module, x: Tensor, grad: bool) -> Tensor:
    """One pass of ``net`` as VAT's regularizer passes run: noise / dropout on, BN on the batch's
    own statistics, running statistics untouched; with or without gradient."""
    import torch

    from ..passes import regularizer_pass

    with regularizer_pass(net, stochastic=True), torch.set_grad_enabled(grad):
        return net(x)


def _pi_model(s: Step) -> Tensor:
    from ..consistency import softmax_mse

    x = s.regularizer_batch()
    student = _pass(s.model, x, grad=True)
    return per_lane(softmax_mse(student, _pass(s.model, x, grad=False)), s.n_lanes)


def _teacher(settings: MethodSettings, model: nn.Module) -> dict[str, Any]:
    from ..batched import clone_network

    return {"teacher": clone_network(model)}  # theta'_0 = theta_0


def _mean_teacher(s: Step) -> Tensor:
    from ..consistency import softmax_mse

    x, teacher = s.regularizer_batch(), s.state["teacher"]
    teacher.train(s.model.training)
    student = _pass(s.model, x, grad=True)
    return per_lane(softmax_mse(student, _pass(teacher, x, grad=False)), s.n_lanes)


def _ema(s: Step) -> None:
    from ..consistency import ema_update_

    ema_update_(s.state["teacher"].parameters(), s.model.parameters(), s.settings.ema_decay)


def _pseudo_label(s: Step) -> Tensor:
    from ..consistency import pseudo_label_loss

    logits = _pass(s.model, s.regularizer_batch(), grad=True)
    return per_lane(pseudo_label_loss(logits, s.settings.threshold), s.n_lanes)


for _m in (
    Method("pi_model", "consistency", "Pi-model: two stochastic passes' softmaxes (Laine & Aila 2017)", _pi_model,
           Consistency, weight=ramped_alpha),
    Method("mean_teacher", "consistency", "Mean Teacher: an EMA teacher's softmax (Tarvainen & Valpola 2017)",
           _mean_teacher, MeanTeacherSettings, weight=ramped_alpha, init_state=_teacher, after_update=_ema),
    Method("pseudo_label", "consistency", "Pseudo-Label: the own confident arg-max (Lee 2013)", _pseudo_label,
           PseudoLabelSettings, weight=ramped_alpha),
):
    register(_m)
