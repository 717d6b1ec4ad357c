"""The consistency family beside VAT, as pure torch functions (the methods registry builds the
regularizer R of Eq. 8 from them, as it builds VAT's from ``regularizers``).

    softmax_mse        the Pi-model's and Mean Teacher's consistency cost: (1/C) ||f(x) - f~(x)||^2
                       between two softmax outputs (Laine & Aila 2017, Algorithm 1; Tarvainen &
                       Valpola 2017, Eq. 1 and their code's softmax_mse_loss / C)
    pseudo_label_loss  cross entropy against the model's own arg-max class where its confidence is
                       at least a threshold (Lee 2013, Eq. 1 and 15; the threshold as in Oliver et
                       al. 2018, "realistic evaluation")
    ema_update_        theta'_t = decay * theta'_{t-1} + (1 - decay) * theta_t, in place (Tarvainen &
                       Valpola 2017, Eq. 2): the Mean Teacher's weights

As in VAT (the target p(y|x, theta_hat) of Eq. 5 is a constant), the target side of every cost
here carries no gradient: the teacher's pass (Pi-model: the second stochastic pass; Mean Teacher:
the EMA network) and the pseudo-labels are detached, as in Oliver et al. 2018's implementation.
Each function returns one value per sample, shape [N]; the caller averages per lane.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor


def softmax_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """(1/C) sum_y (p_student(y) - p_teacher(y))^2 per sample, shape [N]; the teacher is detached."""
    p_s = F.softmax(student_logits, dim=1)
    p_t = F.softmax(teacher_logits.detach(), dim=1)
    return (p_s - p_t).pow(2).mean(dim=1)


def pseudo_label_loss(logits: Tensor, threshold: float = 0.0) -> Tensor:
    """Cross entropy of ``logits`` against their own arg-max class (detached), per sample [N];
    0 for a sample whose largest softmax probability is below ``threshold`` (0: every sample, Lee
    2013's original form)."""
    with torch.no_grad():
        p = F.softmax(logits.detach().float(), dim=1)
        confidence, target = p.max(dim=1)
        keep = (confidence >= threshold).to(logits.dtype)
    return F.cross_entropy(logits, target, reduction="none") * keep


@torch.no_grad()
def ema_update_(teacher: Iterable[Tensor], student: Iterable[Tensor], decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, tensor by tensor, in place."""
    for t, s in zip(teacher, student, strict=True):
        t.lerp_(s.detach(), 1.0 - decay)
