"""Reproduce Miyato, Maeda, Koyama & Ishii 2018 ("Virtual Adversarial Training", TPAMI):
semi-supervised MNIST with 100 labels.

Published: 1.36 % test error with VAT on a 1200-1200 MLP with batch normalization (Adam,
lr 0.002 with decay, 64 labeled + 256 unlabeled samples per step; the authors' MNIST code,
takerum/vat, uses ε = 0.3 for 100 labels, ξ = 1e-6, one power iteration). Target of the
issue: ≤ 2.5 % test error measured by advml on the 10,000 test images.

Here: advml's ``vat`` recipe through advml's ``Trainer`` with the ``advml train`` pipeline —
the same normalization layer, seeded initial weights and labeled subset as ``advml train
--recipe vat --labeled 100``: :func:`advml.cli.train.hide_labels` keeps 10 labels per class
(class-balanced, chosen by ``--seed``), hides the other 59,900 labels (``-1``) and the recipe
draws ``--labeled-batch`` labeled samples per step next to a batch of ``--batch-size``
training inputs (labeled and unlabeled alike, all 60,000 used as unlabeled data). The network
is advml's ``mlp`` with ``--hidden`` widths (default 1200-1200, **without** batch
normalization: advml has no BN MLP). A supervised-only baseline trains the same network with
the standard recipe on the same 100 labeled images. Every epoch's test error is in the run
folders' ``metrics.jsonl``.

Run from the repository root (one thread, as measured in docs/training.md)::

    ADVML_DATA=/work/shared/data .venv/bin/python benchmarks/vat_mnist.py --threads 1 --bn \\
        --epochs 8 --lr 5e-4 --out runs/bench/vat_mnist_lr5e-4

Measured (docs/training.md, "VAT on MNIST with 100 labels"): the issue's ≤ 2.5 % target is not
reached in CPU-sized runs (7.9 % test error after 8 epochs at lr 5e-4).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

#: Published: VAT, MNIST, 100 labels, 1200-1200 MLP with BN (TPAMI 2018); ε of the authors' code.
PAPER = {"error": 0.0136, "arch": "MLP 1200-1200 + BN", "eps": 0.3, "alpha": 1.0}
TARGET = 0.025


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="mlp", help="advml architecture (default mlp)")
    parser.add_argument(
        "--hidden", default="1200,1200", help="mlp hidden widths (default 1200,1200)"
    )
    parser.add_argument(
        "--bn",
        action="store_true",
        help="batch norm after each hidden layer of the mlp, as the paper's network (the run "
        "folders then hold metrics only: advml's mlp has no BN variant to save)",
    )
    parser.add_argument("--labeled", type=int, default=100, help="labels kept (10 per class)")
    parser.add_argument("--eps", type=float, default=0.3, help="VAT L2 radius (0.3)")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the LDS term (1)")
    parser.add_argument("--xi", type=float, default=1e-6, help="power-method scale (1e-6)")
    parser.add_argument("--epochs", type=int, default=20, help="VAT epochs over 60,000 inputs")
    parser.add_argument("--batch-size", type=int, default=256, help="unlabeled batch (256)")
    parser.add_argument("--labeled-batch", type=int, default=64, help="labeled batch (64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (0.002)")
    parser.add_argument("--schedule", default="cosine", help="LR schedule (cosine)")
    parser.add_argument(
        "--baseline-steps", type=int, default=2000, help="supervised-only baseline steps"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="training samples (all)")
    parser.add_argument("--n-test", type=int, default=None, help="test images (all 10,000)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None, help="data root (default: $ADVML_DATA)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="folder for the run folders and JSON")
    return parser.parse_args(argv)


def _build(args: argparse.Namespace, x: torch.Tensor, num_classes: int) -> torch.nn.Module:
    from advml.models import build

    mean, std = common.normalization(args.dataset, x)
    options: dict[str, Any] = {}
    if args.arch == "mlp":
        options["hidden"] = tuple(int(v) for v in args.hidden.split(",") if v)
    with torch.random.fork_rng(devices=[]):  # as advml train: the weights follow --seed
        torch.manual_seed(args.seed)
        model = build(args.arch, tuple(x.shape[1:]), num_classes, mean=mean, std=std, **options)
    if args.bn:
        if args.arch != "mlp":
            raise SystemExit("--bn applies to --arch mlp")
        layers = list(model.named_children())
        hidden = [name for name, m in layers if isinstance(m, torch.nn.Linear)][:-1]
        model = torch.nn.Sequential(
            OrderedDict(
                (name, torch.nn.Sequential(m, torch.nn.BatchNorm1d(m.out_features)))
                if name in hidden
                else (name, m)
                for name, m in layers
            )
        )
    return model


def _arch_name(args: argparse.Namespace) -> str:
    if args.arch == "mlp":
        return f"mlp {args.hidden.replace(',', '-')} ({'BN' if args.bn else 'no BN'})"
    return args.arch


def _cli_equivalent(args: argparse.Namespace) -> str | None:
    """The ``advml train`` command of the same VAT run, where the CLI can express it."""
    if args.arch == "mlp" and (args.hidden != "256,256" or args.bn):
        return None  # advml train has no option for the mlp widths
    if args.alpha != 1.0 or args.xi != 1e-6 or args.labeled_batch != 64:
        return None
    return (
        f"advml train --dataset {args.dataset} --arch {args.arch} --recipe vat --labeled "
        f"{args.labeled} --threat l2 --eps {args.eps:g} --epochs {args.epochs} --batch-size "
        f"{args.batch_size} --lr {args.lr:g} --schedule {args.schedule} --seed {args.seed} "
        f"--device cpu --out runs/vat"
    )


def _error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((common.predict(model, x, 1000).argmax(1) != y).float().mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from advml.cli.train import hide_labels
    from advml.training import TrainConfig, Trainer, get_recipe

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = common.machine()
    print(f"# VAT, MNIST with {args.labeled} labels: {common.describe_machine(info)}", flush=True)
    out = Path(args.out) if args.out else None
    x, y = common.load_split(args.dataset, "train", args.n_train, args.data_dir)
    xt, yt = common.load_split(args.dataset, "test", args.n_test, args.data_dir)
    num_classes = int(max(y.max(), yt.max())) + 1
    (x_all, hidden), labeled = hide_labels((x, y), args.labeled, num_classes, args.seed)
    per_class = torch.bincount(labeled[1], minlength=num_classes).tolist()
    assert len(set(per_class)) == 1, per_class  # class-balanced, fixed by the seed
    print(f"labeled subset: {per_class} per class (seed {args.seed})", flush=True)

    records: dict[str, Any] = {}
    runs = []
    recipe = get_recipe(
        "vat", eps=args.eps, alpha=args.alpha, xi=args.xi, labeled=labeled,
        labeled_batch=args.labeled_batch,
    )  # fmt: skip
    vat_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        seed=args.seed, device="cpu", progress=False,
    )  # fmt: skip
    runs.append(("VAT", recipe, vat_config, (x_all, hidden), args.epochs))
    if not args.skip_baseline:
        # Supervised only: the same network and optimizer on the 100 labeled images, one
        # labeled batch per step, as many steps as --baseline-steps.
        steps_per_epoch = max(1, round(args.labeled / args.labeled_batch))
        batch = args.labeled // steps_per_epoch  # 50 for 100 labels: every label each epoch
        epochs = max(1, args.baseline_steps // steps_per_epoch)
        base_config = TrainConfig(
            epochs=epochs, batch_size=batch, lr=args.lr, schedule=args.schedule,
            seed=args.seed, device="cpu", progress=False,
        )  # fmt: skip
        runs.append(("supervised only", get_recipe("standard"), base_config, labeled, epochs))
    rows = []
    for name, run_recipe, config, train, epochs in runs:
        model = _build(args, x, num_classes)
        folder = out / ("vat" if name == "VAT" else "supervised") if out else None
        if args.bn:
            folder = None  # the BN variant is no registered advml architecture to save
        print(f"training {name}: {len(train[0]):,} inputs, {epochs} epoch(s) ...", flush=True)
        started = time.perf_counter()
        # the baseline's 2 steps per epoch would spend its time on evaluations: final only
        val = (xt, yt) if name == "VAT" else None
        result = Trainer(model, run_recipe, config, out_dir=folder).fit(train, val, val_name="test")
        seconds = time.perf_counter() - started
        error = _error(model, xt, yt)
        history = [
            {"epoch": r["epoch"], "test_error": 1 - r["test_acc"], "seconds": r["epoch_seconds"]}
            for r in result.history
            if "test_acc" in r
        ]
        for r in history:
            print(f"  epoch {r['epoch']:>4}: test error {r['test_error']:.2%}", flush=True)
        print(f"  {name}: test error {error:.2%} in {seconds:.0f} s", flush=True)
        records[name] = {"test_error": error, "seconds": seconds, "history": history}
        is_vat = name == "VAT"
        rows.append(
            [
                f"advml {name}",
                args.labeled,
                _arch_name(args),
                f"{args.eps:g}" if is_vat else "—",
                f"{args.alpha:g}" if is_vat else "—",
                epochs if is_vat else f"{epochs} ({epochs * steps_per_epoch} steps)",
                common.percent(error, 2),
                f"{seconds / 60:.1f} min",
            ]
        )
    command = "ADVML_DATA=... .venv/bin/python benchmarks/vat_mnist.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    rows.append(
        [
            "Miyato et al. 2018 (TPAMI)", 100, PAPER["arch"], f"{PAPER['eps']:g}",
            f"{PAPER['alpha']:g}", "—", common.percent(PAPER["error"], 2), "—",
        ]
    )  # fmt: skip
    headers = ["method", "labels", "architecture", "ε", "α", "epochs", "test error", "wall time"]
    text = common.markdown_table(headers, rows, ["l", "r", "l", "r", "r", "r", "r", "r"])
    info["load_average_end"] = [round(v, 2) for v in common.load_average()]
    vat_error = records["VAT"]["test_error"]
    verdict = "met" if vat_error <= TARGET else "**missed**"
    print()
    print(text)
    print()
    print(
        f"{len(xt):,} test images; target ≤ {TARGET:.1%} test error: {verdict} "
        f"({vat_error:.2%}). Batches: {args.batch_size} inputs + {args.labeled_batch} labeled "
        f"per step, Adam lr {args.lr:g}, schedule {args.schedule}, ξ = {args.xi:g}, seed "
        f"{args.seed}."
    )
    print(f"Command: `{command}`")
    cli = _cli_equivalent(args)
    if cli:
        print(f"The VAT run as one `advml train` command: `{cli}`")
    print(f"Machine: {common.describe_machine(info)}")
    payload = {
        "machine": info,
        "args": vars(args),
        "paper": PAPER,
        "target": TARGET,
        "labeled_per_class": per_class,
        "results": records,
        "command": command,
        "cli": cli,
        "table": text,
    }
    if out:
        common.write_json(out / "vat_mnist.json", payload)
        print(f"wrote {out / 'vat_mnist.json'}")
    return payload


if __name__ == "__main__":
    main()
