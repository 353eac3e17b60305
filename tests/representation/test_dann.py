"""DANN: the network, the ``dann`` recipe on the one trainer, and the game on a tiny synthetic
domain shift (the domain classifier must move toward chance)."""

from __future__ import annotations

import pytest
import torch

from advml.errors import UserError
from advml.models import build, load, save
from advml.representation.adaptation import domain_accuracy
from advml.representation.dann import DANN, DANNNet
from advml.runtime import generator
from advml.training import StepInfo, TrainConfig, Trainer, get_recipe

SHAPE = (1, 16, 16)
EPOCHS = 20


def _shifted_domains(n: int, seed: int = 0):
    """Two classes (a bar in the top or the bottom half); the target adds a constant 0.3 to
    every pixel (a brightness shift that zero-sum convolution filters can cancel exactly)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    bars = torch.zeros(n, 1, 16, 16)
    rows = torch.where(y[:, None] == 0, torch.arange(3, 6), torch.arange(10, 13))
    bars[torch.arange(n)[:, None], 0, rows, 3:13] = 0.6
    source = bars + 0.05 * torch.rand(n, 1, 16, 16, generator=g)
    target = bars + 0.05 * torch.rand(n, 1, 16, 16, generator=g) + 0.3
    return source, target, y


def test_network_shapes_and_checkpoint(tmp_path):
    model = build("dann-digits", (3, 28, 28), 10)
    x = torch.rand(4, 3, 28, 28)
    assert model(x).shape == (4, 10)
    logits, domain = model(x, domain_lambda=0.5)
    assert torch.equal(logits, model(x)) and domain.shape == (4,)
    assert (
        sum(p.numel() for p in model.features.parameters()) == 3 * 25 * 32 + 32 + 32 * 25 * 48 + 48
    )
    save(model, tmp_path / "m.safetensors", {"dataset": "test"})
    again = load(tmp_path / "m.safetensors")
    assert torch.equal(again(x), model(x))
    with pytest.raises(UserError, match="at least 16x16"):
        DANNNet((3, 8, 8), 10)


def test_recipe_needs_target_and_matching_shapes():
    with pytest.raises(UserError, match="unlabeled target inputs"):
        get_recipe("dann")
    recipe = get_recipe("dann", target=torch.rand(10, 1, 16, 16))
    model = DANNNet(SHAPE, 2)
    step = StepInfo(model, 1, 0, 0.5, generator(0))
    with pytest.raises(UserError, match="target inputs have shape"):
        recipe.loss(model, torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long), step)
    assert recipe.settings()["target_samples"] == 10


def test_target_batches_come_from_the_step_generator():
    torch.manual_seed(0)
    model = DANNNet(SHAPE, 2)
    recipe = DANN(torch.rand(50, *SHAPE), target_batch=7)
    x, y = torch.rand(5, *SHAPE), torch.tensor([0, 1, 0, 1, 1])
    losses = [
        recipe.loss(model, x, y, StepInfo(model, 1, 0, 0.3, generator(seed)))[0].item()
        for seed in (1, 1, 2)
    ]
    assert losses[0] == losses[1] != losses[2]
    _, metrics = recipe.loss(model, x, y, StepInfo(model, 1, 0, 0.3, generator(1)))
    assert metrics["lambda"] == pytest.approx(recipe.adaptation_factor(0.3))


def _train(lambda_max: float, source, target, y, seed: int) -> DANNNet:
    torch.manual_seed(seed)
    model = DANNNet(SHAPE, 2, channels=(8, 16), hidden=32, domain_hidden=32)
    recipe = DANN(target, lambda_max=lambda_max)
    config = TrainConfig(epochs=EPOCHS, batch_size=32, lr=1e-3, seed=seed, progress=False)
    Trainer(model, recipe, config).fit((source, y))
    return model.eval()


def test_domain_classifier_moves_toward_chance_on_a_synthetic_shift():
    source, target, y = _shifted_domains(384)
    held_source, held_target, held_y = _shifted_domains(400, seed=1)
    control_gap, adapted_gap = [], []
    for seed in range(4):  # the game oscillates; judge the mean over seeds
        # control: the domain classifier trains, but no gradient is reversed into the features
        control = _train(0.0, source, target, y, seed)
        adapted = _train(1.0, source, target, y, seed)
        control_gap.append(abs(domain_accuracy(control, held_source, held_target) - 0.5))
        adapted_gap.append(abs(domain_accuracy(adapted, held_source, held_target) - 0.5))
        # the adapted model still classifies the source
        assert (adapted(held_source).argmax(1) == held_y).float().mean() > 0.9
    assert sum(control_gap) / 4 > 0.45  # the shift is trivial to detect without DANN
    assert sum(adapted_gap) / 4 < 0.5 * sum(control_gap) / 4
