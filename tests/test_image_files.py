"""CIFAR-10 and SVHN from files in their official formats, written small by the tests: the CIFAR-10
python batches (pickled dicts with bytes keys, in a folder or the tar.gz) and SVHN's MATLAB files
(X of shape 32x32x3xN, y in 1-10 with 10 the digit 0). Every defect: one line naming the file."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from official_files import N_BATCH, cifar_batch, write_cifar10, write_svhn

from vat_study.science.data import DataError, DataFileError, load_dataset

@pytest.mark.parametrize("tar", [False, True])
def test_cifar10_from_the_python_batches_in_folder_or_tar(tmp_path, tar):
    raws = write_cifar10(tmp_path / "cifar10", tar=tar)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (5 * N_BATCH, 3, 32, 32) and ds.x_test.shape == (N_BATCH, 3, 32, 32)
    first = pickle.loads(raws["data_batch_1"], encoding="bytes")
    test = pickle.loads(raws["test_batch"], encoding="bytes")
    # the 1024 red values of an image, then green, then blue, each row-major: [0, c, h, w]
    img = first[b"data"][3]
    assert ds.x_train[3, 0, 0, 0] == pytest.approx(img[0] / 255)
    assert ds.x_train[3, 1, 0, 0] == pytest.approx(img[1024] / 255)
    assert ds.x_train[3, 2, 31, 31] == pytest.approx(img[3071] / 255)
    assert ds.x_train[3, 0, 1, 0] == pytest.approx(img[32] / 255)
    assert ds.y_train[:N_BATCH].tolist() == first[b"labels"]
    assert ds.y_test.tolist() == test[b"labels"] and ds.n_classes == 10 and ds.x_train.dtype == torch.float32


def test_cifar10_defects_are_one_line_naming_the_file(tmp_path):
    write_cifar10(tmp_path / "a", drop="test_batch")
    with pytest.raises(DataError, match=r"test_batch is missing"):
        load_dataset("cifar10", root=tmp_path / "a")
    write_cifar10(tmp_path / "b", overrides={"data_batch_2": cifar_batch(1, labels=[3] * (N_BATCH - 1) + [10])})
    with pytest.raises(DataFileError, match=r"data_batch_2: CIFAR-10 labels are 0-9; this batch holds label 10"):
        load_dataset("cifar10", root=tmp_path / "b")
    write_cifar10(tmp_path / "c", overrides={"data_batch_3": b"not a pickle at all"})
    with pytest.raises(DataFileError, match=r"data_batch_3: not a CIFAR-10 python batch"):
        load_dataset("cifar10", root=tmp_path / "c")
    write_cifar10(tmp_path / "d", tar=True)
    tgz = tmp_path / "d" / "cifar-10-python.tar.gz"
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(DataFileError, match=r"cifar-10-python.tar.gz: cannot be read as the CIFAR-10 tar.gz"):
        load_dataset("cifar10", root=tmp_path / "d")
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz or its cifar-10-batches-py/ folder not found"):
        load_dataset("cifar10", root=tmp_path / "none")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_cifar10_pickle_holding_code_is_refused_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({b"data": _Boom(), b"labels": [0]}, protocol=2)
    write_cifar10(tmp_path / "data", overrides={"data_batch_1": evil})
    with pytest.raises(DataFileError, match=r"refused to load (posix|os)\.system"):
        load_dataset("cifar10", root=tmp_path / "data")
    assert not (tmp_path / "pwned").exists()


def test_svhn_from_the_mat_files_with_label_10_as_digit_0(tmp_path):
    written = write_svhn(tmp_path / "svhn", y_train=[10, 1, 5] * 10)
    ds = load_dataset("svhn", root=tmp_path)
    x, y = written["train"]
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert ds.y_train[:3].tolist() == [0, 1, 5]  # 10 is the digit 0
    n, c, h, w = 7, 2, 5, 9
    assert ds.x_train[n, c, h, w] == pytest.approx(x[h, w, c, n] / 255)
    assert ds.y_test.tolist() == (written["test"][1].reshape(-1) % 10).tolist()


def test_svhn_defects_are_one_line_naming_the_file(tmp_path):
    write_svhn(tmp_path / "a", y_train=[11] + [1] * 29)
    with pytest.raises(DataFileError, match=r"train_32x32.mat: SVHN labels are 1-10 .* label 11"):
        load_dataset("svhn", root=tmp_path / "a")
    write_svhn(tmp_path / "b")
    (tmp_path / "b" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but cut short")
    with pytest.raises(DataFileError, match=r"test_32x32.mat: cannot be read as SVHN's .mat file"):
        load_dataset("svhn", root=tmp_path / "b")
    write_svhn(tmp_path / "c")
    (tmp_path / "c" / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"train_32x32.mat and test_32x32.mat not found"):
        load_dataset("svhn", root=tmp_path / "c")
