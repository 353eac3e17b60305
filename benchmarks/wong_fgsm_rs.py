"""Reproduce Wong, Rice & Kolter 2020 ("Fast is better than free", ICLR), MNIST FGSM-RS.

Published (ε = 0.3, α = 0.375, 10 epochs, Adam, cyclic LR peak 5e-3, batch 100): clean
98.50 %, PGD-50 with 10 restarts (step 0.01) 88.77 %, AutoAttack 82.93 %. Targets of the issue:
≥ 98 % clean and ≥ 85 % PGD-50-10 with advml's evaluation, and the training wall time.

The model is the zoo entry ``mnist-fgsm-rs`` (trained by ``benchmarks/zoo_build.py
mnist-fgsm-rs``; its card holds the training command and wall time) or ``--checkpoint``. This
script measures, on the first ``--n`` test images (default all 10,000): clean accuracy and
robust accuracy under advml's ``evaluate`` with PGD-50 (step 0.01, 10 restarts, the paper's
evaluation attack), then prints them next to the card's ``standard`` (AutoAttack protocol)
result on 1,000 images and the paper's numbers.

Run from the repository root::

    ADVML_DATA=/work/shared/data .venv/bin/python benchmarks/wong_fgsm_rs.py --threads 1 \\
        --out runs/bench/wong_fgsm_rs.json
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

PAPER = {"clean": 0.9850, "pgd_50_10": 0.8877, "autoattack": 0.8293}
TARGET = {"clean": 0.98, "pgd_50_10": 0.85}
EPS = 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="zoo:mnist-fgsm-rs")
    parser.add_argument("--n", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--dataset", default="mnist", help="test set (default mnist)")
    parser.add_argument("--eps", type=float, default=EPS, help="L∞ budget (0.3)")
    parser.add_argument("--data-dir", default=None, help="data root (default: $ADVML_DATA)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from advml.attacks import pgd
    from advml.evaluation import evaluate
    from advml.models import load

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = common.machine()
    print(f"# Wong et al. 2020 MNIST FGSM-RS: {common.describe_machine(info)}", flush=True)
    model = load(args.checkpoint)
    model.eval()
    card = getattr(model, "advml_card", {}) or {}
    x, y = common.load_split(args.dataset, "test", args.n, args.data_dir)
    attack = functools.partial(pgd, steps=50, step_size=0.01, restarts=10)
    attack.__name__ = "pgd-50-10"  # type: ignore[attr-defined]
    started = time.perf_counter()
    report = evaluate(
        model, x, y, threat="linf", eps=[args.eps], attacks=[attack], batch_size=args.batch_size
    )
    seconds = time.perf_counter() - started
    clean, robust = report.clean_accuracy, report.robust_accuracy[args.eps]
    zoo = card.get("zoo", {})
    rows = [
        ["clean accuracy", common.percent(clean, 2), "10,000" if len(x) == 10_000 else len(x)],
        ["PGD-50, 10 restarts, step 0.01", common.percent(robust, 2), len(x)],
    ]
    if zoo:
        standard = common.percent(zoo["robust_accuracy"], 2)
        rows.append(["advml `standard` (AutoAttack protocol)", standard, zoo["n"]])
    paper = [
        common.percent(PAPER["clean"], 2),
        common.percent(PAPER["pgd_50_10"], 2),
        common.percent(PAPER["autoattack"], 2),
    ]
    targets = [
        f"≥ {TARGET['clean']:.0%}: {'met' if clean >= TARGET['clean'] else '**missed**'}",
        f"≥ {TARGET['pgd_50_10']:.0%}: "
        + ("met" if robust >= TARGET["pgd_50_10"] else "**missed**"),
        "—",
    ]
    table_rows = [[*row, paper[i], targets[i]] for i, row in enumerate(rows)]
    text = common.markdown_table(
        ["measure", "advml", "images", "paper", "target"], table_rows, ["l", "r", "r", "r", "l"]
    )
    print()
    print(text)
    print()
    train_seconds = zoo.get("train_seconds")
    print(
        f"Model {args.checkpoint} ({card.get('arch', '?')}, recipe {card.get('recipe', '?')}); "
        f"training wall time {train_seconds} s (card, {zoo.get('threads', '?')} thread(s)); "
        f"PGD-50-10 evaluation {seconds:.0f} s here."
    )
    if zoo.get("train_command"):
        print(f"Training command: `{zoo['train_command']}`")
    payload = {
        "machine": info,
        "args": vars(args),
        "clean_accuracy": clean,
        "pgd_50_10_accuracy": robust,
        "standard": zoo.get("robust_accuracy"),
        "standard_n": zoo.get("n"),
        "train_seconds": train_seconds,
        "eval_seconds": seconds,
        "paper": PAPER,
        "table": text,
    }
    if args.out:
        common.write_json(args.out, payload)
        print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
