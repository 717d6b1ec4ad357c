"""``rvadv``: R_vadv (Eq. 7) on the first ``size`` fixed probe images at a fixed evaluation eps and
K, every lane at once (Fig. 2, Fig. 4): ``rvadv`` in eval mode, ``rvadv_train`` beside it as
training computes it (train mode, each pass as the method's ``implementation`` makes it, BN on
batches of the regularizer's size). On by default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...common.validation import Strict
from ..vocabulary import RVADV, RVADV_TRAIN
from . import Every, ProbeEntry, Scheduled, register, regularizer_batch

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..methods import Implementation


class RvadvProbe(Strict):
    """R_vadv (Eq. 7) measured in eval mode on a fixed subset at a fixed eps and K (Fig. 2, 4)."""

    eps: float = Field(2.0, gt=0, description="evaluation eps (Fig. 2 uses 2.0 on MNIST)")
    power_iterations: int = Field(1, ge=0, description="K of the measured R_vadv")
    size: int = Field(1000, ge=1, description="images measured (the first of the probe set)")
    every: int | None = Field(None, ge=1, description="steps between measurements (default: eval_every)")


def rvadv_seeds(model: nn.Module, xs: list[Tensor], *, eps: float, power_iterations: int = 1,
                xi: float | list[float], method: str = "finite_difference", seeds: list[int], chunk: int = 500,
                train_mode: Implementation | None = None) -> list[float]:
    """Mean LDS(x, theta) at r = eps * d_K over ``xs[i]`` (Eq. 5, 7), model in eval mode, for each
    seed's network of a ``LaneBatch`` at once (one plain network: one seed), with the random
    starts of ``seeds[i]`` for seed i (so successive measurements during training differ only
    through the model): the same numbers as for each network alone. The sets in ``xs`` have equal
    sizes. ``xi``: one value, or one per network (lanes).

    ``train_mode``: measure R_vadv as training sees it instead: the model in train mode, each
    pass in the mode this implementation block (``regularizer_lds``'s ``implementation``) gives it
    (dropout / noise, BN on each ``chunk``'s own statistics or the running ones), noise drawn from
    a forked RNG seeded by ``seeds[0]`` (the training run's stream is untouched)."""
    import torch

    from ..regularizers import lds, random_unit_direction, regularizer_lds, virtual_adversarial_direction
    from .fidelity import model_mode

    n = len(xs[0])
    if any(len(x) != n for x in xs) or len(seeds) != len(xs):
        raise ValueError(f"rvadv_seeds: one set and one seed per network, sets of equal size; got sizes "
                         f"{[len(x) for x in xs]} and {len(seeds)} seeds")
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    xi_per_net = torch.tensor(xi, dtype=xs[0].dtype, device=xs[0].device) if isinstance(xi, list) else None
    totals = torch.zeros(len(xs), dtype=torch.float64, device=xs[0].device)
    devices = [xs[0].device] if xs[0].device.type == "cuda" else []
    with model_mode(model, train_mode is not None), torch.random.fork_rng(devices=devices):
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


class RvadvHook(Scheduled):
    """``rvadv`` and ``rvadv_train`` of every lane at once."""

    def __init__(self, cfg: Any, rv: RvadvProbe) -> None:
        self.cfg, self.rv, self.when = cfg, rv, Every(rv.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list, alive: list[int]) -> dict[int, dict[str, float]]:
        from ..methods import implementation_of, power_method

        cfg, rv = self.cfg, self.rv
        xis = [power_method(lane.cfg.method)["xi"] for lane in lanes]
        common: dict[str, Any] = dict(eps=rv.eps, power_iterations=rv.power_iterations,
                                      method=power_method(cfg.method)["method"],
                                      xi=xis[0] if len(set(xis)) == 1 else xis,
                                      seeds=[lane.cfg.seed for lane in lanes])
        xs = [lane.probe_images(rv.size) for lane in lanes]
        evals = rvadv_seeds(model, xs, **common)
        trains = rvadv_seeds(model, xs, **common, train_mode=implementation_of(cfg.method), chunk=regularizer_batch(cfg))
        return {i: {RVADV: evals[i], RVADV_TRAIN: trains[i]} for i in alive}


ENTRY = register(ProbeEntry("rvadv", "R_vadv at a fixed eps and K on fixed images, eval and train mode (Fig. 2, 4)",
                            RvadvProbe, RvadvProbe(), lambda s, cfg: (RVADV, RVADV_TRAIN), RvadvHook))
