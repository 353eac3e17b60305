"""The cascade: worst case per sample, monotone in ε, independent of batch size, the API that
``advml demo`` and the README use."""

from __future__ import annotations

import functools

import pytest
import torch

from advml import attacks
from advml.errors import UserError
from advml.evaluation import evaluate
from advml.evaluation.clean import predict
from advml.threats import make

CHEAP = [
    "fgsm",
    functools.partial(attacks.pgd, steps=10),
    functools.partial(attacks.apgd_ce, steps=10),
]
EPS = [0.05, 0.1]


def one_by_one(model, x, y, specs, eps_list, threat="linf"):
    """Robust masks from every attack run on *every* correctly classified sample, then the
    per-sample minimum (over attacks and over budgets up to ε)."""
    clean = predict(model, x).argmax(1) == y
    robust, broken = {}, torch.zeros_like(clean)
    for eps in sorted(eps_list):
        threat_model = make(threat, eps)
        for spec in specs:
            fn = attacks.get(spec) if isinstance(spec, str) else spec
            label = spec if isinstance(spec, str) else spec.func.info.name
            from advml.runtime import derive_seed

            result = fn(model, x, y, threat_model, seed=derive_seed(0, label, repr(float(eps))))
            fooled = predict(model, result.x_adv).argmax(1) != y
            broken |= fooled & threat_model.contains(result.x_adv, x)
        robust[eps] = clean & ~broken
    return robust


def test_cascade_equals_per_sample_minimum(digits_model, digits):
    x, y = digits
    report = evaluate(digits_model, x, y, eps=EPS, attacks=CHEAP, checks=False, progress=False)
    expected = one_by_one(digits_model, x, y, CHEAP, EPS)
    for eps in EPS:
        assert torch.equal(report.robust[eps], expected[eps]), eps
    # the later attacks only saw what was still robust, and did break something
    stats = report.per_attack[0.1]
    assert [s.label for s in stats] == ["fgsm", "pgd", "apgd-ce"]
    assert stats[1].attacked < stats[0].attacked
    assert 0 < report.robust_accuracy[0.1] < report.robust_accuracy[0.05] < report.clean_accuracy


def test_checks_only_add_verified_breaks(digits_model, digits):
    """With the diagnostics on, the result is the same ensemble plus the FGSM check: never
    more robust than without them."""
    x, y = digits
    specs = CHEAP[1:]
    without = evaluate(digits_model, x, y, eps=EPS, attacks=specs, checks=False, progress=False)
    with_checks = evaluate(digits_model, x, y, eps=EPS, attacks=specs, progress=False)
    assert with_checks.attacks == ["pgd", "apgd-ce", "fgsm-check"]
    for eps in EPS:
        assert not (with_checks.robust[eps] & ~without.robust[eps]).any()
    expected = one_by_one(digits_model, x, y, ["fgsm", *specs], EPS)
    # fgsm-check runs with the label-derived seed of "fgsm-check"; FGSM has no randomness
    for eps in EPS:
        assert torch.equal(with_checks.robust[eps], expected[eps])


def test_multi_eps_monotone_and_consistent(digits_model, digits):
    x, y = digits
    eps = [0.15, 0.02, 0.05, 0.1]  # any order; evaluated ascending
    report = evaluate(digits_model, x, y, eps=eps, attacks=CHEAP[1:], progress=False)
    assert report.eps == sorted(eps)
    accs = [report.robust_accuracy[e] for e in report.eps]
    assert accs == sorted(accs, reverse=True) and accs[0] <= report.clean_accuracy
    for small, large in zip(report.eps, report.eps[1:], strict=False):
        assert not (report.robust[large] & ~report.robust[small]).any()
        # no work repeated: the first attack at a larger ε only sees survivors of the smaller
        assert report.per_attack[large][0].attacked == int(report.robust[small].sum())
    for e in report.eps:
        threat = make("linf", e)
        broken = report.clean_correct & ~report.robust[e]
        assert threat.contains(report.x_adv[e][broken], x[broken]).all()
        assert (predict(digits_model, report.x_adv[e][broken]).argmax(1) != y[broken]).all()
        assert torch.equal(report.x_adv[e][report.robust[e]], x[report.robust[e]])
        assert (report.breaker[e][broken] >= 0).all()
        assert (report.breaker[e][~report.clean_correct] == -2).all()
        # broken_by counts what broke at this ε; earlier budgets carry over
        carried = sum(sum(report.broken_by[s].values()) for s in report.eps if s <= e)
        assert carried == int(broken.sum())
    rows = report.samples()
    for row in rows:
        if row["broken_at"] is None:
            assert bool(report.robust[report.eps[-1]][row["index"]])
        elif row["broken_at"] > 0:
            assert row["norm"] <= row["broken_at"] + 1e-6
            assert row["adv_pred"] != row["label"]


