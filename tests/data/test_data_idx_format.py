"""IDX parser (format of LeCun et al.) and the Fashion-MNIST loader on synthetic official files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import advml.data as data
from advml.data.idx import parse_idx, read_idx
from advml.errors import FormatError


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_parse_every_type_code(dtype, idx_encode):
    array = (np.arange(24) - 5).reshape(2, 3, 4)
    if dtype == "u1":
        array = np.arange(24).reshape(2, 3, 4)
    array = array.astype(np.dtype(dtype).newbyteorder("="))
    decoded = parse_idx(idx_encode(array))
    assert decoded.dtype == array.dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, array)


def test_header_is_big_endian(idx_encode):
    blob = idx_encode(np.zeros((2, 3), np.uint8))
    assert blob[:4] == b"\x00\x00\x08\x02"
    assert blob[4:12] == struct.pack(">II", 2, 3)
    assert parse_idx(blob).shape == (2, 3)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "shorter than the header"),
        (b"\x00\x00\x08", "shorter than the header"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "two zeros"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc", "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc", "trailing bytes"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 1) + b"abc", "truncated"),
        (b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 9), "truncated"),
    ],
)
def test_malformed_headers(blob, match):
    with pytest.raises(FormatError, match=match):
        parse_idx(blob, "bad-file")


def test_truncated_file_names_the_file(tmp_path, idx_encode):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_encode(np.zeros((3, 28, 28), np.uint8))[:-10])
    with pytest.raises(FormatError) as caught:
        read_idx(path)
    assert str(path) in str(caught.value) and "truncated" in str(caught.value)
    gz = tmp_path / "x.gz"
    gz.write_bytes(gzip.compress(idx_encode(np.zeros((3, 28, 28), np.uint8)))[:-12])
    with pytest.raises(FormatError, match=r"x\.gz: corrupt gzip"):
        read_idx(gz)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_synthetic(tmp_path, make_fashion, gz):
    arrays = make_fashion(tmp_path, gz=gz)
    for split in ("train", "test"):
        x, y = data.load("fashion-mnist", split, root=tmp_path, verify=False)
        images, labels = arrays[split]
        assert x.shape == (images.shape[0], 1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        np.testing.assert_array_equal((x[:, 0] * 255).round().numpy().astype(np.uint8), images)
        np.testing.assert_array_equal(y.numpy(), labels)


def test_fashion_official_names_are_verified(tmp_path, make_fashion):
    make_fashion(tmp_path, gz=True)
    with pytest.raises(FormatError) as caught:
        data.load("fashion-mnist", "train", root=tmp_path)
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "checksum mismatch" in message
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message
    assert "advml data download fashion-mnist" in message
    # uncompressed files have no published checksum: structural checks only
    make_fashion(tmp_path / "raw", gz=False)
    x, _ = data.load("fashion-mnist", "test", root=tmp_path / "raw")
    assert x.shape == (4, 1, 28, 28)


def test_loader_rejects_wrong_content(tmp_path, make_idx):
    folder = tmp_path / "fashion-mnist"
    make_idx(folder / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    make_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(FormatError, match="4 labels for 3 images"):
        data.load("fashion-mnist", "test", root=tmp_path, verify=False)
    make_idx(folder / "t10k-labels-idx1-ubyte", np.array([0, 1, 10], np.uint8))
    with pytest.raises(FormatError, match="label 10 out of range"):
        data.load("fashion-mnist", "test", root=tmp_path, verify=False)
    make_idx(folder / "t10k-images-idx3-ubyte", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(FormatError, match=r"shape \(N, 28, 28\)"):
        data.load("fashion-mnist", "test", root=tmp_path, verify=False)
    make_idx(folder / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.float32))
    with pytest.raises(FormatError, match="expected uint8 images"):
        data.load("fashion-mnist", "test", root=tmp_path, verify=False)


def test_missing_one_label_file(tmp_path, make_idx):
    folder = tmp_path / "fashion-mnist"
    make_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8), gz=True)
    with pytest.raises(data.UserError) as caught:
        data.load("fashion-mnist", "test", root=tmp_path, verify=False)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "t10k-images" not in message
    assert str(folder) in message


# --- fuzzing: any bytes, truncations and corruptions give FormatError or a valid array ---

_VALID = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 4) + bytes(range(24))


def _parse_or_format_error(blob: bytes) -> None:
    try:
        array = parse_idx(blob, "fuzz")
    except FormatError:
        return
    assert isinstance(array, np.ndarray)


_FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(blob):
    _parse_or_format_error(blob)


@_FUZZ
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.lists(st.integers(0, 2**32 - 1), max_size=5),
    st.binary(max_size=100),
)
def test_fuzz_random_headers(code, ndim, dims, payload):
    blob = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + payload
    _parse_or_format_error(blob)


@_FUZZ
@given(st.integers(0, len(_VALID)), st.integers(0, len(_VALID) - 1), st.integers(1, 255))
def test_fuzz_truncated_and_flipped(cut, position, flip):
    _parse_or_format_error(_VALID[:cut])
    corrupted = bytearray(_VALID)
    corrupted[position] ^= flip
    _parse_or_format_error(bytes(corrupted))


@_FUZZ
@given(st.integers(0, 80), st.binary(max_size=40))
def test_fuzz_gzip_files(tmp_path_factory, cut, noise):
    path = tmp_path_factory.mktemp("fuzz") / "f.gz"
    compressed = gzip.compress(_VALID)
    path.write_bytes(compressed[:cut] + noise)
    try:
        array = read_idx(path)
    except FormatError:
        return
    assert isinstance(array, np.ndarray)
