"""One training run, top to bottom: supervised or semi-supervised, objective nll + alpha * R (Eq. 8).

Methods (the regularizer R, its weight, and a state with a lifecycle): one entry each in
``methods.REGISTRY``. Probes (what is measured besides the errors): ``probes.REGISTRY``.

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
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint, methods
from . import probes as P
from .config import LANE_SETTINGS, TrialConfig
from .data import Splits
from .draws import LaneData, draws_state, next_batches, restore_draws
from .evaluation import error_rates, evaluation_bn
from .methods import Step, per_lane
from .regularizers import random_unit_direction, unit_vector

Report = Callable[[int, Mapping[str, float]], None]

LANE_METHOD_SETTINGS: tuple[str, ...] = tuple(p.split(".", 1)[1] for p in LANE_SETTINGS if p.startswith("method."))
"""The method settings lanes may differ in (``lane: True`` on the field: eps, alpha, xi)."""


@dataclass
class LaneOutcome:
    """How one lane of ``train_lanes`` ended: its last metrics (empty if it diverged before its
    first evaluation), and ``diverged``, the message, if its loss turned NaN/inf (the other lanes
    trained on)."""

    metrics: dict[str, float]
    diverged: str | None = None


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


def lane_values(lanes: list[TrialConfig], device: torch.device | str, dtype: torch.dtype) -> dict[str, Tensor]:
    """The lane settings in which the networks of one batched model differ, one value per network
    (a tensor [S] on the device); a setting every lane shares is left out (its number is used
    itself, exactly as a separate run uses it)."""
    out = {}
    for name in LANE_METHOD_SETTINGS:
        v = [getattr(c.method, name, None) for c in lanes]
        if not all(x == v[0] for x in v):
            out[name] = torch.tensor(v, device=device, dtype=dtype)
    return out


def step_of(cfg: TrialConfig, model: nn.Module, x_l: Tensor, y_l: Tensor, logits_l: Tensor | None,
            x_reg: Tensor | None, n_lanes: int = 1, random_start: Callable[[Tensor], Tensor] | None = None,
            lanes: Mapping[str, Tensor] | None = None, step: int = 1, state: Any = None) -> Step:
    """What the method's registry entry sees at update ``step``: the trial's method settings, the
    few task facts a regularizer needs (not the trial config) and the method's state."""
    return Step(settings=cfg.method, model=model, x_l=x_l, y_l=y_l, logits_l=logits_l, x_reg=x_reg,
                step=step, steps=cfg.task.steps, n_lanes=n_lanes, random_start=random_start,
                power_iteration_float32=cfg.task.precision == "mixed", lane_values=lanes or {}, state=state)


