
import numpy as np
import pytest
import torch

from helpers import write_idx
from vat_study.science.data import ZCA, DataError, augment, load_dataset, make_splits, read_idx



@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_and_idx_dataset(tmp_path, compress):
    rng = np.random.default_rng(0)
    xs = {s: rng.integers(0, 256, (n, 6, 5), dtype=np.uint8) for s, n in (("train", 40), ("test", 10))}
    ys = {s: (np.arange(len(x)) % 3).astype(np.uint8) for s, x in xs.items()}
    paths = {}
    for s in ("train", "test"):
        paths[f"{s}_images"] = tmp_path / f"{s}-images"
        paths[f"{s}_labels"] = tmp_path / f"{s}-labels"
        write_idx(paths[f"{s}_images"], xs[s], compress)
        write_idx(paths[f"{s}_labels"], ys[s], compress)
    np.testing.assert_array_equal(read_idx(paths["train_images"]), xs["train"])
    ds = load_dataset("idx", idx_paths={k: str(v) for k, v in paths.items()})
    assert ds.x_train.shape == (40, 1, 6, 5) and ds.n_classes == 3
    torch.testing.assert_close(ds.x_train[:, 0], torch.from_numpy(xs["train"]).float() / 255)
    assert torch.equal(ds.y_test, torch.from_numpy(ys["test"]).long())


def test_idx_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "missing")
    with pytest.raises(DataError, match="missing"):
        load_dataset("idx", idx_paths={"train_images": str(bad)})
    with pytest.raises(DataError, match="dataset must be one of"):
        load_dataset("imagenet")


def test_missing_torchvision_data_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="download"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_digits_and_moons_are_offline_and_fixed():
    d1, d2 = load_dataset("digits"), load_dataset("digits")
    assert d1.x_train.shape == (1297, 1, 8, 8) and d1.x_test.shape == (500, 1, 8, 8)
    assert torch.equal(d1.x_test, d2.x_test) and 0 <= d1.x_train.min() and d1.x_train.max() <= 1
    m = load_dataset("moons")
    assert m.x_train.shape == (1000, 2) and m.n_classes == 2


def test_splits_are_seeded_class_balanced_and_keep_validation_apart():
    y = load_dataset("digits").y_train
    s = make_splits(y, 100, 259, seed=3, n_classes=10)
    assert len(s.labeled) == 100 and len(s.validation) == 259
    assert torch.bincount(y[s.labeled], minlength=10).tolist() == [10] * 10
    assert not set(s.validation.tolist()) & set(s.unlabeled.tolist())
    assert set(s.labeled.tolist()) <= set(s.unlabeled.tolist())  # the pool includes the labeled images
    assert len(s.unlabeled) + len(s.validation) == len(y)
    again, other = make_splits(y, 100, 259, 3, 10), make_splits(y, 100, 259, 4, 10)
    assert torch.equal(again.labeled, s.labeled) and not torch.equal(other.labeled, s.labeled)
    uneven = make_splits(y, 15, 100, 0, 10)
    assert sorted(torch.bincount(y[uneven.labeled], minlength=10).tolist()) == [1] * 5 + [2] * 5
    sup = make_splits(y, None, 100, 0, 10)
    assert torch.equal(sup.labeled, sup.unlabeled)


@pytest.mark.parametrize("n_labeled,n_val,match", [(5, 100, "n_labeled"), (5000, 100, "n_labeled"), (10, 5000, "validation")])
def test_bad_split_sizes(n_labeled, n_val, match):
    with pytest.raises(DataError, match=match):
        make_splits(load_dataset("digits").y_train, n_labeled, n_val, 0, 10)


def test_augment_translates_and_flips():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = augment(x, translate=2, flip=False, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every output is a shifted window of the reflect-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        assert any(torch.equal(out[i], padded[i, :, a:a + 6, b:b + 6]) for a in range(5) for b in range(5))
    flipped = augment(x, flip=True, generator=torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    assert augment(x[:, 0, 0], translate=2) is not None  # non-image data passes through


def test_zca_whitens_the_training_images():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2000, 1, 2, 3, generator=g).flatten(1) @ torch.randn(6, 6, generator=g)).view(2000, 1, 2, 3)
    zca = ZCA(x, regularization=1e-6)
    cov = torch.cov(zca(x).flatten(1).double().T)
    torch.testing.assert_close(cov, torch.eye(6, dtype=torch.float64), atol=1e-3, rtol=0)
