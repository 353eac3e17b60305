"""advml's attacks against torchattacks, ART and Foolbox on one standard MNIST model.

For FGSM, PGD-40, CW-L2, DeepFool, Square and APGD-CE, every library attacks the same
images of the same model (``cnn-small``, one epoch of standard training with advml, cached in
``benchmarks/.cache``) in the same batches, after one warm-up call on a small batch. Every
library's output is re-checked here, with the same forward pass and the same threat check
(``advml.threats.Linf(0.3).contains`` for the fixed-budget attacks; the box ``[0, 1]`` and
finiteness for the minimum-norm ones): a sample whose output leaves the ball or the box counts
as not attacked, and the library's cell is marked ``†`` (not trusted). Printed: robust accuracy
(clean-correct and still correct after the attack) or, for the minimum-norm attacks, the median
L2 distance over the clean-correct samples (a failure counts as infinitely far), images per
second, and advml's speed over the fastest peer, as one Markdown table, then the targets of the
issue (met or missed).

Timing is "to the verdict": advml's attacks return which samples they broke (their result
carries the logits of the adversarial examples), the peers return only the perturbed images,
so each peer's timed loop also runs the one batched forward pass on its output that a user
needs to know the same. ``--timing attack`` times the peers' calls alone; the JSON keeps
both (``seconds`` and ``attack_seconds``).

Run from the repository root with the benchmark environment::

    ADVML_DATA=/work/shared/data .venv-bench/bin/python benchmarks/attacks_vs_peers.py \
        --n 1000 --batch-size 250 --threads 2 --out runs/bench/attacks_vs_peers.json

Each peer's settings are printed under the table (``SETTINGS`` below) and in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from advml import attacks as advml_attacks
from advml.threats import L2, Linf, ThreatModel

for _module in ("cw", "square"):  # registered on import; may be missing from attacks/__init__
    with contextlib.suppress(ImportError):
        importlib.import_module(f"advml.attacks.{_module}")

LIBRARIES = ("advml", "torchattacks", "art", "foolbox")
PEERS = LIBRARIES[1:]
TITLES = {"advml": "advml", "torchattacks": "torchattacks", "art": "ART", "foolbox": "Foolbox"}
ATTACKS = ("fgsm", "pgd", "cw", "cw-matched", "deepfool", "square", "apgd-ce")

EPS = 0.3  # L∞ budget of every fixed-budget attack (MNIST)
PGD_STEPS, PGD_STEP = 40, 0.01
APGD_STEPS = 100
# CW at one matched budget for every library (binary steps and steps: --cw-binary-steps,
# --cw-steps)
CW_BINARY, CW_STEPS, CW_LR, CW_CONST = 5, 100, 0.01, 0.1

Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class Context:
    """What the runners share: the model and the peers' wrappers of it, built on demand."""

    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    batch_size: int
    square_queries: int
    timing: str = "verdict"
    _art: Any = None
    _foolbox: Any = None

    def art(self) -> Any:
        if self._art is None:
            from art.estimators.classification import PyTorchClassifier

            self._art = PyTorchClassifier(
                model=self.model,
                loss=nn.CrossEntropyLoss(),
                input_shape=self.input_shape,
                nb_classes=self.num_classes,
                clip_values=(0.0, 1.0),
                device_type="cpu",
            )
        return self._art

    def foolbox(self) -> Any:
        if self._foolbox is None:
            import foolbox

            self._foolbox = foolbox.PyTorchModel(self.model, bounds=(0, 1), device="cpu")
        return self._foolbox


@dataclasses.dataclass
class Spec:
    key: str
    title: str
    threat: ThreatModel
    minimum_norm: bool
    #: library -> (settings text, factory(ctx) -> runner); a missing library prints "—"
    libraries: dict[str, tuple[str, Callable[[Context], Runner]]]
    #: whether every library runs the same budget; speed is compared only then
    matched: bool = True


