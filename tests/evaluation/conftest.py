"""Fixtures for the evaluation tests: a small digits model trained once per session (about a
second), its checkpoint for the CLI tests, and one torch thread per test."""

from __future__ import annotations

import pytest
import torch
from evaluation_threads import one_thread

from advml.data import load
from advml.models import build, save


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def digits():
    """``(x_test, y_test)`` of the digits dataset (360 images of 1x8x8)."""
    return load("digits", "test")


@pytest.fixture(scope="session")
def digits_model():
    """An MLP (64-128-10, advml's ``mlp``) trained full-batch on digits: about 97 % test
    accuracy, not robust (robust accuracy falls to ~0 by L∞ ε = 0.2)."""
    x, y = load("digits", "train")
    with one_thread(), torch.random.fork_rng():
        torch.manual_seed(0)
        model = build("mlp", (1, 8, 8), 10, hidden=(128,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory, digits_model):
    """``digits_model`` saved as a checkpoint folder (card names the digits dataset)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    save(digits_model, folder, {"dataset": "digits"})
    return folder
