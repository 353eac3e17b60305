"""Generator/discriminator pairs by name (see :mod:`advml.generative.nets.registry`).

2-D architectures: ``toy-mlp``, ``pacgan-mlp`` (:mod:`.toy`). Image architectures (registered
on import): ``dcgan``, ``acgan`` (:mod:`.dcgan`), ``resnet``,
``biggan`` (:mod:`.resnet`), ``stylegan`` (:mod:`.stylegan`), ``progressive``
(:mod:`.progressive`), ``ssgan-mlp`` (:mod:`.ssgan`, semi-supervised); conditioning layers
and the truncation trick in :mod:`.conditional`, SAGAN self-attention in :mod:`.attention`.
See ``docs/gan-architectures.md``.
"""

from advml.generative.nets import dcgan as _dcgan  # noqa: F401  (registers dcgan, acgan)
from advml.generative.nets import progressive as _progressive  # noqa: F401  (progressive)
from advml.generative.nets import resnet as _resnet  # noqa: F401  (registers resnet, biggan)
from advml.generative.nets import ssgan as _ssgan  # noqa: F401  (registers ssgan-mlp)
from advml.generative.nets import stylegan as _stylegan  # noqa: F401  (registers stylegan)
from advml.generative.nets import toy as _toy  # noqa: F401  (registers toy-mlp, pacgan-mlp)
from advml.generative.nets.conditional import truncated_normal
from advml.generative.nets.registry import (
    GanArchitecture,
    GanPair,
    build_gan,
    gan_architecture,
    gan_names,
    register_gan,
)

__all__ = [
    "GanArchitecture",
    "GanPair",
    "build_gan",
    "gan_architecture",
    "gan_names",
    "register_gan",
    "truncated_normal",
]