def precision_context(cfg: TrialConfig, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``task.precision``: float32 runs every pass as it is (no autocast); bfloat16 and mixed run the
    update's forward passes under ``torch.autocast`` in bfloat16 (matrix products in bfloat16,
    weights, gradients and Adam in float32); mixed also takes the power iteration out of it
    (``regularizers.regularizer_lds``, ``power_iteration_float32``). The same on CPU and CUDA."""
    if cfg.task.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def train_step(cfg: TrialConfig, model: nn.Module, opt: torch.optim.Optimizer, x_l: Tensor, y_l: Tensor,
               x_reg: Tensor | None, n_lanes: int = 1, random_start: Callable[[Tensor], Tensor] | None = None,
               lanes: Mapping[str, Tensor] | None = None, step: int = 1,
               state: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """Update ``step`` (1-based) on nll + alpha * R (Eq. 8), then the method's ``after_update``;
    returns the detached (loss, nll, R), one value per lane (shape [S]; S = 1 for a plain network).
    With S lanes the update minimizes the sum of the S objectives, i.e. gives each network's
    weights its own run's gradient; ``lanes`` holds the lane settings in which the networks differ.
    The weight alpha is the method's registry entry's (``Method.weight_at``: e.g. a ramp-up). No
    value is read back to the host here: the step never waits for the device."""
    model.train()
    method = methods.get(cfg.method.name)
    with precision_context(cfg, x_l.device):  # task.precision: the forward passes in bfloat16 or not
        logits_l = model(x_l)  # the only pass that updates BN running statistics
        nll = per_lane(F.cross_entropy(logits_l, y_l, reduction="none"), n_lanes)
        s = step_of(cfg, model, x_l, y_l, logits_l, x_reg, n_lanes, random_start, lanes, step, state)
        reg = method.regularizer(s)
    if cfg.task.precision != "float32":  # the objective and its sums in float32, as the weights
        nll, reg = nll.float(), reg.float()
    loss = nll + method.weight_at(s) * reg  # baseline: R = 0, alpha 1
    opt.zero_grad(set_to_none=True)
    loss.sum().backward()
    opt.step()
    if method.after_update is not None:  # e.g. the Mean Teacher's EMA of the updated weights
        with torch.no_grad():
            method.after_update(s)
    return loss.detach(), nll.detach(), reg.detach()


def adam(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam with the config's settings; the fused kernel (one pass per tensor: 6x faster than
    the default loop for the 784-1200-600-300-150 MLP on a CPU) where the device has one."""
    kwargs = dict(lr=cfg.task.optimizer.lr, betas=(cfg.task.optimizer.beta1, cfg.task.optimizer.beta2))
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(model.parameters(), **kwargs)


@dataclass
class _Progress:
    """What the loop carries from update to update besides the model, the optimizer and the draws:
    the running sums of loss, nll and R per lane since the last evaluation, the lanes still alive,
    the last metrics and the reports made (replayed on resume). All of it is checkpointed."""

    n: int
    device: torch.device
    sums: Tensor = field(init=False)  # [3, S] float64 on the device
    n_sum: int = 0
    train_seconds: float = 0.0
    last: list[dict[str, float]] = field(init=False)
    alive: list[int] = field(init=False)
    diverged: dict[int, str] = field(default_factory=dict)
    history: list[list[tuple[int, dict[str, float]]]] = field(init=False)

    def __post_init__(self) -> None:
        self.sums = torch.zeros(3, self.n, dtype=torch.float64, device=self.device)
        self.last, self.alive = [{} for _ in range(self.n)], list(range(self.n))
        self.history = [[] for _ in range(self.n)]

    def state(self) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "n_sum": self.n_sum, "train_seconds": self.train_seconds,
                "last": self.last, "alive": self.alive, "diverged": self.diverged, "history": self.history}

    def restore(self, saved: dict[str, Any]) -> None:
        self.sums.copy_(saved["sums"].to(self.sums.device))
        self.n_sum, self.train_seconds = int(saved["n_sum"]), float(saved["train_seconds"])
        self.last, self.alive, self.history = saved["last"], list(saved["alive"]), saved["history"]
        self.diverged = dict(saved.get("diverged") or  # (a checkpoint of 0.3.0 kept the message among the metrics)
                             {i: str(m.pop("diverged")) for i, m in enumerate(self.last) if "diverged" in m})

    def drop_diverged(self, means: list[list[float]], step: int) -> None:
        """Lanes whose mean loss since the last evaluation is NaN/inf stop (one lane: raises)."""
        for i in list(self.alive):
            loss, nll, reg = means[0][i], means[1][i], means[2][i]
            if not math.isfinite(loss):
                message = (f"training diverged by step {step}: mean loss = {loss} (nll {nll}, R {reg}) since the "
                           f"previous evaluation; lower optimizer.lr or eps")
                if self.n == 1:
                    raise FloatingPointError(message)
                self.alive.remove(i)
                self.diverged[i] = message


