"""A plain VAT loop for semi-supervised MNIST (Appendix C), independent of the platform: the
reference that vat-study's trainer is checked against (docs/science.md, "Our trainer against a
plain loop").

Written from the paper (Eq. 5, 7, 8, 12, 13, Appendix C) and the way the anchors' PyTorch code
computes the loss (VAT-pytorch: the clean prediction in a no-grad pass, the power iteration and
the perturbed pass with BN's running statistics left alone, KL averaged over the batch). It
imports torch and numpy only, so that a difference in vat-study's trainer cannot hide in both.

Every difference from vat-study's trainer that was suspected of mattering is a flag, so the loop
can be moved toward ours one difference at a time (``--like-ours`` sets them all to ours):

    --bn-update     which passes update BN running statistics: labeled+clean (the clean no-grad
                    pass over the unlabeled batch too, as VAT-pytorch and the official code) or
                    labeled (ours: the labeled pass only)
    --labeled       the labeled images: random (the first N_l of a permutation) or balanced
                    (N_l / 10 per class, ours)
    --pool          the regularizer's pool: all (every non-validation image, the labeled ones
                    included, Appendix C and ours) or unlabeled (the labeled images left out)
    --batches       how batches are drawn: epoch (a fresh permutation per pass over a pool, ours)
                    or replacement (each batch drawn uniformly with replacement)
    --d0            the power iteration's start: uniform (VAT-pytorch: U(-0.5, 0.5), normalized)
                    or gaussian (normalized, ours)
    --order         reg-first (VAT-pytorch's example: R before the labeled pass) or labeled-first (ours)
    --eval-bn       running (training's running statistics) or recompute (re-estimated over the pool
                    with the noise off, as vat-study's task.eval_bn: recompute)
    --pi-noise      on (ours and the anchors': the noise in the power iteration's passes) or off

    python scripts/plain_vat_mnist.py --data ../mnist --seed 0                  # the reference
    python scripts/plain_vat_mnist.py --data ../mnist --seed 0 --bn-update labeled
    python scripts/plain_vat_mnist.py --data ../mnist --seed 0 --like-ours      # ours, in this loop
    python scripts/plain_vat_mnist.py --data ../mnist --seed 0 --like-ours --bn-update labeled+clean

Each run appends one JSON line (settings, final test and validation error, wall time) to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OURS = {"bn_update": "labeled", "labeled": "balanced", "pool": "all", "batches": "epoch", "d0": "gaussian",
        "order": "labeled-first"}


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    def find(stem: str) -> Path:
        for p in (root / stem, root / f"{stem}.gz", root / "mnist" / stem, root / "mnist" / f"{stem}.gz"):
            if p.is_file():
                return p
        raise SystemExit(f"--data: {stem}[.gz] not found under {root}")
    x = lambda s: torch.from_numpy(read_idx(find(s)).astype(np.float32) / 255.0).view(-1, 784)  # noqa: E731
    y = lambda s: torch.from_numpy(read_idx(find(s)).astype(np.int64))  # noqa: E731
    return (x("train-images-idx3-ubyte"), y("train-labels-idx1-ubyte"),
            x("t10k-images-idx3-ubyte"), y("t10k-labels-idx1-ubyte"))


def split(y: torch.Tensor, seed: int, n_labeled: int, n_val: int, labeled: str, pool: str):
    """Validation, labeled and regularizer-pool indices for ``seed``."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    val, rest = perm[:n_val], perm[n_val:]
    if labeled == "balanced":  # N_l / 10 per class, the remainder to random classes
        per = np.full(10, n_labeled // 10)
        per[rng.choice(10, n_labeled % 10, replace=False)] += 1
        yr = y.numpy()[rest]
        lab = np.sort(np.concatenate([rest[yr == c][:per[c]] for c in range(10)]))
    else:
        lab = np.sort(rest[:n_labeled])
    reg = np.sort(rest) if pool == "all" else np.sort(np.setdiff1d(rest, lab))
    t = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return t(val), t(lab), t(reg)


class Noise(nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.sigma * torch.randn_like(h) if self.training else h


def mlp(noise: float) -> nn.Sequential:
    """784-1200-600-300-150-10, Linear -> BN -> ReLU -> Gaussian noise, BN on the logits (Appendix C)."""
    layers: list[nn.Module] = []
    width = 784
    for h in (1200, 600, 300, 150):
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), Noise(noise)]
        width = h
    layers += [nn.Linear(width, 10), nn.BatchNorm1d(10)]
    return nn.Sequential(*layers)


