"""What the platform costs: the same N trials through `vat-study run` (Ray Tune + the SQL store)
and through a plain Python loop calling run_trial, each as a fresh process timed from start to
end (imports, Ray start and the store included). Also the in-process executor (the store without
Ray), and the study's wall time with 1 and 2 concurrent trials on this machine.

Trials are semi-supervised VAT on digits (MLP 256-128, batches 32/128); their length is set by
the number of updates, calibrated first so one trial takes about --trial-seconds.

    python -m benchmarks.study_overhead                      # 30 s and 3 s trials (~12 min on 2 cores)
    python -m benchmarks.study_overhead --trial-seconds 3 --trials 8

Overhead = (platform wall time - plain loop wall time) / plain loop wall time, measured in the
same run; "1 concurrent" runs one trial at a time with every core's threads (per_trial.cpu = all
cores), "2 concurrent" two at a time with half each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import yaml

TASK = {"dataset": "digits", "model": "mlp", "hidden": [256, 128], "batch": {"labeled": 32, "unlabeled": 128},
        "eval_every": 100, "probes": {"rvadv": {"size": 200}}}
LOOP = r"""
import json, sys, torch
from vat_study import run_trial
configs, threads = json.loads(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
for cfg in configs:
    run_trial(cfg)
"""


def calibrate(seconds: float, threads: int) -> int:
    """Updates that make one trial last about ``seconds`` (evaluations included)."""
    from vat_study import run_trial

    torch.set_num_threads(threads)
    run_trial({**TASK, "method": "vat", "steps": 20, "eval_every": 20})  # warm-up
    t = time.perf_counter()
    run_trial({**TASK, "method": "vat", "steps": 200})
    per_step = (time.perf_counter() - t) / 200
    return max(int(seconds / per_step), 10)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t


def study_file(folder: str, steps: int, n: int, kind: str, cpu: float) -> str:
    spec = {"name": "overhead", "task": {**TASK, "steps": steps}, "method": {"name": "vat"},
            "search": {"grid": [{"eps": [round(0.5 + 0.1 * i, 3) for i in range(n)]}]}, "seeds": [0],
            "executor": {"kind": kind, "per_trial": {"cpu": cpu}},
            "storage": f"sqlite:///{tempfile.mkdtemp(dir=folder)}/store.db"}
    path = os.path.join(tempfile.mkdtemp(dir=folder), "study.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(spec, f)
    return path


def measure(seconds: float, n: int, cores: int, folder: str) -> dict[str, float]:
    steps = calibrate(seconds, cores)
    configs = [{**TASK, "method": "vat", "eps": round(0.5 + 0.1 * i, 3), "steps": steps} for i in range(n)]
    cli = [sys.executable, "-m", "vat_study.cli", "run", "--no-progress"]
    runs = {
        "plain loop (run_trial)": lambda: timed([sys.executable, "-c", LOOP, json.dumps(configs), str(cores)]),
        "in-process executor + store": lambda: timed(cli + [study_file(folder, steps, n, "local", cores)]),
        "Ray Tune + store, 1 concurrent": lambda: timed(cli + [study_file(folder, steps, n, "ray", cores)]),
        "Ray Tune + store, 2 concurrent": lambda: timed(cli + [study_file(folder, steps, n, "ray", cores / 2)]),
    }
    return {"steps": steps, **{name: run() for name, run in runs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trial-seconds", type=float, nargs="+", default=[30.0, 3.0])
    ap.add_argument("--trials", type=int, default=None, help="default: 6 for trials >= 10 s, else 12")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"torch {torch.__version__}, {cores} cores; each row is one fresh process, start to end")
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.trial_seconds:
            n = args.trials or (6 if seconds >= 10 else 12)
            r = measure(seconds, n, cores, folder)
            ref = r["plain loop (run_trial)"]
            print(f"\n{n} trials of ~{seconds:g} s ({r['steps']} updates each)")
            print(f"{'how':<32} {'wall s':>8} {'s/trial':>8} {'overhead':>9}")
            for name, wall in r.items():
                if name == "steps":
                    continue
                print(f"{name:<32} {wall:8.1f} {wall / n:8.2f} {100 * (wall - ref) / ref:8.1f}%")


if __name__ == "__main__":
    main()
