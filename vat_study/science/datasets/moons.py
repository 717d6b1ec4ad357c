"""``moons``: two interleaving half circles (the spirit of Fig. 1): 1,000 training points (a few of
them labeled) and 1,000 test points, drawn with a fixed generator."""

from __future__ import annotations

from . import Dataset, DatasetEntry, Source, register


def load(source: Source) -> Dataset:
    import numpy as np
    import torch
    from sklearn.datasets import make_moons

    from .arrays import labels

    x, y = make_moons(n_samples=2000, noise=0.1, random_state=20180101)
    x = torch.from_numpy(x.astype(np.float32))
    y = labels(y)
    return Dataset(source.name, x[:1000], y[:1000], x[1000:], y[1000:], 2)


ENTRY = register(DatasetEntry("moons", "two interleaving half circles in 2-D, offline, Fig. 1", load, input_shape=(2,),
                              defaults={"model": "small_mlp"}))