@contextlib.contextmanager
def bn_stats_frozen(model: nn.Module):
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def normalize(d: torch.Tensor) -> torch.Tensor:
    return d / (d.norm(dim=1, keepdim=True) + 1e-8)


def noise_off(model: nn.Module, off: bool):
    """Inside the block the Gaussian noise layers are off (``off``), BN's mode untouched."""
    layers = [m for m in model.modules() if isinstance(m, Noise) and m.training] if off else []

    @contextlib.contextmanager
    def block():
        for m in layers:
            m.eval()
        try:
            yield
        finally:
            for m in layers:
                m.train()
    return block()


def vat_loss(model: nn.Module, x: torch.Tensor, eps: float, xi: float, k: int, d0: str, bn_update: bool,
             gen: torch.Generator, pi_noise: bool = True) -> torch.Tensor:
    """R_vadv (Eq. 7) with K power iterations by finite differences (Eq. 12, 13); K = 0: RPT (Eq. 16).
    ``pi_noise`` False: the power iteration's passes and the clean pass they start from without the
    noise (the LDS pass keeps it and takes the noisy clean pass as its target)."""
    with torch.no_grad(), (contextlib.nullcontext() if bn_update else bn_stats_frozen(model)):
        p = F.softmax(model(x), dim=1)  # the clean target, a constant
    if d0 == "uniform":
        d = torch.rand(x.shape, generator=gen) - 0.5
    else:
        d = torch.randn(x.shape, generator=gen)
    d = normalize(d)
    with bn_stats_frozen(model):
        p_pi = p
        if k and not pi_noise:
            with torch.no_grad(), noise_off(model, True):
                p_pi = F.softmax(model(x), dim=1)
        for _ in range(k):
            d.requires_grad_(True)
            with noise_off(model, not pi_noise):
                dist = F.kl_div(F.log_softmax(model(x + xi * d), dim=1), p_pi, reduction="batchmean")
            (g,) = torch.autograd.grad(dist, d)
            d = normalize(g.detach())
        return F.kl_div(F.log_softmax(model(x + eps * d.detach()), dim=1), p, reduction="batchmean")


class Batches:
    """Indices from ``pool``: epoch (a fresh permutation when fewer than a batch remain) or
    replacement."""

    def __init__(self, pool: torch.Tensor, size: int, how: str, gen: torch.Generator) -> None:
        self.pool, self.size, self.how, self.gen = pool, min(size, len(pool)), how, gen
        self.order, self.pos = self.pool[torch.randperm(len(pool), generator=gen)], 0

    def next(self) -> torch.Tensor:
        if self.how == "replacement":
            return self.pool[torch.randint(len(self.pool), (self.size,), generator=self.gen)]
        if self.pos + self.size > len(self.order):
            self.order, self.pos = self.pool[torch.randperm(len(self.pool), generator=self.gen)], 0
        idx = self.order[self.pos:self.pos + self.size]
        self.pos += self.size
        return idx


