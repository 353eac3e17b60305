"""Models: a small zoo of architectures by name, the ``Normalize`` layer, and checkpoints.

A model is any ``torch.nn.Module`` mapping inputs in their natural domain (pixels in
``[0, 1]``, NCHW) to logits; input standardization is the model's first layer
(:class:`Normalize`), so attacks and verifiers never need mean/std.

>>> from advml.models import build, save, load
>>> model = build("cnn-small", (1, 28, 28), 10, mean=0.1307, std=0.3081)
>>> save(model, "runs/cnn.safetensors", {"dataset": "mnist"})   # doctest: +SKIP
>>> model = load("runs/cnn.safetensors")                        # doctest: +SKIP

Architectures: :func:`names`, :func:`architecture`, :func:`build`, and :func:`register` for
other modules to add theirs. Checkpoints (safetensors + JSON card, never pickle): :func:`save`,
:func:`load`, :func:`read_card`. See ``docs/models.md``.
"""

from __future__ import annotations

from advml.models import architectures as _architectures  # registers the built-ins
from advml.models.architectures import PreActBlock
from advml.models.checkpoint import CARD_FORMAT, CARD_VERSION, load, read_card, save
from advml.models.normalize import Normalize
from advml.models.registry import Architecture, architecture, build, names, register
from advml.models.utils import count_parameters

del _architectures

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "Architecture",
    "Normalize",
    "PreActBlock",
    "architecture",
    "build",
    "count_parameters",
    "load",
    "names",
    "read_card",
    "register",
    "save",
]
