"""``advml evaluate``: worst-case robust accuracy of a trained model, with diagnostics and a report.

Runs an attack ensemble (a preset or registry names) as a cascade over the first ``--n`` test
samples at every budget in ``--eps``, prints the table and the diagnostics, and writes
``results.json``, ``config.json``, ``report.md``, ``report.html`` (self-contained) and the
figures into ``--out``. Under ``torchrun`` the samples are sharded across the processes and
merged to the single-process result; rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import time

from advml.cli.common import (
    add_run_options,
    command_line,
    eps_list,
    out_dir,
    positive_int,
)
from advml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from advml.evaluation.presets import PRESET_HELP

    presets = "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items())
    parser = subparsers.add_parser(
        "evaluate",
        help="worst-case robust accuracy of a trained model, with diagnostics and a report",
        description="Attack the first --n test samples with an ensemble (each attack only on "
        "the samples still robust) at every budget, check the evaluation for signs of "
        "gradient masking and randomness, and write results.json, report.md and a "
        "self-contained report.html.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="model: a .safetensors file, its .json card or a run folder",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset name or path (default: the dataset named in the checkpoint's card)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the datasets (default: $ADVML_DATA, then ~/.cache/advml)",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--threat", choices=("linf", "l2", "l1"), default="linf")
    parser.add_argument(
        "--eps", type=eps_list, required=True, help="budgets, comma-separated (e.g. 0.1,0.2,0.3)"
    )
    parser.add_argument(
        "--attacks",
        default="standard",
        help=f"a preset or comma-separated attack names (default: standard). {presets}",
    )
    parser.add_argument(
        "-n",
        "--n",
        "--samples",
        dest="n",
        type=positive_int,
        default=1000,
        help="evaluate the first N samples (default 1000; under torchrun write -n N or "
        "--samples N: torchrun takes --n for one of its own options)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=500)
    parser.add_argument(
        "--examples",
        type=int,
        default=4,
        help="adversarial examples shown in the report (default 4; 0 for none)",
    )
    parser.add_argument(
        "--no-checks", action="store_true", help="skip the diagnostics (not recommended)"
    )
    parser.add_argument(
        "--no-adaptive",
        action="store_true",
        help="never add attacks when a diagnostic fires (only report it)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advml.data import info as data_info
    from advml.evaluation import evaluate
    from advml.evaluation.report import format_flags, format_table, write_report
    from advml.models import load as load_model
    from advml.runs import RunFolder
    from advml.runtime import distributed_context, resolve_device

    started = time.perf_counter()
    folder = out_dir(args.out)
    device = resolve_device(args.device)
    with distributed_context(device) as where:
        model = load_model(args.checkpoint, map_location=device)
        card = getattr(model, "advml_card", {}) or {}
        dataset = args.dataset or card.get("dataset")
        if not dataset:
            raise UserError(
                "the checkpoint's card names no dataset; give --dataset (e.g. --dataset mnist)"
            )
        from advml.data import load

        x, y = load(dataset, split=args.split, root=args.data_dir)
        x, y = x[: args.n], y[: args.n]
        expected = card.get("input_shape")
        if expected is not None and list(x.shape[1:]) != list(expected):
            raise UserError(
                f"the model expects inputs of shape {tuple(expected)} but {dataset} has "
                f"{tuple(x.shape[1:])}; evaluate it on the dataset it was trained on"
            )
        classes = int(card.get("num_classes", int(y.max()) + 1))
        if int(y.max()) >= classes:
            raise UserError(
                f"{dataset} has labels up to {int(y.max())} but the model has {classes} classes"
            )
        x, y = x.to(device), y.to(device)
        if where.is_main:
            print(
                f"evaluating {card.get('arch', 'model')} on {x.shape[0]} {dataset} {args.split} "
                f"samples: {args.threat} ε = {', '.join(f'{e:g}' for e in args.eps)}, attacks "
                f"{args.attacks}" + (f", {where.world_size} processes" if where.distributed else "")
            )
        report = evaluate(
            model,
            x,
            y,
            threat=args.threat,
            eps=args.eps,
            attacks=args.attacks,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            checks=not args.no_checks,
            adaptive=not args.no_adaptive,
        )
        if not where.is_main:
            return 0
        try:
            class_names = list(data_info(dataset).class_names)
        except UserError:
            class_names = None
        meta = {
            "model": str(args.checkpoint),
            "architecture": card.get("arch"),
            "dataset": f"{dataset} ({args.split}, first {x.shape[0]})",
            "command": command_line(args),
        }
        run_folder = RunFolder(folder)
        run_folder.write_config(
            {k: v for k, v in vars(args).items() if k != "func"}, command=command_line(args)
        )
        paths = write_report(
            report,
            folder,
            model=model,
            title=f"Robustness of {card.get('arch', 'the model')} on {dataset}",
            meta=meta,
            class_names=class_names,
            examples=max(args.examples, 0),
            label=str(card.get("arch", "model")),
        )
        print(
            f"\nclean accuracy {100 * report.clean_accuracy:.2f} %; robust accuracy (%) "
            "after each attack of the cascade:"
        )
        print(format_table(report))
        print(format_flags(report))
        for note in report.notes:
            print(f"note: {note}")
        print(
            f"\nwrote {paths['html']} (and report.md, results.json, config.json, figures) in "
            f"{time.perf_counter() - started:.1f} s"
        )
    return 0
