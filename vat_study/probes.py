"""Measurements taken during training. None of them changes the training run: each uses its own
random generator and restores the model's mode, and none updates BN running statistics.

* ``rvadv``: R_vadv (Eq. 7) on a fixed subset at a fixed evaluation eps and K, model in eval
  mode (Fig. 2, Fig. 4); ``rvadv_train`` beside it: the same in train mode, each pass as
  training makes it (``methods.Implementation``), BN on batches of the regularizer's size.
* ``grad_sd_norm``: the normalized SD norm of grad_theta R^(K) over resampled mini-batches and
  perturbations (Eq. 21, Fig. 7), model in train mode (as the gradient is used in training).
* ``power_iteration_fidelity``: |cos| between the direction a setting (K, xi, method) produces
  and the dominant eigenvector of H (Eq. 9-10), from many exact Hessian-vector products.

The training loop calls them through probe objects (``training_probes``): each says when it is
due (``due(step)``) and measures every lane of the model at once or one lane at a time
(``measure(model, lanes, alive) -> {lane: metrics}``). A new probe is one class here and one
line in ``training_probes``; its metric names are constants here, shared with ``analysis/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from .methods import Implementation, implementation_of, power_method
from .regularizers import (
    DirectionMethod,
    frozen_batch_stats,
    lds,
    random_unit_direction,
    regularizer_lds,
    virtual_adversarial_direction,
)

if TYPE_CHECKING:
    from .config import TrialConfig

from .vocabulary import (  # noqa: F401  (the metric names, re-exported: defined where the config reads them)
    DIAGNOSTICS,
    FIDELITY,
    GRAD_SD_NORM_PREFIX,
    RVADV,
    RVADV_TRAIN,
    TEST_CURVE,
    grad_sd_norm_name,
)


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t


def rvadv_seeds(
    model: nn.Module,
    xs: list[Tensor],
    *,
    eps: float,
    power_iterations: int = 1,
    xi: float | list[float],
    method: DirectionMethod = "finite_difference",
    seeds: list[int],
    chunk: int = 500,
    train_mode: Implementation | None = None,
) -> list[float]:
    """Mean LDS(x, theta) at r = eps * d_K over ``xs[i]`` (Eq. 5, 7), model in eval mode, for each
    seed's network of a ``LaneBatch`` at once (one plain network: one seed), with the random
    starts of ``seeds[i]`` for seed i (so successive measurements during training differ only
    through the model): the same numbers as for
    each network alone. The sets in ``xs`` have equal sizes. ``xi``: one value, or one per
    network (lanes).

    ``train_mode``: measure R_vadv as training sees it instead: the model in train mode, each
    pass in the mode this implementation block (``regularizer_lds``'s ``implementation``) gives it
    (dropout / noise, BN on each ``chunk``'s own statistics or the running ones), noise drawn from
    a forked RNG seeded by ``seeds[0]`` (the training run's stream is untouched)."""
    n = len(xs[0])
    if any(len(x) != n for x in xs) or len(seeds) != len(xs):
        raise ValueError(f"rvadv_seeds: one set and one seed per network, sets of equal size; got sizes "
                         f"{[len(x) for x in xs]} and {len(seeds)} seeds")
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    xi_per_net = torch.tensor(xi, dtype=xs[0].dtype, device=xs[0].device) if isinstance(xi, list) else None
    totals = torch.zeros(len(xs), dtype=torch.float64, device=xs[0].device)
    devices = [xs[0].device] if xs[0].device.type == "cuda" else []
    with _mode(model, train_mode is not None), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seeds[0])
        for lo in range(0, n, chunk):
            blocks = [x[lo : lo + chunk] for x in xs]
            xb = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
            d0 = torch.cat([random_unit_direction(b, g) for b, g in zip(blocks, gens)])
            xi_b = xi if xi_per_net is None else xi_per_net.repeat_interleave(len(blocks[0]))
            if train_mode is not None:
                values, _ = regularizer_lds(model, xb, eps=eps, xi=xi_b, power_iterations=power_iterations,
                                            method=method, d0=d0, implementation=train_mode)
                totals += values.detach().double().view(len(xs), -1).sum(1)
                continue
            d = virtual_adversarial_direction(model, xb, xi=xi_b, power_iterations=power_iterations, method=method,
                                              d0=d0)
            with torch.no_grad():
                totals += lds(model, xb, eps * d).double().view(len(xs), -1).sum(1)
    return [t / n for t in totals.tolist()]


def grad_sd_norm(
    model: nn.Module,
    pool: Tensor,
    *,
    eps: float,
    power_iterations: int,
    xi: float,
    method: DirectionMethod = "finite_difference",
    batch: int,
    samples: int,
    generator: torch.Generator,
) -> float:
    """Normalized SD norm of g = grad_theta R^(K)(theta; D_M, r_K) (Eq. 21):

        sqrt(trace Var[g]) / ||E[g]||_2,

    estimated from ``samples`` draws of a mini-batch D_M (size ``batch`` from ``pool``) and of
    the random start of r_K. Var uses the unbiased estimator; sums are kept in float64.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    s1 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    s2 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    # Directions draw from the global RNG; fork it so the training run's stream is untouched.
    devices = [pool.device] if pool.device.type == "cuda" else []
    with _mode(model, True), torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        for _ in range(samples):
            idx = torch.randperm(len(pool), generator=generator)[: min(batch, len(pool))]
            xb = pool[idx.to(pool.device)]
            with frozen_batch_stats(model), torch.no_grad():
                logits = model(xb)
            d = virtual_adversarial_direction(model, xb, logits, xi=xi, power_iterations=power_iterations,
                                              method=method)
            reg = lds(model, xb, eps * d, logits).mean()
            grads = torch.autograd.grad(reg, params, allow_unused=True)
            for a, b, g in zip(s1, s2, grads):
                if g is not None:
                    g = g.double()
                    a += g
                    b += g * g
    n = float(samples)
    trace_var = sum(float(((b - a * a / n) / (n - 1)).clamp_min(0).sum()) for a, b in zip(s1, s2))
    mean_norm = sum(float((a / n).pow(2).sum()) for a in s1) ** 0.5
    if mean_norm == 0.0:
        return float("inf") if trace_var > 0 else 0.0
    return trace_var**0.5 / mean_norm


def dominant_eigenvector(model: nn.Module, x: Tensor, *, iterations: int = 50, seed: int = 1) -> Tensor:
    """Per-sample dominant eigenvector of H (Eq. 9) by ``iterations`` exact Hessian-vector power
    iterations in the model's current mode; unit norm per sample."""
    gen = torch.Generator().manual_seed(seed)
    return virtual_adversarial_direction(model, x, power_iterations=iterations, method="hvp", generator=gen)


def power_iteration_fidelity(
    model: nn.Module,
    x: Tensor,
    *,
    xi: float,
    power_iterations: int,
    method: DirectionMethod = "finite_difference",
    reference_iterations: int = 50,
    seed: int = 0,
    precision: str = "float32",
) -> float:
    """Mean over x of |cos(d, u)|: d the direction of the given setting, u the dominant
    eigenvector of H from ``reference_iterations`` exact HVP iterations (eval mode, float32).
    ``precision`` (``task.precision``): the arithmetic d is computed in, as training computes it
    (bfloat16: under a bfloat16 autocast; mixed: the power iteration in float32)."""
    with _mode(model, False):
        u = dominant_eigenvector(model, x, iterations=reference_iterations, seed=seed + 1)
        gen = torch.Generator().manual_seed(seed)
        with working_precision(precision, x.device):
            d = virtual_adversarial_direction(model, x, xi=xi, power_iterations=power_iterations,
                                              method=method, generator=gen,
                                              products=power_products(precision, method))
    return float((d.to(u.dtype).flatten(1) * u.flatten(1)).sum(1).abs().mean())


def hd_cosine(model: nn.Module, x: Tensor, *, xi: float, precision: str = "float32", seed: int = 0) -> float:
    """Mean over x of cos(d_1, H d_0 / ||H d_0||): one finite-difference power iteration (Eq. 12-13)
    from a random unit d_0, computed in ``precision`` as training computes it, against the exact
    H d_0 from the same d_0 (double back-propagation, float32), eval mode. 1: Eq. 12 gives H d_0;
    about 0: the finite difference is lost in rounding (xi too small for the precision)."""
    with _mode(model, False):
        d0 = random_unit_direction(x, torch.Generator().manual_seed(seed))
        exact = virtual_adversarial_direction(model, x, power_iterations=1, method="hvp", d0=d0)
        with working_precision(precision, x.device):
            d1 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d0,
                                               products=power_products(precision))
    return float((d1.to(exact.dtype).flatten(1) * exact.flatten(1)).sum(1).mean())


def power_products(precision: str, method: str = "finite_difference") -> str:
    """The power iteration's products under ``task.precision``: bfloat16 on the difference from the
    clean pass for mixed_delta (``difference``), float32 (or the autocast's) otherwise."""
    return "bfloat16" if precision == "mixed_delta" and method == "finite_difference" else "float32"


def working_precision(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The arithmetic of the power iteration under ``task.precision``: a bfloat16 autocast for
    bfloat16, none for float32 and mixed (mixed runs the power iteration in float32)."""
    if precision == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def diagnostics(model: nn.Module, x: Tensor, *, eps: float, xi: float, seed: int = 0,
                precision: str = "float32") -> dict[str, float]:
    """The diagnostics probe's metrics for one network on the images ``x`` (``DIAGNOSTICS``):

    * ``entropy_*``: mean entropy of p(y|x) (nats; log 10 = 2.30 is uniform over 10 classes),
      ``top_class_*``: the share of the images predicted as the most frequent class,
      ``classes_*``: how many classes get at least 1 % of the predictions, and the histograms;
      ``eval``: eval mode (what is measured), ``train``: train mode with the noise on (what the
      regularizer's passes see), BN on the images' own statistics, running statistics untouched;
    * ``kl_xi``, ``kl_eps``: KL(p(x) || p(x + r)) at r = xi d and r = eps d, d the direction one
      power iteration gives (eval mode); ``quadratic_ratio`` = (kl_eps / eps^2) / (kl_xi / xi^2):
      1 where the second-order expansion of Eq. 9 holds from xi up to eps, far below 1 where the
      KL at eps has saturated (eps beyond the quadratic regime), NaN where kl_xi is 0 (the xi
      pass lost in rounding);
    * ``power_cosine``: |cos(d_1, d_2)| of two successive power iterates (1: converged);
    * ``xi_underflow``: the share of the components of xi d that vanish in x + xi d at the
      working precision (x + xi d == x; in bfloat16: as the first layer's input is rounded);
    * ``hd_cosine``: cos of one finite-difference iteration to the exact H d from the same start
      (``hd_cosine``), in the working precision.

    ``precision`` (``task.precision``): the arithmetic of the power iteration as training runs it
    (``working_precision``); the entropies and histograms are measured in float32.
    """
    out: dict[str, float] = {}
    gen = torch.Generator().manual_seed(seed)
    devices = [x.device] if x.device.type == "cuda" else []
    with frozen_batch_stats(model), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name, training in (("eval", False), ("train", True)):
            with _mode(model, training), torch.no_grad():
                logits = model(x)
            log_p = torch.log_softmax(logits.double(), 1)
            out[f"entropy_{name}"] = float(-(log_p.exp() * log_p).sum(1).mean())
            hist = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double() / len(x)
            out[f"top_class_{name}"] = float(hist.max())
            out[f"classes_{name}"] = float((hist >= 0.01).sum())
            for k, v in enumerate(hist.tolist()):
                out[f"pred_{name}_c{k}"] = v
        with _mode(model, False), working_precision(precision, x.device):
            d0 = random_unit_direction(x, gen)
            products = power_products(precision)
            d1 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d0, products=products).to(x.dtype)
            d2 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d1, products=products).to(x.dtype)
            with torch.no_grad():
                kl_xi = float(lds(model, x, xi * d1).double().mean())
                kl_eps = float(lds(model, x, eps * d1).double().mean())
        out["hd_cosine"] = hd_cosine(model, x, xi=xi, precision=precision, seed=seed)
    out["kl_xi"], out["kl_eps"] = kl_xi, kl_eps
    out["quadratic_ratio"] = (kl_eps / eps**2) / (kl_xi / xi**2) if kl_xi > 0 else float("nan")
    out["power_cosine"] = float((d1.flatten(1) * d2.flatten(1)).sum(1).abs().mean())
    r = xi * d1
    rounded = (lambda v: v.bfloat16()) if precision == "bfloat16" else (lambda v: v)  # noqa: E731
    lost = rounded(x + r) == rounded(x)
    out["xi_underflow"] = float(lost[r != 0].double().mean()) if bool((r != 0).any()) else 1.0
    return out


# ------------------------------------------------------------------------------ probe objects


@dataclass(frozen=True)
class Lane:
    """What a probe sees of one lane (one trial) of the model being trained."""

    cfg: TrialConfig  # the lane's own config (its eps, xi, seed)
    x_rvadv: Tensor  # the fixed images R_vadv is measured on
    x_fid: Tensor | None  # the fixed images the fidelity is measured on
    reg_pool: Tensor  # the pool the regularizer's batches come from (gradient variance)
    probe_gen: torch.Generator  # the lane's probe stream (gradient variance)
    net: Callable[[], nn.Module]  # the lane's own network as a plain module


class Probe(Protocol):
    def due(self, step: int) -> bool:
        """Whether the probe measures after update ``step``."""
        ...

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        """Metrics for each lane in ``alive`` (``model``: all lanes as one batched network)."""
        ...


def _regularizer_batch(cfg: TrialConfig) -> int:
    """The size of the batches R is computed on (the unlabeled batch; supervised: the labeled one)."""
    return cfg.task.batch.unlabeled if cfg.task.mode == "semi_supervised" else cfg.task.batch.labeled


@dataclass(frozen=True)
class _Every:
    every: int
    last: int  # the run's last step: always measured
    steps: tuple[int, ...] | None = None  # explicit steps instead of every

    def due(self, step: int) -> bool:
        if self.steps is not None:
            return step in self.steps
        return step % self.every == 0 or step == self.last


class _Scheduled:
    """A probe measuring on the steps its ``when`` (``_Every``) names."""

    when: _Every

    def due(self, step: int) -> bool:
        return self.when.due(step)


class RvadvHook(_Scheduled):
    """``rvadv`` (eval mode) and ``rvadv_train`` (as training computes it: train mode, each pass as
    ``cfg.method.implementation`` makes it, BN on batches of the regularizer's size), every lane at once."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg, self.when = cfg, _Every(cfg.probes.rvadv.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        cfg, rv = self.cfg, self.cfg.probes.rvadv
        xis = [power_method(lane.cfg.method)["xi"] for lane in lanes]
        common: dict[str, Any] = dict(eps=rv.eps, power_iterations=rv.power_iterations,
                                      method=power_method(cfg.method)["method"],
                                      xi=xis[0] if len(set(xis)) == 1 else xis,
                                      seeds=[lane.cfg.seed for lane in lanes])
        xs = [lane.x_rvadv for lane in lanes]
        evals = rvadv_seeds(model, xs, **common)
        trains = rvadv_seeds(model, xs, **common, train_mode=implementation_of(cfg.method),
                             chunk=_regularizer_batch(cfg))
        return {i: {RVADV: evals[i], RVADV_TRAIN: trains[i]} for i in alive}


class FidelityHook(_Scheduled):
    """``fidelity`` of the training setting's direction (K, the lane's xi, direction), one lane at a time."""

    def __init__(self, cfg: TrialConfig) -> None:
        fid = cfg.probes.fidelity
        assert fid is not None
        self.cfg, self.fid, self.when = cfg, fid, _Every(fid.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        return {i: {FIDELITY: power_iteration_fidelity(
            lanes[i].net(), lanes[i].x_fid, power_iterations=self.cfg.k, **power_method(lanes[i].cfg.method),
            reference_iterations=self.fid.reference_iterations, seed=lanes[i].cfg.seed,
            precision=lanes[i].cfg.task.precision)}
            for i in alive}


class GradVarianceHook(_Scheduled):
    """``grad_sd_norm_k{K}`` for each K of the probe (Eq. 21, Fig. 7), one lane at a time."""

    def __init__(self, cfg: TrialConfig) -> None:
        gv = cfg.probes.grad_variance
        assert gv is not None
        self.cfg, self.gv = cfg, gv
        self.when = _Every(gv.every or cfg.task.eval_every, cfg.task.steps, tuple(gv.steps) if gv.steps is not None else None)

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        cfg, gv = self.cfg, self.gv
        batch = gv.batch or _regularizer_batch(cfg)
        out: dict[int, dict[str, float]] = {}
        for i in alive:
            lane, net = lanes[i], lanes[i].net()
            out[i] = {grad_sd_norm_name(k): grad_sd_norm(
                net, lane.reg_pool, eps=gv.eps or getattr(lane.cfg.method, "eps", None) or cfg.probes.rvadv.eps,
                power_iterations=k, **power_method(lane.cfg.method), batch=batch, samples=gv.samples, generator=lane.probe_gen)
                for k in gv.power_iterations}
        return out


class DiagnosticsHook(_Scheduled):
    """``diagnostics`` of each lane's network at its own eps and xi, one lane at a time."""

    def __init__(self, cfg: TrialConfig) -> None:
        dg = cfg.probes.diagnostics
        assert dg is not None
        self.cfg, self.dg, self.when = cfg, dg, _Every(dg.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list[Lane], alive: list[int]) -> dict[int, dict[str, float]]:
        out = {}
        for i in alive:
            m = lanes[i].cfg.method
            eps = getattr(m, "eps", None) or self.cfg.probes.rvadv.eps  # baseline: the probe's eps
            out[i] = diagnostics(lanes[i].net(), lanes[i].x_rvadv[: self.dg.size], eps=eps,
                                 xi=power_method(m)["xi"], seed=lanes[i].cfg.seed,
                                 precision=lanes[i].cfg.task.precision)
        return out


def training_probes(cfg: TrialConfig) -> list[Probe]:
    """The probes a trial's config turns on, in the order their metrics are reported."""
    out: list[Probe] = [RvadvHook(cfg)]
    if cfg.probes.fidelity is not None:
        out.append(FidelityHook(cfg))
    if cfg.probes.grad_variance is not None:
        out.append(GradVarianceHook(cfg))
    if cfg.probes.diagnostics is not None:
        out.append(DiagnosticsHook(cfg))
    return out
