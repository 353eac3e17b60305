"""The pieces every attack shares: its result, the model context, input checks, query
counting, best-iterate tracking and the final output check.

An attack builds a :class:`Problem` (which validates the inputs, runs the clean forward pass
and owns the per-sample query counter and the :class:`Best` tracker), iterates on *rows* (a
row is one sample, or one restart of one sample; ``sid`` maps rows to samples), and ends with
:meth:`Problem.finish`, which re-evaluates the returned inputs in one forward pass, decides
success from it, and raises :class:`ThreatViolation` if any returned input leaves the threat
model. Nothing is clipped silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from advml.attacks import registry
from advml.errors import AdvmlError, UserError
from advml.threats import ThreatModel

__all__ = [
    "AttackResult",
    "Best",
    "ModelOutputError",
    "Objective",
    "Problem",
    "ThreatViolation",
    "frozen_eval",
    "view_rows",
]

#: ``objective(logits, sid) -> (rows,)``: what an attack maximizes, per row.
Objective = Callable[[Tensor, Tensor], Tensor]


class ThreatViolation(AdvmlError):
    """An attack returned inputs outside its threat model: a bug in advml, never clipped away."""


class ModelOutputError(UserError):
    """The model returned something an attack cannot use (wrong shape, NaN/inf, no gradient)."""


@dataclasses.dataclass
class AttackResult:
    """What every attack returns.

    Attributes:
        x_adv: adversarial inputs, same shape, dtype and device as ``x``; always inside the
            threat model (checked).
        success: bool ``(N,)``: misclassified (untargeted) or classified as the target
            (targeted), decided by a final forward pass on ``x_adv``.
        loss: ``(N,)`` the attack's objective at ``x_adv`` (higher = stronger attack, e.g.
            cross-entropy of the true class, or minus the cross-entropy of the target).
        norm: ``(N,)`` perturbation size ``||x_adv - x||`` in the threat's norm.
        queries: int64 ``(N,)`` forward passes of each sample through the model (a gradient
            counts as one; the clean pass and the final check included).
        logits: ``(N, C)`` the model's outputs at ``x_adv`` (from the final forward pass).
        attack: the attack's registered name.
    """

    x_adv: Tensor
    success: Tensor
    loss: Tensor
    norm: Tensor
    queries: Tensor
    logits: Tensor
    attack: str = ""

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack succeeded (0.0 for an empty batch)."""
        n = len(self)
        return float(self.success.float().mean().item()) if n else 0.0

    def __repr__(self) -> str:
        n = len(self)
        return (
            f"AttackResult(attack={self.attack!r}, n={n}, success={int(self.success.sum())}/{n}, "
            f"mean_norm={float(self.norm.float().mean()) if n else 0.0:.4g}, "
            f"queries={int(self.queries.sum())})"
        )


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with ``requires_grad=False`` on its parameters, then restore.

    The mode of every submodule and the flag of every parameter are restored exactly as they
    were (even on exception), so models with mixed train/eval submodules come back unchanged.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
        for param, flag in flags:
            param.requires_grad_(flag)


