"""Multi-player training in the one trainer: per-player optimizers, TTUR, exact resume."""

import json

import pytest
import torch
from torch import nn

from advml.data.toy import toy_sample
from advml.errors import UserError
from advml.generative.game import build_game
from advml.generative.training import GanRecipe
from advml.training import Recipe, TrainConfig, Trainer
from advml.training.recipe import PlayerSpec


def config(**overrides):
    base = dict(epochs=3, batch_size=32, lr=1e-3, device="cpu", progress=False)
    return TrainConfig(**{**base, **overrides})


class Recorder(Recipe):
    """Two players (two halves of a Sequential) that record their learning rates."""

    def __init__(self):
        self.seen = []

    def players(self, module):
        return {
            "a": PlayerSpec(module[0], betas=(0.0, 0.9)),
            "b": PlayerSpec(module[1], lr_scale=4.0, betas=(0.5, 0.999)),
        }

    def train_step(self, nets, x, y, step, optimizers):
        self.seen.append(
            {
                name: (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"])
                for name, opt in optimizers.items()
            }
        )
        for opt in optimizers.values():
            out = nets["b"](nets["a"](x)).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
        return {"out": out.item()}


def test_each_player_gets_its_optimizer_and_the_schedule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1))
    recipe = Recorder()
    x = torch.randn(64, 2)
    Trainer(model, recipe, config(epochs=2, schedule="cosine")).fit((x, torch.zeros(64)))
    assert len(recipe.seen) == 4
    for seen in recipe.seen:
        (lr_a, betas_a), (lr_b, betas_b) = seen["a"], seen["b"]
        assert lr_b == pytest.approx(4.0 * lr_a)  # TTUR multiplier
        assert (betas_a, betas_b) == ((0.0, 0.9), (0.5, 0.999))
    lrs = [seen["a"][0] for seen in recipe.seen]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] < lrs[0]  # cosine applies to both


def test_players_must_belong_to_the_model():
    class Outsider(Recorder):
        def players(self, module):
            return {"a": PlayerSpec(nn.Linear(2, 2))}

    with pytest.raises(UserError, match="outside the model"):
        Trainer(nn.Linear(2, 2), Outsider(), config()).fit((torch.randn(8, 2), torch.zeros(8)))


def gan_setup(ema=0.9):
    torch.manual_seed(3)
    game = build_game("toy-mlp", (2,), 2, 0, pack=2, options={"hidden": 16, "layers": 2})
    game.generator.net.insert(1, nn.BatchNorm1d(16))  # a buffer that must be restored too
    recipe = GanRecipe(loss="nonsaturating", n_critic=2, lr_d_scale=2.0, r1=0.5, ema=ema)
    return game, recipe


class Interrupt(Exception):
    pass


def test_gan_resume_is_bitwise_exact(tmp_path):
    data = toy_sample("toy-ring", 512, seed=0)
    cfg = config(epochs=4, batch_size=64, schedule="cosine")

    straight, recipe_a = gan_setup()
    Trainer(straight, recipe_a, cfg, out_dir=tmp_path / "a").fit(data)

    def stop(epoch, _row):
        if epoch == 2:
            raise Interrupt

    interrupted, recipe_b = gan_setup()
    with pytest.raises(Interrupt):
        Trainer(interrupted, recipe_b, cfg, out_dir=tmp_path / "b", callbacks=[stop]).fit(data)
    manifest = json.loads((tmp_path / "b" / "checkpoint" / "epoch-0002.json").read_text())
    assert set(manifest["optimizers"]) == {"generator", "discriminator"}

    torch.manual_seed(99)  # a fresh process: everything comes from the checkpoint
    resumed, recipe_c = gan_setup()
    with torch.no_grad():
        for p in resumed.parameters():
            p.add_(1.0)
    Trainer(resumed, recipe_c, cfg, out_dir=tmp_path / "b").fit(data, resume=True)

    a, c = straight.state_dict(), resumed.state_dict()
    assert a.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], c[key]), key
    ema_a, ema_c = recipe_a.state_tensors(), recipe_c.state_tensors()
    assert ema_a.keys() == ema_c.keys() and ema_a
    for key in ema_a:
        assert torch.equal(ema_a[key], ema_c[key]), key
    # training moved the weights, and the EMA differs from the raw generator
    assert not torch.equal(ema_a["ema.net.0.weight"], a["generator.net.0.weight"])


def test_resume_refuses_a_different_set_of_players(tmp_path):
    data = toy_sample("toy-ring", 256, seed=0)
    game, recipe = gan_setup(ema=0.0)
    Trainer(game, recipe, config(epochs=1, batch_size=64), out_dir=tmp_path).fit(data)

    class Single(GanRecipe):
        def players(self, module):
            return {"generator": PlayerSpec(module.generator)}

    game, _ = gan_setup(ema=0.0)
    with pytest.raises(UserError, match="players"):
        Trainer(
            game,
            Single(n_critic=2, lr_d_scale=2.0, r1=0.5),
            config(epochs=2, batch_size=64),
            out_dir=tmp_path,
        ).fit(data, resume=True)


@pytest.mark.distributed
@pytest.mark.parametrize(("loss", "r1"), [("nonsaturating", 1.0), ("wgan-gp", 0.0)])
def test_ddp_synchronises_both_players(tmp_path, loss, r1):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    worker = Path(__file__).with_name("gan_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADVML_PROGRESS": "0"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(worker),
        str(tmp_path),
        loss,
        str(r1),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(str(tmp_path / "rank-0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank-1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=1e-5, atol=1e-6, msg=key)
    # rank 0 alone wrote the run folder: one metrics row per epoch
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
