"""Generator/discriminator pairs by name: :func:`register_gan` adds one, :func:`build_gan`
builds one.

The contract every pair keeps (the losses, the trainer and the metrics rely on nothing else):

* ``generator(z, y=None) -> x``: ``z`` of shape ``(N, latent_dim)`` (standard normal), ``y``
  class labels ``(N,)`` for class-conditional pairs (``None`` otherwise); ``x`` in the data's
  domain and shape ``(N, *data_shape)``: images in ``[0, 1]`` (NCHW), 2-D points in ``R^2``.
* ``discriminator(x, y=None) -> (score, class_logits)``: ``score`` of shape ``(N,)`` is the raw
  real-vs-fake logit (or critic value; the loss decides what it means); ``class_logits`` of
  shape ``(N, num_classes)`` for discriminators with an auxiliary classifier (AC-GAN,
  semi-supervised GANs), else ``None``. A projection discriminator uses ``y`` inside ``score``.
* Both are plain ``nn.Module``s; :func:`build_gan` records what they were built from on the
  pair (``GanPair.spec``), so that a checkpoint card can rebuild them.

A builder is ``builder(data_shape, latent_dim, num_classes, *, option=default, ...) ->
GanPair``: three positional arguments (``num_classes`` is ``0`` for unconditional data), then
keyword-only options that all have defaults.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from advml.errors import UserError

__all__ = [
    "GanArchitecture",
    "GanPair",
    "build_gan",
    "gan_architecture",
    "gan_names",
    "register_gan",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class GanPair:
    """A generator and its discriminator, plus what they were built from."""

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    num_classes: int = 0
    spec: dict[str, Any] = field(default_factory=dict)


GanBuilder = Callable[..., GanPair]


@dataclass(frozen=True)
class GanArchitecture:
    """One registered pair: name, builder, summary, paper and keyword options."""

    name: str
    builder: GanBuilder
    summary: str
    paper: str
    options: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, GanArchitecture] = {}


def register_gan(
    name: str, *, paper: str = "", summary: str | None = None
) -> Callable[[GanBuilder], GanBuilder]:
    """Decorator registering ``builder(data_shape, latent_dim, num_classes, *, ...)``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"GAN architecture name {name!r} must match {_NAME.pattern}")

    def decorator(builder: GanBuilder) -> GanBuilder:
        if name in _REGISTRY:
            raise ValueError(f"GAN architecture {name!r} is already registered")
        params = list(inspect.signature(builder).parameters.values())
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword = [p for p in params if p.kind is p.KEYWORD_ONLY]
        if len(positional) != 3 or any(p.default is p.empty for p in keyword):
            raise ValueError(
                f"GAN builder {name!r} must be (data_shape, latent_dim, num_classes, *, "
                "option=default, ...)"
            )
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = GanArchitecture(
            name=name,
            builder=builder,
            summary=summary if summary is not None else (doc[0] if doc else ""),
            paper=paper,
            options={p.name: p.default for p in keyword},
        )
        return builder

    return decorator


def gan_names() -> list[str]:
    """Registered GAN architecture names, sorted."""
    return sorted(_REGISTRY)


def gan_architecture(name: str) -> GanArchitecture:
    """The registered architecture ``name``; a :class:`UserError` lists the names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown GAN architecture {name!r}; choose one of {', '.join(gan_names())}"
        ) from None


def build_gan(
    name: str,
    data_shape: tuple[int, ...],
    latent_dim: int = 64,
    num_classes: int = 0,
    **options: Any,
) -> GanPair:
    """Build the pair ``name`` for data of ``data_shape``; unknown options raise UserError."""
    arch = gan_architecture(name)
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        raise UserError(
            f"GAN architecture {name!r} has no option(s) {', '.join(unknown)}; it takes "
            f"{', '.join(arch.options) or 'no options'}"
        )
    if latent_dim < 1:
        raise UserError(f"latent_dim must be >= 1, got {latent_dim}")
    if num_classes < 0:
        raise UserError(f"num_classes must be >= 0, got {num_classes}")
    pair = arch.builder(tuple(data_shape), int(latent_dim), int(num_classes), **options)
    pair.spec = {
        "arch": name,
        "data_shape": list(data_shape),
        "latent_dim": int(latent_dim),
        "num_classes": int(num_classes),
        "options": {**arch.options, **options},
    }
    return pair
