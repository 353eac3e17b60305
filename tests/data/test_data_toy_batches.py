"""PacGAN toy mixtures and the in-memory batching helper."""

from __future__ import annotations

import math

import pytest
import torch

import advml.data as data
from advml.errors import UserError


@pytest.mark.parametrize(
    ("name", "modes", "sigma"), [("toy-ring", 8, 0.01), ("toy-grid", 25, 0.05)]
)
def test_toy_modes_and_samples(name, modes, sigma):
    centres, s = data.toy_modes(name)
    assert centres.shape == (modes, 2) and centres.dtype == torch.float32 and s == sigma
    x, y = data.load(name, "train")
    assert x.shape == (50000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    xt, _yt = data.load(name, "test")
    assert xt.shape == (2500, 2)
    # every mode is used, roughly uniformly
    counts = torch.bincount(y, minlength=modes)
    assert counts.numel() == modes and int(counts.min()) > 0.8 * 50000 / modes
    # every sample lies within a few sigma of its own mode, and that mode is the nearest
    distance = (x - centres[y]).norm(dim=1)
    assert float(distance.max()) < 6 * sigma
    nearest = torch.cdist(x, centres).argmin(dim=1)
    assert torch.equal(nearest, y)
    info = data.info(name)
    assert info.num_classes == modes and info.input_shape == (2,)
    # the fixed splits are deterministic and differ from each other
    x2, _ = data.load(name, "train")
    assert torch.equal(x, x2) and not torch.equal(x[:2500], xt)


def test_toy_geometry():
    ring, _ = data.toy_modes("toy-ring")
    assert torch.allclose(ring.norm(dim=1), torch.ones(8))
    angles = torch.atan2(ring[:, 1], ring[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(8) * (2 * math.pi / 8), atol=1e-5)
    grid, _ = data.toy_modes("toy-grid")
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(p) for p in grid.tolist()}) == 25


def test_toy_sample_seeded():
    a = data.toy_sample("toy-grid", 100, seed=7)
    b = data.toy_sample("toy-grid", 100, seed=7)
    c = data.toy_sample("toy-grid", 100, seed=8)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    with pytest.raises(UserError):
        data.toy_modes("toy-spiral")


def test_batches_in_order_are_views():
    x = torch.arange(10.0).reshape(10, 1)
    y = torch.arange(10)
    chunks = list(data.batches(x, y, 4))
    assert [len(b[0]) for b in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in chunks]), y)
    assert chunks[0][0].data_ptr() == x.data_ptr()  # a view, no copy
    assert [len(b[0]) for b in data.batches(x, y, 4, drop_last=True)] == [4, 4]
    assert [len(b[0]) for b in data.batches(x, y, 5, drop_last=True)] == [5, 5]
    assert list(data.batches(x[:0], y[:0], 3)) == []


def test_batches_shuffle_reproducible():
    x = torch.arange(20.0).reshape(20, 1)
    y = torch.arange(20)
    run = [
        torch.cat([b[1] for b in data.batches(x, y, 6, shuffle=True, generator=g)])
        for g in (torch.Generator().manual_seed(3), torch.Generator().manual_seed(3))
    ]
    assert torch.equal(run[0], run[1])
    assert sorted(run[0].tolist()) == list(range(20)) and not torch.equal(run[0], y)
    for xb, yb in data.batches(x, y, 6, shuffle=True):
        assert torch.equal(xb[:, 0].long(), yb)  # x and y stay paired
    shuffled = list(data.batches(x, y, 6, shuffle=True, drop_last=True))
    assert len(shuffled) == 3


def test_batches_unlabelled_and_errors():
    x = torch.zeros(5, 2)
    assert [yb for _, yb in data.batches(x, None, 2)] == [None, None, None]
    with pytest.raises(UserError, match="batch_size"):
        list(data.batches(x, None, 0))
    with pytest.raises(UserError, match="batch_size"):
        list(data.batches(x, None, 2.5))
    with pytest.raises(UserError, match="must match"):
        list(data.batches(x, torch.zeros(4), 2))
