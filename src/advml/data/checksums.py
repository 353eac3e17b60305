"""File digests (md5 / sha256) with an in-memory cache, and verification of official files.

Hashing a 170 MB archive takes a while, so each digest is remembered per process, keyed on the
file's resolved path, size and modification time: a file that changes on disk is re-hashed, an
unchanged one is not.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from advml.data.catalog import DataFile
from advml.errors import FormatError

_CHUNK = 1 << 20
_cache: dict[tuple[str, int, int, str], str] = {}
_lock = threading.Lock()


def _key(path: Path, algorithm: str) -> tuple[str, int, int, str]:
    stat = os.stat(path)
    return (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, algorithm)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Return the hex digest of a file (``"md5"`` or ``"sha256"``), cached on path+size+mtime."""
    if algorithm not in ("md5", "sha256"):
        raise ValueError(f"unsupported digest {algorithm!r}; use 'md5' or 'sha256'")
    path = Path(path)
    key = _key(path, algorithm)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _cache[key] = value
    return value


def clear_cache() -> None:
    """Forget every cached digest (the next verification re-hashes)."""
    with _lock:
        _cache.clear()


def expected_digest(spec: DataFile) -> tuple[str, str] | None:
    """``(algorithm, hex)`` to check ``spec`` against: sha256 where published, else md5."""
    if spec.sha256:
        return "sha256", spec.sha256
    if spec.md5:
        return "md5", spec.md5
    return None


def matches(path: str | os.PathLike[str], spec: DataFile) -> bool:
    """Whether the file at ``path`` has the published digest of ``spec`` (``True`` if none)."""
    expected = expected_digest(spec)
    if expected is None:
        return True
    algorithm, value = expected
    return file_digest(path, algorithm) == value.lower()


def verify_file(path: str | os.PathLike[str], spec: DataFile, dataset: str) -> None:
    """Raise :class:`FormatError` unless ``path`` has the published digest of ``spec``.

    The message names the file, both digests and the fix (re-download, or ``verify=False`` for
    a deliberately modified copy).
    """
    expected = expected_digest(spec)
    if expected is None:
        return
    algorithm, value = expected
    actual = file_digest(path, algorithm)
    if actual != value.lower():
        raise FormatError(
            path,
            f"checksum mismatch ({algorithm} {actual}, expected {value}): the file is corrupt "
            f"or not the official {dataset} release; re-download with "
            f"`advml data download {dataset}`, or pass verify=False to load it anyway",
        )
