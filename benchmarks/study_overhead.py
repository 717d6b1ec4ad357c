"""What the platform costs: the same N trials through `vat-study run` (Ray Tune + the SQL store,
and the in-process executor + the store) and through a plain Python loop calling run_trial, each
a fresh process timed from start to end (imports, Ray's start and the store included), in rounds
that alternate the order; medians are reported. Then the study's wall time with 1 and 2
concurrent trials on this machine.

Trials are semi-supervised VAT on digits (MLP 256-128, batches 32/128); their length is set by
the number of updates, calibrated first so one trial takes about --trial-seconds on one thread.

    python -m benchmarks.study_overhead                          # 30 s and 3 s trials (~25 min, 2 cores)
    python -m benchmarks.study_overhead --trial-seconds 3 --trials 8 --rounds 1

Overhead: every run gives each trial one thread and runs one trial at a time, so the only
difference is the platform. The wall time splits into "start+stop" (before the first trial
starts and after the last one finishes, beyond the plain loop's own imports), "between/around
trials" (from the first trial's start to the last one's finish as the store recorded them, less
the time inside run_trial, per trial: scheduling and store writes) and "inside" (time in
run_trial relative to the plain loop's: a trial slowed by Ray's processes competing for the
cores shows there, mixed with this shared machine's drift over minutes, which is why the rounds
alternate their order). Scaling: the same N trials on
Ray with 2 concurrent trials (one thread each), and the plain loop giving one trial both cores'
threads (with Ray's own processes beside it, a trial that uses every core is slowed down: its
threads wait for each other whenever one is preempted, so per_trial.cpu should leave Ray a
little room; the default, 1 cpu per trial, does).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import torch
import yaml

TASK = {"dataset": "digits", "model": "mlp", "hidden": [256, 128], "batch": {"labeled": 32, "unlabeled": 128},
        "eval_every": 100, "probes": {"rvadv": {"size": 200}}}
LOOP = r"""
import json, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from vat_study import run_trial
for cfg in json.loads(sys.argv[1]):
    print(run_trial(cfg)["wall_seconds"])
"""


def calibrate(seconds: float) -> int:
    """Updates that make one trial last about ``seconds`` on one thread (evaluations included)."""
    from vat_study import run_trial

    torch.set_num_threads(1)
    run_trial({**TASK, "method": "vat", "steps": 20, "eval_every": 20})  # warm-up
    t = time.perf_counter()
    run_trial({**TASK, "method": "vat", "steps": 300})
    return max(int(seconds / ((time.perf_counter() - t) / 300)), 1)


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds of the process, seconds inside run_trial (the trials' wall_seconds), seconds
    from the first trial's start to the last one's finish as the store recorded them)."""
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr[-3000:]}")
    if "-c" in cmd:  # the plain loop prints each trial's wall_seconds; nothing happens between trials
        inside = sum(float(v) for v in out.stdout.split())
        return wall, inside, inside
    con = sqlite3.connect(os.path.join(os.path.dirname(cmd[-1]), "store.db"))
    inside = con.execute("SELECT sum(value) FROM vat_final_metrics WHERE name = 'wall_seconds'").fetchone()[0]
    first, last = con.execute("SELECT min(started_at), max(finished_at) FROM vat_trials").fetchone()
    con.close()
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return wall, inside, span


def ways(folder: str, steps: int, n: int) -> dict[str, list[str]]:
    """The command line of each way to run the N trials."""
    eps = [round(0.5 + 0.1 * i, 3) for i in range(n)]
    configs = [{**TASK, "method": "vat", "eps": e, "steps": steps} for e in eps]

    def study(kind: str, concurrent: int) -> list[str]:
        sub = tempfile.mkdtemp(dir=folder)
        spec = {"name": "overhead", "task": {**TASK, "steps": steps}, "method": {"name": "vat"},
                "search": {"grid": [{"eps": eps}]}, "seeds": [0], "storage": f"sqlite:///{sub}/store.db",
                "executor": {"kind": kind, "per_trial": {"cpu": 1}, "max_concurrent": concurrent}}
        with open(os.path.join(sub, "study.yaml"), "w") as f:
            yaml.safe_dump(spec, f)
        return [sys.executable, "-m", "vat_study.platform.cli", "run", "--no-progress", os.path.join(sub, "study.yaml")]

    return {
        "plain loop": [sys.executable, "-c", LOOP, json.dumps(configs), "1"],
        "in-process executor + store": study("local", 1),
        "Ray Tune + store": study("ray", 1),
        "Ray Tune + store, 2 concurrent": study("ray", 2),
        "plain loop, 2 threads a trial": [sys.executable, "-c", LOOP, json.dumps(configs), "2"],
    }


def measure(steps: int, n: int, rounds: int, folder: str) -> dict[str, tuple[float, ...]]:
    """way -> medians of (wall, inside, span) over the rounds."""
    times: dict[str, list[tuple[float, float, float]]] = {}
    for r in range(rounds):
        cmds = ways(folder, steps, n)  # fresh stores every round
        order = list(cmds) if r % 2 == 0 else list(reversed(cmds))
        for name in order:
            times.setdefault(name, []).append(timed(cmds[name]))
    out = {k: tuple(statistics.median(x[j] for x in v) for j in range(3)) for k, v in times.items()}
    loops = [x[1] for x in times["plain loop"]]
    out["drift"] = (max(loops) / min(loops) - 1,)  # the same plain loop, round to round
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trial-seconds", type=float, nargs="+", default=[30.0, 3.0])
    ap.add_argument("--trials", type=int, default=None, help="default: 4 for trials >= 10 s, else 12")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores; wall seconds of fresh processes, start to end, "
          f"median of {args.rounds} rounds", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.trial_seconds:
            n = args.trials or (4 if seconds >= 10 else 12)
            steps = calibrate(seconds)
            r = measure(steps, n, args.rounds, folder)
            ref_wall, ref_inside, _ = r["plain loop"]
            print(f"\n{n} trials of ~{seconds:g} s ({steps} updates each)")
            print(f"{'how':<28} {'wall s':>7} {'overhead':>9} {'start+stop':>11} {'between/around trials':>24} "
                  f"{'inside':>7}")
            for name in ("plain loop", "in-process executor + store", "Ray Tune + store"):
                wall, inside, span = r[name]
                fixed = (wall - span) - (ref_wall - ref_inside)  # beyond the plain loop's imports and exit
                per = (span - inside) / n
                print(f"{name:<28} {wall:7.1f} {100 * (wall - ref_wall) / ref_wall:8.1f}% {fixed:+10.1f}s "
                      f"{per:+8.2f} s = {100 * per / (ref_inside / n):5.1f}% each {inside / ref_inside:6.3f}x")
            if args.rounds > 1:
                print(f"(the plain loop's time inside run_trial varied by {100 * r['drift'][0]:.1f} % between rounds: "
                      "this machine's drift)")
            print("scaling (1 thread per trial unless said):")
            for name in ("Ray Tune + store", "Ray Tune + store, 2 concurrent", "plain loop, 2 threads a trial"):
                print(f"  {name:<30} {r[name][0]:7.1f} s = {ref_wall / r[name][0]:.2f}x the plain loop's throughput")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
