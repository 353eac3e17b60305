"""Loaders on the real files of the shared data folder (through ``ADVML_DATA`` / ``data_root``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import advml.data as data
from advml.data import checksums
from advml.errors import FormatError, UserError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
USPS_TRAIN_COUNTS = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
USPS_TEST_COUNTS = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


def _check_images(x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape) == shape
    assert x.is_contiguous()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert y.shape == (shape[0],)


@pytest.fixture(scope="module")
def mnist_train(data_root):
    return data.load("mnist", "train", root=data_root)


def test_mnist_train(mnist_train, data_root):
    x, y = mnist_train
    _check_images(x, y, (60000, 1, 28, 28))
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert float(x.max()) == 1.0
    # the catalogue's normalization constants are the train-set statistics
    info = data.info("mnist")
    assert abs(float(x.mean()) - info.mean[0]) < 1e-4
    assert abs(float(x.std()) - info.std[0]) < 1e-4


def test_mnist_test_through_env(data_root, monkeypatch):
    monkeypatch.setenv("ADVML_DATA", str(data_root))
    x, y = data.load("MNIST", "test")
    _check_images(x, y, (10000, 1, 28, 28))
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert int((y == 1).sum()) == 1135
    # first test image is a 7 (the well-known first t10k sample)
    assert int(y[0]) == 7
    # pixel values are exactly k/255
    assert torch.equal(torch.round(x[0] * 255) / 255, x[0])


def test_usps(data_root):
    for split, n, counts in (
        ("train", 7291, USPS_TRAIN_COUNTS),
        ("test", 2007, USPS_TEST_COUNTS),
    ):
        x, y = data.load("usps", split, root=data_root)
        _check_images(x, y, (n, 1, 16, 16))
        assert torch.bincount(y, minlength=10).tolist() == counts
        if split == "train":
            info = data.info("usps")
            assert abs(float(x.mean()) - info.mean[0]) < 1e-4
            assert abs(float(x.std()) - info.std[0]) < 1e-4


def test_digits_split_is_fixed():
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    _check_images(x, y, (1437, 1, 8, 8))
    _check_images(xt, yt, (360, 1, 8, 8))
    assert torch.bincount(yt, minlength=10).min() >= 35  # stratified
    x2, y2 = data.load_digits("train")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    info = data.info("digits")
    assert abs(float(x.mean()) - info.mean[0]) < 1e-4
    assert abs(float(x.std()) - info.std[0]) < 1e-4


def test_unknown_name_and_split():
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")
    with pytest.raises(UserError, match="unknown split"):
        data.load("digits", "validation")


def test_missing_files_message(tmp_path):
    with pytest.raises(UserError) as caught:
        data.load("mnist", "test", root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message
    assert "ADVML_DATA" in message and "advml data download mnist" in message
    with pytest.raises(UserError, match=r"usps\.h5"):
        data.load("usps", root=tmp_path)
    with pytest.raises(UserError, match=r"cifar-10-python\.tar\.gz"):
        data.load("cifar10", root=tmp_path)


def test_default_root_is_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ADVML_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.data_root() == tmp_path / ".cache" / "advml"
    with pytest.raises(UserError, match=r"\.cache/advml/fashion-mnist"):
        data.load("fashion-mnist")


def _copy_mnist_test(data_root, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_root / "mnist" / name, folder / name)
    return folder


def test_checksum_mismatch(data_root, tmp_path):
    folder = _copy_mnist_test(data_root, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(labels.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    labels.write_bytes(bytes(blob))
    with pytest.raises(FormatError) as caught:
        data.load("mnist", "test", root=tmp_path)
    message = str(caught.value)
    assert str(labels) in message and "checksum mismatch" in message
    assert "advml data download mnist" in message
    # without verification the corrupt gzip stream itself is caught
    with pytest.raises(FormatError, match="t10k-labels"):
        data.load("mnist", "test", root=tmp_path, verify=False)
    status = {row.name: row.status for row in data.available(tmp_path)}
    assert status["mnist"] == "missing"  # train files absent
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(data_root / "mnist" / name, folder / name)
    status = {row.name: row.status for row in data.available(tmp_path)}
    assert status["mnist"] == "corrupt"


def test_raw_idx_files_load_without_checksum(data_root, tmp_path):
    import gzip

    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(
            gzip.decompress((data_root / "mnist" / f"{name}.gz").read_bytes())
        )
    x, y = data.load("mnist", "test", root=tmp_path)
    assert x.shape == (10000, 1, 28, 28) and int((y == 1).sum()) == 1135


def test_digest_is_cached(data_root, tmp_path, monkeypatch):
    folder = _copy_mnist_test(data_root, tmp_path)
    data.load("mnist", "test", root=tmp_path)
    calls = []
    real_new = checksums.hashlib.new

    def counting_new(*args, **kwargs):
        calls.append(args)
        return real_new(*args, **kwargs)

    monkeypatch.setattr(checksums.hashlib, "new", counting_new)
    data.load("mnist", "test", root=tmp_path)
    assert calls == []  # unchanged files: no re-hash
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes() + b"\0")  # size changes -> re-hash -> mismatch
    with pytest.raises(FormatError, match="checksum mismatch"):
        data.load("mnist", "test", root=tmp_path)
    assert len(calls) == 1


def test_usps_checksum_and_format(data_root, tmp_path):
    folder = tmp_path / "usps"
    folder.mkdir()
    (folder / "usps.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(FormatError, match="checksum mismatch"):
        data.load("usps", root=tmp_path)
    with pytest.raises(FormatError, match=r"usps\.h5: not a readable USPS HDF5"):
        data.load("usps", root=tmp_path, verify=False)
    statuses = {row.name: row.status for row in data.available(tmp_path)}
    assert statuses["usps"] == "corrupt"


def test_usps_synthetic_h5(tmp_path):
    import h5py

    folder = tmp_path / "usps"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(folder / "usps.h5", "w") as handle:
        for split, n in (("train", 5), ("test", 3)):
            handle.create_dataset(f"{split}/data", data=rng.random((n, 256), dtype=np.float32))
            handle.create_dataset(f"{split}/target", data=rng.integers(0, 10, n, dtype=np.int32))
    x, y = data.load("usps", "test", root=tmp_path, verify=False)
    assert x.shape == (3, 1, 16, 16) and y.dtype == torch.int64
    with h5py.File(folder / "usps.h5", "a") as handle:
        handle["train/data"][0, 0] = 3.0
    with pytest.raises(FormatError, match=r"outside \[0, 1\]"):
        data.load("usps", "train", root=tmp_path, verify=False)


def test_info_and_names():
    assert data.names() == [
        "digits",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "usps",
        "toy-ring",
        "toy-grid",
    ]
    cifar = data.info("cifar-10")
    assert cifar.input_shape == (3, 32, 32) and cifar.num_classes == 10
    assert len(cifar.mean) == 3 and len(cifar.std) == 3
    assert cifar.class_names[0] == "airplane"
    assert cifar.checksums["cifar-10-python.tar.gz"].startswith("sha256:6d958be0")
    assert cifar.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    mnist = data.info("mnist")
    assert mnist.mean == (0.1307,) and mnist.std == (0.3081,)
    assert mnist.splits == {"train": 60000, "test": 10000}
    assert {f.name for f in mnist.files} == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    fashion = data.info("fashion_mnist")
    assert fashion.class_names[9] == "Ankle boot"
    assert data.info("toy-grid").input_shape == (2,)
    with pytest.raises(UserError):
        data.info("nope")


def test_mnist_checksums_match_shared_md5sums(data_root):
    published = dict(
        reversed(line.split())
        for line in (data_root / "mnist" / "MD5SUMS").read_text().splitlines()
    )
    for spec in data.info("mnist").files:
        assert published[spec.name] == spec.md5


def test_available_on_shared(data_root):
    rows = data.available(data_root)
    status = {row.name: row.status for row in rows}
    assert status["mnist"] == "found" and status["usps"] == "found"
    assert status["digits"] == "found" and status["toy-ring"] == "found"
    assert status["cifar10"] == "missing" and status["fashion-mnist"] == "missing"
    assert all(len(row) == 3 for row in rows)
