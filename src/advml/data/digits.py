"""scikit-learn's bundled 8x8 digits: advml's embedded default dataset (no download).

1,797 images of 8x8 pixels with 17 grey levels (0..16), 10 classes (Alpaydin & Kaynak,
"Optical Recognition of Handwritten Digits", UCI ML Repository, 1998; shipped as
``sklearn.datasets.load_digits``). advml rescales them to [0, 1] and fixes a stratified split:
360 test images chosen with seed 0, the other 1,437 for training.
"""

from __future__ import annotations

import numpy as np
import torch

TEST_SIZE = 360
SPLIT_SEED = 0


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)``: float32 ``(N, 1, 8, 8)`` in [0, 1] and int64 labels.

    ``split="train"`` gives 1,437 images, ``"test"`` 360 (stratified, ``random_state=0``).
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        from advml.errors import UserError

        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
