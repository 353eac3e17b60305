"""Trap models are never reported more robust than a strong reference says they are, and each
is flagged by the diagnostic that names its trick; the diagnostics stay quiet on an honest
model."""

from __future__ import annotations

import functools

import pytest
from evaluation_threads import one_thread
from evaluation_traps import (
    Detached,
    ExplodingGradient,
    NaNGradient,
    Noisy,
    Quantized,
    Scaled,
    Softmax,
    reference_robust,
)

from advml import attacks
from advml.evaluation import evaluate
from advml.evaluation.diagnostics import ProbeStats, probe_flags

EPS = 0.15
N = 60


@pytest.fixture(scope="module")
def subset(digits):
    return digits[0][:N], digits[1][:N]


def names(report):
    return {f.name for f in report.flags}


@pytest.fixture(scope="module")
def honest(digits_model, subset):
    x, y = subset
    with one_thread():
        return evaluate(digits_model, x, y, eps=[0.05, EPS], attacks="fast", progress=False)


def test_honest_model_raises_no_flag(honest, subset):
    assert honest.flags == []
    probed = int(honest.clean_correct.sum())
    assert honest.unbounded == {"eps": 1.0, "probed": probed, "survivors": 0}
    assert honest.probe is not None and honest.probe.n == N
    assert [s.role for s in honest.steps] == ["ensemble", "ensemble", "check"]


TRAPS = {
    "quantized": (Quantized, "zero_gradients"),
    "scaled-logits": (Scaled, "saturated_cross_entropy"),
    "noisy": (Noisy, "randomized_outputs"),
    "softmax": (Softmax, "probability_outputs"),
}


@pytest.fixture(scope="module")
def trap_reports(digits_model, subset):
    """``fast`` (adaptive, the default) on every trap, computed once."""
    x, y = subset
    cache = {}

    def get(name):
        if name not in cache:
            trap = TRAPS[name][0](digits_model).eval()
            with one_thread():
                cache[name] = evaluate(trap, x, y, eps=[EPS], attacks="fast", progress=False)
        return cache[name]

    return get


@pytest.mark.parametrize("trap_name", list(TRAPS))
def test_trap_never_more_robust_than_reference_and_flagged(
    trap_name, trap_reports, digits_model, subset
):
    wrapper, flag = TRAPS[trap_name]
    report = trap_reports(trap_name)
    assert flag in names(report), report.flags
    assert any(f.severity == "critical" for f in report.flagged(flag))
    x, y = subset
    trap = wrapper(digits_model).eval()
    reference = reference_robust(
        trap, digits_model, x, y, EPS, draws=16 if trap_name == "noisy" else 1
    )
    # the reference transfers PGD from the unwrapped model, which the evaluation cannot do:
    # allow it 2 samples of slack
    slack = 2 / N
    assert report.robust_accuracy[EPS] <= reference + slack, (report.robust_accuracy, reference)


def test_quantized_without_adaptive_is_flagged_loudly(digits_model, subset):
    """The unaided white-box ensemble is fooled (that is the trap), but the report says so."""
    x, y = subset
    trap = Quantized(digits_model)
    report = evaluate(trap, x, y, eps=[EPS], attacks="fast", adaptive=False, progress=False)
    reference = reference_robust(trap, digits_model, x, y, EPS)
    assert report.robust_accuracy[EPS] > reference + 0.3  # the trap works on white-box attacks
    assert "zero_gradients" in names(report)
    assert report.worst_severity == "critical"
    assert all(s.role != "added" for s in report.steps)


def test_adaptive_additions_are_listed(trap_reports, digits_model, subset):
    report = trap_reports("quantized")
    added = [s for s in report.steps if s.role == "added"]
    assert [s.label for s in added] == ["square", "square#2"]
    assert all("gradient" in s.reason for s in added)
    assert "added 2 Square run(s)" in report.flagged("zero_gradients")[0].message
    # the gradient-free attack found what the white-box ones missed
    assert "black_box_stronger" in names(report)
    noisy = trap_reports("noisy")
    assert [s.label for s in noisy.steps if s.role == "added"] == ["eot"]
    softmax = trap_reports("softmax")
    assert "log(outputs)" in softmax.flagged("probability_outputs")[0].message


