"""MNIST-M test split (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by
Backpropagation", ICML, §5): MNIST test digits blended with random colour patches of BSDS500.

Files, in ``<root>/mnist-m/`` (first found):

* ``mnist_m_test.tar.gz`` -- the members below, checksummed (catalog entry ``MNIST_M``);
* ``mnist_m.tar.gz`` -- the original full distribution (only its test members are read);
* an extracted folder ``mnist_m/``.

Members: ``mnist_m/mnist_m_test/00000000.png`` ... (9,001 PNGs, 32x32 RGB) and
``mnist_m/mnist_m_test_labels.txt`` with one line ``<file name> <label>`` per image. Images
are returned in the order of the label file, resized to ``size`` x ``size`` (28 by default, the
MNIST size) with batched antialiased bilinear interpolation, as float32 in [0, 1].

Only the test split exists on advml's machines, so it is divided deterministically into two
disjoint halves (:func:`mnistm_split_indices`): ``"adapt"`` -- even positions of the label file
(4,501 images), the unlabeled target data of domain adaptation and the training set of the
target oracle -- and ``"eval"`` -- odd positions (4,500 images), on which target accuracy is
measured. Interleaving keeps both halves drawn from both MNIST writer populations (the MNIST test
set holds SD-3 writers first, then SD-1). ``"test"`` is all 9,001 images.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from advml.data.catalog import MNIST_M, DatasetInfo
from advml.data.checksums import verify_file
from advml.data.imageops import resize_images
from advml.data.paths import RootLike, dataset_dir, missing_error
from advml.errors import FormatError, UserError

MNISTM_ARCHIVE = "mnist_m_test.tar.gz"
MNISTM_ORIGINAL_ARCHIVE = "mnist_m.tar.gz"
MNISTM_FOLDER = "mnist_m"
MNISTM_IMAGE_DIR = "mnist_m/mnist_m_test"
MNISTM_LABELS = "mnist_m/mnist_m_test_labels.txt"
MNISTM_SPLITS: tuple[str, ...] = ("test", "adapt", "eval")
_NATIVE_SIZE = 32


def parse_mnistm_labels(text: str, path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """Parse the label file: ``(file name, label)`` per non-empty line, in file order.

    Raises :class:`FormatError` naming ``path`` and the line for a line without exactly two
    fields, a label that is not an integer in 0..9, or a file name listed twice.
    """
    entries: list[tuple[str, int]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise FormatError(
                path, f"expected '<file> <label>', found {len(fields)} field(s)", line=number
            )
        name, label = fields
        if not label.isdigit() or not 0 <= int(label) <= 9:
            raise FormatError(path, f"label {label!r} is not an integer in 0..9", line=number)
        if name in seen:
            raise FormatError(path, f"file {name!r} is listed twice", line=number)
        seen.add(name)
        entries.append((name, int(label)))
    if not entries:
        raise FormatError(path, "the label file lists no images")
    return entries


def _decode_png(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode != "RGB" or image.size != (_NATIVE_SIZE, _NATIVE_SIZE):
                raise FormatError(
                    where,
                    f"expected a {_NATIVE_SIZE}x{_NATIVE_SIZE} RGB image, found mode "
                    f"{image.mode} size {image.size[0]}x{image.size[1]}",
                )
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise FormatError(where, f"not a readable PNG image ({error})") from None


def _read_members(
    entries: list[tuple[str, int]], read: Callable[[str], bytes | None], source: str
) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(entries), _NATIVE_SIZE, _NATIVE_SIZE, 3), dtype=np.uint8)
    for index, (name, _) in enumerate(entries):
        member = f"{MNISTM_IMAGE_DIR}/{name}"
        data = read(member)
        if data is None:
            raise FormatError(
                f"{source}:{MNISTM_LABELS}",
                f"image {name!r} is listed but {member} is missing",
                line=index + 1,
            )
        images[index] = _decode_png(data, f"{source}:{member}")
    labels = np.fromiter((label for _, label in entries), dtype=np.int64, count=len(entries))
    return images, labels


def read_mnistm_archive(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the test images and labels of an MNIST-M ``.tar.gz``: uint8 ``(N, 32, 32, 3)``
    and int64 ``(N,)`` in the order of the label file."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes | None:
                member = members.get(name)
                if member is None:
                    return None
                handle = tar.extractfile(member)
                return None if handle is None else handle.read()

            text = read(MNISTM_LABELS)
            if text is None:
                raise FormatError(path, f"archive has no member {MNISTM_LABELS}")
            entries = parse_mnistm_labels(
                text.decode("utf-8", "replace"), f"{path}:{MNISTM_LABELS}"
            )
            return _read_members(entries, read, str(path))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise FormatError(path, f"not a readable .tar.gz archive ({error})") from None


def read_mnistm_folder(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an extracted ``mnist_m/`` tree (the parent of ``mnist_m/`` is ``folder``)."""
    folder = Path(folder)
    labels = folder / MNISTM_LABELS
    try:
        text = labels.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise FormatError(labels, f"cannot read: {error.strerror or error}") from None
    entries = parse_mnistm_labels(text, labels)

    def read(name: str) -> bytes | None:
        file = folder / name
        return file.read_bytes() if file.is_file() else None

    return _read_members(entries, read, str(folder))


def _check_split(split: str) -> None:
    if split not in MNISTM_SPLITS:
        raise UserError(f"unknown MNIST-M split {split!r}; use one of {', '.join(MNISTM_SPLITS)}")


def mnistm_split_indices(n: int, split: str) -> torch.Tensor:
    """Indices of ``split`` among ``n`` images in label-file order: ``"test"`` all,
    ``"adapt"`` the even positions, ``"eval"`` the odd positions."""
    _check_split(split)
    if split == "test":
        return torch.arange(n)
    return torch.arange(0 if split == "adapt" else 1, n, 2)


def load_mnistm(
    split: str = "test",
    root: RootLike = None,
    verify: bool = True,
    *,
    size: int = 28,
    info: DatasetInfo = MNIST_M,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST-M ``split`` (``test``, ``adapt`` or ``eval``) as ``(N, 3, size, size)``
    float32 in [0, 1] and int64 labels, from ``<root>/mnist-m/``.

    With ``verify`` the archive ``mnist_m_test.tar.gz`` is checked against its sha256 first
    (the original ``mnist_m.tar.gz`` and an extracted folder have no pinned checksum).
    """
    _check_split(split)
    directory = dataset_dir(info.folder or info.name, root)
    archive = directory / MNISTM_ARCHIVE
    original = directory / MNISTM_ORIGINAL_ARCHIVE
    if archive.is_file():
        if verify:
            verify_file(archive, info.files[0], info.name)
        images, labels = read_mnistm_archive(archive)
    elif (directory / MNISTM_LABELS).is_file():
        images, labels = read_mnistm_folder(directory)
    elif original.is_file():
        images, labels = read_mnistm_archive(original)
    else:
        raise missing_error(info.name, directory, [MNISTM_ARCHIVE], root, downloadable=False)
    keep = mnistm_split_indices(len(labels), split).numpy()
    x = torch.from_numpy(np.ascontiguousarray(images[keep])).permute(0, 3, 1, 2).float() / 255.0
    return resize_images(x, size).contiguous(), torch.from_numpy(labels[keep])
