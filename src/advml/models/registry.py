"""Architectures by name: :func:`register` adds one, :func:`build` makes a model from a name.

A builder is a function ``builder(input_shape, num_classes, *, option=default, ...) ->
nn.Module``: two positional arguments, then keyword-only options that all have defaults (they
become the architecture's documented arguments and are recorded in the model card). Other
advml modules (GANs, domain adaptation, ...) add their networks with the same decorator::

    @register("my-net", paper="Doe et al. 2024, ...")
    def my_net(input_shape, num_classes, *, width: int = 64) -> nn.Module: ...

:func:`build` validates the shape and options, prepends a :class:`Normalize` layer when
``mean``/``std`` are given, and records what the model was built from on the module as
``model.advml_spec`` so that :func:`advml.models.save` can write the card and
:func:`advml.models.load` can rebuild it.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import Tensor, nn

from advml.errors import UserError
from advml.models.normalize import Normalize, as_stat_list

__all__ = ["Architecture", "architecture", "build", "names", "register", "validate_shape"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

#: Attribute set on every model :func:`build` returns.
SPEC_ATTRIBUTE = "advml_spec"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REGISTRY: dict[str, Architecture] = {}


@dataclass(frozen=True)
class Architecture:
    """One registered architecture: its name, builder, a one-line summary and its paper."""

    name: str
    builder: Builder
    summary: str
    paper: str
    #: keyword-only options and their defaults, in signature order
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe_options(self) -> str:
        """``"hidden=(256, 256)"``-style list of the options, or ``"no options"``."""
        if not self.options:
            return "no options"
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


def register(name: str, *, paper: str = "", summary: str | None = None) -> Callable[[B], B]:
    """Decorator that registers a builder function under ``name``.

    Args:
        name: lower-case name (letters, digits, ``.``, ``_``, ``-``), unique.
        paper: the reference the architecture follows, for docs and ``advml`` listings.
        summary: one line; defaults to the first line of the builder's docstring.

    Raises:
        ValueError: ``name`` is malformed or taken, or the builder's signature is not
            ``(input_shape, num_classes, *, option=default, ...)`` (a programming error).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"architecture name {name!r} must match {_NAME.pattern}")

    def decorator(builder: B) -> B:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        options = _options_of(name, builder)
        doc = inspect.getdoc(builder) or ""
        line = summary if summary is not None else (doc.splitlines()[0] if doc else name)
        _REGISTRY[name] = Architecture(name, builder, line, paper, options)
        return builder

    return decorator


def _options_of(name: str, builder: Builder) -> dict[str, Any]:
    params = list(inspect.signature(builder).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    options = [p for p in params if p.kind is p.KEYWORD_ONLY]
    if len(positional) != 2 or len(positional) + len(options) != len(params):
        raise ValueError(
            f"builder of {name!r} must take (input_shape, num_classes, *, option=default, ...)"
        )
    missing = [p.name for p in options if p.default is p.empty]
    if missing:
        raise ValueError(f"builder of {name!r}: options {missing} need default values")
    return {p.name: p.default for p in options}


def names() -> list[str]:
    """Registered architecture names, in registration order (built-ins first)."""
    return list(_REGISTRY)


def architecture(name: str) -> Architecture:
    """The :class:`Architecture` registered as ``name``; :class:`UserError` if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown architecture {name!r}; choose one of {', '.join(names())}"
        ) from None


def validate_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or :class:`UserError`."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise UserError(
            f"input_shape must be a sequence such as (1, 28, 28) or (2,), got {input_shape!r}"
        )
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise UserError(
            f"input_shape must be a non-empty sequence of positive ints such as (1, 28, 28) "
            f"(channels, height, width) or (2,) (features), got {input_shape!r}"
        )
    return shape


def _jsonable(value: Any) -> Any:
    """Tuples to lists, recursively, so a spec compares equal to its JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _normalization(
    mean: float | Sequence[float] | Tensor | None,
    std: float | Sequence[float] | Tensor | None,
    shape: tuple[int, ...],
) -> dict[str, list[float]] | None:
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise UserError("give both mean and std for the Normalize layer (or neither)")
    means, stds = as_stat_list(mean, "mean"), as_stat_list(std, "std")
    channels = shape[0]
    for label, values in (("mean", means), ("std", stds)):
        if len(values) not in (1, channels):
            what = "channels" if len(shape) > 1 else "features"
            raise UserError(
                f"{label} has {len(values)} values but the input {shape} has {channels} "
                f"{what}; give 1 or {channels} values"
            )
    if any(s <= 0 for s in stds):
        raise UserError(f"std must be > 0 for every channel, got {stds}")
    return {"mean": means, "std": stds}


def build(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    mean: float | Sequence[float] | Tensor | None = None,
    std: float | Sequence[float] | Tensor | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build architecture ``arch`` for inputs of shape ``input_shape`` and ``num_classes`` logits.

    Args:
        arch: a name from :func:`names`.
        input_shape: one sample's shape without the batch dimension: ``(C, H, W)`` for
            images, ``(D,)`` for flat vectors.
        num_classes: number of output logits (``>= 1``).
        mean, std: per-channel statistics (a number or one value per channel/feature); when
            given, the model starts with ``Normalize(mean, std)`` and takes raw inputs.
        **kwargs: the architecture's options (see ``architecture(arch).options``).

    Returns:
        An ``nn.Module`` (an ``nn.Sequential`` for the built-ins) in training mode with the
        attribute ``advml_spec``: ``{"arch", "arch_kwargs", "input_shape", "num_classes",
        "normalization"}`` (JSON-ready; every option is recorded, defaults included).

    Raises:
        UserError: unknown ``arch`` or option, a bad value, or an input shape the
            architecture cannot take (each message names the valid choices).
    """
    entry = architecture(arch)
    shape = validate_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive int, got {num_classes!r}")
    unknown = sorted(set(kwargs) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) if entry.options else "none"
        raise UserError(
            f"architecture {arch!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {valid}"
        )
    options = {**copy.deepcopy(dict(entry.options)), **kwargs}
    normalization = _normalization(mean, std, shape)
    body = entry.builder(shape, num_classes, **options)
    if normalization is None:
        model = body
    else:
        norm = Normalize(normalization["mean"], normalization["std"])
        if isinstance(body, nn.Sequential) and "normalize" not in body._modules:
            model = nn.Sequential(OrderedDict([("normalize", norm), *body.named_children()]))
        else:
            model = nn.Sequential(OrderedDict([("normalize", norm), ("net", body)]))
    model.advml_spec = {
        "arch": entry.name,
        "arch_kwargs": _jsonable(options),
        "input_shape": list(shape),
        "num_classes": num_classes,
        "normalization": normalization,
    }
    return model