# --------------------------------------------------------------------------- runners


def _advml(name: str, threat: ThreatModel, **kwargs: Any) -> Callable[[Context], Runner]:
    def make(ctx: Context) -> Runner:
        attack = advml_attacks.get(name)
        return lambda x, y: attack(ctx.model, x, y, threat, **kwargs).x_adv

    return make


def _torchattacks(cls: str, **kwargs: Any) -> Callable[[Context], Runner]:
    def make(ctx: Context) -> Runner:
        import torchattacks

        attack = getattr(torchattacks, cls)(ctx.model, **kwargs)
        return lambda x, y: attack(x, y)

    return make


def _art(cls: str, **kwargs: Any) -> Callable[[Context], Runner]:
    def make(ctx: Context) -> Runner:
        from art.attacks import evasion

        attack = getattr(evasion, cls)(ctx.art(), batch_size=ctx.batch_size, **kwargs)

        def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = attack.generate(x=x.numpy(), y=y.numpy())
            return torch.from_numpy(np.asarray(out, dtype=np.float32))

        return run

    return make


def _foolbox(cls: str, epsilon: float | None, **kwargs: Any) -> Callable[[Context], Runner]:
    def make(ctx: Context) -> Runner:
        import foolbox

        attack = getattr(foolbox.attacks, cls)(**kwargs)
        fmodel = ctx.foolbox()

        def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            _, clipped, _ = attack(fmodel, x, y, epsilons=epsilon)
            return clipped

        return run

    return make


def _square_advml(threat: ThreatModel) -> Callable[[Context], Runner]:
    def make(ctx: Context) -> Runner:
        attack = advml_attacks.get("square")
        return lambda x, y: (
            attack(ctx.model, x, y, threat, n_queries=ctx.square_queries, p_init=0.8).x_adv
        )

    return make


def _square_torchattacks(ctx: Context) -> Runner:
    import torchattacks

    attack = torchattacks.Square(
        ctx.model,
        norm="Linf",
        eps=EPS,
        n_queries=ctx.square_queries,
        n_restarts=1,
        p_init=0.8,
        loss="margin",
        resc_schedule=True,
        seed=0,
    )
    return lambda x, y: attack(x, y)


def _square_art(ctx: Context) -> Runner:
    from art.attacks.evasion import SquareAttack

    attack = SquareAttack(
        ctx.art(),
        norm=np.inf,
        eps=EPS,
        max_iter=ctx.square_queries,
        p_init=0.8,
        nb_restarts=1,
        batch_size=ctx.batch_size,
        verbose=False,
    )
    return lambda x, y: torch.from_numpy(
        np.asarray(attack.generate(x=x.numpy(), y=y.numpy()), dtype=np.float32)
    )


