"""Fixtures for the attack tests: a digits MLP trained once per session, toy models, and the
fast hyperparameters every registered attack is exercised with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advml.data import load


@pytest.fixture(scope="session")
def digits():
    """``(x_test, y_test)`` of the digits dataset (360 images of 1x8x8)."""
    return load("digits", "test")


@pytest.fixture(scope="session")
def digits_model() -> nn.Module:
    """An MLP trained for well under a second on digits (about 97 % test accuracy)."""
    x, y = load("digits", "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
