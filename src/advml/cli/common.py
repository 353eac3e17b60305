"""Options and steps shared by several subcommands (data, device, seed, output folder)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from advml.errors import UserError


def add_data_options(parser: argparse.ArgumentParser, *, default: str | None = "digits") -> None:
    parser.add_argument(
        "--dataset",
        default=default,
        required=default is None,
        help="dataset name (see `advml data list`) or a path to an .npz file or "
        f"image folder (default: {default})",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the datasets (default: $ADVML_DATA, then ~/.cache/advml)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def eps_list(text: str) -> list[float]:
    """Parse ``"0.1,0.2,0.3"`` into sorted, distinct budgets >= 0."""
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError(f"budgets must be numbers >= 0, got {text!r}")
    return values


def load_split(
    args: argparse.Namespace, split: str, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``split`` of ``--dataset`` (first ``limit`` samples when given)."""
    from advml.data import load

    x, y = load(args.dataset, split=split, root=args.data_dir)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def normalization_for(dataset: str, x_train: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std for the model's ``Normalize`` layer: the dataset's published values
    when advml knows them, else measured on the training inputs."""
    from advml import data

    try:
        info = data.info(dataset)
        if info.mean is not None and info.std is not None:
            return list(info.mean), list(info.std)
    except UserError:
        pass
    dims = [0, *range(2, x_train.ndim)]
    mean = x_train.mean(dim=dims)
    std = x_train.std(dim=dims).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def command_line(args: argparse.Namespace) -> str:
    """The command that started this job, as the user would type it again."""
    return shlex.join(["advml", *getattr(args, "argv", sys.argv[1:])])


def out_dir(path: str) -> Path:
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {path} exists and is not a folder; choose another path")
    return folder
