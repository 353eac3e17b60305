"""Build entries of the model zoo (``src/advml/zoo/weights/``) with advml's own commands.

For each named entry this script

1. runs the entry's exact ``advml train ...`` command (from :data:`ENTRIES`, the one table of
   training commands) in a subprocess, writing the run folder ``runs/zoo/NAME/train``;
2. copies the run's ``model.safetensors`` and ``model.json`` card to
   ``src/advml/zoo/weights/NAME.*`` (bit for bit: the card's sha256 still holds);
3. runs ``advml evaluate --checkpoint zoo:NAME --attacks standard --threat T --eps EPS --n N``
   in a subprocess, i.e. it measures the published file itself;
4. adds the ``zoo`` section to the card: name, dataset, arch, recipe, budgets, the two exact
   commands, the measured clean and robust accuracy, n, the diagnostics' flags and the date.

If training or the evaluation fails the entry's files are removed again. Usage, from the
repository root (``ADVML_DATA`` must hold MNIST for the ``mnist-*`` entries)::

    .venv/bin/python benchmarks/zoo_build.py digits-standard digits-pgd
    .venv/bin/python benchmarks/zoo_build.py --list
    .venv/bin/python benchmarks/zoo_build.py mnist-fgsm-rs --dry-run   # print the commands

The library never imports this script; ``tests/models/test_zoo.py`` checks that every
committed card's training command is the one this table gives.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Where the published checkpoints live.
ZOO_DIR = REPO / "src" / "advml" / "zoo" / "weights"
#: Run folders of the builds (``runs/`` is ignored by git), relative to the repository root.
RUNS = Path("runs") / "zoo"


@dataclass(frozen=True)
class Entry:
    """One zoo entry: how it is trained and how it is evaluated.

    Attributes:
        name: the zoo name (file stem), lower case.
        dataset: dataset of training and evaluation.
        description: one line for docs and ``advml zoo info``.
        train: arguments of ``advml train`` after ``--dataset`` (without ``--out`` and
            ``--device``), as one shell-quoted string.
        eps: budget of the robust evaluation; the training budget for adversarial entries.
        n: evaluate the first ``n`` images of ``split``.
        threat: threat model of the evaluation.
        split: evaluated split.
    """

    name: str
    dataset: str
    description: str
    train: str
    eps: float
    n: int
    threat: str = "linf"
    split: str = "test"

    def train_args(self, out: str, device: str) -> list[str]:
        """``advml train`` arguments, ``--out`` and ``--device`` last."""
        return [
            "train",
            "--dataset",
            self.dataset,
            *shlex.split(self.train),
            "--out",
            out,
            "--device",
            device,
        ]

    def eval_args(self, out: str, device: str) -> list[str]:
        """``advml evaluate`` arguments for the published checkpoint ``zoo:NAME``."""
        return [
            "evaluate",
            "--checkpoint",
            f"zoo:{self.name}",
            "--split",
            self.split,
            "--threat",
            self.threat,
            "--eps",
            f"{self.eps:g}",
            "--attacks",
            "standard",
            "--n",
            str(self.n),
            "--out",
            out,
            "--device",
            device,
        ]


def _entries(*entries: Entry) -> dict[str, Entry]:
    return {entry.name: entry for entry in entries}


#: The zoo's training commands, one row per entry. The digits entries use ``advml demo``'s
#: architecture, epochs, batch size, learning rate and PGD settings (ε = 0.15, 7 steps, the
#: whole training split), so the demo could take its two models from here.
ENTRIES: dict[str, Entry] = _entries(
    Entry(
        name="digits-standard",
        dataset="digits",
        description="cnn-small, standard training on 8x8 digits (advml demo's standard model)",
        train="--arch cnn-small --epochs 20 --batch-size 64 --lr 0.001 --seed 0",
        eps=0.15,
        n=360,
    ),
    Entry(
        name="digits-pgd",
        dataset="digits",
        description="cnn-small, PGD-7 adversarial training (Madry et al. 2018) at L∞ ε = 0.15 "
        "on 8x8 digits (advml demo's robust model)",
        train="--arch cnn-small --recipe pgd --threat linf --eps 0.15 --attack-steps 7 "
        "--robust-val 0 --epochs 20 --batch-size 64 --lr 0.001 --seed 0",
        eps=0.15,
        n=360,
    ),
    Entry(
        name="mnist-standard",
        dataset="mnist",
        description="cnn-small, one epoch of standard training on MNIST (Adam, lr 1e-3)",
        train="--arch cnn-small --epochs 1 --batch-size 128 --lr 0.001 --seed 0",
        eps=0.3,
        n=1000,
    ),
    Entry(
        name="mnist-fgsm-rs",
        dataset="mnist",
        description="wong-mnist, FGSM-RS adversarial training at L∞ ε = 0.3 in the setting of "
        "Wong, Rice & Kolter 2020 (step α = 1.25 ε = 0.375, the recipe's default; 10 epochs, "
        "batch 100, Adam with a cyclic LR peaking at 5e-3; raw [0, 1] pixels, no Normalize "
        "layer, as in the paper)",
        train="--arch wong-mnist --recipe fgsm-rs --threat linf --eps 0.3 --epochs 10 "
        "--batch-size 100 --optimizer adam --lr 0.005 --schedule cyclic --no-normalize --seed 0",
        eps=0.3,
        n=1000,
    ),
    Entry(
        name="mnist-trades",
        dataset="mnist",
        description="cnn-small, TRADES (Zhang et al. 2019) at L∞ ε = 0.3, β = 6 (the recipe's "
        "default), 10-step KL inner maximization, 10 epochs",
        train="--arch cnn-small --recipe trades --threat linf --eps 0.3 --attack-steps 10 "
        "--epochs 10 --batch-size 128 --lr 0.001 --seed 0",
        eps=0.3,
        n=1000,
    ),
)


def command(args: list[str]) -> str:
    """The shell command for ``advml`` with ``args``."""
    return shlex.join(["advml", *args])


def train_command(entry: Entry, device: str = "cpu") -> str:
    """The exact training command recorded in the entry's card (default run folder)."""
    return command(entry.train_args(str(RUNS / entry.name / "train"), device))


