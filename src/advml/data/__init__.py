"""Datasets as in-memory tensors: ``x`` float32 in [0, 1] (NCHW for images), ``y`` int64.

Built-in datasets (:func:`names`): ``digits`` (bundled with scikit-learn, the default),
``mnist``, ``fashion-mnist``, ``cifar10``, ``usps`` (files under the data root) and the
PacGAN toy mixtures ``toy-ring`` / ``toy-grid``. Any other name that is a path loads user
data (an ``.npz`` file or a folder of class sub-folders of images).

Files are looked for in ``<root>/<dataset>/`` where root is the ``root`` argument, else
``$ADVML_DATA``, else ``~/.cache/advml``. See ``docs/data.md``.

Example::

    from advml.data import load, info, batches
    x, y = load("digits", "train")          # (1437, 1, 8, 8), (1437,)
    for xb, yb in batches(x, y, 128, shuffle=True):
        ...
"""

from __future__ import annotations

from advml.data.batching import batches
from advml.data.catalog import DataFile, DatasetInfo
from advml.data.checksums import file_digest
from advml.data.cifar import RestrictedUnpickler
from advml.data.digits import load_digits
from advml.data.idx import parse_idx, read_idx
from advml.data.paths import ENV_VAR, data_root
from advml.data.registry import (
    SPLITS,
    DatasetStatus,
    available,
    download,
    info,
    load,
    names,
)
from advml.data.toy import toy_modes, toy_sample
from advml.errors import FormatError, UserError

__all__ = [
    "ENV_VAR",
    "SPLITS",
    "DataFile",
    "DatasetInfo",
    "DatasetStatus",
    "FormatError",
    "RestrictedUnpickler",
    "UserError",
    "available",
    "batches",
    "data_root",
    "download",
    "file_digest",
    "info",
    "load",
    "load_digits",
    "names",
    "parse_idx",
    "read_idx",
    "toy_modes",
    "toy_sample",
]
