"""Property tests (hypothesis): on random toy models, inputs, norms and radii, every attack
returns inputs inside the threat model and reports success as the model sees it."""

from __future__ import annotations

import torch
from attack_toys import FAST, extra_for, toy_mlp, toy_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advml import attacks
from advml.threats import make

NEEDS_FOUR = {"apgd-t", "apgd-dlr"}  # (targeted) DLR losses need 4 classes


@st.composite
def cases(draw):
    name = draw(st.sampled_from(toy_names()))
    norm = draw(st.sampled_from(sorted(attacks.info(name).norms)))
    dim = draw(st.integers(1, 6))
    low = 4 if name in NEEDS_FOUR else 2
    classes = draw(st.integers(low, 5))
    n = draw(st.integers(1, 6))
    eps = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0]))
    per_sample = draw(st.booleans())
    targeted = draw(st.booleans()) and attacks.info(name).targeted
    seed = draw(st.integers(0, 2**20))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return name, norm, dim, classes, n, eps, per_sample, targeted, seed, dtype


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_attacks_stay_inside_and_report_truthfully(case):
    name, norm, dim, classes, n, eps, per_sample, targeted, seed, dtype = case
    gen = torch.Generator().manual_seed(seed)
    model = toy_mlp(dim, classes, seed=seed, dtype=dtype)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    x[torch.rand(n, dim, generator=gen) < 0.2] = 1.0  # features on the box's faces
    y = torch.randint(0, classes, (n,), generator=gen)
    radius = torch.rand(n, generator=gen, dtype=torch.float64) * eps if per_sample else eps
    if norm == "l0":  # L0 budgets count features: whole numbers
        radius = torch.ceil(torch.as_tensor(radius) * dim) if per_sample else round(eps * dim)
    threat = make(norm, radius)
    extra = extra_for(name, dim, classes, seed, dtype)
    result = attacks.get(name)(model, x, y, threat, targeted=targeted, **FAST[name], **extra)
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred == y if targeted else pred != y)
    with torch.no_grad():
        clean = model(x).argmax(1)
    clean_success = clean == y if targeted else clean != y
    assert (result.success | ~clean_success).all()  # never worse than the clean input
