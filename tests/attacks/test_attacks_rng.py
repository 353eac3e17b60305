"""The counter-based per-sample random source."""

from __future__ import annotations

import random

import pytest
import torch

from advml.attacks.rng import KeyedRNG, TorchRNG, content_keys, make_rng, mix64, mix64_int
from advml.errors import UserError


def test_mix64_matches_the_reference():
    rnd = random.Random(0)
    values = [rnd.randrange(-(2**63), 2**63) for _ in range(1000)] + [0, -1, 2**63 - 1, -(2**63)]
    ours = mix64(torch.tensor(values, dtype=torch.int64)).tolist()
    assert ours == [mix64_int(v) for v in values]


def test_content_keys():
    x = torch.rand(5, 3, 4)
    keys = content_keys(x)
    assert keys.shape == (5,) and keys.dtype == torch.int64
    assert len(set(keys.tolist())) == 5
    assert torch.equal(content_keys(x[[2, 0]]), keys[[2, 0]])
    assert torch.equal(content_keys(x.double()), keys)  # float32 rounding: dtype-independent
    assert torch.equal(content_keys(-0.0 * torch.ones(1, 2)), content_keys(torch.zeros(1, 2)))


def test_uniform_statistics():
    rng = KeyedRNG.for_inputs(torch.rand(100, 3), seed=0)
    u = rng.uniform((100, 1000), dtype=torch.float64, device=torch.device("cpu"))
    assert ((u >= 0) & (u < 1)).all()
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    v = rng.uniform((100, 1000), dtype=torch.float32, device=torch.device("cpu"))
    assert v.dtype == torch.float32 and ((v >= 0) & (v < 1)).all()
    assert not torch.equal(u.float(), v)  # successive draws differ


def test_keyed_draws_depend_only_on_the_row():
    x = torch.rand(8, 5)
    rng = KeyedRNG.for_inputs(x, seed=3)
    idx = torch.tensor([5, 1, 6])
    cpu = torch.device("cpu")
    whole = rng.rows(torch.arange(8), 2).uniform((8, 10), dtype=torch.float64, device=cpu)
    part = rng.rows(idx, 2).uniform((3, 10), dtype=torch.float64, device=cpu)
    assert torch.equal(whole[idx], part)
    other_restart = rng.rows(idx, 3).uniform((3, 10), dtype=torch.float64, device=cpu)
    assert not torch.equal(part, other_restart)
    other_seed = (
        KeyedRNG.for_inputs(x, seed=4)
        .rows(idx, 2)
        .uniform((3, 10), dtype=torch.float64, device=cpu)
    )
    assert not torch.equal(part, other_seed)
    assert not torch.equal(
        rng.stream(1).uniform((8, 4), dtype=torch.float64, device=cpu),
        rng.stream(2).uniform((8, 4), dtype=torch.float64, device=cpu),
    )


def test_row_count_is_checked():
    rng = KeyedRNG.for_inputs(torch.rand(3, 2), seed=0)
    with pytest.raises(UserError, match="3 rows"):
        rng.uniform((4, 2), dtype=torch.float32, device=torch.device("cpu"))


def test_make_rng():
    x = torch.rand(2, 2)
    assert isinstance(make_rng(x, 0, None), KeyedRNG)
    assert isinstance(make_rng(x, None, torch.Generator()), TorchRNG)
    assert isinstance(make_rng(x, None, None), TorchRNG)
    with pytest.raises(UserError, match="not both"):
        make_rng(x, 0, torch.Generator())
    with pytest.raises(UserError, match="seed"):
        make_rng(x, 1.5, None)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="Generator"):
        make_rng(x, None, 3)  # type: ignore[arg-type]
