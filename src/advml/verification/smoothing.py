r"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019, "Certified Adversarial Robustness via
Randomized Smoothing", ICML).

A base classifier ``f`` (any ``nn.Module`` returning logits; its class is the argmax) defines the
*smoothed* classifier

.. math::  g(x) = \arg\max_c \; P\big(f(x + \delta) = c\big),
    \qquad \delta \sim \mathcal{N}(0, \sigma^2 I).

**Theorem 1** (with :math:`p_B = 1 - p_A`): if :math:`P(f(x+\delta) = c_A) \ge \underline{p_A}
> 1/2`, then :math:`g(x + \epsilon) = c_A` for every :math:`\|\epsilon\|_2 < R` with

.. math::  R = \sigma\, \Phi^{-1}(\underline{p_A}),

:math:`\Phi^{-1}` the standard normal quantile function.

Algorithms (Cohen et al., section 3.2), both Monte Carlo:

* :func:`predict` (PREDICT): count the classes of ``f`` on ``n`` noisy copies; with the top two
  counts :math:`n_A \ge n_B`, return :math:`c_A` if the two-sided binomial test of
  :math:`n_A` successes in :math:`n_A + n_B` trials at :math:`p = 1/2` has p-value
  :math:`\le \alpha`, else abstain (``-1``). It returns a class other than :math:`g(x)` with
  probability at most :math:`\alpha` (Cohen et al., Theorem 2).
* :func:`certify` (CERTIFY): pick :math:`\hat c_A` = the most frequent class on ``n0`` noisy
  copies, count it on ``n`` *fresh* copies (:math:`k` hits), take the one-sided
  :math:`(1 - \alpha)` Clopper–Pearson lower bound
  :math:`\underline{p_A} = \mathrm{Beta}^{-1}(\alpha;\, k,\, n - k + 1)`
  (:func:`clopper_pearson_lower`), and abstain if :math:`\underline{p_A} < 1/2`, else return
  :math:`\hat c_A` with radius :math:`R = \sigma \Phi^{-1}(\underline{p_A})`. With probability
  at least :math:`1 - \alpha` (per sample) a returned certificate is correct
  (Cohen et al., Proposition 2).

:func:`certified_accuracy` gives the fraction of samples classified correctly *and* certified at
radius at least ``r``, for each ``r``.

