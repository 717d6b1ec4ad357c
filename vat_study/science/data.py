"""Datasets, seeded splits and the paper's preprocessing.

Every dataset loads as float tensors: images as [N, C, H, W] in [0, 1] (MLPs flatten them: the
permutation-invariant setting of Section 4.1.1), 2-D points as [N, 2]; labels as int64 [N].

Datasets by name (``load_dataset``):

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, offline: the default). A fixed
  500-image test split (independent of the trial seed) never touches training.
* ``moons``: two interleaving half circles (the spirit of Fig. 1): 1,000 training points (a few
  of them labeled) and 1,000 test points, drawn with a fixed generator.
* ``mnist``, ``fashion_mnist``: the four standard IDX files (gzipped or not) in ``root``, in
  ``root/mnist`` (``root/fashion_mnist``) or in torchvision's layout; ``fashion_mnist`` with no
  files under ``root`` reads the Debian package's files in /usr/share/datasets/fashion-mnist.
  With none found, torchvision downloads them into ``root`` if ``download=True``.
* ``cifar10``, ``svhn``: the official distribution files under ``root`` (or its ``cifar10/``,
  ``svhn/``): CIFAR-10's python version (tar.gz or folder), SVHN's ``*_32x32.mat``
  (``image_files``); torchvision downloads those files there first only if ``download=True``.
* ``idx``: any MNIST-format IDX image/label files given by path (gzip or not).

Splits (``make_splits``), by seed: a validation subset, a class-balanced labeled subset of size
N_l from the rest, and the unlabeled pool = every non-validation training image (the paper's
convention: it includes the labeled ones). The test set is used only for the final test error.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..common.errors import DataError, DataFileError  # noqa: F401  (re-exported)
from .image_files import locate_cifar10, locate_svhn, read_cifar10, read_svhn
from .vocabulary import DATASET_NAMES

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")



@dataclass
class Dataset:
    name: str
    x_train: Tensor  # [N, ...] float32
    y_train: Tensor  # [N] int64
    x_test: Tensor
    y_test: Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4


@dataclass
class Splits:
    labeled: Tensor  # indices into the training set
    validation: Tensor
    unlabeled: Tensor  # the pool for the regularizer; includes the labeled indices


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not. Every defect (a truncated or
    damaged gzip stream, a short header, a size that disagrees with the header, an unreadable
    file) is a ``DataFileError`` naming the file."""
    import zlib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except EOFError:
        raise DataFileError(f"{path}: the gzip file is truncated (it ends before its data does); fetch it again") from None
    except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataFileError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = raw[2], raw[3]
    if code not in dtypes:
        raise DataFileError(f"{path}: unknown IDX element type 0x{code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataFileError(f"{path}: the IDX header is cut short (it declares {ndim} dimensions, the file has "
                            f"{len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    itemsize = np.dtype(dtypes[code]).itemsize
    held = (len(raw) - 4 - 4 * ndim) / itemsize
    if held != int(np.prod(dims, dtype=object)):
        raise DataFileError(f"{path}: IDX header says {dims} but the file holds {held:g} values (truncated?)")
    data = np.frombuffer(raw, dtype=dtypes[code], offset=4 + 4 * ndim)
    return data.reshape(dims)


def _native(a: np.ndarray) -> np.ndarray:
    """A copy in this machine's byte order (IDX files are big-endian; torch takes native order only)."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("="), copy=True)


def _images(a: np.ndarray, scale: float = 255.0) -> Tensor:
    """Integer images [N, H, W] or [N, C, H, W] (uint8: 0-255) -> float32 [N, C, H, W] divided by
    ``scale``; float images (IDX types 0x0D, 0x0E) are taken as they are stored."""
    t = torch.from_numpy(_native(a)).float()
    if np.asarray(a).dtype.kind != "f":
        t = t / scale
    return t.unsqueeze(1) if t.dim() == 3 else t


def _labels(a) -> Tensor:
    return torch.as_tensor(_native(a), dtype=torch.int64)


def _idx_pair(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[Tensor, Tensor]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataFileError(f"IDX files {images} / {labels}: expected images [N, H, W] and labels [N], "
                            f"got {list(x.shape)} and {list(y.shape)}")
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataFileError(f"{images}: holds no images (shape {list(x.shape)}); every split needs some")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataFileError(f"{images}: holds NaN or infinite pixel values")
    if y.dtype.kind == "f" or y.min() < 0:
        raise DataFileError(f"{labels}: labels must be integers >= 0 (class numbers), got values from {y.min()} "
                            f"to {y.max()}")
    return _images(x), _labels(y)


def _classes(y_train: Tensor, y_test: Tensor, train_path: str | os.PathLike, test_path: str | os.PathLike) -> int:
    """The number of classes of IDX labels, which must number them 0 to C - 1: every class has
    training images, and the test labels are among them. A stray label (200 among 0-9) is named
    with its file, rather than read as 201 classes."""
    present = torch.unique(y_train)
    n = int(present.max()) + 1
    if len(present) != n:
        missing = sorted(set(range(n)) - set(present.tolist()))
        gap = f"{missing[0]}-{missing[-1]}" if len(missing) > 1 else str(missing[0])
        raise DataFileError(f"{train_path}: holds label {n - 1}, but no image has label {gap}: the labels must "
                            f"number the classes 0 to C - 1 (this file's: {_shown_labels(present.tolist())})")
    stray = torch.unique(y_test[y_test >= n])
    if len(stray):
        raise DataFileError(f"{test_path}: holds label {int(stray[0])}, a class the training labels do not have "
                            f"(0-{n - 1})")
    return n


def _shown_labels(labels: list[int]) -> str:
    return ", ".join(str(x) for x in labels) if len(labels) <= 12 else \
        ", ".join(str(x) for x in labels[:10]) + f", ..., {labels[-1]}"


def _same_shape(x_train: Tensor, x_test: Tensor, test_path: str | os.PathLike) -> None:
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFileError(f"{test_path}: test images are {list(x_test.shape[2:])}, the training images "
                            f"{list(x_train.shape[2:])}; a model takes one shape")


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
"""The four standard files of MNIST and Fashion-MNIST, each found gzipped (``.gz``) or not."""

IDX_FOLDERS = {"mnist": ("", "raw", "mnist", "MNIST/raw", "mnist/raw"),
               "fashion_mnist": ("", "raw", "fashion_mnist", "fashion-mnist", "FashionMNIST/raw",
                                 "fashion_mnist/raw")}
"""Where under ``data_root`` each dataset's four files are looked for: the folder itself, a
folder named after the dataset (so ``data_root`` may hold several datasets), torchvision's layout."""


def _find_idx(root: Path, stem: str, subs: tuple[str, ...] = ("",)) -> Path | None:
    for sub in subs:
        for name in (stem, stem + ".gz"):
            p = root / sub / name
            if p.is_file():
                return p
    return None


def find_idx_files(name: str, root: Path) -> list[Path] | None:
    """The four IDX files of ``name`` (mnist or fashion_mnist) under ``root``, all from one folder,
    or None if no folder there holds all four."""
    for sub in IDX_FOLDERS[name]:
        found = [_find_idx(root, stem, (sub,)) for stem in IDX_STEMS]
        if all(found):
            return found  # type: ignore[return-value]
    return None


def _torchvision(name: str, root: Path, download: bool):
    import torchvision.datasets as tvd

    try:
        if name == "mnist":
            tr, te = (tvd.MNIST(str(root), train=t, download=download) for t in (True, False))
            return _images(tr.data.numpy()), _labels(tr.targets), _images(te.data.numpy()), _labels(te.targets)
        if name == "fashion_mnist":
            tr, te = (tvd.FashionMNIST(str(root), train=t, download=download) for t in (True, False))
            return _images(tr.data.numpy()), _labels(tr.targets), _images(te.data.numpy()), _labels(te.targets)
        if name == "cifar10":
            tr, te = (tvd.CIFAR10(str(root), train=t, download=download) for t in (True, False))
            f = lambda a: _images(a.transpose(0, 3, 1, 2))  # noqa: E731  NHWC -> NCHW
            return f(tr.data), _labels(tr.targets), f(te.data), _labels(te.targets)
        if name == "svhn":
            tr, te = (tvd.SVHN(str(root), split=s, download=download) for s in ("train", "test"))
            return _images(tr.data), _labels(tr.labels), _images(te.data), _labels(te.labels)
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
        raise DataError(
            f"dataset {name!r} not found under data_root={str(root)!r}"
            + ("" if download else " (download is false: set download: true, or put the files there)")
            + f": {e}"
        ) from e
    raise AssertionError(name)


def data_root(root: str | None) -> Path:
    """Where the data files are: ``task.data_root``, else $VAT_STUDY_DATA, else ``data/``."""
    return Path(root or os.environ.get("VAT_STUDY_DATA") or "data").expanduser()


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    idx_paths: dict[str, str] | None = None,
) -> Dataset:
    """Load a dataset by name (see the module docstring)."""
    if name not in DATASET_NAMES:
        raise DataError(f"dataset must be one of {DATASET_NAMES}, got {name!r}")
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [1797, 1, 8, 8]
        y = _labels(bunch.target)
        perm = torch.from_numpy(np.random.default_rng(20180101).permutation(len(y)))  # fixed test split
        test, train = perm[:500], perm[500:]
        return Dataset(name, x[train], y[train], x[test], y[test], 10)
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=2000, noise=0.1, random_state=20180101)
        x = torch.from_numpy(x.astype(np.float32))
        y = _labels(y)
        return Dataset(name, x[:1000], y[:1000], x[1000:], y[1000:], 2)
    if name == "idx":
        need = ("train_images", "train_labels", "test_images", "test_labels")
        missing = [k for k in need if not (idx_paths or {}).get(k)]
        if missing:
            raise DataError(f"dataset 'idx' needs idx_paths with keys {need}; missing {missing}")
        xtr, ytr = _idx_pair(idx_paths["train_images"], idx_paths["train_labels"])
        xte, yte = _idx_pair(idx_paths["test_images"], idx_paths["test_labels"])
        _same_shape(xtr, xte, idx_paths["test_images"])
        n_classes = _classes(ytr, yte, idx_paths["train_labels"], idx_paths["test_labels"])
        return Dataset(name, xtr, ytr, xte, yte, n_classes)

    root_path = data_root(root)
    if name in IDX_FOLDERS:
        # The four standard files under root (gzipped or not; torchvision's layout too), or for
        # Fashion-MNIST the Debian package's; torchvision (and its download) only when none holds them.
        bases = [root_path] + ([DEBIAN_FASHION_MNIST] if name == "fashion_mnist" else [])
        for base in bases:
            found = find_idx_files(name, base)
            if found:
                xtr, ytr = _idx_pair(found[0], found[1])
                xte, yte = _idx_pair(found[2], found[3])
                _same_shape(xtr, xte, found[2])
                for path, y in ((found[1], ytr), (found[3], yte)):
                    if int(y.max()) >= 10:
                        raise DataFileError(f"{path}: {name} has 10 classes (labels 0-9), this file holds "
                                            f"label {int(y.max())}")
                return Dataset(name, xtr, ytr, xte, yte, 10)
        if not download:
            where = " or ".join(str(root_path / sub) if sub else str(root_path) for sub in IDX_FOLDERS[name][:3])
            raise DataError(
                f"dataset {name!r}: the four files {', '.join(s + '[.gz]' for s in IDX_STEMS)} were not found "
                f"under data_root={str(root_path)!r} (looked in {where}, and torchvision's layout); put them "
                f"there, set task.data_root (or VAT_STUDY_DATA) to their folder, or set download: true"
                + (f" (or install Debian's dataset-fashion-mnist: {DEBIAN_FASHION_MNIST})" if name == "fashion_mnist" else ""))
    if name in ("cifar10", "svhn"):
        return _official_files(name, root_path, download)
    xtr, ytr, xte, yte = _torchvision(name, root_path, download)
    return Dataset(name, xtr, ytr, xte, yte, 10)


