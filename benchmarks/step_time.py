"""Step time of one update in every ``task.precision``, against the matrix products' floor measured
on the spot, semi-supervised MNIST MLP config (Appendix C), in one run:

    the CPU's matrix-engine flags (AMX, AVX-512 BF16 / FP16, VNNI) and whether subnormals are flushed
    the floor: the update's matrix products alone, each layer's product at the step's batch timed
        in float32 and in bfloat16 (interleaved), scaled to the update's sample-passes; the floor
        of each precision mixes them as its passes do
    ours baseline / RPT / VAT (vat_study.science.train.train_step with train.adam: the code training runs)
        in float32; baseline and RPT in bfloat16; VAT in mixed and in mixed_delta
    minimal VAT: a ~30-line VAT step of the kind found in popular ports (below), default Adam, in
        float32 and under a bfloat16 autocast: the reference
    with ``--compile``: our mixed VAT and bfloat16 RPT steps with the model under ``torch.compile``
        (mixed_delta records an eager model's products), the warm-up (the compilation) apart
    the cosine of one power iteration's direction to the exact H d at the xi in use, per precision
        (``probes.hd_cosine``): a setting is faithful at >= 0.99
    subnormal outputs in one more step of each variant (``benchmarks.subnormals``)

MLP 784-1200-600-300-150-10 with BN and Gaussian noise 0.5, batches 64 labeled / 256 unlabeled,
Adam, on random MNIST-shaped data (timing does not depend on the pixel values). Variants are
interleaved round by round so drift of the machine hits all alike, the products of the floor
among them; the median over the rounds is reported, and every ratio is the median of the rounds'
own ratios. Subnormals are flushed as training flushes them (``vat_study.science.subnormals``; a fixed batch
of random images is where an Intel CPU met them), unless ``--keep-subnormals``.

    python -m benchmarks.step_time [--rounds 15 --steps 5 --threads N --xi 1e-2 --compile]
    python -m benchmarks.step_time --model conv_small_svhn --rounds 3 --steps 3   # Table 7, 32/128 batches
    python -m benchmarks.step_time --threads 1 --clock cpu   # a shared machine: CPU time, not elapsed
    python -m benchmarks.step_time --cosines-only --cosine-xi 1e-6 1e-5 1e-4 1e-3 1e-1 1   # the cosines alone

The last line reads ``bf16 step = N.NNx float32 step, M.MMx its bf16 floor``: the fastest faithful
bfloat16 setting's VAT step over our float32 VAT step, and over the update's floor with every
product in bfloat16.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import interleaved_rounds, median_ratio
from benchmarks.subnormals import count_subnormals
from vat_study.science.config import TrialConfig
from vat_study.science.models import build_model
from vat_study.science.probes import hd_cosine
from vat_study.science.train import adam, train_step

ENGINE_FLAGS = ("amx_bf16", "amx_fp16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni")
FAITHFUL = 0.99
PASSES = {"labeled": 3, "clean": 1, "power": 2, "lds": 3}
"""Products per sample of one VAT update, per pass: forward 1, a backward 2 (input and weight
gradients; the power iteration needs the input's only)."""
FLOAT32_PASSES = {"float32": set(PASSES), "bfloat16": set(), "mixed": {"clean", "power"}, "mixed_delta": {"clean"}}


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


def engine_flags() -> str:
    """The CPU's model and its matrix-engine flags as /proc/cpuinfo lists them."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in ENGINE_FLAGS if f in flags]
    amx = "AMX" if any(f.startswith("amx") for f in have) else "no AMX"
    return f"{model}; matrix-engine flags: {' '.join(have) or 'none'} ({amx})"


def product_shapes(model, x) -> list[tuple]:
    """(function, activation shape, weight, keyword arguments) of every Linear / Conv2d layer in one
    forward pass on ``x``."""
    out = []

    def hook(m, inp, _out):
        if isinstance(m, torch.nn.Linear):
            out.append((F.linear, inp[0].shape, m.weight.detach(), {}))
        elif isinstance(m, torch.nn.Conv2d):
            out.append((F.conv2d, inp[0].shape, m.weight.detach(), dict(stride=m.stride, padding=m.padding)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def product_variants(model, x_ul) -> tuple[dict, float]:
    """Two more variants for the rounds: every Linear / Conv2d layer's forward product at the
    unlabeled batch, once in float32 and once in bfloat16; and the GFLOP of one such call."""
    shapes = product_shapes(model, x_ul)
    out = {}
    for dtype, name in ((torch.float32, "products float32"), (torch.bfloat16, "products bfloat16")):
        args = [(fn, torch.rand(shape, dtype=dtype), w.to(dtype), kw) for fn, shape, w, kw in shapes]
        out[name] = lambda args=args: [fn(a, w, **kw) for fn, a, w, kw in args]
    flop = sum(2 * w.numel() * (shape[0] if fn is F.linear else _positions(fn, shape, w, kw))
               for fn, shape, w, kw in shapes)
    return out, flop / 1e9


def floors(rounds: dict[str, list[float]], n_l: int, b: int) -> dict[str, list[float]]:
    """ms of the products of one VAT update in each round, per precision: the round's product
    times scaled to the update's sample-passes (``PASSES``; a backward product costs a forward
    one), each pass in the dtype its precision gives it (``FLOAT32_PASSES``)."""
    samples = {"labeled": n_l * PASSES["labeled"], "clean": b, "power": b * PASSES["power"], "lds": b * PASSES["lds"]}
    out = {}
    for precision, in32 in FLOAT32_PASSES.items():
        w32 = sum(n for p, n in samples.items() if p in in32) / b
        w16 = sum(n for p, n in samples.items() if p not in in32) / b
        out[precision] = [t32 * w32 + t16 * w16 for t32, t16 in zip(rounds["products float32"],
                                                                     rounds["products bfloat16"])]
    return out


def _positions(fn, shape, w, kw) -> int:
    with torch.no_grad():
        y = fn(torch.zeros(1, *shape[1:]), w.float(), **kw)
    return shape[0] * y[0, 0].numel()


def setup(model_name: str):
    """The benchmark's data and model settings: (input shape, batches, model settings, dataset)."""
    if model_name == "mlp":  # Appendix C: MNIST, 64 labeled / 256 unlabeled, noise 0.5
        return [1, 28, 28], 64, 256, dict(noise_sigma=0.5), "mnist"
    return [3, 32, 32], 32, 128, {}, "svhn"  # Appendix D: 32/128, dropout 0.5 inside the model


