"""Readers of the official distribution files of CIFAR-10 and SVHN (Appendix B, D), with no
downloader: the files a researcher already has, found under ``data_root``.

* CIFAR-10, the python version: ``cifar-10-python.tar.gz`` (read without unpacking) or its
  ``cifar-10-batches-py/`` folder: ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a
  pickled dict with ``data`` (uint8 [10000, 3072], the 1024 red, then green, then blue values of
  each 32x32 image, row-major) and ``labels`` (10,000 ints in 0-9). The pickles are read with an
  unpickler that builds numpy arrays and plain containers only, so a file that holds anything else
  (code) is refused, never run.
* SVHN, the cropped-digits format 2: ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB 5 files,
  read with scipy): ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] in 1-10, where 10 is the digit 0.

Each reader returns uint8 images [N, 3, 32, 32] and int64 labels [N] in 0-9 for train and test.
Every defect (a file missing, truncated, not of the format, of the wrong shape, with a label out
of range) raises ``DataFileError`` (``DataError`` for a missing file) with one line naming the
file and what is wrong.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..common.errors import DataError, DataFileError

CIFAR10_TAR = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
CIFAR10_SUBS = ("", "cifar10", "cifar-10")
SVHN_SUBS = ("", "svhn")


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that reconstructs numpy arrays and nothing else callable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays are expected)")


def locate_cifar10(root: Path) -> Path | None:
    """The CIFAR-10 python distribution under ``root`` (its folder, or the tar.gz), or None."""
    for sub in CIFAR10_SUBS:
        base = root / sub
        if (base / CIFAR10_DIR).is_dir():
            return base / CIFAR10_DIR
        if (base / CIFAR10_TAR).is_file():
            return base / CIFAR10_TAR
    return None


def locate_svhn(root: Path) -> tuple[Path, Path] | None:
    """SVHN's two .mat files under ``root`` (both in one folder), or None."""
    for sub in SVHN_SUBS:
        train, test = (root / sub / f for f in SVHN_FILES)
        if train.is_file() and test.is_file():
            return train, test
    return None


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataFileError(f"{where}: not a CIFAR-10 python batch ({e})") from None
    if not isinstance(d, dict):
        raise DataFileError(f"{where}: not a CIFAR-10 python batch (a {type(d).__name__}, not a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataFileError(f"{where}: a CIFAR-10 batch holds 'data' and 'labels'; this one holds {sorted(d)}")
    x, y = np.asarray(d["data"]), np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataFileError(f"{where}: 'data' must be uint8 [N, 3072] (32x32x3 images), got {x.dtype} {list(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise DataFileError(f"{where}: 'labels' must be {len(x)} integers, got {y.dtype} {list(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataFileError(f"{where}: CIFAR-10 labels are 0-9; this batch holds label {int(y.max() if y.max() > 9 else y.min())}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def read_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from the folder or the tar.gz ``locate_cifar10`` found."""
    names = (*CIFAR10_BATCHES, CIFAR10_TEST)
    raws: dict[str, bytes] = {}
    if path.is_dir():
        for n in names:
            f = path / n
            if not f.is_file():
                raise DataError(f"{path}: {n} is missing (the CIFAR-10 python folder holds {', '.join(names)})")
            raws[n] = f.read_bytes()
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                for m in tar.getmembers():
                    base = m.name.rsplit("/", 1)[-1]
                    if base in names and m.isfile():
                        raws[base] = tar.extractfile(m).read()  # type: ignore[union-attr]
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataFileError(f"{path}: cannot be read as the CIFAR-10 tar.gz ({e}); fetch it again") from None
        missing = [n for n in names if n not in raws]
        if missing:
            raise DataFileError(f"{path}: the archive lacks {', '.join(missing)} (truncated, or not CIFAR-10's python version)")
    parts = [_cifar_batch(raws[n], f"{path}/{n}" if path.is_dir() else f"{path}:{n}") for n in names]
    x_train = np.concatenate([p[0] for p in parts[:-1]])
    y_train = np.concatenate([p[1] for p in parts[:-1]])
    return x_train, y_train, parts[-1][0], parts[-1][1]


def _svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        d = loadmat(str(path))
    except Exception as e:  # noqa: BLE001  scipy raises many kinds (IndexError on a short file)
        raise DataFileError(f"{path}: cannot be read as SVHN's .mat file ({e}); fetch it again") from None
    if "X" not in d or "y" not in d:
        raise DataFileError(f"{path}: SVHN's .mat holds X and y; this file holds {sorted(k for k in d if not k.startswith('__'))}")
    x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataFileError(f"{path}: X must be uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    if len(y) != x.shape[3] or y.dtype.kind not in "iuf" or (len(y) and not np.all(y == np.round(y))):
        raise DataFileError(f"{path}: y must hold {x.shape[3]} integer labels, got {y.dtype} {list(y.shape)}")
    if len(y) and (y.min() < 1 or y.max() > 10):
        bad = int(y.min() if y.min() < 1 else y.max())
        raise DataFileError(f"{path}: SVHN labels are 1-10 (10 is the digit 0); this file holds label {bad}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), (y.astype(np.int64) % 10)


def read_svhn(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from the two files ``locate_svhn`` found; label 10 -> 0."""
    (xtr, ytr), (xte, yte) = (_svhn_file(p) for p in paths)
    return xtr, ytr, xte, yte
