"""The one trainer every advml game runs on.

It owns what is common to all games — epochs, batching, optimizers, learning-rate schedule,
progress bars, ``metrics.jsonl``, atomic checkpoints each epoch, exact resume, and
``DistributedDataParallel`` when started under ``torchrun`` — and delegates the objective of
each step to a :class:`~advml.training.recipe.Recipe`.

Games with several learned players (a GAN's generator and discriminator) declare them with
:meth:`Recipe.players <advml.training.recipe.Recipe.players>`: the trainer builds one optimizer
per player (its own Adam betas and learning-rate multiplier), applies the schedule to every
one, checkpoints every optimizer's state and the recipe's carried tensors, and lets
:meth:`Recipe.train_step <advml.training.recipe.Recipe.train_step>` run the players' updates.
Under ``torchrun`` each player's module gets its *own* ``DistributedDataParallel`` wrapper
(not one wrapper around the container): a discriminator step back-propagates through the
discriminator's wrapper only, so its gradients are all-reduced once per backward and the
generator's are not touched; the generator step goes through the generator's wrapper and uses
the unwrapped discriminator, so only the generator's gradients are synchronised.

Exactness by construction:

- the shuffle order of epoch ``e`` and the global RNG at its start are derived from
  ``(seed, e)``; the schedule is a function of progress; so resuming from the checkpoint of epoch
  ``e`` replays epochs ``e+1..E`` exactly as an uninterrupted run would (bitwise on CPU);
- every step draws one *global* batch of ``batch_size`` samples and rank ``r`` of ``W`` takes its
  ``r``-th contiguous slice of ``batch_size / W``. DDP averages the per-rank mean gradients, which
  equals the single-process mean gradient on the same global batch (up to float summation order).
  The last incomplete batch of an epoch is dropped so every step has the same size.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from advml.errors import UserError
from advml.evaluation.clean import accuracy
from advml.progress import progress_bar
from advml.runs import RunFolder
from advml.runtime import derive_seed, distributed_context, generator, resolve_device
from advml.training.recipe import PlayerSpec, Recipe, StandardRecipe, StepInfo
from advml.training.schedules import get_schedule
from advml.training.state import load_trainer_state, save_trainer_state

OPTIMIZERS = ("adam", "sgd", "adamw")
# Settings that shape the trajectory: resuming with different values would not continue the run.
_RESUME_INVARIANTS = (
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "seed",
)


@dataclass
class TrainConfig:
    """Settings of one training run (all recorded in ``config.json``)."""

    epochs: int = 1
    batch_size: int = 128  # global batch, split across DDP ranks
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    schedule: str = "constant"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1000
    progress: bool = True
    keep_checkpoints: int = 2

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        get_schedule(self.schedule)


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class RobustValidation:
    """Robust accuracy on a held-out subset after each epoch; the trainer keeps the model of the
    best epoch as ``best.safetensors`` (robust overfitting, Rice, Wong & Kolter 2020).

    ``attack`` is a registry name run with ``attack_kwargs`` under ``threat``.
    """

    x: torch.Tensor
    y: torch.Tensor
    threat: Any
    attack: str = "pgd"
    attack_kwargs: dict[str, Any] = field(default_factory=lambda: {"steps": 10})
    batch_size: int = 500

    def __call__(self, model: nn.Module, device: torch.device) -> float:
        from advml import attacks

        attack = attacks.get(self.attack)
        robust = 0
        for start in range(0, self.x.shape[0], self.batch_size):
            x = self.x[start : start + self.batch_size].to(device)
            y = self.y[start : start + self.batch_size].to(device)
            result = attack(model, x, y, self.threat, **self.attack_kwargs)
            robust += int((~result.success).sum())
        return robust / self.x.shape[0]


def make_optimizer(
    config: TrainConfig, params: Sequence[nn.Parameter], player: PlayerSpec | None = None
) -> torch.optim.Optimizer:
    """The optimizer of one player: the run's settings, overridden by the player's own."""
    kind = (player.optimizer if player else None) or config.optimizer
    if kind not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
    decay = config.weight_decay
    if player is not None and player.weight_decay is not None:
        decay = player.weight_decay
    lr = config.lr * (player.lr_scale if player else 1.0)
    betas = {"betas": tuple(player.betas)} if player and player.betas is not None else {}
    if kind == "sgd":
        if betas:
            raise UserError("Adam betas were given for a player trained with SGD")
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, **betas)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay, **betas)


def _check_players(model: nn.Module, players: dict[str, PlayerSpec]) -> None:
    """Every player's parameters belong to ``model`` (so the checkpoint holds them) and no
    parameter belongs to two players."""
    if not players:
        raise UserError("the recipe declared no players to train")
    owned = {id(p) for p in model.parameters()}
    seen: dict[int, str] = {}
    for name, spec in players.items():
        if not spec.lr_scale > 0:
            raise UserError(f"player {name!r}: lr_scale must be > 0, got {spec.lr_scale}")
        params = [p for p in spec.module.parameters() if p.requires_grad]
        if not params:
            raise UserError(f"player {name!r} has no trainable parameters")
        for param in params:
            if id(param) not in owned:
                raise UserError(
                    f"player {name!r} has parameters outside the model given to the trainer; "
                    "make its module a submodule of the model so checkpoints hold it"
                )
            if id(param) in seen:
                raise UserError(f"players {seen[id(param)]!r} and {name!r} share parameters")
            seen[id(param)] = name


def _check_data(name: str, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = data
    if x.shape[0] != y.shape[0]:
        raise UserError(f"{name} data: {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise UserError(f"{name} data is empty")


class Trainer:
    """Train ``model`` with ``recipe``; write the run folder ``out_dir`` when given.

    >>> from advml.data import load                              # doctest: +SKIP
    >>> from advml.models import build                           # doctest: +SKIP
    >>> model = build("cnn-small", (1, 8, 8), 10)                 # doctest: +SKIP
    >>> Trainer(model, config=TrainConfig(epochs=3)).fit(load("digits"), load("digits", "test"))
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe | None = None,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.model = model
        self.recipe = recipe or StandardRecipe()
        self.config = config or TrainConfig()
        self.config.validate()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.out_dir / "checkpoint" if self.out_dir else None

    def fit(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        val_name: str = "val",
        resume: bool = False,
        card: dict[str, Any] | None = None,
        robust_val: RobustValidation | None = None,
    ) -> TrainResult:
        """Run the remaining epochs; returns the per-epoch history."""
        _check_data("training", train)
        if val is not None:
            _check_data(val_name, val)
        device = resolve_device(self.config.device)
        with distributed_context(device) as info:
            return self._fit(train, val, val_name, resume, card or {}, device, info, robust_val)

    def _fit(self, train, val, val_name, resume, card, device, info, robust_val) -> TrainResult:
        cfg = self.config
        model = self.model.to(device)
        players = self.recipe.players(model)
        _check_players(model, players)
        nets: dict[str, nn.Module] = {}
        optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, spec in players.items():
            nets[name] = spec.module
            if info.distributed:
                nets[name] = nn.parallel.DistributedDataParallel(
                    spec.module, device_ids=[device.index] if device.type == "cuda" else None
                )
            optimizers[name] = make_optimizer(
                cfg, [p for p in spec.module.parameters() if p.requires_grad], spec
            )
        state_extra = {
            "config": dataclasses.asdict(cfg),
            "recipe": self.recipe.name,
            "recipe_settings": self.recipe.settings(),
        }

        history: list[dict[str, Any]] = []
        start_epoch = 0
        if resume:
            start_epoch, history = self._restore(model, optimizers, state_extra)
        run = RunFolder(self.out_dir) if self.out_dir is not None and info.is_main else None
        if run is not None:
            run.truncate_metrics(start_epoch)

        x, y = train[0].to(device), train[1].to(device)
        n = x.shape[0]
        if cfg.batch_size % info.world_size:
            raise UserError(
                f"batch size {cfg.batch_size} is not divisible by the "
                f"{info.world_size} processes; pick a multiple of {info.world_size}"
            )
        batch = min(cfg.batch_size, n - n % info.world_size)
        local = batch // info.world_size
        steps = n // batch
        total_steps = steps * cfg.epochs
        schedule = get_schedule(cfg.schedule)

        started = time.perf_counter()
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            torch.manual_seed(derive_seed(cfg.seed, "epoch", epoch, info.rank))
            order = torch.randperm(n, generator=generator(derive_seed(cfg.seed, "shuffle", epoch)))
            order = order.to(device)
            model.train()
            sums: dict[str, float] = {}
            bar = progress_bar(steps, f"epoch {epoch}/{cfg.epochs}", enabled=cfg.progress)
            for step in range(steps):
                global_step = (epoch - 1) * steps + step
                lr = cfg.lr * schedule(global_step / total_steps)
                for name, optimizer in optimizers.items():
                    for group in optimizer.param_groups:
                        group["lr"] = lr * players[name].lr_scale
                index = order[
                    step * batch + info.rank * local : step * batch + (info.rank + 1) * local
                ]
                step_info = StepInfo(
                    module=model,
                    epoch=epoch,
                    step=step,
                    progress=global_step / total_steps,
                    generator=generator(
                        derive_seed(cfg.seed, "step", epoch, step, info.rank), device
                    ),
                    seed=derive_seed(cfg.seed, "attack", epoch, step),
                    lr=lr,
                )
                metrics = self.recipe.train_step(nets, x[index], y[index], step_info, optimizers)
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v / (step + 1):.4f}" for k, v in sums.items()}, refresh=False
                )
            bar.close()
            row: dict[str, Any] = {"epoch": epoch, "lr": lr}
            row.update({f"train_{k}": v for k, v in self._reduce_mean(sums, steps, device).items()})
            row.update(self.recipe.end_epoch(model, epoch))
            if val is not None:
                row[f"{val_name}_acc"] = accuracy(
                    model, val[0], val[1], batch_size=cfg.eval_batch_size, device=device
                )
            if robust_val is not None:
                row["robust_val_acc"] = robust_val(model, device)
            row["epoch_seconds"] = time.perf_counter() - epoch_start
            row["samples_per_second"] = steps * batch / row["epoch_seconds"]
            history.append(row)
            if run is not None:
                run.log(row)
                save_trainer_state(
                    self.checkpoint_dir,
                    epoch,
                    model,
                    optimizers,
                    {**state_extra, "history": history},
                    keep=cfg.keep_checkpoints,
                    recipe_state=self.recipe.state_tensors(),
                )
                self._save_model(model, card, row)
                if robust_val is not None and row["robust_val_acc"] >= max(
                    r.get("robust_val_acc", -1.0) for r in history
                ):
                    self._save_model(model, card, row, filename="best.safetensors")
            if info.distributed:
                dist.barrier()
            for callback in self.callbacks:
                callback(epoch, row)
        return TrainResult(history=history, seconds=time.perf_counter() - started)

    def _restore(self, model, optimizers, state_extra) -> tuple[int, list[dict[str, Any]]]:
        if self.checkpoint_dir is None:
            raise UserError("resume needs the run folder of the interrupted run (out_dir / --out)")
        epoch, model_state, optim_state, extra, recipe_state = load_trainer_state(
            self.checkpoint_dir
        )
        old, new = extra.get("config", {}), state_extra["config"]
        changed = [k for k in _RESUME_INVARIANTS if k in old and old[k] != new[k]]
        if extra.get("recipe") != state_extra["recipe"]:
            changed.append("recipe")
        if changed:
            details = ", ".join(
                f"{k}: {old.get(k, extra.get(k))} -> {new.get(k, state_extra.get(k))}"
                for k in changed
            )
            raise UserError(
                f"cannot resume {self.checkpoint_dir}: settings differ from the "
                f"interrupted run ({details}); use the same settings or a new --out"
            )
        if set(optim_state) != set(optimizers):
            raise UserError(
                f"cannot resume {self.checkpoint_dir}: it holds the optimizers of players "
                f"{', '.join(sorted(optim_state))}, this game has {', '.join(sorted(optimizers))}"
            )
        model.load_state_dict(model_state)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(optim_state[name])
        self.recipe.load_state_tensors(recipe_state)
        return epoch, list(extra.get("history", []))

    @staticmethod
    def _reduce_mean(sums: dict[str, float], steps: int, device: torch.device) -> dict[str, float]:
        if not sums:
            return {}
        values = torch.tensor(list(sums.values()), dtype=torch.float64, device=device) / steps
        if dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        return dict(zip(sums, values.tolist(), strict=True))

    def _save_model(
        self,
        model: nn.Module,
        card: dict[str, Any],
        row: dict[str, Any],
        filename: str = "model.safetensors",
    ) -> None:
        if getattr(model, "advml_spec", None) is None:
            return  # a user's own module: the trainer checkpoint holds its weights
        from advml.models import save

        save(
            model,
            self.out_dir / filename,
            {
                **card,
                "recipe": self.recipe.name,
                "recipe_settings": self.recipe.settings(),
                "seed": self.config.seed,
                "epochs_trained": row["epoch"],
                "metrics": {k: v for k, v in row.items() if k.endswith("_acc")},
            },
        )