def variants(args, shape, x_l, y_l, x_ul, extra, dataset) -> dict:
    """{name: one step} for every variant."""
    steps = {}

    def ours(name, method, precision="float32", compiled=False):
        cfg = TrialConfig.from_mapping(dict(dataset=dataset, model=args.model, method=method, eps=1.0, xi=args.xi,
                                            precision=precision, **extra))
        model = build_model(args.model, shape, 10, **extra)
        opt = adam(cfg, model)  # the optimizer training uses
        net = torch.compile(model, dynamic=False) if compiled else model
        steps[name] = lambda: train_step(cfg, net, opt, x_l, y_l, x_ul)

    def minimal(name, bf16=False, fused=False):
        model = build_model(args.model, shape, 10, **extra)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

        def step():
            with autocast:
                return minimal_vat_step(model, opt, x_l, y_l, x_ul, xi=args.xi)
        steps[name] = step

    ours("ours baseline float32", "baseline")
    ours("ours RPT float32", "rpt")
    ours("ours VAT float32", "vat")
    minimal("minimal VAT float32")
    minimal("minimal + fused Adam", fused=True)
    ours("ours baseline bfloat16", "baseline", "bfloat16")
    ours("ours RPT bfloat16", "rpt", "bfloat16")
    ours("ours VAT mixed", "vat", "mixed")
    ours("ours VAT mixed_delta", "vat", "mixed_delta")
    minimal("minimal VAT bfloat16", bf16=True)
    if args.compile:  # mixed_delta's difference pass needs an eager model (vat_study.science.difference)
        ours("ours VAT mixed compiled", "vat", "mixed", compiled=True)
        ours("ours RPT bfloat16 compiled", "rpt", "bfloat16", compiled=True)
    return steps


def warm_up(steps: dict, n: int = 3) -> dict[str, float]:
    """Seconds of each variant's first ``n`` steps (a compiled one compiles there)."""
    out = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out[name] = time.perf_counter() - t
    return out


