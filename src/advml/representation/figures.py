"""The accuracy–fairness trade-off curve of an adversary-weight sweep (cf. Madras et al. 2018,
Fig. 2), drawn with matplotlib the way :mod:`advml.evaluation.figures` draws its figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advml.evaluation.figures import plt  # Agg backend, set up once there


def tradeoff_curve(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    gap: str = "delta_dp",
    title: str = "Accuracy vs fairness gap",
) -> Path:
    """Plot test accuracy against ``gap`` (``delta_dp`` or ``delta_eo``) for each objective,
    one point per adversary weight, labeled with the weight."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for objective in sorted({str(r["objective"]) for r in rows}):
        points = sorted(
            (r for r in rows if r["objective"] == objective), key=lambda r: r["adversary_weight"]
        )
        xs = [r[gap] for r in points]
        ys = [100 * r["accuracy"] for r in points]
        axis.plot(xs, ys, marker="o", label=f"adversary: {objective.upper()}")
        for r, x, y in zip(points, xs, ys, strict=True):
            axis.annotate(
                f"w={r['adversary_weight']:g}",
                (x, y),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    axis.set_xlabel({"delta_dp": "ΔDP", "delta_eo": "ΔEO"}.get(gap, gap))
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
