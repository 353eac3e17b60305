"""PacGAN Table 1: mode coverage of GAN vs PacGAN on the 2-D ring and grid mixtures.

Protocol (Lin, Khetan, Fanti & Oh, "PacGAN", NeurIPS 2018, sec. 4.1 and the authors' code,
``synthetic_data_experiments/2D*_GAN&PacGAN/config.py``): 8 modes on the unit circle (sigma
0.01) / 25 modes on {-4,-2,0,2,4}^2 (sigma 0.05); generator 4 x 400 ReLU + batch norm,
discriminator 3 x 200 maxout with 5 pieces (``pacgan-mlp``), N(0, 0.02^2) weights; 2-D
standard-normal latent; Adam lr 1e-4, beta1 0.8; minibatches of 100 packs (100 * m points);
400 epochs of 1,000 minibatches; non-saturating loss. Scored on 2,500 samples: modes covered,
high-quality fraction (within 3 sigma), reverse KL of the mode histogram
(:mod:`advml.generative.metrics.modes`). The paper reports 10 trials; this script runs
``--seeds`` of them and prints a Markdown table (mean ± standard deviation).

Differences from the paper's runs: the players alternate (discriminator step, then generator
step) where the authors' ALI-based code updates both from one forward pass; each step draws a
fresh set of latents for the generator update. ``--steps`` shortens training (the paper's
400,000 steps take hours per run on one CPU thread); the table header records the steps used.

Run from the repository root, e.g. (one thread, in the background)::

    nohup .venv/bin/python benchmarks/pacgan.py --datasets toy-grid --seeds 3 --steps 10000 \\
        --lr 1e-3 --schedule cosine --arch-options '{"g_hidden": 128, "d_hidden": 64}' \\
        --threads 1 --trace --out runs/bench/pacgan_grid.json > runs/logs/pacgan_grid.log 2>&1 &

``--trace`` prints and records the mode coverage after every 1,000 steps; ``--schedule``
decays both players' learning rate (``cosine``: to 0 at the last step).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from advml.data.toy import toy_modes, toy_sample
from advml.generative.game import build_game, sample
from advml.generative.metrics.modes import PROTOCOL_SAMPLES, mode_coverage
from advml.generative.training import GanRecipe
from advml.runtime import derive_seed
from advml.training import TrainConfig, Trainer

#: (dataset, pack) rows of Table 1 and the published numbers: modes, high quality %, reverse KL.
PUBLISHED = {
    ("toy-ring", 1): (6.3, 0.5, 98.2, 0.45),
    ("toy-ring", 2): (7.9, 0.1, 95.6, 0.07),
    ("toy-grid", 1): (17.3, 0.8, 94.8, 0.70),
    ("toy-grid", 4): (24.8, 0.2, 93.6, 0.04),
}
PAPER_STEPS = 400 * 1000
STEPS_PER_EPOCH = 1000


def run_one(dataset: str, pack: int, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """Train one GAN (``pack`` 1) or PacGAN and score it with the PacGAN protocol."""
    options = json.loads(args.arch_options) if args.arch_options else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "pacgan-init", dataset, pack))
        game = build_game(args.arch, (2,), args.latent_dim, 0, pack=pack, options=options)
    per_epoch = min(args.steps, STEPS_PER_EPOCH)
    epochs = math.ceil(args.steps / per_epoch)
    points = args.batch_size * pack * per_epoch
    x, y = toy_sample(dataset, points, seed=derive_seed(seed, "pacgan-data", dataset))
    recipe = GanRecipe(
        loss="nonsaturating", betas_g=(args.beta1, 0.999), betas_d=(args.beta1, 0.999)
    )
    centres, sigma = toy_modes(dataset)
    if args.trace:
        recipe.monitor = _trace_monitor(centres, sigma, seed)
    config = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size * pack,
        lr=args.lr,
        schedule=args.schedule,
        seed=seed,
        device="cpu",
        progress=False,
    )
    started = time.perf_counter()
    history = Trainer(game, recipe, config).fit((x, y)).history
    seconds = time.perf_counter() - started
    samples, _ = sample(game.generator, PROTOCOL_SAMPLES, game.latent_dim, seed=seed + 10_000)
    score = mode_coverage(samples, centres, sigma)
    row: dict[str, object] = {
        "dataset": dataset,
        "pack": pack,
        "seed": seed,
        "steps": epochs * per_epoch,
        "seconds": seconds,
        **score.as_dict(),
    }
    if args.trace:
        row["trace"] = [
            {k: r[k] for k in ("epoch", "modes", "high_quality") if k in r} for r in history
        ]
    return row


def _trace_monitor(centres: torch.Tensor, sigma: float, seed: int):
    """Per-epoch mode coverage (``--trace``), on protocol-sized draws of a fixed seed."""

    def monitor(game, epoch, ema):
        samples, _ = sample(game.generator, PROTOCOL_SAMPLES, game.latent_dim, seed=seed + 20_000)
        score = mode_coverage(samples, centres, sigma)
        print(
            f"  epoch {epoch}: {score.modes} modes, {100 * score.high_quality:.1f} % high quality",
            flush=True,
        )
        return {"modes": score.modes, "high_quality": score.high_quality}

    return monitor


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def table(results: list[dict[str, object]], command: str, args: argparse.Namespace) -> str:
    lines = [
        f"PacGAN Table 1 reproduction ({args.arch}, {args.steps:,} generator steps per run "
        f"vs the paper's {PAPER_STEPS:,}; lr {args.lr:g} ({args.schedule}), beta1 "
        f"{args.beta1:g}; {len(args.seeds)} seeds)",
        "",
        f"Command: `{command}`",
        "",
        "| data | method | modes (measured) | modes (paper) | high quality % (measured) | "
        "high quality % (paper) | reverse KL (measured) | reverse KL (paper) | s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, pack), (modes, modes_sd, hq, kl) in PUBLISHED.items():
        rows = [r for r in results if r["dataset"] == dataset and r["pack"] == pack]
        if not rows:
            continue
        kls = [r["reverse_kl"] for r in rows if r["reverse_kl"] is not None]
        method = "GAN" if pack == 1 else f"PacGAN{pack}"
        total = rows[0]["num_modes"]
        lines.append(
            f"| {dataset.removeprefix('toy-')} | {method} | "
            f"{_mean_std([r['modes'] for r in rows])} / {total} | {modes} ± {modes_sd} | "
            f"{_mean_std([100 * r['high_quality'] for r in rows])} | {hq} | "
            f"{_mean_std(kls)} | {kl} | {statistics.mean(r['seconds'] for r in rows):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="toy-ring,toy-grid")
    parser.add_argument(
        "--packs", default=None, help="comma list of packing degrees to run (default: all rows)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of trials (seeds 0..N-1)")
    parser.add_argument("--steps", type=int, default=PAPER_STEPS, help="generator steps per run")
    parser.add_argument("--arch", default="pacgan-mlp")
    parser.add_argument(
        "--arch-options",
        default=None,
        help="JSON options of the architecture, e.g. '{\"g_hidden\": 128}'",
    )
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100, help="packs per minibatch")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta1", type=float, default=0.8)
    parser.add_argument(
        "--schedule",
        default="constant",
        help="LR schedule of both players (advml.training.schedules: constant, cosine, ...)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="print and record mode coverage after each epoch"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed..first-seed+N-1"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench/pacgan.json")
    parser.add_argument(
        "--merge",
        default=None,
        help="comma list of result JSON files of earlier runs (same settings): train nothing, "
        "write their combined table to --out's .md",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    command = shlex.join([".venv/bin/python", "benchmarks/pacgan.py", *(argv or sys.argv[1:])])
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    packs = None if args.packs is None else {int(p) for p in args.packs.split(",") if p.strip()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, object]] = []
    if args.merge:
        commands = []
        for name in args.merge.split(","):
            part = json.loads(Path(name.strip()).read_text())
            commands.append(part["command"])
            results += part["results"]
        args.seeds = sorted({int(r["seed"]) for r in results})
        args.steps = max(int(r["steps"]) for r in results)
        report = table(results, " ; ".join(commands), args)
        out.write_text(json.dumps({"command": commands, "results": results}, indent=2))
        out.with_suffix(".md").write_text(report + "\n")
        print(report)
        return 0
    for seed in args.seeds:
        for dataset, pack in PUBLISHED:
            if dataset not in datasets or (packs is not None and pack not in packs):
                continue
            row = run_one(dataset, pack, seed, args)
            results.append(row)
            print(
                f"{dataset} pack {pack} seed {seed}: {row['modes']}/{row['num_modes']} modes, "
                f"{100 * row['high_quality']:.1f} % high quality, reverse KL "
                f"{row['reverse_kl']}, {row['seconds']:.0f} s",
                flush=True,
            )
            out.write_text(json.dumps({"command": command, "results": results}, indent=2))
    report = table(results, command, args)
    out.with_suffix(".md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
