"""A method with state: the KL divergence from an EMA teacher's prediction to the network's on the
unlabeled batch (a Mean Teacher with VAT's divergence), the teacher theta' <- decay theta' +
(1 - decay) theta after every update. The teacher is the method's state: built by
``init_state``, moved by ``after_update``, kept in checkpoints."""

from __future__ import annotations

from pydantic import Field

from vat_study.science.method_settings import MethodSettings
from vat_study.science.methods import Method, Step, per_lane, register


class EmaKLSettings(MethodSettings):
    alpha: float = Field(1.0, ge=0, json_schema_extra={"lane": True}, description="the weight of R (Eq. 8)")
    ema_decay: float = Field(0.9, ge=0, lt=1, description="the teacher's EMA decay")


def init_state(settings, model):
    from vat_study.science.batched import clone_network

    return {"teacher": clone_network(model)}


UPDATES: list[int] = []  # the updates after_update saw (for its test)


def regularizer(s: Step):
    import torch
    import torch.nn.functional as F

    from vat_study.science.passes import regularizer_pass

    x, teacher = s.regularizer_batch(), s.state["teacher"]
    teacher.train(s.model.training)
    with regularizer_pass(teacher, stochastic=True), torch.no_grad():
        target = F.softmax(teacher(x), dim=1)
    with regularizer_pass(s.model, stochastic=True):
        log_student = F.log_softmax(s.model(x), dim=1)
    kl = (target * (torch.log(target + 1e-12) - log_student)).sum(dim=1)
    return per_lane(kl, s.n_lanes)


def after_update(s: Step) -> None:
    import torch

    with torch.no_grad():
        for t, p in zip(s.state["teacher"].parameters(), s.model.parameters()):
            t.mul_(s.settings.ema_decay).add_(p, alpha=1 - s.settings.ema_decay)
    UPDATES.append(s.step)


ENTRY = register(Method("ema_kl", "consistency", "KL to an EMA teacher's prediction", regularizer, EmaKLSettings,
                        init_state=init_state, after_update=after_update))
