"""``advml certify``: certified accuracy next to the robust accuracy under attack, per sample."""

from __future__ import annotations

import argparse

from advml.cli.common import (
    add_data_options,
    add_run_options,
    command_line,
    load_split,
    out_dir,
    positive_float,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certify",
        help="certify a trained classifier (IBP, CROWN, branch-and-bound, smoothing)",
        description="For each of the first --n test samples: certified (a sound method "
        "proves the label on the whole ball), attacked (an attack found an adversarial "
        "example), unknown, or misclassified. Writes results.json and config.json.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="model: a .safetensors file, its card or run folder"
    )
    add_data_options(parser)
    parser.add_argument("--threat", choices=("linf", "l2"), default="linf")
    parser.add_argument("--eps", type=float, required=True, help="radius of the ball")
    parser.add_argument(
        "--method",
        choices=("ibp", "crown", "alpha-crown", "complete", "smoothing"),
        default="crown",
        help="ibp, crown, alpha-crown: incomplete bounds (L∞); complete: CROWN then "
        "branch-and-bound per sample (L∞); smoothing: randomized smoothing (L2)",
    )
    parser.add_argument(
        "--attacks",
        default="standard",
        help="evaluation preset or comma-separated attacks for the attacked column; "
        "'none' to skip (default: standard)",
    )
    parser.add_argument("--n", type=positive_int, default=1000, help="test samples (default 1000)")
    parser.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds per sample (complete)"
    )
    parser.add_argument("--sigma", type=positive_float, default=0.25, help="smoothing noise")
    parser.add_argument(
        "--samples", type=positive_int, default=10_000, help="smoothing draws per sample"
    )
    parser.add_argument(
        "--alpha", type=positive_float, default=0.001, help="smoothing failure probability"
    )
    parser.add_argument("--batch-size", type=positive_int, default=500)
    parser.add_argument("--out", required=True, help="output folder")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advml.models import load as load_model
    from advml.runs import RunFolder
    from advml.runtime import resolve_device
    from advml.verification.certification import STATUSES, certify_samples

    folder = RunFolder(out_dir(args.out))
    device = resolve_device(args.device)
    model = load_model(args.checkpoint).to(device)
    x, y = load_split(args, "test", args.n)
    x, y = x.to(device), y.to(device)
    folder.write_config(
        {k: v for k, v in vars(args).items() if k != "func"}, command=command_line(args)
    )
    attacks = None if args.attacks.strip().lower() == "none" else args.attacks
    report = certify_samples(
        model,
        x,
        y,
        threat=args.threat,
        eps=args.eps,
        method=args.method,
        attacks=attacks,
        timeout=args.timeout,
        sigma=args.sigma,
        samples=args.samples,
        alpha=args.alpha,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    results = report.summary()
    results["per_sample"] = [STATUSES[int(s)] for s in report.status]
    folder.write_results(results)
    print(
        f"{args.method} ({args.threat}, ε={args.eps:g}) on {report.n} {args.dataset} test samples"
    )
    print(f"  clean accuracy                 {100 * report.clean_accuracy:6.2f} %")
    print(f"  certified accuracy             {100 * report.certified_accuracy:6.2f} %")
    if attacks is not None:
        print(f"  robust accuracy under attack   {100 * report.attacked_accuracy:6.2f} %")
    counts = ", ".join(f"{name} {report.count(name)}" for name in STATUSES)
    print(f"  per sample: {counts}")
    for note in report.notes:
        print(f"  note: {note}")
    print(f"  wrote {folder.path / 'results.json'}")
    return 0
