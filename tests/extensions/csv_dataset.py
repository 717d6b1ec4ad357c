"""A dataset from CSV files: ``DATA_ROOT/csv_digits/{train,test}.csv``, one image a row, the label
first and then the 64 pixels of an 8x8 grey image in [0, 1] (scikit-learn's digits as a file)."""

from __future__ import annotations

from vat_study.science.datasets import Dataset, DatasetEntry, Source, register


def load(source: Source) -> Dataset:
    import numpy as np
    import torch

    from vat_study.common.errors import DataFileError
    from vat_study.science.datasets.arrays import labels

    parts = []
    for split in ("train", "test"):
        path = source.root / "csv_digits" / f"{split}.csv"
        if not path.is_file():
            raise DataFileError(f"csv_digits: {path.name} is missing under {path.parent} (task.data_root)")
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
        parts += [torch.from_numpy(rows[:, 1:]).reshape(-1, 1, 8, 8), labels(rows[:, 0].astype(np.int64))]
    return Dataset(source.name, *parts, n_classes=10)


ENTRY = register(DatasetEntry("csv_digits", "8x8 digits from csv_digits/{train,test}.csv (label, 64 pixels)", load,
                              files="csv_digits/train.csv and csv_digits/test.csv", input_shape=(1, 8, 8),
                              defaults={"model": "mlp"}))
