"""Feature networks for the image metrics: a small advml classifier trained on the dataset
itself, whose penultimate activations play the role Inception-v3's pool features play in
FID (Heusel et al., NeurIPS 2017, §4) — so scores are "MNIST-FID", "MNIST-KID", ..., never
"Inception FID", and are comparable only with scores from the same feature network (same
dataset, architecture, epochs, subset and seed; all recorded in its card).

:func:`feature_network` trains the classifier once with :class:`advml.training.Trainer`
(standard ERM), caches it as safetensors + JSON card (:func:`advml.models.save`) under
``cache_dir`` and afterwards only loads it. Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "DEFAULT_CACHE",
    "FeatureNetwork",
    "dataset_label",
    "feature_network",
    "penultimate",
    "trained_classifier",
]

#: Where trained feature networks are kept unless ``cache_dir`` is given.
DEFAULT_CACHE = Path("~/.cache/advml/feature-nets")

_LABELS = {
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "usps": "USPS",
    "digits": "digits",
}


def dataset_label(dataset: str) -> str:
    """The prefix metric names use for ``dataset``: ``"mnist"`` -> ``"MNIST"``."""
    key = str(dataset).strip().lower()
    return _LABELS.get(key, Path(str(dataset)).stem or str(dataset))


class FeatureNetwork(nn.Module):
    """``images (N, C, H, W) in [0, 1] -> features (N, dim)``: a classifier minus its last
    linear layer, frozen and in eval mode. ``label`` prefixes metric names (``"MNIST"``)."""

    def __init__(self, body: nn.Module, dim: int, label: str, input_shape: tuple[int, ...]):
        super().__init__()
        self.body = body
        self.dim = dim
        self.label = label
        self.input_shape = tuple(input_shape)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureNetwork:
        """Always stays in eval mode (BN statistics and dropout are part of the metric)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise UserError(
                f"{self.label} feature network expects images (N, {self.input_shape}), got "
                f"{tuple(x.shape)}"
            )
        return self.body(x).flatten(1)


def penultimate(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` (an ``nn.Sequential`` ending in ``nn.Linear``) without its last layer, and the
    width of what is left's output."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise UserError(
            "a feature network is a classifier built by advml.models.build whose last layer is "
            f"nn.Linear; got {type(model).__name__}"
        )
    children = list(model.named_children())
    return nn.Sequential(OrderedDict(children[:-1])), model[-1].in_features


def _cache_path(
    cache_dir: str | os.PathLike[str] | None,
    dataset: str,
    arch: str,
    epochs: int,
    train_size: int | None,
    seed: int,
) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE.expanduser()
    name = str(dataset).strip().lower().replace(os.sep, "_")
    size = "all" if train_size is None else str(train_size)
    return root / f"{name}-{arch}-e{epochs}-n{size}-seed{seed}.safetensors"


def trained_classifier(
    dataset: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    arch: str = "cnn-small",
    epochs: int = 1,
    train_size: int | None = None,
) -> nn.Module:
    """The classifier behind :func:`feature_network`: loaded from the cache, or trained once
    (Adam, lr 1e-3, batch 128, ``epochs`` epochs of standard training on the ``train``
    split, or on a seeded random subset of ``train_size`` samples), evaluated on the
    ``test`` split and saved with a card recording the dataset, settings and test accuracy.
    """
    from advml import data, models
    from advml.runtime import derive_seed
    from advml.training import TrainConfig, Trainer

    if epochs < 1:
        raise UserError(f"feature network: epochs must be >= 1, got {epochs}")
    if train_size is not None and train_size < 2:
        raise UserError(f"feature network: train_size must be >= 2 or None, got {train_size}")
    path = _cache_path(cache_dir, dataset, arch, epochs, train_size, seed)
    if path.exists():
        return models.load(path)
    meta = data.info(dataset)
    x, y = data.load(dataset, "train", root=data_dir)
    if train_size is not None and train_size < x.shape[0]:
        gen = torch.Generator().manual_seed(derive_seed(seed, "feature-net-subset"))
        keep = torch.randperm(x.shape[0], generator=gen)[:train_size]
        x, y = x[keep], y[keep]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "feature-net-init"))
        model = models.build(arch, meta.input_shape, meta.num_classes, mean=meta.mean, std=meta.std)
        config = TrainConfig(epochs=epochs, batch_size=128, seed=seed, progress=False)
        Trainer(model, config=config).fit((x, y))
    from advml.evaluation.clean import accuracy

    x_test, y_test = data.load(dataset, "test", root=data_dir)
    test_acc = accuracy(model, x_test, y_test)
    card = {
        "dataset": meta.name,
        "purpose": "feature network for GAN image metrics (advml.generative.metrics)",
        "recipe": "standard",
        "seed": seed,
        "epochs": epochs,
        "train_size": int(x.shape[0]),
        "metrics": {"test_acc": test_acc},
    }
    models.save(model.cpu(), path, card)
    return models.load(path)


def feature_network(
    dataset: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    arch: str = "cnn-small",
    epochs: int = 1,
    train_size: int | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
) -> FeatureNetwork:
    """The feature network of ``dataset``: its trained classifier's penultimate activations.

    Args:
        dataset: an :mod:`advml.data` name (``"mnist"``, ``"digits"``, ...) or user-data path.
        data_dir: data root (default ``$ADVML_DATA``, then ``~/.cache/advml``).
        cache_dir: where the trained classifier is kept (default
            ``~/.cache/advml/feature-nets``); one file per (dataset, arch, epochs,
            train_size, seed).
        seed: seeds initialisation, shuffling and the subset.
        arch: a registered classifier whose last layer is linear (default ``cnn-small``:
            128 features).
        epochs, train_size: training length and an optional random subset size.
        inception_weights: path of a user-supplied safetensors file with the weights of the
            FID Inception-v3 network; see :func:`~advml.generative.metrics.inception.
            inception_network`. When given, the dataset classifier is not used and the
            metric names carry the prefix ``"Inception"``.

    Returns:
        A frozen :class:`FeatureNetwork` in eval mode; ``label`` is the metric prefix
        (``"MNIST"``).
    """
    if inception_weights is not None:
        from advml.data import info
        from advml.generative.metrics.inception import inception_network

        return inception_network(inception_weights, tuple(info(dataset).input_shape))
    classifier = trained_classifier(
        dataset,
        data_dir=data_dir,
        cache_dir=cache_dir,
        seed=seed,
        arch=arch,
        epochs=epochs,
        train_size=train_size,
    )
    body, dim = penultimate(classifier)
    shape = tuple(classifier.advml_spec["input_shape"])
    return FeatureNetwork(body, dim, dataset_label(dataset), shape)
