"""Where subnormal floats arise in our step, and what flushing them (FTZ / DAZ) saves: our step
(``train.train_step``, paper MLP, Appendix C settings) trained on the fixed batch of random images
``benchmarks.step_time`` times (where an Intel Xeon met subnormals: our float32 VAT step 8x the
minimal step, 0.98x with ``torch.set_flush_denormal(True)``), or with ``--data`` a real MNIST-100
trial (``run_trial``). Every operation's output is checked (a ``TorchDispatchMode``; backward
operations included) and the subnormal values counted per operation; then the step is timed with
and without flushing, interleaved, on the trained network.

    python -m benchmarks.subnormals [--method vat --precision float32 --updates 1500 --every 250]
    python -m benchmarks.subnormals --data DATA_ROOT --updates 1500   # MNIST-100, eps 5 (studies/precision_mnist.yaml)

The last line reads ``subnormal outputs: N in U updates; step with flushing = R.RRx without``.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks import interleaved_medians

_UNINITIALIZED = ("aten.empty", "aten.new_empty")  # outputs of uninitialized memory, not results


class SubnormalCounter(TorchDispatchMode):
    """Counts, per operation, the subnormal values (0 < |v| < the dtype's smallest normal) in the
    floating-point outputs of every operation run inside; ``values``: all values checked."""

    def __init__(self) -> None:
        super().__init__()
        self.per_op: Counter = Counter()
        self.values = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if str(func).startswith(_UNINITIALIZED):
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
                a = t.detach().abs()
                n = int(((a > 0) & (a < torch.finfo(t.dtype).tiny)).sum())
                self.values += t.numel()
                if n:
                    self.per_op[str(func)] += n
        return out


def count_subnormals(fn) -> int:
    """Subnormal values in the outputs of the operations of one call of ``fn``."""
    with SubnormalCounter() as counter:
        fn()
    return sum(counter.per_op.values())


def random_batch_run(args) -> tuple[SubnormalCounter, object]:
    """Train on step_time's fixed random batch, counting; returns the counter and one more step."""
    from benchmarks.step_time import setup
    from vat_study.science.config import TrialConfig
    from vat_study.science.models import build_model
    from vat_study.science.train import adam, train_step

    torch.manual_seed(0)
    shape, n_l, n_ul, extra, dataset = setup("mlp")
    x_l, y_l, x_ul = torch.rand(n_l, *shape), torch.randint(0, 10, (n_l,)), torch.rand(n_ul, *shape)
    cfg = TrialConfig.from_mapping(dict(dataset=dataset, model="mlp", method=args.method, eps=1.0,
                                        precision=args.precision, **extra))
    model = build_model("mlp", shape, 10, **extra)
    opt = adam(cfg, model)
    counter = SubnormalCounter()
    for update in range(1, args.updates + 1):
        with counter:
            train_step(cfg, model, opt, x_l, y_l, x_ul)
        if update % args.every == 0:
            print(f"update {update}: subnormal outputs so far {dict(counter.per_op) or 0} "
                  f"of {counter.values:.3g} values", flush=True)
    return counter, lambda: train_step(cfg, model, opt, x_l, y_l, x_ul)


def mnist_run(args) -> tuple[SubnormalCounter, None]:
    """A real MNIST-100 trial (Appendix C settings, eps 5), counting."""
    from vat_study import run_trial

    cfg = {"task": {"dataset": "mnist", "data_root": args.data, "n_labeled": 100, "validation": 1000,
                    "model": "mlp", "noise_sigma": 0.5, "steps": args.updates, "eval_every": args.every,
                    "batch": {"labeled": 64, "unlabeled": 256}, "precision": args.precision,
                    "optimizer": {"name": "adam", "lr": 0.002, "decay": {"kind": "linear"}}},
           "method": {"name": args.method, "eps": 5.0}, "seed": 0}
    counter = SubnormalCounter()

    def report(step, metrics):
        print(f"update {step}: val_error {metrics['val_error']:.4f}; subnormal outputs so far "
              f"{dict(counter.per_op) or 0} of {counter.values:.3g} values", flush=True)

    with counter:
        run_trial(cfg, report=report)
    return counter, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="vat", choices=["baseline", "rpt", "vat"])
    ap.add_argument("--precision", default="float32", choices=["float32", "mixed", "mixed_delta"])
    ap.add_argument("--updates", type=int, default=1500)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--data", default=None, help="a data root with mnist/: a real MNIST-100 trial instead")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (random batch only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: the process's CPU time, for a machine shared with other work")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(False)  # count what arises (a trial flushes them: vat_study.science.subnormals)
    counter, step = mnist_run(args) if args.data else random_batch_run(args)
    total = sum(counter.per_op.values())
    print(f"per operation: {dict(counter.per_op) or 'none'}")
    if step is None:
        print(f"subnormal outputs: {total} in {args.updates} updates")
        return

    def flushing(on):
        def fn():
            torch.set_flush_denormal(on)
            return step()
        return fn

    med = interleaved_medians({"without flushing": flushing(False), "with flushing": flushing(True)}, args.rounds, 10,
                              clock=args.clock)
    torch.set_flush_denormal(False)
    print(", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
    print(f"subnormal outputs: {total} in {args.updates} updates; step with flushing = "
          f"{med['with flushing'] / med['without flushing']:.2f}x without")


if __name__ == "__main__":
    main()
