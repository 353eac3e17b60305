"""Measurement: clean accuracy, worst-case robust accuracy over attack ensembles, diagnostics
that say when the number is not to be trusted, and reports (terminal, Markdown, HTML)."""

from advml.evaluation.clean import accuracy, predict
from advml.evaluation.diagnostics import Flag
from advml.evaluation.presets import PRESETS, AttackStep
from advml.evaluation.robust import RobustnessReport, StepStats, evaluate

__all__ = [
    "PRESETS",
    "AttackStep",
    "Flag",
    "RobustnessReport",
    "StepStats",
    "accuracy",
    "evaluate",
    "predict",
]
