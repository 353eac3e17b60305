"""Unpaired translation as a recipe of the one trainer (recipe ``"translation"``), its
metrics and its checkpoints.

Two players: ``"generator"`` (both translators of a
:class:`~advml.generative.cyclegan.TranslationGame`, one optimizer, as in Zhu et al. 2017)
and ``"discriminator"`` (``D_A`` and ``D_B``). The trainer's data is domain A; each step draws
an equally large minibatch of domain B, uniformly from ``target_images`` with the step's
seeded generator (the domains are unpaired, so no pairing is ever stored).

One step (Zhu et al. 2017, §4 and their code): the generators minimise

    L_G = LSGAN(D_B(G(a)), 1) + LSGAN(D_A(F(b)), 1) + sum_k weight_k * term_k,

(terms: CycleGAN's ``cycle`` (lambda = 10) and ``identity`` (0.5 lambda = 5); UNIT's
``recon`` 10, ``kl`` 0.01, ``cycle`` 10, ``cycle_kl`` 0.01), through the wrapped generator
player with the discriminators frozen; then the discriminators minimise
``((D(x) - 1)^2 + D(x~)^2) / 2`` per domain, where ``x~`` comes from an
:class:`~advml.generative.history.ImageHistory` of 50 generated images per domain.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advml.errors import FormatError, UserError
from advml.generative.checkpoint import (
    GAN_CARD_FORMAT,
    GAN_CARD_VERSION,
    checkpoint_paths,
    read_checked_tensors,
)
from advml.generative.cyclegan import TranslationGame, rebuild_translation
from advml.generative.history import (
    ImageHistory,
    draw_indices,
    histories_state,
    load_histories_state,
)
from advml.generative.losses import discriminator_loss, generator_loss
from advml.generative.training import adversary_players
from advml.training.recipe import PlayerSpec, Recipe, StepInfo, check_finite, register_recipe

__all__ = [
    "DEFAULT_WEIGHTS",
    "TranslationRecipe",
    "TranslationRecorder",
    "cycle_error",
    "label_preservation",
    "load_translation",
    "save_translation",
]

#: Default loss weights per model (Zhu et al. 2017 §4-5; Liu et al. 2017's code).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "cyclegan": {"cycle": 10.0, "identity": 5.0},
    "unit": {"recon": 10.0, "kl": 0.01, "cycle": 10.0, "cycle_kl": 0.01},
}

#: ``monitor(game, epoch) -> metrics`` after each epoch (pictures, cycle error, checkpoint).
TranslationMonitor = Callable[[TranslationGame, int], dict[str, float]]


@register_recipe("translation")
class TranslationRecipe(Recipe):
    """CycleGAN / UNIT updates; ``target_images`` is domain B (domain A is the trainer's data)."""

    def __init__(
        self,
        target_images: Tensor,
        weights: dict[str, float] | None = None,
        history: int = 50,
        seed: int = 0,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_d_scale: float = 1.0,
        monitor: TranslationMonitor | None = None,
    ) -> None:
        if not isinstance(target_images, Tensor) or target_images.dim() != 4:
            raise UserError("target_images must be an (N, C, H, W) tensor of domain B images")
        if len(target_images) == 0:
            raise UserError("domain B has no images")
        if not lr_d_scale > 0:
            raise UserError(f"lr_d_scale must be > 0, got {lr_d_scale}")
        self.target_images = target_images
        self.weights_override = dict(weights or {})
        self.weights: dict[str, float] = {}
        self.history_size = int(history)
        self.histories = {d: ImageHistory(self.history_size, seed + i) for i, d in enumerate("ab")}
        self.betas = (float(betas[0]), float(betas[1]))
        self.lr_d_scale = float(lr_d_scale)
        self.monitor = monitor

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        if not isinstance(module, TranslationGame):
            raise UserError(
                f"the translation recipe trains a TranslationGame, got {type(module).__name__}; "
                "build one with advml.generative.cyclegan.build_translation"
            )
        if tuple(self.target_images.shape[1:]) != tuple(module.spec["data_shape"]):
            raise UserError(
                f"domain B images have shape {tuple(self.target_images.shape[1:])}, the game "
                f"was built for {tuple(module.spec['data_shape'])}"
            )
        defaults = DEFAULT_WEIGHTS[module.variant]
        unknown = sorted(set(self.weights_override) - set(defaults))
        if unknown:
            raise UserError(
                f"{module.variant} has no loss term(s) {', '.join(unknown)}; its terms are "
                f"{', '.join(defaults)}"
            )
        self.weights = {**defaults, **self.weights_override}
        for name, value in self.weights.items():
            if not value >= 0:
                raise UserError(f"loss weight {name} must be >= 0, got {value}")
        return adversary_players(
            module.generator, module.discriminator, betas=self.betas, lr_d_scale=self.lr_d_scale
        )

    def settings(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights or self.weights_override),
            "history": self.history_size,
            "betas": list(self.betas),
            "lr_d_scale": self.lr_d_scale,
            "target_images": len(self.target_images),
        }

    def state_tensors(self) -> dict[str, Tensor]:
        return histories_state({f"history_{d}": h for d, h in self.histories.items()})

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        load_histories_state({f"history_{d}": h for d, h in self.histories.items()}, tensors)

    def _domain_b(self, n: int, step: StepInfo, like: Tensor) -> Tensor:
        index = draw_indices(len(self.target_images), n, step.generator)
        return self.target_images[index.to(self.target_images.device)].to(like.device)

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: Tensor,
        y: Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        game: TranslationGame = step.module
        a, b = x, self._domain_b(x.shape[0], step, x)
        skip = {name for name, w in self.weights.items() if w == 0}
        # generators: adversarial + weighted terms, discriminators frozen (unwrapped)
        frozen = [p for p in game.discriminator.parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            out = nets["generator"](a, b, skip)
            score_a, score_b = game.discriminator(out["fake_a"], out["fake_b"])
            adversarial = generator_loss("lsgan", score_b) + generator_loss("lsgan", score_a)
            loss = adversarial
            metrics = {"g_adv": adversarial.item()}
            for name, term in out["terms"].items():
                loss = loss + self.weights.get(name, 0.0) * term
                metrics[name] = term.item()
            check_finite(loss, step, "the generator loss")
            optimizers["generator"].zero_grad(set_to_none=True)
            loss.backward()
            optimizers["generator"].step()
        finally:
            for param in frozen:
                param.requires_grad_(True)
        metrics["g_loss"] = loss.item()
        # discriminators: real vs generated images from the histories
        old_a = self.histories["a"].query(out["fake_a"])
        old_b = self.histories["b"].query(out["fake_b"])
        scores_a, scores_b = nets["discriminator"](torch.cat([a, old_a]), torch.cat([b, old_b]))
        real_a, fake_a = scores_a.chunk(2)
        real_b, fake_b = scores_b.chunk(2)
        d_loss = discriminator_loss("lsgan", real_a, fake_a) + discriminator_loss(
            "lsgan", real_b, fake_b
        )
        check_finite(d_loss, step, "the discriminator loss")
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        metrics["d_loss"] = d_loss.item()
        return metrics

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        return {} if self.monitor is None else self.monitor(module, epoch)


# ---------------------------------------------------------------------------- metrics


def cycle_error(game: TranslationGame, x: Tensor, direction: str = "ab") -> float:
    """Mean absolute cycle reconstruction error per pixel, ``E |F(G(x)) - x|`` (``"ab"``)."""
    if len(x) == 0:
        raise UserError("cycle_error needs at least one image")
    return float((game.reconstruct(x, direction) - x).abs().mean())


@torch.no_grad()
def label_preservation(
    translated: Tensor, labels: Tensor, classifier: nn.Module, batch_size: int = 1000
) -> float:
    """Fraction of translated images that ``classifier`` (trained on the target domain)
    assigns their source label."""
    if len(translated) != len(labels) or len(labels) == 0:
        raise UserError(
            f"label_preservation needs as many labels as images, got {len(translated)} "
            f"images and {len(labels)} labels"
        )
    was_training = classifier.training
    classifier.eval()
    try:
        device = next(classifier.parameters()).device
        hits = sum(
            int(
                (
                    classifier(translated[i : i + batch_size].to(device)).argmax(1).cpu()
                    == labels[i : i + batch_size]
                ).sum()
            )
            for i in range(0, len(labels), batch_size)
        )
    finally:
        classifier.train(was_training)
    return hits / len(labels)


# ---------------------------------------------------------------------------- checkpoints


def save_translation(
    game: nn.Module, path: str | os.PathLike[str], card: dict[str, Any] | None = None
) -> Path:
    """Every player of ``game`` (a translation, SimGAN or PixelDA game: each child module,
    tensors named ``<child>.<key>``) as safetensors + JSON card with ``game.spec``. The card
    is a GAN card (``format: advml.gan``, :mod:`advml.generative.checkpoint`) whose
    ``game.kind`` names the model; nothing is pickled."""
    from safetensors.torch import save as save_safetensors

    from advml import __version__
    from advml.models.card import format_json, to_json
    from advml.runs import atomic_write_bytes

    tensors = {
        f"{name}.{k}": v.detach().to("cpu", copy=True).contiguous()
        for name, child in game.named_children()
        for k, v in child.state_dict().items()
    }
    blob = save_safetensors(tensors, metadata={"format": "pt", "advml": GAN_CARD_FORMAT})
    weights, card_path = checkpoint_paths(path)
    out = {
        "format": GAN_CARD_FORMAT,
        "format_version": GAN_CARD_VERSION,
        "game": to_json(game.spec, "the game spec"),
        **to_json(dict(card or {}), "a card field"),
        "ema": False,
        "weights": {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
        "advml_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
    }
    atomic_write_bytes(weights, blob)
    atomic_write_bytes(card_path, (format_json(out) + "\n").encode())
    return weights


def _rebuild(spec: dict[str, Any]) -> nn.Module:
    kind = spec.get("kind")
    options = dict(spec.get("options") or {})
    with torch.random.fork_rng(devices=[]):
        if kind == "translation":
            return rebuild_translation(spec)
        if kind == "simgan":
            from advml.generative.simgan import build_simgan

            return build_simgan(tuple(spec["data_shape"]), **options)
        if kind == "pixelda":
            from advml.generative.pixelda import build_pixelda

            return build_pixelda(tuple(spec["data_shape"]), int(spec["num_classes"]), **options)
    raise UserError(f"not a translation, SimGAN or PixelDA game (kind {kind!r})")


def load_translation(
    path: str | os.PathLike[str], map_location: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the game saved by :func:`save_translation`: ``(game in eval mode, card)``."""
    weights, card_path, card, tensors = read_checked_tensors(path)
    try:
        game = _rebuild(card["game"])
    except (UserError, KeyError, TypeError) as error:
        raise FormatError(card_path, f"cannot build the card's game: {error}") from None
    for name, child in game.named_children():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            child.load_state_dict(state)
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:300]
            raise FormatError(weights, f"{name} weights do not fit the card: {detail}") from None
    return game.to(map_location).eval(), card


# ---------------------------------------------------------------------------- monitor


class TranslationRecorder:
    """After each epoch: cycle errors on held-out images of both domains, a picture
    (rows: A, G(A), B, F(B)) in ``samples/epoch-NNNN.png``, and the checkpoint
    ``model.safetensors`` + ``model.json``."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | None,
        eval_a: Tensor,
        eval_b: Tensor,
        card: dict[str, Any] | None = None,
    ) -> None:
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.eval_a, self.eval_b = eval_a, eval_b
        self.card = dict(card or {})

    def __call__(self, game: TranslationGame, epoch: int) -> dict[str, float]:
        from advml.generative.figures import save_image_grid
        from advml.runtime import dist_info

        metrics = {
            "cycle_error_a": cycle_error(game, self.eval_a, "ab"),
            "cycle_error_b": cycle_error(game, self.eval_b, "ba"),
        }
        if self.out_dir is not None and dist_info().is_main:
            a, b = self.eval_a[:8], self.eval_b[:8]
            rows = [a, game.translate(a, "ab"), b, game.translate(b, "ba")]
            save_image_grid(
                torch.cat(rows), self.out_dir / "samples" / f"epoch-{epoch:04d}.png", nrow=len(a)
            )
            card = {**self.card, "epochs_trained": epoch, "metrics": metrics}
            save_translation(game, self.out_dir, card)
        return metrics
