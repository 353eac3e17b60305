"""Attacks by name, with the metadata a CLI or an evaluation needs to pick them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Literal, TypeVar

from advml.errors import UserError

__all__ = ["AttackInfo", "get", "info", "names", "register"]

Kind = Literal["gradient", "score", "decision"]
F = TypeVar("F", bound=Callable)


@dataclasses.dataclass(frozen=True)
class AttackInfo:
    """What an attack is: its function and its abilities."""

    name: str
    fn: Callable
    #: Threat-model names it accepts (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"``).
    norms: frozenset[str]
    #: Whether ``targeted=True`` is supported.
    targeted: bool
    #: ``"gradient"`` (white box), ``"score"`` (logits only) or ``"decision"`` (labels only).
    kind: Kind
    #: Minimum-norm attack (looks for the smallest perturbation) vs fixed budget.
    minimum_norm: bool
    #: The paper, as "Authors Year, Title".
    paper: str = ""
    #: The defaults worth showing in a table.
    defaults: str = ""


_REGISTRY: dict[str, AttackInfo] = {}


def register(
    name: str,
    *,
    norms: tuple[str, ...],
    targeted: bool,
    kind: Kind = "gradient",
    minimum_norm: bool = False,
    paper: str = "",
    defaults: str = "",
    fn: Callable | None = None,
) -> Callable[[F], F]:
    """Decorator: record ``fn`` under ``name`` (lower case, ``-`` separated) with its metadata.

    The function is returned unchanged, with its :class:`AttackInfo` as ``fn.info`` (when
    registered under several names, the first). Names must be unique.
    """
    if kind not in ("gradient", "score", "decision"):
        raise ValueError(f"kind must be gradient, score or decision; got {kind!r}")

    def decorate(func: F) -> F:
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(f"attack {key!r} is already registered")
        record = AttackInfo(
            key, func, frozenset(norms), targeted, kind, minimum_norm, paper, defaults
        )
        _REGISTRY[key] = record
        if not hasattr(func, "info"):
            with contextlib.suppress(AttributeError):  # builtins refuse attributes
                func.info = record  # type: ignore[attr-defined]
        return func

    if fn is not None:
        decorate(fn)
    return decorate


def _lookup(name: str) -> AttackInfo:
    key = str(name).lower().replace("_", "-")
    if key not in _REGISTRY:
        raise UserError(f"unknown attack {name!r}; choose one of {', '.join(names())}")
    return _REGISTRY[key]


def get(name: str) -> Callable:
    """The attack function registered under ``name`` (``_`` and ``-`` are interchangeable)."""
    return _lookup(name).fn


def info(name: str) -> AttackInfo:
    """The metadata of the attack registered under ``name``."""
    return _lookup(name)


def names() -> list[str]:
    """Every registered attack name, sorted."""
    return sorted(_REGISTRY)
