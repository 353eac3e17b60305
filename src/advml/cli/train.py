"""``advml train``: train a model on a dataset with a recipe of the one trainer."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from advml.cli.common import (
    add_data_options,
    add_run_options,
    command_line,
    load_split,
    normalization_for,
    out_dir,
    positive_float,
    positive_int,
)
from advml.errors import UserError
from advml.training.schedules import SCHEDULES
from advml.training.trainer import OPTIMIZERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (standard or adversarial recipe)",
        description="Train a model and write a run folder: config.json, metrics.jsonl, "
        "model.safetensors + model.json card, checkpoint/ for --resume.",
    )
    add_data_options(parser)
    parser.add_argument("--arch", default="cnn-small", help="architecture (default: cnn-small)")
    parser.add_argument(
        "--recipe", default="standard", help="training recipe: standard or pgd (default: standard)"
    )
    parser.add_argument(
        "--threat",
        choices=("linf", "l2", "l1"),
        default=None,
        help="threat model of adversarial recipes (default: the recipe's own, linf for most)",
    )
    parser.add_argument(
        "--eps",
        type=positive_float,
        default=None,
        help="budget of adversarial recipes (e.g. 0.3 for MNIST L∞)",
    )
    parser.add_argument(
        "--attack-steps",
        type=positive_int,
        default=None,
        help="inner-maximizer iterations of adversarial recipes",
    )
    parser.add_argument(
        "--no-normalize",
        action="store_true",
        help="no Normalize layer: the network sees [0, 1] pixels, as in papers whose models "
        "take raw pixels (e.g. Wong et al. 2020's MNIST network)",
    )
    parser.add_argument(
        "--eps-warmup",
        type=float,
        default=None,
        metavar="FRACTION",
        help="adversarial recipes: ramp eps linearly from 0 over this fraction of training "
        "(e.g. 0.2; default 0, full eps from the first step)",
    )
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=128,
        help="global batch size, split across torchrun processes (default: 128)",
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="constant")
    parser.add_argument(
        "--labeled",
        type=positive_int,
        default=None,
        help="semi-supervised recipes (vat): keep N labels, class-balanced, and train on the "
        "rest unlabeled",
    )
    parser.add_argument(
        "--robust-val",
        type=int,
        default=None,
        help="adversarial recipes: hold out N training samples, measure PGD-10 robust accuracy "
        "on them each epoch and keep the best epoch as best.safetensors (default: min(500, 10%%)"
        " of the training set; 0 disables)",
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
    parser.set_defaults(func=run)


SEMI_SUPERVISED = ("vat",)


def hide_labels(
    train: tuple[torch.Tensor, torch.Tensor], keep: int, num_classes: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Keep ``keep`` labels (``keep / classes`` per class, seeded); mark the rest ``-1``.

    Returns the training set with hidden labels and the labeled subset.
    """
    x, y = train
    if keep % num_classes or keep > len(y):
        raise UserError(
            f"--labeled {keep}: use a multiple of the {num_classes} classes, at most {len(y)}"
        )
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    chosen = torch.cat([order[y[order] == c][: keep // num_classes] for c in range(num_classes)])
    if len(chosen) < keep:
        raise UserError(
            f"--labeled {keep}: some class has fewer than {keep // num_classes} samples"
        )
    hidden = torch.full_like(y, -1)
    hidden[chosen] = y[chosen]
    return (x, hidden), (x[chosen], y[chosen])


def hold_out_robust_validation(train, recipe, args: argparse.Namespace):
    """Split off the robust-validation subset (a seeded random choice) for adversarial recipes."""
    from advml.threats import Linf
    from advml.training.trainer import RobustValidation

    threat = getattr(recipe, "threat", None)
    if threat is None and recipe.name == "ibp":
        threat = Linf(recipe.eps)
    size = args.robust_val
    if threat is None or size == 0:
        if size:
            raise UserError(f"--robust-val needs an adversarial recipe, not {recipe.name}")
        return train, None
    x, y = train
    if size is None:
        size = min(500, len(x) // 10)
    if not 0 < size < len(x):
        raise UserError(f"--robust-val {size}: choose between 1 and {len(x) - 1}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    held, kept = order[:size], order[size:]
    labeled = y[held] >= 0
    check = RobustValidation(x[held][labeled], y[held][labeled], threat)
    return (x[kept], y[kept]), check


def recipe_settings(args: argparse.Namespace) -> dict[str, object]:
    """Settings for adversarial recipes, only those the user gave."""
    if args.recipe == "standard":
        given = (args.eps, args.attack_steps, args.threat, args.eps_warmup)
        if any(value is not None for value in given):
            raise UserError(
                "--threat, --eps, --attack-steps and --eps-warmup apply to adversarial "
                "recipes; add e.g. --recipe pgd"
            )
        return {}
    settings: dict[str, object] = {}
    if args.threat is not None:
        settings["threat"] = args.threat
    if args.eps is not None:
        settings["eps"] = args.eps
    if args.attack_steps is not None:
        settings["steps"] = args.attack_steps
    if args.eps_warmup is not None:
        settings["eps_warmup"] = args.eps_warmup
    return settings


def run(args: argparse.Namespace) -> int:
    from advml.models import build, count_parameters
    from advml.runs import RunFolder
    from advml.runtime import dist_info
    from advml.training import TrainConfig, Trainer, get_recipe

    folder = out_dir(args.out)
    train = load_split(args, "train", args.n_train)
    test = load_split(args, "test")
    mean, std = (None, None) if args.no_normalize else normalization_for(args.dataset, train[0])
    num_classes = int(max(train[1].max(), test[1].max()).item()) + 1
    with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed
        torch.manual_seed(args.seed)
        model = build(args.arch, tuple(train[0].shape[1:]), num_classes, mean=mean, std=std)
    settings = recipe_settings(args)
    if args.labeled is not None:
        if args.recipe not in SEMI_SUPERVISED:
            raise UserError(
                f"--labeled needs a semi-supervised recipe "
                f"({', '.join(SEMI_SUPERVISED)}), not {args.recipe}"
            )
        train, settings["labeled"] = hide_labels(train, args.labeled, num_classes, args.seed)
    recipe = get_recipe(args.recipe, **settings)
    train, robust_val = hold_out_robust_validation(train, recipe, args)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    config.validate()
    main_rank = dist_info().is_main
    if main_rank:
        RunFolder(folder).write_config(
            {
                **vars(args),
                "func": None,
                "train_config": dataclasses.asdict(config),
                "num_classes": num_classes,
                "input_shape": list(train[0].shape[1:]),
                "normalization": {"mean": mean, "std": std},
            },
            command=command_line(args),
        )
        print(
            f"training {args.arch} ({count_parameters(model):,} parameters) on {args.dataset}: "
            f"{len(train[0]):,} train / {len(test[0]):,} test samples, recipe {args.recipe}"
        )
    started = time.perf_counter()
    result = Trainer(model, recipe, config, out_dir=folder).fit(
        train,
        test,
        val_name="test",
        resume=args.resume,
        card={"dataset": args.dataset, "command": command_line(args)},
        robust_val=robust_val,
    )
    if main_rank:
        seconds = time.perf_counter() - started
        print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'seconds':>8}")
        for row in result.history:
            print(
                f"{row['epoch']:>5} {row.get('train_loss', float('nan')):>10.4f} "
                f"{row.get('train_acc', float('nan')):>9.2%} {row['test_acc']:>8.2%} "
                f"{row['epoch_seconds']:>8.1f}"
            )
        if "robust_val_acc" in result.final:
            best = max(result.history, key=lambda row: row["robust_val_acc"])
            print(
                f"best robust validation accuracy {best['robust_val_acc']:.2%} at epoch "
                f"{best['epoch']}: {folder / 'best.safetensors'}"
            )
        final = result.final.get("test_acc", float("nan"))
        print(
            f"test accuracy {final:.2%} after {config.epochs} epoch(s) in {seconds:.1f} s; "
            f"model written to {folder / 'model.safetensors'}"
        )
    return 0
