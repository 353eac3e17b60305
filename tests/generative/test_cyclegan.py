"""CycleGAN / UNIT: image history semantics, cycle loss, short seeded runs, checkpoints, CLI."""

import json

import pytest
import torch
from torch import nn

from advml.cli.main import main
from advml.errors import UserError
from advml.generative.cyclegan import CycleGenerators, build_translation, cycle_loss
from advml.generative.history import ImageHistory
from advml.generative.translation import (
    TranslationRecipe,
    cycle_error,
    label_preservation,
    load_translation,
    save_translation,
)
from advml.training import TrainConfig, Trainer

TINY = dict(width=4, blocks=1, downsamples=1, d_width=4, d_downsamples=1)


def batch(start, n=4, shape=(1, 2, 2)):
    """Images whose first pixel is their id, so outputs can be traced back to inputs."""
    x = torch.zeros(n, *shape)
    x.view(n, -1)[:, 0] = torch.arange(start, start + n, dtype=torch.float)
    return x


def ids(x):
    return x.view(len(x), -1)[:, 0].long().tolist()


# ---------------------------------------------------------------------------- image history


def test_history_returns_new_images_until_full_then_half_old():
    history = ImageHistory(6, seed=0)
    assert ids(history.query(batch(0))) == [0, 1, 2, 3]  # filling: the new images
    out = history.query(batch(4))  # 2 fill the buffer, the other 2: one swapped
    assert ids(out)[:2] == [4, 5] and len(history) == 6
    assert sum(i in (6, 7) for i in ids(out)[2:]) == 1
    stored = set(ids(history.buffer))
    out = history.query(batch(10, n=8))  # full: exactly half old, half new
    got = ids(out)
    new = [i for i in got if i >= 10]
    old = [i for i in got if i < 10]
    assert len(new) == 4 and len(old) == 4
    assert set(old) <= stored and len(set(old)) == 4  # distinct earlier images
    # the new images that were swapped out now sit in the buffer
    missing = sorted(set(range(10, 18)) - set(new))
    assert set(missing) <= set(ids(history.buffer))
    assert len(history) == 6


def test_history_is_seeded_and_resumable():
    def run(h, starts):
        return [ids(h.query(batch(s, n=6))) for s in starts]

    a, b = ImageHistory(5, seed=3), ImageHistory(5, seed=3)
    assert run(a, [0, 10, 20]) == run(b, [0, 10, 20])
    c = ImageHistory(5, seed=4)
    run(c, [0, 10])
    assert run(c, [20, 30, 40]) != run(ImageHistory(5, seed=3), [0, 10, 20, 30, 40])[2:]
    # state round trip continues exactly
    d = ImageHistory(5, seed=3)
    run(d, [0, 10])
    state = {k: v.clone() for k, v in d.state_tensors().items()}
    expected = run(d, [20, 30])
    e = ImageHistory(5, seed=99)
    e.load_state_tensors(state)
    assert run(e, [20, 30]) == expected


def test_history_edge_cases():
    x = torch.rand(3, 1, 2, 2)
    assert torch.equal(ImageHistory(0).query(x), x)  # capacity 0: pass through
    history = ImageHistory(2)
    history.query(x)
    with pytest.raises(UserError, match="shape"):
        history.query(torch.rand(3, 1, 3, 3))
    with pytest.raises(UserError, match="capacity"):
        ImageHistory(-1)


# ---------------------------------------------------------------------------- losses


def test_cycle_loss_of_identity_generators_is_zero():
    pair = CycleGenerators(1, 4, 1, 1)
    pair.ab, pair.ba = nn.Identity(), nn.Identity()
    a, b = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    out = pair(a, b)
    assert out["terms"]["cycle"].item() == 0.0
    assert out["terms"]["identity"].item() == 0.0
    assert torch.equal(out["fake_b"], a)
    assert cycle_loss(a, a + 0.25).item() == pytest.approx(0.25)
    assert "identity" not in pair(a, b, skip={"identity"})["terms"]


