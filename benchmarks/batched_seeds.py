"""Throughput of seeded repeats: S seeds of one configuration as S sequential run_trial calls,
and as one run_seeds call (one batched model, vat_study.science.batched), side by side in one
process, alternating round by round. Whole trials are timed (data, training, evaluations,
probes, test error), so the ratio is what a study gains.

    python -m benchmarks.batched_seeds                    # S = 8, the demo MLP and the paper's MLP
    python -m benchmarks.batched_seeds --seeds 8 --steps 300 --rounds 3 --device cuda
    python -m benchmarks.batched_seeds --precision mixed_delta   # task.precision of every trial

Networks (semi-supervised VAT, K = 1):
    Fig. 1 MLP  2-50-2 on moons, 8 labels, batches 8/256 (studies/moons_fig1.yaml)
    demo MLP    64-256-128-10 with BN on digits, 100 labels, batches 32/128 (studies/quickstart.yaml)
    paper MLP   64-1200-600-300-150-10 with BN on digits, batches 64/256 (Section 4.1.1's widths)

On a CPU a step of the paper's MLP is already bound by its matrix products, which batching
cannot shrink; the gain comes from the per-operation overhead that small networks are made of.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vat_study import run_seeds, run_trial

NETWORKS = {
    "Fig. 1 MLP 50 (moons)": {"dataset": "moons", "model": "small_mlp", "n_labeled": 8, "validation": 100,
                              "batch": {"labeled": 8, "unlabeled": 256}, "eps": 0.15},
    "demo MLP 256-128": {"hidden": [256, 128], "batch": {"labeled": 32, "unlabeled": 128}},
    "paper MLP 1200-600-300-150": {"hidden": [1200, 600, 300, 150], "batch": {"labeled": 64, "unlabeled": 256}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "mixed", "mixed_delta"],
                    help="task.precision of every trial")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"S = {args.seeds} seeds x {args.steps} updates, {args.rounds} rounds (median), precision {args.precision}")
    print(f"{'network':<28} {'sequential s':>12} {'batched s':>10} {'trials/min seq':>15} {'batched':>8} {'speed-up':>9}")
    for name in args.networks:
        base = {"dataset": "digits", "method": "vat", "eps": 1.0, "steps": args.steps, "eval_every": 100,
                "probes": {"rvadv": {"size": 200}}, "device": args.device, "precision": args.precision,
                **NETWORKS[name]}
        if base["dataset"] == "moons":
            base["probes"]["rvadv"]["eps"] = base["eps"]
        run_seeds({**base, "steps": 5}, seeds[:2])  # warm-up (allocator, kernels)
        seq, bat = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for s in seeds:
                run_trial({**base, "seed": s})
            seq.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = run_seeds(base, seeds)
            bat.append(time.perf_counter() - t)
            assert not out.failed
        s_med, b_med = statistics.median(seq), statistics.median(bat)
        print(f"{name:<28} {s_med:12.1f} {b_med:10.1f} {60 * args.seeds / s_med:15.1f} "
              f"{60 * args.seeds / b_med:8.1f} {s_med / b_med:8.2f}x")


if __name__ == "__main__":
    main()
