"""``advml dann``: domain-adversarial training (Ganin & Lempitsky 2015) with its baselines.

Trains a source-only model, a DANN model and a target oracle with the same architecture, steps
and schedule, and prints their target accuracy and DANN's domain-classifier accuracy.
"""

from __future__ import annotations

import argparse

from advml.cli.common import add_run_options, command_line, out_dir, positive_float, positive_int
from advml.errors import UserError


def _methods(text: str) -> tuple[str, ...]:
    from advml.representation.adaptation import METHODS

    methods = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise argparse.ArgumentTypeError(
            f"methods must be a comma list of {', '.join(METHODS)}, got {text!r}"
        )
    return methods


def register(subparsers: argparse._SubParsersAction) -> None:
    from advml.representation.domains import DOMAINS

    parser = subparsers.add_parser(
        "dann",
        help="domain-adversarial training: source-only vs DANN vs target oracle",
        description="Unsupervised domain adaptation with a gradient reversal layer (Ganin & "
        "Lempitsky 2015). Trains source-only, DANN and target-oracle models on the paper's "
        "MNIST architecture and writes config.json, results.json and one run folder per model "
        "into --out. Images are 28x28 (USPS resized bilinearly; grey repeated to RGB when "
        "paired with MNIST-M); MNIST-M's test split is halved into adapt/eval parts.",
    )
    parser.add_argument("--source", choices=DOMAINS, default="mnist")
    parser.add_argument("--target", choices=DOMAINS, required=True)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the datasets (default: $ADVML_DATA, then ~/.cache/advml)",
    )
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="passes over the source (default 10)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="source images per step; DANN adds as many target images (default 64)",
    )
    parser.add_argument("--lr", type=positive_float, default=0.01, help="mu_0 (default 0.01)")
    parser.add_argument("--gamma", type=float, default=10.0, help="lambda_p steepness (10)")
    parser.add_argument("--domain-weight", type=float, default=1.0)
    parser.add_argument(
        "--lambda-max", type=float, default=1.0, help="final GRL scale (lambda_p -> this; 1)"
    )
    parser.add_argument(
        "--n-source", type=positive_int, default=None, help="use the first N source images"
    )
    parser.add_argument(
        "--n-target",
        type=positive_int,
        default=None,
        help="use the first N target training (adaptation) images",
    )
    parser.add_argument(
        "--n-eval",
        type=positive_int,
        default=None,
        help="evaluate on the first N test images of each domain",
    )
    parser.add_argument(
        "--methods",
        type=_methods,
        default=("source-only", "dann", "oracle"),
        help="comma list of source-only,dann,oracle (default: all three)",
    )
    parser.add_argument(
        "--probe-samples",
        type=int,
        default=4000,
        help="images per domain for the fresh domain probe on frozen features (0: skip)",
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advml.representation.adaptation import AdaptationConfig, format_table, run_adaptation
    from advml.representation.domains import load_pair
    from advml.runs import RunFolder

    if args.source == args.target:
        raise UserError(f"--source and --target are both {args.source}; pick two domains")
    if args.probe_samples < 0:
        raise UserError(f"--probe-samples must be >= 0, got {args.probe_samples}")
    folder = out_dir(args.out)
    pair = load_pair(args.source, args.target, args.data_dir).subset(
        args.n_source, args.n_target, args.n_eval
    )
    config = AdaptationConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        gamma=args.gamma,
        domain_weight=args.domain_weight,
        lambda_max=args.lambda_max,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        probe_samples=args.probe_samples,
    )
    run_folder = RunFolder(folder)
    run_folder.write_config(
        {**vars(args), "func": None, "methods": list(args.methods)}, command=command_line(args)
    )
    result = run_adaptation(pair, config, methods=args.methods, out_dir=folder)
    result["command"] = command_line(args)
    run_folder.write_results(result)
    print(format_table(result))
    print(f"results written to {folder / 'results.json'}")
    return 0
