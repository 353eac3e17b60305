"""Datasets by name -> tensors (PROVISIONAL: only ``digits`` until the data module lands)."""

from __future__ import annotations

import torch

from advml.data.digits import load_digits


def load(name: str, split: str = "train", root=None) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "digits":
        return load_digits(split)
    raise NotImplementedError(name)
