"""The IDX format of MNIST and Fashion-MNIST (gzipped or not): reading one file, a pair of
images and labels, and the checks that name a defective file in one line."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...common.errors import DataError, DataFileError
from .arrays import images, labels


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


def idx_pair(image_path: str | os.PathLike, label_path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Images [N, 1, H, W] and labels [N] from an IDX image file and its label file."""
    x, y = read_idx(image_path), read_idx(label_path)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataFileError(f"IDX files {image_path} / {label_path}: expected images [N, H, W] and labels [N], "
                            f"got {list(x.shape)} and {list(y.shape)}")
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataFileError(f"{image_path}: holds no images (shape {list(x.shape)}); every split needs some")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataFileError(f"{image_path}: holds NaN or infinite pixel values")
    if y.dtype.kind == "f" or y.min() < 0:
        raise DataFileError(f"{label_path}: labels must be integers >= 0 (class numbers), got values from {y.min()} "
                            f"to {y.max()}")
    return images(x), labels(y)


def classes(y_train: Tensor, y_test: Tensor, train_path: str | os.PathLike, test_path: str | os.PathLike) -> int:
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


def _shown_labels(values: list[int]) -> str:
    return ", ".join(str(x) for x in values) if len(values) <= 12 else \
        ", ".join(str(x) for x in values[:10]) + f", ..., {values[-1]}"


def same_shape(x_train: Tensor, x_test: Tensor, test_path: str | os.PathLike) -> None:
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFileError(f"{test_path}: test images are {list(x_test.shape[2:])}, the training images "
                            f"{list(x_train.shape[2:])}; a model takes one shape")
