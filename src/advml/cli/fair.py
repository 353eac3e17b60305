"""``advml fair``: adversarially fair representations (Edwards & Storkey 2015; Madras et al.
2018) on UCI Adult: one adversary weight, or a sweep drawing the accuracy–fairness trade-off."""

from __future__ import annotations

import argparse

from advml.cli.common import add_run_options, command_line, out_dir, positive_float, positive_int
from advml.errors import UserError

DATASETS = ("adult",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fair",
        help="adversarially fair representations: accuracy, ΔDP, ΔEO, trade-off sweep",
        description="Train an encoder, a task head and an adversary that predicts the "
        "sensitive attribute from the representation (gradient reversal, one optimizer). "
        "Reports test accuracy, ΔDP, ΔEO and the accuracy of a fresh adversary trained on the "
        "frozen codes; --sweep draws the trade-off as tradeoff.png. Adult: label income >50K, "
        "sensitive attribute sex (not an input feature).",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="adult")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the datasets (default: $ADVML_DATA, then ~/.cache/advml)",
    )
    weight = parser.add_mutually_exclusive_group()
    weight.add_argument(
        "--adversary-weight",
        type=float,
        default=None,
        help="scale w of the reversed adversary gradient (default 1)",
    )
    weight.add_argument(
        "--sweep", default=None, help="comma list of adversary weights, e.g. 0,0.3,1,3,10"
    )
    parser.add_argument(
        "--objective",
        default="dp",
        help="dp (adversary sees z), eo (adversary sees z and y), or dp,eo for both",
    )
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--code", type=positive_int, default=16, help="width of z (16)")
    parser.add_argument("--hidden", type=positive_int, default=64)
    parser.add_argument(
        "--include-sensitive",
        action="store_true",
        help="also give the sensitive attribute to the encoder as an input feature",
    )
    parser.add_argument("--out", required=True, help="run folder to write")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advml.data.adult import load_adult_splits
    from advml.representation.fair_training import FairConfig, format_table, parse_weights, sweep
    from advml.representation.fairness import OBJECTIVES
    from advml.representation.figures import tradeoff_curve
    from advml.runs import RunFolder

    objectives = [part.strip() for part in args.objective.split(",") if part.strip()]
    if not objectives or any(o not in OBJECTIVES for o in objectives):
        raise UserError(f"--objective must be dp, eo or dp,eo; got {args.objective!r}")
    if args.sweep is not None:
        weights = parse_weights(args.sweep)
    else:
        weights = [1.0 if args.adversary_weight is None else args.adversary_weight]
        if weights[0] < 0:
            raise UserError(f"--adversary-weight must be >= 0, got {weights[0]}")
    folder = out_dir(args.out)
    train, test = load_adult_splits(args.data_dir, include_sensitive=args.include_sensitive)
    run_folder = RunFolder(folder)
    run_folder.write_config(
        {**vars(args), "func": None, "weights": weights, "features": train.x.shape[1]},
        command=command_line(args),
    )
    rows = []
    for objective in objectives:
        config = FairConfig(
            objective=objective,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            code=args.code,
            hidden=args.hidden,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
        )
        rows += sweep(train, test, weights, config, out_dir=folder / objective)
    result = {"dataset": args.dataset, "command": command_line(args), "rows": rows}
    if len(weights) > 1:
        for gap in ("delta_dp", "delta_eo"):
            figure = tradeoff_curve(rows, folder / f"tradeoff_{gap}.png", gap=gap)
            result[f"figure_{gap}"] = str(figure)
    run_folder.write_results(result)
    print(format_table(rows))
    print(f"results written to {folder / 'results.json'}")
    return 0
