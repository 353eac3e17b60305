r"""One projected-gradient loop shared by FGSM/FGM, BIM, ILLC, PGD and MI-FGSM.

For every row (one sample, or one restart of one sample)::

    x_0     = x                      or a random point of S(x)  (random start)
    g_t     = grad_x J(x_t)        (with momentum: m_t = mu m_{t-1} + g_t / ||g_t||_1, used for g_t)
    x_{t+1} = Proj_S(x) ( x_t + alpha * d(g_t) )    (d: the threat's steepest-ascent direction)

Every iterate, the clean input included, is evaluated and the best one per sample is kept
(:class:`advml.attacks.base.Best`): the returned point is the best, not the last. With
``early_stop`` a sample leaves the batch as soon as any of its rows succeeds; later restarts
run only on samples not yet broken. Restarts are stacked on the batch dimension,
``stack_restarts`` at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advml.attacks.base import Objective, Problem, view_rows
from advml.attacks.rng import KeyedRNG, TorchRNG
from advml.errors import UserError

__all__ = ["check_positive_int", "run_iterative", "step_sizes"]


def check_positive_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{what} must be an integer >= {minimum}; got {value!r}")
    return value


def step_sizes(problem: Problem, step_size: float | Tensor | None, relative: float) -> Tensor:
    """Per-sample step sizes: ``step_size`` (float or ``(N,)``), else ``relative * eps``."""
    if step_size is None:
        eps = problem.eps
        if not torch.isfinite(eps).all():
            raise UserError(f"{problem.name}: with an infinite eps give an explicit step_size")
        return relative * eps
    if isinstance(step_size, Tensor):
        values = step_size.detach().to(device=problem.x.device, dtype=problem.x.dtype).reshape(-1)
        if values.numel() == 1:
            values = values.expand(problem.n)
        if values.numel() != problem.n:
            raise UserError(
                f"{problem.name}: step_size must be a float or have shape ({problem.n},)"
            )
    else:
        try:
            values = torch.full(
                (problem.n,), float(step_size), dtype=problem.x.dtype, device=problem.x.device
            )
        except (TypeError, ValueError):
            raise UserError(
                f"{problem.name}: step_size must be a number; got {step_size!r}"
            ) from None
    if not torch.isfinite(values).all() or (values < 0).any():
        raise UserError(f"{problem.name}: step_size must be finite and >= 0")
    return values


def run_iterative(
    problem: Problem,
    objective: Objective,
    *,
    steps: int,
    step: Tensor,
    random_start: bool,
    restarts: int,
    rng: KeyedRNG | TorchRNG,
    momentum: float | None = None,
    early_stop: bool = True,
    stack_restarts: int | None = None,
) -> Tensor:
    """Run the loop and return the best inputs per sample (shape of ``problem.x``)."""
    best = problem.start_best(objective)
    x = problem.x
    if problem.n == 0:
        return best.x
    if not random_start:
        restarts = 1
    chunk = restarts if stack_restarts is None else max(1, min(int(stack_restarts), restarts))
    todo = ~best.success if early_stop else torch.ones_like(best.success)
    for first in range(0, restarts, chunk):
        base = todo.nonzero().squeeze(1)
        if base.numel() == 0:
            break
        copies = min(chunk, restarts - first)
        sid = base.repeat(copies)
        restart_id = torch.arange(first, first + copies, device=x.device).repeat_interleave(
            base.numel()
        )
        threat = problem.threat_rows(sid)
        x0 = x[sid]
        # the keyed source hashes the inputs on first use: only when a start is drawn
        start = threat.random_start if random_start else None
        current = start(x0, rng.rows(sid, restart_id)) if start else x0.clone()
        alpha = view_rows(step[sid], x0)
        velocity = torch.zeros_like(x0) if momentum is not None else None
        for t in range(steps + 1):
            last = t == steps
            if last:
                logits = problem.forward(current, sid)
                value = objective(logits, sid)
            elif t == 0 and not random_start:
                value, grad, logits = problem.clean_value_and_grad(sid, objective)
            else:
                value, grad, logits = problem.value_and_grad(current, sid, objective)
            best.update(
                sid,
                current,
                value,
                problem.succeeded(logits, sid),
                unique=copies == 1,
                logits=logits,
            )
            if last:
                break
            if early_stop:
                keep = ~best.success[sid]
                if not bool(keep.all()):
                    sid, current, x0, grad, alpha = (
                        sid[keep],
                        current[keep],
                        x0[keep],
                        grad[keep],
                        alpha[keep],
                    )
                    if velocity is not None:
                        velocity = velocity[keep]
                    if sid.numel() == 0:
                        break
                    threat = problem.threat_rows(sid)
            if velocity is not None:
                l1 = grad.reshape(grad.shape[0], -1).abs().sum(dim=1)
                velocity = momentum * velocity + grad / view_rows(l1.clamp_min(1e-30), grad)
                direction = threat.ascent_direction(velocity, current)
            else:
                direction = threat.ascent_direction(grad, current)
            current = threat.project(current + alpha * direction, x0)
        if early_stop:
            todo = todo & ~best.success
    return best.x
