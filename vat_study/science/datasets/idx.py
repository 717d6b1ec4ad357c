"""``idx``: any MNIST-format IDX image / label files given by path in ``task.idx_paths``
(``train_images``, ``train_labels``, ``test_images``, ``test_labels``; gzipped or not). The
labels must number the classes 0 to C - 1."""

from __future__ import annotations

from . import Dataset, DatasetEntry, DataError, Source, register

KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load(source: Source) -> Dataset:
    from .idx_files import classes, idx_pair, same_shape

    paths = dict(source.task.get("idx_paths") or {})
    missing = [k for k in KEYS if not paths.get(k)]
    if missing:
        raise DataError(f"dataset 'idx' needs idx_paths with keys {KEYS}; missing {missing}")
    xtr, ytr = idx_pair(paths["train_images"], paths["train_labels"])
    xte, yte = idx_pair(paths["test_images"], paths["test_labels"])
    same_shape(xtr, xte, paths["test_images"])
    return Dataset(source.name, xtr, ytr, xte, yte, classes(ytr, yte, paths["train_labels"], paths["test_labels"]))


ENTRY = register(DatasetEntry("idx", "MNIST-format IDX files named by task.idx_paths", load))
