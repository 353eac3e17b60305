"""``advml data list|info|download`` and :func:`advml.data.download` against file:// mirrors."""

from __future__ import annotations

import shutil

import pytest

import advml.data as data
from advml.cli.main import main
from advml.errors import UserError

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def test_cli_list(data_root, capsys):
    assert main(["data", "list", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == set(data.names())
    assert " found " in lines["mnist"] and "train 60000, test 10000" in lines["mnist"]
    assert str(data_root / "mnist") in lines["mnist"]
    assert " missing " in lines["cifar10"] and " found " in lines["usps"]


def test_cli_list_uses_env(data_root, monkeypatch, capsys):
    monkeypatch.setenv("ADVML_DATA", str(data_root))
    assert main(["data", "list"]) == 0
    assert "$ADVML_DATA" in capsys.readouterr().out


def test_cli_info(capsys):
    assert main(["data", "info", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "Ankle boot" in out and "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in out


def test_cli_unknown_dataset_exits_2(capsys, tmp_path):
    assert main(["data", "download", "imagenet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset 'imagenet'" in err
    assert main(["data", "info", "imagenet"]) == 2
    assert main(["data"]) == 2


def test_cli_download_from_file_mirror(data_root, tmp_path, capsys):
    mirror = (data_root / "mnist").as_uri() + "/"
    code = main(["data", "download", "mnist", "--root", str(tmp_path), "--mirror", mirror])
    assert code == 0, capsys.readouterr().err
    assert "files verified" in capsys.readouterr().out
    for name in MNIST_FILES:
        assert (tmp_path / "mnist" / name).read_bytes() == (data_root / "mnist" / name).read_bytes()
    assert not list((tmp_path / "mnist").glob(".*part"))
    x, y = data.load("mnist", "test", root=tmp_path)
    assert x.shape == (10000, 1, 28, 28) and int((y == 1).sum()) == 1135
    assert main(["data", "download", "digits"]) == 0  # nothing to do


def test_download_checksum_failure_and_fallback(data_root, tmp_path):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in MNIST_FILES:
        shutil.copy(data_root / "mnist" / name, bad / name)
    blob = bytearray((bad / "t10k-labels-idx1-ubyte.gz").read_bytes())
    blob[100] ^= 1
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(blob))
    root = tmp_path / "root"
    with pytest.raises(UserError) as caught:
        data.download("mnist", root, mirrors=[bad.as_uri()], progress=False)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "checksum mismatch" in message
    assert not (root / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()  # never renamed in
    assert not list((root / "mnist").glob(".*part"))  # temp file removed
    # a second, good mirror is tried after the bad one; good files already present are kept
    good = (data_root / "mnist").as_uri()
    kept = root / "mnist" / "train-images-idx3-ubyte.gz"
    before = kept.stat().st_mtime_ns
    nowhere = (tmp_path / "nowhere").as_uri()
    folder = data.download("mnist", root, mirrors=[bad.as_uri(), nowhere, good], progress=False)
    assert folder == root / "mnist" and kept.stat().st_mtime_ns == before
    assert {row.name: row.status for row in data.available(root)}["mnist"] == "found"


def test_download_errors(tmp_path):
    with pytest.raises(UserError, match="not an http"):
        data.download("mnist", tmp_path, mirrors=["/local/path"])
    with pytest.raises(UserError, match="could not download"):
        data.download("usps", tmp_path, mirrors=[(tmp_path / "empty").as_uri()], progress=False)
    with pytest.raises(UserError, match="nothing to download"):
        data.download("toy-ring", tmp_path)
    with pytest.raises(UserError, match="unknown dataset"):
        data.download("nope", tmp_path)
