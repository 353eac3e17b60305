r"""Certified next to attacked: a sound upper bound on robust accuracy beside the attacks' lower
bound on the error, per sample.

For each sample ``(x, y)`` and budget ``ε`` the answer is one of

* ``misclassified`` — the clean input is already wrong;
* ``attacked`` — an attack (the evaluation cascade, or the complete verifier's own search)
  found ``x'`` in the threat model with a wrong prediction: the sample is *not* robust;
* ``certified`` — a sound method proved every ``x'`` in the threat model keeps label ``y``;
* ``unknown`` — neither.

So ``certified accuracy ≤ true robust accuracy ≤ attacked robust accuracy`` and the gap
between the two is the ``unknown`` fraction. A sample both certified and attacked would
contradict soundness; :func:`certify_samples` raises instead of reporting it.

Methods (L∞ balls ∩ the input box ``[low, high]``): ``ibp`` (Gowal et al. 2018, on the torch
model), ``crown`` / ``alpha-crown`` (Zhang et al. 2018; Xu et al. 2021), ``complete``
(CROWN, then branch-and-bound with a per-sample timeout). For L2 balls: ``smoothing``
(Cohen et al. 2019), which certifies the *smoothed* classifier ``g`` rather than the model
itself: its ``attacked`` column still refers to the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from advml.errors import UserError

METHODS = ("ibp", "crown", "alpha-crown", "complete", "smoothing")
STATUSES = ("certified", "attacked", "unknown", "misclassified")


@dataclass
class CertificationReport:
    """Per-sample answers (``status`` holds indices into :data:`STATUSES`) and the totals."""

    method: str
    threat: str
    eps: float
    status: Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.status.numel())

    def count(self, name: str) -> int:
        return int((self.status == STATUSES.index(name)).sum())

    @property
    def clean_accuracy(self) -> float:
        return 1.0 - self.count("misclassified") / max(self.n, 1)

    @property
    def certified_accuracy(self) -> float:
        return self.count("certified") / max(self.n, 1)

    @property
    def attacked_accuracy(self) -> float:
        """Accuracy under the attacks: an upper bound on the true robust accuracy."""
        return 1.0 - (self.count("attacked") + self.count("misclassified")) / max(self.n, 1)

    def summary(self) -> dict[str, object]:
        return {
            "method": self.method,
            "threat": self.threat,
            "eps": self.eps,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "certified_accuracy": self.certified_accuracy,
            "robust_accuracy_under_attack": self.attacked_accuracy,
            "counts": {name: self.count(name) for name in STATUSES},
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _margin_rows(y: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """``C`` of shape ``(N, K - 1, K)``: rows ``e_y − e_j`` for every ``j ≠ y``."""
    eye = torch.eye(n_classes, dtype=dtype, device=y.device)
    rows = eye[y][:, None, :] - eye[None, :, :]  # (N, K, K)
    keep = ~torch.eye(n_classes, dtype=torch.bool, device=y.device)[y]  # (N, K)
    return rows[keep].reshape(y.shape[0], n_classes - 1, n_classes)


def crown_certified(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    method: str = "crown",
    low: float = 0.0,
    high: float = 1.0,
    batch_size: int = 64,
) -> Tensor:
    """Bool ``(N,)``: CROWN (or α-CROWN) proves label ``y`` on the whole L∞ ball (float64)."""
    from advml.verification.crown import bounds
    from advml.verification.network import from_torch

    network = from_torch(model, tuple(x.shape[1:])).to(torch.float64).simplified()
    n_classes = network.n_outputs
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    out = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        part = slice(start, start + batch_size)
        lower = (flat[part] - eps).clamp(low, high)
        upper = (flat[part] + eps).clamp(low, high)
        C = _margin_rows(y[part], n_classes, torch.float64)
        lb, _ = bounds(network, lower, upper, C, method=method)
        out[part] = (lb > 0).all(dim=1)
    return out


def certify_samples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: str = "linf",
    eps: float,
    method: str = "crown",
    attacks: str | list[str] | None = "standard",
    timeout: float = 60.0,
    sigma: float = 0.25,
    samples: int = 10_000,
    alpha: float = 0.001,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = True,
    low: float = 0.0,
    high: float = 1.0,
) -> CertificationReport:
    """Certify each sample of ``(x, y)`` at budget ``eps`` and attack it (module docstring).

    Args:
        threat: ``"linf"`` (ibp, crown, alpha-crown, complete) or ``"l2"`` (smoothing).
        attacks: an evaluation preset or attack names for :func:`advml.evaluation.evaluate`
            (``None`` skips attacking: ``attacked`` then comes only from the complete
            verifier's counterexamples).
        timeout: seconds per sample for ``complete``'s branch-and-bound.
        sigma, samples, alpha: noise level, estimation draws and failure probability of
            ``smoothing`` (Cohen et al. use 100,000 draws; the selection uses 100).
    """
    from advml.attacks.base import frozen_eval
    from advml.evaluation.clean import predict

    if method not in METHODS:
        raise UserError(f"certify: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "smoothing" and threat != "l2":
        raise UserError("certify: randomized smoothing certifies L2 balls; use --threat l2")
    if method != "smoothing" and threat != "linf":
        raise UserError(
            f"certify: {method} certifies L∞ balls; use --threat linf, or --method smoothing for L2"
        )
    if not eps >= 0:
        raise UserError(f"certify: eps must be >= 0, got {eps}")
    seconds: dict[str, float] = {}
    notes: list[str] = []
    with torch.no_grad():
        logits = predict(model, x, batch_size=batch_size)
    correct = logits.argmax(1) == y
    n_classes = logits.shape[1]
    status = torch.full((x.shape[0],), STATUSES.index("unknown"), dtype=torch.long)
    status[~correct.cpu()] = STATUSES.index("misclassified")

    attacked = torch.zeros_like(correct)
    if attacks is not None and eps > 0:
        from advml.evaluation import evaluate

        started = time.perf_counter()
        report = evaluate(
            model,
            x,
            y,
            threat=threat,
            eps=[eps],
            attacks=attacks,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            checks=False,
        )
        attacked = correct & ~report.robust[eps].to(correct.device)
        seconds["attacks"] = time.perf_counter() - started

    started = time.perf_counter()
    if method == "smoothing":
        from advml.verification.smoothing import certify as smooth

        result = smooth(
            model,
            x,
            sigma,
            n=samples,
            alpha=alpha,
            batch_size=batch_size,
            seed=seed,
            num_classes=n_classes,
            progress=progress,
        )
        certified = (result.prediction == y) & (result.radius >= eps)
        notes.append(
            f"smoothing certifies the smoothed classifier (sigma={sigma}, {samples} draws, "
            f"alpha={alpha}); 'attacked' refers to the model itself"
        )
    elif method == "ibp":
        from advml.verification.ibp import verified_robust

        with frozen_eval(model):
            certified = verified_robust(model, x, y, eps, low, high)
    else:
        bound_method = "alpha-crown" if method == "alpha-crown" else "crown"
        with frozen_eval(model):
            certified = crown_certified(model, x, y, eps, method=bound_method, low=low, high=high)
    certified = certified.to(correct.device) & correct
    seconds["bounds"] = time.perf_counter() - started

    if method != "smoothing":
        clash = certified & attacked
        if bool(clash.any()):
            index = int(clash.nonzero()[0])
            raise RuntimeError(
                f"certify: sample {index} is both certified by {method} and broken by an "
                "attack; this is a soundness bug in advml, please report it"
            )

    if method == "complete":
        from advml.progress import progress_bar
        from advml.verification.bab import verify
        from advml.verification.network import from_torch
        from advml.verification.spec import robustness_property

        started = time.perf_counter()
        network = from_torch(model, tuple(x.shape[1:]))
        todo = (correct & ~certified & ~attacked).nonzero().squeeze(1).tolist()

        with progress_bar(len(todo), "certify (branch-and-bound)", enabled=progress) as bar:
            for index in todo:  # one search per sample: each is its own branch-and-bound
                prop = robustness_property(x[index], eps, int(y[index]), n_classes, low, high)
                answer = verify(network, prop, timeout=timeout, seed=seed)
                if answer.status == "verified":
                    certified[index] = True
                elif answer.status == "falsified":
                    attacked[index] = True
                bar.update(1)
        seconds["branch_and_bound"] = time.perf_counter() - started

    order = [("attacked", attacked), ("certified", certified)]
    if method != "smoothing":  # disjoint; for smoothing the certificate is the smoothed g's
        order.reverse()
    for name, mask in order:
        status[mask.cpu()] = STATUSES.index(name)
    return CertificationReport(method, threat, float(eps), status, seconds, notes)
