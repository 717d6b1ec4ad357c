"""The paper's networks, built by name (``build_model``).

* ``mlp``: fully connected 784-1200-600-300-150-10 (Section 4.1.1, Appendix A), each layer
  Linear -> BN -> ReLU; optional zero-mean Gaussian noise of SD ``noise_sigma`` on the hidden
  activations during training (Appendix C uses 0.5 for semi-supervised MNIST). ``top_bn``
  puts BN on the logits as well ("all layers followed by BN").
* ``small_mlp``: one hidden layer of 50 ReLU units, for 2-D data (the Fig. 1 demonstration).
* ``conv_small_svhn``, ``conv_small_cifar10``, ``conv_large``: Table 7. 3x3 convs with padding
  1 except the first conv of the third block (valid: 8x8 -> 6x6 for 32x32 inputs), each conv
  followed by BN and leaky ReLU (slope 0.1); 2x2 max-pool + dropout 0.5 after blocks 1 and 2;
  global average pooling; a dense layer to the classes, followed by BN except on CIFAR-10
  (Table 7 caption; ``top_bn`` defaults accordingly in ``objective``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .vocabulary import CONV_MODELS, MODEL_NAMES  # noqa: F401  (re-exported)


def standard_normal_like(h: Tensor) -> Tensor:
    """``torch.randn_like(h)``, faster for a bfloat16 (or float16) ``h``: drawn in float32 and
    rounded, which gives the same numbers from the same generator state (PyTorch's CPU kernel
    draws 16 or more values in float32 either way; fewer differ) without the slower conversion
    path of the 16-bit kernel (3.8 instead of 4.5 ns per value; a step of ``task.precision:
    mixed_delta``, paper MLP: 5 % faster; ``python -m benchmarks.noise --clock cpu``)."""
    if h.dtype in (torch.bfloat16, torch.float16):
        return torch.randn(h.shape, device=h.device).to(h.dtype)
    return torch.randn_like(h)


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2) noise in train mode (Appendix C); the identity in eval mode.

    The SD the forward pass uses is a buffer (``sigma_t``, not saved in the state_dict), so that
    lanes (``batched.LaneBatch``) can give each network its own; ``sigma`` (a number) says
    whether the layer adds noise at all."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.register_buffer("sigma_t", torch.tensor(self.sigma), persistent=False)

    @property
    def stochastic(self) -> bool:  # read by regularizers.deterministic_layers
        return self.sigma > 0

    def forward(self, h: Tensor) -> Tensor:
        if self.training and self.sigma > 0:
            return h + self.sigma_t * standard_normal_like(h)
        return h

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class MLP(nn.Module):
    """Fully connected net; input [N, ...] is flattened (permutation-invariant setting)."""

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden: Sequence[int] = (1200, 600, 300, 150),
        *,
        batch_norm: bool = True,
        top_bn: bool = True,
        noise_sigma: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if noise_sigma > 0:
                layers.append(GaussianNoise(noise_sigma))
            width = h
        layers.append(nn.Linear(width, n_classes))
        if batch_norm and top_bn:
            layers.append(nn.BatchNorm1d(n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # [N, ...] -> logits [N, C]
        return self.net(x)


def _conv_bn(c_in: int, c_out: int, k: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=padding), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]


class ConvNet(nn.Module):
    """Table 7: three conv blocks (widths w1, w2), a 3x3 valid conv to w3, two 1x1 convs, GAP, dense."""

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: tuple[int, int, int, int, int],
        *,
        top_bn: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        layers: list[nn.Module] = []
        layers += _conv_bn(in_channels, w1, 3, 1) + _conv_bn(w1, w1, 3, 1) + _conv_bn(w1, w1, 3, 1)
        layers += [nn.MaxPool2d(2, 2), nn.Dropout(dropout)]
        layers += _conv_bn(w1, w2, 3, 1) + _conv_bn(w2, w2, 3, 1) + _conv_bn(w2, w2, 3, 1)
        layers += [nn.MaxPool2d(2, 2), nn.Dropout(dropout)]
        layers += _conv_bn(w2, w3, 3, 0) + _conv_bn(w3, w4, 1, 0) + _conv_bn(w4, w5, 1, 0)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w5, n_classes)]
        if top_bn:
            layers.append(nn.BatchNorm1d(n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> logits [N, classes]
        return self.net(x)


_CONV_WIDTHS = {
    "conv_small_svhn": (64, 128, 128, 128, 128),
    "conv_small_cifar10": (96, 192, 192, 192, 192),
    "conv_large": (128, 256, 512, 256, 128),
}


def build_model(
    name: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    hidden: Sequence[int] | None = None,
    batch_norm: bool = True,
    top_bn: bool = True,
    noise_sigma: float = 0.0,
    dropout: float = 0.5,
) -> nn.Module:
    """Build a network by name for inputs of ``input_shape`` (one sample, e.g. [784] or [3, 32, 32])."""
    in_features = 1
    for s in input_shape:
        in_features *= int(s)
    if name == "mlp":
        return MLP(in_features, n_classes, tuple(hidden or (1200, 600, 300, 150)),
                   batch_norm=batch_norm, top_bn=top_bn, noise_sigma=noise_sigma)
    if name == "small_mlp":
        return MLP(in_features, n_classes, tuple(hidden or (50,)), batch_norm=False,
                   top_bn=False, noise_sigma=noise_sigma)
    if name in _CONV_WIDTHS:
        if len(input_shape) != 3 or input_shape[1] < 12 or input_shape[2] < 12:
            raise ValueError(
                f"model {name!r} needs image inputs [C, H, W] with H, W >= 12 (two 2x2 pools and a "
                f"valid 3x3 conv), got input shape {list(input_shape)}"
            )
        return ConvNet(int(input_shape[0]), n_classes, _CONV_WIDTHS[name], top_bn=top_bn, dropout=dropout)
    raise ValueError(f"model must be one of {MODEL_NAMES}, got {name!r}")
