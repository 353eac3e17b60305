"""Semi-supervised GANs: a ``K + 1``-class discriminator trained on few labels (recipe
``"ssgan"``).

Odena 2016, "Semi-Supervised Learning with Generative Adversarial Networks": the
discriminator classifies into the ``K`` real classes plus one class "generated". Salimans et
al. 2016, "Improved Techniques for Training GANs", §5 fix the fake class's logit at 0, so with
class logits ``l_1..l_K`` and ``Z(x) = sum_k exp(l_k(x))``

    p(y = K+1 | x) = 1 / (Z(x) + 1),   D(x) = 1 - p(y = K+1 | x) = Z(x) / (Z(x) + 1)
                   = sigmoid(logsumexp_k l_k(x)),

and the discriminator minimises (their eq. 5-6, with ``softplus(-f) = -log sigmoid(f)``)

    L = L_supervised + w L_unsupervised,
    L_supervised   = -E_{(x, y) labeled} log p(y | x, y < K+1)  (cross-entropy on l_1..l_K),
    L_unsupervised = -E_x log D(x) - E_z log(1 - D(G(z)))
                   = E_x softplus(-lse(x)) + E_z softplus(lse(G(z))).

The generator uses feature matching (§3.1): minimise ``|| E_x f(x) - E_z f(G(z)) ||_2^2`` on
the discriminator's last hidden layer ``f`` (averaged over units, as the authors' code);
gradients reach only the generator. Test error is the error of ``argmax_k l_k(x)``.

The trainer's data is the whole training set (labels are never read from it; the CLI passes
``-1``); the labeled subset — :func:`balanced_subset` picks ``n / K`` per class — is held by
the recipe, which draws a labeled minibatch per step with the step's seeded generator.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.game import GanGame
from advml.generative.history import draw_indices
from advml.generative.training import Monitor, adversary_players
from advml.training.recipe import PlayerSpec, Recipe, StepInfo, check_finite, register_recipe

__all__ = [
    "SemiSupervisedRecipe",
    "balanced_subset",
    "classification_error",
    "feature_matching_loss",
    "k_plus_one_logits",
    "real_fake_logit",
    "unsupervised_loss",
]


def real_fake_logit(class_logits: Tensor) -> Tensor:
    """``logsumexp_k l_k``: the logit of ``D(x) = Z / (Z + 1)`` (Salimans et al. 2016, §5)."""
    return torch.logsumexp(class_logits, dim=1)


def k_plus_one_logits(class_logits: Tensor) -> Tensor:
    """The explicit ``K + 1``-class logits ``[l_1..l_K, 0]`` (the fake class last)."""
    return F.pad(class_logits, (0, 1))


def unsupervised_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``-E log D(x) - E log(1 - D(G(z)))`` from class logits of real and generated images."""
    return (
        F.softplus(-real_fake_logit(real_logits)).mean()
        + F.softplus(real_fake_logit(fake_logits)).mean()
    )


def feature_matching_loss(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """``mean_j (E f_j(x) - E f_j(G(z)))^2`` (Salimans et al. 2016, §3.1); the real
    statistics are a constant target (detached)."""
    return (real_features.detach().mean(0) - fake_features.mean(0)).pow(2).mean()


def balanced_subset(labels: Tensor, n: int, num_classes: int, seed: int = 0) -> Tensor:
    """Indices of ``n`` samples, ``n / num_classes`` of each class, drawn with ``seed``
    (sorted). Salimans et al. 2016 use 100 MNIST labels, 10 per class."""
    if n < num_classes or n % num_classes:
        raise UserError(
            f"--labeled {n}: give a multiple of the {num_classes} classes (e.g. "
            f"{10 * num_classes}) so every class gets the same number of labels"
        )
    per_class = n // num_classes
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    # rank of each sample within its class, in the shuffled order (batched, no loop)
    onehot = F.one_hot(shuffled.long(), num_classes)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    counts = onehot.sum(0)
    short = (counts < per_class).nonzero().flatten().tolist()
    if short:
        raise UserError(
            f"--labeled {n} needs {per_class} samples per class, but class(es) "
            f"{', '.join(map(str, short))} have fewer"
        )
    return order[rank < per_class].sort().values


@torch.no_grad()
def classification_error(
    discriminator: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000
) -> float:
    """Error of ``argmax_k l_k(x)`` of the discriminator's class logits, in eval mode."""
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"classification_error: {len(x)} images but {len(y)} labels")
    was_training = discriminator.training
    discriminator.eval()
    try:
        device = next(discriminator.parameters()).device
        wrong = 0
        for i in range(0, len(x), batch_size):
            _, logits = discriminator(x[i : i + batch_size].to(device))
            wrong += int((logits.argmax(1).cpu() != y[i : i + batch_size]).sum())
    finally:
        discriminator.train(was_training)
    return wrong / len(x)