Noise and reproducibility. The noise is added to the input as is: the input domain is **not**
clipped (as in Cohen et al.; a model that expects inputs in ``[0, 1]`` sees noisy values outside
it, and the certificate holds for the unclipped inputs). Gaussian numbers come from the project's
keyed counter-based RNG (:class:`advml.attacks.rng.KeyedRNG`) through the Box–Muller transform of
53-bit uniforms computed in float64 (tails exact up to about :math:`8.5\sigma`, probability
:math:`10^{-16}` beyond), then cast to the input's dtype. Noise draw ``i`` of a sample depends
only on ``(seed, the sample's contents, the phase, i)``: the phases (PREDICT, CERTIFY's
selection, CERTIFY's estimation) use independent streams, and the results do not depend on
``batch_size``, on the order of the samples, or on which other samples are in the batch.
Identical inputs get identical noise (and identical results).

Batching. The ``N * n`` (sample, draw) pairs are processed in flat slices of ``batch_size``
noisy inputs per forward pass (several samples per pass when ``n < batch_size``, several passes
per sample otherwise) and counted with ``torch.bincount``; there is no Python loop over draws.
The noise of one pass costs a few int64 tensors of ``batch_size * numel(sample)`` elements: lower
``batch_size`` for large inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from advml.attacks.base import ModelOutputError, frozen_eval
from advml.attacks.rng import KeyedRNG
from advml.errors import UserError
from advml.progress import progress_bar

__all__ = [
    "SmoothingResult",
    "certified_accuracy",
    "certify",
    "clopper_pearson_lower",
    "predict",
]

#: Stream numbers of the three phases (independent noise for each).
_STREAM_PREDICT = 0x5A01
_STREAM_SELECT = 0x5A02
_STREAM_ESTIMATE = 0x5A03


@dataclass
class SmoothingResult:
    """What :func:`certify` returns: per-sample tensors on the input's device.

    Attributes:
        prediction: int64 ``(N,)``: the certified class :math:`\\hat c_A`, ``-1`` = abstain.
        radius: float64 ``(N,)``: certified L2 radius :math:`\\sigma\\Phi^{-1}(\\underline{p_A})`
            (``0`` where abstained).
        p_lower: float64 ``(N,)``: one-sided :math:`(1-\\alpha)` Clopper–Pearson lower bound on
            :math:`p_A` from the estimation draws.
        counts: int64 ``(N, num_classes)``: class counts of the ``n`` estimation draws.
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor
    counts: Tensor

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    def __repr__(self) -> str:
        n = len(self)
        certified = int((self.prediction >= 0).sum()) if n else 0
        mean_radius = float(self.radius.mean()) if n else 0.0
        return f"SmoothingResult(n={n}, certified={certified}/{n}, mean_radius={mean_radius:.4g})"


# --------------------------------------------------------------------------------------------
# statistics


def clopper_pearson_lower(k: Tensor | np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """One-sided ``(1 - alpha)`` Clopper–Pearson lower bound on a binomial ``p`` from ``k``/``n``.

    ``Beta^{-1}(alpha; k, n - k + 1)``, and ``0`` for ``k = 0`` (``alpha ** (1 / n)`` for
    ``k = n``): the ``p`` at which ``P(X >= k) = alpha``. Returns float64 numbers, shape of ``k``.
    """
    k_np = np.asarray(k.cpu() if isinstance(k, Tensor) else k, dtype=np.float64)
    with np.errstate(all="ignore"):
        lower = stats.beta.ppf(alpha, k_np, n - k_np + 1)
    return np.where(k_np > 0, lower, 0.0).astype(np.float64)


def _binomial_pvalue(n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Two-sided binomial test p-value of ``n_a`` successes in ``n_a + n_b`` trials at ``p = 1/2``.

    Equal to ``scipy.stats.binomtest(n_a, n_a + n_b, 0.5).pvalue`` (the distribution is
    symmetric, so the test's two tails are ``2 * P(X <= min(n_a, n_b))``), vectorized.
    """
    trials = n_a + n_b
    low = np.minimum(n_a, n_b)
    pvalue = np.minimum(1.0, 2.0 * stats.binom.cdf(low, trials, 0.5))
    return np.where(trials > 0, pvalue, 1.0)


# --------------------------------------------------------------------------------------------
# validation


def _check_inputs(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    alpha: float,
    batch_size: int,
    seed: int,
    num_classes: int | None,
    counts: dict[str, int],
) -> float:
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise UserError(f"x must be a torch.Tensor batch (N, ...); got {type(x).__name__}")
    if x.ndim < 2:
        raise UserError(
            f"x must be a batch of shape (N, ...) with at least 2 dimensions; got shape "
            f"{tuple(x.shape)} (add a batch dimension with x.unsqueeze(0))"
        )
    if not x.is_floating_point():
        raise UserError(f"x must be a floating-point tensor; got dtype {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise UserError("x contains NaN or inf values")
    try:
        sigma = float(sigma)
    except (TypeError, ValueError) as error:
        raise UserError(f"sigma must be a positive number; got {sigma!r}") from error
    if not (math.isfinite(sigma) and sigma > 0):
        raise UserError(f"sigma must be a finite number > 0; got {sigma!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must be a number with 0 < alpha < 1; got {alpha!r}")
    for name, value in {**counts, "batch_size": batch_size}.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name} must be an int >= 1; got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UserError(f"seed must be an int; got {seed!r}")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise UserError(f"num_classes must be an int >= 1 or None; got {num_classes!r}")
    return sigma


# --------------------------------------------------------------------------------------------
# noise and counting


def _gaussian(rng: KeyedRNG, sid: Tensor, draw: Tensor, numel: int, device: torch.device) -> Tensor:
    """Standard normal noise ``(len(sid), numel)``, float64: row ``r`` is draw ``draw[r]`` of
    sample ``sid[r]``.

    Each (sample, draw) pair is a fresh keyed source (a "restart" of the sample's row), so the
    numbers depend on the pair only, never on the batch. Box–Muller uses both the cosine and the
    sine: ``ceil(numel / 2)`` pairs of uniforms per draw.
    """
    half = (numel + 1) // 2
    u = rng.rows(sid, restart=draw).uniform(
        (sid.shape[0], 2 * half), dtype=torch.float64, device=device
    )
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, :half]))
    angle = (2.0 * math.pi) * u[:, half:]
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :numel]


