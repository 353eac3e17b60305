"""Trains a toy GAN under torchrun (2 CPU processes); run by test_trainer_players.py.

Usage: gan_ddp_worker.py OUT_DIR LOSS R1. Every rank writes OUT_DIR/rank-R.safetensors, so the
test can check that the players' gradients were synchronised (identical weights on all ranks
although each rank draws its own latent codes).
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from advml.data.toy import toy_sample
from advml.generative.game import build_game
from advml.generative.training import GanRecipe
from advml.runtime import dist_info
from advml.training import TrainConfig, Trainer

if __name__ == "__main__":
    out, loss, r1 = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    torch.manual_seed(0)
    game = build_game("toy-mlp", (2,), 2, 0, pack=2, options={"hidden": 16, "layers": 2})
    recipe = GanRecipe(loss=loss, n_critic=2, r1=r1, ema=0.9)
    config = TrainConfig(epochs=2, batch_size=64, lr=1e-3, device="cpu", progress=False)
    Trainer(game, recipe, config, out_dir=out / "run").fit(toy_sample("toy-ring", 512, seed=0))
    state = {k: v.contiguous() for k, v in game.state_dict().items()}
    state.update({k: v.contiguous() for k, v in recipe.state_tensors().items()})
    save_file(state, str(out / f"rank-{dist_info().rank}.safetensors"))