@register_recipe("ssgan")
class SemiSupervisedRecipe(Recipe):
    """The ``K + 1``-class game of Salimans et al. 2016 on a :class:`GanGame` whose
    discriminator returns class logits and has ``features(x)`` (e.g. ``ssgan-mlp``)."""

    def __init__(
        self,
        labeled: tuple[Tensor, Tensor],
        unlabeled_weight: float = 1.0,
        feature_matching: bool = True,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_d_scale: float = 1.0,
        evaluation: tuple[Tensor, Tensor] | None = None,
        monitor: Monitor | None = None,
        init_batch: int = 500,
    ) -> None:
        x_l, y_l = labeled
        if len(x_l) == 0 or len(x_l) != len(y_l):
            raise UserError(f"labeled set: {len(x_l)} images but {len(y_l)} labels")
        if not unlabeled_weight >= 0:
            raise UserError(f"unlabeled_weight must be >= 0, got {unlabeled_weight}")
        if not lr_d_scale > 0:
            raise UserError(f"lr_d_scale must be > 0, got {lr_d_scale}")
        self.labeled = (x_l, y_l.long())
        self.unlabeled_weight = float(unlabeled_weight)
        self.feature_matching = bool(feature_matching)
        self.betas = (float(betas[0]), float(betas[1]))
        self.lr_d_scale = float(lr_d_scale)
        self.evaluation = evaluation
        self.monitor = monitor
        self.init_batch = int(init_batch)

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        if not isinstance(module, GanGame):
            raise UserError(
                f"the ssgan recipe trains a GanGame, got {type(module).__name__}; build one "
                "with advml.generative.build_game('ssgan-mlp', ..., num_classes=K)"
            )
        if module.num_classes < 2:
            raise UserError("a semi-supervised GAN needs a pair built with num_classes >= 2")
        if self.feature_matching and not hasattr(module.discriminator, "features"):
            raise UserError(
                "feature matching needs a discriminator with features(x) (e.g. ssgan-mlp); "
                "or train with feature_matching=False"
            )
        if int(self.labeled[1].max()) >= module.num_classes or int(self.labeled[1].min()) < 0:
            raise UserError(f"labels must lie in 0..{module.num_classes - 1}")
        return adversary_players(
            module.generator, module.discriminator, betas=self.betas, lr_d_scale=self.lr_d_scale
        )

    def settings(self) -> dict[str, Any]:
        return {
            "labeled": len(self.labeled[1]),
            "unlabeled_weight": self.unlabeled_weight,
            "feature_matching": self.feature_matching,
            "betas": list(self.betas),
            "lr_d_scale": self.lr_d_scale,
            "init_batch": self.init_batch,
        }

    def _latent(self, game: GanGame, n: int, step: StepInfo, like: Tensor) -> Tensor:
        return torch.randn(
            n, game.latent_dim, generator=step.generator, device=like.device, dtype=like.dtype
        )

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: Tensor,
        y: Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        game: GanGame = step.module
        n = x.shape[0]
        initialize = getattr(game.discriminator, "initialize", None)
        if self.init_batch > 0 and step.epoch == 1 and step.step == 0 and initialize is not None:
            # Salimans & Kingma 2016: data-dependent init before the first update (a resumed
            # run restores the initialized weights from its checkpoint instead)
            initialize(x[: self.init_batch])
        index = draw_indices(len(self.labeled[1]), n, step.generator).to(self.labeled[1].device)
        x_l = self.labeled[0][index].to(x.device)
        y_l = self.labeled[1][index].to(x.device)
        # discriminator: one forward on labeled, unlabeled and generated images
        with torch.no_grad():
            fake = game.generator(self._latent(game, n, step, x))
        _, logits = nets["discriminator"](torch.cat([x_l, x, fake]))
        l_lab, l_unl, l_fake = logits.split([n, n, n])
        supervised = F.cross_entropy(l_lab, y_l)
        unsupervised = unsupervised_loss(l_unl, l_fake)
        d_loss = supervised + self.unlabeled_weight * unsupervised
        check_finite(d_loss, step, "the discriminator loss")
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        metrics = {
            "d_loss": d_loss.item(),
            "d_sup": supervised.item(),
            "d_unsup": unsupervised.item(),
            "labeled_acc": (l_lab.argmax(1) == y_l).float().mean().item(),
        }
        # generator: feature matching (or the non-saturating loss) through a frozen D
        frozen = [p for p in game.discriminator.parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            fake = nets["generator"](self._latent(game, n, step, x))
            if self.feature_matching:
                with torch.no_grad():
                    real_features = game.discriminator.features(x)
                g_loss = feature_matching_loss(real_features, game.discriminator.features(fake))
            else:
                _, fake_logits = game.discriminator(fake)
                g_loss = F.softplus(-real_fake_logit(fake_logits)).mean()
            check_finite(g_loss, step, "the generator loss")
            optimizers["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            optimizers["generator"].step()
        finally:
            for param in frozen:
                param.requires_grad_(True)
        metrics["g_loss"] = g_loss.item()
        return metrics

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.evaluation is not None:
            x, y = self.evaluation
            metrics["test_error"] = classification_error(module.discriminator, x, y)
        if self.monitor is not None:
            metrics.update(self.monitor(module, epoch, None))
        return metrics
