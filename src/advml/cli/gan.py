"""``advml gan``: train a generative adversarial network, draw samples, score them.

* ``advml gan train --dataset toy-ring --arch toy-mlp --loss nonsaturating --out DIR`` writes a
  run folder: ``config.json``, ``metrics.jsonl`` (losses; covered modes, high-quality fraction
  and reverse KL for the 2-D mixtures), ``samples/epoch-NNNN.png``, ``model.safetensors`` +
  ``model.json`` (both players, EMA generator), ``checkpoint/`` for ``--resume``.
* ``advml gan sample --checkpoint DIR --n 64 --out samples.png``.
* ``advml gan score --checkpoint DIR``: the PacGAN mode metrics on toy data; FID and friends
  (:mod:`advml.generative.metrics`) on images.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from advml.cli.common import (
    add_data_options,
    add_run_options,
    command_line,
    load_split,
    out_dir,
    positive_float,
    positive_int,
)
from advml.errors import UserError
from advml.training.schedules import SCHEDULES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gan",
        help="generative adversarial networks: train, sample, score",
        description="Train a GAN (any registered generator/discriminator pair, loss and "
        "regulariser), draw samples from a checkpoint, or score them.",
    )
    commands = parser.add_subparsers(dest="gan_command", metavar="ACTION", required=True)
    _register_train(commands)
    _register_sample(commands)
    _register_score(commands)


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it is JSON (numbers, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _register_train(commands: argparse._SubParsersAction) -> None:
    from advml.generative.losses import LOSSES

    parser = commands.add_parser(
        "train",
        help="train a GAN and write a run folder",
        description="Train a generator/discriminator pair with the one trainer. Each step: "
        "--n-critic discriminator updates on minibatches of --batch-size samples "
        "(--batch-size packs of --pack samples with PacGAN packing), then one generator update.",
    )
    add_data_options(parser, default=None)
    parser.add_argument("--arch", default="toy-mlp", help="GAN pair (default: toy-mlp)")
    parser.add_argument(
        "--arch-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the architecture (repeatable), e.g. --arch-option hidden=256",
    )
    parser.add_argument("--loss", choices=LOSSES, default="nonsaturating")
    parser.add_argument(
        "--latent-dim",
        type=positive_int,
        default=None,
        help="latent size (default: 2 for 2-D data, else 64)",
    )
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="generator steps (rounded up to whole epochs); alternative to --epochs",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="minibatch of each update, in packs (default: 64)",
    )
    parser.add_argument("--lr-g", type=positive_float, default=2e-4, help="generator LR")
    parser.add_argument(
        "--lr-d",
        type=positive_float,
        default=None,
        help="discriminator LR (default: --lr-g; TTUR uses e.g. 4x)",
    )
    parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (default: 0.5)")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="constant")
    parser.add_argument(
        "--n-critic",
        type=int,
        default=1,
        help="discriminator steps per generator step (default: 1; WGAN-GP: 5)",
    )
    parser.add_argument(
        "--pack", type=int, default=1, help="PacGAN packing degree m (default: 1 = no packing)"
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="EMA decay of the generator weights (0 = off; e.g. 0.999)",
    )
    parser.add_argument("--gp", type=float, default=10.0, help="WGAN-GP lambda (default: 10)")
    parser.add_argument("--r1", type=float, default=0.0, help="R1 gamma (default: 0 = off)")
    parser.add_argument(
        "--spectral-norm",
        action="store_true",
        help="spectral normalization on every discriminator layer",
    )
    parser.add_argument(
        "--conditional", action="store_true", help="class-conditional: both players see the labels"
    )
    parser.add_argument(
        "--semi-supervised",
        action="store_true",
        help="K+1-class discriminator trained on --labeled labels and all images unlabeled, "
        "generator by feature matching (Salimans et al. 2016; e.g. --arch ssgan-mlp)",
    )
    parser.add_argument(
        "--labeled",
        type=positive_int,
        default=100,
        help="with --semi-supervised: labeled training images, balanced over classes "
        "(default: 100)",
    )
    parser.add_argument(
        "--sample-every",
        type=positive_int,
        default=1,
        help="write samples (and toy mode metrics) every N epochs",
    )
    parser.add_argument(
        "--n-train", type=positive_int, default=None, help="use only the first N training samples"
    )
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its last checkpoint",
    )
    add_run_options(parser)
    parser.set_defaults(func=run_train)


def _register_sample(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sample", help="draw samples of a trained GAN as a PNG")
    parser.add_argument("--checkpoint", required=True, help="run folder or model.json")
    parser.add_argument("--n", type=positive_int, default=64, help="number of samples")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_sample)


def _register_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("score", help="score a trained GAN's samples")
    parser.add_argument("--checkpoint", required=True, help="run folder or model.json")
    parser.add_argument(
        "--n",
        type=positive_int,
        default=None,
        help="samples to score (default: 2500 for toy data, 10000 for images)",
    )
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets")
    parser.add_argument("--cache-dir", default=None, help="cache of feature networks")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(func=run_score)


# ---------------------------------------------------------------------------- train


def _check_train_args(args: argparse.Namespace) -> None:
    from advml.generative.packing import check_pack

    check_pack(args.pack)
    if args.n_critic < 1:
        raise UserError(f"--n-critic must be >= 1, got {args.n_critic}")
    if args.epochs is not None and args.steps is not None:
        raise UserError("give --epochs or --steps, not both")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        raise UserError(f"Adam betas must lie in [0, 1), got {args.beta1}, {args.beta2}")
    if args.loss != "wgan-gp" and args.gp != 10.0:
        raise UserError("--gp applies to --loss wgan-gp; use --r1 for other losses")
    if args.semi_supervised and (args.pack != 1 or args.n_critic != 1 or args.conditional):
        raise UserError(
            "--semi-supervised trains one K+1-class discriminator step per generator step: "
            "drop --pack, --n-critic and --conditional"
        )


def run_train(args: argparse.Namespace) -> int:
    from advml import data
    from advml.generative.game import build_game
    from advml.generative.monitor import GanMonitor
    from advml.generative.training import GanRecipe
    from advml.runs import RunFolder
    from advml.runtime import dist_info
    from advml.training import TrainConfig, Trainer

    _check_train_args(args)
    folder = out_dir(args.out)
    x, y = load_split(args, "train", args.n_train)
    shape = tuple(x.shape[1:])
    num_classes = 0
    if args.conditional or args.semi_supervised:
        num_classes = int(y.max().item()) + 1
        with contextlib.suppress(UserError):  # user data: the labels tell
            num_classes = max(num_classes, data.info(args.dataset).num_classes)
    latent = args.latent_dim or (2 if len(shape) == 1 else 64)
    with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed
        torch.manual_seed(args.seed)
        game = build_game(
            args.arch,
            shape,
            latent,
            num_classes,
            pack=args.pack,
            spectral_norm=args.spectral_norm,
            options=dict(args.arch_option),
        )
    batch = args.batch_size * args.pack * args.n_critic
    if batch > len(x):
        raise UserError(
            f"one step needs {batch} training samples (batch {args.batch_size} x pack "
            f"{args.pack} x n-critic {args.n_critic}) but there are {len(x)}"
        )
    steps_per_epoch = len(x) // batch
    epochs = args.epochs or (math.ceil(args.steps / steps_per_epoch) if args.steps else 1)
    lr_d = args.lr_d or args.lr_g
    card = {"dataset": args.dataset, "command": command_line(args)}
    betas = (args.beta1, args.beta2)
    recipe = GanRecipe(
        loss=args.loss,
        n_critic=args.n_critic,
        lr_d_scale=lr_d / args.lr_g,
        betas_g=betas,
        betas_d=betas,
        gp=args.gp,
        r1=args.r1,
        ema=args.ema,
        conditional=args.conditional,
    )
    if args.semi_supervised:
        recipe = _semi_supervised_recipe(args, x, y, num_classes)
        y = torch.full_like(y, -1)  # the trainer's copy carries no labels
    recipe.monitor = GanMonitor(
        folder,
        args.dataset,
        card,
        every=args.sample_every,
        seed=args.seed,
        recipe_settings=recipe.settings(),
    )
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch,
        optimizer="adam",
        lr=args.lr_g,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    main_rank = dist_info().is_main
    if main_rank:
        RunFolder(folder).write_config(
            {
                **vars(args),
                "func": None,
                "arch_option": dict(args.arch_option),
                "train_config": dataclasses.asdict(config),
                "recipe": recipe.settings(),
                "game": game.spec,
                "data_shape": list(shape),
                "steps_per_epoch": steps_per_epoch,
            },
            command=command_line(args),
        )
        params = [
            sum(p.numel() for p in m.parameters()) for m in (game.generator, game.discriminator)
        ]
        print(
            f"training {args.arch} (generator {params[0]:,} / discriminator {params[1]:,} "
            f"parameters) on {args.dataset}: {len(x):,} samples, {steps_per_epoch} steps x "
            f"{epochs} epoch(s), loss {args.loss}, pack {args.pack}"
        )
    started = time.perf_counter()
    result = Trainer(game, recipe, config, out_dir=folder).fit((x, y), resume=args.resume)
    if main_rank:
        final = result.final
        RunFolder(folder).write_results({"final": final, "seconds": time.perf_counter() - started})
        _print_history(result.history)
        print(f"model written to {folder / 'model.safetensors'}; samples in {folder / 'samples'}")
    return 0


def _semi_supervised_recipe(args: argparse.Namespace, x, y, num_classes: int):
    """Salimans et al. 2016's game: ``--labeled`` balanced labels, the test split (when the
    dataset has one) for the per-epoch ``test_error``."""
    from advml.generative.semi_supervised import SemiSupervisedRecipe, balanced_subset

    index = balanced_subset(y, args.labeled, num_classes, seed=args.seed)
    evaluation = None
    with contextlib.suppress(UserError):
        evaluation = load_split(args, "test")
    return SemiSupervisedRecipe(
        (x[index], y[index]),
        feature_matching=True,
        betas=(args.beta1, args.beta2),
        lr_d_scale=(args.lr_d or args.lr_g) / args.lr_g,
        evaluation=evaluation,
    )


def _print_history(history: list[dict[str, Any]]) -> None:
    toy = any("modes" in row for row in history)
    header = f"{'epoch':>5} {'d loss':>8} {'g loss':>8}"
    if toy:
        header += f" {'modes':>5} {'high q.':>8} {'rev. KL':>7}"
    print(header + f" {'seconds':>8}")
    for row in history:
        line = f"{row['epoch']:>5} {row.get('train_d_loss', math.nan):>8.4f} "
        line += f"{row.get('train_g_loss', math.nan):>8.4f}"
        if toy:
            kl = row.get("reverse_kl")
            line += f" {row.get('modes', '-'):>5} {100 * row.get('high_quality', math.nan):>7.1f}%"
            line += f" {kl:>7.3f}" if kl is not None else f" {'-':>7}"
        if "test_error" in row:  # semi-supervised: error of the K-class head
            line += f"  test error {100 * row['test_error']:.2f}%"
        print(line + f" {row['epoch_seconds']:>8.1f}")


# ---------------------------------------------------------------------------- sample, score


def _load(args: argparse.Namespace):
    from advml.generative.checkpoint import load_gan

    return load_gan(args.checkpoint, use_ema=not args.no_ema)


def run_sample(args: argparse.Namespace) -> int:
    from advml.generative.game import sample
    from advml.generative.monitor import toy_mixture, write_samples

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out {args.out}: give a .png file")
    game, card = _load(args)
    x, _ = sample(game.generator, args.n, game.latent_dim, game.num_classes, seed=args.seed)
    if x.dim() == 4:
        x = x[: args.n]
    path = write_samples(x, Path(args.out), toy_mixture(card.get("dataset", "")))
    print(f"{args.n} samples written to {path}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from advml.generative.game import sample
    from advml.generative.monitor import toy_mixture

    game, card = _load(args)
    dataset = card.get("dataset")
    mixture = toy_mixture(dataset or "")
    if mixture is not None:
        from advml.generative.metrics.modes import PROTOCOL_SAMPLES, mode_coverage

        n = args.n or PROTOCOL_SAMPLES
        x, _ = sample(game.generator, n, game.latent_dim, game.num_classes, seed=args.seed)
        scores: dict[str, Any] = mode_coverage(x, *mixture).as_dict()
    else:
        scores = _score_images(game, dataset, args)
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key}: {value}")
    return 0


def _score_images(game, dataset: str | None, args: argparse.Namespace) -> dict[str, Any]:
    from advml.data import load
    from advml.generative.game import sample

    if not dataset:
        raise UserError("the checkpoint's card names no dataset to compare with")
    try:
        from advml.generative.metrics.features import feature_network
        from advml.generative.metrics.image import score_images
    except ImportError as error:
        raise UserError(
            f"image metrics are not available in this advml ({error}); toy data scores with "
            "the mode metrics"
        ) from None
    real, _ = load(dataset, "test", root=args.data_dir)
    n = args.n or min(10000, len(real))
    fake, _ = sample(game.generator, n, game.latent_dim, game.num_classes, seed=args.seed)
    features = feature_network(dataset, data_dir=args.data_dir, cache_dir=args.cache_dir)
    result = score_images(real[:n], fake, features=features, dataset_name=dataset)
    return dict(result) if not dataclasses.is_dataclass(result) else dataclasses.asdict(result)
