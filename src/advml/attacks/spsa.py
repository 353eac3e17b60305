r"""SPSA (Uesato, O'Donoghue, van den Oord & Kohli 2018, "Adversarial Risk and the Dangers of
Evaluating Against Weak Attacks", ICML): projected Adam on a gradient *estimated from model
outputs*, so it needs no gradient and sees through gradient masking.

Simultaneous-perturbation estimate of the gradient of the objective :math:`f` (the logit
margin :math:`\max_{j \ne y} z_j - z_y` by default) with :math:`m` antithetic pairs of
Rademacher directions :math:`v_j \in \{-1, +1\}^D` and a probe size :math:`\delta`:

.. math::  \hat g = \frac{1}{2 \delta m} \sum_{j=1}^{m}
           \big(f(x_t + \delta v_j) - f(x_t - \delta v_j)\big)\, v_j

(``nb_samples`` = :math:`2m` model queries per step). The iterate follows Adam on
:math:`\hat g` (ascent, learning rate ``lr``) and is projected back onto the threat model:
:math:`x_{t+1} = \Pi_{S(x)}(x_t + \mathrm{lr}\,\hat m_t / (\sqrt{\hat v_t} + 10^{-8}))`.
Defaults follow the paper and CleverHans: :math:`\delta = 0.01`, Adam lr 0.01, a uniform
random start in the threat model.

Batched: the probes of every active sample are stacked on the batch dimension (at most
``max_batch`` rows per forward pass). Probes are clipped to the input box (every query is a
valid input; a coordinate at a face of the box is then estimated from a one-sided
difference). Each probe is a query whose answer is used twice: for the estimate, and as a
candidate — a probe inside the threat model that fools the model is kept. Every iterate is
evaluated (one query) and the best per sample is returned. Randomness is keyed per sample
(:mod:`advml.attacks.rng`): with ``seed`` results do not depend on the batch.

Queries per sample: ``1`` (clean) ``+ 1`` (random start) ``+ steps · (nb_samples + 1)`` ``+ 1``
(final check) at most; samples leave as soon as they are fooled.

Unlike CleverHans' PyTorch ``spsa`` (one sample at a time; its estimate is taken at
``2x + δv`` instead of at the iterate, cleverhans-lab/cleverhans#1249), this estimate is at
the current iterate and the whole batch runs together.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Objective, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import KeyedRNG, TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["spsa", "spsa_gradient"]

_PAPER = "Uesato et al. 2018, Adversarial Risk and the Dangers of Evaluating Against Weak Attacks"


def _check_float(value: object, what: str, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"spsa: {what} must be a number; got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and low < value < high):
        raise UserError(f"spsa: {what} must be in ({low:g}, {high:g}); got {value!r}")
    return value


def spsa_gradient(
    problem: Problem,
    goal: Objective,
    current: Tensor,
    sid: Tensor,
    rng: KeyedRNG | TorchRNG,
    *,
    pairs: int,
    delta: float,
    max_batch: int,
    x0: Tensor | None = None,
) -> Tensor:
    """The SPSA estimate of ``d goal / d x`` at the rows ``current`` (samples ``sid``).

    ``2 * pairs`` queries per row, stacked on the batch dimension in forward passes of at most
    ``max_batch`` rows (whole rows per pass). ``rng`` must be a fresh source for these rows
    (its row ``i`` gives row ``i``'s directions). With ``x0`` (the clean rows) given, probes
    inside the threat model that fool the model are offered to ``problem.best``.
    """
    rows = current.shape[0]
    flat = current.reshape(rows, -1)
    d = flat.shape[1]
    threat = problem.threat
    per_pass = max(1, max_batch // (2 * pairs))
    grads = []
    for start in range(0, rows, per_pass):
        idx = torch.arange(start, min(start + per_pass, rows), device=current.device)
        k = idx.numel()
        part_rng = rng.rows(idx) if isinstance(rng, KeyedRNG) else rng
        u = part_rng.uniform((k, pairs * d), dtype=torch.float32, device=current.device)
        v = torch.where(u < 0.5, -1.0, 1.0).to(current.dtype).reshape(k, pairs, d)
        centre = flat[idx].unsqueeze(1)
        probes = torch.cat([centre + delta * v, centre - delta * v], dim=1)  # (k, 2m, d)
        probes = threat.clip_box(probes).reshape((k * 2 * pairs, *current.shape[1:]))
        rep = sid[idx].repeat_interleave(2 * pairs)
        logits = problem.forward(probes, rep)
        values = goal(logits, rep).reshape(k, 2 * pairs).to(current.dtype)
        diff = values[:, :pairs] - values[:, pairs:]
        grads.append((diff.unsqueeze(2) * v).mean(dim=1) / (2.0 * delta))
        if x0 is not None:
            _offer_probes(
                problem, goal, probes, rep, logits, x0[idx].repeat_interleave(2 * pairs, 0)
            )
    return torch.cat(grads).reshape(current.shape)


def _offer_probes(problem, goal, probes, rep, logits, clean) -> None:
    """Keep probes that fool the model and lie inside the threat model (queries paid for)."""
    fooled = problem.succeeded(logits, rep)
    if not bool(fooled.any()):
        return
    pick = fooled.nonzero().squeeze(1)
    rows_threat = problem.threat_rows(rep[pick])
    inside = rows_threat.contains(probes[pick], clean[pick])
    pick = pick[inside]
    if pick.numel() == 0:
        return
    assert problem.best is not None
    problem.best.update(
        rep[pick], probes[pick], goal(logits[pick], rep[pick]), torch.ones_like(inside[inside])
    )


@register(
    "spsa",
    norms=("linf", "l2"),
    targeted=True,
    kind="score",
    paper=_PAPER,
    defaults="steps = 100, nb_samples = 128 queries per step, delta = 0.01, Adam lr = 0.01, "
    "random start, loss = margin",
)
def spsa(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 100,
    nb_samples: int = 128,
    delta: float = 0.01,
    lr: float = 0.01,
    loss: str | Loss = "margin",
    random_start: bool = True,
    early_stop: bool = True,
    max_batch: int = 8192,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """SPSA with Adam (L∞ and L2), score-based: only the model's logits are used.

    Args:
        steps: Adam steps.
        nb_samples: queries per step for the gradient estimate (even: ``nb_samples / 2``
            antithetic pairs ``x ± delta v``). CleverHans' ``spsa_samples=128`` is 256 here.
        delta: probe size (in input units).
        lr: Adam learning rate (betas 0.9, 0.999).
        loss: objective to maximize (``"margin"`` = CW logit margin, ``"ce"``, ``"dlr"`` or a
            callable ``(logits, labels, targeted) -> (N,)``).
        random_start: start from a uniform point of the threat model (else from ``x``).
        early_stop: drop a sample once it is fooled (``False``: run every step).
        max_batch: at most this many probes per forward pass (bounds memory).
        seed, generator: randomness (see :func:`advml.attacks.rng.make_rng`).
    """
    check_positive_int(steps, "steps")
    check_positive_int(nb_samples, "nb_samples", minimum=2)
    if nb_samples % 2:
        raise UserError(f"spsa: nb_samples must be even (antithetic pairs); got {nb_samples}")
    check_positive_int(max_batch, "max_batch")
    delta = _check_float(delta, "delta")
    lr = _check_float(lr, "lr")
    beta1, beta2, tiny = 0.9, 0.999, 1e-8
    with frozen_eval(model):
        problem = Problem("spsa", model, x, y, threat, targeted)
        goal = objective(loss, problem.y, problem.targeted)
        best = problem.start_best(goal)
        if problem.n == 0:
            return problem.finish(best.x, goal)
        if not torch.isfinite(problem.eps).all():
            raise UserError("spsa: needs a finite eps")
        rng = make_rng(problem.x, seed, generator)
        todo = ~best.success if early_stop else torch.ones_like(best.success)
        sid = (todo & (problem.eps > 0)).nonzero().squeeze(1)
        if sid.numel() == 0:
            return problem.finish(best.x, goal)
        x0 = problem.x[sid]
        if random_start:
            current = problem.threat_rows(sid).random_start(x0, rng.rows(sid, 0))
            logits = problem.forward(current, sid)
            best.update(
                sid, current, goal(logits, sid), problem.succeeded(logits, sid), unique=True
            )
        else:
            current = x0.clone()
        m = torch.zeros_like(current)
        v = torch.zeros_like(current)
        for t in range(1, steps + 1):
            if early_stop:
                keep = ~best.success[sid]
                if not bool(keep.all()):
                    sid, x0, current, m, v = sid[keep], x0[keep], current[keep], m[keep], v[keep]
                if sid.numel() == 0:
                    break
            grad = spsa_gradient(
                problem,
                goal,
                current,
                sid,
                rng.rows(sid, t),
                pairs=nb_samples // 2,
                delta=delta,
                max_batch=max_batch,
                x0=x0,
            )
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad.square()
            step = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + tiny)
            current = problem.threat_rows(sid).project(current + lr * step, x0)
            logits = problem.forward(current, sid)
            best.update(
                sid, current, goal(logits, sid), problem.succeeded(logits, sid), unique=True
            )
        return problem.finish(best.x, goal)
