"""Can the power iteration run in bfloat16 without a finite difference? The Gauss-Newton product.

At r = 0 the Hessian of D(r) = KL(p(y|x) || p(y|x + r)) (Eq. 9) is exactly J^T (diag p - p p^T) J,
J the Jacobian of the logits in x: the term with the logits' own second derivatives is weighted by
softmax(z) - p, which is 0 at r = 0. So H d = J^T (diag p - p p^T) (J d) needs no xi: J d by one
forward-mode pass (``torch.autograd.forward_ad``), the product by one backward pass to the input.
Without the subtraction of Eq. 12 it might keep the direction in bfloat16, where the finite
difference loses it, and so let ``task.precision: mixed`` run its power iteration in bfloat16.

This benchmark measures both halves of that hope on the paper MLP (784-1200-600-300-150-10, BN,
noise off in the passes, 256 unlabeled images, one power iteration from one random start):

* the direction's cosine to the exact H d (double back-propagation in float64), mean and minimum
  over the images, for the finite difference at xi 1e-2 (float32, bfloat16) and the Gauss-Newton
  product (float32, bfloat16, and bfloat16 in the matrix products only);
* the time of the direction (clean pass + one iteration), interleaved round by round, as ratios
  to the float32 finite difference measured in the same run.

    python -m benchmarks.gauss_newton_bf16 [--rounds 5 --steps 20 --threads N]

Its last line reads ``gauss-newton bfloat16 = N.NNx float32 finite difference, cosine C``.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from benchmarks import interleaved_medians
from vat_study.science.models import build_model
from vat_study.science.passes import deterministic_layers, frozen_batch_stats
from vat_study.science.regularizers import random_unit_direction, virtual_adversarial_direction


def gauss_newton_hd(model, x, d, dtype=torch.float32):
    """H d = J^T (diag p - p p^T) J d at r = 0, with the network's products in ``dtype`` (its
    weights cast, as autocast casts them; autocast itself does not cast forward-mode tangents)."""
    xr = x.detach().requires_grad_(True)
    params = {k: v.detach().to(dtype) for k, v in model.named_parameters()}
    with frozen_batch_stats(model), fwAD.dual_level():
        out = torch.func.functional_call(model, params, (fwAD.make_dual(xr.to(dtype), d.to(dtype)),))
        z, jd = fwAD.unpack_dual(out)
    p = F.softmax(z.detach().float(), 1)
    jd = jd.float()
    v = p * jd - p * (p * jd).sum(1, keepdim=True)  # (diag p - p p^T) J d, per image
    (hd,) = torch.autograd.grad(z, xr, v.to(z.dtype))
    return hd.float()


def gauss_newton_hd_matmuls(model, x, d, dtype=torch.bfloat16):
    """The same product with only the matrix products in ``dtype`` and every elementwise step (BN,
    ReLU, the softmax) in float32: J d by a hand-written forward-mode pass through the paper MLP's
    layers (Linear, BN on the batch's statistics, ReLU; the noise is off), J^T v by autograd under
    a ``dtype`` autocast. Tells whether the products' rounding alone loses the direction."""
    h, th = x.flatten(1), d.flatten(1)
    with torch.no_grad():
        for layer in model.net:
            if isinstance(layer, torch.nn.Linear):  # primal and tangent as one product
                both = torch.cat([h, th]).to(dtype) @ layer.weight.detach().to(dtype).T
                h, th = both[: len(h)].float() + layer.bias.detach(), both[len(h):].float()
            elif isinstance(layer, torch.nn.BatchNorm1d):
                s = torch.rsqrt(h.var(0, unbiased=False) + layer.eps)
                xh = (h - h.mean(0)) * s
                th = (th - th.mean(0) - xh * (th * xh).mean(0)) * s * layer.weight.detach()
                h = xh * layer.weight.detach() + layer.bias.detach()
            elif isinstance(layer, torch.nn.ReLU):
                th = th * (h > 0)
                h = h.clamp_min(0)
    p = F.softmax(h, 1)
    v = p * th - p * (p * th).sum(1, keepdim=True)
    xr = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32), frozen_batch_stats(model):
        z = model(xr)
    (hd,) = torch.autograd.grad(z, xr, v.to(z.dtype))
    return hd.float()


def finite_difference(model, x, d, dtype=torch.float32):
    """One iteration of Eq. 12-13 at xi 1e-2 with its clean pass, under a bfloat16 autocast or none."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        return virtual_adversarial_direction(model, x, xi=1e-2, power_iterations=1, d0=d, deterministic=False)


def cosines(a, b):
    a, b = a.flatten(1).double(), b.flatten(1).double()
    c = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return float(c.mean()), float(c.min())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("mlp", [1, 28, 28], 10, noise_sigma=0.5).train()
    x = torch.rand(256, 1, 28, 28)
    d = random_unit_direction(x, torch.Generator().manual_seed(0))
    variants = {
        "finite difference float32": lambda: finite_difference(model, x, d),
        "finite difference bfloat16": lambda: finite_difference(model, x, d, torch.bfloat16),
        "gauss-newton float32": lambda: gauss_newton_hd(model, x, d),
        "gauss-newton bfloat16": lambda: gauss_newton_hd(model, x, d, torch.bfloat16),
        "gauss-newton bf16 products": lambda: gauss_newton_hd_matmuls(model, x, d),
    }
    with deterministic_layers(model):
        m64 = copy.deepcopy(model).double()
        with deterministic_layers(m64):
            exact = virtual_adversarial_direction(m64, x.double(), power_iterations=1, method="hvp", d0=d.double())
        cos = {k: cosines(fn(), exact) for k, fn in variants.items()}
        med = interleaved_medians(variants, args.rounds, args.steps)
    ref = med["finite difference float32"]
    print(f"paper MLP, 256 images, one power iteration; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {args.rounds} rounds x {args.steps}")
    print(f"{'direction':<28} {'ms':>6} {'vs fd float32':>14} {'cos mean':>9} {'cos min':>8}")
    for name, ms in med.items():
        print(f"{name:<28} {ms:6.1f} {ms / ref:13.2f}x {cos[name][0]:9.4f} {cos[name][1]:8.4f}")
    gn = med["gauss-newton bfloat16"]
    print(f"gauss-newton bfloat16 = {gn / ref:.2f}x float32 finite difference, cosine {cos['gauss-newton bfloat16'][0]:.4f}")


if __name__ == "__main__":
    main()
