"""The registry of attacks by name."""

from __future__ import annotations

import inspect

import pytest

from advml import attacks
from advml.attacks.registry import register
from advml.errors import UserError


def test_names():
    expected = {
        "fgsm",
        "fgm",
        "bim",
        "illc",
        "mifgsm",
        "pgd",
        "apgd",
        "apgd-ce",
        "apgd-dlr",
        "apgd-t",
        "deepfool",
    }
    assert expected <= set(attacks.names())
    assert attacks.names() == sorted(attacks.names())


def test_get_and_info():
    assert attacks.get("pgd") is attacks.pgd
    assert attacks.get("APGD_CE") is attacks.apgd_ce
    info = attacks.info("deepfool")
    assert info.minimum_norm and info.kind == "gradient" and not info.targeted
    assert info.norms == {"l2", "linf"}
    assert attacks.info("pgd").targeted and "Madry" in attacks.info("pgd").paper
    with pytest.raises(UserError, match="unknown attack 'no-such-attack'"):
        attacks.get("no-such-attack")


@pytest.mark.parametrize("name", attacks.names())
def test_every_attack_has_the_common_signature(name):
    fn = attacks.get(name)
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:4]] == ["model", "x", "y", "threat"]
    assert params[4].name == "targeted" and params[4].kind is inspect.Parameter.KEYWORD_ONLY
    assert params[4].default is False
    assert fn.__doc__ and attacks.info(name).paper


def test_register_rejects_duplicates_and_bad_kinds():
    with pytest.raises(ValueError, match="already registered"):
        register("pgd", norms=("linf",), targeted=False)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="kind"):
        register("x-new", norms=("linf",), targeted=False, kind="oracle")  # type: ignore[arg-type]
