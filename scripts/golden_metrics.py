"""The golden regression configs: a handful of run_trial configs (each method, supervised and
semi-supervised, moons and digits, seeds trained batched, a probe of each kind) with their exact
final metrics on the CPU in float32. tests/test_golden.py checks today's code against
tests/data/golden_metrics.json; this script wrote that file (run it on the commit to compare
against: the file records which).

    python scripts/golden_metrics.py > tests/data/golden_metrics.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TASK = {"dataset": "digits", "hidden": [32, 16], "steps": 20, "eval_every": 10,
        "batch": {"labeled": 16, "unlabeled": 64}, "probes": {"rvadv": {"size": 50}}}
CONFIGS = {
    "baseline": {**TASK, "method": "baseline"},
    "rpt": {**TASK, "method": "rpt", "eps": 0.5},
    "vat": {**TASK, "method": "vat", "eps": 0.5},
    "vat_k2_hvp": {**TASK, "method": "vat", "eps": 1.0, "power_iterations": 2, "direction": "hvp"},
    "vat_entmin": {**TASK, "method": "vat_entmin", "eps": 0.5},
    "at_l2": {**TASK, "method": "at_l2", "eps": 0.3},
    "at_linf": {**TASK, "method": "at_linf", "eps": 0.05},
    "vat_supervised": {**TASK, "method": "vat", "mode": "supervised", "eps": 0.5},
    "vat_probes": {**TASK, "method": "vat", "eps": 0.5, "probes": {
        "rvadv": {"size": 50}, "fidelity": {"size": 10, "reference_iterations": 5},
        "grad_variance": {"samples": 3, "batch": 16, "power_iterations": [0, 1]}}},
    "moons_vat": {"dataset": "moons", "method": "vat", "eps": 0.15, "steps": 30, "eval_every": 10, "n_labeled": 8,
                  "validation": 100, "batch": {"labeled": 8, "unlabeled": 128},
                  "probes": {"rvadv": {"size": 50, "eps": 0.15}}},
}
BATCHED = ("vat_seeds_0_1_2", {**TASK, "method": "vat", "eps": 0.5}, [0, 1, 2])
KEEP = ("loss", "nll", "reg", "lr", "val_error", "test_error", "rvadv", "fidelity", "grad_sd_norm_k0",
        "grad_sd_norm_k1", "n_labeled", "n_validation")


THREADS = 1
"""torch threads for the golden metrics: the metrics depend on the thread count (summation order),
so the script and the test both pin it."""


def main() -> None:
    import torch

    import vat_study
    from vat_study import run_trial

    torch.set_num_threads(THREADS)

    out = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(vat_study.__file__).parent).stdout.strip(), "threads": THREADS,
           "metrics": {}}
    for name, cfg in CONFIGS.items():
        m = run_trial(cfg)
        out["metrics"][name] = {k: m[k] for k in KEEP if k in m}
    name, cfg, seeds = BATCHED
    try:
        from vat_study import run_seeds
        per_seed = run_seeds(cfg, seeds).metrics
    except ImportError:  # vat-study before run_seeds: run_trial with seeds returned the seeds' metrics
        per_seed = run_trial({**cfg, "seeds": seeds})["seeds"]
    for s in seeds:
        out["metrics"][f"{name}/seed{s}"] = {k: per_seed[s][k] for k in KEEP if k in per_seed[s]}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
