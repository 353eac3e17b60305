"""UCI Adult reader: the real files (via ``data_root``) and small malformed files that the
tests write in the exact format of ``adult.data`` / ``adult.test``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advml.data import catalog
from advml.data.adult import (
    NUMERIC_COLUMNS,
    AdultEncoder,
    load_adult,
    load_adult_splits,
    parse_adult,
)
from advml.errors import FormatError, UserError

ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, "
    "White, Male, 0, 0, 13, United-States, >50K",
    "38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, "
    "Female, 0, 0, 40, United-States, <=50K",
    "54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, Male, "
    "0, 0, 60, South, >50K",
]


def _write(root: Path, train: list[str], test: list[str]) -> Path:
    folder = root / "adult"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.data").write_text("\n".join(train) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test) + "\n")
    return folder


# --- real files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adult(data_root):
    return load_adult_splits(data_root)


def test_real_splits(adult):
    train, test = adult
    assert len(train) == catalog.ADULT.splits["train"] == 30162
    assert len(test) == catalog.ADULT.splits["test"] == 15060
    assert train.x.shape == (30162, catalog.ADULT.input_shape[0]) and train.x.dtype == torch.float32
    assert train.feature_names == test.feature_names and len(train.feature_names) == 102
    assert not any(name.startswith("sex=") for name in train.feature_names)
    # the well-known base rates of the cleaned data
    assert int(train.y.sum()) == 7508 and int(test.y.sum()) == 3700
    assert int(train.s.sum()) == 20380  # men
    numeric = train.x[:, : len(NUMERIC_COLUMNS)]
    assert torch.allclose(numeric.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(numeric.std(0, unbiased=False), torch.ones(6), atol=1e-4)
    one_hot = train.x[:, len(NUMERIC_COLUMNS) :]
    assert torch.equal(one_hot.sum(1), torch.full((30162,), 7.0))  # 7 categorical columns


def test_real_with_sensitive_feature_and_env(data_root, monkeypatch):
    monkeypatch.setenv("ADVML_DATA", str(data_root))
    test = load_adult("test", include_sensitive=True)
    assert test.x.shape == (15060, 104)
    sex = [test.feature_names.index("sex=Female"), test.feature_names.index("sex=Male")]
    assert torch.equal(test.x[:, sex].argmax(1), test.s)


def test_catalog_checksums_match_shared_sums(data_root):
    folder = data_root / "adult"
    md5 = dict(reversed(line.split()) for line in (folder / "MD5SUMS").read_text().splitlines())
    sha = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    for spec in catalog.ADULT.files:
        assert spec.md5 == md5[spec.name] and spec.sha256 == sha[spec.name]
        assert spec.size == (folder / spec.name).stat().st_size


# --- written files ---------------------------------------------------------------------------


def test_small_files(tmp_path):
    test_rows = [ROWS[0].replace("<=50K", "<=50K."), ROWS[1].replace(">50K", ">50K.")]
    test_rows[1] = test_rows[1].replace("United-States", "Atlantis")  # unseen category
    _write(tmp_path, ROWS, test_rows)
    train, test = load_adult_splits(tmp_path, verify=False)
    assert len(train) == 3 and train.y.tolist() == [0, 1, 0] and train.s.tolist() == [1, 1, 0]
    assert test.y.tolist() == [0, 1]
    country = [i for i, n in enumerate(test.feature_names) if n.startswith("native-country=")]
    assert test.x[:, country].sum(1).tolist() == [1.0, 0.0]
    # standardized with the training statistics: test row 0 equals training row 0
    assert torch.allclose(test.x[0], train.x[0])
    with pytest.raises(FormatError, match="checksum mismatch"):
        load_adult("train", root=tmp_path)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("39, State-gov, 77516, Bachelors, 13", "expected 15 comma-separated fields, found 5"),
        (ROWS[0].replace("77516", "77.5k"), "column 'fnlwgt' must be an integer"),
        (ROWS[0].replace("<=50K", "maybe"), "income must be"),
        (ROWS[0].replace("Male", "M"), "sex must be 'Female' or 'Male'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad, match):
    folder = _write(tmp_path, [ROWS[0], ROWS[1], bad], ROWS[:1])
    with pytest.raises(FormatError, match=match) as caught:
        load_adult("train", root=tmp_path, verify=False)
    assert f"{folder / 'adult.data'}:3:" in str(caught.value)


def test_parse_and_errors(tmp_path):
    records = parse_adult("\n".join(ROWS), "x")
    assert len(records) == 3 and records.dropped == 1
    with pytest.raises(FormatError, match="no complete records"):
        parse_adult(ROWS[3], "x")
    encoder = AdultEncoder.fit(records)
    assert encoder.feature_names[:6] == NUMERIC_COLUMNS
    with pytest.raises(UserError, match=r"adult\.data, adult\.test not found"):
        load_adult("train", root=tmp_path)
    with pytest.raises(UserError, match="unknown Adult split 'val'"):
        load_adult("val", root=tmp_path)
    folder = tmp_path / "adult"
    folder.mkdir()
    (folder / "adult.data").write_bytes(b"\xff\xfe\x00bad")
    (folder / "adult.test").write_text(ROWS[0] + "\n")
    with pytest.raises(FormatError, match=r"adult\.data: not a UTF-8 text file"):
        load_adult("train", root=tmp_path, verify=False)
