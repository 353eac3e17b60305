"""USPS digits from the HDF5 file of Kaggle's "usps-dataset" (``usps.h5``).

Layout: groups ``train`` and ``test``, each with ``data`` -- float32 ``(N, 256)`` in [0, 1],
16x16 images flattened row-major -- and ``target`` -- integer labels 0..9; 7,291 training and
2,007 test images (Hull, "A database for handwritten text recognition research", IEEE TPAMI
16(5), 1994).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from advml.data.catalog import USPS, DatasetInfo
from advml.data.checksums import verify_file
from advml.data.paths import RootLike, dataset_dir, missing_error
from advml.errors import FormatError

USPS_FILE = "usps.h5"


def read_usps(path: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``split`` of a ``usps.h5`` file: float32 images ``(N, 1, 16, 16)``, int64 labels."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if split not in handle:
                raise FormatError(path, f"HDF5 file has no group '{split}' (expected train/test)")
            group = handle[split]
            if "data" not in group or "target" not in group:
                raise FormatError(path, f"group '{split}' needs the datasets 'data' and 'target'")
            images = np.asarray(group["data"][()])
            labels = np.asarray(group["target"][()])
    except FormatError:
        raise
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise FormatError(path, f"not a readable USPS HDF5 file ({error})") from None
    if images.ndim != 2 or images.shape[1] != 256 or not np.issubdtype(images.dtype, np.floating):
        raise FormatError(
            path, f"'{split}/data' must be float (N, 256), found {images.dtype} {images.shape}"
        )
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise FormatError(
            path,
            f"'{split}/target' must be {images.shape[0]} integer labels, found {labels.dtype} "
            f"{labels.shape}",
        )
    images = images.astype(np.float32, copy=False)
    if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise FormatError(path, f"'{split}/data' has values outside [0, 1]")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise FormatError(path, f"'{split}/target' has labels outside 0..9")
    return images.reshape(-1, 1, 16, 16), labels.astype(np.int64)


def load_usps(
    split: str, root: RootLike = None, verify: bool = True, info: DatasetInfo = USPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a USPS split from ``<root>/usps/usps.h5`` as ``(N, 1, 16, 16)`` float32, int64."""
    directory = dataset_dir(info.folder or info.name, root)
    path = directory / USPS_FILE
    if not path.is_file():
        raise missing_error(info.name, directory, [USPS_FILE], root)
    if verify:
        verify_file(path, info.files[0], info.name)
    images, labels = read_usps(path, split)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
