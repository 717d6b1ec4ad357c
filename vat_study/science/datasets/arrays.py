"""numpy arrays as the tensors a ``Dataset`` holds (shared by the dataset files)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def native(a: np.ndarray) -> np.ndarray:
    """A copy in this machine's byte order (IDX files are big-endian; torch takes native order only)."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("="), copy=True)


def images(a: np.ndarray, scale: float = 255.0) -> Tensor:
    """Integer images [N, H, W] or [N, C, H, W] (uint8: 0-255) -> float32 [N, C, H, W] divided by
    ``scale``; float images (IDX types 0x0D, 0x0E) are taken as they are stored."""
    t = torch.from_numpy(native(a)).float()
    if np.asarray(a).dtype.kind != "f":
        t = t / scale
    return t.unsqueeze(1) if t.dim() == 3 else t


def labels(a) -> Tensor:
    return torch.as_tensor(native(a), dtype=torch.int64)
