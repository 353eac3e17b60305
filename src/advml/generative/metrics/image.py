"""Score generated images against real ones in a feature network's space: FID (Heusel et al.
2017, Eq. 6), KID (Bińkowski et al. 2018) and improved precision/recall (Kynkäänniemi et al.
2019), each named after the feature network's dataset (``"MNIST-FID"``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.metrics.features import dataset_label
from advml.generative.metrics.fid import fid, kernel_distance, precision_recall

__all__ = ["embed", "score_features", "score_images"]


def embed(images: Tensor, features: nn.Module, *, batch_size: int = 500) -> Tensor:
    """``features(images)`` in batches, without gradients, on the network's device."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    device = next(iter(features.parameters()), torch.empty(0)).device
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = [
                features(images[s : s + batch_size].to(device)).flatten(1).cpu()
                for s in range(0, images.shape[0], batch_size)
            ]
    finally:
        features.train(was_training)
    return torch.cat(out)


def score_features(
    real: Tensor,
    fake: Tensor,
    *,
    prefix: str,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    k: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """FID, KID mean/std, precision and recall of two feature sets, named ``{prefix}-...``."""
    kid = kernel_distance(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    pr = precision_recall(real, fake, k=k)
    return {
        f"{prefix}-FID": fid(real, fake),
        f"{prefix}-KID": kid.mean,
        f"{prefix}-KID-std": kid.std,
        f"{prefix}-precision": pr.precision,
        f"{prefix}-recall": pr.recall,
    }


def _check_images(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"{name} must be images of shape (N, C, H, W), got {got}")
    if x.shape[0] < 4:
        raise UserError(f"{name}: need at least 4 images, got {x.shape[0]}")
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise UserError(f"{name}: pixel values must be finite and in [0, 1]")


def score_images(
    real: Tensor,
    fake: Tensor,
    *,
    features: nn.Module,
    dataset_name: str = "",
    batch_size: int = 500,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    k: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """FID, KID (mean, std), precision and recall of ``fake`` against ``real`` images.

    Args:
        real, fake: images ``(N, C, H, W)`` in ``[0, 1]`` of the same shape.
        features: the feature network (e.g. :func:`~advml.generative.metrics.features.
            feature_network`), mapping images to ``(N, d)``.
        dataset_name: prefix of the metric names, spelled as in :func:`~advml.generative.
            metrics.features.dataset_label` (``"mnist"`` -> ``"MNIST"``); default: the
            network's ``label``, else ``"features"``.
        batch_size: images per forward pass of ``features``.
        kid_subsets, kid_subset_size, seed: KID subsets (Bińkowski et al. 2018 use 100 of
            1000); ``seed`` draws them.
        k: neighbourhood size of precision/recall (Kynkäänniemi et al. 2019 use 3).

    Returns:
        ``{"MNIST-FID", "MNIST-KID", "MNIST-KID-std", "MNIST-precision", "MNIST-recall"}``
        (with the chosen prefix), plain floats.
    """
    _check_images("real", real)
    _check_images("fake", fake)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(
            f"real and fake images differ in shape: {tuple(real.shape[1:])} vs "
            f"{tuple(fake.shape[1:])}"
        )
    if dataset_name:
        prefix = dataset_label(dataset_name)
    else:
        prefix = getattr(features, "label", "") or "features"
    return score_features(
        embed(real, features, batch_size=batch_size),
        embed(fake, features, batch_size=batch_size),
        prefix=prefix,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        k=k,
        seed=seed,
    )
