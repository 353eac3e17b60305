"""Measurement: clean accuracy and worst-case robust accuracy over attack ensembles."""

from advml.evaluation.clean import accuracy, predict
from advml.evaluation.robust import RobustnessReport, evaluate

__all__ = ["RobustnessReport", "accuracy", "evaluate", "predict"]
