"""The hidden layers' Gaussian noise (Appendix C: SD 0.5 on the paper MLP's 1200-600-300-150 units):
what drawing it costs, and the levers, in one run, interleaved:

    draws of one [256, 1200] layer: torch in float32, torch in bfloat16 (what a layer under a
        bfloat16 autocast drew before), float32 rounded to bfloat16 (what it draws now:
        ``models.standard_normal_like``), numpy's PCG64 / SFC64 / Philox generators (float32)
    one draw for all four layers of a pass ([256, 2250]) against the first layer's alone
    our mixed_delta VAT step with the noise drawn as it is now against the bfloat16 draw
    with ``--compile``: h + 0.5 * randn_like(h) compiled (Inductor draws inside its kernel) against eager

    python -m benchmarks.noise [--rounds 7 --steps 20 --threads 1 --clock cpu]
    python -m benchmarks.noise --compile   # + a layer's noise added by torch.compile's generated code

The last line reads ``noise drawn in float32: step = N.NNx the bfloat16 draw``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks import interleaved_medians
from vat_study.science import models

LAYER, PASS = (256, 1200), (256, 1200 + 600 + 300 + 150)


def draws() -> dict:
    gens = {name: np.random.Generator(bitgen(0)) for name, bitgen in
            (("PCG64", np.random.PCG64), ("SFC64", np.random.SFC64), ("Philox", np.random.Philox))}
    buf = np.empty(LAYER, dtype=np.float32)
    out = {
        "torch float32": lambda: torch.randn(LAYER),
        "torch bfloat16": lambda: torch.randn(LAYER, dtype=torch.bfloat16),
        "torch float32 -> bfloat16": lambda: torch.randn(LAYER).bfloat16(),
        "all 4 layers of a pass, float32": lambda: torch.randn(PASS),
    }
    for name, g in gens.items():
        out[f"numpy {name} float32"] = lambda g=g: g.standard_normal(out=buf, dtype=np.float32)
    return out


def compiled() -> dict:
    """h + 0.5 * noise on a [256, 1200] layer, eager and compiled (its compilation timed first)."""
    import time

    def add_noise(h):
        return h + 0.5 * torch.randn_like(h)

    h, fn = torch.zeros(LAYER), torch.compile(add_noise, dynamic=False)
    t = time.perf_counter()
    fn(h)
    print(f"compiling h + 0.5 * randn_like(h): {time.perf_counter() - t:.1f} s", flush=True)
    return {"h + noise, eager": lambda: add_noise(h), "h + noise, compiled": lambda: fn(h)}


def steps() -> dict:
    """Our mixed_delta VAT step (benchmarks.step_time's setting), noise drawn now and drawn in bfloat16."""
    from benchmarks.step_time import setup
    from vat_study.science.config import TrialConfig
    from vat_study.science.train import adam, train_step

    shape, n_l, n_ul, extra, dataset = setup("mlp")
    x_l, y_l, x_ul = torch.rand(n_l, *shape), torch.randint(0, 10, (n_l,)), torch.rand(n_ul, *shape)
    now = models.standard_normal_like
    out = {}
    for name, draw in (("step, noise drawn in float32", now), ("step, noise drawn in bfloat16", torch.randn_like)):
        cfg = TrialConfig.from_mapping(dict(dataset=dataset, model="mlp", method="vat", eps=1.0,
                                            precision="mixed_delta", **extra))
        model = models.build_model("mlp", shape, 10, **extra)
        opt = adam(cfg, model)

        def step(cfg=cfg, model=model, opt=opt, draw=draw):
            models.standard_normal_like = draw
            try:
                return train_step(cfg, model, opt, x_l, y_l, x_ul)
            finally:
                models.standard_normal_like = now
        out[name] = step
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--compile", action="store_true", help="also the noise added by compiled code")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = draws()
    if args.compile:
        variants.update(compiled())
    med = interleaved_medians(variants, args.rounds, args.steps, clock=args.clock)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps}, "
          f"{args.clock} clock")
    for name, ms in med.items():
        size = PASS if name.startswith("all") else LAYER
        print(f"{name:<36} {ms:7.3f} ms  {ms * 1e6 / (size[0] * size[1]):6.2f} ns per value")
    step = interleaved_medians(steps(), args.rounds, max(args.steps // 4, 1), clock=args.clock)
    for name, ms in step.items():
        print(f"{name:<36} {ms:7.1f} ms")
    a, b = step["step, noise drawn in float32"], step["step, noise drawn in bfloat16"]
    print(f"noise drawn in float32: step = {a / b:.2f}x the bfloat16 draw")


if __name__ == "__main__":
    main()
