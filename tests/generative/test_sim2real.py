"""Synthetic digits, SimGAN refiner and PixelDA: renderer, self-regularization, short runs."""

import json

import pytest
import torch

from advml.cli.main import main
from advml.errors import UserError
from advml.generative.pixelda import PixelDARecipe, build_pixelda, generate
from advml.generative.simgan import SimGanRecipe, build_simgan, refine, self_regularization
from advml.generative.synthetic_digits import (
    find_fonts,
    jitter,
    render_digits,
    segment_templates,
)
from advml.training import TrainConfig, Trainer

# ---------------------------------------------------------------------------- renderer


@pytest.mark.parametrize("source", ["fonts", "segments"])
def test_renderer_shapes_and_determinism(source):
    if source == "fonts" and not find_fonts():
        with pytest.raises(UserError, match="fonts"):
            render_digits(10, source="fonts")
        return
    a = render_digits(200, seed=1, source=source)
    b = render_digits(200, seed=1, source=source)
    c = render_digits(200, seed=2, source=source)
    assert a.x.shape == (200, 1, 28, 28) and a.x.dtype == torch.float32
    assert a.x.min() >= 0 and a.x.max() <= 1 and a.x.amax((1, 2, 3)).min() > 0.3
    assert set(a.y.tolist()) == set(range(10))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert render_digits(5, size=16, source=source).x.shape == (5, 1, 16, 16)


def test_jitter_without_ranges_is_the_identity_and_is_seeded():
    x, _ = segment_templates()
    still = jitter(
        x,
        torch.Generator().manual_seed(0),
        rotation=0.0,
        scale=(1.0, 1.0),
        shear=0.0,
        shift=0.0,
        thicken=0.0,
        contrast=(1.0, 1.0),
    )
    assert torch.allclose(still, x, atol=1e-5)
    one = jitter(x, torch.Generator().manual_seed(3))
    assert torch.equal(one, jitter(x, torch.Generator().manual_seed(3)))
    assert not torch.allclose(one, x, atol=1e-2)


def test_font_templates_are_centred_like_mnist():
    if not find_fonts():
        pytest.skip("no fonts on this machine (the segment source is tested above)")
    digits = render_digits(300, seed=0, rotation=0.0, shear=0.0, shift=0.0, scale=(1.0, 1.0))
    mass = digits.x.sum((1, 2, 3))
    grid = torch.arange(28, dtype=torch.float)
    cy = (digits.x.sum((1, 3)) * grid).sum(1) / mass
    cx = (digits.x.sum((1, 2)) * grid).sum(1) / mass
    assert (cy - 13.5).abs().max() < 1.5 and (cx - 13.5).abs().max() < 1.5


def test_bad_renderer_input():
    with pytest.raises(UserError):
        render_digits(0)
    with pytest.raises(UserError, match="source"):
        render_digits(3, source="handwriting")
    with pytest.raises(UserError, match="not found"):
        render_digits(3, fonts=["/nonexistent/font.ttf"])


# ---------------------------------------------------------------------------- SimGAN


def test_self_regularization_and_identity_start():
    x = torch.rand(6, 1, 8, 8)
    assert self_regularization(x, x).item() == 0.0
    assert self_regularization(x + 0.1, x).item() == pytest.approx(0.1, rel=1e-5)
    refined = x.clone().requires_grad_(True)
    self_regularization(refined, torch.zeros_like(x)).backward()
    assert torch.equal(refined.grad, torch.full_like(x, 1 / x.numel()))  # pulls toward x
    game = build_simgan((1, 8, 8), width=4, blocks=1, d_width=4)
    assert self_regularization(refine(game, x), x).item() < 2e-3  # R starts as the identity


def _simgan_run(reg_weight):
    gen = torch.Generator().manual_seed(0)
    synthetic = 0.1 + 0.2 * torch.rand(128, 1, 8, 8, generator=gen)  # dark
    real = 0.7 + 0.2 * torch.rand(256, 1, 8, 8, generator=gen)  # bright
    torch.manual_seed(0)
    game = build_simgan((1, 8, 8), width=4, blocks=1, d_width=4)
    recipe = SimGanRecipe(real, reg_weight=reg_weight, history=16, seed=0)
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, device="cpu", progress=False)
    Trainer(game, recipe, config).fit((synthetic, torch.zeros(128, dtype=torch.long)))
    return self_regularization(refine(game, synthetic), synthetic).item(), synthetic, game


def test_simgan_refines_toward_real_and_self_regularization_holds_it_back():
    free, synthetic, game = _simgan_run(reg_weight=0.0)
    held, _, _ = _simgan_run(reg_weight=50.0)
    assert refine(game, synthetic).mean() > synthetic.mean() + 0.1  # brighter, like real
    assert held < 0.5 * free


# ---------------------------------------------------------------------------- PixelDA


def test_pixelda_players_and_short_run():
    gen = torch.Generator().manual_seed(0)
    x, y = segment_templates(8)
    x, y = x.repeat(12, 1, 1, 1), y.repeat(12)
    target = torch.rand(64, 1, 8, 8, generator=gen)
    torch.manual_seed(0)
    game = build_pixelda((1, 8, 8), 10, noise_dim=4, width=4, blocks=1, d_width=4,
                         classifier="linear")  # fmt: skip
    recipe = PixelDARecipe(target)
    assert set(recipe.players(game)) == {"generator", "discriminator", "classifier"}
    config = TrainConfig(epochs=10, batch_size=40, lr=1e-2, device="cpu", progress=False)
    result = Trainer(game, recipe, config).fit((x, y))
    assert result.history[-1]["train_task"] < result.history[0]["train_task"]
    assert torch.equal(generate(game, x[:5], seed=1), generate(game, x[:5], seed=1))
    assert not torch.equal(generate(game, x[:5], seed=1), generate(game, x[:5], seed=2))
    with pytest.raises(UserError, match="shape"):
        Trainer(game, PixelDARecipe(torch.rand(4, 1, 4, 4)), config).fit((x, y))


# ---------------------------------------------------------------------------- command line


def test_cli_simgan_and_pixelda(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    common = [
        "--digits", "segments", "--n-synthetic", 64, "--n-real", 64, "--n-eval", 50,
        "--batch-size", 32, "--width", 4, "--blocks", 1, "--d-width", 4,
        "--classifier-epochs", 1, "--data-dir", data_root, "--no-progress",
    ]  # fmt: skip
    out = tmp_path / "sim"
    assert main([str(a) for a in ["translate", "simgan", *common, "--out", out]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["acc_raw_synthetic"] <= 1 and 0 <= results["acc_refined_synthetic"] <= 1
    assert (out / "samples" / "epoch-0001.png").is_file() and (out / "model.json").is_file()
    out = tmp_path / "pix"
    argv = ["translate", "pixelda", *common, "--noise-dim", 2, "--out", out]
    assert main([str(a) for a in argv]) == 0
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["task_classifier_target_acc"] <= 1
    from advml.generative.translation import load_translation

    game, _ = load_translation(out)
    assert game.spec["kind"] == "pixelda"
