"""A fresh adversary trained after the fact on a frozen representation.

How much a representation still reveals about an attribute (the domain for DANN; the sensitive
attribute for fair representations) is measured, as in Edwards & Storkey (2015, §4) and
Madras et al. (2018, §6), by training a *new* classifier on the frozen codes of a training split
and testing it on a held-out split: an adversary that co-trained with the encoder may simply have
lost the game, while a fresh one shows what is still recoverable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.runtime import generator


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy of the probe, its accuracy averaged over the classes (balanced), and the
    accuracy of always predicting the majority class of the test split (chance level)."""

    accuracy: float
    balanced_accuracy: float
    majority: float


def balanced_accuracy(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over classes present in ``target`` of the per-class recall."""
    classes = target.unique()
    recalls = [(prediction[target == c] == c).float().mean() for c in classes]
    return float(torch.stack(recalls).mean())


def probe_accuracy(
    z_train: torch.Tensor,
    t_train: torch.Tensor,
    z_test: torch.Tensor,
    t_test: torch.Tensor,
    *,
    hidden: int = 64,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> ProbeResult:
    """Train an MLP (``hidden`` units; a linear probe when ``hidden == 0``) to predict the
    integer attribute ``t`` from frozen codes ``z``; return its accuracy on the test codes.

    Class-weighted cross-entropy (each class weighs as much as the others), Adam, ``epochs``
    passes over the training codes in seeded random order.
    """
    if z_train.ndim != 2 or z_test.ndim != 2 or z_train.shape[1] != z_test.shape[1]:
        raise UserError(
            f"probe needs 2-D codes of one width, got {tuple(z_train.shape)} and "
            f"{tuple(z_test.shape)}"
        )
    if len(z_train) != len(t_train) or len(z_test) != len(t_test) or len(z_train) == 0:
        raise UserError("probe: codes and attributes must be non-empty and of equal length")
    z_train, z_test = z_train.detach().float(), z_test.detach().float()
    t_train, t_test = t_train.long(), t_test.long()
    classes = int(max(t_train.max(), t_test.max())) + 1
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    g = generator(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        width = z_train.shape[1]
        layers: list[nn.Module] = (
            [nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes)]
            if hidden
            else [nn.Linear(width, classes)]
        )
        net = nn.Sequential(*layers)
    counts = torch.bincount(t_train, minlength=classes).float()
    weight = torch.where(counts > 0, counts.sum() / (classes * counts.clamp_min(1)), 0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    x = (z_train - mean) / std
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(net(x[index]), t_train[index], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        prediction = net((z_test - mean) / std).argmax(1)
    majority = float(torch.bincount(t_test, minlength=classes).max()) / len(t_test)
    return ProbeResult(
        accuracy=float((prediction == t_test).float().mean()),
        balanced_accuracy=balanced_accuracy(prediction, t_test),
        majority=majority,
    )
