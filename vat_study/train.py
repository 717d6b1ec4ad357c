"""One training run, top to bottom: supervised or semi-supervised, objective nll + alpha * R (Eq. 8).

Methods (the regularizer R):
    baseline    R = 0
    rpt         R^(0): LDS at a random r, ||r|| = eps (Eq. 16)
    vat         R_vadv with K = power_iterations (Eq. 7, Algorithm 1)
    vat_entmin  R_vadv + R_cent (Eq. 18; Section 4.1.2)
    at_l2       L_adv on the labeled batch, r_adv from Eq. 3
    at_linf     L_adv on the labeled batch, r_adv from Eq. 4

Semi-supervised (Appendices C, D): each step draws a labeled batch for the likelihood and a
separate batch from the unlabeled pool (which includes the labeled images) for R. Supervised
(Appendix A): R is computed on the labeled batch itself, reusing its logits.

BN running statistics are updated only by the labeled forward pass; every other pass (the
unlabeled clean pass, the power iteration, the perturbed pass) uses batch statistics without
updating them, as the official code does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import probes as P
from .config import TrialConfig
from .data import Splits, augment
from .regularizers import (
    adversarial_loss,
    deterministic_layers,
    entropy_loss,
    frozen_batch_stats,
    lds,
    vat_loss,
    virtual_adversarial_direction,
)

Report = Callable[[int, Mapping[str, float]], None]


class EpochSampler:
    """Mini-batches of indices from ``pool``: a fresh random order every epoch, no repeats within
    one. A batch larger than the pool is the whole pool (e.g. 8 labeled points, batch 64)."""

    def __init__(self, pool: Tensor, batch: int, generator: torch.Generator) -> None:
        self.pool, self.batch, self.gen = pool, min(batch, len(pool)), generator
        self.order, self.pos = pool[torch.randperm(len(pool), generator=generator)], 0

    def next(self) -> Tensor:
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = self.pool[torch.randperm(len(self.pool), generator=self.gen)], 0
        idx = self.order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx


def learning_rate(cfg: TrialConfig, step: int) -> tuple[float, float]:
    """(lr, beta1) for 0-based ``step`` under the configured schedule."""
    opt, dec = cfg.optimizer, cfg.optimizer.decay
    if dec.kind == "exponential":  # Appendix A: rate 0.9 per 600 updates
        return opt.lr * dec.rate ** (step // dec.every), opt.beta1
    if dec.kind == "linear":  # Appendices B-D: linear decay to 0 over the last part of training
        start = dec.start if dec.start is not None else cfg.steps // 2
        if step < start:
            return opt.lr, opt.beta1
        frac = (cfg.steps - step) / max(cfg.steps - start, 1)
        beta1 = dec.beta1_after if dec.beta1_after is not None else opt.beta1
        return opt.lr * frac, beta1
    return opt.lr, opt.beta1


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 1000) -> float:
    """Misclassification rate in eval mode (BN running statistics)."""
    if len(x) == 0:
        return float("nan")
    was = model.training
    model.eval()
    wrong = sum(int((model(xb).argmax(1) != yb).sum()) for xb, yb in zip(x.split(chunk), y.split(chunk)))
    model.train(was)
    return wrong / len(x)


def regularizer(cfg: TrialConfig, model: nn.Module, x_l: Tensor, y_l: Tensor, logits_l: Tensor,
                x_reg: Tensor | None) -> Tensor:
    """R of Eq. 8 for this step. ``x_reg`` is the unlabeled batch (None: supervised, use x_l)."""
    if cfg.method == "baseline":
        return logits_l.new_zeros(())
    if cfg.method in ("at_l2", "at_linf"):
        return adversarial_loss(model, x_l, y_l, eps=cfg.eps, norm="l2" if cfg.method == "at_l2" else "linf")
    if x_reg is None:  # supervised: R on the labeled batch, its logits are p(y|x, theta_hat)
        r_vadv = vat_loss(model, x_l, eps=cfg.eps, xi=cfg.xi, power_iterations=cfg.k, method=cfg.direction,
                          logits=logits_l.detach())
        return r_vadv + (entropy_loss(logits_l) if cfg.method == "vat_entmin" else 0.0)
    # Semi-supervised: one clean pass on the unlabeled batch, with dropout/noise off, gives both
    # the target p(y|x, theta_hat) of Eq. 5 and the reference point of the power iteration
    # (so no second clean pass is needed); the perturbed pass of LDS keeps them on.
    with frozen_batch_stats(model), deterministic_layers(model), \
            torch.set_grad_enabled(cfg.method == "vat_entmin"):  # the gradient only feeds EntMin
        logits = model(x_reg)
        d = virtual_adversarial_direction(model, x_reg, logits.detach(), xi=cfg.xi, power_iterations=cfg.k,
                                          method=cfg.direction)
    r_vadv = lds(model, x_reg, cfg.eps * d, logits).mean()  # Eq. 7
    return r_vadv + (entropy_loss(logits) if cfg.method == "vat_entmin" else 0.0)


def train_step(cfg: TrialConfig, model: nn.Module, opt: torch.optim.Optimizer, x_l: Tensor, y_l: Tensor,
               x_reg: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One update on nll + alpha * R (Eq. 8); returns the detached (loss, nll, R)."""
    model.train()
    logits_l = model(x_l)  # the only pass that updates BN running statistics
    nll = F.cross_entropy(logits_l, y_l)
    reg = regularizer(cfg, model, x_l, y_l, logits_l, x_reg)
    loss = nll + cfg.alpha * reg
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), nll.detach(), reg.detach()


