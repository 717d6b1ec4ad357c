"""``mnist`` and ``fashion_mnist``: the four standard IDX files (gzipped or not) under ``data_root``,
in a folder named after the dataset, or in torchvision's layout; ``fashion_mnist`` with no files
there reads Debian's dataset-fashion-mnist. With none found, torchvision downloads them into
``data_root`` where ``download`` is true."""

from __future__ import annotations

from pathlib import Path

from . import Dataset, DatasetEntry, DataError, DataFileError, Source, register

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
"""The four standard files of MNIST and Fashion-MNIST, each found gzipped (``.gz``) or not."""

IDX_FOLDERS = {"mnist": ("", "raw", "mnist", "MNIST/raw", "mnist/raw"),
               "fashion_mnist": ("", "raw", "fashion_mnist", "fashion-mnist", "FashionMNIST/raw",
                                 "fashion_mnist/raw")}
"""Where under ``data_root`` each dataset's four files are looked for: the folder itself, a
folder named after the dataset (so ``data_root`` may hold several datasets), torchvision's layout."""


def _find(root: Path, stem: str, sub: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / sub / name
        if p.is_file():
            return p
    return None


def find_idx_files(name: str, root: Path) -> list[Path] | None:
    """The four IDX files of ``name`` (mnist or fashion_mnist) under ``root``, all from one folder,
    or None if no folder there holds all four."""
    for sub in IDX_FOLDERS[name]:
        found = [_find(root, stem, sub) for stem in IDX_STEMS]
        if all(found):
            return found  # type: ignore[return-value]
    return None


def _read(name: str, found: list[Path]) -> Dataset:
    from .idx_files import idx_pair, same_shape

    xtr, ytr = idx_pair(found[0], found[1])
    xte, yte = idx_pair(found[2], found[3])
    same_shape(xtr, xte, found[2])
    for path, y in ((found[1], ytr), (found[3], yte)):
        if int(y.max()) >= 10:
            raise DataFileError(f"{path}: {name} has 10 classes (labels 0-9), this file holds label {int(y.max())}")
    return Dataset(name, xtr, ytr, xte, yte, 10)


def _torchvision(name: str, root: Path) -> Dataset:
    import torchvision.datasets as tvd

    from .arrays import images, labels

    kind = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    try:
        tr, te = (kind(str(root), train=t, download=True) for t in (True, False))
    except RuntimeError as e:  # torchvision: "Dataset not found ..."
        raise DataError(f"dataset {name!r} not found under data_root={str(root)!r}: {e}") from e
    return Dataset(name, images(tr.data.numpy()), labels(tr.targets), images(te.data.numpy()), labels(te.targets), 10)


def load(source: Source) -> Dataset:
    name, root = source.name, source.root
    for base in [root] + ([DEBIAN_FASHION_MNIST] if name == "fashion_mnist" else []):
        found = find_idx_files(name, base)
        if found:
            return _read(name, found)
    if source.download:
        return _torchvision(name, root)
    where = " or ".join(str(root / sub) if sub else str(root) for sub in IDX_FOLDERS[name][:3])
    raise DataError(
        f"dataset {name!r}: the four files {', '.join(s + '[.gz]' for s in IDX_STEMS)} were not found "
        f"under data_root={str(root)!r} (looked in {where}, and torchvision's layout); put them "
        f"there, set task.data_root (or VAT_STUDY_DATA) to their folder, or set download: true"
        + (f" (or install Debian's dataset-fashion-mnist: {DEBIAN_FASHION_MNIST})" if name == "fashion_mnist" else ""))


FILES = "the four IDX files " + ", ".join(s + "[.gz]" for s in IDX_STEMS)
MNIST = register(DatasetEntry("mnist", "MNIST's four IDX files", load, files=FILES, input_shape=(1, 28, 28)))
FASHION_MNIST = register(DatasetEntry("fashion_mnist", "Fashion-MNIST's four IDX files, or Debian's dataset-fashion-mnist",
                                      load, files=FILES, input_shape=(1, 28, 28)))
