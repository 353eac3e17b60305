"""User datasets: an ``.npz`` file of arrays, or a folder of images with one sub-folder per class.

* ``.npz`` (numpy's zip of ``.npy`` arrays, read with ``allow_pickle=False``): arrays ``x`` of
  shape ``(N, H, W)`` or ``(N, H, W, C)`` (``(N, C, H, W)`` is accepted when the last axis
  cannot be channels) or ``(N, D)`` feature vectors, and integer labels ``y`` of shape ``(N,)``.
  If the file has ``x_train``/``y_train``/``x_test``/``y_test``, ``split`` picks the pair;
  otherwise ``x``/``y`` is returned for either split.
* image folder: ``<path>/<class>/<image>.png|.jpg|.jpeg``; class indices follow the sorted
  sub-folder names. If ``<path>/train`` or ``<path>/test`` exists, ``split`` picks that
  folder, and the class list is the sorted union of both folders' class names so that indices
  agree between splits. Greyscale images give one channel; if any image is in colour all are
  converted to RGB (alpha is dropped). All images must have the same size.

uint8 data is divided by 255; float data must already lie in [0, 1].
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from advml.data.catalog import DatasetInfo
from advml.errors import FormatError, UserError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_GREY_MODES = frozenset({"1", "L", "LA"})
_COLOUR_MODES = frozenset({"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})


def is_user_path(name: str) -> bool:
    """Whether ``name`` points at user data (an existing path, or one ending in ``.npz``)."""
    return Path(name).expanduser().exists() or name.endswith(".npz")


def _to_nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4):
            return np.moveaxis(x, -1, 1)
        if x.shape[1] in (1, 3, 4):
            return x
    raise FormatError(
        path,
        f"'{key}' has shape {x.shape}; expected (N, H, W), (N, H, W, C) with C in 1/3/4, or (N, D)",
    )


def _scale(x: np.ndarray, path: Path | str, key: str) -> np.ndarray:
    """uint8 -> /255; float -> checked to lie in [0, 1]; anything else is an error."""
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= 255.0
        return out
    if np.issubdtype(x.dtype, np.floating):
        out = x.astype(np.float32)
        if out.size:
            if not np.isfinite(out).all():
                raise FormatError(path, f"'{key}' contains NaN or infinite values")
            low, high = float(out.min()), float(out.max())
            if low < 0.0 or high > 1.0:
                raise FormatError(
                    path,
                    f"float data '{key}' must lie in [0, 1], found values in [{low:g}, "
                    f"{high:g}]; rescale it (e.g. divide by 255) or store uint8",
                )
        return out
    raise FormatError(path, f"'{key}' has dtype {x.dtype}; use uint8 (0..255) or float in [0, 1]")


def _labels(y: np.ndarray, n: int, path: Path | str, key: str) -> np.ndarray:
    if y.shape != (n,):
        raise FormatError(
            path, f"'{key}' must have shape ({n},) to match the data, found {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        if y.size and not (np.isfinite(y).all() and (y == np.rint(y)).all()):
            raise FormatError(path, f"'{key}' must hold integer class labels")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise FormatError(path, f"'{key}' has dtype {y.dtype}; labels must be integers")
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise FormatError(path, f"'{key}' has negative labels; use 0 .. K-1")
    return labels


def _load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FormatError(path, "holds a single array; save x and y with numpy.savez")
        with archive:
            keys = set(archive.files)
            if keys & {"x_train", "y_train", "x_test", "y_test"}:
                xkey, ykey = f"x_{split}", f"y_{split}"
            else:
                xkey, ykey = "x", "y"
            if xkey not in keys or ykey not in keys:
                raise FormatError(
                    path,
                    f"npz needs arrays '{xkey}' and '{ykey}' (found {', '.join(sorted(keys))}); "
                    f"store x/y, or x_train/y_train/x_test/y_test",
                )
            x, y = archive[xkey], archive[ykey]
    except FormatError:
        raise
    except FileNotFoundError:
        raise UserError(f"user data {path} not found; give an existing .npz or folder") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise FormatError(path, f"not a readable .npz file ({error})") from None
    images = _scale(_to_nchw(x, path, xkey), path, xkey)
    labels = _labels(y, images.shape[0], path, ykey)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    return images, labels, tuple(str(k) for k in range(num_classes))


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _decode(file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            mode = image.mode
            if mode in _GREY_MODES:
                return np.asarray(image.convert("L"))
            if mode in _COLOUR_MODES:
                return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise FormatError(file, f"cannot decode image ({error})") from None
    raise FormatError(file, f"unsupported image mode {mode!r}; save it as 8-bit grey or RGB")


def _load_folder(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if (path / "train").is_dir() or (path / "test").is_dir():
        folder = path / split
        if not folder.is_dir():
            raise UserError(
                f"user data {path} has train/test sub-folders but no '{split}' folder; "
                f"create {folder} or load the other split"
            )
        classes = sorted(
            {
                name
                for part in ("train", "test")
                if (path / part).is_dir()
                for name in _class_dirs(path / part)
            }
        )
    else:
        folder = path
        classes = _class_dirs(path)
    if not classes:
        raise UserError(
            f"user data {folder} has no class sub-folders; put the images of class k in "
            f"{folder}/<class name>/ (sorted names give the label indices)"
        )
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first: Path | None = None
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        files = sorted(
            f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        for file in files:
            array = _decode(file)
            if first is None:
                first = file
            elif array.shape[:2] != arrays[0].shape[:2]:
                h0, w0 = arrays[0].shape[:2]
                h1, w1 = array.shape[:2]
                raise UserError(
                    f"user data {folder}: images must all have the same size, but {first} is "
                    f"{w0}x{h0} and {file} is {w1}x{h1}; resize them first"
                )
            arrays.append(array)
            labels.append(index)
    if not arrays:
        raise UserError(
            f"user data {folder} holds no PNG/JPEG images in its class sub-folders "
            f"({', '.join(classes)})"
        )
    if any(a.ndim == 3 for a in arrays):
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    stacked = np.stack(arrays)
    images = _scale(_to_nchw(stacked, folder, "images"), folder, "images")
    return images, np.asarray(labels, dtype=np.int64), tuple(classes)


def read_user(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read user data as numpy: float32 ``(N, C, H, W)`` (or ``(N, D)``), int64, class names."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _load_folder(path, split)
    if path.suffix.lower() == ".npz" or path.is_file():
        if path.is_file() and path.suffix.lower() != ".npz":
            raise UserError(
                f"user data {path} is neither an .npz file nor a folder of class sub-folders"
            )
        return _load_npz(path, split)
    raise UserError(f"user data {path} not found; give an existing .npz file or image folder")


def load_user(path: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Load user data (see the module docstring) as float32 NCHW in [0, 1] and int64 labels."""
    images, labels, _ = read_user(path, split)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def user_info(path: str | Path) -> DatasetInfo:
    """Metadata of user data, computed from the files (the train split gives mean/std)."""
    images, _, classes = read_user(path, "train")
    sizes = {"train": int(images.shape[0])}
    try:
        test_images, test_labels, _ = read_user(path, "test")
        sizes["test"] = int(test_images.shape[0])
        if test_labels.size:
            need = int(test_labels.max()) + 1
            if need > len(classes):
                classes = tuple(str(k) for k in range(need))
    except UserError:
        pass
    axes = (0, 2, 3) if images.ndim == 4 else (0,)
    mean = images.mean(axis=axes, dtype=np.float64) if images.size else np.zeros(1)
    std = images.std(axis=axes, dtype=np.float64) if images.size else np.ones(1)
    return DatasetInfo(
        name=str(path),
        input_shape=tuple(int(s) for s in images.shape[1:]),
        num_classes=len(classes),
        class_names=classes,
        mean=tuple(round(float(v), 4) for v in np.atleast_1d(mean)),
        std=tuple(round(float(v), 4) for v in np.atleast_1d(std)),
        splits=sizes,
        description="user data (.npz or image folder)",
    )
