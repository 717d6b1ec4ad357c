"""Which mode should the power iteration's passes run in? The cosine between the direction d that
one power iteration (Eq. 12) produces under each pass mode and the dominant eigenvector u of H
(Eq. 9-10; 50 exact Hessian-vector power iterations of the deterministic train-mode network: BN on
the batch's statistics, noise off), on the paper's semi-supervised MNIST MLP (1200-600-300-150,
BN, Gaussian noise 0.5 on the hidden activations) trained with VAT for a few hundred updates.

Modes (``methods.Implementation``): the clean target's pass and the power iteration's passes each
with the stochastic layers on ("noisy") or off ("clean"). The anchors' code (vat_tf, vat_chainer,
VAT-pytorch, USB) runs both noisy: each pass draws its own noise.

    python -m benchmarks.pass_mode_fidelity            # ~1 min on a 2-core CPU; needs MNIST
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vat_study.science.objective import load_trained, run_trial
from vat_study.science.passes import frozen_batch_stats, regularizer_pass
from vat_study.science.regularizers import random_unit_direction, virtual_adversarial_direction


def cosines(model, x, *, xi: float, clean_noisy: bool, pi_noisy: bool, seed: int = 0) -> float:
    """Mean |cos(d, u)| over x for one power iteration from the same random start."""
    gen = torch.Generator().manual_seed(seed)
    d0 = random_unit_direction(x, gen)
    model.train()
    with frozen_batch_stats(model):
        with regularizer_pass(model, stochastic=False):  # u: the deterministic network's H
            u = virtual_adversarial_direction(model, x, power_iterations=50, method="hvp",
                                              generator=torch.Generator().manual_seed(seed + 1),
                                              deterministic=False)
        with regularizer_pass(model, stochastic=clean_noisy), torch.no_grad():
            logits = model(x)
        with regularizer_pass(model, stochastic=pi_noisy):
            same = clean_noisy == pi_noisy
            d = virtual_adversarial_direction(model, x, logits if same else None, d0=d0, xi=xi,
                                              power_iterations=1, deterministic=False)
    return float((d.flatten(1) * u.flatten(1)).sum(1).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300, help="VAT updates before measuring")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        cfg = {"task": {"dataset": "mnist", "mode": "semi_supervised", "n_labeled": 100, "validation": 1000,
                        "model": "mlp", "noise_sigma": 0.5, "steps": args.steps, "eval_every": args.steps,
                        "batch": {"labeled": 64, "unlabeled": 256},
                        "optimizer": {"name": "adam", "lr": 0.002, "decay": {"kind": "linear"}},
                        **({"data_root": args.data_root} if args.data_root else {})},
               "method": {"name": "vat", "eps": 5.0, "xi": 1e-6}, "seed": 0, "model_path": str(path)}
        out = run_trial(cfg)
        model, prepared = load_trained(cfg)
    ds = prepared.dataset
    x = ds.x_train[torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(3))[:256]]
    print(f"paper MLP after {args.steps} VAT updates (eps 5, xi 1e-6; val error {out['val_error']:.4f}); "
          f"256 unlabeled MNIST images; mean |cos(d, u)|, u = dominant eigenvector of the noise-off H")
    print(f"{'clean pass':>11} {'power it.':>10} {'xi=1e-6':>8} {'xi=1e-2':>8} {'xi=1':>8}")
    for clean_noisy, pi_noisy in ((False, False), (True, False), (False, True), (True, True)):
        row = [cosines(model, x, xi=xi, clean_noisy=clean_noisy, pi_noisy=pi_noisy) for xi in (1e-6, 1e-2, 1.0)]
        name = lambda b: "noisy" if b else "clean"  # noqa: E731
        print(f"{name(clean_noisy):>11} {name(pi_noisy):>10} " + " ".join(f"{c:8.4f}" for c in row))
    print(f"random direction (baseline): {float((random_unit_direction(x, torch.Generator().manual_seed(9)).flatten(1) * random_unit_direction(x, torch.Generator().manual_seed(8)).flatten(1)).sum(1).abs().mean()):.4f}")


if __name__ == "__main__":
    main()
