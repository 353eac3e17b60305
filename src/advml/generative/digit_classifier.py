"""A target-domain classifier for the translation and sim-to-real metrics.

The label-preservation rate of a translation model (the fraction of translated images that a
classifier trained on the *target* domain assigns their source label) and the sim-to-real
benchmark (MNIST accuracy of a classifier trained on synthetic or refined digits) both train
advml's ``cnn-small`` with the one trainer (standard recipe, Adam); this module is that step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = ["train_classifier"]


def train_classifier(
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int = 10,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    arch: str = "cnn-small",
    device: str = "cpu",
) -> nn.Module:
    """``arch`` trained on ``(x, y)`` with Adam; normalization (the training images' mean and
    std per channel) is its first layer. Returns the model in eval mode."""
    from advml.models import build
    from advml.training import TrainConfig, Trainer

    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"classifier training data: {len(x)} images but {len(y)} labels")
    dims = [0, 2, 3] if x.dim() == 4 else [0]
    mean = x.mean(dims).tolist()
    std = x.std(dims).clamp_min(1e-3).tolist()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch, tuple(x.shape[1:]), num_classes, mean=mean, std=std)
    config = TrainConfig(
        epochs=epochs,
        batch_size=min(batch_size, len(x)),
        lr=lr,
        seed=seed,
        device=device,
        progress=False,
    )
    Trainer(model, config=config).fit((x, y))
    return model.eval()
