"""``digits``: scikit-learn's bundled 8x8 digits (1,797 images, offline: the default dataset). A
fixed 500-image test split, independent of the trial seed, never touches training."""

from __future__ import annotations

from . import Dataset, DatasetEntry, Source, register


def load(source: Source) -> Dataset:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from .arrays import labels

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [1797, 1, 8, 8]
    y = labels(bunch.target)
    perm = torch.from_numpy(np.random.default_rng(20180101).permutation(len(y)))  # fixed test split
    test, train = perm[:500], perm[500:]
    return Dataset(source.name, x[train], y[train], x[test], y[test], 10)


ENTRY = register(DatasetEntry("digits", "scikit-learn's bundled 8x8 digits, offline", load, input_shape=(1, 8, 8)))
