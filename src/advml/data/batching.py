"""Mini-batches of in-memory tensors, shared by the trainer, the attacks and the evaluators."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from advml.errors import UserError


def batches(
    x: torch.Tensor,
    y: torch.Tensor | None,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x_batch, y_batch)`` slices of ``batch_size`` samples along the first axis.

    Without ``shuffle`` the batches are views in order (no copy). With ``shuffle`` a random
    permutation is drawn from ``generator`` (or the global torch RNG) once per call, so a
    seeded generator gives a reproducible epoch. ``drop_last`` skips a final short batch.
    ``y`` may be ``None`` (unlabelled data), in which case ``y_batch`` is ``None``.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    n = x.shape[0]
    if y is not None and y.shape[0] != n:
        raise UserError(f"x has {n} samples but y has {y.shape[0]}; they must match")
    stop = n - n % batch_size if drop_last else n
    if not shuffle:
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            yield x[start:end], (y[start:end] if y is not None else None)
        return
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(n, generator=generator, device=device)
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        xi = index.to(x.device)
        yield x[xi], (y[index.to(y.device)] if y is not None else None)
