"""Lanes trained as one model: S copies of a network (a lane each: its own seed's initialization,
and its own eps, alpha, xi, noise SD), stacked and evaluated together with ``torch.func`` (``stack_module_state`` + ``vmap`` over
``functional_call``).

``LaneBatch(models)`` behaves like one network whose batch is the S seeds' batches laid end to
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
now share (``python -m benchmarks.batched_seeds`` and ``benchmarks.lanes`` measure the gain).

The MLP (``models.MLP``: Flatten, Linear, BatchNorm1d, ReLU, GaussianNoise) has a direct path
that needs no vmap: each Linear is one ``baddbmm`` over the S weight matrices, and each BN is
PyTorch's own batch_norm kernel over the S x C channels laid side by side ([1, S * C, B]: every
network's channel normalized with its own block's statistics, its own running statistics
updated in place). vmap's batch rule for BN with per-network running statistics decomposes into
many small operations (24 lanes x 100 updates of the demo MLP: 4.2 s through vmap, 3.1 s on the
direct path, this 2-core CPU; docs/performance.md). Every other network goes through vmap.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .models import MLP, GaussianNoise

_DIRECT_LAYERS = (nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, GaussianNoise)


def _flat(name: str) -> str:
    return name.replace(".", "__")


class LaneBatch(nn.Module):
    """S networks of one architecture as one module; see the module docstring."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("LaneBatch needs at least one model")
        params, buffers = stack_module_state(models)  # name -> [S, ...]
        self.n_lanes = len(models)
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
        self._direct = type(models[0]) is MLP and all(
            isinstance(m, _DIRECT_LAYERS) for m in template.net) and all(
            m.momentum is not None for m in template.net if isinstance(m, nn.BatchNorm1d))

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({k: getattr(self, _flat(k)) for k in self._param_names},
                {k: getattr(self, _flat(k)) for k in self._buffer_names})

    def forward(self, x: Tensor) -> Tensor:  # [S * B, ...] -> [S * B, C]
        s = self.n_lanes
        if x.shape[0] % s:
            raise ValueError(f"batch of {x.shape[0]} is not {s} equal seed blocks")
        xs = x.reshape(s, x.shape[0] // s, *x.shape[1:])
        params, buffers = self._stacked()
        if self._direct:
            return self._mlp_forward(params, buffers, xs).reshape(x.shape[0], -1)
        out = self._vmapped(params, buffers, xs)
        return out.reshape(x.shape[0], *out.shape[2:])

    def _mlp_forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        """The MLP's layers on [S, B, ...] with the S networks' stacked weights, each layer in
        the mode its template module is in (train/eval, running statistics frozen or not).
        Activations are kept feature-major, [S, features, B], so that each Linear is one
        ``baddbmm`` (W_s h_s + b_s) and each BN is PyTorch's batch_norm kernel on [1, S * C, B]
        (channel (s, c) normalized over its B samples) with no copies in between."""
        s, b = x.shape[:2]
        h = x.reshape(s, b, -1).transpose(1, 2)  # [S, in, B]: the MLP's first layer, Flatten, done here
        for name, m in self.template.net.named_children():
            key = f"net.{name}."
            if isinstance(m, nn.Linear):
                h = torch.bmm(params[key + "weight"], h).add_(params[key + "bias"].unsqueeze(2))
            elif isinstance(m, nn.BatchNorm1d):
                h = self._bn(m, key, params, buffers, h)
            elif isinstance(m, nn.ReLU):
                h = F.relu(h)  # not in place: on the view of BN's output autograd would copy it back (CopySlices)
            elif isinstance(m, GaussianNoise) and m.training and m.sigma > 0:  # each network's own SD
                h = h + buffers[key + "sigma_t"].view(s, 1, 1) * torch.randn_like(h)
        return h.transpose(1, 2)  # [S, B, C]

    @staticmethod
    def _bn(m: nn.BatchNorm1d, key: str, params: dict[str, Tensor], buffers: dict[str, Tensor], h: Tensor) -> Tensor:
        """nn.BatchNorm1d.forward for S networks at once on [S, C, B]: all networks' channels side by side."""
        s, c, b = h.shape
        factor = 0.0
        if m.training and m.track_running_stats:
            buffers[key + "num_batches_tracked"].add_(1)
            factor = m.momentum
        use_running = not m.training or m.track_running_stats
        out = F.batch_norm(h.reshape(1, s * c, b),
                           buffers[key + "running_mean"].view(-1) if use_running else None,
                           buffers[key + "running_var"].view(-1) if use_running else None,
                           params[key + "weight"].reshape(-1), params[key + "bias"].reshape(-1),
                           m.training, factor, m.eps)
        return out.view(s, c, b)

    def _one_seed(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,), tie_weights=False)

    def lane_state_dict(self, i: int) -> dict[str, Tensor]:
        """Lane i's weights and BN statistics, keyed as the plain network's ``state_dict``."""
        params, buffers = self._stacked()
        return {k: v[i].detach().clone() for k, v in {**params, **buffers}.items() if k in self._saved}

    def lane_model(self, i: int) -> nn.Module:
        """Lane i's network as a plain module (a copy, in this module's train/eval mode), for the
        probes, which measure one network at a time."""
        plain = self._plain[0]
        _, buffers = self._stacked()
        with torch.no_grad():
            plain.load_state_dict(self.lane_state_dict(i))
            for k in self._buffer_names:
                if k not in self._saved:  # per-lane settings (a noise layer's SD)
                    plain.get_buffer(k).copy_(buffers[k][i])
        return plain.train(self.training)


def clone_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a plain network or a ``LaneBatch``) with its own weights, none of them
    trained by the optimizer (no gradient): e.g. the Mean Teacher's EMA network."""
    twin = copy.deepcopy(model)
    if isinstance(twin, LaneBatch):  # the vmapped call must be the copy's own, not the original's
        twin._vmapped = vmap(twin._one_seed, randomness="different")
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
