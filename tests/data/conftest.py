"""Fixtures of the data-module tests: writers of small files in the exact official formats.

They are fixtures returning functions (not importable helpers) so that the tests work in any
pytest import mode.
"""

from __future__ import annotations

import gzip
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from advml.data import checksums

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as an IDX file: 0, 0, type code, ndim, big-endian sizes, data."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` byte-for-byte the way Python 2's cPickle (protocol 2) wrote the CIFAR-10
    batches: py2 ``str`` as SHORT_BINSTRING/BINSTRING, numpy arrays through
    ``numpy.core.multiarray._reconstruct`` with a py2-str data buffer (memo opcodes omitted)."""
    out = bytearray(b"\x80\x02")

    def emit(o: object) -> None:
        if isinstance(o, dict):
            out.extend(b"}")
            if o:
                out.extend(b"(")
                for key, value in o.items():
                    emit(key)
                    emit(value)
                out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"]")
            if o:
                out.extend(b"(")
                for value in o:
                    emit(value)
                out.extend(b"e")
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, int):
            if 0 <= o < 256:
                out.extend(b"K" + bytes([o]))
            elif 0 <= o < 65536:
                out.extend(b"M" + struct.pack("<H", o))
            else:
                out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, str | bytes):
            raw = o.encode("latin1") if isinstance(o, str) else o
            if len(raw) < 256:
                out.extend(b"U" + bytes([len(raw)]) + raw)
            else:
                out.extend(b"T" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8 and o.ndim == 2
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit(0)
            out.extend(b"\x85")  # TUPLE1 -> shape (0,)
            emit(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, MARK (state tuple)
            emit(1)
            emit(o.shape[0])
            emit(o.shape[1])
            out.extend(b"\x86cnumpy\ndtype\n")  # TUPLE2 (shape), dtype global
            emit(b"u1")
            emit(0)
            emit(1)
            out.extend(b"\x87R(")  # dtype('u1', 0, 1), then its state tuple
            emit(3)
            emit(b"|")
            out.extend(b"NNN")
            emit(-1)
            emit(-1)
            emit(0)
            out.extend(b"tb\x89")  # TUPLE, BUILD (dtype state), NEWFALSE (not Fortran)
            emit(o.tobytes())
            out.extend(b"tb")  # TUPLE, BUILD (array state)
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]


def write_cifar(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``<root>/cifar10/cifar-10-batches-py/`` with tiny batches; return the arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays: dict[str, np.ndarray] = {}
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        label = (
            "testing batch 1 of 1" if name == "test_batch" else f"training batch {index + 1} of 5"
        )
        batch = {
            "data": data,
            "labels": labels,
            "batch_label": label,
            "filenames": [f"img_{index}_{k}.png" for k in range(per_batch)],
        }
        (folder / name).write_bytes(py2_pickle(batch))
        arrays[name] = (data, np.asarray(labels))
    meta = {
        "num_cases_per_batch": per_batch,
        "label_names": [*CIFAR_CLASSES, "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return arrays


def tar_cifar(root: Path) -> Path:
    """Pack ``<root>/cifar10/cifar-10-batches-py`` into ``cifar-10-python.tar.gz`` and remove
    the folder, leaving only the archive (as downloaded)."""
    directory = root / "cifar10"
    archive = directory / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    for file in (directory / "cifar-10-batches-py").iterdir():
        file.unlink()
    (directory / "cifar-10-batches-py").rmdir()
    return archive


@pytest.fixture
def make_idx():
    """``make_idx(path, array, gz=False)`` writes ``array`` as an IDX file (optionally gzip)."""

    def write(path: Path, array: np.ndarray, gz: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = idx_bytes(array)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        return path

    return write


@pytest.fixture
def idx_encode():
    """``idx_encode(array) -> bytes`` of an uncompressed IDX file."""
    return idx_bytes


@pytest.fixture
def make_fashion(make_idx):
    """``make_fashion(root, gz=True, n_train=6, n_test=4)``: a tiny fashion-mnist folder in the
    official layout; returns ``{split: (images uint8, labels uint8)}``."""

    def write(root: Path, gz: bool = True, n_train: int = 6, n_test: int = 4):
        rng = np.random.default_rng(1)
        folder = root / "fashion-mnist"
        arrays = {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n, dtype=np.uint8)
            suffix = ".gz" if gz else ""
            make_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
            make_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
            arrays[split] = (images, labels)
        return arrays

    return write


@pytest.fixture
def cifar_writer():
    """Namespace-like tuple ``(write_cifar, tar_cifar, py2_pickle)``."""
    return write_cifar, tar_cifar, py2_pickle


@pytest.fixture(autouse=True)
def _fresh_digest_cache():
    checksums.clear_cache()
    yield
    checksums.clear_cache()
