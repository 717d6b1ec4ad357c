"""What ``executor.trial_timeout`` costs a trial that does not time out: the same tiny digits study
run in this process on the local executor without a time limit and with one (which trains each
trial in a child process that can be killed whatever the trial is doing), in rounds that
alternate the order; medians are reported.

    python -m benchmarks.timeout_overhead                 # 16 trials x 3 rounds (~1 min, 2 cores)
    python -m benchmarks.timeout_overhead --trials 8 --rounds 1

Per trial: the time from the first trial's finish to the last one's as the store recorded them,
divided by the trials in between, and of it the platform's part: what is not inside run_trial
(claims, store writes, with a limit the hand-over to the child and back; the time inside
run_trial is the same code either way, and on a loaded machine varies more than the rest).
Once per run: the run's wall time less that many per-trial times (planning, the first trial's
cold start, and with a limit the child's start: a fresh Python importing torch, which the
driver has imported already).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime

TASK = {"dataset": "digits", "steps": 40, "eval_every": 20, "hidden": [32], "batch": {"labeled": 16, "unlabeled": 32}}


def one_run(trials: int, timeout: float | None, folder: str) -> tuple[float, float, float]:
    """(wall seconds of run_local, seconds from the first trial's finish to the last one's: the
    steady state, without the first trial's cold start, and the seconds of those trials spent
    inside run_trial)."""
    from vat_study.platform.executors import run_local
    from vat_study.platform.results import trials_frame
    from vat_study.platform.spec import parse_spec
    from vat_study.platform.store import Store

    try:  # each run starts its own child, as every `vat-study run` does (none before this change)
        from vat_study.platform.executors import isolation

        if isolation._child is not None:
            isolation._child.kill()
            isolation._child = None
    except ImportError:
        pass
    url = f"sqlite:///{folder}/s-{time.monotonic_ns()}.db"
    spec = parse_spec({"name": "overhead", "task": TASK, "method": {"name": "vat"}, "seeds": list(range(trials)),
                       "metric": {"name": "val_error", "mode": "min"}, "storage": url,
                       "executor": {"kind": "local", "trial_timeout": timeout}})
    t = time.perf_counter()
    summary = run_local(spec, progress=False)
    wall = time.perf_counter() - t
    assert (summary.ran, summary.failed) == (trials, 0), summary
    df = trials_frame(Store(url), "overhead").sort_values("finished_at")
    first, last = df.finished_at.iloc[0], df.finished_at.iloc[-1]
    if isinstance(first, str):
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return wall, (last - first).total_seconds(), float(df.wall_seconds.iloc[1:].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        here = os.getcwd()
        os.chdir(folder)  # the trials' logs stay out of the repository
        try:
            one_run(2, None, folder)  # warm-up: imports, the data's first load
            got: dict[str, list[tuple[float, float, float]]] = {"no limit": [], "trial_timeout": []}
            for r in range(args.rounds):
                order = [("no limit", None), ("trial_timeout", 600.0)]
                for name, limit in order if r % 2 == 0 else order[::-1]:
                    got[name].append(one_run(args.trials, limit, folder))
        finally:
            os.chdir(here)
    print(f"{args.trials} trials x {args.rounds} round(s); medians")
    n = args.trials - 1
    platform = {}
    for name, runs in got.items():
        wall = statistics.median(w for w, _, _ in runs)
        per = statistics.median(s for _, s, _ in runs) / n
        platform[name] = statistics.median((s - inside) for _, s, inside in runs) / n
        print(f"{name:>14}: {per * 1000:7.1f} ms per trial ({platform[name] * 1000:5.1f} ms outside run_trial), "
              f"{wall - per * args.trials:5.2f} s once per run (planning, first trial, child start), wall {wall:5.2f} s")
    print(f"trial_timeout costs {(platform['trial_timeout'] - platform['no limit']) * 1000:+.1f} ms of platform time "
          "per trial")


if __name__ == "__main__":
    main()
