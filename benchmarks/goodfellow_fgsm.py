"""Reproduce Goodfellow, Shlens & Szegedy 2015 ("Explaining and Harnessing Adversarial
Examples", ICLR), §4: FGSM at ε = 0.25 on the MNIST test set.

Published: softmax regression 99.9 % error on the adversarial examples, mean confidence
79.3 %; a maxout network 89.4 % error, mean confidence 97.6 %. Here: advml's ``linear``
(softmax regression) and, in place of the maxout network (two maxout layers with dropout,
trained in pylearn2), advml's ``mlp`` (two ReLU layers of 256) — plus ``cnn-small`` — each
trained with advml's standard recipe (Adam, lr 1e-3, batch 128) for a few epochs and cached
in ``benchmarks/.cache``. Every one of the 10,000 test images is perturbed
(``early_stop=False``, as in the paper).

Preprocessing: the paper's pylearn2 MNIST scales pixels to [0, 1], as advml does. The paper's
perturbation ``x + ε sign(∇x J)`` has no clipping step, so its adversarial images reach
[-0.25, 1.25]; advml's threat model is the ball ∩ the box [0, 1] by default. Both are run:
``box`` (advml's default ``Linf(0.25)``) and ``no clip`` (``Linf(0.25, low=-0.25,
high=1.25)``, which contains every point of the unclipped ball, i.e. the paper's equation).

Confidence: the softmax probability of the predicted class on the adversarial example,
averaged over all test images ("mean confidence"), and averaged over the misclassified ones
only (the confidence in a wrong class).

§6 (adversarial training): a model item ``ARCH:EPOCHS:fgsm`` trains with advml's ``fgsm``
recipe, the paper's objective ``0.5 J(x) + 0.5 J(x + ε sign ∇x J)`` at ε = 0.25 (eq. 2);
published for the maxout network: FGSM error 89.4 % → 17.9 %, clean error 0.94 % → 0.84 %.
The paper also used early stopping on a validation set and a larger network (1,600 units
per layer); these models keep advml's defaults.

Run from the repository root::

    ADVML_DATA=/work/shared/data .venv/bin/python benchmarks/goodfellow_fgsm.py --threads 2
    ADVML_DATA=/work/shared/data .venv/bin/python benchmarks/goodfellow_fgsm.py --threads 1 \
        --models mlp:2,mlp:2:fgsm,mlp:10,mlp:10:fgsm   # §6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from advml import attacks
from advml.threats import Linf

EPS = 0.25
#: Published numbers (§4): error rate on adversarial examples and their mean confidence.
PAPER = {
    "softmax regression": {"error": 0.999, "confidence": 0.793},
    "maxout network": {"error": 0.894, "confidence": 0.976},
    # §6: the maxout network trained with the FGSM objective (eq. 2, α = 0.5, ε = 0.25)
    "maxout network, FGSM-trained": {"error": 0.179, "clean_error": 0.0084},
}
#: Settings of advml's ``fgsm`` recipe for §6 (the paper's α and ε).
FGSM_TRAINING = {"eps": 0.25, "alpha": 0.5}
#: Which published model each advml architecture stands in for.
STANDS_FOR = {
    "linear": "softmax regression",
    "mlp": "maxout network",
    "cnn-small": "maxout network",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="linear:2,mlp:2,cnn-small:1",
        help="arch:epochs list (default linear:2,mlp:2,cnn-small:1)",
    )
    parser.add_argument("--eps", type=float, default=EPS, help="FGSM budget (0.25)")
    parser.add_argument("--n", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None, help="data root (default: $ADVML_DATA)")
    parser.add_argument("--n-train", type=int, default=None, help="training samples (all)")
    parser.add_argument("--cache", default=None, help="model cache (default benchmarks/.cache)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def fgsm_stats(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Linf, batch_size: int
) -> dict[str, Any]:
    """Clean and FGSM error, mean confidence (all / misclassified), seconds."""
    started = time.perf_counter()
    parts = [
        attacks.fgsm(
            model, x[i : i + batch_size], y[i : i + batch_size], threat, early_stop=False
        ).x_adv
        for i in range(0, x.shape[0], batch_size)
    ]
    seconds = time.perf_counter() - started
    x_adv = torch.cat(parts)
    assert bool(threat.contains(x_adv, x).all())
    clean = common.predict(model, x, batch_size).argmax(1)
    probs = common.predict(model, x_adv, batch_size).softmax(1)
    conf, pred = probs.max(1)
    wrong = pred != y
    return {
        "clean_error": float((clean != y).float().mean()),
        "error": float(wrong.float().mean()),
        "confidence": float(conf.mean()),
        "confidence_wrong": float(conf[wrong].mean()) if wrong.any() else None,
        "linf": float((x_adv - x).abs().amax()),
        "range": [float(x_adv.min()), float(x_adv.max())],
        "attack_seconds": seconds,
    }


def _paper_cell(paper: dict[str, float]) -> str:
    if not paper:
        return "—"
    if "confidence" in paper:
        return f"{common.percent(paper['error'])} / {common.percent(paper['confidence'])}"
    clean = common.percent(paper["clean_error"], 2)
    return f"{common.percent(paper['error'])} (clean error {clean})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = common.machine()
    print(f"# Goodfellow et al. 2015 §4, FGSM ε = {args.eps:g}: {common.describe_machine(info)}")
    x, y = common.load_split(args.dataset, "test", args.n, args.data_dir)
    threats = {
        "box": Linf(args.eps),
        "no clip": Linf(args.eps, low=-args.eps, high=1.0 + args.eps),
    }
    rows, records = [], []
    total_started = time.perf_counter()
    for item in args.models.split(","):
        parts = item.strip().split(":")
        arch = parts[0]
        epochs = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        recipe = parts[2] if len(parts) > 2 else "standard"
        adversarial = recipe == "fgsm"
        if recipe not in ("standard", "fgsm"):
            raise SystemExit(f"model {item!r}: the recipe is 'standard' or 'fgsm'")
        model, card = common.trained_model(
            args.dataset,
            arch,
            epochs,
            n_train=args.n_train,
            data_dir=args.data_dir,
            cache=args.cache,
            recipe=recipe,
            recipe_settings=FGSM_TRAINING if adversarial else None,
        )
        stands_for = STANDS_FOR.get(arch, "")
        if adversarial and stands_for == "maxout network":
            stands_for = "maxout network, FGSM-trained"
        paper = PAPER.get(stands_for, {})
        for variant, threat in threats.items():
            stats = fgsm_stats(model, x, y, threat, args.batch_size)
            record = {
                "arch": arch,
                "epochs": epochs,
                "recipe": recipe,
                "variant": variant,
                "stands_for": stands_for or None,
                "train_seconds": card.get("train_seconds"),
                **stats,
            }
            records.append(record)
            rows.append(
                [
                    f"{arch} ({epochs} ep.{', FGSM-trained' if adversarial else ''})",
                    variant,
                    common.percent(stats["clean_error"], 2),
                    common.percent(stats["error"]),
                    common.percent(stats["confidence"]),
                    common.percent(stats["confidence_wrong"]),
                    f"{stands_for or '—'}: " + _paper_cell(paper),
                    f"{stats['attack_seconds']:.2f}",
                ]
            )
            print(
                f"  {arch:10s} {variant:8s} clean error {stats['clean_error']:.2%}, FGSM error "
                f"{stats['error']:.2%}, confidence {stats['confidence']:.1%} (wrong: "
                f"{(stats['confidence_wrong'] or 0):.1%}), {stats['attack_seconds']:.2f} s",
                flush=True,
            )
    total = time.perf_counter() - total_started
    info["load_average_end"] = [round(v, 2) for v in common.load_average()]
    headers = [
        "model",
        "threat",
        "clean error",
        "FGSM error",
        "mean confidence",
        "confidence (misclassified)",
        "paper: error / confidence",
        "FGSM seconds",
    ]
    text = common.markdown_table(headers, rows, ["l", "l", "r", "r", "r", "r", "l", "r"])
    print()
    print(text)
    print()
    print(
        f"{len(x):,} test images, ε = {args.eps:g}; 'box': adversarial images clipped to "
        f"[0, 1] (advml's default); 'no clip': the paper's x + ε·sign(∇) unclipped. "
        f"Total {total:.1f} s (training from the cache or fresh included)."
    )
    print(f"Machine: {common.describe_machine(info)}")
    payload = {"machine": info, "args": vars(args), "eps": args.eps, "paper": PAPER}
    payload.update(results=records, total_seconds=total, table=text)
    if args.out:
        common.write_json(args.out, payload)
        print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
