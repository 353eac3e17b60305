"""The run folder every advml job writes: ``config.json``, ``metrics.jsonl``, ``results.json``.

Files are written atomically (write to a temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from advml.runtime import versions


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())


class RunFolder:
    """One job's output folder.

    >>> run = RunFolder("runs/example")            # doctest: +SKIP
    >>> run.write_config({"lr": 1e-3, "seed": 0})  # doctest: +SKIP
    >>> run.log({"epoch": 1, "test_acc": 0.98})     # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, settings: dict[str, Any], command: str | None = None) -> None:
        atomic_write_json(
            self.path / "config.json",
            {
                "settings": settings,
                "command": command,
                "versions": versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.path / "results.json", results)

    def log(self, row: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_jsonable(row)) + "\n")

    def truncate_metrics(self, keep_epochs: int) -> None:
        """Drop rows past epoch ``keep_epochs`` (used on resume so no epoch is logged twice)."""
        if not self.metrics_path.exists():
            return
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]
        kept = [row for row in rows if row.get("epoch", 0) <= keep_epochs]
        atomic_write_bytes(
            self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept).encode()
        )