def test_black_box_stronger(trap_reports):
    report = trap_reports("quantized")
    flag = report.flagged("black_box_stronger")[0]
    assert flag.severity == "critical" and flag.eps == EPS
    by_square = report.broken_by[EPS]["square"] + report.broken_by[EPS]["square#2"]
    assert flag.evidence["samples_broken_only_by_black_box"] == by_square > 0


def test_single_step_stronger_than_a_broken_iterative_attack(digits_model, subset):
    x, y = subset
    weak = functools.partial(attacks.pgd, steps=2, step_size=1e-4, random_start=False)
    report = evaluate(digits_model, x, y, eps=[EPS], attacks=[weak], adaptive=False, progress=False)
    flag = report.flagged("single_step_stronger")[0]
    assert flag.severity == "critical"
    alone = flag.evidence["broken_by_single_step_alone"]
    assert alone > flag.evidence["broken_after_first_iterative_attack"]
    # what FGSM found counts
    assert report.broken_by[EPS]["fgsm-check"] == flag.evidence["broken_only_by_single_step"] > 0
    # and the weak attack also fails the unbounded check
    assert "unbounded_budget" in names(report)


def test_unbounded_budget(digits_model, subset):
    """Zero gradients and no random start: the attack cannot move even with the whole box as
    its budget, where any other input is admissible."""
    x, y = subset
    stuck = functools.partial(attacks.pgd, steps=5, random_start=False)
    report = evaluate(
        Quantized(digits_model), x, y, eps=[EPS], attacks=[stuck], adaptive=False, progress=False
    )
    flag = report.flagged("unbounded_budget")[0]
    assert flag.severity == "critical" and flag.evidence["eps"] == 1.0
    assert flag.evidence["survivors"] == flag.evidence["probed"] > 0


@pytest.mark.parametrize(
    ("wrapper", "flag"),
    [
        (ExplodingGradient, "exploding_gradients"),
        (NaNGradient, "nonfinite_gradients"),
        (Detached, "not_differentiable"),
    ],
)
def test_gradient_pathologies(wrapper, flag, digits_model, subset, honest):
    x, y = subset[0][:20], subset[1][:20]
    report = evaluate(wrapper(digits_model), x, y, eps=[EPS], attacks=["pgd"], progress=False)
    assert flag in names(report)
    if flag != "exploding_gradients":
        # white-box attacks stop with an error, reported, and Square does the work
        assert "attack_error" in names(report)
        assert [s.label for s in report.steps if s.role == "added"] == ["square", "square#2"]
        truth = honest.robust[EPS][:20].float().mean().item()
        assert report.robust_accuracy[EPS] <= truth + 2 / 20


def test_probe_flags_carry_evidence_and_action():
    stats = ProbeStats(n=10, probability_rows=10, changed_predictions=2, max_output_change=0.3)
    flags = probe_flags(stats, threat="linf", adaptive=True, added={})
    assert {f.name for f in flags} == {"probability_outputs", "randomized_outputs"}
    for f in flags:
        assert f.severity == "critical" and f.evidence and f.action
        assert f.to_dict()["name"] == f.name
        assert f.name in str(f)
    random = next(f for f in flags if f.name == "randomized_outputs")
    assert "EOT" in random.action and random.evidence["changed_predictions"] == 2
    merged = stats.merge(ProbeStats(n=5, probability_rows=4))
    assert merged.n == 15 and not merged.probabilities and merged.randomized


def test_thorough_adds_eot_for_randomized_models(digits_model, subset, monkeypatch):
    """``thorough`` runs EOT on randomized models even with ``adaptive=False`` (it is part of
    the preset); a cheap stand-in for the preset's other attacks keeps the test fast."""
    from advml.evaluation import presets

    monkeypatch.setitem(presets.PRESETS["thorough"], "linf", [("pgd", "pgd", {"steps": 5})])
    x, y = subset[0][:20], subset[1][:20]
    report = evaluate(
        Noisy(digits_model), x, y, eps=[EPS], attacks="thorough", adaptive=False, progress=False
    )
    eot = [s for s in report.steps if s.name == "eot"]
    assert len(eot) == 1 and eot[0].role == "ensemble"
    assert eot[0].settings == {"attack": "apgd-ce"}
    honest = evaluate(digits_model, x, y, eps=[EPS], attacks="thorough", progress=False)
    assert "eot" not in [s.name for s in honest.steps]
