"""``advml zoo``: the published checkpoints trained by advml (list, info, get).

``advml zoo list`` prints one row per entry with the accuracies its card records;
``advml zoo info NAME`` prints the card's ``zoo`` section (the exact training and evaluation
commands, the measured accuracies) as JSON; ``advml zoo get NAME --out DIR`` copies the
checkpoint (``NAME.safetensors`` and its ``NAME.json`` card) into ``DIR``. Any command that
takes a checkpoint also accepts ``zoo:NAME`` directly.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable

from advml.cli.common import out_dir
from advml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="checkpoints trained by advml: list, info, get",
        description="Published checkpoints trained with `advml train` and measured with "
        "`advml evaluate --attacks standard`. Load one with advml.models.load('zoo:NAME') or "
        "give --checkpoint zoo:NAME to any command.",
    )
    actions = parser.add_subparsers(dest="zoo_command", metavar="ACTION", parser_class=type(parser))
    listing = actions.add_parser("list", help="table of the entries and their accuracies")
    listing.set_defaults(func=run_list)
    info = actions.add_parser("info", help="an entry's zoo card section (commands, accuracies)")
    info.add_argument("name", help="entry name (see `advml zoo list`)")
    info.set_defaults(func=run_info)
    get = actions.add_parser("get", help="copy an entry's checkpoint and card into a folder")
    get.add_argument("name", help="entry name (see `advml zoo list`)")
    get.add_argument("--out", default=".", help="folder to copy into (default: .)")
    get.set_defaults(func=run_get)
    parser.set_defaults(func=_help(parser))


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``advml zoo`` without an action: print its help, exit status 2."""

    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def _percent(value: object) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "n/a"


def run_list(args: argparse.Namespace) -> int:
    """``advml zoo list``: one row per entry with the accuracies its card records."""
    from advml import zoo

    rows = []
    for name in zoo.names():
        section = zoo.info(name)
        rows.append(
            [
                name,
                str(section["dataset"]),
                str(section["arch"]),
                str(section["recipe"]),
                f"{section['threat']} {section['eps']:g}",
                _percent(section["clean_accuracy"]),
                _percent(section["robust_accuracy"]),
                str(section["n"]),
            ]
        )
    if not rows:
        print("the zoo is empty")
        return 0
    header = ["name", "dataset", "arch", "recipe", "eps", "clean", "robust", "n"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {5, 6, 7}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(header))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
    print(
        "\nclean and robust accuracy (%) on the first n test images, measured by `advml "
        "evaluate --attacks standard` at the eps shown; `advml zoo info NAME` gives the exact "
        "commands; load with advml.models.load('zoo:NAME')"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    """``advml zoo info NAME``: the card's zoo section as JSON."""
    from advml import zoo

    print(json.dumps(zoo.info(args.name), indent=2, ensure_ascii=False))
    return 0


def run_get(args: argparse.Namespace) -> int:
    """``advml zoo get NAME --out DIR``: check the entry, copy both files, print the weights."""
    from advml import zoo

    weights, card = zoo.resolve(args.name)
    zoo.info(args.name)  # a published entry: the card has its zoo section
    zoo.load(args.name)  # the weights match the card's sha256 and its architecture
    folder = out_dir(args.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        copies = []
        for source in (weights, card):
            target = folder / source.name
            shutil.copyfile(source, target)
            copies.append(target)
    except OSError as error:
        raise UserError(f"cannot copy into {folder}: {error.strerror or error}") from None
    print(copies[0])
    return 0