def specs(
    square_queries: int = 5000, cw_binary: int = CW_BINARY, cw_steps: int = CW_STEPS
) -> dict[str, Spec]:
    linf = Linf(EPS)
    box = L2(math.inf)  # minimum-norm attacks: only the box [0, 1] constrains them
    b = "batch_size = --batch-size"
    return {
        "fgsm": Spec(
            "fgsm",
            "FGSM (L∞ 0.3)",
            linf,
            False,
            {
                "advml": ("fgsm(Linf(0.3)) (defaults: step = eps, CE)", _advml("fgsm", linf)),
                "torchattacks": ("FGSM(eps=0.3)", _torchattacks("FGSM", eps=EPS)),
                "art": (
                    f"FastGradientMethod(norm=inf, eps=0.3, {b})",
                    _art("FastGradientMethod", norm=np.inf, eps=EPS),
                ),
                "foolbox": (
                    "LinfFastGradientAttack(), epsilons=0.3",
                    _foolbox("LinfFastGradientAttack", EPS),
                ),
            },
        ),
        "pgd": Spec(
            "pgd",
            "PGD-40 (L∞ 0.3, step 0.01)",
            linf,
            False,
            {
                "advml": (
                    "pgd(Linf(0.3), steps=40, step_size=0.01, random_start=True, restarts=1) "
                    "(CE, early_stop=True by default)",
                    _advml(
                        "pgd",
                        linf,
                        steps=PGD_STEPS,
                        step_size=PGD_STEP,
                        random_start=True,
                        restarts=1,
                    ),
                ),
                "torchattacks": (
                    "PGD(eps=0.3, alpha=0.01, steps=40, random_start=True)",
                    _torchattacks(
                        "PGD", eps=EPS, alpha=PGD_STEP, steps=PGD_STEPS, random_start=True
                    ),
                ),
                "art": (
                    "ProjectedGradientDescent(norm=inf, eps=0.3, eps_step=0.01, max_iter=40, "
                    f"num_random_init=1, {b}, verbose=False)",
                    _art(
                        "ProjectedGradientDescent",
                        norm=np.inf,
                        eps=EPS,
                        eps_step=PGD_STEP,
                        max_iter=PGD_STEPS,
                        num_random_init=1,
                        verbose=False,
                    ),
                ),
                "foolbox": (
                    "LinfPGD(abs_stepsize=0.01, steps=40, random_start=True), epsilons=0.3",
                    _foolbox(
                        "LinfPGD", EPS, abs_stepsize=PGD_STEP, steps=PGD_STEPS, random_start=True
                    ),
                ),
            },
        ),
        "cw": Spec(
            "cw",
            "CW-L2, each library's defaults",
            box,
            True,
            {
                "advml": (
                    "cw(L2(inf)) (defaults: 9 binary steps × ≤ 1000 Adam steps, lr 0.01, "
                    "initial_const 1 (normalized f), κ 0, abort_early)",
                    _advml("cw", box),
                ),
                "torchattacks": (
                    "CW() (defaults: c=1, kappa=0, steps=50, lr=0.01; one c, no search)",
                    _torchattacks("CW"),
                ),
                "art": (
                    "CarliniL2Method(verbose=False, batch_size) (defaults: 10 binary steps × 10 "
                    "iterations, lr 0.01, initial_const 0.01, 5 halvings/doublings)",
                    _art("CarliniL2Method", verbose=False),
                ),
                "foolbox": (
                    "L2CarliniWagnerAttack() (defaults: 9 binary steps × ≤ 10,000 steps, "
                    "stepsize 0.01, initial_const 0.001, abort_early), epsilons=None",
                    _foolbox("L2CarliniWagnerAttack", None),
                ),
            },
            matched=False,
        ),
        "cw-matched": Spec(
            "cw-matched",
            f"CW-L2, matched: {cw_binary} × {cw_steps} steps, lr {CW_LR}, c₀ {CW_CONST}",
            box,
            True,
            {
                "advml": (
                    f"cw(L2(inf), binary_steps={cw_binary}, steps={cw_steps}, lr={CW_LR}, "
                    f"initial_const={CW_CONST})",
                    _advml(
                        "cw",
                        box,
                        binary_steps=cw_binary,
                        steps=cw_steps,
                        lr=CW_LR,
                        initial_const=CW_CONST,
                    ),
                ),
                "torchattacks": (
                    f"CW(c=1, kappa=0, steps={cw_binary * cw_steps}, lr={CW_LR}) (no binary "
                    "search: the same number of gradient steps with one c)",
                    _torchattacks("CW", c=1, kappa=0, steps=cw_binary * cw_steps, lr=CW_LR),
                ),
                "art": (
                    f"CarliniL2Method(binary_search_steps={cw_binary}, max_iter={cw_steps}, "
                    f"learning_rate={CW_LR}, initial_const={CW_CONST}, verbose=False, "
                    "batch_size)",
                    _art(
                        "CarliniL2Method",
                        binary_search_steps=cw_binary,
                        max_iter=cw_steps,
                        learning_rate=CW_LR,
                        initial_const=CW_CONST,
                        verbose=False,
                    ),
                ),
                "foolbox": (
                    f"L2CarliniWagnerAttack(binary_search_steps={cw_binary}, steps={cw_steps}, "
                    f"stepsize={CW_LR}, initial_const={CW_CONST}), epsilons=None",
                    _foolbox(
                        "L2CarliniWagnerAttack",
                        None,
                        binary_search_steps=cw_binary,
                        steps=cw_steps,
                        stepsize=CW_LR,
                        initial_const=CW_CONST,
                    ),
                ),
            },
        ),
        "deepfool": Spec(
            "deepfool",
            "DeepFool-L2 (50 steps, overshoot 0.02)",
            box,
            True,
            {
                "advml": (
                    "deepfool(L2(inf)) (defaults: steps=50, overshoot=0.02, candidates=10)",
                    _advml("deepfool", box),
                ),
                "torchattacks": (
                    "DeepFool(steps=50, overshoot=0.02) (all 10 classes, one image at a time)",
                    _torchattacks("DeepFool", steps=50, overshoot=0.02),
                ),
                "art": (
                    "DeepFool(max_iter=50, epsilon=0.02, nb_grads=10, verbose=False, batch_size)",
                    _art("DeepFool", max_iter=50, epsilon=0.02, nb_grads=10, verbose=False),
                ),
                "foolbox": (
                    "L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02, loss='logits'), "
                    "epsilons=None",
                    _foolbox(
                        "L2DeepFoolAttack",
                        None,
                        steps=50,
                        candidates=10,
                        overshoot=0.02,
                        loss="logits",
                    ),
                ),
            },
        ),
        "square": Spec(
            "square",
            f"Square (L∞ 0.3, {square_queries:,} queries)",
            linf,
            False,
            {
                "advml": (
                    "square(Linf(0.3), n_queries=Q, p_init=0.8) (margin loss; Q counts every "
                    "query, clean pass and final check included)",
                    _square_advml(linf),
                ),
                "torchattacks": (
                    "Square(norm='Linf', eps=0.3, n_queries=Q, n_restarts=1, p_init=0.8, "
                    "loss='margin', resc_schedule=True, seed=0) (Q = iterations)",
                    _square_torchattacks,
                ),
                "art": (
                    "SquareAttack(norm=inf, eps=0.3, max_iter=Q, p_init=0.8, nb_restarts=1, "
                    "batch_size, verbose=False) (Q = iterations)",
                    _square_art,
                ),
            },
        ),
        "apgd-ce": Spec(
            "apgd-ce",
            "APGD-CE (L∞ 0.3, 100 steps)",
            linf,
            False,
            {
                "advml": (
                    "apgd_ce(Linf(0.3)) (defaults: 100 steps, 1 restart, η₀ = 2 eps, ρ 0.75)",
                    _advml("apgd-ce", linf),
                ),
                "torchattacks": (
                    "APGD(norm='Linf', eps=0.3, steps=100, n_restarts=1, loss='ce', rho=0.75, "
                    "seed=0)",
                    _torchattacks(
                        "APGD",
                        norm="Linf",
                        eps=EPS,
                        steps=APGD_STEPS,
                        n_restarts=1,
                        loss="ce",
                        rho=0.75,
                        seed=0,
                    ),
                ),
                "art": (
                    "AutoProjectedGradientDescent(norm=inf, eps=0.3, eps_step=0.6 (= 2 eps, the "
                    "paper's η₀), max_iter=100, nb_random_init=1, loss_type='cross_entropy', "
                    "batch_size, verbose=False)",
                    _art(
                        "AutoProjectedGradientDescent",
                        norm=np.inf,
                        eps=EPS,
                        eps_step=2 * EPS,
                        max_iter=APGD_STEPS,
                        nb_random_init=1,
                        loss_type="cross_entropy",
                        verbose=False,
                    ),
                ),
            },
        ),
    }


