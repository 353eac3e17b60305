"""Attack ensembles by name (``fast``, ``standard``, ``thorough``) and the steps of a cascade.

A cascade is a list of :class:`AttackStep`: an attack function, its settings and a unique label.
:func:`resolve` turns what a user gives ``evaluate(attacks=...)`` (a preset name, registry
names, attack functions or ``functools.partial`` objects, or a list mixing them) into steps for
one threat model. Attacks are looked up in the registry lazily, and the modules of attacks that
live outside :mod:`advml.attacks`' ``__init__`` (``square``, ``cw``, ``ead``, ``eot``) are imported
by name first, so the registry knows them.

``standard`` is AutoAttack's standard protocol (Croce & Hein 2020): APGD-CE (100 iterations,
1 restart), APGD-T (targeted DLR, 9 target classes, 100 iterations each), FAB-T (9 target
classes) and Square (5,000 queries), each attack run only on the points still robust.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from advml.errors import UserError

__all__ = ["PRESETS", "AttackStep", "preset_table", "resolve", "step"]

#: Modules that register attacks but are not imported by ``advml.attacks``' ``__init__``.
_OPTIONAL_MODULES = {
    "square": "advml.attacks.square",
    "spsa": "advml.attacks.spsa",
    "cw": "advml.attacks.cw",
    "cw-l2": "advml.attacks.cw",
    "ead": "advml.attacks.ead",
    "eot": "advml.attacks.eot",
    "hopskipjump": "advml.attacks.hopskipjump",
}

#: Preset -> norm -> [(label, registry name, settings)]. Settings not given are the attack's
#: defaults (which are AutoAttack's for apgd-ce, apgd-t, fab-t and square).
PRESETS: dict[str, dict[str, list[tuple[str, str, dict[str, Any]]]]] = {
    "fast": {
        "linf": [("apgd-ce", "apgd-ce", {}), ("apgd-t", "apgd-t", {})],
        "l2": [("apgd-ce", "apgd-ce", {}), ("apgd-t", "apgd-t", {})],
        # APGD has no L1 variant in advml: PGD-100 with the sparse (SLIDE) step, then FAB-T.
        "l1": [("pgd-ce", "pgd", {"steps": 100}), ("fab-t", "fab-t", {})],
    },
    "standard": {
        "linf": [
            ("apgd-ce", "apgd-ce", {}),
            ("apgd-t", "apgd-t", {}),
            ("fab-t", "fab-t", {}),
            ("square", "square", {"n_queries": 5000}),
        ],
        "l2": [
            ("apgd-ce", "apgd-ce", {}),
            ("apgd-t", "apgd-t", {}),
            ("fab-t", "fab-t", {}),
            ("square", "square", {"n_queries": 5000}),
        ],
        "l1": [
            ("pgd-ce", "pgd", {"steps": 100}),
            ("pgd-margin", "pgd", {"steps": 100, "loss": "margin"}),
            ("fab-t", "fab-t", {}),
        ],
    },
    "thorough": {
        "linf": [
            ("apgd-ce", "apgd-ce", {"restarts": 5}),
            ("apgd-dlr", "apgd-dlr", {"restarts": 5}),
            ("apgd-t", "apgd-t", {}),
            ("fab-t", "fab-t", {"restarts": 3}),
            ("square", "square", {"n_queries": 5000}),
            ("square#2", "square", {"n_queries": 5000}),
        ],
        "l2": [
            ("apgd-ce", "apgd-ce", {"restarts": 5}),
            ("apgd-dlr", "apgd-dlr", {"restarts": 5}),
            ("apgd-t", "apgd-t", {}),
            ("fab-t", "fab-t", {"restarts": 3}),
            ("square", "square", {"n_queries": 5000}),
            ("square#2", "square", {"n_queries": 5000}),
            ("cw", "cw", {"steps": 250}),
        ],
        "l1": [
            ("pgd-ce", "pgd", {"steps": 100, "restarts": 5}),
            ("pgd-margin", "pgd", {"steps": 100, "loss": "margin", "restarts": 5}),
            ("fab-t", "fab-t", {"restarts": 3}),
            ("ead", "ead", {}),
        ],
    },
}

#: What each preset is for (docs and ``--help``).
PRESET_HELP = {
    "fast": "APGD-CE + APGD-T: a quick worst case, no gradient-free attack",
    "standard": "AutoAttack's standard protocol: APGD-CE, APGD-T, FAB-T, Square (5,000 queries)",
    "thorough": "standard with restarts, APGD-DLR, a second Square run, C&W (L2) / EAD (L1), "
    "EOT for randomized models",
}


@dataclasses.dataclass(frozen=True)
class AttackStep:
    """One attack of a cascade.

    Attributes:
        label: unique name in reports (``"apgd-ce"``, ``"square#2"``, ...).
        fn: the attack function (the registry's, or the user's callable).
        settings: keyword arguments passed on every call (``seed`` is added by the cascade).
        name: the registry name, ``None`` for a user callable outside the registry.
        kind: ``"gradient"``, ``"score"``, ``"decision"`` (registry metadata; user callables
            count as ``"gradient"``).
        single_step: one gradient step (FGSM/FGM): used by the single-step diagnostic.
        role: ``"ensemble"`` (asked for), ``"added"`` (added by a diagnostic) or ``"check"``
            (run by a diagnostic; its successes count, like every verified adversarial).
        reason: why the step is there, for added and check steps.
    """

    label: str
    fn: Callable[..., Any]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None
    kind: str = "gradient"
    single_step: bool = False
    role: str = "ensemble"
    reason: str = ""

    @property
    def accepts_seed(self) -> bool:
        try:
            parameters = inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            return False
        return "seed" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    def describe(self) -> str:
        """``apgd-ce (restarts=5)``: the label and the settings that differ from defaults."""
        extra = ", ".join(f"{k}={v}" for k, v in self.settings.items() if k != "attack")
        if "attack" in self.settings:
            extra = f"attack={self.settings['attack']}" + (f", {extra}" if extra else "")
        return f"{self.label} ({extra})" if extra else self.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "attack": self.name,
            "settings": {k: v for k, v in self.settings.items() if _plain(v)},
            "kind": self.kind,
            "role": self.role,
            "reason": self.reason,
        }


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None)))


def _registry():
    from advml import attacks

    return attacks


def ensure_registered(name: str) -> bool:
    """Import the module of ``name`` if it lives outside ``advml.attacks``' ``__init__``.

    Returns whether ``name`` is now in the registry.
    """
    attacks = _registry()
    key = str(name).lower().replace("_", "-")
    if key in attacks.names():
        return True
    module = _OPTIONAL_MODULES.get(key)
    if module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    return key in attacks.names()


def step(
    name: str, settings: dict[str, Any] | None = None, *, label: str | None = None, **extra: Any
) -> AttackStep:
    """The step running registry attack ``name`` with ``settings``."""
    if not ensure_registered(name):
        attacks = _registry()
        raise UserError(f"unknown attack {name!r}; choose one of {', '.join(attacks.names())}")
    meta = _registry().info(name)
    single = meta.name in ("fgsm", "fgm")
    return AttackStep(
        label=label or meta.name,
        fn=meta.fn,
        settings=dict(settings or {}),
        name=meta.name,
        kind=meta.kind,
        single_step=single,
        **extra,
    )


def _from_callable(spec: Callable[..., Any]) -> AttackStep:
    func, settings = spec, {}
    if isinstance(spec, functools.partial):
        func, settings = spec.func, dict(spec.keywords)
    meta = getattr(func, "info", None)
    name = getattr(meta, "name", None)
    if name is not None and getattr(meta, "fn", None) is func:
        return step(name, settings)
    label = getattr(func, "__name__", None) or repr(spec)
    return AttackStep(label=label, fn=spec)


def _unique(steps: list[AttackStep]) -> list[AttackStep]:
    seen: dict[str, int] = {}
    out = []
    for item in steps:
        count = seen.get(item.label, 0) + 1
        seen[item.label] = count
        out.append(item if count == 1 else dataclasses.replace(item, label=f"{item.label}#{count}"))
    return out


def is_preset(spec: object) -> bool:
    return isinstance(spec, str) and spec.strip().lower() in PRESETS


def resolve(
    attacks: str | Sequence[str | Callable[..., Any]] | Callable[..., Any],
    threat: str,
    *,
    n_classes: int | None = None,
) -> tuple[list[AttackStep], str | None, list[str]]:
    """Steps for ``attacks`` under ``threat``: ``(steps, preset name or None, notes)``.

    ``attacks`` is a preset name, a comma-separated string of names, one callable, or a list of
    names / callables / presets. Registry attacks that do not support ``threat`` raise
    :class:`UserError` (presets skip what is unavailable and say so in ``notes``).
    """
    if isinstance(attacks, str):
        specs: list[Any] = [part.strip() for part in attacks.split(",") if part.strip()]
    elif callable(attacks):
        specs = [attacks]
    else:
        specs = list(attacks)
    if not specs:
        raise UserError(
            "evaluate: attacks is empty; give a preset (fast, standard, thorough) or names"
        )
    steps: list[AttackStep] = []
    notes: list[str] = []
    presets = [s.strip().lower() for s in specs if is_preset(s)]
    for spec in specs:
        if is_preset(spec):
            steps += _preset_steps(spec.strip().lower(), threat, n_classes, notes)
        elif isinstance(spec, str):
            item = step(spec)
            norms = _registry().info(item.name).norms
            if threat not in norms:
                raise UserError(
                    f"attack {item.name} supports {', '.join(sorted(norms))}, not the "
                    f"{threat} threat model; drop it or pick another threat"
                )
            steps.append(item)
        elif callable(spec):
            steps.append(_from_callable(spec))
        else:
            raise UserError(
                "evaluate: attacks must be preset names, attack names or attack functions; "
                f"got {spec!r}"
            )
    preset = presets[0] if len(presets) == 1 and len(specs) == 1 else None
    return _unique(steps), preset, notes


def _preset_steps(
    preset: str, threat: str, n_classes: int | None, notes: list[str]
) -> list[AttackStep]:
    table = PRESETS[preset]
    if threat not in table:
        raise UserError(
            f"preset {preset!r} has no attacks for the {threat} threat model (it covers "
            f"{', '.join(table)}); give attack names instead"
        )
    out = []
    for label, name, settings in table[threat]:
        if not ensure_registered(name):
            notes.append(f"{label}: attack {name!r} is not available in this advml build; skipped")
            continue
        settings = dict(settings)
        if name == "apgd-t" and n_classes is not None and n_classes < 4:
            settings["loss"] = "margin"  # the targeted DLR loss needs 4 classes
            notes.append(f"{label}: {n_classes} classes, targeted margin loss instead of DLR")
        if name in ("apgd-t", "fab-t") and n_classes is not None and n_classes - 1 < 9:
            settings["n_targets"] = n_classes - 1
        out.append(step(name, settings, label=label))
    return out


def preset_table() -> list[tuple[str, str, str]]:
    """``(preset, norm, attacks)`` rows for docs and help."""
    rows = []
    for preset, table in PRESETS.items():
        for norm, entries in table.items():
            rows.append((preset, norm, ", ".join(label for label, _, _ in entries)))
    return rows
