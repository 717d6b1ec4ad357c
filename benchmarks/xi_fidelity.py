"""How faithful is the finite-difference H d (Eq. 12) for a given xi, in float32 and float64?

For one power iteration from the same random d, prints the mean per-sample cosine between the
finite-difference direction and the exact H d (double back-propagation, computed in float64),
on a 784-1200-600-300-150-10 MLP with BN (train-mode batch statistics, as in training), untrained
and after 600 supervised Adam steps. Inputs: Fashion-MNIST if the Debian package is installed,
else uniform noise in [0, 1] of the same shape (random labels).

    python -m benchmarks.xi_fidelity            # ~30 s on a 2-core CPU
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vat_study.science.data import DataError, load_dataset
from vat_study.science.models import build_model
from vat_study.science.regularizers import (
    frozen_batch_stats,
    kl_divergence,
    random_unit_direction,
    unit_vector,
)


def exact_hd(model, x, d):
    """H d at r = 0 by double backprop, per sample (sum over the batch keeps samples separate
    up to the BN coupling that is part of the function)."""
    with torch.no_grad():
        p = model(x)
    r = torch.zeros_like(x, requires_grad=True)
    (g,) = torch.autograd.grad(kl_divergence(p, model(x + r)).sum(), r, create_graph=True)
    (hd,) = torch.autograd.grad((g * d).sum(), r)
    return hd


def fd_direction(model, x, d, xi):
    with torch.no_grad():
        p = model(x)
    r = (xi * d).requires_grad_(True)
    (g,) = torch.autograd.grad(kl_divergence(p, model(x + r)).sum(), r)
    return unit_vector(g)


def main() -> None:
    torch.manual_seed(0)
    try:
        ds = load_dataset("fashion_mnist")
        x_all, y_all = ds.x_train[:10000].flatten(1), ds.y_train[:10000]
        source = "Fashion-MNIST"
    except DataError:
        x_all, y_all = torch.rand(10000, 784), torch.randint(0, 10, (10000,))
        source = "uniform noise"
    x = x_all[:256]
    model = build_model("mlp", [784], 10).train()
    report(model, x, f"untrained MNIST MLP, {len(x)} {source} images")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(600):
        i = torch.randint(0, len(x_all), (100,))
        loss = F.cross_entropy(model(x_all[i]), y_all[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    report(model, x, "the same MLP after 600 Adam steps (batch 100, lr 2e-3)")


def report(model, x, title: str) -> None:
    d = random_unit_direction(x)
    m64 = copy.deepcopy(model).double()
    with frozen_batch_stats(m64):
        ref = unit_vector(exact_hd(m64, x.double(), d.double()))
    print(f"\n{title}: mean cosine to the exact H d (float64 reference)")
    print(f"{'setting':>22} {'float32':>9} {'float64':>9}")
    rows = [("xi=1e-6 (paper)", 1e-6), ("xi=1e-4", 1e-4), ("xi=1e-3", 1e-3), ("xi=1e-2 (default)", 1e-2),
            ("xi=1e-1", 1e-1), ("xi=1", 1.0), ("xi=10", 10.0), ("hvp (exact)", None)]
    for name, xi in rows:
        cos = []
        for m, xx, dd in ((model, x, d), (m64, x.double(), d.double())):
            with frozen_batch_stats(m):
                v = unit_vector(exact_hd(m, xx, dd)) if xi is None else fd_direction(m, xx, dd, xi)
            cos.append(float((v.double() * ref).sum(1).mean()))
        print(f"{name:>22} {cos[0]:9.4f} {cos[1]:9.4f}")


if __name__ == "__main__":
    main()
