"""The power iteration's matrix products in bfloat16 without losing the finite difference of Eq. 12
(``task.precision: mixed_delta``).

Eq. 12 takes the gradient of D at r = xi d, i.e. it compares the perturbed pass at x + xi d with
the clean pass at x, whose logits differ by O(xi). Run under a bfloat16 autocast, the perturbed
pass rounds x + xi d and every later activation to 8 bits of mantissa and the difference is lost
(cosine of d to the exact H d about 0.0-0.2 at every xi, docs/performance.md). But every matrix
product is linear in its activation: W h' = W h + W (h' - h). So the perturbed pass reuses the
clean pass's products W h (float32, recorded while it ran) and computes only the product of the
difference h' - h, which bfloat16 holds to its own relative precision whatever its size; every
other step (BN on the batch's statistics, ReLU, noise, dropout, pooling) runs in float32 on the
perturbed activations, as in a float32 pass. The gradient back to r goes through the same
bfloat16 products. The clean pass itself must be float32: with its products in bfloat16 the
network whose H is taken is another one (cosine 0.975 instead of 0.995, paper MLP, xi 1e-2).

Which products: ``torch.nn.functional.linear``, ``conv1d/2d/3d``, ``mm``, ``bmm``, ``matmul``
(every Linear and Conv layer of ``models``, and the stacked products of ``batched.LaneBatch``'s
direct MLP path). The i-th product of the perturbed pass is matched to the i-th of the recorded
clean pass (the same function, the same weight tensor, its activation the one argument that
differs); a pass that calls them otherwise raises. A network run through ``vmap`` (``LaneBatch``
without the direct path) or compiled (``torch.compile``) cannot be recorded: ``supported`` says so,
and the caller runs its power iteration in float32 instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

PRODUCTS = frozenset({F.linear, torch.conv1d, torch.conv2d, torch.conv3d, torch.mm, torch.bmm, torch.matmul})
"""The functions whose result is linear in their activation (a bias aside)."""

_BIAS_AT = {F.linear: 2, torch.conv1d: 2, torch.conv2d: 2, torch.conv3d: 2}
"""Where the bias is among the arguments (the recorded product already holds it)."""


@dataclass
class Recording:
    """The products of one clean pass, in call order: (function, arguments, keyword arguments,
    the result as it was returned (a copy: its caller may change it in place), the version
    counter of each tensor argument then)."""

    calls: list[tuple[Any, tuple, dict, Tensor, tuple]] = field(default_factory=list)


def supported(model: nn.Module) -> bool:
    """Whether ``model``'s passes can be recorded: every network but lanes run through vmap and a
    model under ``torch.compile`` (whose generated code calls the products in its own way)."""
    return not getattr(model, "vmapped", False) and not hasattr(model, "_orig_mod")


class _Record(TorchFunctionMode):
    def __init__(self, rec: Recording) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in PRODUCTS:
            versions = tuple(a._version if isinstance(a, Tensor) else None for a in args)
            self.rec.calls.append((func, args, kwargs, out.detach().clone(), versions))
        return out


class _Replay(TorchFunctionMode):
    def __init__(self, rec: Recording, dtype: torch.dtype) -> None:
        super().__init__()
        self.rec, self.dtype, self.i = rec, dtype, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in PRODUCTS:
            return func(*args, **kwargs)
        if self.i >= len(self.rec.calls) or self.rec.calls[self.i][0] is not func:
            raise RuntimeError(f"difference pass: product {self.i} ({getattr(func, '__name__', func)}) was not "
                               "the recorded clean pass's; the perturbed pass must run the same network in the same mode")
        _, clean_args, _, clean_out, versions = self.rec.calls[self.i]
        self.i += 1
        moved = [j for j, (a, c) in enumerate(zip(args, clean_args)) if isinstance(a, Tensor) and a is not c]
        if len(moved) != 1 or args[moved[0]].shape != clean_args[moved[0]].shape:
            raise RuntimeError(f"difference pass: product {self.i - 1} differs from the clean pass in "
                               f"{len(moved)} arguments; exactly one (the activation) may")
        j = moved[0]
        if any(isinstance(c, Tensor) and c._version != v for c, v in zip(clean_args, versions)):
            raise RuntimeError(f"difference pass: an argument of the clean pass's product {self.i - 1} was changed "
                               "in place after it ran")
        new = list(args)
        new[j] = args[j] - clean_args[j]  # h' - h, in float32
        kw = dict(kwargs)
        bias = _BIAS_AT.get(func)
        if bias is not None:  # W (h' - h) alone: the clean result holds the bias
            if len(new) > bias:
                new[bias] = None
            kw.pop("bias", None)
        with torch.autocast(new[j].device.type, dtype=self.dtype):
            product = func(*new, **kw)
        return clean_out + product  # float32


@contextlib.contextmanager
def recording(on: bool = True) -> Iterator[Recording | None]:
    """Record the products of the pass run inside (the clean pass); None and nothing recorded when
    ``on`` is False."""
    if not on:
        yield None
        return
    rec = Recording()
    with _Record(rec):
        yield rec


@contextlib.contextmanager
def replaying(rec: Recording | None, dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Run the pass inside (the perturbed pass) as the clean pass ``rec`` recorded plus the
    products of the difference in ``dtype``."""
    if rec is None:
        raise ValueError("difference pass: no recording of the clean pass to replay (give the recording "
                         "of the pass whose logits are reused)")
    with _Replay(rec, dtype):
        yield
