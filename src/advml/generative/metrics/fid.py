"""Distances between two sets of features: Fréchet distance, kernel distance, and the
improved precision/recall of k-NN manifolds.

* :func:`frechet_distance` — ``‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)`` between Gaussians
  fitted to the features (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium", NeurIPS 2017, Eq. 6; Dowson & Landau 1982).
* :func:`kernel_distance` — KID, the unbiased MMD² with the cubic polynomial kernel
  ``k(x, y) = (xᵀy / d + 1)³``, mean ± std over random subsets (Bińkowski, Sutherland, Arbel
  & Gretton, "Demystifying MMD GANs", ICLR 2018, §4 and Eq. 3; Gretton et al. 2012, Eq. 4).
* :func:`precision_recall` — improved precision and recall (Kynkäänniemi, Karras, Laine,
  Lehtinen & Aila, NeurIPS 2019, Eq. 1-2) with k-NN radii, ``k = 3``.

Everything is computed in float64 on the features' device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from advml.errors import UserError

__all__ = [
    "KernelDistance",
    "PrecisionRecall",
    "fid",
    "frechet_distance",
    "gaussian_statistics",
    "kernel_distance",
    "knn_radii",
    "precision_recall",
    "trace_sqrt_product",
]


def _features(name: str, features: Tensor, min_rows: int = 2) -> Tensor:
    if not isinstance(features, Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise UserError(f"{name} must be a 2-D tensor (samples, features), got {shape}")
    if features.shape[0] < min_rows:
        raise UserError(f"{name} needs at least {min_rows} samples, got {features.shape[0]}")
    if not torch.isfinite(features).all():
        raise UserError(f"{name} contains NaN or infinite values")
    return features.detach().to(torch.float64)


def _same_dim(a: Tensor, b: Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise UserError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` (divisor ``n - 1``), float64."""
    x = _features("features", features)
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def _clip_spectrum(values: Tensor) -> Tensor:
    """Eigenvalues of a PSD matrix with round-off removed: values below ``d · ε · λ_max`` (the
    numerical rank threshold of LAPACK/``pinv``) are set to 0, so that ``√`` does not turn a
    ``1e-16`` rounding error into a ``1e-8`` contribution."""
    tol = values.shape[-1] * torch.finfo(values.dtype).eps * values.abs().max().clamp_min(1e-300)
    return torch.where(values > tol, values, torch.zeros_like(values))


