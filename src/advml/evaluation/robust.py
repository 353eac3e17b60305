"""Worst-case robust accuracy over an ensemble of attacks and several budgets, with diagnostics.

Robust accuracy at budget ε is the fraction of samples ``(x, y)`` for which no attack in the
ensemble finds ``x'`` in the threat ball B_ε(x) ∩ [0, 1]^d with ``argmax f(x') != y``
(Carlini et al. 2019, "On evaluating adversarial robustness"; Croce & Hein 2020's cascade).

- A sample counts as robust only if *every* attack failed on it; later attacks run only on the
  samples still robust (the AutoAttack cascade), so the result equals the per-sample minimum over
  the attacks run one by one.
- Budgets are processed in increasing order: an adversarial example inside B_ε is inside every
  larger ball, so a sample broken at ε is broken at every larger ε without new work; only samples
  still robust are attacked at the next budget. Robust accuracy is therefore monotone in ε.
- Every adversarial example an attack reports is re-checked here by a forward pass and a
  threat-model membership test before it counts.
- Attacks get a seed derived from ``(seed, attack label, ε)`` only, and draw their randomness
  per sample from it (:mod:`advml.attacks.rng`), so results do not depend on the batch size or
  on how samples are sharded across processes.
- Diagnostics (:mod:`advml.evaluation.diagnostics`) probe the model before the cascade and
  watch the cascade itself; with ``adaptive=True`` an ensemble that a probe shows to be
  unreliable is strengthened (a gradient-free attack for masked gradients, EOT for randomized
  models, a margin loss for saturated logits, the log of probability outputs) and the report
  says so. Added attacks can only lower robust accuracy.
- Under ``torchrun`` (torch.distributed initialized, world size > 1) every process evaluates
  a contiguous shard of the samples and the shards are merged, so every process returns the
  single-process report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from advml.errors import AdvmlError, UserError
from advml.evaluation import diagnostics as diag
from advml.evaluation.clean import predict
from advml.evaluation.presets import AttackStep, resolve, step
from advml.progress import progress_bar
from advml.runtime import derive_seed
from advml.threats import make as make_threat

__all__ = ["RobustnessReport", "StepStats", "evaluate"]

AttackSpec = str | Callable[..., Any]

#: ``breaker`` codes that are not attack indices.
ROBUST = -1
CLEAN_WRONG = -2


@dataclasses.dataclass
class StepStats:
    """What one attack of the cascade did at one budget."""

    label: str
    attacked: int = 0
    broken: int = 0
    seconds: float = 0.0
    queries: int = 0
    robust_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RobustnessReport:
    """Result of :func:`evaluate`.

    Per budget ``eps``: ``robust[eps]`` (bool per sample), ``x_adv[eps]`` (the adversarial
    example found, or ``x`` where none was), ``adv_pred[eps]`` (the model's prediction at
    ``x_adv``), ``norm[eps]`` (perturbation size, NaN where robust), ``breaker[eps]`` (index
    into ``attacks`` of the attack that broke the sample, ``-1`` robust, ``-2`` misclassified
    clean), ``broken_by[eps]`` (counts per attack) and ``per_attack[eps]`` (:class:`StepStats`
    in cascade order). ``flags`` lists the diagnostics (:class:`diagnostics.Flag`).
    """

    threat: str
    eps: list[float]
    attacks: list[str]
    clean_correct: Tensor
    robust: dict[float, Tensor] = dataclasses.field(default_factory=dict)
    broken_by: dict[float, dict[str, int]] = dataclasses.field(default_factory=dict)
    x_adv: dict[float, Tensor] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    steps: list[AttackStep] = dataclasses.field(default_factory=list)
    preset: str | None = None
    flags: list[diag.Flag] = dataclasses.field(default_factory=list)
    per_attack: dict[float, list[StepStats]] = dataclasses.field(default_factory=dict)
    breaker: dict[float, Tensor] = dataclasses.field(default_factory=dict)
    adv_pred: dict[float, Tensor] = dataclasses.field(default_factory=dict)
    norm: dict[float, Tensor] = dataclasses.field(default_factory=dict)
    x: Tensor | None = None
    y: Tensor | None = None
    clean_pred: Tensor | None = None
    seed: int = 0
    batch_size: int = 500
    world_size: int = 1
    notes: list[str] = dataclasses.field(default_factory=list)
    probe: diag.ProbeStats | None = None
    unbounded: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.clean_correct.numel())

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct.float().mean().item()

    @property
    def robust_accuracy(self) -> dict[float, float]:
        return {eps: mask.float().mean().item() for eps, mask in self.robust.items()}

    def accuracy_after(self, eps: float) -> list[tuple[str, float]]:
        """Robust accuracy after each attack of the cascade at ``eps`` (cumulative)."""
        n = max(self.n, 1)
        return [(s.label, s.robust_after / n) for s in self.per_attack.get(eps, [])]

    @property
    def worst_severity(self) -> str | None:
        for level in diag.SEVERITIES:
            if any(f.severity == level for f in self.flags):
                return level
        return None

    def flagged(self, name: str) -> list[diag.Flag]:
        return [f for f in self.flags if f.name == name]

    def samples(self) -> list[dict[str, Any]]:
        """One row per sample: label, clean prediction, the smallest budget at which it was
        broken (``None``: robust at every budget; ``0.0``: misclassified clean) and by what."""
        rows = []
        y = self.y.tolist() if self.y is not None else [None] * self.n
        clean = self.clean_pred.tolist() if self.clean_pred is not None else [None] * self.n
        breakers = {e: self.breaker[e].tolist() for e in self.eps if e in self.breaker}
        preds = {e: self.adv_pred[e].tolist() for e in self.eps if e in self.adv_pred}
        norms = {e: self.norm[e].tolist() for e in self.eps if e in self.norm}
        for i in range(self.n):
            row: dict[str, Any] = {
                "index": i,
                "label": y[i],
                "clean_pred": clean[i],
                "broken_at": None,
                "attack": None,
                "adv_pred": None,
                "norm": None,
            }
            if not bool(self.clean_correct[i]):
                row.update(broken_at=0.0, attack="clean")
            else:
                for e in self.eps:
                    code = breakers.get(e, [ROBUST] * self.n)[i]
                    if code >= 0:
                        row.update(
                            broken_at=e,
                            attack=self.attacks[code],
                            adv_pred=preds[e][i],
                            norm=norms[e][i],
                        )
                        break
            rows.append(row)
        return rows

    def to_dict(self, *, per_sample: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threat": self.threat,
            "n": self.n,
            "eps": self.eps,
            "preset": self.preset,
            "attacks": self.attacks,
            "steps": [s.to_dict() for s in self.steps],
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": {str(k): v for k, v in self.robust_accuracy.items()},
            "broken_by": {str(k): v for k, v in self.broken_by.items()},
            "per_attack": {str(k): [s.to_dict() for s in v] for k, v in self.per_attack.items()},
            "flags": [f.to_dict() for f in self.flags],
            "unbounded_check": self.unbounded,
            "notes": self.notes,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "seconds": self.seconds,
        }
        if per_sample:
            out["samples"] = self.samples()
        return out


class _LogOutputs(nn.Module):
    """``log`` of a model that returns probabilities: the same argmax, logits attacks can use."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).clamp_min(1e-30).log()


