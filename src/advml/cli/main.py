"""Entry point of the ``advml`` command.

Each subcommand lives in its own module of :mod:`advml.cli` that exposes
``register(subparsers) -> None``; the parser it adds sets ``func=run`` via ``set_defaults``.
User errors (:class:`advml.errors.UserError`, bad options) print one line to stderr and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from advml import __version__
from advml.errors import UserError

#: Modules of :mod:`advml.cli` that contribute subcommands, in help order.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "train",
    "attack",
    "evaluate",
    "verify",
    "certify",
    "data",
    "zoo",
    "gan",
    "dann",
    "fair",
    "translate",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"advml: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="advml",
        description="Adversarial machine learning: attacks, robust evaluation, adversarial "
        "training, verification and GANs on PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"advml {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"advml.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"advml.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as error:
        print(f"advml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advml: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
