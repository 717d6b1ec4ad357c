"""One training run, top to bottom: supervised or semi-supervised, objective nll + alpha * R (Eq. 8).

Methods (the regularizer R): one entry each in ``methods.REGISTRY``.

Semi-supervised (Appendices C, D): each step draws a labeled batch for the likelihood and a
separate batch from the unlabeled pool (which includes the labeled images) for R. Supervised
(Appendix A): R is computed on the labeled batch itself, reusing its logits.

BN running statistics are updated only by the labeled forward pass; every other pass (the
clean pass, the power iteration, the perturbed pass) leaves them alone, as the official code
does. Which statistics those passes normalize with, and whether dropout / noise act in each of
them, is ``cfg.method.implementation`` (methods.Implementation; docs/science.md, "Implementation choices").
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import methods
from . import probes as P
from .config import TrialConfig
from .data import Splits, augment
from .methods import Step, per_lane
from .passes import deterministic_layers
from .regularizers import random_unit_direction, unit_vector

Report = Callable[[int, Mapping[str, float]], None]


@dataclass
class LaneOutcome:
    """How one lane of ``train_lanes`` ended: its last metrics (empty if it diverged before its
    first evaluation), and ``diverged``, the message, if its loss turned NaN/inf (the other lanes
    trained on)."""

    metrics: dict[str, float]
    diverged: str | None = None


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


def learning_rate(cfg: TrialConfig, step: int) -> tuple[float, float]:
    """(lr, beta1) for 0-based ``step`` under the configured schedule."""
    opt, dec = cfg.task.optimizer, cfg.task.optimizer.decay
    if dec.kind == "exponential":  # Appendix A: rate 0.9 per 600 updates
        return opt.lr * dec.rate ** (step // dec.every), opt.beta1
    if dec.kind == "linear":  # Appendices B-D: linear decay to 0 over the last part of training
        start = dec.start if dec.start is not None else cfg.task.steps // 2
        if step < start:
            return opt.lr, opt.beta1
        frac = (cfg.task.steps - step) / max(cfg.task.steps - start, 1)
        beta1 = dec.beta1_after if dec.beta1_after is not None else opt.beta1
        return opt.lr * frac, beta1
    return opt.lr, opt.beta1


@torch.no_grad()
def error_rates(model: nn.Module, xs: list[Tensor], ys: list[Tensor], chunk: int = 1000) -> list[float]:
    """Misclassification rate of each seed's network in eval mode (BN running statistics):
    ``xs[i]`` goes to seed i (a ``LaneBatch``; one plain network takes one set). Each pass feeds
    every seed an equal block of ``chunk`` images (the sets have equal sizes)."""
    n = len(xs[0])
    if n == 0:
        return [float("nan")] * len(xs)
    was = model.training
    model.eval()
    wrong = torch.zeros(len(xs), dtype=torch.long, device=xs[0].device)
    for lo in range(0, n, chunk):
        xb = torch.cat([x[lo : lo + chunk] for x in xs]) if len(xs) > 1 else xs[0][lo : lo + chunk]
        yb = torch.cat([y[lo : lo + chunk] for y in ys]) if len(ys) > 1 else ys[0][lo : lo + chunk]
        wrong += (model(xb).argmax(1) != yb).view(len(xs), -1).sum(1)
    model.train(was)
    return [w / n for w in wrong.tolist()]  # one host sync per evaluation


@contextlib.contextmanager
def evaluation_bn(model: nn.Module, pools: list[Tensor] | None, chunk: int = 1000) -> Iterator[None]:
    """``task.eval_bn: recompute``: inside the block every BN layer's running statistics are the
    ones re-estimated over ``pools[i]`` for lane i (the unlabeled pool), as the official MNIST code
    measures its test error: a cumulative average over chunks of ``chunk`` images (the i-th chunk
    weighted 1/i, PyTorch's ``momentum=None``), train mode, no gradient, dropout / noise off.
    Training's own statistics and modes are restored on leaving. ``pools`` None: nothing changes
    (the running statistics, ``eval_bn: running``)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if pools is None or not bns:
        yield
        return
    stats = {k: b.detach().clone() for k, b in model.named_buffers()
             if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    n = min(len(p) for p in pools)
    try:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k.endswith("running_mean") or k.endswith("num_batches_tracked"):
                    b.zero_()
                elif k.endswith("running_var"):
                    b.fill_(1.0)
            model.train()
            with deterministic_layers(model):
                for i, lo in enumerate(range(0, n, chunk), start=1):
                    for m in bns:
                        m.momentum = 1.0 / i
                    model(torch.cat([p[lo:lo + chunk] for p in pools]) if len(pools) > 1 else pools[0][lo:lo + chunk])
        for m, t in modes.items():
            m.training = t
        yield
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in stats:
                    b.copy_(stats[k])
        for m, t in modes.items():
            m.training = t
        for m, v in momenta.items():
            m.momentum = v


@dataclass(frozen=True)
class LaneValues:
    """The lane settings that differ between the networks of one batched model, one value per
    network (tensors [S] on the device); None where every lane has the config's value (then the
    number itself is used, exactly as a separate run does)."""

    eps: Tensor | None = None
    alpha: Tensor | None = None
    xi: Tensor | None = None

    @staticmethod
    def of(lanes: list[TrialConfig], device: torch.device | str, dtype: torch.dtype) -> LaneValues:
        def values(name: str) -> Tensor | None:  # None also where the method has no such setting
            v = [getattr(c.method, name, None) for c in lanes]
            return None if all(x == v[0] for x in v) else torch.tensor(v, device=device, dtype=dtype)
        return LaneValues(values("eps"), values("alpha"), values("xi"))


NO_LANES = LaneValues()


def step_of(cfg: TrialConfig, model: nn.Module, x_l: Tensor, y_l: Tensor, logits_l: Tensor,
            x_reg: Tensor | None, n_lanes: int = 1, random_start: Callable[[Tensor], Tensor] | None = None,
            lanes: LaneValues = NO_LANES, step: int = 1) -> Step:
    """What the method's registry entry sees at update ``step``: the trial's method settings and the
    few task facts a regularizer needs, not the trial config."""
    return Step(settings=cfg.method, model=model, x_l=x_l, y_l=y_l, logits_l=logits_l, x_reg=x_reg,
                step=step, steps=cfg.task.steps, n_lanes=n_lanes, random_start=random_start,
                power_iteration_float32=cfg.task.precision in ("mixed", "mixed_delta"),
                power_iteration_products="bfloat16" if cfg.task.precision == "mixed_delta" else "float32",
                lane_eps=lanes.eps, lane_xi=lanes.xi, lane_alpha=lanes.alpha)


def regularizer(cfg: TrialConfig, model: nn.Module, x_l: Tensor, y_l: Tensor, logits_l: Tensor,
                x_reg: Tensor | None, n_lanes: int = 1,
                random_start: Callable[[Tensor], Tensor] | None = None, lanes: LaneValues = NO_LANES,
                step: int = 1) -> Tensor:
    """R of Eq. 8 for this step, one value per lane: shape [S], as the method's registry entry
    computes it (``methods``). ``x_reg`` is the unlabeled batch (None: supervised)."""
    s = step_of(cfg, model, x_l, y_l, logits_l, x_reg, n_lanes, random_start, lanes, step)
    return methods.get(cfg.method.name).regularizer(s)


def precision_context(cfg: TrialConfig, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``task.precision``: float32 runs every pass as it is (no autocast); bfloat16, mixed and
    mixed_delta run the update's forward passes under ``torch.autocast`` in bfloat16 (matrix
    products in bfloat16, weights, gradients and Adam in float32; one autocast for the whole update,
    so each weight is cast once); mixed also takes the power iteration and its clean pass out of it
    (``regularizers.regularizer_lds``, ``power_iteration_float32``), mixed_delta the clean pass,
    its power iteration's products in bfloat16 on the difference (``difference``). The same on CPU
    and CUDA."""
    if cfg.task.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def train_step(cfg: TrialConfig, model: nn.Module, opt: torch.optim.Optimizer, x_l: Tensor, y_l: Tensor,
               x_reg: Tensor | None, n_lanes: int = 1,
               random_start: Callable[[Tensor], Tensor] | None = None,
               lanes: LaneValues = NO_LANES, step: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Update ``step`` (1-based) on nll + alpha * R (Eq. 8); returns the detached (loss, nll, R),
    one value per lane (shape [S]; S = 1 for a plain network). With S lanes the update minimizes
    the sum of the S objectives, i.e. gives each network's weights its own run's gradient;
    ``lanes`` holds the eps / alpha / xi of each network where they differ. The weight alpha is the
    method's registry entry's (``Method.weight_at``: e.g. a ramp-up over the first updates). No
    value is read back to the host here: the step never waits for the device."""
    if cfg.task.precision == "auto":
        raise ValueError("task.precision 'auto' is resolved before training (objective.resolve_precision)")
    model.train()
    method = methods.get(cfg.method.name)
    with precision_context(cfg, x_l.device):  # task.precision: the forward passes in bfloat16 or not
        logits_l = model(x_l)  # the only pass that updates BN running statistics
        nll = per_lane(F.cross_entropy(logits_l, y_l, reduction="none"), n_lanes)
        s = step_of(cfg, model, x_l, y_l, logits_l, x_reg, n_lanes, random_start, lanes, step)
        reg = method.regularizer(s)
    if cfg.task.precision != "float32":  # the objective and its sums in float32, as the weights
        nll, reg = nll.float(), reg.float()
    loss = nll + method.weight_at(s) * reg  # baseline: R = 0, alpha 1
    opt.zero_grad(set_to_none=True)
    loss.sum().backward()
    opt.step()
    return loss.detach(), nll.detach(), reg.detach()


def adam(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam with the config's settings; the fused kernel (one pass per tensor: 6x faster than
    the default loop for the 784-1200-600-300-150 MLP on a CPU) where the device has one."""
    kwargs = dict(lr=cfg.task.optimizer.lr, betas=(cfg.task.optimizer.beta1, cfg.task.optimizer.beta2))
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(model.parameters(), **kwargs)


@dataclass(frozen=True)
class Checkpointing:
    """Mid-trial checkpoints: every ``every`` updates the whole training state (weights, Adam,
    every random generator and sampler position, the running sums and the reports made) goes to
    ``path``; a run of the same lanes that finds it there goes on from it, reporting again what was
    reported before, and ends with the same metrics as a run never stopped (on the CPU)."""

    path: str
    every: int


_checkpointing: contextvars.ContextVar[Checkpointing | None] = contextvars.ContextVar("vat_checkpointing", default=None)


@contextlib.contextmanager
def checkpoints(path: str, every: int) -> Iterator[None]:
    """Training inside the block checkpoints to ``path`` every ``every`` updates and resumes from it."""
    token = _checkpointing.set(Checkpointing(str(path), int(every)))
    try:
        yield
    finally:
        _checkpointing.reset(token)


def _fingerprint(lanes: list[TrialConfig]) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps([c.model_dump(mode="json") for c in lanes], sort_keys=True,
                                   default=str).encode()).hexdigest()


def _sampler_state(s: EpochSampler | None) -> dict | None:
    return None if s is None else {"order": s.order.cpu(), "pos": s.pos}


def _save_checkpoint(ck: Checkpointing, state: dict) -> None:
    """Written whole (a temporary name, then renamed): a kill while saving keeps the previous one."""
    import os
    from pathlib import Path

    path = Path(ck.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_checkpoint(ck: Checkpointing, fingerprint: str) -> dict | None:
    """The checkpoint at ``ck.path`` if it is one of these lanes (else None: trained afresh)."""
    from pathlib import Path

    path = Path(ck.path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  unreadable (cut short by a full disk): train afresh
        return None
    return state if isinstance(state, dict) and state.get("fingerprint") == fingerprint else None


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
    x_rvadv: Tensor
    x_fid: Tensor | None
    reg_pool: Tensor

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
        fid = cfg.probes.fidelity
        val = splits.validation.to(device)
        return LaneData(seed, splits, gen, probe_gen, start_gen, labeled, unlabeled, x_train[val], y_train[val],
                        x_train[probe_order[: cfg.probes.rvadv.size]],
                        x_train[probe_order[: fid.size]] if fid else None,
                        x_train[(splits.unlabeled if semi else splits.labeled).to(device)])


def _draws_state(runs: list[LaneData], device: torch.device) -> dict:
    """Where every random stream of the loop stands (each lane's generators and samplers, the
    global RNGs), for a checkpoint."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "runs": [{"gen": r.gen.get_state(), "probe_gen": r.probe_gen.get_state(),
                      "start_gen": r.start_gen.get_state(), "labeled": _sampler_state(r.labeled),
                      "unlabeled": _sampler_state(r.unlabeled)} for r in runs]}


