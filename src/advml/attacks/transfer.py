r"""Transfer attacks (Papernot, McDaniel & Goodfellow 2016/2017, "Practical Black-Box Attacks
against Machine Learning"; Tramèr et al. 2018, "Ensemble Adversarial Training: Attacks and
Defenses"; Liu et al. 2017 for ensembles; Elsayed et al. 2018 for input transforms): craft
the adversarial inputs on *surrogate* models the attacker owns, then submit them to the
target.

The surrogates are fused into one module whose logits are their average,

.. math::  \bar z(x) = \frac{1}{K} \sum_{k=1}^{K} z_k(T(x)),

optionally behind a differentiable input transform :math:`T` (e.g. :class:`GaussianBlur`, so
that the perturbation survives smoothing and transfers better), and any registered attack
(PGD by default) maximizes its loss on :math:`\bar z` inside the threat model. Averaging
*logits* (Liu et al. 2017's fusion) rather than losses makes a perturbation that has to fool
all surrogates at once through one decision; with ``early_stop=False`` on the surrogate (the
default here) the whole budget is spent and the highest-loss iterate is kept, which
transfers better than the first iterate that just crosses the surrogate's boundary.

The target is only asked for its decision, twice per sample: the clean pass (samples it
already gets wrong are not attacked and stay successes) and the final check of the
transferred input. Hence ``kind="decision"`` in the registry; ``result.queries`` counts the
target's queries only (2 per sample), not the surrogates' gradients.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.attacks import registry
from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.losses import margin
from advml.attacks.registry import register
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["GaussianBlur", "SurrogateEnsemble", "transfer"]

_PAPER = (
    "Papernot et al. 2017, Practical Black-Box Attacks against Machine Learning; Tramèr et "
    "al. 2018, Ensemble Adversarial Training"
)


class GaussianBlur(nn.Module):
    """Differentiable Gaussian blur of the spatial dimensions, per channel.

    ``(N, C, H, W)`` images are blurred along H and W (separable kernel, replicate padding);
    ``(N, C, L)`` and ``(N, D)`` inputs along their last dimension. ``kernel_size`` is odd.
    """

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise UserError(
                f"GaussianBlur: kernel_size must be a positive int; got {kernel_size!r}"
            )
        if kernel_size % 2 == 0:
            raise UserError(f"GaussianBlur: kernel_size must be odd; got {kernel_size}")
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, (int, float))
            or not 0 < sigma < math.inf
        ):
            raise UserError(f"GaussianBlur: sigma must be a positive number; got {sigma!r}")
        self.kernel_size, self.sigma = kernel_size, float(sigma)
        offsets = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
        kernel = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        self.register_buffer("kernel", (kernel / kernel.sum()).to(torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma:g}"

    def _along_last(self, x: Tensor) -> Tensor:
        """Blur ``(B, L)`` rows along ``L``."""
        pad = self.kernel_size // 2
        rows = x.reshape(-1, 1, x.shape[-1])
        if pad:
            rows = F.pad(rows, (pad, pad), mode="replicate")
        weight = self.kernel.to(dtype=x.dtype, device=x.device).reshape(1, 1, -1)
        return F.conv1d(rows, weight).reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            blurred = self._along_last(x)  # along W
            return self._along_last(blurred.transpose(2, 3)).transpose(2, 3)  # along H
        if x.ndim in (2, 3):
            return self._along_last(x)
        raise UserError(
            f"GaussianBlur: expects (N, C, H, W), (N, C, L) or (N, D) inputs; got shape "
            f"{tuple(x.shape)}"
        )


class SurrogateEnsemble(nn.Module):
    """The surrogates as one model: the average of their logits on ``transform(x)``.

    Each surrogate sees the input in its own dtype and device (those of its first parameter or
    buffer) and its logits come back in the input's, so a float32 CPU surrogate can serve a
    float64 or GPU target.
    """

    def __init__(self, surrogates: Sequence[nn.Module], transform: nn.Module | None = None):
        super().__init__()
        self.surrogates = nn.ModuleList(surrogates)
        self.transform = transform

    def forward(self, x: Tensor) -> Tensor:
        z = self.transform(x) if self.transform is not None else x
        total = None
        for model in self.surrogates:
            ref = next(iter(model.parameters()), None)
            ref = ref if ref is not None else next(iter(model.buffers()), None)
            inp = z if ref is None else z.to(device=ref.device, dtype=ref.dtype)
            logits = model(inp).to(device=x.device, dtype=x.dtype)
            total = logits if total is None else total + logits
        assert total is not None
        return total / len(self.surrogates)


def _surrogate_list(surrogates) -> list[nn.Module]:
    if surrogates is None:
        raise UserError(
            "transfer: give surrogates=[model, ...], the models the adversarial inputs are "
            "crafted on"
        )
    items = [surrogates] if isinstance(surrogates, nn.Module) else surrogates
    try:
        items = list(items)
    except TypeError:
        raise UserError(
            f"transfer: surrogates must be a torch.nn.Module or a list of them; got "
            f"{type(surrogates).__name__}"
        ) from None
    if not items or not all(isinstance(m, nn.Module) for m in items):
        raise UserError("transfer: surrogates must be a non-empty list of torch.nn.Module")
    return items


def _inner_attack(attack: str | Callable, threat: ThreatModel) -> Callable:
    if isinstance(attack, str):
        info = registry.info(attack)
        if info.name == "transfer":
            raise UserError("transfer: attack='transfer' would recurse; pick e.g. 'pgd'")
        if threat.name not in info.norms:
            raise UserError(
                f"transfer: the surrogate attack {info.name!r} does not support the "
                f"{threat.name} threat model; it supports {', '.join(sorted(info.norms))}"
            )
        return info.fn
    if callable(attack):
        return attack
    raise UserError(f"transfer: attack must be a registered name or a callable; got {attack!r}")


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@register(
    "transfer",
    norms=("linf", "l2", "l1"),
    targeted=True,
    kind="decision",
    paper=_PAPER,
    defaults="attack = pgd (early_stop = False) on the average of the surrogates' logits; "
    "2 target queries per sample",
)
def transfer(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    surrogates: nn.Module | Sequence[nn.Module] | None = None,
    attack: str | Callable = "pgd",
    attack_kwargs: dict | None = None,
    transform: nn.Module | None = None,
    seed: int | None = 0,
) -> AttackResult:
    """Craft on surrogates, report on the target ``model`` (which only gives its decision).

    Args:
        surrogates: a model or a list of models mapping the same inputs to the same classes
            (e.g. trained by the attacker on similar data); their logits are averaged.
        attack: the white-box attack run on the surrogate ensemble: a registered name
            (default ``"pgd"``) or a callable with the common signature.
        attack_kwargs: extra keyword arguments for it; ``early_stop=False`` unless given
            (spend the whole budget on the surrogate: higher-loss points transfer better),
            and this call's ``seed`` unless given.
        transform: a differentiable module applied to the input before every surrogate
            (e.g. ``GaussianBlur(3, 1.0)``); the target sees the untransformed input.
        seed: passed to the surrogate attack.
    """
    members = _surrogate_list(surrogates)
    if transform is not None and not isinstance(transform, nn.Module):
        raise UserError(
            f"transfer: transform must be a torch.nn.Module; got {type(transform).__name__}"
        )
    inner = _inner_attack(attack, threat)
    kwargs = dict(attack_kwargs or {})
    if "early_stop" not in kwargs and _accepts(inner, "early_stop"):
        kwargs["early_stop"] = False
    if "seed" not in kwargs and "generator" not in kwargs and _accepts(inner, "seed"):
        kwargs["seed"] = seed
    with frozen_eval(model):
        problem = Problem("transfer", model, x, y, threat, targeted)
        labels = problem.y

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], problem.targeted)

        x_adv = problem.x.clone()
        sid = (~problem.clean_success).nonzero().squeeze(1)
        if sid.numel():
            ensemble = SurrogateEnsemble(members, transform)
            with frozen_eval(ensemble), torch.no_grad():
                classes = ensemble(problem.x[sid[:1]]).shape[-1]
            if classes != problem.n_classes:
                raise UserError(
                    f"transfer: the surrogates return {classes} logits but the target "
                    f"{problem.n_classes}; they must classify into the same classes"
                )
            crafted = inner(
                ensemble,
                problem.x[sid],
                problem.y[sid],
                problem.threat_rows(sid),
                targeted=problem.targeted,
                **kwargs,
            )
            x_adv[sid] = crafted.x_adv.to(x_adv.dtype)
        return problem.finish(x_adv, goal)
