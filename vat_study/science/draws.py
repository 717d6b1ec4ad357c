"""What each lane of training draws from: its seed's mini-batches (``EpochSampler``), its random
generators (batches and augmentation, probes, the power iteration's random starts), its fixed
probe images, and the state of all of them for a checkpoint (``draws_state`` / ``restore_draws``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import TrialConfig
from .data import Splits, augment


class EpochSampler:
    """Mini-batches of indices from ``pool``: a fresh random order every epoch, no repeats within
    one. A batch larger than the pool is the whole pool (e.g. 8 labeled points, batch 64). The
    order is drawn on the CPU (so a seed gives the same batches on every device) and moved to
    ``device`` once per epoch, not once per step."""

    def __init__(self, pool: Tensor, batch: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> None:
        self.pool, self.batch, self.gen, self.device = pool, min(batch, len(pool)), generator, device
        self.order, self.pos = self._shuffled(), 0

    def _shuffled(self) -> Tensor:
        return self.pool[torch.randperm(len(self.pool), generator=self.gen)].to(self.device)

    def next(self) -> Tensor:
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = self._shuffled(), 0
        idx = self.order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx


def _sampler_state(s: EpochSampler | None) -> dict | None:
    return None if s is None else {"order": s.order.cpu(), "pos": s.pos}


@dataclass
class LaneData:
    """What one lane's run draws from (its seed's): its splits, samplers and random generators."""

    seed: int
    splits: Splits
    gen: torch.Generator  # mini-batches and augmentation
    probe_gen: torch.Generator  # probes only
    start_gen: torch.Generator  # the power iteration's random starts d0
    labeled: EpochSampler
    unlabeled: EpochSampler | None
    x_val: Tensor
    y_val: Tensor
    x_train: Tensor
    probe_order: Tensor  # the probes' fixed images, in order: validation images if there are any, else the pool
    reg_pool: Tensor

    def probe_images(self, n: int) -> Tensor:
        """The first ``n`` of the lane's fixed probe images."""
        return self.x_train[self.probe_order[:n]]

    @staticmethod
    def make(cfg: TrialConfig, seed: int, splits: Splits, x_train: Tensor, y_train: Tensor) -> LaneData:
        device = x_train.device
        semi = cfg.task.mode == "semi_supervised"
        gen = torch.Generator().manual_seed(seed)
        probe_gen = torch.Generator().manual_seed(seed + 1_000_003)
        start_gen = torch.Generator(device=device).manual_seed(seed + 2_000_003)
        labeled = EpochSampler(splits.labeled, cfg.task.batch.labeled, gen, device)
        unlabeled = EpochSampler(splits.unlabeled, cfg.task.batch.unlabeled, gen, device) if semi else None
        # Fixed subsets for the probes: validation images if there are any, else the pool.
        probe_pool = splits.validation if len(splits.validation) else splits.unlabeled
        probe_order = probe_pool[torch.randperm(len(probe_pool), generator=probe_gen)].to(device)
        val = splits.validation.to(device)
        return LaneData(seed, splits, gen, probe_gen, start_gen, labeled, unlabeled, x_train[val], y_train[val],
                        x_train, probe_order, x_train[(splits.unlabeled if semi else splits.labeled).to(device)])


def draws_state(runs: list[LaneData], device: torch.device) -> dict:
    """Where every random stream of the loop stands (each lane's generators and samplers, the
    global RNGs), for a checkpoint."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "runs": [{"gen": r.gen.get_state(), "probe_gen": r.probe_gen.get_state(),
                      "start_gen": r.start_gen.get_state(), "labeled": _sampler_state(r.labeled),
                      "unlabeled": _sampler_state(r.unlabeled)} for r in runs]}


def restore_draws(runs: list[LaneData], saved: dict, device: torch.device) -> None:
    """Every random stream back where ``draws_state`` saw it."""
    for r, rs in zip(runs, saved["runs"]):
        r.gen.set_state(rs["gen"])
        r.probe_gen.set_state(rs["probe_gen"])
        r.start_gen.set_state(rs["start_gen"])
        for sampler, st in ((r.labeled, rs["labeled"]), (r.unlabeled, rs["unlabeled"])):
            if sampler is not None and st is not None:
                sampler.order, sampler.pos = st["order"].to(sampler.device), int(st["pos"])
    torch.set_rng_state(saved["torch_rng"])
    if device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def next_batches(cfg: TrialConfig, runs: list[LaneData], x_train: Tensor, y_train: Tensor,
                 augmenting: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """The update's batches, the lanes' blocks laid end to end: labeled images and labels, and
    (semi-supervised) the regularizer's batch from the unlabeled pool (Appendix C). With
    augmentation each lane draws in its own run's order (batch, its augmentation, the next batch);
    without it, one gather for all lanes."""
    semi = cfg.task.mode == "semi_supervised"
    if augmenting:
        aug = cfg.task.augment
        xs_l, ys_l, xs_reg = [], [], []
        for r in runs:
            idx_l = r.labeled.next()
            xs_l.append(augment(x_train[idx_l], translate=aug.translate, flip=aug.flip, generator=r.gen))
            ys_l.append(y_train[idx_l])
            if r.unlabeled is not None:
                xs_reg.append(augment(x_train[r.unlabeled.next()], translate=aug.translate, flip=aug.flip,
                                      generator=r.gen))
        return _cat(xs_l), _cat(ys_l), _cat(xs_reg) if semi else None
    idx = [(r.labeled.next(), r.unlabeled.next() if r.unlabeled is not None else None) for r in runs]
    idx_l = _cat([i for i, _ in idx])
    return x_train[idx_l], y_train[idx_l], x_train[_cat([u for _, u in idx])] if semi else None
