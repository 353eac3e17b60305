"""Datasets by name: :func:`load`, :func:`info`, :func:`names`, :func:`available`,
:func:`download`. Dispatches to the format modules; a name that is not a built-in dataset but
an existing path (or ends in ``.npz``) is user data (:mod:`advml.data.user`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from advml.data import catalog
from advml.data.catalog import CATALOG, CIFAR10_ARCHIVE, CIFAR10_BATCH_DIR, DatasetInfo
from advml.data.checksums import matches
from advml.data.cifar import CIFAR10_SPLITS, load_cifar10
from advml.data.digits import load_digits
from advml.data.download import download_files
from advml.data.idx import IDX_FILES, load_idx_dataset
from advml.data.paths import RootLike, dataset_dir
from advml.data.toy import load_toy
from advml.data.user import is_user_path, load_user, user_info
from advml.data.usps import USPS_FILE, load_usps
from advml.errors import UserError

SPLITS: tuple[str, ...] = ("train", "test")

Loader = Callable[[str, object, bool], tuple[torch.Tensor, torch.Tensor]]

_LOADERS: dict[str, Loader] = {
    "digits": lambda split, root, verify: load_digits(split),
    "mnist": lambda split, root, verify: load_idx_dataset(catalog.MNIST, split, root, verify),
    "fashion-mnist": lambda split, root, verify: load_idx_dataset(
        catalog.FASHION_MNIST, split, root, verify
    ),
    "cifar10": lambda split, root, verify: load_cifar10(split, root, verify),
    "usps": lambda split, root, verify: load_usps(split, root, verify),
    "toy-ring": lambda split, root, verify: load_toy("toy-ring", split),
    "toy-grid": lambda split, root, verify: load_toy("toy-grid", split),
}


class DatasetStatus(NamedTuple):
    """One row of :func:`available`: name, ``found``/``missing``/``corrupt``, and where."""

    name: str
    status: str
    path: str


def names() -> list[str]:
    """Names of the built-in datasets, in display order."""
    return list(CATALOG)


def canonical_name(name: str) -> str | None:
    """The built-in name ``name`` refers to (case and ``_``/``-`` spellings), or ``None``."""
    key = str(name).strip().lower()
    key = catalog.ALIASES.get(key, key)
    return key if key in CATALOG else None


def _unknown(name: str, paths: bool = True) -> UserError:
    extra = ", or give the path of an .npz file or an image folder" if paths else ""
    return UserError(f"unknown dataset {name!r}; choose one of {', '.join(names())}{extra}")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    return split


def info(name: str) -> DatasetInfo:
    """Metadata of a dataset: :class:`~advml.data.catalog.DatasetInfo`.

    For a built-in name this is static (no file is read). For user data (a path) it is
    computed from the files: shape, classes, per-channel mean/std of the train split.
    """
    key = canonical_name(name)
    if key is not None:
        return CATALOG[key]
    if is_user_path(str(name)):
        return user_info(name)
    raise _unknown(name)


def load(
    name: str | os.PathLike[str],
    split: str = "train",
    root: RootLike = None,
    *,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as ``(x, y)``.

    Args:
        name: a built-in dataset (:func:`names`: ``digits``, ``mnist``, ``fashion-mnist``,
            ``cifar10``, ``usps``, ``toy-ring``, ``toy-grid``) or the path of user data
            (an ``.npz`` file or an image folder; see :mod:`advml.data.user`).
        split: ``"train"`` or ``"test"``.
        root: data root; files are read from ``<root>/<dataset>/``. Default: ``$ADVML_DATA``,
            else ``~/.cache/advml``.
        verify: check official files against their published checksums (cached per
            path+size+mtime). Pass ``False`` for a deliberately modified or synthetic copy.

    Returns:
        ``x`` float32 in [0, 1], NCHW for images (``(N, 2)`` for the toy sets) and ``y``
        int64 labels.

    Raises:
        UserError: unknown name or split, missing files (one line naming the files, the
            folder searched and the fix).
        FormatError: a corrupt, truncated or non-official file (names the file).
    """
    _check_split(split)
    key = canonical_name(str(name))
    if key is not None:
        return _LOADERS[key](split, root, verify)
    if is_user_path(str(name)):
        return load_user(name, split)
    raise _unknown(str(name))


def download(
    name: str,
    root: RootLike = None,
    *,
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download the official files of ``name`` into ``<root>/<dataset>/`` and return that folder.

    Tries each base URL of ``mirrors`` (default: the dataset's official mirrors) in turn;
    every file is written to a temporary name, checked against its published checksum and
    only then renamed into place. Files already present and correct are skipped unless
    ``force``. ``digits`` and the toy sets need no download (:class:`UserError`).
    """
    key = canonical_name(name)
    if key is None:
        raise _unknown(name, paths=False)
    return download_files(CATALOG[key], root, mirrors=mirrors, force=force, progress=progress)


def _idx_status(ds: DatasetInfo, directory: Path) -> str:
    specs = {spec.name: spec for spec in ds.files}
    for bases in IDX_FILES.values():
        for base in bases:
            gz, raw = directory / f"{base}.gz", directory / base
            if gz.is_file():
                if not matches(gz, specs[gz.name]):
                    return "corrupt"
            elif raw.is_file():
                with raw.open("rb") as handle:
                    if handle.read(3)[:2] != b"\x00\x00":
                        return "corrupt"
            else:
                return "missing"
    return "found"


def _cifar_status(ds: DatasetInfo, directory: Path) -> str:
    specs = {spec.name: spec for spec in ds.files}
    folder = directory / CIFAR10_BATCH_DIR
    members = [m for split in CIFAR10_SPLITS.values() for m in split]
    if folder.is_dir() and all((folder / m).is_file() for m in members):
        ok = all(matches(folder / m, specs[f"{CIFAR10_BATCH_DIR}/{m}"]) for m in members)
        return "found" if ok else "corrupt"
    archive = directory / CIFAR10_ARCHIVE
    if archive.is_file():
        return "found" if matches(archive, specs[CIFAR10_ARCHIVE]) else "corrupt"
    return "missing"


def _usps_status(ds: DatasetInfo, directory: Path) -> str:
    path = directory / USPS_FILE
    if not path.is_file():
        return "missing"
    return "found" if matches(path, ds.files[0]) else "corrupt"


_STATUS: dict[str, Callable[[DatasetInfo, Path], str]] = {
    "mnist": _idx_status,
    "fashion-mnist": _idx_status,
    "cifar10": _cifar_status,
    "usps": _usps_status,
}


def available(root: RootLike = None) -> list[DatasetStatus]:
    """Which built-in datasets can be loaded from ``root``: ``(name, status, path)`` rows.

    ``status`` is ``found``, ``missing`` (some file absent) or ``corrupt`` (an official file
    whose checksum differs, or an unreadable one). Checksums are cached, so calling this
    twice hashes each file once.
    """
    rows: list[DatasetStatus] = []
    for key, ds in CATALOG.items():
        if ds.folder is None:
            where = "(bundled with scikit-learn)" if key == "digits" else "(generated)"
            rows.append(DatasetStatus(key, "found", where))
            continue
        directory = dataset_dir(ds.folder, root)
        try:
            status = _STATUS[key](ds, directory)
        except OSError:
            status = "corrupt"
        rows.append(DatasetStatus(key, status, str(directory)))
    return rows
