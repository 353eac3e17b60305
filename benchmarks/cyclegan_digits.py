"""CycleGAN (and optionally UNIT) between digit domains: cycle error and label preservation.

Zhu et al. 2017 report no digit numbers; the target of issue 8 is that >= 90 % of translated
MNIST test images keep their label under a classifier trained on the target domain (USPS
resized to 28x28, or MNIST-M). Also reported: the same classifier on *untranslated* MNIST
(the domain gap the translation has to close), the classifier's accuracy on its own test
set, and the mean absolute cycle reconstruction error per pixel on both test sets.

The protocol is reduced to fit a shared CPU (stated in the output): small networks
(``--width``), ``--steps`` updates of batch 16 on the first ``steps * 16`` MNIST training
images, one torch thread; the evaluation classifier is LeNet-5 trained for
``--classifier-epochs`` on the target's training labels.

Example::

    nohup .venv/bin/python benchmarks/cyclegan_digits.py --steps 1500 --threads 1 \
        --out runs/bench/cyclegan_digits.json > runs/logs/cyclegan_digits.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

TARGET = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="usps", help="targets (comma list), source MNIST")
    parser.add_argument("--variants", default="cyclegan", help="cyclegan,unit")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--d-width", type=int, default=16)
    parser.add_argument("--cycle-weight", type=float, default=10.0, help="lambda (paper 10)")
    parser.add_argument(
        "--identity-weight", type=float, default=5.0, help="CycleGAN identity (paper 0.5 lambda)"
    )
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--classifier-arch", default="lenet")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", default="runs/bench/cyclegan_digits")
    parser.add_argument("--out", default="runs/bench/cyclegan_digits.json")
    return parser.parse_args(argv)


def run_pair(args: argparse.Namespace, target: str, variant: str) -> dict:
    from advml.evaluation.clean import accuracy
    from advml.generative.cyclegan import build_translation
    from advml.generative.digit_classifier import train_classifier
    from advml.generative.translation import (
        TranslationRecipe,
        TranslationRecorder,
        cycle_error,
        label_preservation,
    )
    from advml.representation.domains import load_pair
    from advml.training import TrainConfig, Trainer

    n_source = args.steps * args.batch_size
    pair = load_pair("mnist", target, args.data_dir).subset(n_source, None, args.n_eval)
    x_a = pair.source_train[0]
    x_b, y_b = pair.target_train
    torch.manual_seed(args.seed)
    game = build_translation(
        variant, pair.input_shape, width=args.width, blocks=args.blocks, d_width=args.d_width
    )
    folder = Path(args.runs) / f"{variant}-mnist-{target}"
    recorder = TranslationRecorder(folder, pair.source_test[0][:500], pair.target_test[0][:500])
    weights = {"cycle": args.cycle_weight}
    if variant == "cyclegan":
        weights["identity"] = args.identity_weight
    recipe = TranslationRecipe(x_b, weights=weights, seed=args.seed, monitor=recorder)
    config = TrainConfig(
        epochs=1,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device="cpu",
        progress=False,
    )
    print(f"{variant} mnist->{target}: {len(x_a)} A / {len(x_b)} B images", flush=True)
    started = time.perf_counter()
    history = Trainer(game, recipe, config, out_dir=folder).fit((x_a, torch.full((len(x_a),), -1)))
    seconds = time.perf_counter() - started
    classifier = train_classifier(
        x_b, y_b, epochs=args.classifier_epochs, seed=args.seed, arch=args.classifier_arch
    )
    x_test, y_test = pair.source_test
    result = {
        "pair": pair.name,
        "variant": variant,
        "steps": len(x_a) // args.batch_size,
        "train_seconds": round(seconds, 1),
        "train_final": history.final,
        "cycle_error_a": cycle_error(game, x_test, "ab"),
        "cycle_error_b": cycle_error(game, pair.target_test[0], "ba"),
        "target_classifier_acc": accuracy(classifier, *pair.target_test),
        "label_preservation": label_preservation(game.translate(x_test), y_test, classifier),
        "label_preservation_untranslated": label_preservation(x_test, y_test, classifier),
        "n_eval": len(y_test),
    }
    result["meets_target"] = result["label_preservation"] >= TARGET
    print(
        f"  cycle error A {result['cycle_error_a']:.4f}  B {result['cycle_error_b']:.4f}  "
        f"label preservation {result['label_preservation']:.2%} (untranslated "
        f"{result['label_preservation_untranslated']:.2%}; classifier on its own test set "
        f"{result['target_classifier_acc']:.2%}); {seconds:.0f} s; target >= 90 %: "
        f"{'met' if result['meets_target'] else 'NOT met'}",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        "command": " ".join(["benchmarks/cyclegan_digits.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "protocol": vars(args),
        "target_label_preservation": TARGET,
        "results": [],
    }
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        for target in [t.strip() for t in args.pairs.split(",") if t.strip()]:
            report["results"].append(run_pair(args, target, variant))
    report["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"total {report['seconds']:.0f} s; written to {out}", flush=True)
    return report


if __name__ == "__main__":
    main()