OFFICIAL_FILES = {"cifar10": "cifar-10-python.tar.gz or its cifar-10-batches-py/ folder",
                  "svhn": "train_32x32.mat and test_32x32.mat"}
"""What each dataset read from its official distribution files needs under ``data_root``."""


def locate_official(name: str, root: Path):  # noqa: ANN201
    """The official files of ``name`` (cifar10, svhn) under ``root`` (or its cifar10/ or svhn/), or None."""
    return locate_cifar10(root) if name == "cifar10" else locate_svhn(root)


def _official_files(name: str, root: Path, download: bool) -> Dataset:
    """CIFAR-10 / SVHN from the official files under ``root`` (``image_files``); where they are
    not there and ``download`` is true, torchvision fetches exactly those files into ``root`` first."""
    found = locate_official(name, root)
    if found is None and download:
        _torchvision(name, root, True)  # writes the official files, which are then read as any others
        found = locate_official(name, root)
    if found is None:
        raise DataError(f"dataset {name!r}: {OFFICIAL_FILES[name]} not found under data_root={str(root)!r} (or its "
                        f"{name}/); put them there, set task.data_root (or VAT_STUDY_DATA) to their folder, or set "
                        "download: true")
    xtr, ytr, xte, yte = read_cifar10(found) if name == "cifar10" else read_svhn(found)
    return Dataset(name, _images(xtr), _labels(ytr), _images(xte), _labels(yte), 10)


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
