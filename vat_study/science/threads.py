"""How many CPU threads torch trains a trial with: one policy for the command line, the executors
and the Python API (``run_trial``, ``run_seeds``, ``run_lanes``).

A trial trains with ``threads`` torch threads when the caller gives them (the executors give
``executor.per_trial.cpu``; ``vat-study trial --threads N``), else with ``VAT_STUDY_THREADS``,
else with 1; the caller's own setting is restored when the trial returns. One thread because the
models here are small: torch's default (one per core) spends more on synchronising than it gains,
and on a machine whose cores are busy with other work it is slower by an order of magnitude
(a 50-update digits VAT ``run_trial`` on a 2-core machine at load average 11-14: 56-87 s with
torch's default of 2 threads, 4.7-9.9 s with one), and one thread gives the same numbers on
every machine. Give more for a large model
on an idle machine: ``run_trial(config, threads=8)`` or ``VAT_STUDY_THREADS=8``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

THREADS_ENV = "VAT_STUDY_THREADS"
DEFAULT_THREADS = 1


def trial_threads(threads: int | None = None) -> int:
    """The torch threads of a trial: ``threads`` if given, else ``VAT_STUDY_THREADS``, else
    ``DEFAULT_THREADS``; ValueError naming the variable when it is not a positive integer."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: must be a positive integer, got {threads!r}")
        return threads
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: must be a positive integer (torch threads per trial)")
    return int(raw)


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """torch trains with ``threads`` threads inside the block; the caller's count is restored after."""
    import torch

    previous = torch.get_num_threads()
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
