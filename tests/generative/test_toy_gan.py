"""Toy GANs end to end: the ring is learned; packing, EMA, AC-GAN, WGAN-GP, checkpoints."""

import pytest
import torch
from torch import nn

from advml.data.toy import toy_modes, toy_sample
from advml.errors import FormatError, UserError
from advml.generative.checkpoint import load_gan, save_gan
from advml.generative.ema import EMA
from advml.generative.game import build_game, sample
from advml.generative.metrics.modes import PROTOCOL_SAMPLES, mode_coverage
from advml.generative.nets import build_gan
from advml.generative.packing import PackedDiscriminator, pack, packed_shape
from advml.generative.training import GanRecipe
from advml.training import TrainConfig, Trainer


def test_a_short_seeded_run_learns_the_ring():
    torch.manual_seed(0)
    game = build_game("toy-mlp", (2,), 2, 0)
    data = toy_sample("toy-ring", 10000, seed=0)
    config = TrainConfig(epochs=20, batch_size=100, lr=1e-3, device="cpu", progress=False)
    Trainer(game, GanRecipe(loss="nonsaturating"), config).fit(data)  # 2,000 steps
    x, _ = sample(game.generator, PROTOCOL_SAMPLES, 2, seed=1)
    score = mode_coverage(x, *toy_modes("toy-ring"))
    assert score.modes >= 6
    assert score.high_quality >= 0.3


def test_packing_groups_consecutive_samples():
    images = torch.arange(6 * 2 * 3 * 3, dtype=torch.float32).reshape(6, 2, 3, 3)
    packed = pack(images, 3)
    assert packed.shape == (2, 6, 3, 3)
    for i in range(2):
        for j in range(3):
            assert torch.equal(packed[i, 2 * j : 2 * j + 2], images[3 * i + j])
    assert packed_shape((1, 28, 28), 4) == (4, 28, 28)
    assert packed_shape((2,), 2) == (4,)
    with pytest.raises(ValueError, match="packs of 4"):
        pack(images, 4)
    with pytest.raises(UserError, match="pack must be"):
        packed_shape((2,), 0)


def test_packed_toy_discriminator_scores_one_value_per_pack():
    game = build_game("pacgan-mlp", (2,), 2, 0, pack=4, options={"g_hidden": 8, "d_hidden": 8})
    assert isinstance(game.discriminator, PackedDiscriminator)
    first = game.discriminator.discriminator.body[0].linear
    assert first.in_features == 8  # 4 points of 2 coordinates
    scores, logits = game.discriminator(torch.randn(40, 2))
    assert scores.shape == (10,) and logits is None
    assert game.spec["pack"] == 4


def test_ema_math():
    layer = nn.Linear(1, 1, bias=False)
    norm = nn.BatchNorm1d(1)
    module = nn.Sequential(layer, norm)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = EMA(module, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    norm.num_batches_tracked.fill_(7)
    ema.update(module)
    assert ema.shadow["0.weight"].item() == pytest.approx(0.1)
    ema.update(module)
    assert ema.shadow["0.weight"].item() == pytest.approx(0.19)  # 0.9 * 0.1 + 0.1 * 1
    assert ema.shadow["1.num_batches_tracked"].item() == 7  # integers are copied
    averaged = ema.averaged(module)
    assert averaged[0].weight.item() == pytest.approx(0.19) and not averaged.training
    assert layer.weight.item() == 1.0  # the live module is untouched
    with pytest.raises(UserError, match="decay"):
        EMA(module, decay=1.0)


def _one_step(game, recipe, data, batch):
    config = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, device="cpu", progress=False)
    return Trainer(game, recipe, config).fit(data).final


def test_wgan_gp_with_five_critic_steps_and_spectral_norm():
    torch.manual_seed(0)
    game = build_game("toy-mlp", (2,), 2, 0, spectral_norm=True, options={"hidden": 16})
    x, y = toy_sample("toy-grid", 250, seed=0)
    row = _one_step(game, GanRecipe(loss="wgan-gp", n_critic=5, betas_d=(0.0, 0.9)), (x, y), 250)
    assert {"train_gp", "train_d_loss", "train_g_loss"} <= row.keys()
    assert row["train_gp"] > 0


def test_conditional_ac_gan_uses_the_labels():
    torch.manual_seed(0)
    game = build_game("toy-mlp", (2,), 2, 8, options={"hidden": 16, "aux_classifier": True})
    x, y = toy_sample("toy-ring", 256, seed=0)
    row = _one_step(game, GanRecipe(conditional=True), (x, y), 64)
    assert row["train_d_aux"] > 0 and row["train_g_aux"] > 0
    with pytest.raises(UserError, match="conditional"):
        _one_step(game, GanRecipe(), (x, y), 64)
    fake, labels = sample(game.generator, 16, 2, 8)
    assert fake.shape == (16, 2) and labels.tolist() == [k % 8 for k in range(16)]


def test_bad_combinations_are_user_errors():
    with pytest.raises(UserError, match="vector data"):
        build_game("toy-mlp", (1, 28, 28), 2, 0)
    with pytest.raises(UserError, match="pack"):
        build_game("toy-mlp", (2,), 2, 8, pack=2)
    with pytest.raises(UserError, match="no option"):
        build_gan("toy-mlp", (2,), 2, 0, width=3)
    with pytest.raises(UserError, match="n_critic"):
        GanRecipe(n_critic=0)
    with pytest.raises(UserError, match="unknown GAN loss"):
        GanRecipe(loss="wasserstein")


def test_checkpoint_round_trip_with_ema_and_spectral_norm(tmp_path):
    torch.manual_seed(0)
    game = build_game(
        "pacgan-mlp", (2,), 2, 0, pack=2, spectral_norm=True, options={"g_hidden": 8, "d_hidden": 8}
    )
    ema = EMA(game.generator, 0.5)
    with torch.no_grad():
        for p in game.generator.parameters():
            p.mul_(2.0)
    ema.update(game.generator)
    save_gan(game, tmp_path, {"dataset": "toy-ring"}, ema=ema.state_tensors())
    loaded, card = load_gan(tmp_path)
    assert card["dataset"] == "toy-ring" and card["ema"] is True
    want, _ = sample(ema.averaged(game.generator), 32, 2, seed=5)
    got, _ = sample(loaded.generator, 32, 2, seed=5)
    assert torch.equal(want, got)
    raw, _ = load_gan(tmp_path, use_ema=False)
    assert torch.equal(sample(raw.generator, 8, 2)[0], sample(game.generator, 8, 2)[0])
    x = torch.randn(16, 2)
    game.eval()
    assert torch.equal(loaded.discriminator(x)[0], game.discriminator(x)[0])

    weights = tmp_path / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="sha256"):
        load_gan(tmp_path)
    with pytest.raises(FormatError, match="no GAN checkpoint"):
        load_gan(tmp_path / "missing")
