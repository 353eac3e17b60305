"""``advml demo``: the README's main job, a robustness demo on the embedded digits dataset.

Trains a standard model and a PGD-adversarially-trained one (Madry et al. 2018) on
scikit-learn's 8x8 digits, evaluates both with a worst-case attack ensemble at several L∞
budgets, prints the side-by-side table and writes a report (Markdown, figures, results.json).
No download; a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from advml.cli.common import (
    add_run_options,
    command_line,
    eps_list,
    out_dir,
    positive_float,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="robustness demo on the embedded digits dataset (no download)",
        description="Train a standard and an adversarially trained model on 8x8 digits, attack "
        "both, and write a report.",
    )
    parser.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument("--arch", default="cnn-small")
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument(
        "--train-eps",
        type=positive_float,
        default=0.15,
        help="L∞ budget of adversarial training (default: 0.15)",
    )
    parser.add_argument(
        "--eps",
        type=eps_list,
        default=[0.05, 0.1, 0.15, 0.2],
        help="L∞ budgets to evaluate (default: 0.05,0.1,0.15,0.2)",
    )
    parser.add_argument(
        "--attacks",
        default="fgsm,pgd,apgd-ce",
        help="attack ensemble, comma-separated registry names",
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from advml.data import info, load
    from advml.evaluation import evaluate
    from advml.evaluation.figures import adversarial_examples_figure, robustness_curve
    from advml.models import build
    from advml.runs import RunFolder
    from advml.training import TrainConfig, Trainer, get_recipe

    started = time.perf_counter()
    folder = RunFolder(out_dir(args.out))
    folder.write_config(
        {k: v for k, v in vars(args).items() if k != "func"}, command=command_line(args)
    )
    train, test = load("digits", "train"), load("digits", "test")
    meta = info("digits")
    attacks = [name.strip() for name in args.attacks.split(",") if name.strip()]
    contenders = {
        "standard": get_recipe("standard"),
        f"PGD-AT (ε={args.train_eps:g})": get_recipe("pgd", eps=args.train_eps, steps=7),
    }
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    reports, models = {}, {}
    for label, recipe in contenders.items():
        print(f"training {label}: {args.arch} on digits, {config.epochs} epochs")
        with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed
            torch.manual_seed(args.seed)
            model = build(
                args.arch, meta.input_shape, meta.num_classes, mean=meta.mean, std=meta.std
            )
        slug = "standard" if recipe.name == "standard" else "pgd-at"
        Trainer(model, recipe, config, out_dir=folder.path / slug).fit(
            train, test, val_name="test", card={"dataset": "digits", "command": command_line(args)}
        )
        print(
            f"attacking {label} with {', '.join(attacks)} at L∞ ε = "
            f"{', '.join(f'{e:g}' for e in args.eps)}"
        )
        reports[label] = evaluate(
            model.cpu(),
            test[0],
            test[1],
            threat="linf",
            eps=args.eps,
            attacks=attacks,
            seed=args.seed,
            progress=not args.no_progress,
        )
        models[label] = model

    header = f"{'model':<22}{'clean':>8}" + "".join(f"{f'ε={e:g}':>9}" for e in args.eps)
    lines = [header, "-" * len(header)]
    for label, report in reports.items():
        cells = "".join(f"{100 * report.robust_accuracy[e]:>8.1f}%" for e in args.eps)
        lines.append(f"{label:<22}{100 * report.clean_accuracy:>7.1f}%{cells}")
    table = "\n".join(lines)
    print(
        "\nrobust accuracy on the 360 digits test images (worst case over "
        f"{', '.join(attacks)}; L∞, pixels in [0, 1])\n{table}"
    )

    curves = {label: {0.0: r.clean_accuracy, **r.robust_accuracy} for label, r in reports.items()}
    robustness_curve(curves, folder.path / "robustness.png", title="digits: robust accuracy")
    standard_label = next(iter(reports))
    shown_eps = args.eps[len(args.eps) // 2]
    standard = reports[standard_label]
    broken = (standard.clean_correct & ~standard.robust[shown_eps]).nonzero().flatten()[:4]
    if broken.numel():
        adversarial_examples_figure(
            models[standard_label],
            test[0][broken],
            standard.x_adv[shown_eps][broken],
            folder.path / "examples.png",
            title=f"{standard_label} model, L∞ ε = {shown_eps:g}",
        )
    folder.write_results({label: report.to_dict() for label, report in reports.items()})
    _write_markdown(folder.path / "report.md", table, attacks, broken.numel() > 0)
    print(
        f"\nreport: {folder.path / 'report.md'} (figures robustness.png, examples.png); "
        f"total {time.perf_counter() - started:.0f} s"
    )
    from advml.evaluation.report import write_report

    for label, report in reports.items():
        slug = "standard" if label == standard_label else "pgd-at"
        paths = write_report(
            report,
            folder.path / f"report-{slug}",
            model=models[label],
            title=f"advml demo: {label} model on 8x8 digits",
            meta={"model": f"{args.arch}, {label}", "dataset": "digits (test, 360 images)"},
            class_names=meta.class_names,
            label=label,
        )
        print(f"HTML report ({label}): {paths['html']}")
    return 0


def _write_markdown(path: Path, table: str, attacks: list[str], has_examples: bool) -> None:
    text = [
        "# advml demo: robustness on 8x8 digits",
        "",
        f"Worst case per sample over {', '.join(attacks)} (a sample is robust only if every "
        "attack failed), L∞ threat model, pixels in [0, 1].",
        "",
        "```",
        table,
        "```",
        "",
        "![robust accuracy vs budget](robustness.png)",
        "",
    ]
    if has_examples:
        text += [
            "Clean | perturbation (amplified) | adversarial:",
            "",
            "![adversarial examples](examples.png)",
            "",
        ]
    path.write_text("\n".join(text))
