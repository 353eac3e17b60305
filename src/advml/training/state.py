"""Trainer checkpoints: model and optimizer state as safetensors plus a JSON manifest.

Nothing is pickled. Tensors (model parameters and buffers, optimizer moments) go into
``epoch-NNNN.safetensors``; everything else (epoch, optimizer hyperparameters and scalar state,
history) into ``epoch-NNNN.json``, which also records the weights' sha256. ``latest`` is a
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
FORMAT_VERSION = 1


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_trainer_state(
    folder: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, Any],
    keep: int = 2,
    recipe_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Checkpoint after ``epoch``; returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
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
            "optimizer": optim_meta,
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
) -> tuple[int, dict[str, torch.Tensor], dict[str, Any], dict, dict[str, torch.Tensor]]:
    """Read the latest checkpoint: ``(epoch, model_state, optimizer_state, extra,
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
    optim_state = _unflatten_optimizer(tensors, manifest["optimizer"])
    recipe_state = {k[len("recipe.") :]: v for k, v in tensors.items() if k.startswith("recipe.")}
    return int(manifest["epoch"]), model_state, optim_state, manifest.get("extra", {}), recipe_state
