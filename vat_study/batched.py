"""Seeded repeats trained as one model: S copies of a network, each with its own initialization,
stacked and evaluated together with ``torch.func`` (``stack_module_state`` + ``vmap`` over
``functional_call``).

``SeedBatch(models)`` behaves like one network whose batch is the S seeds' batches laid end to
end: input [S * B, ...], the first B samples for seed 0's network, the next B for seed 1's, and
so on; output [S * B, C]. Every sample still sees only its own seed's weights, and BN normalizes
each seed's block with that block's statistics and updates that seed's running statistics only,
so the regularizers of ``regularizers.py`` apply unchanged: each sample's direction, LDS and
gradient are exactly those of the separate run, and summing the S per-seed losses gives each
seed's weights exactly the gradient the separate run gives them (Adam is elementwise, so one
Adam over the stacked weights is S independent Adams). Randomness inside the network (dropout,
Gaussian noise) is drawn independently per seed (``randomness="different"``) but from one
stream, so those runs match separate ones in distribution, not draw for draw.

Why: on small networks a training step is dominated by per-operation overhead, which the S seeds
now share (``python -m benchmarks.batched_seeds`` measures the gain).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def _flat(name: str) -> str:
    return name.replace(".", "__")


class SeedBatch(nn.Module):
    """S networks of one architecture as one module; see the module docstring."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("SeedBatch needs at least one model")
        params, buffers = stack_module_state(models)  # name -> [S, ...]
        self.n_seeds = len(models)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for k, v in params.items():
            self.register_parameter(_flat(k), nn.Parameter(v))
        for k, v in buffers.items():
            self.register_buffer(_flat(k), v)
        # The architecture without weights: functional_call supplies them. Registered as a child
        # so train()/eval() and modules() reach its BN, dropout and noise layers.
        template = copy.deepcopy(models[0]).to("meta")
        for m in template.modules():
            for k in list(m._parameters):
                del m._parameters[k]
            for k in [k for k, b in m._buffers.items() if b is not None]:
                del m._buffers[k]
        self.template = template
        self._plain = [copy.deepcopy(models[0])]  # a real network to hand out one seed at a time (unregistered)
        self._saved = set(models[0].state_dict())  # buffers outside it (GaussianNoise.sigma_t) are per-lane settings
        self._vmapped = vmap(self._one_seed, randomness="different")

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({k: getattr(self, _flat(k)) for k in self._param_names},
                {k: getattr(self, _flat(k)) for k in self._buffer_names})

    def forward(self, x: Tensor) -> Tensor:  # [S * B, ...] -> [S * B, C]
        s = self.n_seeds
        if x.shape[0] % s:
            raise ValueError(f"batch of {x.shape[0]} is not {s} equal seed blocks")
        xs = x.reshape(s, x.shape[0] // s, *x.shape[1:])
        params, buffers = self._stacked()
        out = self._vmapped(params, buffers, xs)
        return out.reshape(x.shape[0], *out.shape[2:])

    def _one_seed(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,), tie_weights=False)

    def seed_state_dict(self, i: int) -> dict[str, Tensor]:
        """Seed i's weights and BN statistics, keyed as the plain network's ``state_dict``."""
        params, buffers = self._stacked()
        return {k: v[i].detach().clone() for k, v in {**params, **buffers}.items() if k in self._saved}

    def seed_model(self, i: int) -> nn.Module:
        """Seed i's network as a plain module (a copy, in this module's train/eval mode), for the
        probes, which measure one network at a time."""
        plain = self._plain[0]
        _, buffers = self._stacked()
        with torch.no_grad():
            plain.load_state_dict(self.seed_state_dict(i))
            for k in self._buffer_names:
                if k not in self._saved:  # per-lane settings (a noise layer's SD)
                    plain.get_buffer(k).copy_(buffers[k][i])
        return plain.train(self.training)