def _restore_draws(runs: list[LaneData], saved: dict, device: torch.device) -> None:
    """Every random stream back where ``_draws_state`` saw it."""
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


def _next_batches(cfg: TrialConfig, runs: list[LaneData], x_train: Tensor, y_train: Tensor,
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


def train_lanes(
    lanes: list[TrialConfig],
    x_train: Tensor,
    y_train: Tensor,
    splits: list[Splits],
    model: nn.Module,
    reports: list[Report] | None = None,
    test: tuple[Tensor, Tensor] | None = None,
) -> list[LaneOutcome]:
    """Train S lanes at once: ``model`` is a ``LaneBatch`` of S networks (or, for S = 1, the plain
    network); lane i trains as ``lanes[i]`` says, with ``splits[i]``, its own seed's batches,
    augmentation and random starts, its own eps / alpha / xi (and noise SD, built into its
    network), and ``reports[i]``. The lanes agree on everything else (``lane_structure``); the
    first one's config drives the loop. Returns how each lane ended (``LaneOutcome``). A lane whose
    loss turns NaN/inf is dropped (its outcome says ``diverged``, with the message) while the others go on: the
    lanes share no weights, so its NaNs never reach them; with one lane that raises
    FloatingPointError. ``test`` (images, labels): the test set, measured once at the end
    (``test_error``) and, with ``probes.test_curve``, at every evaluation (``test_error_curve``);
    the only use of the test set. Every error (validation, test, the test curve) is measured with the BN
    statistics ``task.eval_bn`` names; the probes measure with training's running statistics."""
    cfg = lanes[0]
    n = len(lanes)
    runs = [LaneData.make(c, c.seed, sp, x_train, y_train) for c, sp in zip(lanes, splits)]
    values = LaneValues.of(lanes, x_train.device, x_train.dtype) if n > 1 else NO_LANES
    lane_models = (lambda i: model.lane_model(i)) if n > 1 else (lambda i: model)  # noqa: E731
    probes = P.training_probes(cfg)  # each says when it is due and measures the lanes
    views = [P.Lane(c, r.x_rvadv, r.x_fid, r.reg_pool, r.probe_gen, lambda i=i: lane_models(i))
             for i, (c, r) in enumerate(zip(lanes, runs))]

    def eval_due(step: int) -> bool:
        return step % cfg.task.eval_every == 0 or step == cfg.task.steps

    def random_start(x: Tensor) -> Tensor:  # d0 for each lane's block, from that lane's generator
        if n == 1:
            return random_unit_direction(x, runs[0].start_gen)
        draws = [torch.randn(xb.shape, generator=r.start_gen, device=r.start_gen.device, dtype=x.dtype)
                 for xb, r in zip(x.chunk(n), runs)]
        return unit_vector(torch.cat(draws).to(x.device))  # = random_unit_direction per block (per sample)

    bn_pools = [r.reg_pool for r in runs] if cfg.task.eval_bn == "recompute" else None
    curve = test is not None and cfg.probes.test_curve
    augmenting = x_train.dim() == 4 and (cfg.task.augment.translate > 0 or cfg.task.augment.flip)

    opt = adam(cfg, model)
    train_seconds, n_sum = 0.0, 0
    t_updates = time.perf_counter()  # start of the updates since the last evaluation
    sums = torch.zeros(3, n, dtype=torch.float64, device=x_train.device)  # loss, nll, R per seed, on the device
    last: list[dict[str, float]] = [{} for _ in lanes]
    alive = list(range(n))
    diverged: dict[int, str] = {}
    ck = _checkpointing.get()
    history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in lanes]  # reports made: replayed on resume
    first = 1
    saved = _load_checkpoint(ck, _fingerprint(lanes)) if ck is not None else None
    if saved is not None:  # go on from the checkpoint: every state the loop carries, as it was
        first = int(saved["step"]) + 1
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        _restore_draws(runs, saved, x_train.device)
        sums.copy_(saved["sums"].to(sums.device))
        n_sum, train_seconds = int(saved["n_sum"]), float(saved["train_seconds"])
        last, alive, history = saved["last"], list(saved["alive"]), saved["history"]
        diverged = dict(saved.get("diverged") or  # (a checkpoint of 0.3.0 kept the message among the metrics)
                        {i: str(m.pop("diverged")) for i, m in enumerate(last) if "diverged" in m})
        for i, h in enumerate(history):
            for step, metrics in h:
                if reports is not None:
                    reports[i](step, dict(metrics))
    for step in range(first, cfg.task.steps + 1):
        if ck is not None and step > first and (step - 1) % ck.every == 0:  # the state after update step - 1
            _save_checkpoint(ck, {
                "fingerprint": _fingerprint(lanes), "step": step - 1, "model": model.state_dict(),
                "opt": opt.state_dict(), "sums": sums.cpu(), "n_sum": n_sum, "train_seconds": train_seconds,
                "last": last, "alive": alive, "diverged": diverged, "history": history,
                **_draws_state(runs, x_train.device)})
        lr, beta1 = learning_rate(cfg, step - 1)
        for group in opt.param_groups:
            group["lr"], group["betas"] = lr, (beta1, cfg.task.optimizer.beta2)

        x_l, y_l, x_reg = _next_batches(cfg, runs, x_train, y_train, augmenting)

        losses = train_step(cfg, model, opt, x_l, y_l, x_reg, n, random_start, values, step=step)
        sums += torch.stack(losses)
        n_sum += 1

        due_now = [p for p in probes if p.due(step)]
        if not (eval_due(step) or due_now):
            continue
        means = (sums / n_sum).tolist()  # the one host sync per evaluation: the updates are done
        train_seconds += time.perf_counter() - t_updates  # (on a GPU too, where a step only queues work)
        sums.zero_()
        n_sum = 0
        with evaluation_bn(model, bn_pools):
            val_errors = error_rates(model, [r.x_val for r in runs], [r.y_val for r in runs])
            test_curve = error_rates(model, [test[0]] * n, [test[1]] * n) if curve else None
        for i in list(alive):
            loss, nll, reg = means[0][i], means[1][i], means[2][i]
            if not math.isfinite(loss):
                message = (f"training diverged by step {step}: mean loss = {loss} (nll {nll}, R {reg}) since the "
                           f"previous evaluation; lower optimizer.lr or eps")
                if n == 1:
                    raise FloatingPointError(message)
                alive.remove(i)
                diverged[i] = message
        measured = [p.measure(model, views, alive) for p in due_now]
        for i in alive:
            metrics = {"loss": means[0][i], "nll": means[1][i], "reg": means[2][i], "lr": lr,
                       "val_error": val_errors[i]}
            if test_curve is not None:
                metrics[P.TEST_CURVE] = test_curve[i]
            for m in measured:
                metrics.update(m[i])
            metrics["train_seconds"] = train_seconds / n  # this seed's share of the updates' time
            last[i].update(metrics)
            if reports is not None:
                reports[i](step, dict(metrics))
            if ck is not None:
                history[i].append((step, dict(metrics)))
        t_updates = time.perf_counter()
        if not alive:
            raise FloatingPointError(f"training diverged for every lane by step {step}; lower optimizer.lr or eps")
    for m in last:
        m["train_seconds"] = train_seconds / n
    if test is not None:
        with evaluation_bn(model, bn_pools):
            test_errors = error_rates(model, [test[0]] * n, [test[1]] * n)
        for i in alive:
            last[i]["test_error"] = test_errors[i]
    return [LaneOutcome(m, diverged.get(i)) for i, m in enumerate(last)]
