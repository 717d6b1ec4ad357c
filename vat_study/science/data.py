"""Seeded splits, the paper's preprocessing and augmentation; loading a dataset by name is the
dataset registry's (``datasets``: one file per dataset), re-exported here.

Every dataset loads as float tensors: images as [N, C, H, W] in [0, 1] (MLPs flatten them: the
permutation-invariant setting of Section 4.1.1), 2-D points as [N, 2]; labels as int64 [N].

Splits (``make_splits``), by seed: a validation subset, a class-balanced labeled subset of size
N_l from the rest, and the unlabeled pool = every non-validation training image (the paper's
convention: it includes the labeled ones). The test set is used only for the final test error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .datasets import Dataset, DataError, DataFileError, data_root, load_dataset  # noqa: F401  (re-exported)
from .datasets.idx_files import read_idx  # noqa: F401  (re-exported)


@dataclass
class Splits:
    labeled: Tensor  # indices into the training set
    validation: Tensor
    unlabeled: Tensor  # the pool for the regularizer; includes the labeled indices


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def make_splits(y: Tensor, n_labeled: int | None, n_validation: int, seed: int, n_classes: int) -> Splits:
    """Seeded split of the training set: validation, class-balanced labeled subset, unlabeled pool.

    ``n_labeled=None`` (supervised learning) labels every non-validation image. The labeled
    subset takes n_labeled // n_classes images per class, the remainder going to randomly chosen
    classes, one each.
    """
    n = len(y)
    if n_validation < 0 or n_validation >= n:
        raise DataError(f"validation must be in [0, {n - 1}] for this dataset ({n} training images), got {n_validation}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    validation, rest = perm[:n_validation], perm[n_validation:]
    if n_labeled is None:
        labeled = np.sort(rest)
    else:
        if n_labeled < n_classes or n_labeled > len(rest):
            raise DataError(
                f"n_labeled must be between {n_classes} (one per class) and {len(rest)} (training images "
                f"left after validation), got {n_labeled}"
            )
        y_rest = y.numpy()[rest]
        per_class = np.full(n_classes, n_labeled // n_classes)
        per_class[rng.choice(n_classes, n_labeled % n_classes, replace=False)] += 1
        chosen = []
        for c in range(n_classes):
            pool = rest[y_rest == c]
            if len(pool) < per_class[c]:
                raise DataError(f"n_labeled={n_labeled} needs {per_class[c]} images of class {c}, "
                                f"only {len(pool)} are outside the validation set")
            chosen.append(pool[: per_class[c]])  # rest is already in random order
        labeled = np.sort(np.concatenate(chosen))
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    return Splits(labeled=t(labeled), validation=t(np.sort(validation)), unlabeled=t(np.sort(rest)))


# --------------------------------------------------------------------------------------------
# Preprocessing and augmentation
# --------------------------------------------------------------------------------------------


class ZCA:
    """ZCA whitening (Appendix B, D) fitted on training images only: x -> (x - mu) W, W = U (S + reg)^-1/2 U^T."""

    def __init__(self, x: Tensor, regularization: float = 1e-2) -> None:
        flat = x.flatten(1).double()
        self.mean = flat.mean(0)
        cov = torch.cov((flat - self.mean).T)
        s, u = torch.linalg.eigh(cov)
        self.w = (u * (s.clamp_min(0) + regularization).rsqrt()) @ u.T

    def __call__(self, x: Tensor) -> Tensor:
        out = (x.flatten(1).double() - self.mean) @ self.w
        return out.to(x.dtype).view_as(x)


def augment(x: Tensor, *, translate: int = 0, flip: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Random translation by up to ``translate`` pixels (reflect padding, random crop) and random
    horizontal flip, independently per image. x: [N, C, H, W]; returns a new tensor."""
    if x.dim() != 4 or (translate == 0 and not flip):
        return x
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
    if translate > 0:
        padded = torch.nn.functional.pad(x, (translate,) * 4, mode="reflect")
        offsets = torch.randint(0, 2 * translate + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    return x
