"""Error types shared by every advml module.

``UserError`` is raised for problems the user can fix (a missing file, a bad option, a wrong
shape). Its message is one line that says what is wrong and how to fix it; the CLI prints it
without a traceback and exits with status 2. Anything else escaping advml is a bug.
"""

from __future__ import annotations


class AdvmlError(Exception):
    """Base class of every error advml raises on purpose."""


class UserError(AdvmlError, ValueError):
    """A problem with the user's input: file, option, shape or value.

    The message must be a single line naming what is wrong and how to fix it, e.g.
    ``"mnist: file train-images-idx3-ubyte.gz not found in /data/mnist; run `advml data
    download mnist` or set ADVML_DATA"``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class FormatError(UserError):
    """A file that does not follow its format; names the file and, where known, the line."""

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
