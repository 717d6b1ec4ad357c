"""Files in the official formats of CIFAR-10 (the python batches: pickled dicts with bytes keys, in
a folder or the tar.gz) and SVHN (MATLAB files with X of shape 32x32x3xN and y in 1-10), written
small by the tests (``from official_files import write_cifar10, write_svhn``)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

N_BATCH = 12  # images per CIFAR-10 batch file by default (10,000 in the real ones)


def cifar_batch(seed: int, n: int = N_BATCH, labels: list[int] | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"training batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"labels": labels if labels is not None else [int(v) for v in rng.integers(0, 10, n)],
         b"filenames": [b"x.png"] * n}
    return pickle.dumps(d, protocol=2)


def write_cifar10(root: Path, *, tar: bool = False, overrides: dict[str, bytes] | None = None,
                  drop: str | None = None, n: int = N_BATCH) -> dict[str, bytes]:
    """The six batch files under ``root`` (``root/cifar-10-batches-py/``, or ``root/cifar-10-python.tar.gz``),
    ``n`` images each; ``overrides``: a file's bytes given; ``drop``: a file left out."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    raws = {name: cifar_batch(i, n) for i, name in enumerate(names)}
    raws.update(overrides or {})
    if drop:
        raws.pop(drop)
    if tar:
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as t:
            for name, raw in raws.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                t.addfile(info, io.BytesIO(raw))
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for name, raw in raws.items():
            (folder / name).write_bytes(raw)
    return raws


def write_svhn(root: Path, n_train: int = 30, n_test: int = 10, y_train=None) -> dict:
    """train_32x32.mat and test_32x32.mat under ``root``; ``y_train``: the training labels given (1-10)."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    out = {}
    for name, n, y in (("train", n_train, y_train), ("test", n_test, None)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.asarray(y if y is not None else rng.integers(1, 11, n)).reshape(-1, 1).astype(np.uint8)
        root.mkdir(parents=True, exist_ok=True)
        savemat(str(root / f"{name}_32x32.mat"), {"X": x, "y": y})
        out[name] = (x, y)
    return out
