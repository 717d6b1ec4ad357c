"""The modes a forward pass runs in: BN statistics (the batch's own, frozen, or the running ones)
and stochastic layers (dropout, Gaussian noise) on or off. ``regularizers`` runs every pass of
the VAT loss inside these; ``methods.Implementation`` chooses them per pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

from torch import nn

BNStatistics = Literal["batch", "running"]


@contextlib.contextmanager
def frozen_batch_stats(model: nn.Module) -> Iterator[None]:
    """Inside this block BN layers never update their running statistics.

    In train mode they still normalize with the current batch's statistics; in eval mode they use
    the running ones, as always. Implemented by switching ``track_running_stats`` off, which is
    exactly PyTorch's "use batch statistics, touch no buffers" path.
    """
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def _is_stochastic(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return m.p > 0
    return getattr(m, "stochastic", False)  # e.g. models.GaussianNoise


@contextlib.contextmanager
def deterministic_layers(model: nn.Module) -> Iterator[bool]:
    """Switch dropout and noise layers off (eval mode) inside the block; BN keeps its mode.

    Yields whether any stochastic layer was active, i.e. whether forward passes made outside the
    block differ from those made inside it.
    """
    active = [m for m in model.modules() if m.training and _is_stochastic(m)]
    for m in active:
        m.train(False)
    try:
        yield bool(active)
    finally:
        for m in active:
            m.train(True)


def has_stochastic_layers(model: nn.Module) -> bool:
    """Whether any dropout / noise layer of ``model`` is active (in train mode) now."""
    return any(m.training and _is_stochastic(m) for m in model.modules())


@contextlib.contextmanager
def regularizer_pass(model: nn.Module, *, stochastic: bool, bn: BNStatistics = "batch") -> Iterator[None]:
    """The mode of one of the regularizer's forward passes (the clean target, the power iteration,
    the perturbed LDS pass), chosen by ``methods.Implementation``: dropout / noise layers left as
    the caller set them (``stochastic=True``) or switched off; BN normalizing with the batch's own
    statistics (``bn="batch"``) or with the running ones (``"running"``: BN in eval mode). Running
    statistics are never updated inside."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training] \
        if bn == "running" else []
    for m in bns:
        m.train(False)
    try:
        with frozen_batch_stats(model):
            if stochastic:
                yield
            else:
                with deterministic_layers(model):
                    yield
    finally:
        for m in bns:
            m.train(True)
