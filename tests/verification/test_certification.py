"""Certified vs attacked on a trained model: soundness and the ordering of the methods."""

from __future__ import annotations

import pytest
import torch

from advml.data import load
from advml.errors import UserError
from advml.models import build
from advml.verification.certification import STATUSES, certify_samples


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    x, y = load("digits", split="train")
    model = build("mlp", tuple(x.shape[1:]), 10, mean=0.3, std=0.35)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        for i in range(0, len(x), 64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            optimizer.step()
    model.eval()
    x_test, y_test = load("digits", split="test")
    return model, x_test[:40], y_test[:40]


def _certified(report):
    return report.status == STATUSES.index("certified")


def test_methods_are_ordered_and_never_contradict_the_attacks(digits_model):
    model, x, y = digits_model
    eps = 0.02
    ibp = certify_samples(model, x, y, eps=eps, method="ibp", attacks="fast", progress=False)
    crown = certify_samples(model, x, y, eps=eps, method="crown", attacks=None, progress=False)
    alpha = certify_samples(
        model, x, y, eps=eps, method="alpha-crown", attacks=None, progress=False
    )
    complete = certify_samples(
        model, x, y, eps=eps, method="complete", attacks="fast", timeout=20, progress=False
    )
    # IBP ⊆ CROWN ⊆ α-CROWN ⊆ complete (every method is sound, the later ones tighter)
    assert not (_certified(ibp) & ~_certified(crown)).any()
    assert not (_certified(crown) & ~_certified(alpha)).any()
    assert not (_certified(alpha) & ~_certified(complete)).any()
    assert complete.count("certified") > ibp.count("certified")
    # the complete verifier settles every sample the attacks leave open at this small eps
    assert complete.count("unknown") == 0
    assert complete.certified_accuracy <= complete.attacked_accuracy <= complete.clean_accuracy
    assert sum(complete.count(s) for s in STATUSES) == len(y)


def test_complete_finds_counterexamples_the_attack_skipped(digits_model):
    model, x, y = digits_model
    report = certify_samples(
        model, x[:8], y[:8], eps=0.08, method="complete", attacks=None, timeout=1, progress=False
    )
    assert report.count("attacked") > 0  # found by branch-and-bound's own search
    assert sum(report.count(status) for status in STATUSES) == 8


def test_bad_arguments(digits_model):
    model, x, y = digits_model
    with pytest.raises(UserError, match="L2"):
        certify_samples(model, x, y, eps=0.1, method="smoothing", threat="linf")
    with pytest.raises(UserError, match="L∞"):
        certify_samples(model, x, y, eps=0.1, method="crown", threat="l2")
    with pytest.raises(UserError, match="unknown method"):
        certify_samples(model, x, y, eps=0.1, method="exact")
