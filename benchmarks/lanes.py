"""Throughput of lanes: the Fig. 3a grid (8 eps values x 3 seeds = 24 trials, alpha = 1,
semi-supervised VAT with K = 1 on digits) as 24 sequential ``run_trial`` calls and as one
``run_lanes`` call (24 lanes of one batched model, what ``executor.lanes: 24`` runs), side by
side in one process, alternating round by round. Whole trials are timed (data, training,
evaluations, probes, test error), so the ratio is what a study gains.

    python -m benchmarks.lanes                  # 300 updates, 3 rounds (median), both networks
    python -m benchmarks.lanes --quick          # 100 updates (paper MLP: 30), 3 rounds: ~5 min on 2 cores
    python -m benchmarks.lanes --device cuda    # on a GPU
    python -m benchmarks.lanes --quick --profile   # + where a step's time goes, both ways
    python -m benchmarks.lanes --quick --precisions float32 mixed_delta   # task.precision, interleaved

Networks (the settings of studies/quickstart.yaml; eps as in studies/eps_alpha_mnist.yaml, Fig. 3a):
    demo MLP    64-256-128-10 with BN, 100 labels, batches 32/128
    paper MLP   64-1200-600-300-150-10 with BN (Section 4.1.1's widths), batches 64/256

The last line is ``speed-up N.NNx`` for the demo MLP (sequential time / lanes time) in the first
precision; with several ``--precisions`` each is timed in the same rounds, and each network's lanes
in every other precision are given as a ratio to its lanes in the first.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks import CLOCKS
from vat_study import run_lanes, run_trial

EPS = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0]  # Fig. 3a's grid (studies/eps_alpha_mnist.yaml)
SEEDS = [0, 1, 2]
NETWORKS = {
    "demo MLP 256-128": {"hidden": [256, 128], "batch": {"labeled": 32, "unlabeled": 128}},
    "paper MLP 1200-600-300-150": {"hidden": [1200, 600, 300, 150], "batch": {"labeled": 64, "unlabeled": 256}},
}
DEMO = "demo MLP 256-128"


def lanes_of(base: dict) -> list[dict]:
    return [{**base, "eps": e, "seed": s} for e in EPS for s in SEEDS]


def profile(configs: list[dict], top: int = 6) -> None:
    """The operators a few updates spend their time in, sequential (one lane) and as lanes."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if configs[0]["device"].startswith("cuda") else [])
    short = [{**c, "steps": 10, "eval_every": 10, "probes": {"rvadv": {"size": 16}}} for c in configs]
    for label, fn, n in (("one trial", lambda: run_trial(short[0], threads=torch.get_num_threads()), 1),
                         (f"{len(short)} lanes", lambda: run_lanes(short, threads=torch.get_num_threads()), len(short))):
        fn()  # warm-up
        with torch_profile(activities=acts) as prof:
            fn()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e3
        print(f"  profile, {label} (10 updates; {total:.0f} ms self CPU, {total / n:.1f} ms per trial):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            print(f"    {e.key:<40} {e.self_cpu_time_total / 1e3:8.1f} ms  {e.count:6d} calls")


def base_config(name: str, steps: int, device: str, precision: str) -> dict:
    return {"dataset": "digits", "method": "vat", "alpha": 1.0, "steps": steps, "eval_every": 100,
            "probes": {"rvadv": {"eps": 2.0, "size": 200}}, "device": device, "precision": precision,
            **NETWORKS[name]}


def time_network(name: str, steps: int, rounds: int, args) -> dict[str, tuple[float, float, float]]:
    """{precision: (median s of the 24 sequential trials, median s of the 24 lanes, the largest
    val_error gap between a lane and its trial)}, every precision timed in each round."""
    grids = {p: lanes_of(base_config(name, steps, args.device, p)) for p in args.precisions}
    for configs in grids.values():
        run_lanes([{**c, "steps": 3} for c in configs[:2]], threads=torch.get_num_threads())  # warm-up (allocator, kernels)
        run_trial({**configs[0], "steps": 3}, threads=torch.get_num_threads())
    seq: dict[str, list[float]] = {p: [] for p in grids}
    lan: dict[str, list[float]] = {p: [] for p in grids}
    gaps: dict[str, float] = {}
    now = CLOCKS[args.clock]
    for _ in range(rounds):
        for p, configs in grids.items():
            t = now()
            alone = [run_trial(c, threads=torch.get_num_threads()) for c in configs]  # the threads printed above, not the API default of 1
            seq[p].append(now() - t)
            t = now()
            out = run_lanes(configs, threads=torch.get_num_threads())
            lan[p].append(now() - t)
            assert not out.failed, out.failed
            gaps[p] = max(abs(a["val_error"] - b["val_error"]) for a, b in zip(alone, out.metrics))  # type: ignore[index]
    return {p: (statistics.median(seq[p]), statistics.median(lan[p]), gaps[p]) for p in grids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 updates (paper MLP 30), 3 rounds")
    ap.add_argument("--steps", type=int, default=None, help="updates per trial (default 300; --quick 100)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds, median reported (default 3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", action="store_true", help="print where the time goes, both ways")
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--clock", default="wall", choices=list(CLOCKS),
                    help="cpu: the process's CPU time, for a machine shared with other work")
    ap.add_argument("--precisions", nargs="+", default=["float32"],
                    choices=["float32", "bfloat16", "mixed", "mixed_delta"], help="task.precision, each timed")
    args = ap.parse_args()
    steps = args.steps or (100 if args.quick else 300)
    rounds = args.rounds or 3
    n = len(EPS) * len(SEEDS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, {args.clock} clock; "
          f"Fig. 3a grid: {len(EPS)} eps x {len(SEEDS)} seeds = {n} trials, {rounds} round(s) (median)")
    print(f"{'network':<28} {'precision':<11} {'updates':>7} {'sequential s':>12} {'lanes s':>8} {'trials/min seq':>15} "
          f"{'lanes':>7} {'speed-up':>9}")
    speedups = {}
    for name in args.networks:
        net_steps = steps if name == DEMO or args.steps else max(steps * 3 // 10, 10)  # paper MLP: ~30x the work
        times = time_network(name, net_steps, rounds, args)
        for precision, (s_med, l_med, gap) in times.items():
            speedups.setdefault(name, s_med / l_med)
            print(f"{name:<28} {precision:<11} {net_steps:7d} {s_med:12.1f} {l_med:8.1f} {60 * n / s_med:15.1f} "
                  f"{60 * n / l_med:7.1f} {s_med / l_med:8.2f}x   (largest val_error gap lane vs trial: {gap:.4f})")
        first = args.precisions[0]
        for precision in args.precisions[1:]:
            print(f"{name}: lanes in {precision} = {times[precision][1] / times[first][1]:.2f}x lanes in {first}, "
                  f"sequential {times[precision][0] / times[first][0]:.2f}x")
        if args.profile:
            profile(lanes_of(base_config(name, net_steps, args.device, first)))
    if DEMO in speedups:
        print(f"speed-up {speedups[DEMO]:.2f}x")


if __name__ == "__main__":
    main()
