"""Source/target pairs of digit domains for domain adaptation: MNIST, MNIST-M and USPS.

Every domain is returned at 28x28 (USPS 16x16 is resized with batched bilinear interpolation,
MNIST-M 32x32 is read at 28x28) and, when a pair mixes grey and colour domains, grey images are
repeated to three channels. Each domain has a *training* part (for a source: labeled training
data; for a target: the unlabeled adaptation data, whose labels only the oracle sees) and an
*evaluation* part:

=========  =======================  ==========================
domain     training part            evaluation part
=========  =======================  ==========================
mnist      train (60,000)           test (10,000)
usps       train (7,291)            test (2,007)
mnist-m    ``adapt`` half (4,501)   ``eval`` half (4,500)
=========  =======================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advml.data.imageops import repeat_channels, resize_images
from advml.data.paths import RootLike
from advml.errors import UserError

DOMAINS: tuple[str, ...] = ("mnist", "mnist-m", "usps")
SIZE = 28

Split = tuple[torch.Tensor, torch.Tensor]


def load_domain(name: str, root: RootLike = None, *, size: int = SIZE) -> tuple[Split, Split]:
    """``(training part, evaluation part)`` of domain ``name`` as ``size`` x ``size`` images."""
    if name == "mnist":
        from advml.data import load

        train, test = load("mnist", "train", root), load("mnist", "test", root)
    elif name == "usps":
        from advml.data import load

        train, test = load("usps", "train", root), load("usps", "test", root)
    elif name == "mnist-m":
        from advml.data.mnistm import load_mnistm, mnistm_split_indices

        x, y = load_mnistm("test", root, size=size)  # decode the archive once
        adapt, held = (mnistm_split_indices(len(y), s) for s in ("adapt", "eval"))
        train, test = (x[adapt], y[adapt]), (x[held], y[held])
    else:
        raise UserError(f"unknown domain {name!r}; choose one of {', '.join(DOMAINS)}")
    return (resize_images(train[0], size), train[1]), (resize_images(test[0], size), test[1])


@dataclass
class DomainPair:
    """A source and a target domain in one input format.

    ``source_train`` / ``source_test`` are labeled; ``target_train`` holds the adaptation
    images *with* their labels (the recipes see only ``target_train[0]``; the target oracle is
    trained on both) and ``target_test`` is where target accuracy is measured.
    """

    source: str
    target: str
    source_train: Split
    source_test: Split
    target_train: Split
    target_test: Split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.source_train[0].shape[1:])

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"

    def subset(
        self, n_source: int | None = None, n_target: int | None = None, n_eval: int | None = None
    ) -> DomainPair:
        """The first ``n_source`` source-training, ``n_target`` target-training and ``n_eval``
        evaluation samples of each domain (``None`` keeps all)."""

        def head(split: Split, n: int | None) -> Split:
            return split if n is None else (split[0][:n], split[1][:n])

        return DomainPair(
            self.source,
            self.target,
            head(self.source_train, n_source),
            head(self.source_test, n_eval),
            head(self.target_train, n_target),
            head(self.target_test, n_eval),
        )


def load_pair(source: str, target: str, root: RootLike = None) -> DomainPair:
    """Load ``source`` and ``target`` (names from :data:`DOMAINS`) in a shared format."""
    if source == target:
        raise UserError(f"source and target are both {source!r}; choose two different domains")
    s_train, s_test = load_domain(source, root)
    t_train, t_test = load_domain(target, root)
    channels = max(s_train[0].shape[1], t_train[0].shape[1])

    def fit(split: Split) -> Split:
        return repeat_channels(split[0], channels), split[1]

    return DomainPair(source, target, fit(s_train), fit(s_test), fit(t_train), fit(t_test))
