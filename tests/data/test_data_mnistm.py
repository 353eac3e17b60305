"""MNIST-M reader: the real test archive (via ``data_root``) and small malformed archives that
the tests write in the exact layout of the original distribution."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from advml.data import catalog
from advml.data.imageops import repeat_channels, resize_images
from advml.data.mnistm import (
    MNISTM_ARCHIVE,
    MNISTM_IMAGE_DIR,
    MNISTM_LABELS,
    load_mnistm,
    mnistm_split_indices,
    parse_mnistm_labels,
)
from advml.errors import FormatError, UserError


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_archive(root: Path, members: dict[str, bytes], name: str = MNISTM_ARCHIVE) -> Path:
    folder = root / "mnist-m"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _tiny(n: int = 5, seed: int = 0) -> tuple[dict[str, bytes], np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    members = {f"{MNISTM_IMAGE_DIR}/{k:08d}.png": _png(images[k]) for k in range(n)}
    members[MNISTM_LABELS] = "".join(f"{k:08d}.png {labels[k]}\n" for k in range(n)).encode()
    return members, images, labels


# --- real file -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnistm_test(data_root):
    return load_mnistm("test", root=data_root)


def test_real_test_split(mnistm_test, data_root):
    x, y = mnistm_test
    assert x.shape == (9001, 3, 28, 28) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.dtype == torch.int64 and float(x.min()) >= 0 and float(x.max()) <= 1
    # MNIST-M's test split was built from the MNIST test set: same labels, same order
    from advml.data import load

    _, mnist_y = load("mnist", "test", root=data_root)
    assert torch.equal(y, mnist_y[:9001])
    info = catalog.MNIST_M
    dims = [0, 2, 3]
    assert torch.allclose(x.mean(dims), torch.tensor(info.mean), atol=1e-4)
    assert torch.allclose(x.std(dims), torch.tensor(info.std), atol=1e-4)


def test_real_adapt_eval_halves(mnistm_test, data_root, monkeypatch):
    x, y = mnistm_test
    monkeypatch.setenv("ADVML_DATA", str(data_root))
    xa, ya = load_mnistm("adapt")
    _, ye = load_mnistm("eval")
    assert len(ya) == catalog.MNIST_M.splits["adapt"] == 4501
    assert len(ye) == catalog.MNIST_M.splits["eval"] == 4500
    assert torch.equal(xa, x[0::2]) and torch.equal(ye, y[1::2])
    assert torch.bincount(ya, minlength=10).min() > 350  # both halves cover every class


def test_catalog_checksums_match_shared_sums(data_root):
    folder = data_root / "mnist-m"
    md5 = dict(reversed(line.split()) for line in (folder / "MD5SUMS").read_text().splitlines())
    sha = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    (spec,) = catalog.MNIST_M.files
    assert spec.md5 == md5[spec.name] and spec.sha256 == sha[spec.name]
    assert spec.size == (folder / spec.name).stat().st_size


# --- written files ---------------------------------------------------------------------------


def test_tiny_archive_roundtrip(tmp_path):
    members, images, labels = _tiny()
    _write_archive(tmp_path, members)
    x, y = load_mnistm("test", root=tmp_path, verify=False, size=32)
    assert y.tolist() == labels
    assert torch.equal(
        (x * 255).round().to(torch.uint8), torch.from_numpy(images).permute(0, 3, 1, 2)
    )
    xa, _ = load_mnistm("adapt", root=tmp_path, verify=False)
    assert xa.shape == (3, 3, 28, 28)
    with pytest.raises(FormatError, match="checksum mismatch"):
        load_mnistm("test", root=tmp_path)


def test_extracted_folder(tmp_path):
    members, _, labels = _tiny(3)
    for name, data in members.items():
        path = tmp_path / "mnist-m" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    _, y = load_mnistm("test", root=tmp_path)
    assert y.tolist() == labels


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("00000000.png 1\n00000001.png\n", 2, "found 1 field"),
        ("00000000.png 1\n\n00000001.png x\n", 3, "not an integer in 0..9"),
        ("00000000.png 12\n", 1, "not an integer in 0..9"),
        ("00000000.png 1\n00000000.png 2\n", 2, "listed twice"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, text, line, match):
    members, _, _ = _tiny(2)
    members[MNISTM_LABELS] = text.encode()
    archive = _write_archive(tmp_path, members)
    with pytest.raises(FormatError, match=match) as caught:
        load_mnistm("test", root=tmp_path, verify=False)
    assert f"{archive}:{MNISTM_LABELS}:{line}:" in str(caught.value)


def test_missing_member_and_bad_png(tmp_path):
    members, _, _ = _tiny(3)
    del members[f"{MNISTM_IMAGE_DIR}/00000001.png"]
    _write_archive(tmp_path, members)
    with pytest.raises(FormatError, match=r"labels\.txt:2: image '00000001\.png' is listed"):
        load_mnistm("test", root=tmp_path, verify=False)
    members, _, _ = _tiny(3)
    members[f"{MNISTM_IMAGE_DIR}/00000002.png"] = b"not a png"
    _write_archive(tmp_path, members)
    with pytest.raises(FormatError, match=r"00000002\.png: not a readable PNG"):
        load_mnistm("test", root=tmp_path, verify=False)
    members, _, _ = _tiny(3)
    members[f"{MNISTM_IMAGE_DIR}/00000000.png"] = _png(np.zeros((28, 28, 3), np.uint8))
    _write_archive(tmp_path, members)
    with pytest.raises(FormatError, match="expected a 32x32 RGB image"):
        load_mnistm("test", root=tmp_path, verify=False)


def test_archive_errors(tmp_path):
    members, _, _ = _tiny(2)
    del members[MNISTM_LABELS]
    _write_archive(tmp_path, members)
    with pytest.raises(FormatError, match="archive has no member"):
        load_mnistm("test", root=tmp_path, verify=False)
    archive = tmp_path / "mnist-m" / MNISTM_ARCHIVE
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(FormatError, match=r"mnist_m_test\.tar\.gz: not a readable"):
        load_mnistm("test", root=tmp_path, verify=False)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(UserError, match=r"mnist_m_test\.tar\.gz not found in .*mnist-m"):
        load_mnistm("test", root=tmp_path)
    with pytest.raises(UserError, match="unknown MNIST-M split 'train'"):
        load_mnistm("train", root=tmp_path)
    assert parse_mnistm_labels("a.png 3\n", "x") == [("a.png", 3)]
    assert mnistm_split_indices(5, "eval").tolist() == [1, 3]


def test_image_helpers():
    grey = torch.rand(4, 1, 16, 16)
    rgb = repeat_channels(grey)
    assert rgb.shape == (4, 3, 16, 16) and torch.equal(rgb[:, 2], grey[:, 0])
    assert repeat_channels(rgb) is rgb
    with pytest.raises(UserError, match="only 1-channel"):
        repeat_channels(torch.rand(1, 2, 4, 4))
    big = resize_images(grey, 28)
    assert big.shape == (4, 1, 28, 28) and float(big.min()) >= 0 and float(big.max()) <= 1
    # bilinear interpolation of a constant image is the constant
    assert torch.allclose(resize_images(torch.full((2, 1, 16, 16), 0.3), 28), torch.tensor(0.3))
    # a batched resize equals the per-image resize
    parts = torch.cat([resize_images(grey[i : i + 1], 28) for i in range(4)])
    assert torch.allclose(resize_images(grey, 28, batch_size=3), parts)
