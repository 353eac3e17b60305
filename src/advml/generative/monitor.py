"""What a GAN run records after each epoch: a sample picture, the toy mode metrics, and the
checkpoint (``model.safetensors`` + ``model.json``) that ``advml gan sample/score`` read.

Samples come from the EMA generator when the run keeps one, drawn with a fixed seed so the
pictures of successive epochs show the same latent codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from advml.generative.checkpoint import save_gan
from advml.generative.ema import EMA
from advml.generative.figures import save_image_grid, save_scatter
from advml.generative.game import GanGame, sample
from advml.generative.metrics.modes import PROTOCOL_SAMPLES, mode_coverage
from advml.runtime import dist_info

__all__ = ["GanMonitor", "toy_mixture", "write_samples"]


def toy_mixture(dataset: str) -> tuple[Tensor, float] | None:
    """``(centres, sigma)`` when ``dataset`` is one of the 2-D mixtures, else ``None``."""
    from advml.data.toy import TOY_SIGMA, toy_modes

    name = str(dataset).replace("_", "-").lower()
    return toy_modes(name) if name in TOY_SIGMA else None


def write_samples(
    x: Tensor, path: Path, mixture: tuple[Tensor, float] | None, title: str | None = None
) -> Path:
    """A scatter plot for 2-D points (over the mixture's centres), an image grid otherwise."""
    if x.dim() == 2 and x.shape[1] == 2:
        return save_scatter(x, path, None if mixture is None else mixture[0], title)
    if x.dim() == 4:
        return save_image_grid(x[:64], path)
    raise ValueError(f"cannot draw samples of shape {tuple(x.shape[1:])}")


class GanMonitor:
    """Called by :class:`~advml.generative.training.GanRecipe` after each epoch."""

    def __init__(
        self,
        out_dir: str | Path,
        dataset: str,
        card: dict[str, Any],
        every: int = 1,
        seed: int = 0,
        recipe_settings: dict[str, Any] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.dataset = dataset
        self.card = card
        self.every = max(1, int(every))
        self.seed = seed
        self.mixture = toy_mixture(dataset)
        self.recipe_settings = recipe_settings or {}

    def __call__(self, game: GanGame, epoch: int, ema: EMA | None) -> dict[str, float]:
        generator = ema.averaged(game.generator) if ema is not None else game.generator
        metrics: dict[str, float] = {}
        due = epoch % self.every == 0
        device = next(game.parameters()).device
        if due and self.mixture is not None:
            x, _ = sample(
                generator,
                PROTOCOL_SAMPLES,
                game.latent_dim,
                game.num_classes,
                seed=self.seed,
                device=device,
            )
            score = mode_coverage(x, *self.mixture)
            metrics = {"modes": score.modes, "high_quality": score.high_quality}
            if score.reverse_kl is not None:
                metrics["reverse_kl"] = score.reverse_kl
        if dist_info().is_main:
            if due:
                n = PROTOCOL_SAMPLES if self.mixture is not None else 64
                x, _ = sample(
                    generator, n, game.latent_dim, game.num_classes, seed=self.seed, device=device
                )
                write_samples(
                    x.cpu(),
                    self.out_dir / "samples" / f"epoch-{epoch:04d}.png",
                    self.mixture,
                    title=f"{self.dataset}, epoch {epoch}",
                )
            save_gan(
                game,
                self.out_dir,
                {
                    **self.card,
                    "recipe_settings": self.recipe_settings,
                    "epochs_trained": epoch,
                    "metrics": metrics,
                },
                ema=None if ema is None else ema.state_tensors(),
            )
        return metrics