# --------------------------------------------------------------------------- measuring


def available(library: str) -> str | None:
    """``None`` when the library imports, else the reason it does not."""
    if library == "advml":
        return None
    module = {"torchattacks": "torchattacks", "art": "art", "foolbox": "foolbox"}[library]
    try:
        __import__(module)
    except Exception as error:  # ImportError and anything a broken install raises
        return f"{type(error).__name__}: {error}"
    return None


def median(values: torch.Tensor) -> float:
    """The median (mean of the two middle values for an even count; inf propagates)."""
    if values.numel() == 0:
        return float("nan")
    v = values.double().sort().values
    k = v.numel()
    if k % 2:
        return float(v[k // 2])
    lo, hi = float(v[k // 2 - 1]), float(v[k // 2])
    return hi if math.isinf(hi) else (lo + hi) / 2


def measure(
    spec: Spec,
    library: str,
    ctx: Context,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_correct: torch.Tensor,
    warmup: int,
) -> dict[str, Any]:
    """Run one library's attack on ``x`` in batches; check and score its outputs."""
    settings, factory = spec.libraries[library]
    record: dict[str, Any] = {"library": library, "settings": settings, "n": int(x.shape[0])}
    try:
        runner = factory(ctx)
        torch.manual_seed(0)
        np.random.seed(0)
        runner(x[:warmup].clone(), y[:warmup].clone())  # warm-up, not timed
        torch.manual_seed(0)
        np.random.seed(0)
        parts = []
        verdict_seconds = 0.0
        started = time.perf_counter()
        for i in range(0, x.shape[0], ctx.batch_size):
            out = runner(x[i : i + ctx.batch_size].clone(), y[i : i + ctx.batch_size].clone())
            out = torch.as_tensor(out).detach().to(torch.float32).cpu()
            if library != "advml":  # the verdict advml's result already holds
                checked = time.perf_counter()
                with torch.no_grad():
                    ctx.model(out.reshape(-1, *ctx.input_shape)).argmax(1)
                verdict_seconds += time.perf_counter() - checked
            parts.append(out)
        seconds = time.perf_counter() - started
        attack_seconds = seconds - verdict_seconds
        if ctx.timing == "attack":
            seconds = attack_seconds
    except Exception as error:
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()
        return record
    x_adv = torch.cat(parts).reshape(x.shape)
    inside = spec.threat.contains(x_adv, x)
    with torch.no_grad():
        still_correct = common.predict(ctx.model, x_adv).argmax(1) == y
    fooled = clean_correct & ~still_correct & inside
    robust = clean_correct & ~fooled
    record.update(
        seconds=seconds,
        attack_seconds=attack_seconds,
        images_per_second=x.shape[0] / seconds,
        outside_threat=int((~inside).sum()),
        clean_accuracy=float(clean_correct.float().mean()),
        robust_accuracy=float(robust.float().mean()),
        success_rate=float(fooled.sum() / clean_correct.sum().clamp_min(1)),
    )
    if spec.minimum_norm:
        dist = (x_adv - x).flatten(1).norm(dim=1)
        dist = torch.where(fooled, dist, torch.full_like(dist, math.inf))[clean_correct]
        record["median_l2"] = median(dist)
        found = dist[torch.isfinite(dist)]
        record["mean_l2_of_successes"] = float(found.mean()) if found.numel() else None
    record["trusted"] = record["outside_threat"] == 0
    return record


def value_of(record: dict[str, Any] | None, minimum_norm: bool) -> float | None:
    if not record or "error" in record or "seconds" not in record:
        return None
    return record["median_l2"] if minimum_norm else record["robust_accuracy"]


def cell(record: dict[str, Any] | None, minimum_norm: bool) -> str:
    if record is None:
        return "—"
    if "skipped" in record:
        return record["skipped"]
    if "error" in record:
        return "error"
    value = value_of(record, minimum_norm)
    if minimum_norm:
        text = "∞" if math.isinf(value) else f"{value:.3f}"
        text += f" ({100 * record['success_rate']:.0f} %)"
    else:
        text = common.percent(value)
    mark = "" if record["trusted"] else f" †{record['outside_threat']}"
    return f"{text}{mark} · {common.rate(record['images_per_second'])}/s"


def evaluate_targets(spec: Spec, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for one attack: accuracy ≤ every trusted peer, speed ≥ fastest."""
    mine = results.get("advml")
    out: dict[str, Any] = {"accuracy": None, "speed": None, "ratio": None}
    if value_of(mine, spec.minimum_norm) is None:
        return out
    peers = {
        lib: r
        for lib, r in results.items()
        if lib != "advml" and value_of(r, spec.minimum_norm) is not None
    }
    if not peers:
        return out
    trusted = [value_of(r, spec.minimum_norm) for r in peers.values() if r["trusted"]]
    mine_value = value_of(mine, spec.minimum_norm)
    out["accuracy"] = all(mine_value <= v for v in trusted) if trusted else None
    fastest_lib = max(peers, key=lambda lib: peers[lib]["images_per_second"])
    out["fastest_peer"] = fastest_lib
    out["ratio"] = mine["images_per_second"] / peers[fastest_lib]["images_per_second"]
    # budgets that differ (each library's defaults) say nothing about speed
    out["speed"] = out["ratio"] >= 1.0 if spec.matched else None
    if spec.key == "pgd" and "torchattacks" in peers:
        ratio = mine["images_per_second"] / peers["torchattacks"]["images_per_second"]
        out["ratio_vs_torchattacks"] = ratio
        out["pgd_2x_torchattacks"] = ratio >= 2.0
    return out


def mark(flag: bool | None, absent: str = "—") -> str:
    return absent if flag is None else ("met" if flag else "**missed**")


# --------------------------------------------------------------------------- main


def repeats(args: argparse.Namespace, name: str) -> int:
    """Timed repetitions of one attack (``--repeats fgsm=5``; default 1)."""
    own = {}
    for item in filter(None, (s.strip() for s in args.repeats.split(","))):
        key, _, value = item.partition("=")
        own[key.strip()] = max(1, int(value))
    return own.get(name, 1)


def subset(args: argparse.Namespace, name: str) -> int:
    """Images for one attack: its own ``--<attack>-n`` if given, else ``--n``."""
    own = {
        "square": args.square_n,
        "cw": args.cw_n,
        "cw-matched": args.cw_matched_n,
        "deepfool": args.deepfool_n,
    }
    for item in filter(None, (s.strip() for s in args.attack_n.split(","))):
        key, _, value = item.partition("=")
        own[key.strip()] = int(value)
    n = own.get(name)
    return min(n, args.n) if n else args.n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--batch-size", type=int, default=250, help="batch size for all")
    parser.add_argument(
        "--attacks", default=",".join(ATTACKS), help=f"comma list from {', '.join(ATTACKS)}"
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma list from torchattacks, art, foolbox"
    )
    parser.add_argument("--data-dir", default=None, help="data root (default: $ADVML_DATA)")
    parser.add_argument("--dataset", default="mnist", help="dataset (default mnist)")
    parser.add_argument("--arch", default="cnn-small", help="architecture (default cnn-small)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    parser.add_argument("--n-train", type=int, default=None, help="training samples (all)")
    parser.add_argument("--cache", default=None, help="model cache (default benchmarks/.cache)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--square-n", type=int, default=None, help="images for Square (default: --n)"
    )
    parser.add_argument(
        "--square-queries", type=int, default=5000, help="Square's query budget (5000)"
    )
    parser.add_argument(
        "--cw-n", type=int, default=None, help="images for CW with defaults (default: --n)"
    )
    parser.add_argument(
        "--cw-matched-n", type=int, default=None, help="images for matched CW (default: --n)"
    )
    parser.add_argument(
        "--deepfool-n", type=int, default=None, help="images for DeepFool (default: --n)"
    )
    parser.add_argument(
        "--cw-binary-steps", type=int, default=CW_BINARY, help="matched CW: binary steps (5)"
    )
    parser.add_argument(
        "--cw-steps", type=int, default=CW_STEPS, help="matched CW: steps per binary step (100)"
    )
    parser.add_argument(
        "--attack-n",
        default="",
        help="images per attack, e.g. apgd-ce=200,deepfool=100 (default: --n for all)",
    )
    parser.add_argument(
        "--repeats",
        default="",
        help="timed repetitions per attack, e.g. fgsm=7 (libraries interleaved; the fastest "
        "run counts, timeit's convention: other load only adds time; default 1)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="library:attack pairs not to run, e.g. foolbox:cw (printed as 'skipped')",
    )
    parser.add_argument("--warmup", type=int, default=8, help="warm-up batch size (8)")
    parser.add_argument(
        "--timing",
        choices=("verdict", "attack"),
        default="verdict",
        help="verdict: peers' timing includes the forward pass that tells which samples "
        "they broke (advml's result has it); attack: the peers' calls alone",
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(names) - set(ATTACKS))
    if unknown:
        raise SystemExit(f"unknown attack(s) {', '.join(unknown)}; choose from {ATTACKS}")
    peers = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    bad = sorted(set(peers) - set(PEERS))
    if bad:
        raise SystemExit(f"unknown peer(s) {', '.join(bad)}; choose from {PEERS}")
    skip = {tuple(s.split(":", 1)) for s in args.skip.split(",") if ":" in s}
    info = common.machine()
    print(f"# advml vs peers: {common.describe_machine(info)}", flush=True)
    model, card = common.trained_model(
        args.dataset,
        args.arch,
        args.epochs,
        n_train=args.n_train,
        data_dir=args.data_dir,
        cache=args.cache,
    )
    x, y = common.load_split(args.dataset, "test", args.n, args.data_dir)
    clean_correct = common.predict(model, x).argmax(1) == y
    print(
        f"model {args.arch} ({args.epochs} epoch, standard, test accuracy "
        f"{card.get('metrics', {}).get('test_acc', float('nan')):.2%}); {len(x)} test images, "
        f"clean accuracy {clean_correct.float().mean():.2%}; batch size {args.batch_size}",
        flush=True,
    )
    versions = {"advml": __import__("advml").__version__}
    missing = {}
    for lib in peers:
        reason = available(lib)
        if reason:
            missing[lib] = reason
            print(f"  {lib}: not available ({reason})")
        else:
            module = __import__({"art": "art"}.get(lib, lib))
            versions[lib] = getattr(module, "__version__", "?")
    libraries = ["advml"] + [p for p in peers if p not in missing]
    ctx = Context(
        model,
        tuple(x.shape[1:]),
        int(card.get("num_classes", 10)),
        args.batch_size,
        args.square_queries,
        args.timing,
    )
    table = specs(args.square_queries, args.cw_binary_steps, args.cw_steps)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    targets: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = table[name]
        n = subset(args, name)
        xs, ys, cc = x[:n], y[:n], clean_correct[:n]
        results[name] = {}
        for lib in libraries:
            if lib not in spec.libraries:
                continue
            if (lib, name) in skip:
                results[name][lib] = {"skipped": "not run ‡", "settings": spec.libraries[lib][0]}
                continue
            results[name][lib] = measure(spec, lib, ctx, xs, ys, cc, args.warmup)
        for _ in range(repeats(args, name) - 1):  # interleaved, so load drift hits all alike
            for lib, record in results[name].items():
                if "seconds" in record:
                    again = measure(spec, lib, ctx, xs, ys, cc, args.warmup)
                    record.setdefault("repeat_seconds", [record["seconds"]])
                    record["repeat_seconds"].append(again.get("seconds", math.inf))
        for lib, record in results[name].items():
            if "repeat_seconds" in record:
                record["seconds"] = min(record["repeat_seconds"])
                record["images_per_second"] = n / record["seconds"]
            if "skipped" in record:
                continue
            if "error" in record:
                print(f"  {name:10s} {lib:12s} ERROR {record['error']}", flush=True)
            else:
                print(
                    f"  {name:10s} {lib:12s} {cell(record, spec.minimum_norm):>28s}  "
                    f"({record['seconds']:.1f} s, n={n})",
                    flush=True,
                )
        targets[name] = evaluate_targets(spec, results[name])
    info["load_average_end"] = [round(v, 2) for v in common.load_average()]

    headers = ["attack", "n", "metric"] + [TITLES[lib] for lib in LIBRARIES]
    headers += ["advml / fastest peer", "accuracy target", "speed target"]
    rows = []
    for name in names:
        spec = table[name]
        t = targets[name]
        n = subset(args, name)
        metric = "median L2 (success)" if spec.minimum_norm else "robust acc."
        cells = []
        for lib in LIBRARIES:
            if lib not in spec.libraries:
                cells.append("—")
            elif lib in missing or lib not in libraries:
                cells.append("n/a")
            else:
                cells.append(cell(results[name].get(lib), spec.minimum_norm))
        ratio = "—" if t["ratio"] is None else f"{t['ratio']:.2f}× ({TITLES[t['fastest_peer']]})"
        speed = mark(t["speed"], "— (budgets differ)" if not spec.matched else "—")
        if "pgd_2x_torchattacks" in t:
            speed += f"; {t['ratio_vs_torchattacks']:.2f}× torchattacks: "
            speed += mark(t["pgd_2x_torchattacks"])
        rows.append([spec.title, n, metric, *cells, ratio, mark(t["accuracy"]), speed])
    text = common.markdown_table(headers, rows, ["l", "r", "l"] + ["r"] * 5 + ["l", "l"])
    print()
    print(text)
    print()
    print(
        "Cells: robust accuracy (clean-correct and still correct after the attack, re-checked "
        "here) or median L2 distance over clean-correct images (failures count as ∞; success "
        "rate in brackets), then images per second. † k: k outputs left the threat model "
        "(ball ∩ box), counted as not attacked; such a cell is not trusted. '—': the library "
        "has no such attack. Targets: advml's accuracy / median L2 ≤ every trusted peer's; "
        "advml's images/s ≥ the fastest peer's (PGD: ≥ 2× torchattacks)."
    )
    if args.timing == "verdict":
        print(
            "Timing to the verdict: each peer's time includes one forward pass on its output "
            "(which samples it broke, as advml's result holds); `--timing attack` leaves it out."
        )
    if skip:
        pairs = ", ".join(f"{TITLES.get(lib, lib)} {name}" for lib, name in sorted(skip))
        print(f"‡ not run (--skip): {pairs}.")
    print(f"Machine: {common.describe_machine(info)}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("\nSettings:")
    for name in names:
        spec = table[name]
        print(f"- {spec.title}:")
        for lib, (settings, _) in spec.libraries.items():
            print(f"  - {TITLES[lib]}: {settings}")
    payload = {
        "machine": info,
        "versions": versions,
        "missing": missing,
        "args": vars(args),
        "model": card,
        "clean_accuracy": float(clean_correct.float().mean()),
        "results": results,
        "targets": targets,
        "table": text,
    }
    for per_attack in results.values():
        for record in per_attack.values():
            record.pop("traceback", None) if "error" not in record else None
    if args.out:
        common.write_json(args.out, payload)
        print(f"\nwrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
