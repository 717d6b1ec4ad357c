"""``cifar10``: CIFAR-10 from its official python version under ``data_root`` (or its ``cifar10/``,
``cifar-10/``): ``cifar-10-python.tar.gz`` (read without unpacking) or its ``cifar-10-batches-py/``
folder, ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled dict with
``data`` (uint8 [10000, 3072]: the 1024 red, then green, then blue values of each 32x32 image,
row-major) and ``labels`` (10,000 ints in 0-9). The pickles are read with an unpickler that
builds numpy arrays and plain containers only, so a file that holds anything else (code) is
refused, never run. Where the files are missing and ``download`` is true, torchvision fetches
exactly these files into ``data_root`` first. Defaults (Appendices B, D, Table 7): Conv-Large, no
BN on the logits, ZCA fitted on the training pool, random 2-pixel translation and horizontal flip."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from . import Dataset, DatasetEntry, DataError, DataFileError, Source, register

TAR = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = "test_batch"
SUBS = ("", "cifar10", "cifar-10")
FILES = f"{TAR} or its {FOLDER}/ folder"


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that reconstructs numpy arrays and nothing else callable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays are expected)")


def locate(root: Path) -> Path | None:
    """The CIFAR-10 python distribution under ``root`` (its folder, or the tar.gz), or None."""
    for sub in SUBS:
        if (root / sub / FOLDER).is_dir():
            return root / sub / FOLDER
        if (root / sub / TAR).is_file():
            return root / sub / TAR
    return None


def _batch(raw: bytes, where: str):  # noqa: ANN202  -> (uint8 [N, 3, 32, 32], int64 [N])
    import numpy as np

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


def _raw_batches(path: Path) -> dict[str, bytes]:
    import tarfile

    names = (*BATCHES, TEST)
    raws: dict[str, bytes] = {}
    if path.is_dir():
        for n in names:
            if not (path / n).is_file():
                raise DataError(f"{path}: {n} is missing (the CIFAR-10 python folder holds {', '.join(names)})")
            raws[n] = (path / n).read_bytes()
        return raws
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
    return raws


def read_cifar10(path: Path):  # noqa: ANN201  -> (x_train, y_train, x_test, y_test) as numpy arrays
    """The five training batches and the test batch from the folder or the tar.gz ``locate`` found."""
    import numpy as np

    raws = _raw_batches(path)
    parts = [_batch(raws[n], f"{path}/{n}" if path.is_dir() else f"{path}:{n}") for n in (*BATCHES, TEST)]
    return (np.concatenate([p[0] for p in parts[:-1]]), np.concatenate([p[1] for p in parts[:-1]]),
            parts[-1][0], parts[-1][1])


def load(source: Source) -> Dataset:
    from .arrays import images, labels

    found = locate(source.root)
    if found is None and source.download:
        import torchvision.datasets as tvd

        tvd.CIFAR10(str(source.root), train=True, download=True)  # writes the official files, read below
        found = locate(source.root)
    if found is None:
        raise DataError(f"dataset 'cifar10': {FILES} not found under data_root={str(source.root)!r} (or its cifar10/); "
                        "put them there, set task.data_root (or VAT_STUDY_DATA) to their folder, or set download: true")
    xtr, ytr, xte, yte = read_cifar10(found)
    return Dataset(source.name, images(xtr), labels(ytr), images(xte), labels(yte), 10)


ENTRY = register(DatasetEntry(
    "cifar10", "CIFAR-10's python version, tar.gz or folder", load, files=FILES, input_shape=(3, 32, 32),
    defaults={"model": "conv_large", "top_bn": False, "zca": True, "augment": {"translate": 2, "flip": True}}))