def eval_command(entry: Entry, device: str = "cpu") -> str:
    """The exact evaluation command recorded in the entry's card (default run folder)."""
    return command(entry.eval_args(str(RUNS / entry.name / "eval"), device))


def _advml(args: list[str], threads: int) -> None:
    """Run ``advml ARGS`` in a subprocess from the repository root; stop on failure."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "ADVML_PROGRESS": "0",
    }
    print(f"$ {command(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "advml", *args], cwd=REPO, env=env)
    if done.returncode != 0:
        raise SystemExit(f"zoo_build: `{command(args)}` failed with status {done.returncode}")


def _check_installed_zoo() -> None:
    """Stop unless ``advml`` resolves ``zoo:NAME`` in this checkout (an editable install)."""
    from advml import zoo

    if Path(zoo.ZOO_DIR).resolve() != ZOO_DIR.resolve():
        raise SystemExit(
            f"zoo_build: this Python's advml reads the zoo from {zoo.ZOO_DIR}, not {ZOO_DIR}; "
            "run the script with the checkout's environment (pip install -e .)"
        )


def _write_card(path: Path, card: dict[str, Any]) -> None:
    from advml.models.card import format_json

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(format_json(card) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build(entry: Entry, *, device: str = "cpu", threads: int = 1, zoo_dir: Path = ZOO_DIR) -> dict:
    """Train, publish and evaluate ``entry``; returns its ``zoo`` section."""
    run = RUNS / entry.name
    train_out, eval_out = run / "train", run / "eval"
    if (REPO / run).exists():
        shutil.rmtree(REPO / run)
    started = time.perf_counter()
    _advml(entry.train_args(str(train_out), device), threads)
    train_seconds = time.perf_counter() - started

    zoo_dir.mkdir(parents=True, exist_ok=True)
    weights, card_path = zoo_dir / f"{entry.name}.safetensors", zoo_dir / f"{entry.name}.json"
    try:
        shutil.copyfile(REPO / train_out / "model.safetensors", weights)
        shutil.copyfile(REPO / train_out / "model.json", card_path)
        started = time.perf_counter()
        _advml(entry.eval_args(str(eval_out), device), threads)
        eval_seconds = time.perf_counter() - started
        results = json.loads((REPO / eval_out / "results.json").read_text())
        card = json.loads(card_path.read_text())
        robust = results["robust_accuracy"]
        (key,) = [k for k in robust if float(k) == entry.eps]
        settings = card.get("recipe_settings") or {}
        section = {
            "name": entry.name,
            "description": entry.description,
            "dataset": entry.dataset,
            "arch": card["arch"],
            "recipe": card.get("recipe", "standard"),
            "train_eps": settings.get("eps"),
            "threat": entry.threat,
            "eps": entry.eps,
            "train_command": command(entry.train_args(str(train_out), device)),
            "eval_command": command(entry.eval_args(str(eval_out), device)),
            "attacks": "standard",
            "attack_cascade": list(results.get("attacks", [])),
            "split": entry.split,
            "n": int(results["n"]),
            "clean_accuracy": float(results["clean_accuracy"]),
            "robust_accuracy": float(robust[key]),
            "broken_by": results.get("broken_by", {}).get(key, {}),
            "diagnostic_flags": [flag.get("name") for flag in results.get("flags", [])],
            "seed": card.get("seed"),
            "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1),
            "device": device,
            "threads": threads,
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        }
        card["zoo"] = section
        _write_card(card_path, card)
    except BaseException:
        weights.unlink(missing_ok=True)
        card_path.unlink(missing_ok=True)
        raise
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to build: {', '.join(ENTRIES)}")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--device", default="cpu", help="device of training and evaluation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for entry in ENTRIES.values():
            print(f"{entry.name:<16} {entry.description}")
        return 0
    unknown = [name for name in args.names if name not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {', '.join(unknown)}; choose from {', '.join(ENTRIES)}")
    if not args.dry_run:
        _check_installed_zoo()
    for name in args.names:
        entry = ENTRIES[name]
        if args.dry_run:
            print(train_command(entry, args.device))
            print(eval_command(entry, args.device))
            continue
        section = build(entry, device=args.device, threads=args.threads)
        print(
            f"{name}: clean {100 * section['clean_accuracy']:.2f} %, robust "
            f"{100 * section['robust_accuracy']:.2f} % ({section['threat']} ε = "
            f"{section['eps']:g}, standard, n = {section['n']}) -> {ZOO_DIR / name}.json",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
