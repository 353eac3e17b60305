"""Model checkpoints: weights as ``safetensors`` plus a JSON card; nothing is ever unpickled.

A checkpoint is two files with the same stem, side by side::

    cnn.safetensors   the state dict (parameters and buffers), safetensors format
    cnn.json          the card: what to build, how the weights were made, their sha256

A directory holding ``model.safetensors`` and ``model.json`` is a checkpoint too. The card
says which registered architecture to build (name, options, input shape, classes,
normalization), so :func:`load` rebuilds the network with :func:`advml.models.build` and fills
it from the safetensors file, whose sha256 must match the card. A checkpoint is data only: a
malicious file can at worst be rejected, never run code.

Every problem with a file raises one :class:`~advml.errors.FormatError` that names the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from advml import __version__
from advml.errors import FormatError, UserError
from advml.models.card import (
    CARD_FORMAT,
    CARD_VERSION,
    COMPUTED_KEYS,
    SPEC_KEYS,
    format_json,
    parse_json,
    short,
    to_json,
    validate_card,
)
from advml.models.registry import SPEC_ATTRIBUTE, build, names

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "ZOO_PREFIX",
    "checkpoint_paths",
    "load",
    "read_card",
    "save",
]

#: Prefix of the names of published checkpoints (``"zoo:NAME"``).
ZOO_PREFIX = "zoo:"
#: File stem used inside a checkpoint directory.
DIRECTORY_STEM = "model"

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
_MAX_CARD_BYTES = 16 << 20


# --------------------------------------------------------------------------- paths


def _resolve_zoo(name: str) -> tuple[Path, Path]:
    """``zoo:NAME`` -> ``(weights, card)`` of a published checkpoint in :mod:`advml.zoo`.

    Raises:
        UserError: ``NAME`` is not in the zoo; the message lists the available names.
    """
    from advml.zoo import resolve

    return resolve(name)


def _as_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"checkpoint path must be a str or os.PathLike, got {path!r}")
    return Path(path)


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, card)`` paths of the checkpoint ``path`` refers to (files need not exist).

    ``path`` is a ``.safetensors`` file, its ``.json`` card, a directory (holding
    ``model.safetensors`` and ``model.json``) or ``zoo:NAME``.
    """
    if isinstance(path, str) and path.startswith(ZOO_PREFIX):
        return _resolve_zoo(path[len(ZOO_PREFIX) :])
    p = _as_path(path)
    if p.suffix == WEIGHTS_SUFFIX and not p.is_dir():
        return p, p.with_suffix(CARD_SUFFIX)
    if p.suffix == CARD_SUFFIX and not p.is_dir():
        return p.with_suffix(WEIGHTS_SUFFIX), p
    if p.is_dir():
        return p / f"{DIRECTORY_STEM}{WEIGHTS_SUFFIX}", p / f"{DIRECTORY_STEM}{CARD_SUFFIX}"
    if p.exists():
        raise FormatError(
            p, "not a checkpoint: expected a .safetensors file, its .json card or a directory"
        )
    raise FormatError(
        p,
        "no such checkpoint: give a .safetensors file, its .json card, or a directory holding "
        "model.safetensors and model.json",
    )