def _psd_sqrt(sigma: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix by eigendecomposition."""
    values, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * _clip_spectrum(values).sqrt()) @ vectors.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """``tr((Σ₁ Σ₂)^½)`` for symmetric PSD ``Σ₁, Σ₂``.

    ``Σ₁ Σ₂`` has the eigenvalues of the symmetric PSD ``Σ₁^½ Σ₂ Σ₁^½`` (``AB`` and ``BA``
    share eigenvalues), so the trace of its principal square root is the sum of their square
    roots — computed with two symmetric eigendecompositions, which stay stable for singular
    covariances where a general ``sqrtm`` loses precision or returns complex round-off.
    """
    root = _psd_sqrt(sigma1)
    middle = root @ sigma2 @ root
    values = torch.linalg.eigvalsh((middle + middle.T) / 2)
    return _clip_spectrum(values).sqrt().sum()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``:
    ``‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^½)`` (Heusel et al. 2017, Eq. 6)."""
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    sigma1, sigma2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise UserError(
            f"frechet_distance: means must be (d,) and covariances (d, d); got {tuple(mu1.shape)}"
            f", {tuple(sigma1.shape)}, {tuple(mu2.shape)}, {tuple(sigma2.shape)}"
        )
    diff = mu1 - mu2
    value = diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(value.clamp_min(0))


def fid(features1: Tensor, features2: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(n, d)``, ``(m, d)``."""
    a, b = _features("features1", features1), _features("features2", features2)
    _same_dim(a, b)
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))


class KernelDistance(NamedTuple):
    """KID: mean and standard deviation (``ddof = 0``) of the unbiased MMD² over subsets."""

    mean: float
    std: float


def _cubic_kernel(a: Tensor, b: Tensor) -> Tensor:
    """``k(x, y) = (xᵀy / d + 1)³`` on batches ``(S, m, d)`` (Bińkowski et al. 2018, §4)."""
    return (a @ b.transpose(1, 2) / a.shape[-1] + 1) ** 3


def _unbiased_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD² per subset (Gretton et al. 2012, Eq. 4): mean off-diagonal ``k(x, x')``
    plus mean off-diagonal ``k(y, y')`` minus twice the mean ``k(x, y)``; inputs ``(S, m, d)``."""
    m = x.shape[1]
    kxx, kyy, kxy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
    off = m * (m - 1)
    within = (kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(1)) / off
    within = within + (kyy.sum((1, 2)) - kyy.diagonal(dim1=1, dim2=2).sum(1)) / off
    return within - 2 * kxy.mean((1, 2))


def kernel_distance(
    features1: Tensor,
    features2: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    max_elements: int = 1 << 24,
) -> KernelDistance:
    """Kernel Inception-style distance (KID) between two feature sets (Bińkowski et al. 2018).

    Each of ``subsets`` rounds draws ``min(subset_size, n, m)`` rows without replacement from
    each set (seeded by ``seed``) and computes the unbiased MMD² with the cubic kernel; the
    result is their mean and standard deviation. Subsets are processed in batches of at most
    ``max_elements`` kernel entries.
    """
    a, b = _features("features1", features1), _features("features2", features2)
    _same_dim(a, b)
    if subsets < 1:
        raise UserError(f"kernel_distance: subsets must be >= 1, got {subsets}")
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise UserError(f"kernel_distance: subset_size must be >= 2, got {subset_size}")
    gen = torch.Generator().manual_seed(seed)
    index_a = torch.rand(subsets, a.shape[0], generator=gen).argsort(dim=1)[:, :size]
    index_b = torch.rand(subsets, b.shape[0], generator=gen).argsort(dim=1)[:, :size]
    index_a, index_b = index_a.to(a.device), index_b.to(b.device)
    per_chunk = max(1, max_elements // (3 * size * size))
    values = [
        _unbiased_mmd2(a[index_a[s : s + per_chunk]], b[index_b[s : s + per_chunk]])
        for s in range(0, subsets, per_chunk)
    ]
    mmd = torch.cat(values)
    return KernelDistance(float(mmd.mean()), float(mmd.std(correction=0)))


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def _cdist(a: Tensor, b: Tensor) -> Tensor:
    """Exact pairwise Euclidean distances (no ``‖a‖² + ‖b‖² − 2ab`` shortcut, so a point's
    distance to itself is exactly 0 and ball-membership tests do not flip on round-off)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(features: Tensor, k: int = 3, batch_size: int = 1024) -> Tensor:
    """Distance of every row to its ``k``-th nearest other row (Kynkäänniemi et al. 2019, §2:
    the radius of the hypersphere around each sample), via batched ``torch.cdist``."""
    x = _features("features", features, min_rows=k + 1)
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    radii = [
        _cdist(x[s : s + batch_size], x).kthvalue(k + 1, dim=1).values
        for s in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(radii)


def _coverage(points: Tensor, centres: Tensor, radii: Tensor, batch_size: int) -> float:
    """Fraction of ``points`` inside at least one ball ``‖p − centre_i‖ ≤ radius_i``
    (Kynkäänniemi et al. 2019, Eq. 1: ``f(φ, Φ)``)."""
    inside = [
        (_cdist(points[s : s + batch_size], centres) <= radii).any(dim=1)
        for s in range(0, points.shape[0], batch_size)
    ]
    return float(torch.cat(inside).to(torch.float64).mean())


def precision_recall(
    real: Tensor, fake: Tensor, *, k: int = 3, batch_size: int = 1024
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019, Eq. 2).

    Precision is the fraction of ``fake`` rows inside the real manifold (the union of balls
    around each real row with its ``k``-NN radius among the real rows); recall is the fraction
    of ``real`` rows inside the fake manifold.
    """
    r, f = _features("real", real, k + 1), _features("fake", fake, k + 1)
    _same_dim(r, f)
    precision = _coverage(f, r, knn_radii(r, k, batch_size), batch_size)
    recall = _coverage(r, f, knn_radii(f, k, batch_size), batch_size)
    return PrecisionRecall(precision, recall)
