"""Exponential moving average of the generator's weights.

``theta_ema <- beta * theta_ema + (1 - beta) * theta`` after every generator step (Yazici et
al. 2019, "The Unusual Effectiveness of Averaging in GAN Training", eq. 2; Karras et al. 2018,
"Progressive Growing of GANs", sec. A.1, with ``beta = 0.999``). Samples are drawn from the
averaged weights, which smooths the oscillation of the game. Floating-point buffers
(batch-norm statistics) are averaged the same way; integer buffers (batch counters) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = ["EMA"]


class EMA:
    """The moving average of ``module``'s state (parameters and buffers), as plain tensors.

    >>> ema = EMA(generator, decay=0.999)          # doctest: +SKIP
    >>> ema.update(generator)  # after each optimizer step of the generator
    >>> averaged = ema.averaged(generator)           # a copy of the generator holding the EMA
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise UserError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] = {
            k: v.detach().clone() for k, v in module.state_dict().items()
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One averaging step toward ``module``'s current state."""
        for key, value in module.state_dict().items():
            average = self.shadow[key]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - self.decay)
            else:
                average.copy_(value)

    def state_tensors(self) -> dict[str, Tensor]:
        """The averaged state (for checkpoints)."""
        return dict(self.shadow)

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_tensors` (keys and shapes must match)."""
        if set(tensors) != set(self.shadow):
            raise UserError("the checkpoint's EMA weights do not match the generator")
        for key, value in tensors.items():
            self.shadow[key].copy_(value)

    def averaged(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` holding the averaged weights, in eval mode."""
        clone = copy.deepcopy(module)
        clone.load_state_dict(self.shadow)
        return clone.eval()