def view_rows(values: Tensor, like: Tensor) -> Tensor:
    """A per-row vector ``(n,)`` shaped ``(n, 1, ..., 1)`` to broadcast against ``like``."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


class Best:
    """Best iterate per sample: a successful one first, then the highest score.

    ``update`` accepts rows that may repeat samples (several restarts side by side); for each
    sample the best of its rows competes with the stored one. Ties keep the earlier iterate.

    When the rows come with their ``logits``, the tracker keeps the logits of each sample's
    best iterate, so :meth:`Problem.finish` can skip one more forward pass; ``logits_known``
    says for which samples it can.
    """

    def __init__(
        self, x: Tensor, score: Tensor, success: Tensor, logits: Tensor | None = None
    ) -> None:
        self.x = x.detach().clone()
        self.score = score.detach().clone()
        self.success = success.detach().clone()
        self.logits = logits.detach().clone() if logits is not None else None
        self.logits_known = torch.full_like(self.success, logits is not None, dtype=torch.bool)

    def update(
        self,
        sid: Tensor,
        x_rows: Tensor,
        score: Tensor,
        success: Tensor,
        *,
        unique: bool = False,
        logits: Tensor | None = None,
    ) -> None:
        """Offer rows ``x_rows`` of samples ``sid`` with their scores and success flags.

        ``unique=True`` promises that ``sid`` has no repeats (skips the per-sample reduction).
        ``logits`` (the model's outputs on ``x_rows``) lets :meth:`Problem.finish` reuse them.
        """
        n_rows = sid.shape[0]
        if n_rows == 0:
            return
        score = score.detach().to(self.score.dtype)
        success = success.detach()
        if unique:
            samples, pick = sid, torch.arange(n_rows, device=sid.device)
        else:
            samples, pick = self._best_rows(sid, score, success)
        new_s, new_score = success[pick], score[pick]
        old_s, old_score = self.success[samples], self.score[samples]
        better = (new_s & ~old_s) | ((new_s == old_s) & (new_score > old_score))
        samples, pick = samples[better], pick[better]
        self.x[samples] = x_rows[pick].detach().to(self.x.dtype)
        self.score[samples] = score[pick]
        self.success[samples] = success[pick]
        if logits is not None and self.logits is not None:
            self.logits[samples] = logits[pick].detach().to(self.logits.dtype)
            self.logits_known[samples] = True
        else:
            self.logits_known[samples] = False

    def _best_rows(self, sid: Tensor, score: Tensor, success: Tensor) -> tuple[Tensor, Tensor]:
        """For each sample present in ``sid``: its best row (success, then score, then first)."""
        n, n_rows = self.score.shape[0], sid.shape[0]
        ninf = torch.tensor(float("-inf"), dtype=score.dtype, device=score.device)
        any_success = torch.zeros(n, dtype=score.dtype, device=score.device)
        any_success = any_success.scatter_reduce(0, sid, success.to(score.dtype), "amax")
        eligible = success == any_success[sid].bool()
        key = torch.where(eligible, score, ninf)
        top = torch.full((n,), float("-inf"), dtype=score.dtype, device=score.device)
        top = top.scatter_reduce(0, sid, key, "amax")
        chosen = eligible & (key == top[sid])
        rows = torch.arange(n_rows, device=sid.device)
        pick = torch.full((n,), n_rows, dtype=torch.long, device=sid.device)
        pick = pick.scatter_reduce(0, sid, torch.where(chosen, rows, n_rows), "amin")
        samples = (pick < n_rows).nonzero().squeeze(1)
        return samples, pick[samples]


class Problem:
    """One attack call: validated inputs, query counting, success criterion and best tracker.

    Args:
        name: the registered attack name (its metadata decides which threats are accepted).
        model, x, y, threat, targeted: as passed to the attack.
        keep_clean_graph: run the clean forward pass with autograd on, so that
            :meth:`clean_value_and_grad` can reuse it (attacks that start at ``x``).
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        targeted: bool,
        *,
        keep_clean_graph: bool = False,
    ) -> None:
        self.info = registry.info(name)
        self.name = self.info.name
        if not isinstance(model, nn.Module):
            raise UserError(
                f"{self.name}: model must be a torch.nn.Module; got {type(model).__name__}"
            )
        if not isinstance(threat, ThreatModel):
            raise UserError(
                f"{self.name}: threat must be an advml.threats threat model (Linf, L2, L1, L0); "
                f"got {type(threat).__name__}"
            )
        if threat.name not in self.info.norms:
            raise UserError(
                f"{self.name} does not support the {threat.name} threat model; it supports "
                f"{', '.join(sorted(self.info.norms))}"
            )
        if targeted and not self.info.targeted:
            raise UserError(f"{self.name} has no targeted variant; call it with targeted=False")
        if torch.is_inference_mode_enabled() and self.info.kind == "gradient":
            raise UserError(f"{self.name} needs gradients; call it outside torch.inference_mode()")
        self.model = model
        self.threat = threat
        self.targeted = bool(targeted)
        self.x = self._check_x(x)
        self.n = int(self.x.shape[0])
        self.y = self._check_y(y)
        self.eps = threat.eps_vector(self.x)
        self.queries = torch.zeros(self.n, dtype=torch.long, device=self.x.device)
        self.all = torch.arange(self.n, device=self.x.device)
        self._clean_input: Tensor | None = None
        self._clean_graph: Tensor | None = None
        self.clean_logits = self._clean_forward(keep_clean_graph)
        self.n_classes = int(self.clean_logits.shape[1]) if self.n else 0
        if self.n and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            what = "targets" if self.targeted else "labels"
            raise UserError(
                f"{self.name}: {what} must be class indices in [0, {self.n_classes}); got "
                f"values in "
                f"[{int(self.y.min())}, {int(self.y.max())}]"
            )
        self.clean_success = self.succeeded(self.clean_logits, self.all)
        self.best: Best | None = None

    # ---- validation --------------------------------------------------------------------

    def _check_x(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise UserError(
                f"{self.name}: x must be a torch.Tensor of shape (N, ...); got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise UserError(f"{self.name}: x must be a floating-point tensor; got {x.dtype}")
        if x.ndim < 2:
            raise UserError(
                f"{self.name}: x must have shape (N, features...); got shape {tuple(x.shape)}"
            )
        x = x.detach()
        if x.numel() and not torch.isfinite(x).all():
            raise UserError(f"{self.name}: x contains NaN or inf")
        outside = ~self.threat.in_box(x)
        if outside.any():
            raise UserError(
                f"{self.name}: {int(outside.sum())} of {x.shape[0]} inputs lie outside the "
                f"threat's box "
                f"[{self.threat.low:g}, {self.threat.high:g}] (values in [{float(x.min()):g}, "
                f"{float(x.max()):g}]); rescale x or set the threat's low/high"
            )
        return x

    def _check_y(self, y: Tensor) -> Tensor:
        what = "targets" if self.targeted else "labels"
        if not isinstance(y, Tensor):
            try:
                y = torch.as_tensor(y)
            except (TypeError, ValueError, RuntimeError):
                raise UserError(
                    f"{self.name}: y must be a tensor of class indices; got {type(y).__name__}"
                ) from None
        if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise UserError(f"{self.name}: y must hold integer class indices; got dtype {y.dtype}")
        if y.ndim != 1 or y.shape[0] != self.n:
            raise UserError(
                f"{self.name}: y ({what}) must have shape ({self.n},), one per input; "
                f"got {tuple(y.shape)}"
            )
        return y.detach().to(device=self.x.device, dtype=torch.long)

    def _check_logits(self, logits: Tensor, rows: int, where: str) -> Tensor:
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != rows:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ModelOutputError(
                f"{self.name}: the model must return logits of shape (N, C); got {shape} "
                f"for {rows} inputs"
            )
        if logits.shape[1] < 2:
            raise ModelOutputError(
                f"{self.name}: the model returns {logits.shape[1]} logit per input; attacks "
                "need C >= 2 "
                "classes (return two logits for a binary classifier)"
            )
        bad = ~torch.isfinite(logits).all(dim=1)
        if bad.any():
            raise ModelOutputError(
                f"{self.name}: the model returned NaN/inf logits for {int(bad.sum())} of "
                f"{rows} {where} "
                "inputs; fix the model's numerics before attacking it"
            )
        return logits

    def _call_model(self, x: Tensor) -> Tensor:
        try:
            return self.model(x)
        except RuntimeError as error:
            param = next(self.model.parameters(), None)
            if param is not None and (param.device != x.device or param.dtype != x.dtype):
                raise UserError(
                    f"{self.name}: the model's parameters are {param.dtype} on {param.device} "
                    "but x is "
                    f"{x.dtype} on {x.device}; move one to match ({error})"
                ) from error
            raise

    def _clean_forward(self, keep_graph: bool) -> Tensor:
        if self.n == 0:
            return torch.zeros(0, 0, dtype=self.x.dtype, device=self.x.device)
        self.queries += 1
        if keep_graph:
            with torch.enable_grad():
                xr = self.x.clone().requires_grad_(True)
                logits = self._check_logits(self._call_model(xr), self.n, "clean")
            self._clean_input, self._clean_graph = xr, logits
            return logits.detach()
        with torch.no_grad():
            return self._check_logits(self._call_model(self.x), self.n, "clean")

    # ---- model access ------------------------------------------------------------------

    def succeeded(self, logits: Tensor, sid: Tensor) -> Tensor:
        """Success per row: argmax differs from the label, or equals the target."""
        if sid.numel() == 0:
            return torch.zeros(0, dtype=torch.bool, device=self.x.device)
        pred = logits.argmax(dim=1)
        return pred == self.y[sid] if self.targeted else pred != self.y[sid]

    def forward(self, x_rows: Tensor, sid: Tensor) -> Tensor:
        """Logits of the rows, without gradient; counts one query per row."""
        self.queries.index_add_(0, sid, torch.ones_like(sid))
        with torch.no_grad():
            return self._check_logits(
                self._call_model(x_rows.detach()), x_rows.shape[0], "adversarial"
            )

    def value_and_grad(
        self, x_rows: Tensor, sid: Tensor, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(objective, d objective / d x, logits)`` for the rows; one query per row."""
        self.queries.index_add_(0, sid, torch.ones_like(sid))
        with torch.enable_grad():
            xr = x_rows.detach().requires_grad_(True)
            logits = self._check_logits(self._call_model(xr), xr.shape[0], "adversarial")
            value = objective(logits, sid)
            return self._grad(value, xr, logits)

    def values_and_jacobian(
        self, x_rows: Tensor, sid: Tensor, fn: Callable[[Tensor, Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``fn(logits, sid) -> (rows, K)`` and its Jacobian ``(rows, K, ...)``; one query per row.

        Uses ``K`` backward passes through one forward pass (``K`` is small: candidate classes).
        """
        self.queries.index_add_(0, sid, torch.ones_like(sid))
        with torch.enable_grad():
            xr = x_rows.detach().requires_grad_(True)
            logits = self._check_logits(self._call_model(xr), xr.shape[0], "adversarial")
            values = fn(logits, sid)
            if not values.requires_grad:
                raise ModelOutputError(
                    f"{self.name}: the model's output does not depend differentiably on its input"
                )
            k = values.shape[1]
            grads = []
            for j in range(k):
                (g,) = torch.autograd.grad(
                    values[:, j].sum(), xr, retain_graph=j < k - 1, allow_unused=True
                )
                grads.append(torch.zeros_like(xr) if g is None else g)
        jac = torch.stack(grads, dim=1)
        if not torch.isfinite(jac).all():
            raise ModelOutputError(f"{self.name}: the model's input gradient contains NaN/inf")
        return values.detach(), jac.detach(), logits.detach()

    def clean_value_and_grad(
        self, sid: Tensor, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Like :meth:`value_and_grad` at the clean inputs ``x[sid]``, reusing the clean pass."""
        if self._clean_graph is None or self._clean_input is None:
            return self.value_and_grad(self.x[sid], sid, objective)
        logits, xr = self._clean_graph, self._clean_input
        self._clean_graph = self._clean_input = None
        with torch.enable_grad():
            value = objective(logits[sid], sid)
            value, grad, _ = self._grad(value, xr, logits)
        return value, grad[sid], logits[sid].detach()

    def _grad(self, value: Tensor, xr: Tensor, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not value.requires_grad:
            raise ModelOutputError(
                f"{self.name}: the model's output does not depend differentiably on its "
                "input; use a "
                "score- or decision-based attack"
            )
        (grad,) = torch.autograd.grad(value.sum(), xr, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(xr)
        if not torch.isfinite(grad).all():
            raise ModelOutputError(f"{self.name}: the model's input gradient contains NaN/inf")
        return value.detach(), grad.detach(), logits.detach()

    # ---- rows --------------------------------------------------------------------------

    def threat_rows(self, sid: Tensor) -> ThreatModel:
        """The threat model with one radius per row (``eps[sid]``)."""
        return self.threat._with_eps_unchecked(self.eps[sid])

    def start_best(self, objective: Objective) -> Best:
        """A tracker holding the clean inputs, scored by ``objective`` on the clean logits."""
        score = objective(self.clean_logits, self.all) if self.n else self.eps.new_zeros(0)
        self.best = Best(self.x, score.detach(), self.clean_success, self.clean_logits)
        return self.best

    # ---- result ------------------------------------------------------------------------

    def _final_logits(self, x_adv: Tensor) -> Tensor:
        """Logits of ``x_adv``: the tracker's for rows that are exactly its best iterate (seen
        with their logits), a forward pass for the others."""
        best = self.best
        if best is None or best.logits is None or best.x.shape != x_adv.shape:
            return self.forward(x_adv, self.all)
        same = (best.x == x_adv).flatten(1).all(dim=1) & best.logits_known
        logits = best.logits.clone()
        todo = (~same).nonzero().squeeze(1)
        if todo.numel():
            logits[todo] = self.forward(x_adv[todo], todo).to(logits.dtype)
        return logits

    def finish(self, x_adv: Tensor, objective: Objective | None = None) -> AttackResult:
        """Check ``x_adv`` against the threat model, score it and build the result.

        A row that is exactly the tracker's best iterate, seen with its logits, reuses them;
        the other rows are evaluated once more.
        """
        x_adv = x_adv.detach().to(self.x.dtype)
        if self.n == 0:
            empty = self.x.new_zeros(0)
            return AttackResult(
                x_adv, empty.bool(), empty, empty, self.queries, self.clean_logits, self.name
            )
        inside = self.threat.contains(x_adv, self.x)
        if not inside.all():
            bad = (~inside).nonzero().squeeze(1)
            excess = self.threat.norm(x_adv[bad] - self.x[bad]) - self.eps[bad]
            raise ThreatViolation(
                f"{self.name} returned {bad.numel()} of {self.n} inputs outside "
                f"{self.threat!r} (largest "
                f"norm excess {float(excess.max()):.3g}, out-of-box: "
                f"{int((~self.threat.in_box(x_adv[bad])).sum())}); this is a bug in advml, "
                "please report it"
            )
        logits = self._final_logits(x_adv)
        success = self.succeeded(logits, self.all)
        if objective is None:
            loss = logits.new_zeros(self.n)
        else:
            with torch.no_grad():
                loss = objective(logits, self.all).detach()
        norm = self.threat.norm(x_adv - self.x)
        return AttackResult(x_adv, success, loss, norm, self.queries, logits, self.name)
