"""The model card: the JSON half of a checkpoint, its schema, writing and strict parsing.

The card says what to build (``arch``, ``arch_kwargs``, ``input_shape``, ``num_classes``,
``normalization``), fingerprints the weights (``weights.sha256``), and carries the user's
fields (dataset, recipe, metrics, seed, command, ...). See ``docs/models.md`` for the schema.
Parsing is strict: UTF-8, no duplicate keys, no NaN/Infinity; every problem is a
:class:`~advml.errors.FormatError` naming the file (and the line for JSON syntax errors).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from torch import Tensor

from advml.errors import FormatError, UserError

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "COMPUTED_KEYS",
    "REQUIRED_KEYS",
    "SPEC_KEYS",
    "format_json",
    "parse_json",
    "short",
    "to_json",
    "validate_card",
]

#: Value of the card's ``format`` key.
CARD_FORMAT = "advml.model"
#: Version of the card layout this advml writes and reads.
CARD_VERSION = 1
#: Card keys that describe what to build; they must agree with the model's ``advml_spec``.
SPEC_KEYS = ("arch", "arch_kwargs", "input_shape", "num_classes", "normalization")
#: Card keys that :func:`save` computes; values passed in ``card`` are replaced.
COMPUTED_KEYS = ("format", "format_version", "weights", "advml_version", "torch_version", "created")
REQUIRED_KEYS = ("format", "format_version", *SPEC_KEYS, "weights")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _json_default(value: Any) -> Any:
    """JSON for common non-JSON values in user card fields (numbers from torch/numpy, paths)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def to_json(value: Any, what: str) -> Any:
    """``value`` after a strict JSON round trip (no NaN/Infinity), or UserError."""
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UserError(
            f"{what} cannot be stored in the JSON card: {error}; use numbers, strings, lists, "
            "dicts or null (NaN and Infinity are not JSON)"
        ) from None
    return json.loads(text)


def format_json(value: Any, indent: str = "") -> str:
    """Indented JSON that keeps lists of numbers and strings on one line (``[1, 28, 28]``)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {format_json(v, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{format_json(v, inner)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {short(key)}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(path: Path, data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FormatError(path, "invalid JSON: not UTF-8 text", line=line) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise FormatError(
            path, f"invalid JSON: {error.msg} (column {error.colno})", line=error.lineno
        ) from None
    except ValueError as error:  # duplicate keys, NaN/Infinity
        raise FormatError(path, f"invalid JSON: {error}") from None
    except RecursionError:
        raise FormatError(path, "invalid JSON: nested too deeply") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about file contents."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_card(path: Path, card: Any) -> dict[str, Any]:
    """Check the card's schema (not the architecture registry); FormatError naming ``path``."""
    if not isinstance(card, dict):
        raise FormatError(
            path, f"not a model card: expected a JSON object, got {type(card).__name__}"
        )
    if card.get("format") != CARD_FORMAT:
        found = short(card["format"]) if "format" in card else "missing"
        raise FormatError(
            path, f"not an advml model card: format is {found}, expected {CARD_FORMAT!r}"
        )
    version = card.get("format_version")
    if not _is_int(version):
        raise FormatError(path, f"format_version must be an integer, got {short(version)}")
    if version != CARD_VERSION:
        hint = "upgrade advml" if version > CARD_VERSION else "re-save it with advml.models.save"
        raise FormatError(
            path,
            f"unsupported format version {version}: this advml reads version "
            f"{CARD_VERSION}; {hint}",
        )
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        raise FormatError(path, f"missing keys: {', '.join(missing)}")
    problems = []
    if not isinstance(card["arch"], str) or not card["arch"]:
        problems.append(f"arch must be a non-empty string, got {short(card['arch'])}")
    if not isinstance(card["arch_kwargs"], dict):
        problems.append(f"arch_kwargs must be an object, got {short(card['arch_kwargs'])}")
    shape = card["input_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and d > 0 for d in shape):
        problems.append(f"input_shape must be a list of positive integers, got {short(shape)}")
    if not (_is_int(card["num_classes"]) and card["num_classes"] > 0):
        problems.append(f"num_classes must be a positive integer, got {short(card['num_classes'])}")
    norm = card["normalization"]
    if norm is not None and not (
        isinstance(norm, dict)
        and set(norm) == {"mean", "std"}
        and all(isinstance(v, list) and v and all(_is_number(x) for x in v) for v in norm.values())
    ):
        problems.append(
            f"normalization must be null or {{'mean': [...], 'std': [...]}}, got {short(norm)}"
        )
    weights = card["weights"]
    if not isinstance(weights, dict) or not isinstance(weights.get("sha256"), str):
        problems.append("weights must be an object with a sha256 string")
    elif not _SHA256.match(weights["sha256"]):
        problems.append(
            f"weights.sha256 must be 64 lower-case hex digits, got {short(weights['sha256'])}"
        )
    if problems:
        raise FormatError(path, "; ".join(problems))
    return card
