"""GAN checkpoints: both players' weights as safetensors plus a JSON card; nothing unpickled.

A checkpoint is ``NAME.safetensors`` + ``NAME.json`` (or a folder holding ``model.*``), the
layout of :mod:`advml.models.checkpoint`, whose JSON writer and strict JSON parser are reused.
Tensors are named ``generator.*``, ``discriminator.*`` and, when the run kept an exponential
moving average, ``generator_ema.*``. The card (``format: advml.gan``) records the
game's build spec (architecture, data shape, latent size, classes, packing, spectral norm),
the dataset, the recipe settings, metrics and the weights' sha256; :func:`load_gan` rebuilds
the game from it and refuses weights whose hash or shapes do not match.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from advml import __version__
from advml.errors import FormatError, UserError
from advml.generative.game import GanGame, rebuild_game
from advml.models.card import format_json, parse_json, to_json
from advml.runs import atomic_write_bytes

__all__ = ["GAN_CARD_FORMAT", "load_gan", "read_gan_card", "save_gan"]

GAN_CARD_FORMAT = "advml.gan"
GAN_CARD_VERSION = 1


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    return p / "model.safetensors", p / "model.json"


def save_gan(
    game: GanGame,
    path: str | os.PathLike[str],
    card: dict[str, Any] | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``game`` (and the generator's EMA state ``ema``) to ``path``; returns the weights'
    path. ``card`` adds fields (dataset, recipe settings, metrics, command)."""
    tensors = {
        f"{player}.{k}": v.detach().to("cpu", copy=True).contiguous()
        for player in ("generator", "discriminator")
        for k, v in getattr(game, player).state_dict().items()
    }
    for k, v in (ema or {}).items():
        tensors[f"generator_ema.{k}"] = v.detach().to("cpu", copy=True).contiguous()
    blob = save_safetensors(tensors, metadata={"format": "pt", "advml": GAN_CARD_FORMAT})
    weights, card_path = checkpoint_paths(path)
    out = {
        "format": GAN_CARD_FORMAT,
        "format_version": GAN_CARD_VERSION,
        "game": to_json(game.spec, "the GAN spec"),
        **to_json(dict(card or {}), "a card field"),
        "ema": bool(ema),
        "weights": {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
        "advml_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(weights, blob)
    atomic_write_bytes(card_path, (format_json(out) + "\n").encode())
    return weights


def read_gan_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of the GAN checkpoint ``path`` (a file of the pair or their folder)."""
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise FormatError(
            card_path,
            "no GAN checkpoint: give the run folder of `advml gan train` (holding model.json "
            "and model.safetensors) or one of the two files",
        )
    card = parse_json(card_path, card_path.read_bytes())
    if not isinstance(card, dict) or card.get("format") != GAN_CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise FormatError(
            card_path, f"not a GAN checkpoint card (format {found!r}, expected 'advml.gan')"
        )
    if card.get("format_version") != GAN_CARD_VERSION:
        raise FormatError(card_path, f"unsupported format_version {card.get('format_version')!r}")
    for key in ("game", "weights"):
        if not isinstance(card.get(key), dict):
            raise FormatError(card_path, f"missing or malformed {key!r}")
    return card


def read_checked_tensors(
    path: str | os.PathLike[str],
) -> tuple[Path, Path, dict[str, Any], dict[str, torch.Tensor]]:
    """``(weights path, card path, card, tensors)`` of the checkpoint at ``path``: the card
    read and checked, the weights' sha256 compared with the card's, the safetensors parsed
    (never unpickled). Every failure is a :class:`FormatError` naming the file."""
    weights, card_path = checkpoint_paths(path)
    card = read_gan_card(path)
    try:
        blob = weights.read_bytes()
    except FileNotFoundError:
        raise FormatError(weights, "weights file not found next to its card") from None
    if hashlib.sha256(blob).hexdigest() != card["weights"].get("sha256"):
        raise FormatError(weights, "sha256 does not match the card: modified or truncated")
    try:
        tensors = load_safetensors(blob)
    except Exception as error:  # safetensors raises its own error types
        raise FormatError(weights, f"not a valid safetensors file: {error}") from None
    return weights, card_path, card, tensors


def load_gan(
    path: str | os.PathLike[str], *, use_ema: bool = True, map_location: str = "cpu"
) -> tuple[GanGame, dict[str, Any]]:
    """Rebuild the game saved at ``path``; the generator holds the EMA weights when the
    checkpoint has them and ``use_ema``. Returns ``(game in eval mode, card)``."""
    weights, card_path, card, tensors = read_checked_tensors(path)
    try:
        game = rebuild_game(card["game"])
    except UserError as error:
        raise FormatError(card_path, f"cannot build the card's game: {error}") from None
    prefix = "generator_ema." if use_ema and card.get("ema") else "generator."
    parts = {
        "generator": {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
        "discriminator": {
            k[len("discriminator.") :]: v
            for k, v in tensors.items()
            if k.startswith("discriminator.")
        },
    }
    for player, state in parts.items():
        try:
            getattr(game, player).load_state_dict(state)
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:300]
            raise FormatError(weights, f"{player} weights do not fit the card: {detail}") from None
    return game.to(map_location).eval(), card
