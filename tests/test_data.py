"""Tests of the dataset loaders: CIFAR-10 format (folder and archive), MNIST-1D, digits, synthetic."""

from __future__ import annotations

import pickle
import random
import tarfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eosmodel.train._data import (
    CIFAR10_ENV_VAR,
    _mnist1d_cached,
    balanced_indices,
    load_dataset,
    standardize,
)

N_PER_BATCH = 12  # 5 x 12 = 60 training images, 6 per class except 9 / 3 in classes 0 / 9
N_TEST = 10


def _fake_cifar_arrays():
    """Raw uint8 rows and labels in the CIFAR-10 python layout (N x 3072, channel-major)."""
    rng = np.random.default_rng(0)
    n = 5 * N_PER_BATCH
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    base = np.arange(n) % 10
    base[np.flatnonzero(base == 9)[:3]] = 0  # imbalanced: class 0 has 9 images, class 9 has 3
    labels = rng.permutation(base).astype(np.int64)
    test_data = rng.integers(0, 256, size=(N_TEST, 3072), dtype=np.uint8)
    test_labels = (np.arange(N_TEST) % 10).astype(np.int64)
    return data, labels, test_data, test_labels


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A fake CIFAR-10 copy as a folder and as a .tar.gz archive, plus the raw arrays."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "extracted" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data, labels, test_data, test_labels = _fake_cifar_arrays()
    for i in range(5):
        sl = slice(i * N_PER_BATCH, (i + 1) * N_PER_BATCH)
        batch = {b"data": data[sl], b"labels": labels[sl].tolist(), b"batch_label": b"x"}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    test = {b"data": test_data, b"labels": test_labels.tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    archive_dir = root / "archive"
    archive_dir.mkdir()
    archive = archive_dir / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return {
        "folder": folder,
        "archive": archive,
        "raw": (data, labels, test_data, test_labels),
    }


def _nhwc(rows: np.ndarray) -> np.ndarray:
    """Channel-major CIFAR rows to NHWC floats in [0, 1], by explicit indexing."""
    n = rows.shape[0]
    out = np.empty((n, 32, 32, 3), np.float64)
    for c in range(3):
        for h in range(32):
            out[:, h, :, c] = rows[:, c * 1024 + h * 32 : c * 1024 + h * 32 + 32]
    return out / 255.0


def _cfg(path, **kw):
    return {"name": "cifar10", "n_train": 20, "n_test": 5, "balanced": False, "path": str(path), **kw}


def test_cifar_first_n_is_standardised_with_training_statistics(cifar):
    data, labels, test_data, test_labels = cifar["raw"]
    ds = load_dataset(_cfg(cifar["folder"]))
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.num_classes == 10 and ds.name == "cifar10"
    np.testing.assert_array_equal(ds.y_train, labels[:20])
    np.testing.assert_array_equal(ds.y_test, test_labels[:5])
    # Exactly the formula: (x/255 - mean_train) / std_train, statistics of the 20 kept images.
    raw_train, raw_test = _nhwc(data[:20]), _nhwc(test_data[:5])
    mean, std = raw_train.mean(0), raw_train.std(0)
    np.testing.assert_allclose(ds.x_train, (raw_train - mean) / std, atol=2e-5)
    np.testing.assert_allclose(ds.x_test, (raw_test - mean) / std, atol=2e-5)
    # Train features have mean 0 and std 1; the test set is mapped with the same statistics, so
    # its features are not standardised on their own.
    flat = ds.x_train.reshape(20, -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1.0, atol=1e-5)
    assert np.abs(ds.x_test.reshape(5, -1).mean(0)).max() > 0.1
    np.testing.assert_allclose(ds.meta["feature_mean"], mean.reshape(-1), atol=1e-12)
    assert ds.meta["n_train"] == 20 and ds.meta["n_test"] == 5


def test_cifar_archive_equals_folder_and_path_forms(cifar, monkeypatch):
    ref = load_dataset(_cfg(cifar["folder"], n_train=30))
    forms = [cifar["archive"], cifar["archive"].parent, cifar["folder"].parent]
    for path in forms:
        ds = load_dataset(_cfg(path, n_train=30))
        for a, b in zip(ds[:4], ref[:4], strict=True):
            np.testing.assert_array_equal(a, b)
    monkeypatch.setenv(CIFAR10_ENV_VAR, str(cifar["archive"]))
    ds = load_dataset(_cfg("", n_train=30))
    np.testing.assert_array_equal(ds.x_train, ref.x_train)


def test_cifar_balanced_subset_takes_first_examples_of_each_class(cifar):
    data, labels, _, _ = cifar["raw"]
    ds = load_dataset(_cfg(cifar["archive"], n_train=25, balanced=True, n_test=0))
    counts = np.bincount(ds.y_train, minlength=10)
    assert counts.max() - counts.min() == 1 and counts.sum() == 25
    np.testing.assert_array_equal(counts, [3] * 5 + [2] * 5)
    expected = np.sort(np.concatenate([np.flatnonzero(labels == c)[: counts[c]] for c in range(10)]))
    np.testing.assert_array_equal(ds.y_train, labels[expected])
    raw = _nhwc(data[expected])
    np.testing.assert_allclose(ds.x_train, (raw - raw.mean(0)) / raw.std(0), atol=2e-5)
    assert ds.x_test.shape[0] == N_TEST  # n_test = 0 keeps all


def test_cifar_all_and_too_many(cifar):
    ds = load_dataset(_cfg(cifar["folder"], n_train=0, n_test=0))
    assert ds.x_train.shape[0] == 5 * N_PER_BATCH and ds.x_test.shape[0] == N_TEST
    with pytest.raises(ValueError, match="n_train = 61 exceeds the 60 available"):
        load_dataset(_cfg(cifar["folder"], n_train=61))


def test_cifar_balanced_subset_larger_than_a_class_fails(cifar):
    with pytest.raises(ValueError, match=r"class 9 has only 3 examples.*needs 4.*balanced = false"):
        load_dataset(_cfg(cifar["folder"], n_train=40, balanced=True, n_test=0))
    ds = load_dataset(_cfg(cifar["folder"], n_train=30, balanced=True, n_test=0))
    np.testing.assert_array_equal(np.bincount(ds.y_train), [3] * 10)


def test_missing_cifar_names_layout_and_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv(CIFAR10_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=r"EOSMODEL_CIFAR10.*cifar-10-batches-py"):
        load_dataset(_cfg(""))
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*cifar-10-python\.tar\.gz"):
        load_dataset(_cfg(tmp_path / "nowhere"))
    monkeypatch.setenv(CIFAR10_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=CIFAR10_ENV_VAR):
        load_dataset(_cfg(""))


def test_mnist1d_offline_leaves_global_rngs_untouched(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("load_dataset('mnist1d') tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    _mnist1d_cached.cache_clear()  # force a real call to mnist1d.data.make_dataset
    np.random.seed(123)
    random.seed(7)
    np_before = np.random.get_state()
    py_before = random.getstate()
    ds = load_dataset({"name": "mnist1d", "n_train": 0, "n_test": 0})
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
    np.testing.assert_allclose(ds.x_train.astype(np.float64).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.astype(np.float64).std(0), 1.0, atol=1e-5)
    # The default (seed-42) data set is reproducible: the first n examples of a subset agree.
    small = load_dataset({"name": "mnist1d", "n_train": 100, "n_test": 10})
    np.testing.assert_array_equal(small.y_train, ds.y_train[:100])


def test_digits_shapes_split_and_standardisation():
    ds = load_dataset({"name": "digits", "n_train": 0, "n_test": 0})
    assert ds.x_train.shape == (1297, 8, 8, 1) and ds.x_test.shape == (500, 8, 8, 1)
    flat = ds.x_train.reshape(1297, -1).astype(np.float64)
    constant = ds.meta["feature_std"] == 1.0  # features constant on train are only centred
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0)[~constant], 1.0, atol=1e-5)
    np.testing.assert_array_equal(flat[:, constant], 0.0)


def test_synthetic_is_a_function_of_its_seed():
    cfg = {"name": "synthetic", "n_train": 50, "n_test": 20, "seed": 3, "num_classes": 3,
           "input_shape": [4, 4, 2]}
    a, b = load_dataset(cfg), load_dataset(dict(cfg))
    c = load_dataset(cfg | {"seed": 4})
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (50, 4, 4, 2) and a.num_classes == 3
    assert set(np.unique(a.y_train)) <= {0, 1, 2}
    full = load_dataset(cfg | {"n_train": 0, "n_test": 0})
    assert full.x_train.shape[0] == 256 and full.x_test.shape[0] == 128


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "imagenet"}, "data.name = 'imagenet' is unknown"),
        ({"name": "synthetic", "n_train": -1}, "data.n_train must be an integer ≥ 0"),
        ({"name": "synthetic", "n_test": 2.5}, "data.n_test must be an integer ≥ 0"),
        ({"name": "synthetic", "num_classes": 1}, "data.num_classes must be an integer ≥ 2"),
        ({"name": "synthetic", "input_shape": [0]}, "data.input_shape must be"),
    ],
)
def test_bad_config_raises_clear_error(cfg, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(cfg)


@given(
    n=st.integers(1, 30),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-2, 1e3),
)
def test_standardize_properties(n, d, seed, scale):
    rng = np.random.default_rng(seed)
    x_train = (scale * rng.standard_normal((n, d)) + 5.0).astype(np.float32)
    x_train[:, 0] = 2.0  # a constant feature: centred only
    x_test = (scale * rng.standard_normal((3, d))).astype(np.float32)
    tr, te, mean, std = standardize(x_train, x_test)
    np.testing.assert_allclose(tr.mean(0, dtype=np.float64), 0.0, atol=1e-5)
    varying = x_train.astype(np.float64).std(0) > 0
    varying[0] = False
    np.testing.assert_allclose(tr.std(0, dtype=np.float64)[varying], 1.0, atol=1e-4)
    assert std[0] == 1.0 and np.all(tr[:, 0] == 0.0)
    # The same affine map applies to test data: undoing it recovers the inputs.
    np.testing.assert_allclose(te * std + mean, x_test, rtol=1e-5, atol=1e-6 * (5.0 + scale))


@given(
    labels=st.lists(st.integers(0, 3), min_size=1, max_size=60),
    n=st.integers(1, 60),
)
def test_balanced_indices_properties(labels, n):
    labels = np.array(labels)
    k = 4
    counts_available = np.bincount(labels, minlength=k)
    base, extra = divmod(n, k)
    want = np.array([base + (c < extra) for c in range(k)])
    if np.any(counts_available < want):
        with pytest.raises(ValueError, match="balanced"):
            balanced_indices(labels, n, k)
        return
    idx = balanced_indices(labels, n, k)
    assert idx.size == n and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=k)
    np.testing.assert_array_equal(counts, want)
    for c in range(k):  # the first examples of each class, none skipped
        np.testing.assert_array_equal(idx[labels[idx] == c], np.flatnonzero(labels == c)[: want[c]])
