r"""Per-sample attack objectives. Every function returns a tensor of shape ``(N,)`` that the
attacker **maximizes**; ``labels`` are the true classes (untargeted) or the targets (targeted).

* ``ce``: cross-entropy :math:`-\log p_y` (untargeted) / :math:`\log p_t` (targeted).
* ``margin`` (Carlini & Wagner 2017, :math:`f_6` without the clamp):
  :math:`\max_{j \ne y} z_j - z_y` (untargeted) / :math:`z_t - \max_{j \ne t} z_j` (targeted);
  positive exactly when the attack succeeds.
* ``dlr`` (Croce & Hein 2020, difference of logits ratio, shift- and scale-invariant):
  untargeted :math:`-(z_y - \max_{j\ne y} z_j) / (z_{\pi_1} - z_{\pi_3})`; targeted
  :math:`-(z_y - z_t) / (z_{\pi_1} - (z_{\pi_3} + z_{\pi_4})/2)` with :math:`\pi` the logits
  sorted in decreasing order. When only the target is known, :math:`z_y` is replaced by
  :math:`\max_{j\ne t} z_j` (the strongest competitor of the target).

Logits in half precision (autocast) are promoted to float32 before the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from advml.errors import UserError

__all__ = ["LOSSES", "ce", "dlr", "dlr_targeted", "get_loss", "margin", "max_other", "objective"]

_TINY = 1e-12


def _promote(logits: Tensor) -> Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def max_other(logits: Tensor, labels: Tensor) -> Tensor:
    """:math:`\\max_{j \\ne y} z_j` per sample."""
    masked = logits.scatter(1, labels.reshape(-1, 1), float("-inf"))
    return masked.amax(dim=1)


def ce(logits: Tensor, labels: Tensor, targeted: bool = False) -> Tensor:
    """Cross-entropy objective (to maximize): CE for untargeted, -CE(target) for targeted."""
    loss = F.cross_entropy(_promote(logits), labels, reduction="none")
    return -loss if targeted else loss


def margin(logits: Tensor, labels: Tensor, targeted: bool = False) -> Tensor:
    """Logit margin: positive iff the attack succeeds (argmax ties aside)."""
    z = _promote(logits)
    own = z.gather(1, labels.reshape(-1, 1)).squeeze(1)
    other = max_other(z, labels)
    return own - other if targeted else other - own


def dlr(logits: Tensor, labels: Tensor, targeted: bool = False) -> Tensor:
    """Difference of logits ratio; needs at least 3 classes (4 when targeted)."""
    if targeted:
        return dlr_targeted(logits, labels)
    z = _promote(logits)
    if z.shape[1] < 3:
        raise UserError(
            f"the DLR loss needs at least 3 classes; the model has {z.shape[1]}; use loss='margin'"
        )
    top = z.topk(3, dim=1).values
    own = z.gather(1, labels.reshape(-1, 1)).squeeze(1)
    return -(own - max_other(z, labels)) / (top[:, 0] - top[:, 2] + _TINY)


def dlr_targeted(logits: Tensor, targets: Tensor, true_labels: Tensor | None = None) -> Tensor:
    """Targeted DLR :math:`-(z_y - z_t) / (z_{\\pi_1} - (z_{\\pi_3} + z_{\\pi_4})/2)`.

    ``true_labels`` gives ``y``; without it ``z_y`` is :math:`\\max_{j \\ne t} z_j`.
    """
    z = _promote(logits)
    if z.shape[1] < 4:
        raise UserError(
            f"the targeted DLR loss needs at least 4 classes; the model has {z.shape[1]}; "
            "use loss='margin'"
        )
    top = z.topk(4, dim=1).values
    target = z.gather(1, targets.reshape(-1, 1)).squeeze(1)
    own = (
        max_other(z, targets)
        if true_labels is None
        else z.gather(1, true_labels.reshape(-1, 1)).squeeze(1)
    )
    return -(own - target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


Loss = Callable[[Tensor, Tensor, bool], Tensor]

LOSSES: dict[str, Loss] = {"ce": ce, "margin": margin, "cw": margin, "dlr": dlr}


def get_loss(loss: str | Loss) -> Loss:
    """A loss by name (``"ce"``, ``"margin"``/``"cw"``, ``"dlr"``) or a callable passed through."""
    if callable(loss):
        return loss
    key = str(loss).lower()
    if key not in LOSSES:
        raise UserError(f"unknown loss {loss!r}; choose one of {', '.join(sorted(LOSSES))}")
    return LOSSES[key]


def objective(
    loss: str | Loss, labels: Tensor, targeted: bool
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(logits, sid) -> loss(logits, labels[sid], targeted)``: an attack's per-row objective."""
    fn = get_loss(loss)

    def value(logits: Tensor, sid: Tensor) -> Tensor:
        return fn(logits, labels[sid], targeted)

    return value
