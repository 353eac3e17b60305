"""A history of generated images for the discriminator's updates (an "image pool").

Shrivastava et al. 2017, "Learning from Simulated and Unsupervised Images through Adversarial
Training" (SimGAN), §2.3: the discriminator is updated on a minibatch of which half are the
current generator's images and half are drawn from a buffer of earlier ones, so it does not
forget regions of the image space the generator has left; refined images replace random
buffer entries. Zhu et al. 2017 (CycleGAN, §4) use a buffer of the 50 previously generated
images the same way.

:class:`ImageHistory` is batched and seeded: while the buffer is not full, the incoming
images are stored and returned unchanged; once it is full, a random half of the batch
(``n // 2`` distinct positions) is swapped with ``n // 2`` distinct random buffer entries:
those positions return the old images and the new ones take their slots. The buffer, its fill
level and the random generator's state are :meth:`state_tensors`, so a resumed run continues
exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advml.errors import UserError

__all__ = ["ImageHistory", "draw_indices", "histories_state", "load_histories_state"]


def draw_indices(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``size`` indices uniform in ``0..n-1`` drawn with ``generator`` on its own device (a
    step's seeded generator: the other domain's minibatch of unpaired games)."""
    return torch.randint(n, (size,), generator=generator, device=generator.device)


class ImageHistory:
    """A buffer of up to ``capacity`` generated images (CycleGAN: 50).

    >>> history = ImageHistory(50, seed=0)            # doctest: +SKIP
    >>> d_loss = loss(D(real), D(history.query(fake.detach())))
    """

    def __init__(self, capacity: int = 50, seed: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise UserError(f"history capacity must be an integer >= 0, got {capacity!r}")
        self.capacity = capacity
        self.seed = int(seed)
        self.count = 0
        self.buffer: Tensor | None = None
        self._generator = torch.Generator().manual_seed(self.seed)

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """The images the discriminator should see for ``images`` (a new batch, detached)."""
        images = images.detach()
        if self.capacity == 0:
            return images
        if self.buffer is None:
            self.buffer = images.new_zeros((self.capacity, *images.shape[1:]))
        elif self.buffer.shape[1:] != images.shape[1:]:
            raise UserError(
                f"image history holds images of shape {tuple(self.buffer.shape[1:])}, got a "
                f"batch of {tuple(images.shape[1:])}"
            )
        self.buffer = self.buffer.to(images.device, images.dtype)
        out = images.clone()
        fill = min(self.capacity - self.count, images.shape[0])
        if fill > 0:  # not full yet: store and return the new images
            self.buffer[self.count : self.count + fill] = images[:fill]
            self.count += fill
        rest = images.shape[0] - fill
        swaps = min(rest // 2, self.capacity)  # full: a random half of the rest is swapped
        if swaps > 0:
            positions = fill + torch.randperm(rest, generator=self._generator)[:swaps]
            slots = torch.randperm(self.capacity, generator=self._generator)[:swaps]
            positions, slots = positions.to(images.device), slots.to(images.device)
            out[positions] = self.buffer[slots]
            self.buffer[slots] = images[positions]
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        """The buffer, its fill level and the generator's state (for checkpoints)."""
        state = {
            "count": torch.tensor([self.count], dtype=torch.int64),
            "rng": self._generator.get_state(),
        }
        if self.buffer is not None:
            state["buffer"] = self.buffer.detach().cpu()
        return state

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_tensors`."""
        if "count" not in tensors or "rng" not in tensors:
            raise UserError("the checkpoint's image history is incomplete (count, rng)")
        self.count = int(tensors["count"].item())
        self._generator.set_state(tensors["rng"].to(torch.uint8))
        buffer = tensors.get("buffer")
        self.buffer = None if buffer is None else buffer.clone()
        if self.count > self.capacity or (self.count > 0 and self.buffer is None):
            raise UserError("the checkpoint's image history does not fit its capacity")


def histories_state(histories: dict[str, ImageHistory]) -> dict[str, Tensor]:
    """The state of several named histories as one flat dict (``"NAME.key"``), for a recipe's
    :meth:`~advml.training.recipe.Recipe.state_tensors`."""
    return {
        f"{name}.{key}": value
        for name, history in histories.items()
        for key, value in history.state_tensors().items()
    }


def load_histories_state(histories: dict[str, ImageHistory], tensors: dict[str, Tensor]) -> None:
    """Restore what :func:`histories_state` saved; a history absent from ``tensors`` is kept."""
    for name, history in histories.items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if part:
            history.load_state_tensors(part)
