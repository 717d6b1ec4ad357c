"""Golden regression: a handful of run_trial configs (each method, supervised and semi-supervised,
digits and moons, a probe of each kind, seeds trained batched) against their metrics as recorded
in tests/data/golden_metrics.json (written by scripts/golden_metrics.py).

On the machine that recorded them the single-trial metrics are bit-identical to those of
3338447, the code before the structure refactor (method registry, store and executor split,
probe objects, lanes); the tolerances below only absorb another CPU's float32 rounding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from golden_metrics import BATCHED, CONFIGS, THREADS  # noqa: E402

from vat_study import run_seeds, run_trial  # noqa: E402

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_metrics.json").read_text())["metrics"]


@pytest.fixture(autouse=True)
def _pinned_threads():
    """The golden metrics were written with ``THREADS`` torch threads (the numbers depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _check(got: dict, want: dict, errors_abs: float) -> None:
    for k, v in want.items():
        if k in ("val_error", "test_error"):
            assert got[k] == pytest.approx(v, abs=errors_abs), k
        else:
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k


@pytest.mark.parametrize("name", list(CONFIGS))
def test_run_trial_reproduces_its_golden_metrics(name):
    _check(run_trial(CONFIGS[name]), GOLDEN[name], errors_abs=0.004)


def test_batched_seeds_reproduce_their_golden_metrics():
    name, cfg, seeds = BATCHED
    res = run_seeds(cfg, seeds)
    assert not res.failed
    for s in seeds:
        _check(res.metrics[s], GOLDEN[f"{name}/seed{s}"], errors_abs=0.004)
