"""Measuring a network during training: its error rates in eval mode, and the BN statistics they
are measured with (``task.eval_bn``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .passes import deterministic_layers


@torch.no_grad()
def error_rates(model: nn.Module, xs: list[Tensor], ys: list[Tensor], chunk: int = 1000) -> list[float]:
    """Misclassification rate of each seed's network in eval mode (BN running statistics):
    ``xs[i]`` goes to seed i (a ``LaneBatch``; one plain network takes one set). Each pass feeds
    every seed an equal block of ``chunk`` images (the sets have equal sizes)."""
    n = len(xs[0])
    if n == 0:
        return [float("nan")] * len(xs)
    was = model.training
    model.eval()
    wrong = torch.zeros(len(xs), dtype=torch.long, device=xs[0].device)
    for lo in range(0, n, chunk):
        xb = torch.cat([x[lo : lo + chunk] for x in xs]) if len(xs) > 1 else xs[0][lo : lo + chunk]
        yb = torch.cat([y[lo : lo + chunk] for y in ys]) if len(ys) > 1 else ys[0][lo : lo + chunk]
        wrong += (model(xb).argmax(1) != yb).view(len(xs), -1).sum(1)
    model.train(was)
    return [w / n for w in wrong.tolist()]  # one host sync per evaluation


@contextlib.contextmanager
def evaluation_bn(model: nn.Module, pools: list[Tensor] | None, chunk: int = 1000) -> Iterator[None]:
    """``task.eval_bn: recompute``: inside the block every BN layer's running statistics are the
    ones re-estimated over ``pools[i]`` for lane i (the unlabeled pool), as the official MNIST code
    measures its test error: a cumulative average over chunks of ``chunk`` images (the i-th chunk
    weighted 1/i, PyTorch's ``momentum=None``), train mode, no gradient, dropout / noise off.
    Training's own statistics and modes are restored on leaving. ``pools`` None: nothing changes
    (the running statistics, ``eval_bn: running``)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if pools is None or not bns:
        yield
        return
    stats = {k: b.detach().clone() for k, b in model.named_buffers()
             if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    n = min(len(p) for p in pools)
    try:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k.endswith("running_mean") or k.endswith("num_batches_tracked"):
                    b.zero_()
                elif k.endswith("running_var"):
                    b.fill_(1.0)
            model.train()
            with deterministic_layers(model):
                for i, lo in enumerate(range(0, n, chunk), start=1):
                    for m in bns:
                        m.momentum = 1.0 / i
                    model(torch.cat([p[lo:lo + chunk] for p in pools]) if len(pools) > 1 else pools[0][lo:lo + chunk])
        for m, t in modes.items():
            m.training = t
        yield
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in stats:
                    b.copy_(stats[k])
        for m, t in modes.items():
            m.training = t
        for m, v in momenta.items():
            m.momentum = v