@dataclass
class _Run:
    """The pieces of one ``train_lanes`` call that its loop body reads."""

    lanes: list[TrialConfig]
    model: nn.Module
    opt: torch.optim.Optimizer
    runs: list[LaneData]
    views: list[P.Lane]
    probes: list[P.Probe]
    bn_pools: list[Tensor] | None
    reports: list[Report] | None
    state: Any  # the method's (Method.init_state)
    progress: _Progress

    @property
    def cfg(self) -> TrialConfig:
        return self.lanes[0]

    def checkpoint_state(self, step: int) -> dict[str, Any]:
        """The training state after update ``step``: all a resumed run needs to go on identically."""
        return {"fingerprint": checkpoint.fingerprint(self.lanes), "step": step, "model": self.model.state_dict(),
                "opt": self.opt.state_dict(), "method_state": methods.state_dict(self.state),
                **self.progress.state(), **draws_state(self.runs, self.progress.device)}

    def resume(self, saved: dict[str, Any], reports: list[Report] | None) -> int:
        """Every state the loop carries back as the checkpoint has it, the reports made before
        made again; returns the first update still to run."""
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        methods.load_state(self.state, saved.get("method_state"))
        restore_draws(self.runs, saved, self.progress.device)
        self.progress.restore(saved)
        for i, h in enumerate(self.progress.history):
            for step, metrics in h:
                if reports is not None:
                    reports[i](step, dict(metrics))
        return int(saved["step"]) + 1

    def evaluate(self, step: int, lr: float, due_now: list[P.Probe], t_updates: float) -> None:
        """The evaluation after update ``step``: the mean loss terms since the last one, the
        validation error, the probes due and those following every evaluation; reported per lane."""
        pr, n = self.progress, len(self.lanes)
        means = (pr.sums / pr.n_sum).tolist()  # the one host sync per evaluation: the updates are done
        pr.train_seconds += time.perf_counter() - t_updates  # (on a GPU too, where a step only queues work)
        pr.sums.zero_()
        pr.n_sum = 0
        with evaluation_bn(self.model, self.bn_pools):
            val_errors = error_rates(self.model, [r.x_val for r in self.runs], [r.y_val for r in self.runs])
        pr.drop_diverged(means, step)
        measured = [p.measure(self.model, self.views, pr.alive) for p in self.probes
                    if p in due_now or p.follows_evaluation]
        for i in pr.alive:
            metrics = {"loss": means[0][i], "nll": means[1][i], "reg": means[2][i], "lr": lr,
                       "val_error": val_errors[i]}
            for m in measured:
                metrics.update(m[i])
            metrics["train_seconds"] = pr.train_seconds / n  # this lane's share of the updates' time
            pr.last[i].update(metrics)
            if self.reports is not None:
                self.reports[i](step, dict(metrics))
            if checkpoint.active.get() is not None:
                pr.history[i].append((step, dict(metrics)))
        if not pr.alive:
            raise FloatingPointError(f"training diverged for every lane by step {step}; lower optimizer.lr or eps")


def _random_starts(runs: list[LaneData]) -> Callable[[Tensor], Tensor]:
    """d0 for each lane's block of x, from that lane's generator."""
    n = len(runs)

    def random_start(x: Tensor) -> Tensor:
        if n == 1:
            return random_unit_direction(x, runs[0].start_gen)
        draws = [torch.randn(xb.shape, generator=r.start_gen, device=r.start_gen.device, dtype=x.dtype)
                 for xb, r in zip(x.chunk(n), runs)]
        return unit_vector(torch.cat(draws).to(x.device))  # = random_unit_direction per block (per sample)
    return random_start