# ------------------------------------------------------------------------------------------
# distributed helpers


@dataclasses.dataclass(frozen=True)
class _World:
    rank: int = 0
    size: int = 1

    def gather(self, obj: Any) -> list[Any]:
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def shard(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.size, n * (self.rank + 1) // self.size


def _world(distributed: bool | None) -> _World:
    if distributed is False:
        return _World()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _World(dist.get_rank(), dist.get_world_size())
    if distributed:
        raise UserError(
            "evaluate(distributed=True) needs torch.distributed initialized (run under torchrun)"
        )
    return _World()


def _cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------
# the cascade on one shard


class _Cascade:
    """Runs steps over budgets on one shard of the samples (indices are shard-local)."""

    def __init__(
        self,
        model: nn.Module,
        attack_model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        threat: str,
        seed: int,
        batch_size: int,
        progress: bool,
    ) -> None:
        self.model = model
        self.attack_model = attack_model
        self.x, self.y = x, y
        self.threat = threat
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress
        self.errors: dict[str, str] = {}

    def attack(
        self, item: AttackStep, index: Tensor, threat_model, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, int] | None:
        """Attack ``index`` with ``item``; ``(fooled, x_adv, pred, queries)`` after the re-check,
        or ``None`` if the attack stopped with a model error (recorded in ``errors``)."""
        from advml.attacks.base import ModelOutputError

        x, y = self.x[index], self.y[index]
        kwargs = dict(item.settings)
        if item.accepts_seed:
            kwargs["seed"] = derive_seed(self.seed, item.label, repr(float(eps)))
        try:
            result = item.fn(self.attack_model, x, y, threat_model, **kwargs)
        except ModelOutputError as error:
            self.errors.setdefault(item.label, str(error))
            return None
        x_adv = result if isinstance(result, Tensor) else result.x_adv
        x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
        if x_adv.shape != x.shape:
            raise AdvmlError(
                f"attack {item.label} returned inputs of shape {tuple(x_adv.shape)} for "
                f"{tuple(x.shape)}"
            )
        inside = threat_model.contains(x_adv, x)
        pred = predict(self.model, x_adv, batch_size=self.batch_size).argmax(1)
        fooled = pred != y
        claimed = getattr(result, "success", fooled)
        if bool((claimed.to(inside.device) & ~inside).any()):
            raise AdvmlError(f"attack {item.label} returned points outside {threat_model}")
        queries = getattr(result, "queries", None)
        total = int(queries.sum()) if isinstance(queries, Tensor) else 0
        return fooled & inside, x_adv, pred, total

    def run(
        self,
        steps: list[AttackStep],
        eps_list: list[float],
        clean_pred: Tensor,
        *,
        check_step: AttackStep | None,
    ) -> dict[str, Any]:
        x, y = self.x, self.y
        n = x.shape[0]
        labels = [s.label for s in steps] + ([check_step.label] if check_step else [])
        clean_correct = clean_pred == y
        robust = clean_correct.clone()
        breaker = torch.full((n,), ROBUST, dtype=torch.long, device=x.device)
        breaker[~clean_correct] = CLEAN_WRONG
        x_cur = x.clone()
        pred_cur = clean_pred.clone()
        norm_cur = torch.full((n,), float("nan"), device=x.device)
        norm_cur[~clean_correct] = 0.0
        out: dict[str, Any] = {
            "robust": {},
            "breaker": {},
            "x_adv": {},
            "adv_pred": {},
            "norm": {},
            "stats": {},
            "single_step": {},
            "black_box_extra": {},
            "n": n,
        }
        disabled: set[str] = set()
        for eps in eps_list:
            threat_model = make_threat(self.threat, eps)
            white_failed = torch.zeros(n, dtype=torch.bool, device=x.device)
            single_alone = black_extra = 0
            first_iterative_broken = -1
            stats = []
            run_steps = list(steps) + ([check_step] if check_step else [])
            for code, item in enumerate(run_steps):
                is_check = item is check_step
                if is_check:  # standalone, on every sample classified correctly
                    index = clean_correct.nonzero().flatten()
                else:
                    index = robust.nonzero().flatten()
                record = StepStats(item.label)
                stats.append(record)
                if index.numel() == 0 or eps == 0 or item.label in disabled:
                    record.robust_after = int(robust.sum())
                    continue
                started = time.perf_counter()
                bar = progress_bar(index.numel(), f"{item.label} ε={eps:g}", enabled=self.progress)
                for start in range(0, index.numel(), self.batch_size):
                    chunk = index[start : start + self.batch_size]
                    answer = self.attack(item, chunk, threat_model, eps)
                    if answer is None:
                        disabled.add(item.label)
                        break
                    fooled, x_adv, pred, queries = answer
                    record.attacked += chunk.numel()
                    record.queries += queries
                    hit = chunk[fooled]
                    if item.kind in ("score", "decision"):
                        black_extra += int(white_failed[hit].sum())
                    if is_check:
                        single_alone += int(hit.numel())
                    new = hit[robust[hit]]  # a check step also sees samples already broken
                    keep = fooled & robust[chunk]
                    x_cur[new] = x_adv[keep]
                    pred_cur[new] = pred[keep]
                    norm_cur[new] = threat_model.norm(x_adv[keep] - x[new]).to(norm_cur.dtype)
                    robust[new] = False
                    breaker[new] = code
                    record.broken += int(new.numel())
                    if item.kind == "gradient" and not is_check:
                        white_failed[chunk[~fooled]] = True
                    bar.update(chunk.numel())
                bar.close()
                record.seconds = time.perf_counter() - started
                record.robust_after = int(robust.sum())
                if (
                    first_iterative_broken < 0
                    and item.kind == "gradient"
                    and not (item.single_step or is_check)
                ):
                    first_iterative_broken = int(clean_correct.sum()) - record.robust_after
            out["robust"][eps] = robust.clone()
            out["breaker"][eps] = breaker.clone()
            out["x_adv"][eps] = x_cur.clone()
            out["adv_pred"][eps] = pred_cur.clone()
            out["norm"][eps] = norm_cur.clone()
            out["stats"][eps] = stats
            # the single-step check: broken by it alone vs broken once the first iterative
            # gradient attack has run (a lower bound on that attack's own count: it includes
            # samples carried over from smaller budgets)
            out["single_step"][eps] = (
                single_alone,
                first_iterative_broken,
                stats[-1].broken if check_step else 0,
            )
            out["black_box_extra"][eps] = black_extra
        out["labels"] = labels
        out["errors"] = dict(self.errors)
        return out

    def unbounded(self, steps: list[AttackStep], index: Tensor, eps_max: float) -> int:
        """Samples of ``index`` that survive every step at ``eps_max``."""
        threat_model = make_threat(self.threat, eps_max)
        alive = index.clone()
        for item in steps:
            if alive.numel() == 0:
                break
            broken = torch.zeros(alive.numel(), dtype=torch.bool, device=alive.device)
            for start in range(0, alive.numel(), self.batch_size):
                answer = self.attack(
                    item, alive[start : start + self.batch_size], threat_model, eps_max
                )
                if answer is not None:
                    broken[start : start + self.batch_size] = answer[0]
            alive = alive[~broken]
        return int(alive.numel())


# ------------------------------------------------------------------------------------------


def _check_inputs(x: Tensor, y: Tensor, eps: Sequence[float], threat: str) -> list[float]:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise UserError("evaluate: x and y must be torch tensors")
    if x.ndim < 2 or x.shape[0] == 0:
        raise UserError(f"evaluate: x must be a non-empty batch (N, ...); got {tuple(x.shape)}")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"evaluate: {x.shape[0]} inputs but {y.shape[0]} labels")
    if isinstance(eps, (int, float)):
        eps = [eps]
    try:
        values = sorted({float(e) for e in eps})
    except (TypeError, ValueError):
        raise UserError(f"evaluate: eps must be a list of numbers >= 0, got {eps!r}") from None
    if not values or any(not (math.isfinite(e) and e >= 0) for e in values):
        raise UserError(f"evaluate: eps must be a non-empty list of numbers >= 0, got {eps}")
    make_threat(threat, values[-1])  # validates the threat name
    return values


