"""Progress bars for long work (training epochs, attacks, evaluation).

Bars go to stderr, only on the main rank, and can be silenced with ``ADVML_PROGRESS=0``.
"""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm

from advml.runtime import dist_info


def progress_enabled(requested: bool = True) -> bool:
    return requested and dist_info().is_main and os.environ.get("ADVML_PROGRESS", "1") != "0"


def progress_bar(total: int, desc: str, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar of ``total`` steps labelled ``desc`` (a no-op bar when disabled)."""
    return tqdm(
        total=total,
        desc=desc,
        disable=not progress_enabled(enabled),
        dynamic_ncols=True,
        leave=False,
        **kwargs,
    )
