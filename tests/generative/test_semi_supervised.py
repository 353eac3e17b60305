"""Semi-supervised K+1-class GAN (Salimans et al. 2016): parametrization, losses, labels, runs."""

import json

import pytest
import torch
import torch.nn.functional as F

from advml.cli.main import main
from advml.data import load
from advml.errors import UserError
from advml.generative.game import build_game
from advml.generative.semi_supervised import (
    SemiSupervisedRecipe,
    balanced_subset,
    classification_error,
    feature_matching_loss,
    k_plus_one_logits,
    real_fake_logit,
    unsupervised_loss,
)
from advml.training import TrainConfig, Trainer
from advml.training.recipe import StepInfo

SMALL = {"g_hidden": [32], "d_hidden": [64, 32]}


def test_logsumexp_is_the_real_fake_logit_of_the_k_plus_one_classifier():
    logits = torch.randn(50, 10, dtype=torch.float64) * 3
    p = F.softmax(k_plus_one_logits(logits), dim=1)  # fake class (logit 0) last
    d = torch.sigmoid(real_fake_logit(logits))
    z = logits.exp().sum(1)
    assert torch.allclose(d, z / (z + 1))  # D(x) = Z / (Z + 1)
    assert torch.allclose(d, 1 - p[:, -1])
    # -log D(x) = softplus(-lse), -log(1 - D(x)) = softplus(lse)
    assert torch.allclose(F.softplus(-real_fake_logit(logits)), -(1 - p[:, -1]).log())
    assert torch.allclose(F.softplus(real_fake_logit(logits)), -p[:, -1].log())
    real, fake = logits[:25], logits[25:]
    expected = -(1 - p[:25, -1]).log().mean() - p[25:, -1].log().mean()
    assert torch.allclose(unsupervised_loss(real, fake), expected)


def test_ssgan_mlp_scores_with_logsumexp_and_exposes_features():
    pair = build_game("ssgan-mlp", (1, 8, 8), 16, 10, options=SMALL)
    x = torch.rand(6, 1, 8, 8)
    score, logits = pair.discriminator.eval()(x)
    assert logits.shape == (6, 10)
    assert torch.allclose(score, torch.logsumexp(logits, 1))
    assert pair.discriminator.features(x).shape == (6, 32)
    assert pair.generator(torch.randn(6, 16)).shape == (6, 1, 8, 8)
    with pytest.raises(UserError, match="num_classes >= 2"):
        build_game("ssgan-mlp", (1, 8, 8), 16, 0)


def test_feature_matching_gradient_reaches_only_the_generator():
    real = torch.randn(8, 5, requires_grad=True)
    fake = torch.randn(8, 5, requires_grad=True)
    feature_matching_loss(real, fake).backward()
    assert real.grad is None and fake.grad.abs().sum() > 0
    # in a recipe step, the generator update leaves no gradient on the discriminator
    torch.manual_seed(0)
    game = build_game("ssgan-mlp", (1, 8, 8), 16, 10, options=SMALL)
    x, y = load("digits")
    recipe = SemiSupervisedRecipe((x[:20], y[:20]), init_batch=0)
    players = recipe.players(game)
    seen = {}

    class Recording(torch.optim.SGD):
        def __init__(self, params, name):
            super().__init__(params, lr=0.01)
            self.name = name

        def step(self, closure=None):
            seen[self.name] = [
                None if p.grad is None else p.grad.clone()
                for g in self.param_groups
                for p in g["params"]
            ]
            return super().step(closure)

    optimizers = {n: Recording(s.module.parameters(), n) for n, s in players.items()}
    nets = {n: s.module for n, s in players.items()}
    step = StepInfo(game, 1, 0, 0.0, torch.Generator().manual_seed(0))
    recipe.train_step(nets, x[:16], torch.full((16,), -1), step, optimizers)
    d_params = list(game.discriminator.parameters())
    for param, grad in zip(d_params, seen["discriminator"], strict=True):
        assert torch.equal(param.grad, grad)  # untouched since the discriminator's step
        assert param.requires_grad  # unfrozen again
    assert all(g is not None and g.abs().sum() > 0 for g in seen["generator"][-1:])


def test_balanced_subset():
    y = torch.arange(1000) % 10
    index = balanced_subset(y, 100, 10, seed=1)
    assert torch.bincount(y[index]).tolist() == [10] * 10
    assert torch.equal(index, balanced_subset(y, 100, 10, seed=1))
    assert not torch.equal(index, balanced_subset(y, 100, 10, seed=2))
    with pytest.raises(UserError, match="multiple"):
        balanced_subset(y, 95, 10)
    with pytest.raises(UserError, match="fewer"):
        balanced_subset(y[:50], 100, 10)


def test_short_run_learns_from_few_labels():
    x, y = load("digits")
    xt, yt = load("digits", "test")
    torch.manual_seed(0)
    game = build_game("ssgan-mlp", (1, 8, 8), 16, 10, options=SMALL)
    before = classification_error(game.discriminator, xt, yt)
    index = balanced_subset(y, 50, 10, seed=0)
    recipe = SemiSupervisedRecipe((x[index], y[index]), evaluation=(xt, yt))
    config = TrainConfig(epochs=6, batch_size=64, lr=3e-3, device="cpu", progress=False)
    result = Trainer(game, recipe, config).fit((x, torch.full_like(y, -1)))
    after = result.history[-1]["test_error"]
    assert before > 0.6 and after < 0.4, (before, after)


def test_cli_semi_supervised(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    out = tmp_path / "ss"
    argv = [
        "gan", "train", "--dataset", "digits", "--arch", "ssgan-mlp", "--semi-supervised",
        "--labeled", 50, "--arch-option", "d_hidden=[64, 32]", "--arch-option", "g_hidden=[32]",
        "--latent-dim", 16, "--epochs", 2, "--batch-size", 64, "--lr-g", 3e-3,
        "--out", out, "--no-progress",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= rows[-1]["test_error"] < 0.9
    assert "test error" in capsys.readouterr().out
    assert main(["gan", "sample", "--checkpoint", str(out), "--out", str(tmp_path / "s.png")]) == 0
    bad = [*map(str, argv[:-3]), "--pack", "2", "--out", str(tmp_path / "b")]
    assert main(bad) == 2
    assert "--semi-supervised" in capsys.readouterr().err
