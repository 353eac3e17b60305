"""Adversarially learned representations (issue 8): games in which an adversary tries to read an
attribute from a learned representation and the encoder learns to hide it.

- :mod:`~advml.representation.grl` -- the gradient reversal layer and the schedules of Ganin &
  Lempitsky (2015);
- :mod:`~advml.representation.dann` -- domain-adversarial networks: the ``dann-digits``
  architecture and the ``dann`` recipe of the one trainer;
- :mod:`~advml.representation.domains`, :mod:`~advml.representation.adaptation` -- MNIST /
  MNIST-M / USPS pairs and the source-only / DANN / oracle experiment (``advml dann``);
- :mod:`~advml.representation.fairness`, :mod:`~advml.representation.fairness_metrics` --
  adversarially fair representations (Edwards & Storkey 2015; Madras et al. 2018; Zhang et al.
  2018): the ``fair`` recipe, ΔDP / ΔEO and the trade-off sweep (``advml fair``);
- :mod:`~advml.representation.probe` -- a fresh adversary trained on a frozen representation.

See ``docs/representation.md``.
"""

from advml.representation.dann import DANN, DANNNet
from advml.representation.grl import (
    GradientReversal,
    grad_reverse,
    grl_lambda,
    lr_annealing,
)
from advml.representation.probe import ProbeResult, probe_accuracy

__all__ = [
    "DANN",
    "DANNNet",
    "GradientReversal",
    "ProbeResult",
    "grad_reverse",
    "grl_lambda",
    "lr_annealing",
    "probe_accuracy",
]
