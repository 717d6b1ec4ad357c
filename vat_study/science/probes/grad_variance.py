"""``grad_variance``: the normalized SD norm of grad_theta R^(K) (Eq. 21, Fig. 7) from resampled
mini-batches and perturbations, for each K of the probe, one lane at a time, model in train mode
(as the gradient is used in training)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ...common.validation import Strict
from ..vocabulary import grad_sd_norm_name
from . import Every, ProbeEntry, Scheduled, register, regularizer_batch

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class GradVarianceProbe(Strict):
    """Normalized SD norm of grad_theta R^(K) (Eq. 21) from ``samples`` resampled mini-batches and
    perturbations, for each K in ``power_iterations`` (Fig. 7: K = 0 vs 1)."""

    power_iterations: list[int] = Field(default_factory=lambda: [0, 1])
    samples: int = Field(20, ge=2)
    batch: int | None = Field(None, ge=1, description="M (default: the regularizer batch)")
    eps: float | None = Field(None, gt=0, description="default: the trial's eps")
    every: int | None = Field(None, ge=1)
    steps: list[int] | None = Field(None, description="explicit steps to measure at (instead of every)")

    @field_validator("power_iterations")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        if not v or any(k < 0 for k in v):
            raise ValueError("must be a non-empty list of integers >= 0")
        return v


def grad_sd_norm(model: nn.Module, pool: Tensor, *, eps: float, power_iterations: int, xi: float,
                 method: str = "finite_difference", batch: int, samples: int, generator: torch.Generator) -> float:
    """Normalized SD norm of g = grad_theta R^(K)(theta; D_M, r_K) (Eq. 21):

        sqrt(trace Var[g]) / ||E[g]||_2,

    estimated from ``samples`` draws of a mini-batch D_M (size ``batch`` from ``pool``) and of
    the random start of r_K. Var uses the unbiased estimator; sums are kept in float64.
    """
    import torch

    from ..regularizers import frozen_batch_stats, lds, virtual_adversarial_direction
    from .fidelity import model_mode

    params = [p for p in model.parameters() if p.requires_grad]
    s1 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    s2 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    # Directions draw from the global RNG; fork it so the training run's stream is untouched.
    devices = [pool.device] if pool.device.type == "cuda" else []
    with model_mode(model, True), torch.random.fork_rng(devices=devices):
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


class GradVarianceHook(Scheduled):
    """``grad_sd_norm_k{K}`` for each K of the probe, one lane at a time."""

    def __init__(self, cfg: Any, gv: GradVarianceProbe) -> None:
        self.cfg, self.gv = cfg, gv
        self.when = Every(gv.every or cfg.task.eval_every, cfg.task.steps,
                          tuple(gv.steps) if gv.steps is not None else None)

    def measure(self, model: nn.Module, lanes: list, alive: list[int]) -> dict[int, dict[str, float]]:
        from ..methods import power_method

        cfg, gv = self.cfg, self.gv
        batch = gv.batch or regularizer_batch(cfg)
        out: dict[int, dict[str, float]] = {}
        for i in alive:
            lane, net = lanes[i], lanes[i].net()
            out[i] = {grad_sd_norm_name(k): grad_sd_norm(
                net, lane.reg_pool, eps=gv.eps or getattr(lane.cfg.method, "eps", None) or cfg.probes.rvadv.eps,
                power_iterations=k, **power_method(lane.cfg.method), batch=batch, samples=gv.samples,
                generator=lane.probe_gen) for k in gv.power_iterations}
        return out


ENTRY = register(ProbeEntry("grad_variance", "the normalized SD norm of grad R^(K) per K (Eq. 21, Fig. 7)",
                            GradVarianceProbe, None,
                            lambda s, cfg: {grad_sd_norm_name(k) for k in s.power_iterations}, GradVarianceHook))
