"""Simulated-to-real digits: MNIST test accuracy of a classifier trained on synthetic font
digits, raw vs refined by SimGAN (Shrivastava et al. 2017), and PixelDA's task classifier
(Bousmalis et al. 2017).

Synthetic digits: :func:`advml.generative.synthetic_digits.render_digits` (every font on the
machine, random affine jitter). Real data: MNIST training images *without* labels (the
refiner's / PixelDA's discriminator sees them); MNIST test labels only for the final
accuracy. Rows:

* ``raw``: LeNet-5 trained on the synthetic digits;
* ``simgan``: the same classifier trained on the refined synthetic digits (same labels);
* ``pixelda-task``: PixelDA's task classifier ``T`` (trained on source and generated images);
* ``pixelda-generated``: LeNet-5 trained on PixelDA's generated images.

Protocol reduced to a shared CPU (small networks, ``--steps`` updates, one thread).

Example::

    nohup .venv/bin/python benchmarks/sim2real_digits.py --threads 1 \
        --out runs/bench/sim2real_digits.json > runs/logs/sim2real_digits.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-synthetic", type=int, default=20000)
    parser.add_argument("--n-real", type=int, default=20000, help="unlabeled MNIST images")
    parser.add_argument("--steps", type=int, default=600, help="updates per adversarial model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--d-width", type=int, default=16)
    parser.add_argument("--reg-weight", type=float, default=1.0)
    parser.add_argument("--classifier-arch", default="lenet")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--methods", default="simgan,pixelda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", default="runs/bench/sim2real_digits")
    parser.add_argument("--out", default="runs/bench/sim2real_digits.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from advml.data import load
    from advml.evaluation.clean import accuracy
    from advml.generative.digit_classifier import train_classifier
    from advml.generative.figures import save_image_grid
    from advml.generative.pixelda import PixelDARecipe, build_pixelda, generate
    from advml.generative.simgan import SimGanRecipe, build_simgan, refine
    from advml.generative.synthetic_digits import render_digits
    from advml.training import TrainConfig, Trainer

    started = time.perf_counter()
    synthetic = render_digits(args.n_synthetic, seed=args.seed)
    x_real, _ = load("mnist", "train", root=args.data_dir)
    x_real = x_real[: args.n_real]
    test = load("mnist", "test", root=args.data_dir)
    runs = Path(args.runs)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    n_train = min(args.steps * args.batch_size, len(synthetic.x))
    x_syn, y_syn = synthetic.x[:n_train], synthetic.y[:n_train]
    config = TrainConfig(
        epochs=max(1, -(-args.steps * args.batch_size // n_train)),
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device="cpu",
        progress=False,
    )

    def classifier_acc(x: torch.Tensor, y: torch.Tensor) -> float:
        model = train_classifier(
            x, y, epochs=args.classifier_epochs, seed=args.seed, arch=args.classifier_arch
        )
        return accuracy(model, *test)

    results: dict = {"fonts": len(synthetic.sources)}
    results["raw"] = classifier_acc(synthetic.x, synthetic.y)
    print(f"raw synthetic -> MNIST test accuracy {results['raw']:.2%}", flush=True)
    if "simgan" in methods:
        torch.manual_seed(args.seed)
        game = build_simgan((1, 28, 28), width=args.width, blocks=args.blocks, d_width=args.d_width)
        recipe = SimGanRecipe(x_real, reg_weight=args.reg_weight, seed=args.seed)
        t = time.perf_counter()
        fit = Trainer(game, recipe, config, out_dir=runs / "simgan").fit((x_syn, y_syn))
        refined = refine(game, synthetic.x)
        save_image_grid(torch.cat([synthetic.x[:16], refined[:16]]), runs / "simgan.png", 16)
        results["simgan"] = classifier_acc(refined, synthetic.y)
        results["simgan_train"] = {"seconds": round(time.perf_counter() - t, 1), **fit.final}
        results["simgan_self_regularization"] = float((refined - synthetic.x).abs().mean())
        print(f"SimGAN-refined -> MNIST test accuracy {results['simgan']:.2%}", flush=True)
    if "pixelda" in methods:
        torch.manual_seed(args.seed)
        game = build_pixelda(
            (1, 28, 28),
            10,
            width=args.width,
            blocks=args.blocks,
            d_width=args.d_width,
            classifier=args.classifier_arch,
        )
        t = time.perf_counter()
        fit = Trainer(game, PixelDARecipe(x_real), config, out_dir=runs / "pixelda").fit(
            (x_syn, y_syn)
        )
        results["pixelda-task"] = accuracy(game.classifier, *test)
        generated = generate(game, synthetic.x, seed=args.seed)
        save_image_grid(torch.cat([synthetic.x[:16], generated[:16]]), runs / "pixelda.png", 16)
        results["pixelda-generated"] = classifier_acc(generated, synthetic.y)
        results["pixelda_train"] = {"seconds": round(time.perf_counter() - t, 1), **fit.final}
        print(
            f"PixelDA task classifier -> MNIST {results['pixelda-task']:.2%}; classifier on "
            f"generated images {results['pixelda-generated']:.2%}",
            flush=True,
        )
    report = {
        "command": " ".join(["benchmarks/sim2real_digits.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "protocol": vars(args),
        "mnist_test_accuracy": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"total {report['seconds']:.0f} s; written to {out}", flush=True)
    return report


if __name__ == "__main__":
    main()
