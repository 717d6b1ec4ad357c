"""Subnormal floats flushed to zero while a trial trains (FTZ / DAZ, ``torch.set_flush_denormal``).

A float32 below 1.2e-38 is subnormal; some CPUs compute with one tens of times slower than with a
normal number (an Intel Xeon timed the float32 VAT step of ``benchmarks.step_time``, trained on
a fixed batch of random images, at 8x the minimal step, and at 0.98x with flushing). Flushed,
such a value becomes 0. Where none arises, flushing changes no number: on the AMD EPYC this was
measured on, no operation of our float32 VAT step produced one in 1,500 updates on that random
batch, nor in a 1,500-update MNIST-100 VAT trial (``python -m benchmarks.subnormals`` counts them
per operation), and the golden metrics are bit for bit those without flushing
(docs/performance.md, "mixed_delta, auto and subnormals"). Where one does arise it is 1e-38 of its neighbours.

The flag is per thread (the CPU's MXCSR register): it covers the thread that trains, which is
the only one a trial of the platform uses (one torch thread per trial); with more torch threads
the intra-op worker threads keep their own setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_SUBNORMAL = 1e-40


def flushing() -> bool:
    """Whether this thread flushes subnormals now (a subnormal times 1 gives 0)."""
    return bool(torch.tensor(_SUBNORMAL) * 1.0 == 0)


@contextlib.contextmanager
def flushed() -> Iterator[bool]:
    """Subnormals flushed on this thread inside the block, and the setting restored after; yields
    whether the CPU can flush them (False: nothing changes)."""
    before = flushing()
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported and not before:
            torch.set_flush_denormal(False)
