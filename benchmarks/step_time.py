"""Step time of one update, semi-supervised MNIST MLP config (Appendix C), side by side:

    ours baseline / ours RPT / ours VAT (vat_study.train.train_step and train.adam: the code
        and the optimizer training runs, i.e. Adam's fused kernel)
    minimal VAT: a ~30-line VAT step of the kind found in popular ports (below), default Adam:
        the reference
    minimal + fused Adam: the same with Adam's fused kernel, to show how much of the difference
        is the optimizer and how much the VAT step itself

MLP 784-1200-600-300-150-10 with BN and Gaussian noise 0.5, batches 64 labeled / 256 unlabeled,
Adam, float32, on random MNIST-shaped data (timing does not depend on the pixel values). Variants
are interleaved round by round so drift of the machine hits all alike; the median per round is
reported, and ratios are taken against the minimal VAT step measured in the same run.

    python -m benchmarks.step_time [--rounds 7 --steps 20 --threads N]
    python -m benchmarks.step_time --model conv_small_svhn --rounds 3 --steps 3   # Table 7, 32/128 batches
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from vat_study.config import TrialConfig
from vat_study.models import build_model
from vat_study.train import adam, train_step


def minimal_vat_step(model, opt, x_l, y_l, x_ul, eps=1.0, xi=1e-2, alpha=1.0):
    """A minimal VAT step (Algorithm 1, K = 1): the reference we must not be slower than."""
    logits = model(x_l)
    nll = F.cross_entropy(logits, y_l)
    with torch.no_grad():
        p = F.softmax(model(x_ul), dim=1)  # clean target
    d = torch.randn_like(x_ul)
    d = d / d.flatten(1).norm(dim=1).view(-1, *[1] * (d.dim() - 1))
    d.requires_grad_(True)
    q = F.log_softmax(model(x_ul + xi * d), dim=1)
    adv = F.kl_div(q, p, reduction="batchmean")
    (g,) = torch.autograd.grad(adv, d)
    r = eps * g / (g.flatten(1).norm(dim=1).view(-1, *[1] * (g.dim() - 1)) + 1e-12)
    q = F.log_softmax(model(x_ul + r.detach()), dim=1)
    lds = F.kl_div(q, p, reduction="batchmean")
    loss = nll + alpha * lds
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default="mlp", choices=["mlp", "conv_small_svhn", "conv_small_cifar10", "conv_large"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "mlp":  # Appendix C: MNIST, 64 labeled / 256 unlabeled, noise 0.5
        shape, n_l, n_ul, extra, dataset = [1, 28, 28], 64, 256, dict(noise_sigma=0.5), "mnist"
    else:  # Appendix D: 32x32 RGB, 32 labeled / 128 unlabeled, dropout 0.5 inside the model
        shape, n_l, n_ul, extra, dataset = [3, 32, 32], 32, 128, {}, "svhn"
    x_l, y_l = torch.rand(n_l, *shape), torch.randint(0, 10, (n_l,))
    x_ul = torch.rand(n_ul, *shape)

    def ours(method):
        cfg = TrialConfig.from_mapping(dict(dataset=dataset, model=args.model, method=method, eps=1.0, **extra))
        model = build_model(args.model, shape, 10, **extra)
        opt = adam(cfg, model)  # the optimizer training uses
        return lambda: train_step(cfg, model, opt, x_l, y_l, x_ul)

    ref_model = build_model(args.model, shape, 10, **extra)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    fused_model = build_model(args.model, shape, 10, **extra)
    fused_opt = torch.optim.Adam(fused_model.parameters(), lr=1e-3, fused=True)
    variants = {
        "ours baseline": ours("baseline"),
        "ours RPT (K=0)": ours("rpt"),
        "ours VAT (K=1)": ours("vat"),
        "minimal VAT (K=1)": lambda: minimal_vat_step(ref_model, ref_opt, x_l, y_l, x_ul),
        "minimal + fused Adam": lambda: minimal_vat_step(fused_model, fused_opt, x_l, y_l, x_ul),
    }
    for fn in variants.values():  # warm-up
        for _ in range(3):
            fn()
    per_round = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            per_round[name].append((time.perf_counter() - t) / args.steps * 1000)
    ref = statistics.median(per_round["minimal VAT (K=1)"])
    base = statistics.median(per_round["ours baseline"])
    print(f"{args.model}, batches {n_l}/{n_ul}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':<22} {'ms/step':>8} {'vs minimal VAT':>15} {'vs baseline':>12}")
    for name, times in per_round.items():
        med = statistics.median(times)
        print(f"{name:<22} {med:8.1f} {med / ref:14.2f}x {med / base:11.2f}x")


if __name__ == "__main__":
    main()
