"""User data: .npz arrays and image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import advml.data as data
from advml.errors import FormatError, UserError


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_uint8_grey(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    y = np.array([0, 1, 2, 1, 0])
    path = _npz(tmp_path / "set.npz", x=x, y=y)
    xt, yt = data.load(str(path))
    assert xt.shape == (5, 1, 6, 7) and xt.dtype == torch.float32 and yt.dtype == torch.int64
    np.testing.assert_allclose(xt.numpy()[:, 0], x / 255.0, rtol=1e-6)
    # no split arrays: either split returns the whole file
    xs, _ = data.load(path, "test")
    assert torch.equal(xs, xt)
    info = data.info(str(path))
    assert info.input_shape == (1, 6, 7) and info.num_classes == 3
    assert info.splits == {"train": 5, "test": 5}
    assert abs(info.mean[0] - float(x.mean() / 255)) < 1e-3


def test_npz_float_channels_last_and_splits(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.random((4, 8, 8, 3), dtype=np.float32)
    x_test = rng.random((2, 8, 8, 3)).astype(np.float64)
    path = _npz(
        tmp_path / "rgb.npz",
        x_train=x_train,
        y_train=np.array([0, 1, 1, 0], np.int32),
        x_test=x_test,
        y_test=np.array([1.0, 0.0]),
    )
    xt, _yt = data.load(str(path), "train")
    assert xt.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(xt.numpy(), np.moveaxis(x_train, -1, 1))
    xs, ys = data.load(str(path), "test")
    assert xs.shape == (2, 3, 8, 8) and xs.dtype == torch.float32
    assert ys.tolist() == [1, 0] and ys.dtype == torch.int64


def test_npz_channels_first_accepted(tmp_path):
    x = np.zeros((3, 1, 10, 10), np.uint8)
    path = _npz(tmp_path / "nchw.npz", x=x, y=np.zeros(3, np.int64))
    assert data.load(str(path))[0].shape == (3, 1, 10, 10)


@pytest.mark.parametrize(
    ("arrays", "error", "match"),
    [
        ({"x": np.full((2, 4, 4), 2.0), "y": np.zeros(2, int)}, FormatError, r"\[0, 1\]"),
        ({"x": np.full((2, 4, 4), -0.5), "y": np.zeros(2, int)}, FormatError, "divide by 255"),
        ({"x": np.full((2, 4, 4), np.nan), "y": np.zeros(2, int)}, FormatError, "NaN"),
        ({"x": np.zeros((2, 4, 4), np.int32), "y": np.zeros(2, int)}, FormatError, "uint8"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(3, int)}, FormatError, r"\(2,\)"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0.5, 1])}, FormatError, "integer"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([-1, 1])}, FormatError, "negative"),
        ({"x": np.zeros((2, 4, 4, 5, 6), np.uint8), "y": np.zeros(2)}, FormatError, "shape"),
        ({"images": np.zeros((2, 4, 4), np.uint8)}, FormatError, "needs arrays 'x' and 'y'"),
        (
            {"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.zeros(2, int)},
            FormatError,
            "'x_test'",
        ),
    ],
)
def test_npz_errors(tmp_path, arrays, error, match):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(error, match=match) as caught:
        data.load(str(path), "test")
    assert str(path) in str(caught.value)


def test_npz_object_arrays_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(FormatError, match=r"not a readable \.npz"):
        data.load(str(path))


def test_npz_missing_and_not_npz(tmp_path):
    with pytest.raises(UserError, match="not found"):
        data.load(str(tmp_path / "absent.npz"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match=r"neither an \.npz"):
        data.load(str(text))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match=r"corrupt\.npz"):
        data.load(str(corrupt))


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_grey(tmp_path):
    rng = np.random.default_rng(2)
    expected = {}
    for cls in ("cat", "ant", "bee"):
        for k in range(2):
            array = rng.integers(0, 256, size=(5, 4), dtype=np.uint8)
            _save(tmp_path / "imgs" / cls / f"{k}.png", array)
            expected[(cls, k)] = array
    (tmp_path / "imgs" / "ant" / "readme.txt").write_text("ignored")
    x, y = data.load(str(tmp_path / "imgs"))
    assert x.shape == (6, 1, 5, 4) and y.tolist() == [0, 0, 1, 1, 2, 2]  # ant, bee, cat
    np.testing.assert_allclose(x[4, 0].numpy(), expected[("cat", 0)] / 255.0, rtol=1e-6)
    info = data.info(str(tmp_path / "imgs"))
    assert info.class_names == ("ant", "bee", "cat") and info.input_shape == (1, 5, 4)


def test_image_folder_colour_and_jpeg(tmp_path):
    rng = np.random.default_rng(3)
    _save(tmp_path / "d" / "a" / "0.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
    _save(tmp_path / "d" / "b" / "1.jpg", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    _save(tmp_path / "d" / "b" / "2.PNG", rng.integers(0, 256, (6, 6, 4), dtype=np.uint8))
    x, y = data.load(str(tmp_path / "d"))
    assert x.shape == (3, 3, 6, 6) and y.tolist() == [0, 1, 1]
    # a grey image becomes three equal channels
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_image_folder_sizes_must_match(tmp_path):
    _save(tmp_path / "d" / "a" / "0.png", np.zeros((6, 6), np.uint8))
    _save(tmp_path / "d" / "b" / "1.png", np.zeros((7, 6), np.uint8))
    with pytest.raises(UserError) as caught:
        data.load(str(tmp_path / "d"))
    message = str(caught.value)
    assert "same size" in message and "0.png" in message and "1.png" in message
    assert "6x6" in message and "6x7" in message


def test_image_folder_train_test(tmp_path):
    _save(tmp_path / "d" / "train" / "dog" / "0.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "d" / "train" / "cat" / "0.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "d" / "test" / "dog" / "0.png", np.full((4, 4), 255, np.uint8))
    _save(tmp_path / "d" / "test" / "emu" / "0.png", np.full((4, 4), 255, np.uint8))
    _x, y = data.load(str(tmp_path / "d"), "train")
    assert y.tolist() == [0, 1]  # cat, dog of (cat, dog, emu)
    xt, yt = data.load(str(tmp_path / "d"), "test")
    assert yt.tolist() == [1, 2] and float(xt.min()) == 1.0
    assert data.info(str(tmp_path / "d")).class_names == ("cat", "dog", "emu")


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class sub-folders"):
        data.load(str(tmp_path / "empty"))
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no PNG/JPEG"):
        data.load(str(tmp_path / "noimg"))
    bad = tmp_path / "bad" / "a" / "x.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(FormatError, match=r"x\.png: cannot decode"):
        data.load(str(tmp_path / "bad"))
    _save(tmp_path / "only" / "train" / "a" / "0.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(UserError, match="no 'test' folder"):
        data.load(str(tmp_path / "only"), "test")
    deep = tmp_path / "deep" / "a" / "x.png"
    deep.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(deep)  # 16-bit grey PNG
    with pytest.raises(FormatError, match="unsupported image mode"):
        data.load(str(tmp_path / "deep"))


def test_npy_renamed_to_npz(tmp_path):
    path = tmp_path / "single.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(FormatError, match="single array"):
        data.load(str(path))
