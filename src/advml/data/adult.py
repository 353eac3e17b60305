"""UCI Adult ("Census Income"; Becker & Kohavi 1996; Kohavi, KDD 1996) as tensors for fair
representation learning.

Files in ``<root>/adult/``: ``adult.data`` (training split, 32,561 records) and ``adult.test``
(test split, 16,281 records, first line ``|1x3 Cross validator``, labels with a trailing dot).
Each record is 15 comma-separated fields: age, workclass, fnlwgt, education, education-num,
marital-status, occupation, relationship, race, sex, capital-gain, capital-loss, hours-per-week,
native-country, income; ``?`` marks a missing value.

Preprocessing (the common protocol of Edwards & Storkey 2015 and Madras et al. 2018):

* records with a missing value are dropped (30,162 training / 15,060 test records remain);
* the 6 numeric columns are standardized with the mean and (population) standard deviation of
  the training split; the categorical columns are one-hot encoded over the categories seen in
  the training split (a test category never seen in training encodes as all zeros);
* label ``y = 1`` iff income is ``>50K``; sensitive attribute ``s = 1`` for ``Male``, ``0`` for
  ``Female``. ``sex`` is *not* an input feature unless ``include_sensitive=True``.

Lines starting with ``|`` are comments; blank lines are skipped. A malformed record raises
:class:`~advml.errors.FormatError` naming the file and the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advml.data.catalog import ADULT, DatasetInfo
from advml.data.checksums import verify_file
from advml.data.paths import RootLike, dataset_dir, missing_error
from advml.errors import FormatError, UserError

ADULT_COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC_COLUMNS: tuple[str, ...] = (
    "age",
    "fnlwgt",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
)
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
SENSITIVE_COLUMN = "sex"
#: ``s = index`` of the value in this tuple.
SENSITIVE_VALUES: tuple[str, str] = ("Female", "Male")
ADULT_FILES: dict[str, str] = {"train": "adult.data", "test": "adult.test"}
_LABELS = {"<=50K": 0, ">50K": 1, "<=50K.": 0, ">50K.": 1}


@dataclass(frozen=True)
class AdultRecords:
    """Parsed records of one file, missing-value rows dropped: one string array per column."""

    columns: dict[str, np.ndarray]
    dropped: int

    def __len__(self) -> int:
        return len(self.columns["income"])


@dataclass(frozen=True)
class TabularData:
    """Features, labels and the sensitive attribute of one split.

    ``x`` float32 ``(N, D)``, ``y`` int64 ``(N,)`` (1 = income >50K), ``s`` int64 ``(N,)``
    (index into ``sensitive_values``); ``feature_names`` names the ``D`` columns of ``x``.
    """

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor
    feature_names: tuple[str, ...]
    sensitive_name: str = SENSITIVE_COLUMN
    sensitive_values: tuple[str, ...] = SENSITIVE_VALUES

    def __len__(self) -> int:
        return int(self.y.shape[0])


def parse_adult(text: str, path: str | os.PathLike[str] = "<text>") -> AdultRecords:
    """Parse the text of ``adult.data`` / ``adult.test`` into :class:`AdultRecords`.

    Raises :class:`FormatError` (file and line) for a record without 15 fields, a
    non-integer numeric field, an unknown income label or sex value.
    """
    rows: list[list[str]] = []
    dropped = 0
    numeric_at = [ADULT_COLUMNS.index(c) for c in NUMERIC_COLUMNS]
    sex_at = ADULT_COLUMNS.index(SENSITIVE_COLUMN)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("|"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != len(ADULT_COLUMNS):
            raise FormatError(
                path,
                f"expected {len(ADULT_COLUMNS)} comma-separated fields, found {len(fields)}",
                line=number,
            )
        if "?" in fields:
            dropped += 1
            continue
        for at in numeric_at:
            if not fields[at].lstrip("-").isdigit():
                raise FormatError(
                    path,
                    f"column {ADULT_COLUMNS[at]!r} must be an integer, found {fields[at]!r}",
                    line=number,
                )
        if fields[-1] not in _LABELS:
            raise FormatError(
                path, f"income must be '<=50K' or '>50K', found {fields[-1]!r}", line=number
            )
        if fields[sex_at] not in SENSITIVE_VALUES:
            raise FormatError(
                path, f"sex must be 'Female' or 'Male', found {fields[sex_at]!r}", line=number
            )
        rows.append(fields)
    if not rows:
        raise FormatError(path, "no complete records")
    table = np.array(rows, dtype=str)
    columns = {name: table[:, at] for at, name in enumerate(ADULT_COLUMNS)}
    return AdultRecords(columns=columns, dropped=dropped)


def read_adult(path: str | os.PathLike[str]) -> AdultRecords:
    """Read and parse one Adult file (see :func:`parse_adult`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(path, f"not a UTF-8 text file ({error.reason})") from None
    except OSError as error:
        raise FormatError(path, f"cannot read: {error.strerror or error}") from None
    return parse_adult(text, path)


@dataclass(frozen=True)
class AdultEncoder:
    """One-hot categories and standardization statistics fitted on the training records."""

    categories: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    include_sensitive: bool = False

    @classmethod
    def fit(cls, records: AdultRecords, include_sensitive: bool = False) -> AdultEncoder:
        numeric = np.stack([records.columns[c].astype(np.float64) for c in NUMERIC_COLUMNS], 1)
        std = numeric.std(axis=0)
        categories = {c: np.unique(records.columns[c]) for c in CATEGORICAL_COLUMNS}
        return cls(categories, numeric.mean(axis=0), np.where(std > 0, std, 1.0), include_sensitive)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(
            c for c in CATEGORICAL_COLUMNS if self.include_sensitive or c != SENSITIVE_COLUMN
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = list(NUMERIC_COLUMNS)
        for column in self.categorical:
            names += [f"{column}={value}" for value in self.categories[column]]
        return tuple(names)

    def transform(self, records: AdultRecords) -> TabularData:
        numeric = np.stack([records.columns[c].astype(np.float64) for c in NUMERIC_COLUMNS], 1)
        blocks = [((numeric - self.mean) / self.std).astype(np.float32)]
        for column in self.categorical:
            known = self.categories[column]
            values = records.columns[column]
            at = np.searchsorted(known, values).clip(0, len(known) - 1)
            seen = known[at] == values
            block = np.zeros((len(values), len(known)), dtype=np.float32)
            block[np.flatnonzero(seen), at[seen]] = 1.0
            blocks.append(block)
        x = np.concatenate(blocks, axis=1)
        y = (np.char.rstrip(records.columns["income"], ".") == ">50K").astype(np.int64)
        s = (records.columns[SENSITIVE_COLUMN] == SENSITIVE_VALUES[1]).astype(np.int64)
        return TabularData(
            torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(s), self.feature_names
        )


def _paths(root: RootLike, verify: bool, info: DatasetInfo) -> dict[str, Path]:
    directory = dataset_dir(info.folder or info.name, root)
    paths = {split: directory / name for split, name in ADULT_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise missing_error(info.name, directory, missing, root, downloadable=False)
    if verify:
        specs = {spec.name: spec for spec in info.files}
        for path in paths.values():
            verify_file(path, specs[path.name], info.name)
    return paths


def load_adult_splits(
    root: RootLike = None,
    verify: bool = True,
    *,
    include_sensitive: bool = False,
    info: DatasetInfo = ADULT,
) -> tuple[TabularData, TabularData]:
    """Both splits of Adult, ``(train, test)``, encoded with the training split's statistics."""
    paths = _paths(root, verify, info)
    train = read_adult(paths["train"])
    test = read_adult(paths["test"])
    encoder = AdultEncoder.fit(train, include_sensitive)
    return encoder.transform(train), encoder.transform(test)


def load_adult(
    split: str = "train",
    root: RootLike = None,
    verify: bool = True,
    *,
    include_sensitive: bool = False,
) -> TabularData:
    """One split of Adult (``"train"`` or ``"test"``) as :class:`TabularData`; see the
    module docstring for the preprocessing. Files come from ``<root>/adult/``."""
    if split not in ADULT_FILES:
        raise UserError(f"unknown Adult split {split!r}; use 'train' or 'test'")
    train, test = load_adult_splits(root, verify, include_sensitive=include_sensitive)
    return train if split == "train" else test
