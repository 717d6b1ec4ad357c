"""Per-trial overhead of the executors: the same study of N near-empty trials (digits, a 16-unit
MLP, 1 update) run in-process, on Ray Tune with our lean settings (reuse_actors, no TensorBoard/
CSV/JSON loggers), and on Ray Tune with Tune's defaults (no actor reuse, default loggers), each
into a fresh SQLite store. Reports seconds per trial; the in-process run is the reference.

    python -m benchmarks.platform_overhead [--trials 12]     # ~2 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SCRIPT = r"""
import json, os, sys, time
lean = sys.argv[2] == "lean"
if not lean:
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0"
import vat_study.platform.executors.ray_tune as rt
from vat_study.platform.spec import parse_spec
if not lean:
    from ray import tune
    _Tuner = tune.Tuner
    def Tuner(*a, tune_config=None, **k):
        tune_config.reuse_actors = False
        return _Tuner(*a, tune_config=tune_config, **k)
    tune.Tuner = Tuner
spec = parse_spec(json.loads(sys.argv[1]))
t = time.time()
kind = sys.argv[2]
if kind == "local":
    from vat_study.platform.executors import run_local
    s = run_local(spec, progress=False)
else:
    from vat_study.platform.executors import run_ray
    s = run_ray(spec, progress=False)
assert s.failed == 0 and s.ran == len(spec.expand()), s
print(time.time() - t)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()
    results = {}
    for kind in ("local", "lean", "default"):
        db = os.path.join(tempfile.mkdtemp(), "o.db")
        spec = dict(name="overhead", task=dict(dataset="digits", hidden=[16], steps=1, eval_every=1,
                                               probes=dict(rvadv=dict(size=10))),
                    search=dict(grid=[dict(eps=[0.5 + i for i in range(args.trials)])]), seeds=[0],
                    storage=f"sqlite:///{db}", executor=dict(kind="local" if kind == "local" else "ray",
                                                             per_trial=dict(cpu=1)))
        t = time.time()
        out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec), kind], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        inner = float(out.stdout.strip().splitlines()[-1])
        results[kind] = (inner, time.time() - t)
    ref = results["local"][0] / args.trials
    print(f"{args.trials} near-empty trials per executor (seconds; 'process' includes imports and Ray start)")
    print(f"{'executor':<26} {'s/trial':>8} {'vs local':>9} {'run s':>7} {'process s':>10}")
    names = {"local": "local (in-process)", "lean": "ray, lean (ours)", "default": "ray, Tune defaults"}
    for k, (inner, outer) in results.items():
        per = inner / args.trials
        print(f"{names[k]:<26} {per:8.2f} {per / ref:8.1f}x {inner:7.1f} {outer:10.1f}")


if __name__ == "__main__":
    main()