def train(
    cfg: TrialConfig,
    x_train: Tensor,
    y_train: Tensor,
    splits: Splits,
    model: nn.Module,
    report: Report | None = None,
) -> dict[str, float]:
    """Train ``model`` in place for ``cfg.steps`` updates; returns the last evaluation's metrics
    (val_error, rvadv, ...) plus train_seconds (updates only, evaluation and probes excluded)."""
    device = x_train.device
    gen = torch.Generator().manual_seed(cfg.seed)  # mini-batches and augmentation
    probe_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # probes only
    semi = cfg.mode == "semi_supervised"
    labeled = EpochSampler(splits.labeled, cfg.batch.labeled, gen)
    unlabeled = EpochSampler(splits.unlabeled, cfg.batch.unlabeled, gen) if semi else None
    x_val, y_val = x_train[splits.validation.to(device)], y_train[splits.validation.to(device)]

    # Fixed subsets for the probes: validation images if there are any, else the pool.
    probe_pool = splits.validation if len(splits.validation) else splits.unlabeled
    probe_order = probe_pool[torch.randperm(len(probe_pool), generator=probe_gen)].to(device)
    rv = cfg.probes.rvadv
    x_rvadv = x_train[probe_order[: rv.size]]
    fid = cfg.probes.fidelity
    x_fid = x_train[probe_order[: fid.size]] if fid else None
    gv = cfg.probes.grad_variance
    reg_pool = x_train[(splits.unlabeled if semi else splits.labeled).to(device)]

    def due(every: int | None, step: int, steps: list[int] | None = None) -> bool:
        if steps is not None:
            return step in steps
        return step % (every or cfg.eval_every) == 0 or step == cfg.steps

    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr,
                           betas=(cfg.optimizer.beta1, cfg.optimizer.beta2))
    train_seconds, sums, n_sum = 0.0, {"loss": 0.0, "nll": 0.0, "reg": 0.0}, 0
    last: dict[str, float] = {}
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        lr, beta1 = learning_rate(cfg, step - 1)
        for group in opt.param_groups:
            group["lr"], group["betas"] = lr, (beta1, cfg.optimizer.beta2)

        idx_l = labeled.next().to(device)
        x_l = augment(x_train[idx_l], translate=cfg.augment.translate, flip=cfg.augment.flip, generator=gen)
        y_l = y_train[idx_l]
        x_reg = None
        if unlabeled is not None:
            x_reg = augment(x_train[unlabeled.next().to(device)], translate=cfg.augment.translate,
                            flip=cfg.augment.flip, generator=gen)

        loss, nll, reg = train_step(cfg, model, opt, x_l, y_l, x_reg)
        train_seconds += time.perf_counter() - t0

        sums["loss"] += float(loss)
        sums["nll"] += float(nll)
        sums["reg"] += float(reg)
        n_sum += 1
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"training diverged at step {step}: loss = {float(loss)} "
                                     f"(nll {float(nll)}, R {float(reg)}); lower optimizer.lr or eps")

        do_rv = due(rv.every, step)
        do_fid = fid is not None and due(fid.every, step)
        do_gv = gv is not None and due(gv.every, step, gv.steps)
        if not (due(cfg.eval_every, step) or do_rv or do_fid or do_gv):
            continue
        metrics = {k: v / n_sum for k, v in sums.items()}
        sums, n_sum = {k: 0.0 for k in sums}, 0
        metrics["lr"] = lr
        metrics["val_error"] = error_rate(model, x_val, y_val)
        if do_rv:
            metrics["rvadv"] = P.rvadv(model, x_rvadv, eps=rv.eps, power_iterations=rv.power_iterations,
                                       xi=cfg.xi, method=cfg.direction, seed=cfg.seed)
        if do_fid:
            metrics["fidelity"] = P.power_iteration_fidelity(
                model, x_fid, xi=cfg.xi, power_iterations=cfg.k, method=cfg.direction,
                reference_iterations=fid.reference_iterations, seed=cfg.seed)
        if do_gv:
            for k in gv.power_iterations:
                metrics[f"grad_sd_norm_k{k}"] = P.grad_sd_norm(
                    model, reg_pool, eps=gv.eps or cfg.eps or rv.eps, power_iterations=k, xi=cfg.xi,
                    method=cfg.direction, batch=gv.batch or (cfg.batch.unlabeled if semi else cfg.batch.labeled),
                    samples=gv.samples, generator=probe_gen)
        metrics["train_seconds"] = train_seconds
        last.update(metrics)
        if report is not None:
            report(step, dict(metrics))
    last["train_seconds"] = train_seconds
    return last
