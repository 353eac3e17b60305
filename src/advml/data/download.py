"""Fetch the official files of a dataset into the data root.

Each file is streamed (urllib, tqdm progress) to a temporary file next to its destination,
hashed on the fly, and renamed into place only if its published checksum matches; on a
mismatch or an error the next mirror is tried. Files already present with the right checksum
are kept. The mirror list can be overridden (``mirrors=``), e.g. with a ``file://`` URL of a
local copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from advml.data.catalog import DataFile, DatasetInfo
from advml.data.checksums import expected_digest, matches
from advml.data.paths import RootLike, data_root
from advml.errors import UserError

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0
_SCHEMES = ("http://", "https://", "file://")


def _fetch(url: str, destination: Path, spec: DataFile, progress: bool) -> None:
    """Download ``url`` to ``destination`` atomically; raise ``ValueError`` on a bad checksum."""
    from tqdm.auto import tqdm

    expected = expected_digest(spec)
    hasher = hashlib.new(expected[0] if expected else "sha256", usedforsecurity=False)
    fd, tmp_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "advml"})
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else spec.size
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=spec.name,
                disable=None if progress else True,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    bar.update(len(chunk))
        if expected is not None and hasher.hexdigest() != expected[1].lower():
            raise ValueError(
                f"checksum mismatch ({expected[0]} {hasher.hexdigest()}, expected {expected[1]})"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a dataset file is world-readable
        os.replace(tmp, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def download_files(
    info: DatasetInfo,
    root: RootLike = None,
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download every downloadable file of ``info`` into ``<root>/<folder>/``; return it."""
    if not info.folder or not any(spec.download for spec in info.files):
        raise UserError(f"{info.name}: nothing to download (the data ships with advml)")
    bases = list(mirrors) if mirrors is not None else list(info.mirrors)
    if not bases:
        raise UserError(f"{info.name}: no download mirror is known; copy the files by hand")
    bad = [base for base in bases if not base.startswith(_SCHEMES)]
    if bad:
        raise UserError(f"mirror {bad[0]!r} is not an http(s):// or file:// URL")
    directory = data_root(root) / info.folder
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"{info.name}: cannot create {directory} ({error.strerror or error}); choose a "
            f"writable folder with --root or ADVML_DATA"
        ) from None
    for spec in info.files:
        if not spec.download:
            continue
        destination = directory / spec.name
        if not force and destination.is_file() and matches(destination, spec):
            continue
        failures: list[str] = []
        for base in bases:
            url = base.rstrip("/") + "/" + spec.name
            try:
                _fetch(url, destination, spec, progress)
                break
            except (OSError, ValueError, urllib.error.URLError) as error:
                reason = getattr(error, "reason", None) or error
                failures.append(f"{url}: {reason}")
        else:
            raise UserError(
                f"{info.name}: could not download {spec.name} ({'; '.join(failures)}); "
                f"fetch it by hand into {directory}"
            )
    return directory
