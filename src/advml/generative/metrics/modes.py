"""Mode coverage of a 2-D Gaussian mixture: the protocol of PacGAN's Table 1 (Lin, Khetan,
Fanti & Oh, NeurIPS 2018, sec. 4.1, after VEEGAN, Srivastava et al. 2017).

Draw 2,500 samples from the generator. Each sample is assigned to its nearest mode centre; it
is *high quality* when it lies within ``3 sigma`` of that centre (the mixture's components are
isotropic with standard deviation ``sigma``). A mode is *covered* when at least one
high-quality sample is assigned to it. The *reverse KL* is
``KL(q || p) = sum_k q_k log(q_k / p_k)`` between the histogram ``q`` of the high-quality
samples over the modes and the true mode weights ``p`` (uniform: ``p_k = 1/K``), so it is 0 when
the high-quality samples spread evenly and ``log K`` when they all sit on one mode.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from advml.errors import UserError

__all__ = ["PROTOCOL_SAMPLES", "ModeCoverage", "mode_coverage"]

#: Number of generated samples the PacGAN protocol scores.
PROTOCOL_SAMPLES = 2500


@dataclass(frozen=True)
class ModeCoverage:
    """Scores of one set of samples (see the module docstring).

    ``reverse_kl`` is ``None`` when no sample is of high quality (the histogram is empty).
    """

    modes: int  # covered modes
    num_modes: int  # K
    high_quality: float  # fraction of samples within threshold * sigma of their nearest mode
    reverse_kl: float | None  # KL(q || uniform) of the high-quality histogram
    counts: tuple[int, ...]  # high-quality samples per mode
    samples: int

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["counts"] = list(self.counts)
        return out


def mode_coverage(
    samples: Tensor, centres: Tensor, sigma: float, threshold: float = 3.0
) -> ModeCoverage:
    """Covered modes, high-quality fraction and reverse KL of ``samples`` ``(N, d)`` around the
    mixture ``centres`` ``(K, d)`` of isotropic standard deviation ``sigma``."""
    if samples.dim() != 2 or centres.dim() != 2 or samples.shape[1] != centres.shape[1]:
        raise UserError(
            f"mode_coverage needs samples (N, d) and centres (K, d), got {tuple(samples.shape)} "
            f"and {tuple(centres.shape)}"
        )
    if samples.shape[0] == 0:
        raise UserError("mode_coverage needs at least one sample")
    if not sigma > 0 or not threshold > 0:
        raise UserError(f"sigma and threshold must be > 0, got {sigma} and {threshold}")
    samples = samples.detach().to(torch.float64)
    centres = centres.detach().to(device=samples.device, dtype=torch.float64)
    distance, nearest = torch.cdist(samples, centres).min(dim=1)
    good = distance < threshold * sigma
    counts = torch.bincount(nearest[good], minlength=centres.shape[0])
    total = int(counts.sum())
    kl = None
    if total:
        q = counts[counts > 0].double() / total
        kl = float((q * torch.log(q * centres.shape[0])).sum())
    return ModeCoverage(
        modes=int((counts > 0).sum()),
        num_modes=int(centres.shape[0]),
        high_quality=total / samples.shape[0],
        reverse_kl=kl if kl is None or not math.isclose(kl, 0.0, abs_tol=1e-12) else 0.0,
        counts=tuple(int(c) for c in counts.tolist()),
        samples=int(samples.shape[0]),
    )