def _count(
    model: nn.Module,
    x: Tensor,
    rng: KeyedRNG,
    sigma: float,
    n: int,
    batch_size: int,
    num_classes: int | None,
    bar: Any = None,
) -> Tensor:
    """Class counts ``(N, C)`` of ``f(x_j + sigma * noise_ji)`` over draws ``i < n``, int64."""
    device = x.device
    size = x.shape[0]
    numel = math.prod(x.shape[1:])
    flat = x.reshape(size, numel)
    counts: Tensor | None = None
    if num_classes is not None:
        counts = torch.zeros(size, num_classes, dtype=torch.int64, device=device)
    total = size * n
    for start in range(0, total, batch_size):
        index = torch.arange(start, min(start + batch_size, total), device=device)
        sid = torch.div(index, n, rounding_mode="floor")
        draw = index - sid * n
        noise = _gaussian(rng, sid, draw, numel, device).to(x.dtype)
        noisy = (flat[sid] + sigma * noise).reshape((index.shape[0], *x.shape[1:]))
        logits = model(noisy)
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != len(index):
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ModelOutputError(
                f"model must return logits of shape ({len(index)}, num_classes) for a batch of "
                f"{len(index)} inputs; got {shape}"
            )
        if counts is None:
            counts = torch.zeros(size, logits.shape[1], dtype=torch.int64, device=device)
        elif logits.shape[1] > counts.shape[1]:
            raise UserError(
                f"num_classes={counts.shape[1]} but the model returns {logits.shape[1]} logits; "
                "pass num_classes >= the number of logits (or None)"
            )
        classes = counts.shape[1]
        first = int(sid[0])
        local = (sid - first) * classes + logits.argmax(dim=1).to(device)
        rows = int(sid[-1]) - first + 1
        counts[first : first + rows] += torch.bincount(local, minlength=rows * classes).reshape(
            rows, classes
        )
        if bar is not None:
            bar.update(int(index.shape[0]))
    if counts is None:  # empty batch, classes unknown
        counts = torch.zeros(size, 0, dtype=torch.int64, device=device)
    return counts


# --------------------------------------------------------------------------------------------
# public API


def predict(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    *,
    n: int = 100,
    alpha: float = 0.001,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
) -> Tensor:
    """PREDICT (Cohen et al. 2019): the smoothed classifier's class, or ``-1`` (abstain).

    Args:
        model: base classifier returning logits ``(B, C)``; run in eval mode under
            ``torch.no_grad`` (its modes and ``requires_grad`` flags are restored after).
        x: a batch ``(N, ...)``; noise is added without clipping.
        sigma: standard deviation of the Gaussian noise (> 0).
        n: noise draws per sample.
        alpha: the test's level: a class other than ``g(x)`` is returned with probability
            at most ``alpha``.
        batch_size: noisy inputs per forward pass (does not change the result).
        seed: seed of the keyed noise (see the module docstring).
        num_classes: number of classes (default: the number of logits).

    Returns:
        int64 ``(N,)`` on ``x``'s device: the top class where the two-sided binomial test of the
        top two counts has p-value ``<= alpha``, else ``-1``.
    """
    sigma = _check_inputs(model, x, sigma, alpha, batch_size, seed, num_classes, {"n": n})
    rng = KeyedRNG.for_inputs(x, int(seed)).stream(_STREAM_PREDICT)
    with frozen_eval(model), torch.no_grad():
        counts = _count(model, x, rng, sigma, int(n), int(batch_size), num_classes)
    if counts.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=x.device)
    if counts.shape[1] == 1:
        top = counts
        top_index = torch.zeros(counts.shape[0], 1, dtype=torch.int64, device=x.device)
        n_b = np.zeros(counts.shape[0])
    else:
        top, top_index = counts.topk(2, dim=1)
        n_b = top[:, 1].cpu().numpy()
    pvalue = _binomial_pvalue(top[:, 0].cpu().numpy(), n_b)
    accept = torch.from_numpy(pvalue <= alpha).to(x.device)
    return torch.where(accept, top_index[:, 0], torch.full_like(top_index[:, 0], -1))


