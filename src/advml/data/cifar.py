"""CIFAR-10, python version: pickle batches in ``cifar-10-batches-py/`` or the ``.tar.gz``.

Format (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): each of
``data_batch_1`` .. ``data_batch_5`` (training) and ``test_batch`` is a Python 2 pickle of a
dict with ``data``, a uint8 array of shape (10000, 3072) -- each row the 1024 red, then 1024
green, then 1024 blue values of a 32x32 image in row-major order -- and ``labels``, a list of
10000 ints in 0..9 (plus ``batch_label`` and ``filenames``, unused here).

SECURITY: a pickle can run arbitrary code when loaded. advml never calls ``pickle.load``
on these files; :class:`RestrictedUnpickler` resolves only the three numpy globals an array
needs and raises :class:`FormatError` for every other global before anything is called. With
``verify=True`` the official files are also checked against their published md5 first.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advml.data.catalog import (
    CIFAR10,
    CIFAR10_ARCHIVE,
    CIFAR10_BATCH_DIR,
    DatasetInfo,
)
from advml.data.checksums import verify_file
from advml.data.paths import RootLike, dataset_dir, missing_error
from advml.errors import FormatError

#: Batches of each split, in order.
CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{k}" for k in range(1, 6)),
    "test": ("test_batch",),
}

_IMAGE_BYTES = 3 * 32 * 32


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # The array-reconstruction function, found from numpy itself so the name works on
    # numpy 1.x (numpy.core) and 2.x (numpy._core) without importing a deprecated module.
    reconstruct = np.empty(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    return allowed


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    ``find_class`` allows only ``numpy.core.multiarray._reconstruct`` (also spelled
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and ``numpy.dtype``; any
    other global (``os.system``, ``builtins.eval``, ...) raises :class:`FormatError` naming
    the file, so it is never imported nor called. Persistent ids are refused too.
    """

    def __init__(self, file: io.BufferedIOBase, path: str | os.PathLike[str]) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global; raise :class:`FormatError` for anything else."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise FormatError(
                self.path,
                f"refusing to unpickle: the file references {module}.{name}, which a CIFAR "
                f"batch never does (possibly a malicious file)",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (CIFAR batches have none)."""
        raise FormatError(self.path, "refusing to unpickle: the file uses persistent ids")


def restricted_loads(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a FormatError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except FormatError:
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        raise FormatError(path, f"not a valid CIFAR pickle ({reason})") from None


def decode_batch(data: bytes, path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled batch into uint8 images ``(n, 3, 32, 32)`` and int64 labels."""
    batch = restricted_loads(data, path)
    if not isinstance(batch, dict):
        raise FormatError(path, f"expected a pickled dict, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise FormatError(path, "a CIFAR-10 batch needs the keys 'data' and 'labels'")
    images, labels = batch["data"], batch["labels"]
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != _IMAGE_BYTES
    ):
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else "other"
        raise FormatError(path, f"'data' must be a uint8 array (n, 3072), found {found}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise FormatError(path, f"'labels' must be a list of ints ({error})") from None
    if labels.shape != (images.shape[0],):
        raise FormatError(
            path, f"{labels.size} labels for {images.shape[0]} images (shape {labels.shape})"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= CIFAR10.num_classes):
        raise FormatError(path, "labels out of range 0..9")
    return images.reshape(-1, 3, 32, 32), labels


def _read_folder(
    folder: Path, members: tuple[str, ...], info: DatasetInfo, verify: bool
) -> list[tuple[bytes, Path]]:
    specs = {spec.name: spec for spec in info.files}
    blobs = []
    for member in members:
        path = folder / member
        spec = specs.get(f"{CIFAR10_BATCH_DIR}/{member}")
        if verify and spec is not None:
            verify_file(path, spec, info.name)
        try:
            blobs.append((path.read_bytes(), path))
        except OSError as error:
            raise FormatError(path, f"cannot read: {error.strerror or error}") from error
    return blobs


def _read_archive(
    archive: Path, members: tuple[str, ...], info: DatasetInfo, verify: bool
) -> list[tuple[bytes, str]]:
    if verify:
        spec = next(spec for spec in info.files if spec.name == CIFAR10_ARCHIVE)
        verify_file(archive, spec, info.name)
    wanted = {f"{CIFAR10_BATCH_DIR}/{member}": member for member in members}
    found: dict[str, bytes] = {}
    try:
        # Stream the members in archive order; nothing is extracted to disk.
        with tarfile.open(archive, "r:gz") as tar:
            for entry in tar:
                name = entry.name.removeprefix("./")
                if name in wanted and entry.isfile():
                    handle = tar.extractfile(entry)
                    if handle is not None:
                        found[wanted[name]] = handle.read()
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FormatError(archive, f"corrupt or unreadable tar.gz archive ({error})") from None
    absent = [name for name, member in wanted.items() if member not in found]
    if absent:
        raise FormatError(archive, f"archive lacks member(s) {', '.join(absent)}")
    return [(found[member], f"{archive}:{CIFAR10_BATCH_DIR}/{member}") for member in members]


def load_cifar10(
    split: str, root: RootLike = None, verify: bool = True, info: DatasetInfo = CIFAR10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a CIFAR-10 split as float32 ``(N, 3, 32, 32)`` in [0, 1] and int64 labels.

    Reads ``<root>/cifar10/cifar-10-batches-py/`` if present, else
    ``<root>/cifar10/cifar-10-python.tar.gz`` (straight from the archive).
    """
    directory = dataset_dir(info.folder or info.name, root)
    members = CIFAR10_SPLITS[split]
    folder = directory / CIFAR10_BATCH_DIR
    archive = directory / CIFAR10_ARCHIVE
    blobs: list[tuple[bytes, Any]]
    if folder.is_dir():
        absent = [m for m in members if not (folder / m).is_file()]
        if absent and not archive.is_file():
            raise missing_error(info.name, folder, [*absent, f"(or ../{CIFAR10_ARCHIVE})"], root)
        if not absent:
            blobs = list(_read_folder(folder, members, info, verify))
        else:
            blobs = list(_read_archive(archive, members, info, verify))
    elif archive.is_file():
        blobs = list(_read_archive(archive, members, info, verify))
    else:
        raise missing_error(
            info.name, directory, [CIFAR10_ARCHIVE, f"(or {CIFAR10_BATCH_DIR}/)"], root
        )
    decoded = [decode_batch(data, path) for data, path in blobs]
    images = np.concatenate([d[0] for d in decoded]) if len(decoded) > 1 else decoded[0][0]
    labels = np.concatenate([d[1] for d in decoded]) if len(decoded) > 1 else decoded[0][1]
    x = images.astype(np.float32)
    x /= 255.0
    return torch.from_numpy(x), torch.from_numpy(labels)
