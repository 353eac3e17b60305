r"""Box-constrained L-BFGS attack (Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow & Fergus
2014, "Intriguing properties of neural networks", ICLR), the first adversarial-example attack:

.. math::
    \min_{r} \; c\,|r| + \mathrm{loss}_f(x + r, l) \quad \text{s.t.} \quad x + r \in [low, high]^D,

with a line search over ``c`` for the smallest perturbation that is classified as ``l``. Here
:math:`|r|` is :math:`\|r\|_2^2` (smooth at ``r = 0``, as in the Foolbox and ART versions) and,
dividing by ``c``, the constant multiplies the loss instead, so that the binary search is the
one shared with C&W and EAD (:class:`advml.attacks.optimization.ConstSearch`):

.. math::
    \min_{x'} \; \phi(x') = \|x' - x\|_2^2 + c \cdot \mathrm{loss}(x')
    \quad \text{s.t.} \quad low \le x' \le high,

* targeted (the paper): :math:`\mathrm{loss} = \mathrm{CE}(Z(x'), t) = \log\sum_j e^{Z_j} - Z_t`;
* untargeted: :math:`\mathrm{loss} = -\log(1 - p_y) = \log\sum_j e^{Z_j} - \log\sum_{j \ne y}
  e^{Z_j}`, the cross-entropy of "any class but ``y``" (bounded below by 0, unlike ``-CE``).

A larger ``c`` gives a more aggressive attack; per sample, ``c`` grows ×10 until the solution
is adversarial and is then bisected for all ``binary_steps`` (the cross-entropy keeps rewarding
distance past the boundary, so unlike C&W's hinge every smaller successful ``c`` shortens the
perturbation: no settling), and the smallest adversarial seen is returned. After each value of
``c`` the segment from ``x`` to the best success is bisected for the boundary, as in C&W.

**The solver is a batched projected L-BFGS in torch**, not ``scipy.optimize`` on the flattened
batch: the batch objective is a sum of per-sample terms, so one joint L-BFGS-B solve has the
same minimizers, but its line search and curvature pairs mix samples, making every result
depend on what else is in the batch (and forcing a GPU→CPU copy per iteration, ART's weak
point). Here each sample has its own history of ``memory`` curvature pairs
:math:`(s, y)` (kept only when :math:`s^\top y > 10^{-10} \|y\|^2`), its own two-loop
recursion with the scaling :math:`\gamma = s^\top y / y^\top y`, and its own projected
backtracking line search: with the active set :math:`A = \{i: x'_i = low, g_i > 0\} \cup \{i:
x'_i = high, g_i < 0\}`, the direction is :math:`d = -H g` on the free features (0 on
:math:`A`; steepest descent when that is not a descent direction), the trial point is
:math:`\Pi_{box}(x' + \alpha d)` for :math:`\alpha = 1, 1/2, 1/4, …` (without curvature
pairs, e.g. on the first iteration, ``d`` has unit length, as in L-BFGS-B) and the first
with the Armijo decrease
:math:`\phi(x_\alpha) \le \phi(x') + 10^{-4} g^\top (x_\alpha - x')` is taken. A sample stops
when its projected gradient has max-norm below ``gtol`` or its objective changes by less than
``ftol`` relatively (scipy's ``pgtol``/``factr`` tests), or after ``steps`` iterations. The
result is the same for every batch composition, and a test checks it against
``scipy.optimize.minimize(method="L-BFGS-B")`` on a convex case.

Every point the model evaluates (line-search trials included) is a candidate; the threat model
(L2) decides ``success`` and the output check as for C&W (``eps = inf``: minimum norm).

Defaults: 10 values of ``c`` from ``initial_const = 1``, up to 100 L-BFGS iterations each,
memory 10, at most 20 backtracking steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import margin
from advml.attacks.optimization import ConstSearch, MinNormTracker, check_const, work_dtype
from advml.attacks.registry import register
from advml.threats import ThreatModel

__all__ = ["lbfgs", "minimize_box", "two_loop"]

_PAPER = "Szegedy et al. 2014, Intriguing properties of neural networks"


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=-1)


def two_loop(g: Tensor, s: Tensor, yv: Tensor, valid: Tensor) -> Tensor:
    """``H g`` by the L-BFGS two-loop recursion, batched: ``g`` (n, D), history ``s``, ``yv``
    (n, m, D) oldest first, ``valid`` (n, m) marking the filled slots. Rows without a pair
    return ``g``."""
    m = s.shape[1]
    sy = _dot(s, yv)
    rho = torch.where(valid, 1.0 / torch.where(valid, sy, torch.ones_like(sy)), 0.0)
    q = g.clone()
    alphas = []
    for j in range(m - 1, -1, -1):
        a = rho[:, j] * _dot(s[:, j], q)
        q = q - a[:, None] * yv[:, j]
        alphas.append(a)
    alphas.reverse()
    yy = _dot(yv[:, -1], yv[:, -1])
    gamma = torch.where(valid[:, -1], sy[:, -1] / torch.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for j in range(m):
        b = rho[:, j] * _dot(yv[:, j], r)
        r = r + (alphas[j] - b)[:, None] * s[:, j]
    return r


def minimize_box(
    evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    z0: Tensor,
    low: float,
    high: float,
    *,
    steps: int = 100,
    memory: int = 10,
    line_search_steps: int = 20,
    gtol: float = 1e-5,
    ftol: float = 2.2e-9,
    stop: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimize ``n`` independent functions of ``z`` (rows of ``z0``, shape ``(n, D)``) over the
    box ``[low, high]^D`` by projected L-BFGS (module docstring), all rows at once.

    Args:
        evaluate: ``(z_rows, rows) -> (phi, grad)`` for the rows ``rows`` (indices into
            ``z0``); ``z_rows`` lies in the box.
        z0: the starting points (in the box).
        stop: optional ``rows -> bool mask``: rows to drop after an iteration (early stop).

    Returns:
        ``(z, phi)``: each row's last accepted point and its value.
    """
    z_out = z0.clone()
    rows = torch.arange(z0.shape[0], device=z0.device)
    phi, g = evaluate(z0, rows)
    phi_out = phi.clone()
    z = z0
    n, d = z.shape
    s_hist = z.new_zeros(n, memory, d)
    y_hist = z.new_zeros(n, memory, d)
    valid = torch.zeros(n, memory, dtype=torch.bool, device=z.device)
    for _ in range(steps):
        if rows.numel() == 0:
            break
        free = ~(((z <= low) & (g > 0)) | ((z >= high) & (g < 0)))
        g_free = torch.where(free, g, torch.zeros_like(g))
        projected = (z - g).clamp(low, high) - z
        active = projected.abs().amax(dim=1) > gtol
        direction = -torch.where(free, two_loop(g_free, s_hist, y_hist, valid), 0.0)
        descent = _dot(direction, g)
        direction = torch.where((descent < 0)[:, None], direction, -g_free)
        # without curvature pairs (e.g. the first iteration): a step of unit length
        size = direction.norm(dim=1, keepdim=True)
        unit = direction / torch.where(size > 0, size, 1.0)
        direction = torch.where(valid.any(dim=1, keepdim=True), direction, unit)
        # projected backtracking line search on the rows not yet accepted
        step = torch.ones(n, dtype=z.dtype, device=z.device)
        pending = active.clone()
        accepted = torch.zeros_like(active)
        z_new, phi_new, g_new = z.clone(), phi.clone(), g.clone()
        for _ls in range(line_search_steps):
            trying = pending.nonzero().squeeze(1)
            if trying.numel() == 0:
                break
            trial = (z[trying] + step[trying, None] * direction[trying]).clamp(low, high)
            phi_t, g_t = evaluate(trial, rows[trying])
            ok = phi_t <= phi[trying] + 1e-4 * _dot(g[trying], trial - z[trying])
            took = trying[ok]
            z_new[took], phi_new[took], g_new[took] = trial[ok], phi_t[ok], g_t[ok]
            accepted[took] = True
            pending[took] = False
            step[trying[~ok]] *= 0.5
        # curvature pairs of the rows that moved (kept when s.y > 0)
        s_vec, y_vec = z_new - z, g_new - g
        pair = (accepted & (_dot(s_vec, y_vec) > 1e-10 * _dot(y_vec, y_vec)))[:, None]
        s_hist = torch.where(
            pair[:, :, None], torch.cat([s_hist[:, 1:], s_vec[:, None]], 1), s_hist
        )
        y_hist = torch.where(
            pair[:, :, None], torch.cat([y_hist[:, 1:], y_vec[:, None]], 1), y_hist
        )
        valid = torch.where(pair, torch.cat([valid[:, 1:], torch.ones_like(pair)], 1), valid)
        scale = torch.maximum(torch.maximum(phi.abs(), phi_new.abs()), torch.ones_like(phi))
        keep = accepted & ((phi - phi_new).abs() > ftol * scale)
        z, phi, g = z_new, phi_new, g_new
        z_out[rows], phi_out[rows] = z, phi
        if stop is not None:
            keep &= ~stop(rows)
        if not bool(keep.all()):
            rows, z, phi, g = rows[keep], z[keep], phi[keep], g[keep]
            s_hist, y_hist, valid = s_hist[keep], y_hist[keep], valid[keep]
            n = rows.numel()
    return z_out, phi_out