def test_batch_size_invariance(digits_model, digits):
    x, y = digits
    specs = ["pgd", functools.partial(attacks.apgd_t, steps=10, n_targets=3)]
    big = evaluate(digits_model, x, y, eps=EPS, attacks=specs, batch_size=500, progress=False)
    small = evaluate(digits_model, x, y, eps=EPS, attacks=specs, batch_size=37, progress=False)
    for eps in EPS:
        assert torch.equal(big.robust[eps], small.robust[eps])
        assert torch.equal(big.breaker[eps], small.breaker[eps])
        torch.testing.assert_close(big.x_adv[eps], small.x_adv[eps], rtol=0, atol=1e-6)
    assert [f.name for f in big.flags] == [f.name for f in small.flags]
    big_dict, small_dict = big.to_dict(), small.to_dict()
    for key in ("robust_accuracy", "broken_by", "samples", "unbounded_check"):
        assert big_dict[key] == small_dict[key], key


def test_seed_changes_random_starts_only_reproducibly(digits_model, digits):
    x, y = digits[0][:100], digits[1][:100]
    first = evaluate(digits_model, x, y, eps=[0.1], attacks=["pgd"], seed=3, progress=False)
    again = evaluate(digits_model, x, y, eps=[0.1], attacks=["pgd"], seed=3, progress=False)
    assert torch.equal(first.x_adv[0.1], again.x_adv[0.1])


def test_readme_call_and_report_fields(digits_model, digits):
    x, y = digits
    report = evaluate(digits_model, x, y, threat="linf", eps=[0.05, 0.1], attacks=["fgsm", "pgd"])
    assert set(report.robust_accuracy) == {0.05, 0.1}
    assert 0.9 < report.clean_accuracy <= 1.0
    data = report.to_dict()
    for key in ("threat", "n", "attacks", "clean_accuracy", "robust_accuracy", "broken_by"):
        assert key in data
    assert data["attacks"] == ["fgsm", "pgd"]  # the ensemble has a single-step attack: no check
    assert len(data["samples"]) == report.n
    assert {s["role"] for s in data["steps"]} == {"ensemble"}
    import json

    json.dumps(data)  # plain JSON


def test_comma_separated_string_and_single_callable(digits_model, digits):
    x, y = digits[0][:60], digits[1][:60]
    a = evaluate(digits_model, x, y, eps=[0.1], attacks="fgsm,pgd", checks=False, progress=False)
    b = evaluate(
        digits_model, x, y, eps=[0.1], attacks=["fgsm", "pgd"], checks=False, progress=False
    )
    assert torch.equal(a.robust[0.1], b.robust[0.1])
    c = evaluate(digits_model, x, y, eps=[0.1], attacks=attacks.pgd, checks=False, progress=False)
    assert c.attacks == ["pgd"] and torch.equal(
        c.robust[0.1],
        evaluate(
            digits_model, x, y, eps=[0.1], attacks=["pgd"], checks=False, progress=False
        ).robust[0.1],
    )

    # a user function outside the registry works too (and keeps its name)
    def noise(model, x, y, threat, *, seed=0):
        gen = torch.Generator().manual_seed(seed)
        return threat.project(x + threat.eps * torch.randn(x.shape, generator=gen).sign(), x)

    d = evaluate(digits_model, x, y, eps=[0.1], attacks=[noise], checks=False, progress=False)
    assert d.attacks == ["noise"] and d.robust_accuracy[0.1] >= c.robust_accuracy[0.1]


def test_eps_zero_is_clean_accuracy(digits_model, digits):
    x, y = digits[0][:50], digits[1][:50]
    report = evaluate(digits_model, x, y, eps=[0.0, 0.1], attacks=["pgd"], progress=False)
    assert report.robust_accuracy[0.0] == report.clean_accuracy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": [-0.1]}, "eps"),
        ({"eps": []}, "eps"),
        ({"eps": [float("nan")]}, "eps"),
        ({"attacks": ["no-such-attack"]}, "unknown attack"),
        ({"attacks": "nonsense-preset"}, "unknown attack"),
        ({"attacks": ["fgsm"], "threat": "l2"}, "not the l2 threat"),
        ({"threat": "l7"}, "unknown threat"),
        ({"batch_size": 0}, "batch_size"),
        ({"attacks": []}, "empty"),
    ],
)
def test_user_errors(digits_model, digits, kwargs, message):
    x, y = digits[0][:10], digits[1][:10]
    with pytest.raises(UserError, match=message):
        evaluate(digits_model, x, y, **{"eps": [0.1], "progress": False, **kwargs})


def test_mismatched_labels(digits_model, digits):
    with pytest.raises(UserError, match="labels"):
        evaluate(digits_model, digits[0][:10], digits[1][:9], eps=[0.1], attacks=["fgsm"])