@torch.no_grad()
def error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    wrong = sum(int((model(x[i:i + 1000]).argmax(1) != y[i:i + 1000]).sum()) for i in range(0, len(x), 1000))
    model.train()
    return 100.0 * wrong / len(x)


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor) -> None:
    """BN running statistics re-estimated over x (cumulative average over chunks of 1,000), noise off."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for m in model.modules():
        if isinstance(m, Noise):
            m.eval()
    for i in range(0, len(x), 1000):
        model(x[i:i + 1000])
    model.train()
    for m in bns:
        m.momentum = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with the four MNIST IDX files (or its mnist/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", choices=["vat", "rpt", "baseline"], default="vat")
    ap.add_argument("--eps", type=float, default=5.0)
    ap.add_argument("--xi", type=float, default=1e-2)
    ap.add_argument("--k", type=int, default=1, help="power iterations (vat)")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--n-labeled", type=int, default=100)
    ap.add_argument("--bn-update", choices=["labeled+clean", "labeled"], default="labeled+clean")
    ap.add_argument("--labeled", choices=["random", "balanced"], default="random")
    ap.add_argument("--pool", choices=["all", "unlabeled"], default="all")
    ap.add_argument("--batches", choices=["epoch", "replacement"], default="epoch")
    ap.add_argument("--d0", choices=["uniform", "gaussian"], default="uniform")
    ap.add_argument("--order", choices=["reg-first", "labeled-first"], default="reg-first")
    ap.add_argument("--eval-bn", choices=["running", "recompute"], default="running")
    ap.add_argument("--pi-noise", choices=["on", "off"], default="on",
                    help="the noise in the power iteration's passes (VAT-pytorch and ours: on)")
    ap.add_argument("--like-ours", action="store_true", help="every flag above at vat-study's choice unless given")
    ap.add_argument("--curve-every", type=int, default=0, help="also record the test error every N updates")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/plain_vat_mnist/runs.jsonl"))
    if ap.parse_known_args()[0].like_ours:  # ours as the defaults; a flag given still wins
        ap.set_defaults(**OURS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    x_train, y_train, x_test, y_test = load_mnist(a.data)
    val, lab, reg = split(y_train, a.seed, a.n_labeled, 1000, a.labeled, a.pool)
    torch.manual_seed(a.seed)
    model = mlp(a.noise)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)  # betas (0.9, 0.999), as Appendix A's ADAM defaults
    gen = torch.Generator().manual_seed(a.seed)
    start_gen = torch.Generator().manual_seed(a.seed + 2_000_003)
    labeled = Batches(lab, 64, a.batches, gen)
    unlabeled = Batches(reg, 256, a.batches, gen)
    k = a.k if a.method == "vat" else 0
    curve = []
    t0 = time.perf_counter()
    model.train()
    for step in range(a.steps):
        lr = a.lr if step < a.steps // 2 else a.lr * (a.steps - step) / (a.steps - a.steps // 2)
        for g in opt.param_groups:
            g["lr"] = lr
        i_l, i_u = labeled.next(), unlabeled.next()
        x_l, y_l, x_u = x_train[i_l], y_train[i_l], x_train[i_u]

        def regularizer(x: torch.Tensor) -> torch.Tensor:
            if a.method == "baseline":
                return torch.zeros(())
            return vat_loss(model, x, a.eps, a.xi, k, a.d0, a.bn_update == "labeled+clean", start_gen,
                            pi_noise=a.pi_noise == "on")

        if a.order == "reg-first":
            r = regularizer(x_u)
            nll = F.cross_entropy(model(x_l), y_l)
        else:
            nll = F.cross_entropy(model(x_l), y_l)
            r = regularizer(x_u)
        loss = nll + a.alpha * r
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if a.curve_every and (step + 1) % a.curve_every == 0:
            curve.append((step + 1, error(model, x_test, y_test)))
    if a.eval_bn == "recompute":
        recompute_bn(model, x_train[reg])
    result = {"settings": {k: v for k, v in vars(a).items() if k not in ("data", "out", "threads", "like_ours")},
              "test_error": error(model, x_test, y_test), "val_error": error(model, x_train[val], y_train[val]),
              "wall_seconds": round(time.perf_counter() - t0, 1), "curve": curve}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))


if __name__ == "__main__":
    main()