def test_unit_shares_the_latent_layers_and_translates_both_ways():
    game = build_translation("unit", (1, 8, 8), **TINY)
    gens = game.generator
    assert gens.enc_shared is not None and gens.gen_shared is not None
    x = torch.rand(3, 1, 8, 8)
    out = gens(x, x)
    assert set(out["terms"]) == {"recon", "kl", "cycle", "cycle_kl"}
    assert game.translate(x, "ab").shape == x.shape
    assert ((game.translate(x, "ba") >= 0) & (game.translate(x, "ba") <= 1)).all()


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="unknown translation model"):
        build_translation("pix2pix", (1, 8, 8))
    with pytest.raises(UserError, match="halved"):
        build_translation("cyclegan", (1, 6, 6), downsamples=2)
    game = build_translation("cyclegan", (1, 8, 8), **TINY)
    recipe = TranslationRecipe(torch.rand(8, 1, 8, 8), weights={"kl": 1.0})
    with pytest.raises(UserError, match="no loss term"):
        Trainer(game, recipe, TrainConfig(device="cpu", progress=False)).fit(
            (torch.rand(8, 1, 8, 8), torch.zeros(8))
        )
    with pytest.raises(UserError, match="shape"):
        recipe = TranslationRecipe(torch.rand(8, 1, 4, 4))
        Trainer(game, recipe, TrainConfig(device="cpu", progress=False)).fit(
            (torch.rand(8, 1, 8, 8), torch.zeros(8))
        )


# ---------------------------------------------------------------------------- training


def _domains(n=128):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, 1, 8, 8, generator=gen) * 0.5  # dark images
    b = 0.5 + torch.rand(n, 1, 8, 8, generator=gen) * 0.5  # bright images
    return a, b


@pytest.mark.parametrize("variant", ["cyclegan", "unit"])
def test_short_seeded_run_lowers_the_cycle_error(variant):
    a, b = _domains()
    torch.manual_seed(0)
    game = build_translation(variant, (1, 8, 8), **TINY)
    before = cycle_error(game, a), cycle_error(game, b, "ba")
    config = TrainConfig(epochs=8, batch_size=16, lr=3e-3, device="cpu", progress=False)
    result = Trainer(game, TranslationRecipe(b, seed=0), config).fit((a, torch.zeros(len(a))))
    after = cycle_error(game, a), cycle_error(game, b, "ba")
    assert after[0] < 0.7 * before[0] and after[1] < 0.7 * before[1]
    assert result.history[-1]["train_cycle"] < result.history[0]["train_cycle"]
    # the translation G(a) of dark images is brighter (it fools D_B)
    assert game.translate(a).mean() > a.mean() + 0.1


def test_checkpoint_round_trip(tmp_path):
    game = build_translation("cyclegan", (1, 8, 8), **TINY)
    x = torch.rand(4, 1, 8, 8)
    save_translation(game, tmp_path, {"source": "a"})
    loaded, card = load_translation(tmp_path)
    assert card["game"]["variant"] == "cyclegan" and card["source"] == "a"
    assert torch.equal(loaded.translate(x), game.translate(x))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    from advml.errors import FormatError

    with pytest.raises(FormatError, match="sha256"):
        load_translation(tmp_path)


def test_label_preservation_counts_kept_labels():
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        classifier[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        classifier[1].bias.zero_()
    x = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0]]).reshape(3, 1, 2, 2)
    assert label_preservation(x, torch.tensor([0, 1, 1]), classifier) == pytest.approx(2 / 3)
    with pytest.raises(UserError):
        label_preservation(x, torch.tensor([0]), classifier)


# ---------------------------------------------------------------------------- command line


def test_cli_cyclegan_mnist_to_usps(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    out = tmp_path / "run"
    argv = [
        "translate", "cyclegan", "--source", "mnist", "--target", "usps",
        "--data-dir", data_root, "--n-source", 64, "--n-target", 64, "--n-eval", 32,
        "--batch-size", 16, "--width", 4, "--blocks", 1, "--d-width", 4,
        "--classifier-epochs", 1, "--out", out, "--no-progress",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    results = json.loads((out / "results.json").read_text())
    for key in ("cycle_error_a", "cycle_error_b", "label_preservation"):
        assert 0.0 <= results[key] <= 1.0
    assert (out / "samples" / "epoch-0001.png").is_file()
    game, card = load_translation(out)
    assert card["source"] == "mnist" and game.spec["data_shape"] == [1, 28, 28]
    code = main(["translate", "cyclegan", "--target", "mnist", "--out", str(tmp_path / "x")])
    assert code == 2 and "both mnist" in capsys.readouterr().err


def test_resume_continues_exactly(tmp_path):
    a, b = _domains(64)

    def fit(epochs, out, resume=False):
        torch.manual_seed(0)
        game = build_translation("cyclegan", (1, 8, 8), **TINY)
        config = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, device="cpu", progress=False)
        recipe = TranslationRecipe(b, history=8, seed=0)
        Trainer(game, recipe, config, out_dir=out).fit((a, torch.zeros(len(a))), resume=resume)
        return game

    full = fit(2, tmp_path / "full")
    fit(1, tmp_path / "part")
    resumed = fit(2, tmp_path / "part", resume=True)
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
