"""``advml attack``: run one attack on a trained model and save the adversarial set."""

from __future__ import annotations

import argparse
import time

import torch

from advml.cli.common import (
    add_data_options,
    add_run_options,
    command_line,
    load_split,
    out_dir,
    positive_float,
    positive_int,
)
from advml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="attack a trained model and save the adversarial examples",
        description="Run one attack from the registry on the first --n test samples; write "
        "adversarial.safetensors (x_adv, y, success, norm), results.json, config.json.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="model: a .safetensors file, its .json card or a run folder",
    )
    add_data_options(parser)
    parser.add_argument("--attack", default="pgd", help="attack name (see advml.attacks.names())")
    parser.add_argument("--threat", choices=("linf", "l2", "l1"), default="linf")
    parser.add_argument("--eps", type=positive_float, required=True, help="budget of the threat")
    parser.add_argument(
        "--targeted",
        action="store_true",
        help="targeted attack; targets are (label + 1) mod classes",
    )
    parser.add_argument("--steps", type=positive_int, default=None, help="attack iterations")
    parser.add_argument("--restarts", type=positive_int, default=None, help="random restarts")
    parser.add_argument("--n", type=positive_int, default=1000, help="test samples (default 1000)")
    parser.add_argument("--batch-size", type=positive_int, default=500)
    parser.add_argument("--out", required=True, help="output folder")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import inspect

    from safetensors.torch import save_file

    from advml import attacks
    from advml.models import load as load_model
    from advml.runs import RunFolder
    from advml.runtime import resolve_device
    from advml.threats import make as make_threat

    folder = RunFolder(out_dir(args.out))
    device = resolve_device(args.device)
    model = load_model(args.checkpoint).to(device)
    x, y = load_split(args, "test", args.n)
    x, y = x.to(device), y.to(device)
    attack = attacks.get(args.attack)
    meta = attacks.info(args.attack)
    if args.threat not in meta.norms:
        raise UserError(
            f"attack {meta.name} supports {', '.join(sorted(meta.norms))}, not "
            f"{args.threat}; pick another --threat or --attack"
        )
    if args.targeted and not meta.targeted:
        raise UserError(f"attack {meta.name} has no targeted mode; drop --targeted")
    threat = make_threat(args.threat, args.eps)
    accepted = inspect.signature(attack).parameters
    options = {"steps": args.steps, "restarts": args.restarts}
    kwargs = {k: v for k, v in options.items() if v is not None}
    for key in kwargs:
        if key not in accepted:
            raise UserError(f"attack {meta.name} has no --{key} option")
    if "seed" in accepted:
        kwargs["seed"] = args.seed
    folder.write_config(
        {k: v for k, v in vars(args).items() if k != "func"}, command=command_line(args)
    )

    num_classes = int(model.advml_card.get("num_classes", int(y.max()) + 1))
    target = (y + 1) % num_classes if args.targeted else y
    started = time.perf_counter()
    parts = []
    for start in range(0, x.shape[0], args.batch_size):
        chunk = slice(start, start + args.batch_size)
        parts.append(
            attack(model, x[chunk], target[chunk], threat, targeted=args.targeted, **kwargs)
        )
    seconds = time.perf_counter() - started
    x_adv = torch.cat([r.x_adv for r in parts])
    success = torch.cat([r.success for r in parts])
    norm = torch.cat([r.norm for r in parts])
    queries = torch.cat([r.queries for r in parts])
    with torch.no_grad():
        clean_correct = model(x).argmax(1) == y
        adv_correct = model(x_adv).argmax(1) == y
    save_file(
        {
            "x_adv": x_adv.cpu().contiguous(),
            "y": y.cpu(),
            "target": target.cpu().clone(),
            "success": success.cpu(),
            "norm": norm.cpu(),
        },
        str(folder.path / "adversarial.safetensors"),
    )
    norms = norm[success]
    results = {
        "attack": meta.name,
        "threat": args.threat,
        "eps": args.eps,
        "targeted": args.targeted,
        "n": int(x.shape[0]),
        "clean_accuracy": clean_correct.float().mean().item(),
        "robust_accuracy": (clean_correct & adv_correct).float().mean().item(),
        "success_rate": success.float().mean().item(),
        "median_norm_of_successes": norms.median().item() if norms.numel() else None,
        "mean_queries": queries.float().mean().item(),
        "seconds": seconds,
        "images_per_second": x.shape[0] / seconds,
    }
    folder.write_results(results)
    print(
        f"{meta.name} ({args.threat}, ε={args.eps:g}{', targeted' if args.targeted else ''}) "
        f"on {results['n']} {args.dataset} test images in {seconds:.1f} s"
    )
    print(f"  clean accuracy   {100 * results['clean_accuracy']:6.2f} %")
    print(f"  robust accuracy  {100 * results['robust_accuracy']:6.2f} %")
    print(f"  success rate     {100 * results['success_rate']:6.2f} %")
    if norms.numel():
        print(
            f"  {args.threat} norm of successes: median {norms.median().item():.4f}, "
            f"max {norms.max().item():.4f}"
        )
    print(f"  wrote {folder.path / 'adversarial.safetensors'}")
    return 0
