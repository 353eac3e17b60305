"""Shared helpers of the benchmark scripts: data, cached trained models, timing, tables.

Models are trained with advml's own trainer and cached as a safetensors checkpoint plus its
JSON card under ``benchmarks/.cache/`` (ignored by git), keyed by dataset, architecture,
epochs, seed and training-set size, so a second run reuses them. Nothing here depends on the
peer libraries.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Default cache of trained benchmark models.
CACHE = Path(__file__).resolve().parent / ".cache"


def ensure_cache(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder (created, with a ``.gitignore`` that ignores everything in it)."""
    folder = Path(cache) if cache is not None else CACHE
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# trained benchmark models, rebuilt on demand\n*\n")
    return folder


def load_split(
    dataset: str, split: str, n: int | None = None, data_dir: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a dataset split, the first ``n`` samples when ``n`` is given."""
    from advml.data import load

    x, y = load(dataset, split, root=data_dir)
    if n is not None:
        x, y = x[:n], y[:n]
    return x.contiguous(), y.contiguous()


def normalization(dataset: str, x_train: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean/std for the model's ``Normalize`` layer, as ``advml train`` chooses them."""
    from advml.cli.common import normalization_for

    return normalization_for(dataset, x_train)


def trained_model(
    dataset: str = "mnist",
    arch: str = "cnn-small",
    epochs: int = 1,
    *,
    seed: int = 0,
    n_train: int | None = None,
    data_dir: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    log: Callable[[str], None] = print,
    recipe: str = "standard",
    recipe_settings: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A model trained with advml (Adam; the standard recipe unless ``recipe`` names another,
    with ``recipe_settings``), from the cache when present.

    Returns ``(model, card)``; the model is in eval mode on the CPU. The card records the test
    accuracy and the training time of the run that produced it.
    """
    from advml.models import build, load, read_card, save
    from advml.training import TrainConfig, Trainer, get_recipe

    folder = ensure_cache(cache)
    stem = f"{dataset}-{arch}-e{epochs}-s{seed}" + (f"-n{n_train}" if n_train else "")
    settings = dict(recipe_settings or {})
    if recipe != "standard":
        stem += f"-{recipe}" + "".join(f"-{k}{v}" for k, v in sorted(settings.items()))
    path = folder / f"{stem}.safetensors"
    if path.exists() and path.with_suffix(".json").exists():
        model = load(path)
        model.eval()
        return model, read_card(path)
    x, y = load_split(dataset, "train", n_train, data_dir)
    xt, yt = load_split(dataset, "test", None, data_dir)
    mean, std = normalization(dataset, x)
    num_classes = int(max(y.max(), yt.max())) + 1
    torch.manual_seed(seed)
    model = build(arch, tuple(x.shape[1:]), num_classes, mean=mean, std=std)
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device="cpu", progress=False
    )
    log(
        f"training {arch} on {dataset} ({len(x):,} samples, {epochs} epoch(s), recipe {recipe}, "
        f"seed {seed}) ..."
    )
    started = time.perf_counter()
    trainer = Trainer(model, get_recipe(recipe, **settings), config=config)
    result = trainer.fit((x, y), (xt, yt), val_name="test")
    seconds = time.perf_counter() - started
    test_acc = float(result.final.get("test_acc", float("nan")))
    log(f"  test accuracy {test_acc:.2%} after {seconds:.1f} s; cached as {path}")
    save(
        model,
        path,
        {
            "dataset": dataset,
            "recipe": recipe,
            "recipe_settings": settings,
            "seed": seed,
            "epochs_trained": epochs,
            "n_train": len(x),
            "train_config": {"optimizer": "adam", "lr": lr, "batch_size": batch_size},
            "metrics": {"test_acc": test_acc},
            "train_seconds": round(seconds, 1),
            "command": "benchmarks/common.py trained_model",
        },
    )
    model = load(path)
    model.eval()
    return model, read_card(path)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``x`` in batches, without gradients."""
    parts = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` by the wall clock."""
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where the OS has none)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return (float("nan"),) * 3


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran: date, CPU, cores, torch threads, load average."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in load_average()],
    }


def describe_machine(info: dict[str, Any]) -> str:
    load = info.get("load_average", [])
    load_end = info.get("load_average_end")
    text = (
        f"{info['date']}, {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"with {info['torch_threads']} thread(s), load average (1/5/15 min) "
        f"{' / '.join(f'{v:.2f}' for v in load)} at start"
    )
    if load_end:
        text += f", {' / '.join(f'{v:.2f}' for v in load_end)} at end"
    return text


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A Markdown table; ``align`` holds ``"l"`` or ``"r"`` per column (default: first left)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(str(h))] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.ljust(w) if a == "l" else v.rjust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line([str(h) for h in headers]), rule, *(line(r) for r in cells)])


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    return str(value)
