"""Trainer checkpoints: model, optimizer and recipe state as safetensors plus a JSON manifest.

Nothing is pickled. Tensors (model parameters and buffers, the moments of every player's
optimizer, the recipe's carried tensors such as EMA weights) go into ``epoch-NNNN.safetensors``;
everything else (epoch, optimizer hyperparameters and scalar state, history) into
``epoch-NNNN.json``, which also records the weights' sha256. Optimizer tensors are named
``optim.<player>.<index>.<key>`` (format version 2; version 1 checkpoints, written before games
had several players, hold one optimizer named ``optim.<index>.<key>`` and read back as player
``"model"``). ``latest`` is a
one-line pointer rewritten atomically after both files exist, so an interrupted write never
replaces a good checkpoint. Older epochs are pruned, keeping ``keep`` of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from advml.errors import FormatError
from advml.runs import atomic_write_bytes, atomic_write_json

FORMAT = "advml-trainer-state"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Player name of version-1 checkpoints (one optimizer).
_SINGLE = "model"


def _flatten_optimizer(
    state: dict[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def _as_players(
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
) -> dict[str, torch.optim.Optimizer]:
    if isinstance(optimizer, torch.optim.Optimizer):
        return {_SINGLE: optimizer}
    for name in optimizer:
        if not name or "." in name:
            raise ValueError(f"player name {name!r} must be non-empty and contain no '.'")
    return dict(optimizer)


def save_trainer_state(
    folder: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
    extra: dict[str, Any],
    keep: int = 2,
    recipe_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Checkpoint after ``epoch``; returns the manifest's path.

    ``optimizer`` is one optimizer or ``{player: optimizer}`` for multi-player games.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta: dict[str, Any] = {}
    for player, optim in _as_players(optimizer).items():
        optim_tensors, optim_meta[player] = _flatten_optimizer(
            optim.state_dict(), f"optim.{player}."
        )
        tensors.update(optim_tensors)
    tensors.update(
        {f"recipe.{k}": v.detach().cpu().contiguous() for k, v in (recipe_state or {}).items()}
    )
    blob = save_safetensors(tensors)
    stem = f"epoch-{epoch:04d}"
    atomic_write_bytes(folder / f"{stem}.safetensors", blob)
    atomic_write_json(
        folder / f"{stem}.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "epoch": epoch,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "optimizers": optim_meta,
            "extra": extra,
        },
    )
    atomic_write_bytes(folder / "latest", f"{stem}\n".encode())
    for old in sorted(folder.glob("epoch-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return folder / f"{stem}.json"


def load_trainer_state(
    folder: Path,
) -> tuple[int, dict[str, torch.Tensor], dict[str, dict[str, Any]], dict, dict[str, torch.Tensor]]:
    """Read the latest checkpoint: ``(epoch, model_state, {player: optimizer_state}, extra,
    recipe_state)``."""
    pointer = folder / "latest"
    if not pointer.exists():
        raise FormatError(
            folder, "no checkpoint to resume from (file `latest` missing); start without --resume"
        )
    stem = pointer.read_text().strip()
    manifest_path, weights_path = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise FormatError(manifest_path, "checkpoint manifest missing") from None
    except json.JSONDecodeError as error:
        raise FormatError(manifest_path, f"invalid JSON: {error.msg}", error.lineno) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(manifest_path, f"not an {FORMAT} manifest")
    version = manifest.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise FormatError(
            manifest_path,
            f"unsupported format version {version!r}: this advml reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))}",
        )
    try:
        blob = weights_path.read_bytes()
    except FileNotFoundError:
        raise FormatError(weights_path, "checkpoint weights missing") from None
    if hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
        raise FormatError(weights_path, "sha256 does not match its manifest (corrupt checkpoint)")
    try:
        tensors = load_safetensors(blob)
    except Exception as error:  # safetensors raises its own error types
        raise FormatError(weights_path, f"unreadable safetensors data: {error}") from None
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if version == 1:
        optim_state = {_SINGLE: _unflatten_optimizer(tensors, manifest["optimizer"], "optim.")}
    else:
        optim_state = {
            player: _unflatten_optimizer(tensors, meta, f"optim.{player}.")
            for player, meta in manifest["optimizers"].items()
        }
    recipe_state = {k[len("recipe.") :]: v for k, v in tensors.items() if k.startswith("recipe.")}
    return int(manifest["epoch"]), model_state, optim_state, manifest.get("extra", {}), recipe_state
