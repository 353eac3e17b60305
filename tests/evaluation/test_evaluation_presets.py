"""Presets: AutoAttack's standard protocol by name, per threat model, resolved lazily."""

from __future__ import annotations

import functools

import pytest

from advml import attacks
from advml.errors import UserError
from advml.evaluation.presets import PRESETS, ensure_registered, resolve


def test_standard_is_autoattack_standard():
    steps, preset, notes = resolve("standard", "linf", n_classes=10)
    assert preset == "standard" and notes == []
    assert [s.label for s in steps] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [s.name for s in steps] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    import inspect

    def default(name, key):
        return inspect.signature(attacks.get(name)).parameters[key].default

    # APGD-CE 100 iterations, 1 restart; APGD-T DLR, 9 targets, 100 iterations; FAB-T 9
    # targets; Square 5,000 queries
    assert default("apgd-ce", "steps") == 100 and default("apgd-ce", "restarts") == 1
    assert default("apgd-t", "n_targets") == 9 and default("apgd-t", "steps") == 100
    assert default("apgd-t", "loss") == "dlr"
    assert default("fab-t", "n_targets") == 9
    assert steps[3].settings == {"n_queries": 5000} and steps[3].kind == "score"
    assert all(s.role == "ensemble" for s in steps)


def test_fast_and_l2():
    steps, _, _ = resolve("fast", "l2")
    assert [s.label for s in steps] == ["apgd-ce", "apgd-t"]
    steps, _, _ = resolve("standard", "l2")
    assert [s.label for s in steps] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_l1_uses_attacks_that_support_l1():
    for preset in ("fast", "standard", "thorough"):
        steps, _, _ = resolve(preset, "l1")
        for s in steps:
            assert "l1" in attacks.info(s.name).norms, (preset, s.name)


def test_thorough_has_restarts_and_norm_specific_attacks():
    steps, _, notes = resolve("thorough", "l2")
    by_label = {s.label: s for s in steps}
    assert by_label["apgd-ce"].settings["restarts"] == 5
    assert "square#2" in by_label and by_label["square#2"].name == "square"
    if ensure_registered("cw"):
        assert "cw" in by_label
    else:
        assert any("cw" in note for note in notes)
    steps, _, notes = resolve("thorough", "l1")
    if not ensure_registered("ead"):
        assert any("ead" in note and "not available" in note for note in notes)
        assert "ead" not in [s.label for s in steps]


def test_few_classes_adjust_targets():
    steps, _, notes = resolve("standard", "linf", n_classes=3)
    by_label = {s.label: s for s in steps}
    assert by_label["apgd-t"].settings["loss"] == "margin"
    assert by_label["apgd-t"].settings["n_targets"] == 2
    assert by_label["fab-t"].settings["n_targets"] == 2
    assert notes


def test_lists_mix_names_presets_and_callables():
    steps, preset, _ = resolve(
        ["fgsm", "fast", functools.partial(attacks.pgd, steps=7), "pgd"], "linf"
    )
    assert preset is None
    assert [s.label for s in steps] == ["fgsm", "apgd-ce", "apgd-t", "pgd", "pgd#2"]
    assert steps[0].single_step and not steps[1].single_step
    assert steps[3].settings == {"steps": 7}
    assert "steps=7" in steps[3].describe()


def test_registry_is_resolved_lazily_by_module_name():
    assert ensure_registered("square") and "square" in attacks.names()
    assert ensure_registered("eot")


def test_presets_cover_the_norms():
    assert set(PRESETS) == {"fast", "standard", "thorough"}
    with pytest.raises(UserError, match="no attacks for the l0"):
        resolve("standard", "l0")
