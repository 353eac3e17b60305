"""Shared fixtures. Real datasets are reached through ``ADVML_DATA`` (CI sets it to
``../shared/data``); tests that need a real file skip only when that folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """One torch thread per test process: the suite runs as ``pytest -n 2`` on CI's 2 cores,
    and small tensor ops on an oversubscribed machine run far slower with 2 threads each.
    ``ADVML_TEST_THREADS`` overrides it."""
    torch.set_num_threads(int(os.environ.get("ADVML_TEST_THREADS", "1")))


def shared_data_root() -> Path | None:
    env = os.environ.get("ADVML_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("real datasets not found: set ADVML_DATA to the shared data folder")
    return root


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