@register(
    "lbfgs",
    norms=("l2",),
    targeted=True,
    minimum_norm=True,
    paper=_PAPER,
    defaults="binary_steps = 10, initial_const = 1, steps = 100, memory = 10",
)
def lbfgs(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    binary_steps: int = 10,
    initial_const: float = 1.0,
    steps: int = 100,
    memory: int = 10,
    line_search_steps: int = 20,
    gtol: float = 1e-5,
    ftol: float | None = None,
    early_stop: bool = True,
) -> AttackResult:
    """Box-constrained L-BFGS (Szegedy et al. 2014); see the module docstring.

    Args:
        binary_steps: values of ``c`` tried per sample (the line search over ``c``).
        initial_const: the first ``c`` (the weight of the loss against ``||r||^2``).
        steps: maximum L-BFGS iterations per value of ``c``.
        memory: curvature pairs kept per sample.
        line_search_steps: maximum halvings of the step per iteration.
        gtol: stop when the projected gradient's max-norm falls below this.
        ftol: stop when the objective changes by less than this, relatively (default: scipy's
            2.2e-9 in float64, 1.2e-6 (10 machine epsilons) in float32).
        early_stop: with a finite eps, stop a sample once it has a success inside the ball.

    ``result.loss`` is the logit margin at ``x_adv`` (positive iff successful).
    """
    check_positive_int(binary_steps, "binary_steps")
    check_positive_int(steps, "steps")
    check_positive_int(memory, "memory")
    check_positive_int(line_search_steps, "line_search_steps")
    initial_const = check_const(initial_const, "initial_const", "lbfgs")
    gtol = check_const(gtol, "gtol", "lbfgs", allow_zero=True)
    with frozen_eval(model):
        problem = Problem("lbfgs", model, x, y, threat, targeted)
        labels = problem.y
        work = work_dtype(problem.x.dtype)
        ftol = (
            max(2.2e-9, 10 * torch.finfo(work).eps)
            if ftol is None
            else check_const(ftol, "ftol", "lbfgs", allow_zero=True)
        )

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], targeted)

        def loss(logits: Tensor, sid: Tensor) -> Tensor:
            z = logits.to(work)
            lab = labels[sid].reshape(-1, 1)
            total = torch.logsumexp(z, dim=1)
            if targeted:
                return total - z.gather(1, lab).squeeze(1)
            return total - torch.logsumexp(z.scatter(1, lab, -math.inf), dim=1)

        tracker = MinNormTracker(problem, goal)
        if problem.n == 0:
            return tracker.finish()
        low, high = threat.low, threat.high
        shape = problem.x.shape[1:]
        x_all = _flat(problem.x).to(work)
        search = ConstSearch(problem.n, initial_const, work, problem.x.device, settle=-1.0)
        found = torch.zeros(problem.n, dtype=torch.bool, device=problem.x.device)

        def evaluate(z: Tensor, sid: Tensor, const: Tensor, x0: Tensor) -> tuple[Tensor, Tensor]:
            """phi and its gradient at rows ``z`` of samples ``sid``; offers them as candidates."""
            z_in = z.to(problem.x.dtype).reshape((-1, *shape))
            value, grad, logits = problem.value_and_grad(z_in, sid, loss)
            success = problem.succeeded(logits, sid)
            tracker.offer(sid, z_in, logits, success)
            found[sid] |= success
            delta = z - x0
            phi = _dot(delta, delta) + const * value.to(work)
            return phi, 2 * delta + const[:, None] * _flat(grad).to(work)

        for _ in range(binary_steps):
            todo = ~tracker.done() if early_stop else ~problem.clean_success
            todo &= ~search.settled
            before = tracker.size()
            sid = todo.nonzero().squeeze(1)
            if sid.numel() == 0:
                break
            found[sid] = False
            x0, const = x_all[sid], search.const[sid]

            def rows_eval(z: Tensor, rows: Tensor, sid=sid, x0=x0, const=const):
                return evaluate(z, sid[rows], const[rows], x0[rows])

            def stop(rows: Tensor, sid=sid) -> Tensor:
                return tracker.done()[sid[rows]]

            minimize_box(
                rows_eval,
                x0.clone(),
                low,
                high,
                steps=steps,
                memory=memory,
                line_search_steps=line_search_steps,
                gtol=gtol,
                ftol=ftol,
                stop=stop if early_stop else None,
            )
            tracker.refine(sid)
            search.update(sid, found[sid], before[sid], tracker.size()[sid])
        return tracker.finish()
