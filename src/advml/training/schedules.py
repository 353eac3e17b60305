"""Learning-rate schedules as pure functions of training progress.

A schedule maps progress ``t`` in [0, 1] (fraction of all optimizer steps done) to a multiplier of
the base learning rate. Being stateless, a schedule needs nothing saved in a checkpoint: resuming
at step ``s`` of ``S`` recomputes ``lr = base * f(s / S)``.

- ``constant``: 1.
- ``cosine``: (1 + cos(pi t)) / 2 (Loshchilov & Hutter 2017, SGDR without restarts).
- ``step``: 0.1 ** (number of milestones at 50 % and 75 % passed) (He et al. 2016 style).
- ``cyclic``: linear 0 -> 1 over the first ``2/5`` of training, then 1 -> 0 (the one-cycle
  schedule Wong et al. 2020 use for FGSM-RS; peak at 2/5 of the run).
- ``dann``: ``(1 + 10 t) ** -0.75``, the annealing of domain-adversarial training (Ganin &
  Lempitsky 2015, §5: ``mu_p = mu_0 / (1 + alpha p) ** beta`` with alpha 10, beta 0.75).

:func:`ramp` is the linear warm-up of a recipe's own quantities (the ε of adversarial and
certified training, Gowal et al. 2018's κ), also a pure function of progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from advml.errors import UserError

Schedule = Callable[[float], float]


def constant(t: float) -> float:
    return 1.0


def cosine(t: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def step(t: float) -> float:
    return 0.1 ** sum(t >= milestone for milestone in (0.5, 0.75))


def cyclic(t: float, peak: float = 0.4) -> float:
    t = min(max(t, 0.0), 1.0)
    return t / peak if t < peak else (1.0 - t) / (1.0 - peak)


def ramp(t: float, start: float, end: float) -> float:
    """Linear warm-up factor: 0 until progress ``start``, 1 from ``end`` on, linear between
    (``start == end`` is a step at ``start``)."""
    if t >= end:
        return 1.0
    if t <= start:
        return 0.0
    return (t - start) / (end - start)


def dann(t: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    return (1.0 + alpha * min(max(t, 0.0), 1.0)) ** (-beta)


SCHEDULES: dict[str, Schedule] = {
    "constant": constant,
    "cosine": cosine,
    "step": step,
    "cyclic": cyclic,
    "dann": dann,
}


def get_schedule(name: str) -> Schedule:
    """The schedule called ``name``; a :class:`UserError` lists the valid names otherwise."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UserError(
            f"unknown LR schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
        ) from None
