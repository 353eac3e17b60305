"""Where dataset files are looked for, and the one-line error when they are not there.

Search order: the ``root`` argument, else the ``ADVML_DATA`` environment variable, else
``~/.cache/advml``. Each dataset lives in a sub-folder named after it (``<root>/mnist/``,
``<root>/cifar10/`` ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from advml.errors import UserError

#: A data-root argument: a path, or ``None`` for ``$ADVML_DATA`` / ``~/.cache/advml``.
RootLike = str | os.PathLike[str] | None

ENV_VAR = "ADVML_DATA"
DEFAULT_ROOT = Path("~/.cache/advml")


def data_root(root: RootLike = None) -> Path:
    """The data root: ``root`` if given, else ``$ADVML_DATA``, else ``~/.cache/advml``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_ROOT.expanduser()


def root_origin(root: RootLike = None) -> str:
    """How the data root was chosen, for messages: ``"root="``, ``"$ADVML_DATA"`` or default."""
    if root is not None and str(root) != "":
        return "the root argument"
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}"
    return "the default ~/.cache/advml"


def dataset_dir(folder: str, root: RootLike = None) -> Path:
    """The folder that holds one dataset's files: ``<data root>/<folder>``."""
    return data_root(root) / folder


def find_first(directory: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``candidates`` (relative names) that is a file in ``directory``."""
    for name in candidates:
        path = directory / name
        if path.is_file():
            return path
    return None


def missing_error(
    dataset: str,
    directory: Path,
    expected: Sequence[str],
    root: RootLike = None,
    downloadable: bool = True,
) -> UserError:
    """The one-line :class:`UserError` for files of ``dataset`` not found in ``directory``."""
    files = ", ".join(expected)
    fix = f"run `advml data download {dataset}`" if downloadable else "copy them there"
    return UserError(
        f"{dataset}: file(s) {files} not found in {directory} (data root from "
        f"{root_origin(root)}); put them there, set {ENV_VAR} to the folder that holds "
        f"{directory.name}/, or {fix}"
    )