def _score_based(steps: list[AttackStep]) -> bool:
    return any(s.kind in ("score", "decision") for s in steps)


def _scale_invariant(steps: list[AttackStep]) -> bool:
    names = {"apgd-t", "apgd-dlr", "fab", "fab-t", "square", "spsa", "cw", "cw-l2", "deepfool"}
    names |= {"hopskipjump", "ead"}
    return any(
        s.name in names or str(s.settings.get("loss", "")).lower() in ("margin", "cw", "dlr")
        for s in steps
    )


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: str = "linf",
    eps: Sequence[float] = (0.1,),
    attacks: str | Sequence[AttackSpec] = "standard",
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
    checks: bool = True,
    adaptive: bool = True,
    probe_size: int = 100,
    distributed: bool | None = None,
) -> RobustnessReport:
    """Worst-case robust accuracy of ``model`` on ``(x, y)`` at each budget in ``eps``.

    Args:
        threat: ``"linf"``, ``"l2"``, ``"l1"`` (``"l0"`` with explicit attacks).
        eps: budgets (any order; evaluated ascending).
        attacks: a preset (``"fast"``, ``"standard"``, ``"thorough"``), registry names (a list
            or a comma-separated string), attack functions / ``functools.partial`` objects,
            or a list mixing them; run as a cascade in the order given.
        seed: every attack's randomness derives from ``(seed, attack, eps)`` and each sample's
            contents: results do not depend on ``batch_size`` or sharding.
        batch_size: samples per attack call.
        progress: a progress bar per attack and budget (main process only).
        checks: run the diagnostics (model probes, single-step and black-box comparisons,
            the unbounded-budget check); their verified adversarial examples count.
        adaptive: strengthen the ensemble when a probe shows it is unreliable (see the
            module docstring); the added attacks are listed in ``report.steps``.
        probe_size: samples (evenly spaced) the probes and the unbounded check run on.
        distributed: shard across torch.distributed processes (default: when initialized).
    """
    started = time.perf_counter()
    eps_list = _check_inputs(x, y, eps, threat)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(probe_size, int) or probe_size < 1:
        raise UserError(f"evaluate: probe_size must be a positive int, got {probe_size!r}")
    threat = str(threat).strip().lower()
    world = _world(distributed)
    y = y.to(device=x.device, dtype=torch.long)
    n = x.shape[0]
    lo, hi = world.shard(n)
    xs, ys = x[lo:hi], y[lo:hi]

    clean_logits = predict(model, xs, batch_size=batch_size) if xs.shape[0] else None
    n_classes = max(world.gather(int(clean_logits.shape[1]) if clean_logits is not None else 0))
    clean_pred = (
        clean_logits.argmax(1)
        if clean_logits is not None
        else torch.zeros(0, dtype=torch.long, device=x.device)
    )
    steps, preset, notes = resolve(attacks, threat, n_classes=n_classes)

    # probes on an evenly spaced subset (global indices, so sharding does not change it)
    probe_global = torch.linspace(0, n - 1, min(n, probe_size)).round().long().unique()
    probe_local = probe_global[(probe_global >= lo) & (probe_global < hi)].to(x.device) - lo
    flags: list[diag.Flag] = []
    attack_model: nn.Module = model
    probe = diag.ProbeStats()
    added_why: dict[str, str] = {}
    if checks:
        mine = (
            diag.probe_model(
                model,
                xs[probe_local],
                ys[probe_local],
                start_eps=eps_list[-1],
                threat=threat,
                seed=derive_seed(seed, "probe"),
            )
            if threat != "l0"
            else diag.ProbeStats()
        )
        for part in world.gather(_cpu(mine)):
            probe = probe.merge(part)
        if adaptive:
            steps, attack_model = _adapt(steps, model, probe, threat, preset, added_why)
        elif preset == "thorough" and probe.randomized:
            steps, attack_model = _adapt(
                steps, model, probe, threat, preset, added_why, eot_only=True
            )
        flags += diag.probe_flags(probe, threat=threat, adaptive=adaptive, added=added_why)

    cascade = _Cascade(
        model,
        attack_model,
        xs,
        ys,
        threat=threat,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    unbounded: dict[str, Any] = {}
    if checks and threat in ("linf", "l2", "l1"):
        eps_max = diag.unbounded_eps(threat, x)
        probe_ok = probe_local[clean_pred[probe_local] == ys[probe_local]]
        survivors = cascade.unbounded(steps, probe_ok, eps_max)
        counts = world.gather((int(probe_ok.numel()), survivors))
        probed, alive = sum(c[0] for c in counts), sum(c[1] for c in counts)
        unbounded = {"eps": eps_max, "probed": probed, "survivors": alive}
        if alive and adaptive and not _score_based(steps) and threat in ("linf", "l2"):
            steps = [
                *steps,
                step(
                    "square",
                    {"n_queries": 5000},
                    role="added",
                    reason="samples survived every attack at an unbounded budget",
                ),
            ]
            added_why["unbounded_budget"] = "added Square (gradient-free) to the cascade"

    check_step = None
    if checks and threat in ("linf", "l2", "l1") and not any(s.single_step for s in steps):
        name = "fgsm" if threat == "linf" else "fgm"
        check_step = step(
            name,
            label=f"{name}-check",
            role="check",
            reason="single-step attack, compared with the iterative ones",
        )
    shard = cascade.run(steps, eps_list, clean_pred, check_step=check_step)
    all_steps = [*steps, *([check_step] if check_step else [])]

    # merge the shards (each process ends with the same, complete report)
    parts = world.gather(_cpu({**shard, "clean_pred": clean_pred}))
    device = x.device

    def cat(key: str, eps_value: float) -> Tensor:
        return torch.cat([p[key][eps_value] for p in parts]).to(device)

    clean_pred_all = torch.cat([p["clean_pred"] for p in parts]).to(device)
    report = RobustnessReport(
        threat=threat,
        eps=eps_list,
        attacks=[s.label for s in all_steps],
        clean_correct=clean_pred_all == y,
        steps=all_steps,
        preset=preset,
        x=x,
        y=y,
        clean_pred=clean_pred_all,
        seed=seed,
        batch_size=batch_size,
        world_size=world.size,
        notes=notes,
        probe=probe if checks else None,
        unbounded=unbounded,
    )
    errors: dict[str, str] = {}
    for p in parts:
        for label, message in p["errors"].items():
            errors.setdefault(label, message)
    for e in eps_list:
        report.robust[e] = cat("robust", e)
        report.breaker[e] = cat("breaker", e)
        report.x_adv[e] = cat("x_adv", e)
        report.adv_pred[e] = cat("adv_pred", e)
        report.norm[e] = cat("norm", e)
        merged = []
        for k, label in enumerate(report.attacks):
            records = [p["stats"][e][k] for p in parts]
            merged.append(
                StepStats(
                    label,
                    attacked=sum(r.attacked for r in records),
                    broken=sum(r.broken for r in records),
                    seconds=max(r.seconds for r in records),
                    queries=sum(r.queries for r in records),
                    robust_after=sum(r.robust_after for r in records),
                )
            )
        report.per_attack[e] = merged
        report.broken_by[e] = {r.label: r.broken for r in merged}
        if checks:
            if check_step is not None:
                alone = sum(p["single_step"][e][0] for p in parts)
                firsts = [p["single_step"][e][1] for p in parts]
                first = sum(firsts) if all(f >= 0 for f in firsts) else None
                new = sum(p["single_step"][e][2] for p in parts)
                flag = diag.single_step_flag(e, n, check_step.label, alone, first, new)
                if flag:
                    flags.append(flag)
            extra = sum(p["black_box_extra"][e] for p in parts)
            black = [s.label for s in all_steps if s.kind in ("score", "decision")]
            flag = diag.black_box_flag(e, extra, n, black)
            if flag:
                flags.append(flag)
    if unbounded:
        classes = int(clean_pred_all.unique().numel())
        flag = diag.unbounded_flag(
            unbounded["eps"],
            unbounded["probed"],
            unbounded["survivors"],
            classes,
            done=added_why.get("unbounded_budget", ""),
        )
        if flag:
            flags.append(flag)
    for label, message in errors.items():
        flags.append(diag.attack_error_flag(label, message))
    order = {level: i for i, level in enumerate(diag.SEVERITIES)}
    report.flags = sorted(diag.combine(flags), key=lambda f: order.get(f.severity, len(order)))
    report.seconds = time.perf_counter() - started
    return report


def _adapt(
    steps: list[AttackStep],
    model: nn.Module,
    probe: diag.ProbeStats,
    threat: str,
    preset: str | None,
    added: dict[str, str],
    *,
    eot_only: bool = False,
) -> tuple[list[AttackStep], nn.Module]:
    """Strengthen ``steps`` against what the probes found; record what was done in ``added``."""
    steps = list(steps)
    attack_model = model
    if probe.randomized and not any(s.name == "eot" for s in steps):
        inner = "apgd-ce" if threat in ("linf", "l2") else "pgd"
        role = "ensemble" if preset == "thorough" else "added"
        steps.append(
            step("eot", {"attack": inner}, role=role, reason="the model's outputs are random")
        )
        added["randomized_outputs"] = f"added EOT ({inner} on the mean of 8 draws) to the cascade"
    if eot_only:
        return steps, attack_model
    if probe.probabilities:
        attack_model = _LogOutputs(model)
        added["probability_outputs"] = (
            "attacked log(outputs) instead (same predictions); every verdict still uses the "
            "model's own outputs"
        )
    if probe.gradients_masked and threat in ("linf", "l2"):
        # white-box attacks contribute nothing here: make sure two Square runs (different
        # random draws) are in the cascade
        have = sum(s.name == "square" for s in steps)
        for k in range(have, 2):
            steps.append(
                step(
                    "square",
                    {"n_queries": 5000},
                    label="square" if k == 0 else f"square#{k + 1}",
                    role="added",
                    reason="gradients are zero, non-finite or absent",
                )
            )
        if have < 2:
            added["gradients_masked"] = (
                f"added {2 - have} Square run(s) (gradient-free, 5,000 queries each) to the cascade"
            )
    if probe.cross_entropy_saturated and not _scale_invariant(steps):
        if threat in ("linf", "l2"):
            steps.append(step("apgd-t", role="added", reason="cross-entropy saturates"))
            added["saturated"] = "added APGD-T (targeted DLR loss, scale-invariant) to the cascade"
        else:
            steps.append(
                step(
                    "pgd",
                    {"steps": 100, "loss": "margin"},
                    label="pgd-margin",
                    role="added",
                    reason="cross-entropy saturates",
                )
            )
            added["saturated"] = "added PGD with the margin loss to the cascade"
    labels = [s.label for s in steps]
    if len(set(labels)) != len(labels):
        seen: dict[str, int] = {}
        fixed = []
        for s in steps:
            seen[s.label] = seen.get(s.label, 0) + 1
            fixed.append(
                s
                if seen[s.label] == 1
                else dataclasses.replace(s, label=f"{s.label}#{seen[s.label]}")
            )
        steps = fixed
    return steps, attack_model
