"""CIFAR-10 python batches (folder and .tar.gz) and the restricted unpickler."""

from __future__ import annotations

import contextlib
import os
import pickle
import pickletools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advml.data as data
from advml.data.cifar import RestrictedUnpickler, decode_batch, restricted_loads
from advml.errors import FormatError


def _expected(arrays, split):
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    images = np.concatenate([arrays[n][0] for n in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([arrays[n][1] for n in names])
    return images, labels


def test_emitter_writes_python2_protocol2(cifar_writer):
    _, _, py2_pickle = cifar_writer
    blob = py2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [3]})
    opcodes = [op.name for op, _, _ in pickletools.genops(blob)]
    assert opcodes[0] == "PROTO" and blob[1] == 2
    assert "SHORT_BINSTRING" in opcodes and "BINSTRING" in opcodes  # py2 str, not unicode
    globals_used = [arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"]
    assert globals_used == [
        "numpy.core.multiarray _reconstruct",
        "numpy ndarray",
        "numpy dtype",
    ]


@pytest.mark.parametrize("archive", [False, True])
def test_cifar_folder_and_archive(tmp_path, cifar_writer, archive):
    write_cifar, tar_cifar, _ = cifar_writer
    arrays = write_cifar(tmp_path, per_batch=4)
    if archive:
        tar_cifar(tmp_path)
        assert not (tmp_path / "cifar10" / "cifar-10-batches-py").exists()
    for split, n in (("train", 20), ("test", 4)):
        x, y = data.load("cifar10", split, root=tmp_path, verify=False)
        assert x.shape == (n, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        images, labels = _expected(arrays, split)
        np.testing.assert_array_equal((x * 255).round().numpy().astype(np.uint8), images)
        np.testing.assert_array_equal(y.numpy(), labels)
    # channel layout: the first 1024 bytes of a row are the red plane, row-major
    row = arrays["data_batch_1"][0][0]
    x, _ = data.load("cifar10", "train", root=tmp_path, verify=False)
    assert round(float(x[0, 0, 0, 1]) * 255) == row[1]
    assert round(float(x[0, 1, 0, 0]) * 255) == row[1024]
    assert round(float(x[0, 2, 1, 0]) * 255) == row[2048 + 32]


@pytest.mark.parametrize("archive", [False, True])
def test_cifar_verify_rejects_unofficial_files(tmp_path, cifar_writer, archive):
    write_cifar, tar_cifar, _ = cifar_writer
    write_cifar(tmp_path)
    name = "data_batch_1"
    if archive:
        tar_cifar(tmp_path)
        name = "cifar-10-python.tar.gz"
    with pytest.raises(FormatError) as caught:
        data.load("cifar10", "train", root=tmp_path)
    message = str(caught.value)
    assert name in message and "checksum mismatch" in message
    assert "advml data download cifar10" in message
    status = {row.name: row.status for row in data.available(tmp_path)}
    assert status["cifar10"] == "corrupt"


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_not_executed(tmp_path, cifar_writer, protocol):
    write_cifar, _, _ = cifar_writer
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"data": _Evil(f"touch {marker}"), "labels": [0]}
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        pickle.dumps(payload, protocol=protocol)
    )
    with pytest.raises(FormatError) as caught:
        data.load("cifar10", "train", root=tmp_path, verify=False)
    assert "refusing to unpickle" in str(caught.value)
    assert "system" in str(caught.value) and "data_batch_3" in str(caught.value)
    assert not marker.exists()


def test_malicious_pickle_in_archive(tmp_path, cifar_writer):
    write_cifar, tar_cifar, _ = cifar_writer
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps(_Evil(f"touch {marker}"), protocol=2)
    )
    tar_cifar(tmp_path)
    with pytest.raises(FormatError, match=r"tar\.gz:cifar-10-batches-py/test_batch"):
        data.load("cifar10", "test", root=tmp_path, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(_EvalEvil()),
        pickle.dumps(print),
        b"cos\nsystem\n(S'true'\ntR.",
        b"c__builtin__\neval\n(S'1'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
    ],
)
def test_only_numpy_array_globals_allowed(payload):
    with pytest.raises(FormatError, match="refusing to unpickle"):
        restricted_loads(payload, "evil.pkl")


def test_persistent_ids_refused():
    with pytest.raises(FormatError, match="persistent"):
        restricted_loads(b"\x80\x02X\x01\x00\x00\x00aQ.", "p.pkl")


def test_unpickler_is_a_pickle_unpickler():
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ([1, 2], "expected a pickled dict"),
        ({"labels": [1]}, "keys 'data' and 'labels'"),
        ({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, r"uint8 array \(n, 3072\)"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "1 labels for 2 images"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "out of range"),
    ],
)
def test_batch_content_checked(cifar_writer, batch, match):
    _, _, py2_pickle = cifar_writer
    with pytest.raises(FormatError, match=match):
        decode_batch(py2_pickle(batch), "batch")


def test_archive_without_members(tmp_path):
    import tarfile

    folder = tmp_path / "cifar10"
    folder.mkdir()
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz"):
        pass
    with pytest.raises(FormatError, match="lacks member"):
        data.load("cifar10", "test", root=tmp_path, verify=False)
    (folder / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="corrupt or unreadable"):
        data.load("cifar10", "test", root=tmp_path, verify=False)


def test_partial_folder_names_missing_batches(tmp_path, cifar_writer):
    write_cifar, _, _ = cifar_writer
    write_cifar(tmp_path)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(data.UserError, match="data_batch_4"):
        data.load("cifar10", "train", root=tmp_path, verify=False)
    x, _ = data.load("cifar10", "test", root=tmp_path, verify=False)
    assert x.shape[0] == 4


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_fuzz_unpickler(blob):
    with contextlib.suppress(FormatError):
        restricted_loads(b"\x80\x02" + blob, "fuzz")
