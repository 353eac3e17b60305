"""IDX files (MNIST, Fashion-MNIST): parser and loader.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST
DATABASE") is a big-endian header followed by the raw array:

* bytes 0-1: zero; byte 2: element type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
  ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64); byte 3: number of dimensions ``d``;
* ``d`` big-endian 32-bit sizes, then ``prod(sizes)`` elements, big-endian, row-major.

MNIST images are ``idx3`` uint8 (magic 2051 = ``00 00 08 03``), labels ``idx1`` uint8 (2049).
Files may be gzip-compressed (detected from the gzip magic bytes, not the name).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from advml.data.catalog import DatasetInfo
from advml.data.checksums import verify_file
from advml.data.paths import RootLike, dataset_dir, find_first, missing_error
from advml.errors import FormatError

#: IDX element-type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIMS = 16

#: Base names of the IDX files of each split (``.gz`` or uncompressed).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def parse_idx(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode the bytes of one (uncompressed) IDX file into a native-endian numpy array.

    Raises :class:`FormatError` naming ``path`` for a bad magic number, an unknown type code,
    or a payload shorter or longer than the header announces.
    """
    if len(data) < 4:
        raise FormatError(path, f"not an IDX file: {len(data)} bytes, shorter than the header")
    if data[0] != 0 or data[1] != 0:
        raise FormatError(path, "not an IDX file: the magic number must start with two zeros")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise FormatError(path, f"not an IDX file: unknown element type code 0x{code:02X}")
    if ndim == 0 or ndim > _MAX_DIMS:
        raise FormatError(path, f"IDX header announces {ndim} dimensions (expected 1..16)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(path, f"truncated IDX header: {len(data)} bytes, need {header}")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    count = 1
    for size in shape:
        count *= size
    expected = count * dtype.itemsize
    found = len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "has trailing bytes"
        raise FormatError(
            path,
            f"IDX file {state}: header announces shape {shape} ({expected} bytes of data), "
            f"file holds {found}",
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a numpy array (see :func:`parse_idx`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FormatError(path, f"cannot read: {error.strerror or error}") from error
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise FormatError(path, f"corrupt gzip stream ({error})") from error
    return parse_idx(data, path)


def load_idx_dataset(
    info: DatasetInfo, split: str, root: RootLike = None, verify: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of an MNIST-layout dataset: images ``(N, 1, H, W)`` in [0, 1], labels.

    With ``verify`` the official ``.gz`` files are checked against their published checksums
    (uncompressed files have none and are only checked structurally).
    """
    directory = dataset_dir(info.folder or info.name, root)
    image_base, label_base = IDX_FILES[split]
    found = {base: find_first(directory, (f"{base}.gz", base)) for base in (image_base, label_base)}
    missing = [f"{base}.gz" for base, path in found.items() if path is None]
    if missing:
        raise missing_error(info.name, directory, missing, root)
    image_path, label_path = found[image_base], found[label_base]
    assert image_path is not None and label_path is not None
    if verify:
        specs = {spec.name: spec for spec in info.files}
        for path in (image_path, label_path):
            if path.name in specs:
                verify_file(path, specs[path.name], info.name)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    _, height, width = info.input_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (height, width):
        raise FormatError(
            image_path,
            f"expected uint8 images of shape (N, {height}, {width}), found {images.dtype} "
            f"{images.shape}",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise FormatError(
            label_path, f"expected a 1-D uint8 label array, found {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise FormatError(
            label_path,
            f"{labels.shape[0]} labels for {images.shape[0]} images in {image_path.name}",
        )
    if labels.size and int(labels.max()) >= info.num_classes:
        raise FormatError(
            label_path, f"label {int(labels.max())} out of range 0..{info.num_classes - 1}"
        )
    x = images.reshape(images.shape[0], 1, height, width).astype(np.float32)
    x /= 255.0
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
