"""``advml translate``: unpaired image translation and simulated-to-real refinement.

* ``advml translate cyclegan --source mnist --target usps --out DIR`` (CycleGAN, Zhu et al.
  2017) and ``advml translate unit ...`` (UNIT, Liu et al. 2017): run folder with
  ``metrics.jsonl`` (losses, cycle errors), ``samples/epoch-NNNN.png`` (rows: A, G(A), B, F(B)),
  ``model.safetensors`` + ``model.json``, and ``results.json`` with the cycle errors and the
  label-preservation rate (a classifier trained on the target domain labels translated
  source test images).
* ``advml translate simgan --real mnist --out DIR``: SimGAN refiner (Shrivastava et al. 2017)
  from synthetic font digits to unlabeled real digits; results: test accuracy on the real
  domain of a classifier trained on raw vs refined synthetic digits.
* ``advml translate pixelda --target mnist --out DIR``: PixelDA (Bousmalis et al. 2017) from
  synthetic digits; results: the task classifier's accuracy on the target test images.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from advml.cli.common import add_run_options, command_line, out_dir, positive_float, positive_int
from advml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="unpaired image translation (CycleGAN, UNIT) and sim-to-real (SimGAN, PixelDA)",
        description="Image-to-image translation between digit domains (MNIST, USPS resized "
        "to 28x28, MNIST-M; grey repeated to RGB when paired with MNIST-M) and refinement of "
        "synthetic font digits toward real ones.",
    )
    commands = parser.add_subparsers(dest="translate_command", metavar="MODEL", required=True)
    for variant, paper in (
        ("cyclegan", "CycleGAN (Zhu et al. 2017): cycle-consistent adversarial translation"),
        ("unit", "UNIT (Liu et al. 2017): shared-latent VAE-GAN translation"),
    ):
        sub = commands.add_parser(variant, help=paper, description=paper)
        _add_domain_options(sub, variant)
        sub.set_defaults(func=run_translation, variant=variant)
    sim = commands.add_parser(
        "simgan", help="SimGAN refiner (Shrivastava et al. 2017): synthetic -> real digits"
    )
    _add_synthetic_options(sim, "--real")
    sim.add_argument(
        "--reg-weight", type=float, default=1.0, help="self-regularization lambda (default 1)"
    )
    sim.add_argument("--history", type=int, default=50, help="refined-image history size")
    sim.add_argument("--refiner-steps", type=positive_int, default=2, help="K_g (default 2)")
    sim.set_defaults(func=run_simgan)
    pix = commands.add_parser(
        "pixelda", help="PixelDA (Bousmalis et al. 2017): synthetic -> target with a task net"
    )
    _add_synthetic_options(pix, "--target")
    pix.add_argument("--noise-dim", type=int, default=10, help="size of z (default 10)")
    pix.add_argument("--adversarial-weight", type=float, default=1.0, help="alpha (default 1)")
    pix.add_argument("--task-weight", type=float, default=1.0, help="beta (default 1)")
    pix.add_argument("--task-arch", default="lenet", help="task classifier T (default lenet)")
    pix.set_defaults(func=run_pixelda)


def _add_train_options(parser: argparse.ArgumentParser, batch: int) -> None:
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the datasets (default: $ADVML_DATA, then ~/.cache/advml)",
    )
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="updates (rounded up to whole epochs); alternative to --epochs",
    )
    parser.add_argument("--batch-size", type=positive_int, default=batch)
    parser.add_argument("--lr", type=positive_float, default=2e-4, help="Adam LR (default 2e-4)")
    parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (default 0.5)")
    parser.add_argument("--width", type=positive_int, default=32, help="generator width")
    parser.add_argument("--blocks", type=positive_int, default=3, help="residual blocks")
    parser.add_argument("--d-width", type=positive_int, default=32, help="discriminator width")
    parser.add_argument(
        "--classifier-epochs",
        type=int,
        default=1,
        help="epochs of the evaluation classifier (0: skip the classifier metrics)",
    )
    parser.add_argument(
        "--classifier-arch",
        default="lenet",
        help="architecture of the evaluation classifier (default lenet)",
    )
    parser.add_argument(
        "--n-eval", type=positive_int, default=2000, help="test images per domain (default 2000)"
    )
    add_run_options(parser)


def _add_domain_options(parser: argparse.ArgumentParser, variant: str) -> None:
    from advml.representation.domains import DOMAINS

    parser.add_argument("--source", choices=DOMAINS, default="mnist", help="domain A")
    parser.add_argument("--target", choices=DOMAINS, required=True, help="domain B")
    parser.add_argument("--n-source", type=positive_int, default=None, help="first N A images")
    parser.add_argument("--n-target", type=positive_int, default=None, help="first N B images")
    parser.add_argument("--history", type=int, default=50, help="image history (default 50)")
    parser.add_argument("--cycle-weight", type=float, default=10.0, help="lambda (default 10)")
    if variant == "cyclegan":
        parser.add_argument(
            "--identity-weight", type=float, default=5.0, help="identity loss (default 0.5 x 10)"
        )
    _add_train_options(parser, batch=16)


def _add_synthetic_options(parser: argparse.ArgumentParser, real_flag: str) -> None:
    from advml.representation.domains import DOMAINS

    parser.add_argument(real_flag, dest="real", choices=DOMAINS, default="mnist")
    parser.add_argument(
        "--n-synthetic", type=positive_int, default=20000, help="synthetic digits (default 20000)"
    )
    parser.add_argument(
        "--digits",
        choices=("fonts", "segments"),
        default="fonts",
        help="render from the machine's fonts (default) or seven-segment digits",
    )
    parser.add_argument("--n-real", type=positive_int, default=None, help="first N real images")
    _add_train_options(parser, batch=64)


def _epochs(args: argparse.Namespace, n: int) -> int:
    if args.epochs is not None and args.steps is not None:
        raise UserError("give --epochs or --steps, not both")
    if args.batch_size > n:
        raise UserError(f"--batch-size {args.batch_size} exceeds the {n} training images")
    if not 0 <= args.beta1 < 1:
        raise UserError(f"--beta1 must lie in [0, 1), got {args.beta1}")
    per_epoch = n // args.batch_size
    return args.epochs or (math.ceil(args.steps / per_epoch) if args.steps else 1)


def _config(args: argparse.Namespace, epochs: int):
    from advml.training import TrainConfig

    return TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )


def _write_config(folder: Path, args: argparse.Namespace, **extra: Any) -> None:
    from advml.runs import RunFolder

    RunFolder(folder).write_config(
        {**vars(args), "func": None, **extra}, command=command_line(args)
    )


def _finish(folder: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from advml.runs import RunFolder

    results["command"] = command_line(args)
    RunFolder(folder).write_results(results)
    for key, value in results.items():
        if isinstance(value, float):
            print(f"{key}: {value:.4f}")
    print(f"results written to {folder / 'results.json'}")


# ---------------------------------------------------------------------------- cyclegan, unit


def run_translation(args: argparse.Namespace) -> int:
    from advml.generative.cyclegan import build_translation
    from advml.generative.translation import (
        TranslationRecipe,
        TranslationRecorder,
        cycle_error,
        label_preservation,
    )
    from advml.representation.domains import load_pair
    from advml.training import Trainer

    if args.source == args.target:
        raise UserError(f"--source and --target are both {args.source}; pick two domains")
    folder = out_dir(args.out)
    pair = load_pair(args.source, args.target, args.data_dir).subset(
        args.n_source, args.n_target, args.n_eval
    )
    x_a, _ = pair.source_train
    x_b, y_b = pair.target_train
    epochs = _epochs(args, len(x_a))
    weights = {"cycle": args.cycle_weight}
    if args.variant == "cyclegan":
        weights["identity"] = args.identity_weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        game = build_translation(
            args.variant,
            pair.input_shape,
            width=args.width,
            blocks=args.blocks,
            d_width=args.d_width,
        )
    card = {"source": args.source, "target": args.target, "command": command_line(args)}
    recorder = TranslationRecorder(folder, pair.source_test[0], pair.target_test[0], card)
    recipe = TranslationRecipe(
        x_b,
        weights=weights,
        history=args.history,
        seed=args.seed,
        betas=(args.beta1, 0.999),
        monitor=recorder,
    )
    config = _config(args, epochs)
    _write_config(folder, args, game=game.spec, train_config=dataclasses.asdict(config))
    print(
        f"training {args.variant} {pair.name}: {len(x_a):,} A / {len(x_b):,} B images, "
        f"{len(x_a) // args.batch_size} steps x {epochs} epoch(s)"
    )
    started = time.perf_counter()
    Trainer(game, recipe, config, out_dir=folder).fit((x_a, torch.full((len(x_a),), -1)))
    game.eval()
    results: dict[str, Any] = {
        "pair": pair.name,
        "variant": args.variant,
        "train_seconds": time.perf_counter() - started,
        "cycle_error_a": cycle_error(game, pair.source_test[0], "ab"),
        "cycle_error_b": cycle_error(game, pair.target_test[0], "ba"),
        "n_eval": len(pair.source_test[0]),
    }
    if args.classifier_epochs > 0:
        from advml.evaluation.clean import accuracy
        from advml.generative.digit_classifier import train_classifier

        classifier = train_classifier(
            x_b, y_b, epochs=args.classifier_epochs, seed=args.seed, arch=args.classifier_arch
        )
        x_test, y_test = pair.source_test
        results["target_classifier_acc"] = accuracy(classifier, *pair.target_test)
        results["label_preservation"] = label_preservation(
            game.translate(x_test, "ab"), y_test, classifier
        )
        results["label_preservation_untranslated"] = label_preservation(x_test, y_test, classifier)
    _finish(folder, args, results)
    return 0


# ---------------------------------------------------------------------------- simgan, pixelda


def _synthetic_and_real(args: argparse.Namespace):
    from advml.generative.synthetic_digits import render_digits
    from advml.representation.domains import load_domain

    if args.real == "mnist-m":
        raise UserError("synthetic digits are grey; pick a grey real domain (mnist or usps)")
    synthetic = render_digits(args.n_synthetic, seed=args.seed, source=args.digits)
    (x_real, y_real), test = load_domain(args.real, args.data_dir)
    if args.n_real is not None:
        x_real, y_real = x_real[: args.n_real], y_real[: args.n_real]
    return synthetic, x_real, (test[0][: args.n_eval], test[1][: args.n_eval])


def _classifier_accuracy(args, x, y, test) -> float:
    from advml.evaluation.clean import accuracy
    from advml.generative.digit_classifier import train_classifier

    model = train_classifier(
        x, y, epochs=args.classifier_epochs, seed=args.seed, arch=args.classifier_arch
    )
    return accuracy(model, *test)


def run_simgan(args: argparse.Namespace) -> int:
    from advml.generative.figures import save_image_grid
    from advml.generative.simgan import SimGanRecipe, build_simgan, refine
    from advml.generative.translation import save_translation
    from advml.training import Trainer

    folder = out_dir(args.out)
    synthetic, x_real, test = _synthetic_and_real(args)
    epochs = _epochs(args, len(synthetic.x))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        game = build_simgan(
            tuple(synthetic.x.shape[1:]),
            width=args.width,
            blocks=args.blocks,
            d_width=args.d_width,
        )
    show = synthetic.x[:16]

    def record(module, epoch: int) -> dict[str, float]:
        save_image_grid(
            torch.cat([show, refine(module, show)]),
            folder / "samples" / f"epoch-{epoch:04d}.png",
            nrow=16,
        )
        save_translation(module, folder, {"real": args.real, "epochs_trained": epoch})
        return {}

    recipe = SimGanRecipe(
        x_real,
        reg_weight=args.reg_weight,
        history=args.history,
        refiner_steps=args.refiner_steps,
        betas=(args.beta1, 0.999),
        seed=args.seed,
        monitor=record,
    )
    config = _config(args, epochs)
    _write_config(folder, args, game=game.spec, fonts=synthetic.sources)
    started = time.perf_counter()
    Trainer(game, recipe, config, out_dir=folder).fit((synthetic.x, synthetic.y))
    results: dict[str, Any] = {"train_seconds": time.perf_counter() - started}
    refined = refine(game, synthetic.x)
    results["self_regularization"] = float((refined - synthetic.x).abs().mean())
    if args.classifier_epochs > 0:
        results["acc_raw_synthetic"] = _classifier_accuracy(args, synthetic.x, synthetic.y, test)
        results["acc_refined_synthetic"] = _classifier_accuracy(args, refined, synthetic.y, test)
    _finish(folder, args, results)
    return 0


def run_pixelda(args: argparse.Namespace) -> int:
    from advml.evaluation.clean import accuracy
    from advml.generative.figures import save_image_grid
    from advml.generative.pixelda import PixelDARecipe, build_pixelda, generate
    from advml.generative.translation import save_translation
    from advml.training import Trainer

    folder = out_dir(args.out)
    synthetic, x_real, test = _synthetic_and_real(args)
    epochs = _epochs(args, len(synthetic.x))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        game = build_pixelda(
            tuple(synthetic.x.shape[1:]),
            10,
            noise_dim=args.noise_dim,
            width=args.width,
            blocks=args.blocks,
            d_width=args.d_width,
            classifier=args.task_arch,
        )
    show = synthetic.x[:16]

    def record(module, epoch: int) -> dict[str, float]:
        save_image_grid(
            torch.cat([show, generate(module, show, seed=args.seed)]),
            folder / "samples" / f"epoch-{epoch:04d}.png",
            nrow=16,
        )
        save_translation(module, folder, {"target": args.real, "epochs_trained": epoch})
        return {"target_acc": accuracy(module.classifier, *test)}

    recipe = PixelDARecipe(
        x_real,
        adversarial_weight=args.adversarial_weight,
        task_weight=args.task_weight,
        betas=(args.beta1, 0.999),
        monitor=record,
    )
    config = _config(args, epochs)
    _write_config(folder, args, game=game.spec, fonts=synthetic.sources)
    started = time.perf_counter()
    Trainer(game, recipe, config, out_dir=folder).fit((synthetic.x, synthetic.y))
    results: dict[str, Any] = {
        "train_seconds": time.perf_counter() - started,
        "task_classifier_target_acc": accuracy(game.classifier, *test),
    }
    if args.classifier_epochs > 0:
        adapted = generate(game, synthetic.x, seed=args.seed)
        results["acc_generated_synthetic"] = _classifier_accuracy(args, adapted, synthetic.y, test)
    _finish(folder, args, results)
    return 0
