"""Diagnostics: signs that an attack ensemble under-estimates the worst case.

A robustness number is only as good as the attacks behind it. These checks look for the
symptoms listed by Carlini et al. 2019 ("On Evaluating Adversarial Robustness", §5 and the
checklist), Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False Sense of
Security") and AutoAttack's ``checks.py`` (Croce & Hein 2020):

==========================  ==========================================================
flag                        raised when
==========================  ==========================================================
``probability_outputs``     every probed output row is non-negative and sums to 1
``randomized_outputs``      identical queries give different outputs or predictions
``nonfinite_gradients``     NaN or inf in the input gradient (or in the outputs)
``zero_gradients``          the input gradient of the logit margin is exactly zero
``saturated_cross_entropy`` the cross-entropy gradient is exactly zero while the margin's
                            is not (logits so large that the softmax saturates)
``exploding_gradients``     gradients far larger than the function they differentiate
``not_differentiable``      the output does not depend differentiably on the input
``single_step_stronger``    a one-step attack breaks samples an iterative attack failed on
``black_box_stronger``      a gradient-free attack breaks samples white-box attacks failed on
``unbounded_budget``        samples survive every attack with the whole input box as budget
``attack_error``            an attack stopped with an error on this model
==========================  ==========================================================

Each :class:`Flag` carries its evidence (numbers) and what to do about it. The probes run on
a fixed, evenly spaced subset of the samples, so their evidence does not depend on batching or
on how samples are sharded across processes: every statistic is a count, a maximum or a list
of per-sample values, merged with :meth:`ProbeStats.merge`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from advml.attacks.rng import KeyedRNG

__all__ = ["SEVERITIES", "Flag", "ProbeStats", "probe_flags", "probe_model"]

#: Severity levels, most severe first. ``critical``: the reported robustness is likely too
#: high unless acted upon; ``warning``: worth a look; ``info``: context.
SEVERITIES = ("critical", "warning", "info")

#: Relative change of the normalized logits between identical queries taken as randomness
#: (AutoAttack's threshold).
RANDOMNESS_TOL = 1e-4
#: A probability row: entries in [-tol, 1 + tol] that sum to 1 within tol.
PROBABILITY_TOL = 1e-4


@dataclasses.dataclass(frozen=True)
class Flag:
    """One diagnostic finding.

    Attributes:
        name: the check, e.g. ``"zero_gradients"``.
        severity: ``"critical"``, ``"warning"`` or ``"info"``.
        message: what was seen, in one or two sentences.
        evidence: the numbers behind it (counts, fractions, magnitudes).
        action: what to do about it ("add EOT", "attack the logits", ...).
        eps: the budget it was seen at, where it depends on one.
    """

    name: str
    severity: str
    message: str
    evidence: dict[str, Any]
    action: str
    eps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = f" (ε = {self.eps:g})" if self.eps is not None else ""
        return f"[{self.severity}] {self.name}{where}: {self.message} → {self.action}"


@dataclasses.dataclass
class ProbeStats:
    """Counts and magnitudes measured by :func:`probe_model` (mergeable across shards)."""

    n: int = 0
    probability_rows: int = 0
    changed_predictions: int = 0
    max_output_change: float = 0.0
    nonfinite_outputs: int = 0
    zero_ce_gradient: int = 0
    zero_margin_gradient: int = 0
    nonfinite_gradient: int = 0
    exploding_gradient: int = 0
    max_abs_gradient: float = 0.0
    abs_margins: list[float] = dataclasses.field(default_factory=list)
    not_differentiable: str = ""

    def merge(self, other: ProbeStats) -> ProbeStats:
        return ProbeStats(
            n=self.n + other.n,
            probability_rows=self.probability_rows + other.probability_rows,
            changed_predictions=self.changed_predictions + other.changed_predictions,
            max_output_change=max(self.max_output_change, other.max_output_change),
            nonfinite_outputs=self.nonfinite_outputs + other.nonfinite_outputs,
            zero_ce_gradient=self.zero_ce_gradient + other.zero_ce_gradient,
            zero_margin_gradient=self.zero_margin_gradient + other.zero_margin_gradient,
            nonfinite_gradient=self.nonfinite_gradient + other.nonfinite_gradient,
            exploding_gradient=self.exploding_gradient + other.exploding_gradient,
            max_abs_gradient=max(self.max_abs_gradient, other.max_abs_gradient),
            abs_margins=self.abs_margins + other.abs_margins,
            not_differentiable=self.not_differentiable or other.not_differentiable,
        )

    @property
    def randomized(self) -> bool:
        return self.changed_predictions > 0 or self.max_output_change > RANDOMNESS_TOL

    @property
    def probabilities(self) -> bool:
        return self.n > 0 and self.probability_rows == self.n

    @property
    def gradients_masked(self) -> bool:
        """Gradient attacks cannot be trusted: zero, non-finite or absent gradients."""
        return bool(self.zero_margin_gradient or self.nonfinite_gradient or self.not_differentiable)

    @property
    def cross_entropy_saturated(self) -> bool:
        return self.zero_ce_gradient > self.zero_margin_gradient


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    own = logits.gather(1, y.reshape(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.reshape(-1, 1), float("-inf")).amax(dim=1)
    return others - own


def _per_sample_abs_sum(t: Tensor) -> Tensor:
    return t.detach().reshape(t.shape[0], -1).abs().sum(dim=1)


def probe_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    start_eps: float,
    threat: str,
    seed: int,
    repeats: int = 4,
) -> ProbeStats:
    """Measure output type, randomness and input gradients of ``model`` on ``(x, y)``.

    Gradients of the cross-entropy and of the logit margin are taken at ``x`` and at a random
    point of the ``threat`` ball of radius ``start_eps`` (keyed per sample by ``seed``, as
    AutoAttack checks at APGD's random start). The model is put in eval mode and restored.
    """
    from advml.attacks.base import frozen_eval
    from advml.threats import make as make_threat

    stats = ProbeStats(n=int(x.shape[0]))
    if stats.n == 0:
        return stats
    with frozen_eval(model), torch.no_grad():
        first = model(x)
        outputs = [first] + [model(x) for _ in range(repeats - 1)]
    finite = torch.isfinite(first).all(dim=1)
    stats.nonfinite_outputs = int((~finite).sum())
    rows = (
        (first >= -PROBABILITY_TOL).all(dim=1)
        & (first <= 1 + PROBABILITY_TOL).all(dim=1)
        & ((first.sum(dim=1) - 1).abs() <= PROBABILITY_TOL)
    )
    stats.probability_rows = int(rows.sum())
    pred = first.argmax(dim=1)
    changed = torch.zeros_like(pred, dtype=torch.bool)
    unit = first / first.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for other in outputs[1:]:
        changed |= other.argmax(dim=1) != pred
        other_unit = other / other.norm(dim=1, keepdim=True).clamp_min(1e-12)
        diff = (unit - other_unit).norm(dim=1)
        diff = diff[torch.isfinite(diff)]
        if diff.numel():
            stats.max_output_change = max(stats.max_output_change, float(diff.max()))
    stats.changed_predictions = int(changed.sum())
    stats.abs_margins = [float(v) for v in _margin(first, y).abs().tolist()]

    threat_model = make_threat(threat, start_eps) if start_eps > 0 else None
    points = [x]
    if threat_model is not None:
        points.append(threat_model.random_start(x, KeyedRNG.for_inputs(x, seed)))
    zero_ce = torch.zeros(stats.n, dtype=torch.bool, device=x.device)
    zero_margin = torch.zeros_like(zero_ce)
    nonfinite = torch.zeros_like(zero_ce)
    exploding = torch.zeros_like(zero_ce)
    with frozen_eval(model), torch.enable_grad():
        for point in points:
            xr = point.detach().clone().requires_grad_(True)
            logits = model(xr)
            if not isinstance(logits, Tensor) or not logits.requires_grad:
                stats.not_differentiable = (
                    "the model's output does not depend differentiably on its input"
                )
                return stats
            ce = nn.functional.cross_entropy(logits.float(), y, reduction="none")
            margin = _margin(logits.float(), y)
            (g_ce,) = torch.autograd.grad(ce.sum(), xr, retain_graph=True, allow_unused=True)
            (g_m,) = torch.autograd.grad(margin.sum(), xr, allow_unused=True)
            g_ce = torch.zeros_like(xr) if g_ce is None else g_ce
            g_m = torch.zeros_like(xr) if g_m is None else g_m
            ce_norm, m_norm = _per_sample_abs_sum(g_ce), _per_sample_abs_sum(g_m)
            bad = ~(torch.isfinite(ce_norm) & torch.isfinite(m_norm))
            nonfinite |= bad
            zero_ce |= (ce_norm == 0) & ~bad
            zero_margin |= (m_norm == 0) & ~bad
            good = ~bad
            if good.any():
                ce_max = g_ce.detach().reshape(stats.n, -1).abs().amax(dim=1)
                m_max = g_m.detach().reshape(stats.n, -1).abs().amax(dim=1)
                stats.max_abs_gradient = max(
                    stats.max_abs_gradient, float(torch.maximum(ce_max, m_max)[good].max())
                )
                # linearized distance to the boundary |m| / ||grad m||_1 (the L∞ step that
                # would flip the margin's sign were the model linear): an honest model needs a
                # visible fraction of the input range, not 1e-7 of it
                distance = margin.detach().abs() / m_norm.clamp_min(1e-30)
                exploding |= good & (m_norm > 0) & ((distance < 1e-7) | (m_max > 1e10))
    stats.zero_ce_gradient = int(zero_ce.sum())
    stats.zero_margin_gradient = int(zero_margin.sum())
    stats.nonfinite_gradient = int(nonfinite.sum())
    stats.exploding_gradient = int(exploding.sum())
    return stats


def _fraction(count: int, n: int) -> float:
    return count / n if n else 0.0


def probe_flags(
    stats: ProbeStats, *, threat: str, adaptive: bool, added: dict[str, str]
) -> list[Flag]:
    """Flags from the model probes. ``added`` maps a flag name to what the evaluation did about
    it automatically (an attack added, the attack model changed), for the message."""
    flags: list[Flag] = []
    n = stats.n

    def done(name: str) -> str:
        return f" advml {added[name]}." if name in added else ""

    if stats.probabilities:
        flags.append(
            Flag(
                "probability_outputs",
                "critical",
                "the model's outputs look like probabilities (non-negative rows summing to 1), "
                "not logits: the softmax saturates and gradient attacks lose their signal."
                + done("probability_outputs"),
                {"rows_checked": n, "probability_rows": stats.probability_rows},
                "attack the logits: return the pre-softmax outputs from the model (advml "
                "compares predictions, so the argmax is all it needs)",
            )
        )
    if stats.randomized:
        flags.append(
            Flag(
                "randomized_outputs",
                "critical",
                f"identical queries gave different outputs ({stats.changed_predictions} of {n} "
                "predictions changed): attacks follow noisy gradients and a single query "
                "decides each verdict." + done("randomized_outputs"),
                {
                    "samples": n,
                    "changed_predictions": stats.changed_predictions,
                    "max_normalized_output_change": stats.max_output_change,
                },
                "add EOT (attacks='thorough' or the 'eot' attack), average the model over its "
                "randomness, and report the expected accuracy",
            )
        )
    if stats.nonfinite_outputs:
        flags.append(
            Flag(
                "nonfinite_outputs",
                "critical",
                f"the model returned NaN/inf outputs for {stats.nonfinite_outputs} of {n} "
                "probed inputs.",
                {"samples": n, "nonfinite": stats.nonfinite_outputs},
                "fix the model's numerics before evaluating it",
            )
        )
    if stats.not_differentiable:
        flags.append(
            Flag(
                "not_differentiable",
                "critical",
                f"{stats.not_differentiable}: white-box attacks cannot run."
                + done("gradients_masked"),
                {"samples": n},
                "use a gradient-free attack (square), or BPDA: a differentiable stand-in "
                "for the non-differentiable part on the backward pass",
            )
        )
    if stats.nonfinite_gradient:
        flags.append(
            Flag(
                "nonfinite_gradients",
                "critical",
                f"the input gradient has NaN/inf entries for {stats.nonfinite_gradient} of {n} "
                "probed samples: gradient attacks stall or stop." + done("gradients_masked"),
                {"samples": n, "nonfinite": stats.nonfinite_gradient},
                "look for numerically unstable operations (log, sqrt, division near 0); use a "
                "gradient-free attack (square)",
            )
        )
    if stats.zero_margin_gradient:
        fraction = _fraction(stats.zero_margin_gradient, n)
        flags.append(
            Flag(
                "zero_gradients",
                "critical" if fraction >= 0.01 else "warning",
                f"the input gradient of the logit margin is exactly zero for "
                f"{stats.zero_margin_gradient} of {n} probed samples (at the input or at a "
                "random start): the gradient is masked (e.g. input quantization, "
                "thresholding) and gradient attacks cannot move." + done("gradients_masked"),
                {"samples": n, "zero_gradient": stats.zero_margin_gradient, "fraction": fraction},
                "use a gradient-free attack (square), or BPDA for the non-differentiable "
                "layer (e.g. identity on the backward pass of a quantizer)",
            )
        )
    saturated = stats.zero_ce_gradient - stats.zero_margin_gradient
    if saturated > 0:
        margins = sorted(stats.abs_margins)
        median = margins[len(margins) // 2] if margins else float("nan")
        fraction = _fraction(saturated, n)
        flags.append(
            Flag(
                "saturated_cross_entropy",
                "critical" if fraction >= 0.01 else "warning",
                f"the cross-entropy gradient is exactly zero for {saturated} of {n} probed "
                f"samples whose margin gradient is not (median |logit margin| {median:.3g}): "
                "the logits are so large that the softmax saturates in floating point and "
                "CE-based attacks (FGSM, PGD, APGD-CE) get no signal." + done("saturated"),
                {
                    "samples": n,
                    "zero_ce_gradient": stats.zero_ce_gradient,
                    "median_abs_margin": median,
                },
                "attack a scale-invariant loss: margin or DLR (apgd-t, apgd-dlr; in the "
                "fast/standard presets), or divide the logits by a temperature for attacks",
            )
        )
    if stats.exploding_gradient:
        flags.append(
            Flag(
                "exploding_gradients",
                "warning",
                f"input gradients are far larger than the function they differentiate for "
                f"{stats.exploding_gradient} of {n} probed samples (largest |gradient| "
                f"{stats.max_abs_gradient:.3g}): a sign of numerically unstable or "
                "deliberately obfuscated gradients.",
                {
                    "samples": n,
                    "exploding": stats.exploding_gradient,
                    "max_abs_gradient": stats.max_abs_gradient,
                },
                "check the backward pass for unstable operations; confirm with a "
                "gradient-free attack (square)",
            )
        )
    return flags


def single_step_flag(
    eps: float, n: int, label: str, alone: int, first_iterative: int | None, new: int
) -> Flag | None:
    """``alone``: samples the single-step attack broke on its own; ``first_iterative``:
    samples broken once the first iterative gradient attack had run (``None``: there is none);
    ``new``: samples only the single-step attack broke (every other attack failed on them)."""
    weaker = first_iterative is not None and alone > first_iterative
    if not weaker and new <= 0:
        return None
    if weaker:
        message = (
            f"a single-step attack ({label}) alone broke {alone} samples, more than the "
            f"{first_iterative} broken once the first iterative attack had run; iterative "
            "attacks should be strictly stronger."
        )
    else:
        message = f"a single-step attack ({label}) broke {new} sample(s) every other attack missed."
    if new:
        message += f" Those {new} sample(s) now count as broken."
    fraction = new / n if n else 0.0
    return Flag(
        "single_step_stronger",
        "critical" if weaker or fraction > 0.01 else "warning",
        message,
        {
            "broken_by_single_step_alone": alone,
            "broken_after_first_iterative_attack": first_iterative,
            "broken_only_by_single_step": new,
        },
        "the iterative attack is failing (gradient masking, too small a step, a bug): "
        "check its step size and iterations, add restarts or a gradient-free attack (square)",
        eps,
    )


def black_box_flag(eps: float, extra: int, n: int, labels: list[str]) -> Flag | None:
    fraction = _fraction(extra, n)
    if fraction <= 0.002:  # AutoAttack's tolerance
        return None
    return Flag(
        "black_box_stronger",
        "critical" if fraction > 0.01 else "warning",
        f"gradient-free attacks ({', '.join(labels)}) broke {extra} sample(s) "
        f"({100 * fraction:.2f} % of all) that every white-box attack had failed on: the "
        "gradients are unreliable.",
        {"samples_broken_only_by_black_box": extra, "fraction_of_samples": fraction},
        "do not trust white-box-only numbers for this model: keep the gradient-free attack, "
        "give it more queries and restarts, or design an adaptive attack",
        eps,
    )


def unbounded_flag(
    eps_max: float, probed: int, survivors: int, predicted_classes: int, *, done: str = ""
) -> Flag | None:
    if survivors <= 0:
        return None
    trivial = (
        f" The model predicts {predicted_classes} different classes on the evaluation set, so "
        "replacing a sample by another one it labels differently is an admissible attack "
        "at this budget."
        if predicted_classes > 1
        else ""
    )
    return Flag(
        "unbounded_budget",
        "critical",
        f"{survivors} of {probed} probed samples survived every attack at ε = {eps_max:g}, "
        f"where the whole input box is allowed; accuracy must fall to zero as ε grows.{trivial}"
        + (f" advml {done}." if done else ""),
        {"eps": eps_max, "probed": probed, "survivors": survivors},
        "the attacks are failing, not the model resisting: look for gradient masking, use a "
        "gradient-free attack (square) and EOT/BPDA where the model needs them",
        eps_max,
    )


def combine(flags: list[Flag]) -> list[Flag]:
    """One flag per name: a check that fired at several budgets is reported once, at the
    budget with the strongest evidence, with every budget it fired at in its evidence."""
    out: list[Flag] = []
    groups: dict[str, list[Flag]] = {}
    for flag in flags:
        if flag.eps is None or flag.name == "unbounded_budget":
            out.append(flag)
        else:
            groups.setdefault(flag.name, []).append(flag)
    order = {level: i for i, level in enumerate(SEVERITIES)}
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue

        def strength(flag: Flag) -> float:
            numbers = [v for v in flag.evidence.values() if isinstance(v, (int, float))]
            return max(numbers, default=0)

        worst = max(group, key=strength)
        severity = min((f.severity for f in group), key=lambda s: order.get(s, len(order)))
        seen = ", ".join(f"{f.eps:g}" for f in group)
        out.append(
            dataclasses.replace(
                worst,
                severity=severity,
                message=f"{worst.message} (Seen at ε = {seen}; shown at ε = {worst.eps:g}.)",
                evidence={**worst.evidence, "seen_at_eps": [f.eps for f in group]},
            )
        )
    return out


def attack_error_flag(label: str, message: str) -> Flag:
    return Flag(
        "attack_error",
        "critical",
        f"{label} stopped with an error and broke nothing after it: {message}",
        {},
        "fix what the message names (often the model's outputs or gradients), or rely on "
        "a gradient-free attack",
    )


def unbounded_eps(threat: str, x: Tensor, low: float = 0.0, high: float = 1.0) -> float:
    """A budget under which the ball contains the whole box ``[low, high]^D``."""
    span = high - low
    d = math.prod(x.shape[1:])
    return {"linf": span, "l2": span * math.sqrt(d), "l1": span * d}[threat]