def certify(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    *,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    progress: bool = True,
) -> SmoothingResult:
    """CERTIFY (Cohen et al. 2019): a class and a certified L2 radius per sample, or abstain.

    Selects :math:`\\hat c_A` on ``n0`` noise draws, counts it on ``n`` fresh draws (``k``
    hits), bounds :math:`p_A \\ge \\underline{p_A}` = the one-sided ``(1 - alpha)``
    Clopper–Pearson bound, and abstains if :math:`\\underline{p_A} < 1/2`; otherwise the
    radius is :math:`\\sigma\\Phi^{-1}(\\underline{p_A})`. Each returned certificate is wrong
    with probability at most ``alpha``.

    Args:
        model: base classifier returning logits ``(B, C)``; run in eval mode under
            ``torch.no_grad`` (its modes and ``requires_grad`` flags are restored after).
        x: a batch ``(N, ...)``; noise is added without clipping.
        sigma: standard deviation of the Gaussian noise (> 0).
        n0: selection draws per sample.
        n: estimation draws per sample.
        alpha: failure probability of each certificate (0 < alpha < 1).
        batch_size: noisy inputs per forward pass (does not change the result).
        seed: seed of the keyed noise (see the module docstring).
        num_classes: number of classes (default: the number of logits).
        progress: show a progress bar (see :mod:`advml.progress`).

    Returns:
        :class:`SmoothingResult` with tensors on ``x``'s device.
    """
    sigma = _check_inputs(model, x, sigma, alpha, batch_size, seed, num_classes, {"n0": n0, "n": n})
    n0, n, batch_size = int(n0), int(n), int(batch_size)
    keyed = KeyedRNG.for_inputs(x, int(seed))
    size = x.shape[0]
    with (
        frozen_eval(model),
        torch.no_grad(),
        progress_bar(size * (n0 + n), "certify", enabled=progress, unit="draw") as bar,
    ):
        select = _count(
            model, x, keyed.stream(_STREAM_SELECT), sigma, n0, batch_size, num_classes, bar
        )
        classes = num_classes if num_classes is not None else select.shape[1]
        counts = _count(
            model, x, keyed.stream(_STREAM_ESTIMATE), sigma, n, batch_size, classes, bar
        )
    device = x.device
    if size == 0:
        empty = torch.zeros(0, dtype=torch.float64, device=device)
        return SmoothingResult(
            torch.zeros(0, dtype=torch.int64, device=device), empty, empty, counts
        )
    c_hat = select.argmax(dim=1)
    hits = counts.gather(1, c_hat[:, None])[:, 0]
    p_lower = clopper_pearson_lower(hits, n, alpha)
    certified = p_lower >= 0.5
    radius = np.where(certified, sigma * stats.norm.ppf(np.where(certified, p_lower, 0.5)), 0.0)
    accept = torch.from_numpy(certified).to(device)
    return SmoothingResult(
        prediction=torch.where(accept, c_hat, torch.full_like(c_hat, -1)),
        radius=torch.from_numpy(radius.astype(np.float64)).to(device),
        p_lower=torch.from_numpy(p_lower).to(device),
        counts=counts,
    )


def certified_accuracy(
    result: SmoothingResult, y: Tensor, radii: float | Sequence[float] | Tensor
) -> Tensor:
    """Fraction of samples with ``prediction == y`` and ``radius >= r``, for each ``r``.

    Abstentions (``-1``) never count. Returns float64 ``(len(radii),)`` (a scalar ``radii``
    gives shape ``(1,)``) on the result's device; ``0`` for an empty batch.
    """
    if not isinstance(result, SmoothingResult):
        raise UserError(f"result must be a SmoothingResult; got {type(result).__name__}")
    y = torch.as_tensor(y, device=result.prediction.device)
    if y.shape != result.prediction.shape:
        raise UserError(
            f"y must have shape {tuple(result.prediction.shape)} (one label per sample); got "
            f"{tuple(y.shape)}"
        )
    r = torch.as_tensor(radii, dtype=torch.float64, device=result.radius.device).reshape(-1)
    if not bool(torch.isfinite(r).all()) or bool((r < 0).any()):
        raise UserError(f"radii must be finite and >= 0; got {radii!r}")
    n = len(result)
    if n == 0:
        return torch.zeros(r.shape[0], dtype=torch.float64, device=r.device)
    correct = (result.prediction == y.to(result.prediction.dtype)) & (result.prediction >= 0)
    ok = correct[None, :] & (result.radius.to(torch.float64)[None, :] >= r[:, None])
    return ok.to(torch.float64).mean(dim=1)