def cosines(model_name, shape, extra, x, xi) -> dict[str, float]:
    """cos of one power iteration to the exact H d at ``xi``, per precision (fresh network, its
    running statistics those of the images)."""
    torch.manual_seed(0)
    model = build_model(model_name, shape, 10, **extra)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        model.train()
        model(x)
    return {p: hd_cosine(model, x, xi=xi, precision=p) for p in ("float32", "mixed", "mixed_delta", "bfloat16")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default="mlp", choices=["mlp", "conv_small_svhn", "conv_small_cifar10", "conv_large"])
    ap.add_argument("--xi", type=float, default=1e-2, help="the finite-difference step in use (method.xi)")
    ap.add_argument("--cosine-xi", type=float, nargs="*", default=[],
                    help="more xi values to print the cosines at (the steps run at --xi)")
    ap.add_argument("--cosines-only", action="store_true", help="print the cosines at --xi and --cosine-xi, time nothing")
    ap.add_argument("--compile", action="store_true", help="also our mixed VAT and bfloat16 RPT steps compiled")
    ap.add_argument("--keep-subnormals", action="store_true", help="do not flush subnormals (FTZ / DAZ)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: the process's CPU time, for a machine shared with other work (use --threads 1)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flushed = False if args.keep_subnormals else torch.set_flush_denormal(True)
    if args.compile:
        import torch._inductor.config as inductor

        inductor.fallback_random = True  # the noise from the same generator as eager (compiled draws are slower)
    torch.manual_seed(0)
    shape, n_l, n_ul, extra, dataset = setup(args.model)
    x_l, y_l, x_ul = torch.rand(n_l, *shape), torch.randint(0, 10, (n_l,)), torch.rand(n_ul, *shape)
    for xi in ([args.xi] if args.cosines_only else []) + args.cosine_xi:
        print(f"{args.model}, cosine to the exact H d at xi {xi:g}: "
              + ", ".join(f"{p} {v:.4f}" for p, v in cosines(args.model, shape, extra, x_ul[:128], xi).items()),
              flush=True)
    if args.cosines_only:
        return
    steps = variants(args, shape, x_l, y_l, x_ul, extra, dataset)
    products, gflop = product_variants(build_model(args.model, shape, 10, **extra), x_ul)
    warm = warm_up(steps)
    rounds = interleaved_rounds({**steps, **products}, args.rounds, args.steps, warmup=1, clock=args.clock)
    floor = floors(rounds, n_l, n_ul)
    rates = {k: gflop / statistics.median(rounds[f"products {k}"]) * 1e3 for k in ("float32", "bfloat16")}
    cos = cosines(args.model, shape, extra, x_ul[:128], args.xi)
    subnormal = {name: count_subnormals(fn) for name, fn in steps.items()}
    report(args, {k: rounds[k] for k in steps}, warm, floor, rates, cos, subnormal, flushed, (n_l, n_ul))


def report(args, rounds, warm, floor, rates, cos, subnormal, flushed, batches) -> None:
    """The table (medians over the rounds; every ratio the median of the rounds' own ratios) and
    the last line."""
    med = {k: statistics.median(v) for k, v in rounds.items()}
    print(f"{args.model}, batches {batches[0]}/{batches[1]}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {args.rounds} rounds x {args.steps} steps, {args.clock} clock; GPU: not measured by this run")
    print(f"CPU: {engine_flags()}; subnormals flushed (FTZ/DAZ): {'yes' if flushed else 'no'}")
    print(f"matmul at the step's shapes: float32 {rates['float32']:.0f} GFLOP/s, bfloat16 {rates['bfloat16']:.0f} "
          "GFLOP/s; floor of a VAT update: " + ", ".join(f"{p} {statistics.median(v):.1f} ms" for p, v in floor.items()))
    ref = rounds["minimal VAT float32"]
    print(f"{'variant':<31} {'ms/step':>8} {'vs minimal':>10} {'vs floor':>9} {'warm-up s':>9} {'subnormal':>9}")
    for name, ms in med.items():
        precision = next((p for p in ("mixed_delta", "mixed", "bfloat16", "float32") if p in name), "float32")
        print(f"{name:<31} {ms:8.1f} {median_ratio(rounds[name], ref):9.2f}x "
              f"{median_ratio(rounds[name], floor[precision]):8.2f}x {warm[name]:9.1f} {subnormal[name]:9d}")
    print("(vs floor: against the floor of the variant's own precision; warm-up: its first 3 steps, wall clock)")
    print(f"cosine of the direction to the exact H d at xi {args.xi:g} (faithful >= {FAITHFUL}): "
          + ", ".join(f"{p} {v:.4f}" for p, v in cos.items()))
    fast = [n for n in med if n.startswith("ours VAT") and "float32" not in n
            and cos["mixed_delta" if "mixed_delta" in n else "mixed"] >= FAITHFUL]  # a compiled one: as its precision
    if not fast:
        print(f"no bfloat16 setting keeps the direction at xi {args.xi:g}: "
              + ", ".join(f"{p} {v:.4f}" for p, v in cos.items() if p != "float32"))
        return
    best, ours32 = min(fast, key=med.get), rounds["ours VAT float32"]
    print(f"fastest faithful: {best} ({med[best]:.1f} ms; ours VAT float32 {statistics.median(ours32):.1f} ms; "
          f"bfloat16 floor {statistics.median(floor['bfloat16']):.1f} ms, float32 floor "
          f"{statistics.median(floor['float32']):.1f} ms: {median_ratio(floor['bfloat16'], floor['float32']):.2f}x)")
    print(f"bf16 step = {median_ratio(rounds[best], ours32):.2f}x float32 step, "
          f"{median_ratio(rounds[best], floor['bfloat16']):.2f}x its bf16 floor")


if __name__ == "__main__":
    main()
