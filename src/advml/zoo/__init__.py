"""The model zoo: checkpoints trained by advml with its own commands, shipped with the package.

Each entry is a checkpoint under ``advml/zoo/weights/``: ``NAME.safetensors`` and the
``NAME.json`` card that ``advml train`` wrote, plus a ``zoo`` section recording how the entry
was made and measured (the exact ``advml train`` and ``advml evaluate`` commands, the clean
accuracy and the robust accuracy under the ``standard`` ensemble at the entry's budget, the
number of test images, the date). ``benchmarks/zoo_build.py`` makes the entries.

>>> from advml import zoo
>>> "digits-pgd" in zoo.names()
True
>>> zoo.info("digits-pgd")["recipe"]
'pgd'
>>> model = zoo.load("digits-pgd")   # the same as advml.models.load("zoo:digits-pgd")

``advml.models.load("zoo:NAME")`` and every command that takes a checkpoint (``advml evaluate
--checkpoint zoo:NAME``) resolve names here; the weights' sha256 is checked against the card
on every load. ``advml zoo list | info NAME | get NAME --out DIR`` is the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from advml.errors import FormatError, UserError

__all__ = [
    "REQUIRED_FIELDS",
    "ZOO_DIR",
    "card",
    "info",
    "load",
    "names",
    "path",
    "resolve",
]

#: Folder holding the published checkpoints (``NAME.safetensors`` + ``NAME.json``).
ZOO_DIR = Path(__file__).resolve().parent / "weights"

#: Fields every card's ``zoo`` section has (``benchmarks/zoo_build.py`` writes them).
REQUIRED_FIELDS = (
    "name",  # the entry's name, the file stem
    "dataset",  # the dataset it was trained and evaluated on
    "arch",  # registered architecture
    "recipe",  # training recipe (standard, pgd, fgsm-rs, trades, ...)
    "train_eps",  # training budget, null for standard training
    "threat",  # threat model of the robust evaluation (linf, l2, l1)
    "eps",  # budget of the robust evaluation (the training budget for adversarial entries)
    "train_command",  # the exact `advml train ...` command that made the weights
    "eval_command",  # the exact `advml evaluate ...` command that measured them
    "attacks",  # the evaluation's attack ensemble (the `standard` preset)
    "split",  # evaluated split
    "n",  # number of evaluated images (the first n of the split)
    "clean_accuracy",  # measured by `advml evaluate`, fraction in [0, 1]
    "robust_accuracy",  # worst case over the ensemble at eps, fraction in [0, 1]
    "date",  # UTC date of the evaluation, YYYY-MM-DD
)

_PREFIX = "zoo:"
_WEIGHTS = ".safetensors"
_CARD = ".json"


def _directory() -> Path:
    return Path(ZOO_DIR)


def names() -> list[str]:
    """Names of the published checkpoints, sorted (those with both weights and card)."""
    folder = _directory()
    if not folder.is_dir():
        return []
    return sorted(
        card.stem
        for card in folder.glob(f"*{_CARD}")
        if card.is_file() and card.with_suffix(_WEIGHTS).is_file()
    )


def _name(name: str) -> str:
    """``name`` without a ``zoo:`` prefix, checked against :func:`names`."""
    if not isinstance(name, str):
        raise UserError(f"a zoo name must be a string, got {type(name).__name__}")
    bare = name[len(_PREFIX) :] if name.startswith(_PREFIX) else name
    available = names()
    if bare not in available:
        listing = ", ".join(available) if available else "none"
        raise UserError(f"unknown zoo model {bare!r}; available: {listing} (see `advml zoo list`)")
    return bare


def resolve(name: str) -> tuple[Path, Path]:
    """``(weights, card)`` paths of the entry ``name`` (with or without ``zoo:``).

    Raises:
        UserError: ``name`` is not in the zoo; the message lists the available names.
    """
    bare = _name(name)
    folder = _directory()
    return folder / f"{bare}{_WEIGHTS}", folder / f"{bare}{_CARD}"


def path(name: str) -> Path:
    """Path of the entry's weights file (its card is the ``.json`` beside it)."""
    return resolve(name)[0]


def card(name: str) -> dict[str, Any]:
    """The entry's whole validated model card (architecture, weights hash, ``zoo`` section)."""
    from advml.models.checkpoint import read_card

    return read_card(path(name))


def info(name: str) -> dict[str, Any]:
    """The ``zoo`` section of the entry's card: commands, accuracies, budget, n, date.

    Raises:
        UserError: unknown name.
        FormatError: the card has no ``zoo`` section or lacks one of :data:`REQUIRED_FIELDS`.
    """
    full = card(name)
    section = full.get("zoo")
    card_path = resolve(name)[1]
    if not isinstance(section, dict):
        raise FormatError(card_path, "no 'zoo' section: not a published zoo checkpoint")
    missing = [key for key in REQUIRED_FIELDS if key not in section]
    if missing:
        raise FormatError(card_path, f"zoo section lacks {', '.join(missing)}")
    return section


def load(name: str, map_location: str | torch.device = "cpu") -> nn.Module:
    """The entry's model, in eval mode, its weights' sha256 checked against the card.

    The same as ``advml.models.load("zoo:" + name)``; ``name`` may carry the prefix.
    """
    from advml.models.checkpoint import load as load_checkpoint

    return load_checkpoint(_PREFIX + _name(name), map_location=map_location)
