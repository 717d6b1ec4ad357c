"""``svhn``: SVHN's cropped digits (format 2) from ``train_32x32.mat`` and ``test_32x32.mat`` under
``data_root`` (or its ``svhn/``): MATLAB 5 files read with scipy, ``X`` uint8 [32, 32, 3, N] and
``y`` [N, 1] in 1-10, where 10 is the digit 0 (read as label 0). Where the files are missing and
``download`` is true, torchvision fetches exactly these files into ``data_root`` first. Defaults
(Appendix D, Table 7): Conv-Small for SVHN, BN on the logits, random 2-pixel translation, no flip."""

from __future__ import annotations

from pathlib import Path

from . import Dataset, DatasetEntry, DataError, DataFileError, Source, register

FILES = ("train_32x32.mat", "test_32x32.mat")
SUBS = ("", "svhn")


def locate(root: Path) -> tuple[Path, Path] | None:
    """SVHN's two .mat files under ``root`` (both in one folder), or None."""
    for sub in SUBS:
        train, test = (root / sub / f for f in FILES)
        if train.is_file() and test.is_file():
            return train, test
    return None


def _read(path: Path):  # noqa: ANN202  -> (uint8 [N, 3, 32, 32], int64 [N] in 0-9)
    import numpy as np
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


def load(source: Source) -> Dataset:
    from .arrays import images, labels

    found = locate(source.root)
    if found is None and source.download:
        import torchvision.datasets as tvd

        for split in ("train", "test"):  # writes the official files, read below
            tvd.SVHN(str(source.root), split=split, download=True)
        found = locate(source.root)
    if found is None:
        raise DataError(f"dataset 'svhn': {' and '.join(FILES)} not found under data_root={str(source.root)!r} (or its "
                        "svhn/); put them there, set task.data_root (or VAT_STUDY_DATA) to their folder, or set "
                        "download: true")
    (xtr, ytr), (xte, yte) = (_read(p) for p in found)
    return Dataset(source.name, images(xtr), labels(ytr), images(xte), labels(yte), 10)


ENTRY = register(DatasetEntry(
    "svhn", "SVHN's train_32x32.mat and test_32x32.mat", load, files=" and ".join(FILES),
    input_shape=(3, 32, 32), defaults={"model": "conv_small_svhn", "augment": {"translate": 2, "flip": False}}))
