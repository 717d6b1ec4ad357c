"""The consistency family's costs (science/consistency.py) against the same numbers computed by hand
with numpy on a tiny linear model: the Pi-model / Mean Teacher squared difference of softmaxes,
Pseudo-Label's thresholded cross entropy, and the Mean Teacher's exponential moving average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vat_study.science.consistency import ema_update_, pseudo_label_loss, softmax_mse

W = np.array([[0.5, -1.0, 0.2], [1.5, 0.3, -0.7]])  # 2 inputs -> 3 classes
X = np.array([[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0], [0.0, 0.0]])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_softmax_mse_is_the_mean_squared_difference_of_the_softmaxes_per_sample():
    student, teacher = X @ W, X @ (W * 0.5 + 0.1)
    by_hand = ((_softmax(student) - _softmax(teacher)) ** 2).mean(1)  # (1/C) ||p - p~||^2
    got = softmax_mse(torch.tensor(student), torch.tensor(teacher))
    np.testing.assert_allclose(got.numpy(), by_hand, rtol=1e-12)
    s = torch.tensor(student, requires_grad=True)
    t = torch.tensor(teacher, requires_grad=True)
    softmax_mse(s, t).sum().backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0  # the teacher is a constant


@pytest.mark.parametrize("threshold", [0.0, 0.6, 0.99])
def test_pseudo_label_loss_is_the_cross_entropy_to_the_own_arg_max_above_the_threshold(threshold):
    logits = X @ W
    p = _softmax(logits)
    target, confidence = p.argmax(1), p.max(1)
    by_hand = -np.log(p[np.arange(len(p)), target]) * (confidence >= threshold)
    got = pseudo_label_loss(torch.tensor(logits), threshold)
    np.testing.assert_allclose(got.numpy(), by_hand, rtol=1e-12)
    if threshold == 0.6:
        assert 0 < (got > 0).sum() < len(got)  # some samples kept, some left out


def test_ema_update_moves_each_teacher_weight_a_share_1_minus_decay_toward_the_student():
    teacher = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    student = [torch.tensor([3.0, -2.0]), torch.tensor([[10.0]])]
    ema_update_(teacher, student, decay=0.9)
    np.testing.assert_allclose(teacher[0].numpy(), [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2])
    np.testing.assert_allclose(teacher[1].numpy(), [[1.0]])
    assert student[0].tolist() == [3.0, -2.0]