def _setup(lanes: list[TrialConfig], x_train: Tensor, y_train: Tensor, splits: list[Splits], model: nn.Module,
           reports: list[Report] | None, test: tuple[Tensor, Tensor] | None) -> _Run:
    cfg, n = lanes[0], len(lanes)
    runs = [LaneData.make(c, c.seed, sp, x_train, y_train) for c, sp in zip(lanes, splits)]
    lane_models = (lambda i: model.lane_model(i)) if n > 1 else (lambda i: model)  # noqa: E731
    views = [P.Lane(c, r.probe_images, r.reg_pool, r.probe_gen, lambda i=i: lane_models(i), test)
             for i, (c, r) in enumerate(zip(lanes, runs))]
    method = methods.get(cfg.method.name)
    state = method.init_state(cfg.method, model) if method.init_state is not None else None
    return _Run(lanes, model, adam(cfg, model), runs, views, P.training_probes(cfg),
                [r.reg_pool for r in runs] if cfg.task.eval_bn == "recompute" else None, reports, state,
                _Progress(n, x_train.device))


def train_lanes(lanes: list[TrialConfig], x_train: Tensor, y_train: Tensor, splits: list[Splits], model: nn.Module,
                reports: list[Report] | None = None, test: tuple[Tensor, Tensor] | None = None) -> list[LaneOutcome]:
    """Train S lanes at once: ``model`` is a ``LaneBatch`` of S networks (or, for S = 1, the plain
    network); lane i trains as ``lanes[i]`` says, with ``splits[i]``, its own seed's batches,
    augmentation and random starts, its own lane settings (eps, alpha, xi; the noise SD is built
    into its network), and ``reports[i]``. The lanes agree on everything else (``lane_structure``);
    the first one's config drives the loop. Returns how each lane ended (``LaneOutcome``). A lane
    whose loss turns NaN/inf is dropped (its outcome says ``diverged``, with the message) while the
    others go on: the lanes share no weights, so its NaNs never reach them; with one lane that
    raises FloatingPointError. ``test`` (images, labels): the test set, measured once at the end
    (``test_error``) and by the ``test_curve`` probe; the only use of the test set. Every error is
    measured with the BN statistics ``task.eval_bn`` names; the probes measure with training's
    running statistics. Inside ``checkpoint.checkpoints`` the run checkpoints and resumes."""
    run = _setup(lanes, x_train, y_train, splits, model, reports, test)
    cfg, n, pr = run.cfg, len(lanes), run.progress
    values = lane_values(lanes, x_train.device, x_train.dtype) if n > 1 else {}
    random_start = _random_starts(run.runs)
    augmenting = x_train.dim() == 4 and (cfg.task.augment.translate > 0 or cfg.task.augment.flip)
    ck = checkpoint.active.get()
    saved = checkpoint.load_checkpoint(ck, checkpoint.fingerprint(lanes)) if ck is not None else None
    first = run.resume(saved, reports) if saved is not None else 1
    t_updates = time.perf_counter()  # start of the updates since the last evaluation
    for step in range(first, cfg.task.steps + 1):
        if ck is not None and step > first and (step - 1) % ck.every == 0:  # the state after update step - 1
            checkpoint.save_checkpoint(ck, run.checkpoint_state(step - 1))
        lr, beta1 = learning_rate(cfg, step - 1)
        for group in run.opt.param_groups:
            group["lr"], group["betas"] = lr, (beta1, cfg.task.optimizer.beta2)
        x_l, y_l, x_reg = next_batches(cfg, run.runs, x_train, y_train, augmenting)
        losses = train_step(cfg, model, run.opt, x_l, y_l, x_reg, n, random_start, values, step=step, state=run.state)
        pr.sums += torch.stack(losses)
        pr.n_sum += 1
        due_now = [p for p in run.probes if p.due(step)]
        if step % cfg.task.eval_every == 0 or step == cfg.task.steps or due_now:
            run.evaluate(step, lr, due_now, t_updates)
            t_updates = time.perf_counter()
    for m in pr.last:
        m["train_seconds"] = pr.train_seconds / n
    if test is not None:
        with evaluation_bn(model, run.bn_pools):
            test_errors = error_rates(model, [test[0]] * n, [test[1]] * n)
        for i in pr.alive:
            pr.last[i]["test_error"] = test_errors[i]
    return [LaneOutcome(m, pr.diverged.get(i)) for i, m in enumerate(pr.last)]
