"""Step time of one update, semi-supervised MNIST MLP config (Appendix C), side by side:

    ours baseline / ours RPT / ours VAT (vat_study.science.train.train_step and train.adam: the code
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
    python -m benchmarks.step_time --precision bfloat16   # or mixed: task.precision, beside float32

With ``--precision``, the same run also times our VAT and RPT steps and the minimal VAT step in that
precision (torch.autocast in bfloat16; mixed: our power iteration in float32), measures the matrix
products' floor on the spot (the MLP's layer products at the step's batch, float32 and bfloat16;
the MLP only), and the cosine of the power iteration's direction to the exact H d in each
precision (``probes.hd_cosine``, xi 1e-2). Our VAT step in bfloat16, which ``task.precision``
refuses (the direction is lost), is timed as the same passes under an outer autocast. The last line
reads ``bf16 step = N.NNx float32 step`` (our VAT step in that precision over ours in float32).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from benchmarks import interleaved_medians
from vat_study.science.config import TrialConfig
from vat_study.science.models import build_model
from vat_study.science.probes import hd_cosine
from vat_study.science.train import adam, train_step


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
    ap.add_argument("--precision", default=None, choices=["bfloat16", "mixed"],
                    help="also time the steps in this task.precision, beside float32")
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

    def ours(method, precision="float32"):
        outer = precision == "bfloat16" and method == "vat"  # refused by the config: the same passes, timed
        cfg = TrialConfig.from_mapping(dict(dataset=dataset, model=args.model, method=method, eps=1.0,
                                            precision="float32" if outer else precision, **extra))
        model = build_model(args.model, shape, 10, **extra)
        opt = adam(cfg, model)  # the optimizer training uses
        if outer:
            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return train_step(cfg, model, opt, x_l, y_l, x_ul)
            return step
        return lambda: train_step(cfg, model, opt, x_l, y_l, x_ul)

    def in_bf16(fn):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn()
        return step

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
    if args.precision:
        p = args.precision
        bf_model = build_model(args.model, shape, 10, **extra)
        bf_opt = torch.optim.Adam(bf_model.parameters(), lr=1e-3)
        variants.update({
            f"ours RPT {p}": ours("rpt", p),
            f"ours VAT {p}": ours("vat", p),
            "minimal VAT bfloat16": in_bf16(lambda: minimal_vat_step(bf_model, bf_opt, x_l, y_l, x_ul)),
        })
    med = interleaved_medians(variants, args.rounds, args.steps)
    ref, base = med["minimal VAT (K=1)"], med["ours baseline"]
    print(f"{args.model}, batches {n_l}/{n_ul}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':<22} {'ms/step':>8} {'vs minimal VAT':>15} {'vs baseline':>12}")
    for name, ms in med.items():
        print(f"{name:<22} {ms:8.1f} {ms / ref:14.2f}x {ms / base:11.2f}x")
    if args.precision:
        p = args.precision
        ours32, ours_p = med["ours VAT (K=1)"], med[f"ours VAT {p}"]
        if args.model == "mlp":
            floor32, floor16 = matmul_floor(n_ul)
            # mixed: the power iteration (512 of the 1,728 sample-passes) and its clean pass (256) in float32
            floor_p = floor16 if p == "bfloat16" else floor16 * (1728 - 768) / 1728 + floor32 * 768 / 1728
            print(f"matmul floor of a VAT update (6.5 GFLOP, measured now): float32 {floor32:.1f} ms, "
                  f"bfloat16 {floor16:.1f} ms, {p} {floor_p:.1f} ms; ours VAT {p} = {ours_p / floor_p:.2f}x its "
                  f"floor, {ours_p / floor16:.2f}x the bfloat16 floor")
        torch.manual_seed(0)
        model = build_model(args.model, shape, 10, **extra)
        with torch.no_grad():
            model.train()
            model(x_ul)
        cos = {q: hd_cosine(model, x_ul[:128], xi=1e-2, precision=q) for q in ("float32", "bfloat16", "mixed")}
        print("cosine of the direction to the exact H d at xi 1e-2 (random images, fresh network): "
              + ", ".join(f"{q} {v:.4f}" for q, v in cos.items()))
        other = {xi: hd_cosine(model, x_ul[:128], xi=xi, precision="bfloat16") for xi in (1e-6, 1e-1, 1.0, 3.0)}
        print("bfloat16 at other xi: " + ", ".join(f"xi {xi:g} {v:.4f}" for xi, v in other.items()))
        print(f"bf16 step = {ours_p / ours32:.2f}x float32 step  (ours VAT, {p}: {ours_p:.1f} ms vs {ours32:.1f} ms)")


def matmul_floor(batch: int, repeats: int = 30) -> tuple[float, float]:
    """(float32, bfloat16) ms of the matrix products of one VAT update of the paper MLP at the
    rates measured now: each layer's product [batch, in] x [in, out] timed in both dtypes, scaled
    to the update's 1,728 sample-passes (64 labeled x 3, clean 256, power iteration 256 x 2, LDS
    256 x 3: a backward is two products)."""
    widths = [784, 1200, 600, 300, 150, 10]
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        ms = 0.0
        for a, b in zip(widths, widths[1:]):
            x, w = torch.rand(batch, a, dtype=dtype), torch.rand(a, b, dtype=dtype)
            for _ in range(3):
                x @ w
            t = time.perf_counter()
            for _ in range(repeats):
                x @ w
            ms += (time.perf_counter() - t) / repeats * 1000 * 1728 / batch
        out.append(ms)
    return out[0], out[1]


if __name__ == "__main__":
    main()
