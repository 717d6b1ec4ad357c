"""``fidelity``: |cos| between the direction a setting (K, xi, method) produces and the dominant
eigenvector of H (Eq. 9-10), from many exact Hessian-vector products, one lane at a time; with
``hd_cosine`` (one finite-difference iteration against the exact H d) and the precision helper the
other probes share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...common.validation import Strict
from ..vocabulary import FIDELITY
from . import Every, ProbeEntry, Scheduled, register

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class FidelityProbe(Strict):
    """|cos| between the direction training uses and the dominant eigenvector of H (Eq. 9-10),
    estimated by ``reference_iterations`` exact Hessian-vector power iterations, eval mode."""

    size: int = Field(100, ge=1)
    reference_iterations: int = Field(50, ge=1)
    every: int | None = Field(None, ge=1)


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """The model in train / eval mode inside the block; every module's own mode restored after."""
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t


def working_precision(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The arithmetic of the power iteration under ``task.precision``: a bfloat16 autocast for
    bfloat16, none for float32 and mixed (mixed runs the power iteration in float32)."""
    import torch

    if precision == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dominant_eigenvector(model: nn.Module, x: Tensor, *, iterations: int = 50, seed: int = 1) -> Tensor:
    """Per-sample dominant eigenvector of H (Eq. 9) by ``iterations`` exact Hessian-vector power
    iterations in the model's current mode; unit norm per sample."""
    import torch

    from ..regularizers import virtual_adversarial_direction

    gen = torch.Generator().manual_seed(seed)
    return virtual_adversarial_direction(model, x, power_iterations=iterations, method="hvp", generator=gen)


def power_iteration_fidelity(model: nn.Module, x: Tensor, *, xi: float, power_iterations: int,
                             method: str = "finite_difference", reference_iterations: int = 50, seed: int = 0,
                             precision: str = "float32") -> float:
    """Mean over x of |cos(d, u)|: d the direction of the given setting, u the dominant
    eigenvector of H from ``reference_iterations`` exact HVP iterations (eval mode, float32).
    ``precision`` (``task.precision``): the arithmetic d is computed in, as training computes it
    (bfloat16: under a bfloat16 autocast; mixed: the power iteration in float32)."""
    import torch

    from ..regularizers import virtual_adversarial_direction

    with model_mode(model, False):
        u = dominant_eigenvector(model, x, iterations=reference_iterations, seed=seed + 1)
        gen = torch.Generator().manual_seed(seed)
        with working_precision(precision, x.device):
            d = virtual_adversarial_direction(model, x, xi=xi, power_iterations=power_iterations,
                                              method=method, generator=gen)
    return float((d.to(u.dtype).flatten(1) * u.flatten(1)).sum(1).abs().mean())


def hd_cosine(model: nn.Module, x: Tensor, *, xi: float, precision: str = "float32", seed: int = 0) -> float:
    """Mean over x of cos(d_1, H d_0 / ||H d_0||): one finite-difference power iteration (Eq. 12-13)
    from a random unit d_0, computed in ``precision`` as training computes it, against the exact
    H d_0 from the same d_0 (double back-propagation, float32), eval mode. 1: Eq. 12 gives H d_0;
    about 0: the finite difference is lost in rounding (xi too small for the precision)."""
    import torch

    from ..regularizers import random_unit_direction, virtual_adversarial_direction

    with model_mode(model, False):
        d0 = random_unit_direction(x, torch.Generator().manual_seed(seed))
        exact = virtual_adversarial_direction(model, x, power_iterations=1, method="hvp", d0=d0)
        with working_precision(precision, x.device):
            d1 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d0)
    return float((d1.to(exact.dtype).flatten(1) * exact.flatten(1)).sum(1).mean())


class FidelityHook(Scheduled):
    """``fidelity`` of the training setting's direction (K, the lane's xi, direction), one lane at a time."""

    def __init__(self, cfg: Any, fid: FidelityProbe) -> None:
        self.cfg, self.fid, self.when = cfg, fid, Every(fid.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list, alive: list[int]) -> dict[int, dict[str, float]]:
        from ..methods import power_method

        return {i: {FIDELITY: power_iteration_fidelity(
            lanes[i].net(), lanes[i].probe_images(self.fid.size), power_iterations=self.cfg.k,
            **power_method(lanes[i].cfg.method), reference_iterations=self.fid.reference_iterations,
            seed=lanes[i].cfg.seed, precision=lanes[i].cfg.task.precision)} for i in alive}


ENTRY = register(ProbeEntry("fidelity", "|cos| of the training direction to H's dominant eigenvector (Eq. 9-10)",
                            FidelityProbe, None, lambda s, cfg: (FIDELITY,), FidelityHook))