def _save_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    if isinstance(path, str) and path.startswith(ZOO_PREFIX):
        raise UserError(f"cannot save to {path!r}: zoo names are read-only; give a file path")
    p = _as_path(path)
    if p.suffix == WEIGHTS_SUFFIX and not p.is_dir():
        directory, stem = p.parent, p.stem
    elif p.is_dir() or not p.suffix:
        directory, stem = p, DIRECTORY_STEM
    else:
        raise UserError(
            f"cannot save a checkpoint to {str(p)!r}: give a path ending in .safetensors "
            "(the card is written next to it as .json) or a directory"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create directory {directory}: {error.strerror}") from None
    return directory / f"{stem}{WEIGHTS_SUFFIX}", directory / f"{stem}{CARD_SUFFIX}"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory + ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --------------------------------------------------------------------------- save


def _spec_for_saving(model: nn.Module, card: Mapping[str, Any]) -> dict[str, Any]:
    own = getattr(model, SPEC_ATTRIBUTE, None)
    given = {key: card[key] for key in SPEC_KEYS if key in card}
    if own is None:
        if not {"arch", "input_shape", "num_classes"} <= set(given):
            raise UserError(
                f"cannot save a {type(model).__name__} that advml.models.build did not make: "
                "the card would not say how to rebuild it. Build the model with "
                "advml.models.build(arch, input_shape, num_classes, mean=..., std=...), or pass "
                "card={'arch': NAME, 'input_shape': [...], 'num_classes': N} (optionally "
                "'arch_kwargs' and 'normalization') naming a registered architecture whose "
                "parameters match the model's"
            )
        spec = {"arch_kwargs": {}, "normalization": None, **given}
        return to_json(spec, "the architecture spec")
    spec = to_json({key: own.get(key) for key in SPEC_KEYS}, "model.advml_spec")
    for key, value in to_json(given, "the card's architecture fields").items():
        if value != spec[key]:
            raise UserError(
                f"card field {key}={value!r} disagrees with the model, which was built with "
                f"{key}={spec[key]!r}; drop the field from the card"
            )
    return spec


def _reference_model(spec: Mapping[str, Any], device: str = "meta") -> nn.Module:
    """The model ``spec`` describes, built on ``device`` without touching the random state.

    On the ``meta`` device nothing is allocated, so a card cannot make :func:`load` allocate
    more than its weights file holds before the shapes have been checked.
    """
    norm = spec.get("normalization")
    if norm is not None and not isinstance(norm, Mapping):
        raise UserError(f"normalization must be null or {{'mean': ..., 'std': ...}}, got {norm!r}")
    kwargs = spec.get("arch_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise UserError(f"arch_kwargs must be a dict of options, got {kwargs!r}")
    with torch.random.fork_rng(devices=[]), torch.device(device):
        return build(
            spec["arch"],
            spec["input_shape"],
            spec["num_classes"],
            mean=None if norm is None else norm.get("mean"),
            std=None if norm is None else norm.get("std"),
            **kwargs,
        )


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside ``DataParallel``, ``DistributedDataParallel`` or ``torch.compile``."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and "_orig_mod" in model._modules:
            model = model._modules["_orig_mod"]
        else:
            return model


def _state_for_saving(model: nn.Module) -> dict[str, Tensor]:
    """The state dict as independent, contiguous CPU tensors (shared storage is copied)."""
    tensors: dict[str, Tensor] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, Tensor):
            raise UserError(f"cannot save state entry {name!r}: it is not a tensor")
        tensors[name] = value.detach().to("cpu", copy=True).contiguous()
    return tensors


def _mismatch(expected: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> list[str]:
    """Human-readable differences in names and shapes between two state dicts."""
    problems = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    shaped = [
        f"{k} is {tuple(got[k].shape)}, expected {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if shaped:
        problems.append(f"mis-shaped tensors: {'; '.join(shaped)}")
    return problems


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and its card next to it (JSON).

    Args:
        model: a model from :func:`advml.models.build` (or :func:`load`), also inside
            ``DataParallel``/``DistributedDataParallel``/``torch.compile``. Another module can
            be saved when ``card`` names a registered architecture with ``arch``,
            ``input_shape``, ``num_classes`` (and optionally ``arch_kwargs``,
            ``normalization``) whose parameter names and shapes match.
        path: ``NAME.safetensors`` (the card is ``NAME.json``), or a directory (created if
            needed) that receives ``model.safetensors`` and ``model.json``.
        card: extra fields for the card, e.g. ``dataset``, ``recipe``, ``metrics``, ``seed``,
            ``command``; any JSON value. Fields the card computes (``format``,
            ``format_version``, ``weights``, ``advml_version``, ``torch_version``,
            ``created``) are replaced, so the card of a loaded model can be passed back.

    Returns:
        The path of the weights file. Both files are written atomically (temporary file in
        the same directory, then ``os.replace``): weights first, then the card.

    Raises:
        UserError: the model cannot be described by a card, a card field is not JSON, or a
            file cannot be written.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"save expects a torch.nn.Module, got {type(model).__name__}")
    if card is not None and not isinstance(card, Mapping):
        raise UserError(f"card must be a dict of extra fields, got {type(card).__name__}")
    model = _unwrap(model)
    extra = dict(card or {})
    bad_keys = [k for k in extra if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"card keys must be strings, got {bad_keys!r}")
    spec = _spec_for_saving(model, extra)
    tensors = _state_for_saving(model)
    reference = _reference_model(spec).state_dict()
    problems = _mismatch(reference, tensors)
    if problems:
        raise UserError(
            f"the model does not match architecture {spec['arch']!r} as recorded "
            f"({'; '.join(problems)}); save a model built by advml.models.build"
        )
    user_fields = to_json(
        {k: v for k, v in extra.items() if k not in SPEC_KEYS and k not in COMPUTED_KEYS},
        "a card field",
    )
    try:
        data = safetensors_save(tensors, metadata={"format": "pt", "advml": CARD_FORMAT})
    except Exception as error:  # unsupported dtype and the like
        raise UserError(f"cannot write the weights as safetensors: {error}") from None
    floating = sorted({_dtype_name(t.dtype) for t in tensors.values() if t.is_floating_point()})
    out = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        **spec,
        **user_fields,
        "weights": {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "dtype": floating[0] if len(floating) == 1 else floating,
            "tensors": len(tensors),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "advml_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    weights_path, card_path = _save_paths(path)
    text = format_json(out) + "\n"
    _write_atomic(weights_path, data)
    _write_atomic(card_path, text.encode("utf-8"))
    return weights_path


# --------------------------------------------------------------------------- read


def _read_bytes(path: Path, what: str, limit: int | None = None) -> bytes:
    try:
        if limit is not None and path.stat().st_size > limit:
            raise FormatError(path, f"{what} is larger than {limit >> 20} MiB; not a model card")
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise FormatError(path, f"{what} is a directory, expected a file") from None
    except OSError as error:
        raise FormatError(path, f"cannot read {what}: {error.strerror or error}") from None


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated card of the checkpoint ``path`` (same forms as :func:`load`).

    Only the card is read; the weights are neither read nor hashed.

    Raises:
        FormatError: the card is missing, not JSON, or not a valid advml model card.
    """
    weights_path, card_path = checkpoint_paths(path)
    return _read_card_file(weights_path, card_path)


def _read_card_file(weights_path: Path, card_path: Path) -> dict[str, Any]:
    if not card_path.exists():
        if not weights_path.exists():
            raise FormatError(
                weights_path, "no such checkpoint: neither this file nor its card exists"
            )
        raise FormatError(
            card_path,
            f"model card not found: every advml checkpoint keeps a JSON card with the same "
            f"stem next to its weights ({weights_path.name}); re-save with advml.models.save",
        )
    data = _read_bytes(card_path, "model card", limit=_MAX_CARD_BYTES)
    return validate_card(card_path, parse_json(card_path, data))


def _parse_weights(path: Path, data: bytes) -> dict[str, Tensor]:
    """Tensors of a safetensors file held in memory; FormatError naming ``path``."""
    if len(data) < 8:
        raise FormatError(path, f"not a safetensors file: {len(data)} bytes, too short")
    header = int.from_bytes(data[:8], "little")
    if header > len(data) - 8:
        raise FormatError(
            path,
            f"not a safetensors file (or truncated): header of {header} bytes announced, "
            f"{len(data) - 8} present",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # frombuffer on read-only bytes; we copy below
            tensors = safetensors_load(data)
        return {name: t.clone() for name, t in tensors.items()}
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as error:  # SafetensorError, or a Rust panic (BaseException)
        detail = " ".join(str(error).split()) or type(error).__name__
        raise FormatError(path, f"not a valid safetensors file: {detail}") from None


def _check_tensors(path: Path, expected: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> None:
    problems = _mismatch(expected, got)
    kinds = [
        f"{k} is {_dtype_name(got[k].dtype)}, expected "
        + ("a floating-point tensor" if t.is_floating_point() else _dtype_name(t.dtype))
        for k, t in expected.items()
        if k in got
        and (
            got[k].is_floating_point() != t.is_floating_point()
            or (not t.is_floating_point() and got[k].dtype != t.dtype)
        )
    ]
    if kinds:
        problems.append(f"wrong dtypes: {'; '.join(kinds)}")
    if problems:
        raise FormatError(
            path, f"weights do not fit the card's architecture: {'; '.join(problems)}"
        )


def _build_from_card(path: Path, card: Mapping[str, Any], device: str) -> nn.Module:
    if card["arch"] not in names():
        raise FormatError(
            path,
            f"unknown architecture {short(card['arch'])}; this advml knows {', '.join(names())} "
            "(if another advml module defines it, import that module first)",
        )
    try:
        return _reference_model(card, device)
    except UserError as error:
        raise FormatError(path, f"cannot build the card's architecture: {error}") from None


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a saved model from its card and fill it with its safetensors weights.

    Args:
        path: a ``.safetensors`` file, its ``.json`` card, a directory holding
            ``model.safetensors`` and ``model.json``, or ``zoo:NAME``.
        map_location: device for the model (``"cpu"``, ``"cuda:0"``, a ``torch.device``).

    Returns:
        The model, in eval mode, with the dtype(s) of the saved weights, the card as
        ``model.advml_card`` and the build spec as ``model.advml_spec``.

    Raises:
        FormatError: (naming the file) a missing file, invalid JSON, a wrong format name or
            version, missing keys, an unknown architecture, a weights hash mismatch, a
            truncated or garbage safetensors file, or missing, unexpected or mis-shaped
            tensors.

    Nothing is unpickled: the card is JSON and the weights are read with ``safetensors``.
    """
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"map_location: not a device: {map_location!r} ({error})") from None
    weights_path, card_path = checkpoint_paths(path)
    card = _read_card_file(weights_path, card_path)
    if not weights_path.exists():
        raise FormatError(weights_path, f"weights file not found (its card is {card_path})")
    data = _read_bytes(weights_path, "weights file")
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["weights"]["sha256"]:
        raise FormatError(
            weights_path,
            f"sha256 {digest} does not match {card['weights']['sha256']} recorded in "
            f"{card_path.name}: the weights were modified, truncated or belong to another card",
        )
    tensors = _parse_weights(weights_path, data)
    model = _build_from_card(card_path, card, "meta")
    _check_tensors(weights_path, model.state_dict(), tensors)
    model.load_state_dict(tensors, assign=True)
    if _has_meta_tensors(model):
        # state outside the state dict (non-persistent buffers) needs a real build
        model = _build_from_card(card_path, card, "cpu")
        model.load_state_dict(tensors, assign=True)
    model.to(device)
    model.eval()
    model.advml_card = card
    return model
