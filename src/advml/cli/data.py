"""``advml data``: list, describe and download datasets.

* ``advml data list [--root DIR]`` -- a table of every built-in dataset: status
  (found / missing / corrupt), the folder searched and the split sizes.
* ``advml data info NAME`` -- shapes, classes, normalization, files and checksums.
* ``advml data download NAME [--root DIR] [--mirror URL ...] [--force]`` -- fetch the official
  files and verify their checksums.
"""

from __future__ import annotations

import argparse

from advml import data
from advml.data.paths import data_root, root_origin
from advml.data.registry import canonical_name


def _splits(sizes: dict[str, int]) -> str:
    return ", ".join(f"{split} {count}" for split, count in sizes.items())


def _list(args: argparse.Namespace) -> int:
    rows = [
        (row.name, row.status, row.path, _splits(data.info(row.name).splits))
        for row in data.available(args.root)
    ]
    header = ("name", "status", "path", "splits")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    print(f"data root: {data_root(args.root)} (from {root_origin(args.root)})")
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]))
    return 0


def _info(args: argparse.Namespace) -> int:
    ds = data.info(args.name)
    print(f"name:        {ds.name}")
    print(f"description: {ds.description}")
    print(f"input shape: {ds.input_shape}")
    print(f"classes:     {ds.num_classes} ({', '.join(ds.class_names)})")
    print(f"mean / std:  {ds.mean} / {ds.std}")
    print(f"splits:      {_splits(ds.splits)}")
    if ds.folder:
        print(f"folder:      {data_root(args.root) / ds.folder}")
    for name, digest in ds.checksums.items():
        print(f"file:        {name}  {digest}")
    for url in ds.urls:
        print(f"url:         {url}")
    if ds.citation:
        print(f"citation:    {ds.citation}")
    return 0


def _download(args: argparse.Namespace) -> int:
    key = canonical_name(args.name)
    if key is not None and data.info(key).folder is None:
        print(f"{key}: nothing to download ({data.info(key).description})")
        return 0
    folder = data.download(args.name, args.root, mirrors=args.mirror or None, force=args.force)
    print(f"{key}: files verified in {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``advml data {list,info,download}`` to the top-level subparsers."""
    parser = subparsers.add_parser(
        "data",
        help="list, describe and download datasets",
        description="List, describe and download the built-in datasets. Files are looked for "
        "in <root>/<dataset>/, root = --root, else $ADVML_DATA, else ~/.cache/advml.",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    listing = actions.add_parser("list", help="which datasets are present, missing or corrupt")
    listing.add_argument("--root", metavar="DIR", help="data root (default: $ADVML_DATA)")
    listing.set_defaults(func=_list)

    describe = actions.add_parser("info", help="shapes, classes, files and checksums")
    describe.add_argument("name", help="dataset name or path of user data")
    describe.add_argument("--root", metavar="DIR", help="data root (default: $ADVML_DATA)")
    describe.set_defaults(func=_info)

    fetch = actions.add_parser("download", help="fetch the official files and verify them")
    fetch.add_argument("name", help=f"one of {', '.join(data.names())}")
    fetch.add_argument("--root", metavar="DIR", help="data root (default: $ADVML_DATA)")
    fetch.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to fetch from instead of the official mirrors (repeatable; "
        "http(s):// or file://)",
    )
    fetch.add_argument("--force", action="store_true", help="re-download files already present")
    fetch.set_defaults(func=_download)
