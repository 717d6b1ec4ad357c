"""``diagnostics``: per-step diagnostics of a collapse (docs/science.md, "What happens to VAT at eps
1-2"), each lane's network at its own eps and xi, one lane at a time: the entropy of p(y|x) and
the histogram of predicted classes (eval and train mode), KL at xi d against KL at eps d, the
cosine between successive power iterates, the share of xi d lost in rounding, and hd_cosine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ...common.validation import Strict
from ..vocabulary import DIAGNOSTICS
from . import Every, ProbeEntry, Scheduled, register

if TYPE_CHECKING:
    from torch import Tensor, nn


class DiagnosticsProbe(Strict):
    """Per-step diagnostics of a collapse (docs/science.md, "What happens to VAT at eps 1-2"), on the first
    ``size`` probe images (at most ``rvadv.size``: the R_vadv probe's images): the entropy of p(y|x) and the
    histogram of predicted classes (eval mode and train mode), KL at xi d against KL at eps d (is the finite
    difference of Eq. 12 in its quadratic regime, and is eps?), the cosine between successive power iterates,
    and the fraction of the components of xi d that vanish when added to x in the working precision."""

    size: int = Field(256, ge=2)
    every: int | None = Field(None, ge=1, description="steps between measurements (default: eval_every)")


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
      (``fidelity.hd_cosine``), in the working precision.

    ``precision`` (``task.precision``): the arithmetic of the power iteration as training runs it
    (``working_precision``); the entropies and histograms are measured in float32.
    """
    import torch

    from ..regularizers import frozen_batch_stats, lds, random_unit_direction, virtual_adversarial_direction
    from .fidelity import hd_cosine, model_mode, working_precision

    out: dict[str, float] = {}
    gen = torch.Generator().manual_seed(seed)
    devices = [x.device] if x.device.type == "cuda" else []
    with frozen_batch_stats(model), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name, training in (("eval", False), ("train", True)):
            with model_mode(model, training), torch.no_grad():
                logits = model(x)
            log_p = torch.log_softmax(logits.double(), 1)
            out[f"entropy_{name}"] = float(-(log_p.exp() * log_p).sum(1).mean())
            hist = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double() / len(x)
            out[f"top_class_{name}"] = float(hist.max())
            out[f"classes_{name}"] = float((hist >= 0.01).sum())
            for k, v in enumerate(hist.tolist()):
                out[f"pred_{name}_c{k}"] = v
        with model_mode(model, False), working_precision(precision, x.device):
            d0 = random_unit_direction(x, gen)
            d1 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d0).to(x.dtype)
            d2 = virtual_adversarial_direction(model, x, xi=xi, power_iterations=1, d0=d1).to(x.dtype)
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


class DiagnosticsHook(Scheduled):
    """``diagnostics`` of each lane's network at its own eps and xi, one lane at a time."""

    def __init__(self, cfg: Any, dg: DiagnosticsProbe) -> None:
        self.cfg, self.dg, self.when = cfg, dg, Every(dg.every or cfg.task.eval_every, cfg.task.steps)

    def measure(self, model: nn.Module, lanes: list, alive: list[int]) -> dict[int, dict[str, float]]:
        from ..methods import power_method

        size = min(self.dg.size, self.cfg.probes.rvadv.size)  # among the R_vadv probe's images
        out = {}
        for i in alive:
            m = lanes[i].cfg.method
            eps = getattr(m, "eps", None) or self.cfg.probes.rvadv.eps  # baseline: the probe's eps
            out[i] = diagnostics(lanes[i].net(), lanes[i].probe_images(size), eps=eps, xi=power_method(m)["xi"],
                                 seed=lanes[i].cfg.seed, precision=lanes[i].cfg.task.precision)
        return out


ENTRY = register(ProbeEntry("diagnostics", "entropy, class histograms, KL at xi and eps, power-iterate cosines",
                            DiagnosticsProbe, None, lambda s, cfg: DIAGNOSTICS, DiagnosticsHook, legacy=None))
