r"""Expectation over Transformation (Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing Robust
Adversarial Examples", ICML): adversarial examples that survive a distribution of transforms.

An adversarial example computed for one exact view rarely survives a camera: rotation, shift,
lighting and noise undo it (Kurakin et al. 2016). EOT optimizes the expectation over a
distribution :math:`T` of transforms instead,

.. math::  \max_{x' \in S(x)} \; \mathbb{E}_{t \sim T}\big[ J(f(t(x')), y) \big],

estimating the expectation (and its gradient) with ``samples`` transforms drawn **afresh at
every forward pass**. Here this is a model wrapper, :func:`eot_model`: its forward draws
``samples`` transforms per input, runs the model on all copies at once (stacked on the batch
dimension) and **averages the logits**; any registered attack then runs on the wrapper
unchanged (:func:`eot` does exactly that, ``attack="pgd"`` by default).

Why average logits, not losses? A model wrapper can only return logits, and every attack in
advml picks its own loss. The average of the logits equals the average of the
log-probabilities up to a per-input constant (``log_softmax`` subtracts one number per row), so
it is the normalized geometric mean of the transformed predictions and every shift-invariant
loss sees the same thing:

* margin / CW losses (and DLR's numerator): :math:`\bar z_j - \bar z_y = \mathbb{E}_t[z_j -
  z_y]`, so the gradient for a fixed pair of classes **is** the EOT estimator;
* cross-entropy: :math:`-\bar z_y + \mathrm{lse}(\bar z) \le \mathbb{E}_t[\mathrm{CE}]`
  (Jensen); the :math:`-\mathbb{E}_t[z_y]` part is the EOT estimator, the normalizer is taken
  at the mean. ``average="probs"`` instead returns :math:`\log \mathbb{E}_t[p]` (the arithmetic
  mean of probabilities): then CE is :math:`-\log \mathbb{E}_t[p_y]`, the expected
  probability of the class.

On the digits tests the two give the same survival rates (within 0.5 points).

**Randomized models.** With ``transforms=None`` the wrapper just runs ``samples`` copies: a
model with randomness in its forward pass (Gaussian noise layers, random resizing, ...) is
averaged over its own randomness, which is how EOT breaks randomized defenses (Athalye,
Carlini & Wagner 2018). Randomness must not depend on train mode: attacks put the model in
eval mode (dropout is off).

**Success is expected success.** :func:`eot` evaluates its result under ``eval_samples``
(default 64) fresh transforms (and model randomness) and returns an :class:`EOTResult`:
``expected_success`` is the fraction of those draws under which ``x_adv`` succeeds, and
``success`` is the **majority** (``expected_success > 0.5``); ``logits`` are the averaged
logits of those draws. With no transforms and a deterministic model this is plain success.

**Determinism.** With ``seed`` (default 0) each forward pass keys its draws by a hash of each
input's values (:class:`advml.attacks.rng.KeyedRNG`): the same input always sees the same
transforms, different iterates see different ones, and results do not depend on the batch
size or order. ``generator=`` draws from a ``torch.Generator`` instead (reproducible for the
same batch); ``seed=None`` from torch's global generator (truly fresh at every pass).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.attacks import registry
from advml.attacks.base import AttackResult, ModelOutputError, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int
from advml.attacks.registry import register
from advml.attacks.rng import KeyedRNG, TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import ThreatModel
from advml.transforms import Compose, RandomTransform

__all__ = ["EOTModel", "EOTResult", "eot", "eot_model", "expected_success"]

#: Stream numbers of the keyed random sources (the wrapper's draws vs the final evaluation).
_STREAM_FORWARD = 0
_STREAM_EVAL = 1


@dataclasses.dataclass(repr=False)
class EOTResult(AttackResult):
    """An :class:`AttackResult` judged under the transform distribution.

    Extra attributes:
        expected_success: float ``(N,)``: fraction of ``eval_samples`` fresh transforms (and
            model randomness) under which ``x_adv`` succeeds; ``success`` is
            ``expected_success > 0.5`` (majority) and ``logits`` the mean logits of those draws.
        eval_samples: how many draws ``expected_success`` is measured on.
    """

    expected_success: Tensor | None = None
    eval_samples: int = 0

    @property
    def expected_success_rate(self) -> float:
        """Mean of ``expected_success`` over the batch (0.0 when empty)."""
        if self.expected_success is None or self.expected_success.numel() == 0:
            return 0.0
        return float(self.expected_success.float().mean())

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        return f"{base}, expected_success={self.expected_success_rate:.3f})"


def _check_transforms(transforms: object) -> RandomTransform | None:
    if transforms is None or isinstance(transforms, RandomTransform):
        return transforms
    if isinstance(transforms, (list, tuple)):
        return Compose(transforms)
    raise UserError(
        "transforms must be an advml.transforms object (e.g. transforms.physical()), a list "
        f"of them, or None; got {type(transforms).__name__}"
    )


def _check_average(average: str) -> str:
    if average not in ("logits", "probs"):
        raise UserError(f"average must be 'logits' or 'probs'; got {average!r}")
    return average


def _source(x: Tensor, seed: int | None, generator, stream: int) -> KeyedRNG | TorchRNG:
    """A random source for one batch: keyed by each input's values (seed), or a generator."""
    if isinstance(generator, (KeyedRNG, TorchRNG)):
        return generator
    rng = make_rng(x, seed, generator)
    return rng.stream(stream) if isinstance(rng, KeyedRNG) else rng


def _draw_copies(x: Tensor, transforms: RandomTransform | None, samples: int, source) -> Tensor:
    if transforms is None:
        return x.repeat_interleave(samples, dim=0) if samples > 1 else x
    return transforms.sample(x, source, samples)


def _grouped(z: Tensor, n: int, samples: int) -> Tensor:
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[0] != n * samples:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ModelOutputError(
            f"eot: the model must return logits of shape (N, C); got {shape} for "
            f"{n * samples} transformed inputs"
        )
    return z.reshape(n, samples, z.shape[1])


def _average(z: Tensor, average: str) -> Tensor:
    """``(N, K, C)`` -> ``(N, C)``: mean logits, or the log of the mean probabilities."""
    if average == "logits":
        return z.mean(dim=1)
    work = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    log_p = F.log_softmax(work, dim=2)
    return (torch.logsumexp(log_p, dim=1) - math.log(z.shape[1])).to(z.dtype)


class EOTModel(nn.Module):
    """``model`` averaged over ``samples`` random transforms drawn at every forward pass.

    ``forward(x)`` returns ``(N, C)``: the mean logits of ``model(t_k(x))`` over ``samples``
    draws ``t_k`` per input (``average="probs"``: ``log`` of the mean probabilities). All
    copies go through the model in one batch of ``N * samples`` rows. See the module
    docstring for the random source (``seed`` keys draws by input values).
    """

    def __init__(
        self,
        model: nn.Module,
        transforms: RandomTransform | None = None,
        samples: int = 8,
        *,
        average: str = "logits",
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise UserError(f"eot: model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.transforms = _check_transforms(transforms)
        self.samples = check_positive_int(samples, "samples")
        self.average = _check_average(average)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UserError(f"seed must be an int or None; got {seed!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise UserError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if generator is not None and seed is not None:
            raise UserError("give either seed or generator, not both (seed=None with a generator)")
        self.seed = seed
        self.generator = generator

    def extra_repr(self) -> str:
        return f"samples={self.samples}, average={self.average!r}, seed={self.seed}"

    def forward(self, x: Tensor) -> Tensor:
        n = int(x.shape[0])
        if n == 0:
            return self.model(x)
        source = _source(x, self.seed, self.generator, _STREAM_FORWARD)
        z = self.model(_draw_copies(x, self.transforms, self.samples, source))
        return _average(_grouped(z, n, self.samples), self.average)


def eot_model(
    model: nn.Module,
    transforms: RandomTransform | None = None,
    samples: int = 8,
    **kwargs,
) -> EOTModel:
    """Wrap ``model`` so that any attack becomes an EOT attack: see :class:`EOTModel`.

    >>> robust = attacks.pgd(eot_model(model, transforms.physical(), 8), x, y, Linf(0.1))
    """
    return EOTModel(model, transforms, samples, **kwargs)


def expected_success(
    model: nn.Module,
    x_adv: Tensor,
    y: Tensor,
    *,
    targeted: bool = False,
    transforms: RandomTransform | None = None,
    samples: int = 64,
    average: str = "logits",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """How often ``x_adv`` succeeds under ``samples`` random transforms (the survival rate).

    Returns ``(fraction, logits)``: ``fraction`` float ``(N,)`` of draws whose prediction is
    wrong (untargeted) or the target (targeted); ``logits`` ``(N, C)`` the averaged logits of
    the draws. Runs under ``torch.no_grad()``, in the model's current mode (call it inside
    :func:`advml.attacks.frozen_eval` for eval mode). Draws are keyed by the values of
    ``x_adv`` (stream 1, distinct from :class:`EOTModel`'s) unless a generator is given.
    """
    samples = check_positive_int(samples, "samples")
    transforms = _check_transforms(transforms)
    average = _check_average(average)
    n = int(x_adv.shape[0])
    y = torch.as_tensor(y, device=x_adv.device).long()
    if n == 0:
        return x_adv.new_zeros(0), x_adv.new_zeros(0, 0)
    with torch.no_grad():
        source = _source(x_adv.detach(), seed, generator, _STREAM_EVAL)
        z = _grouped(model(_draw_copies(x_adv.detach(), transforms, samples, source)), n, samples)
        pred = z.argmax(dim=2)
        hit = pred == y.reshape(-1, 1) if targeted else pred != y.reshape(-1, 1)
        return hit.to(x_adv.dtype).mean(dim=1), _average(z, average)


def _inner_attack(attack: str | Callable) -> tuple[Callable, registry.AttackInfo | None]:
    if isinstance(attack, str):
        return registry.get(attack), registry.info(attack)
    if not callable(attack):
        raise UserError(
            f"eot: attack must be a registered name or an attack function; got {attack!r}"
        )
    base = attack.func if isinstance(attack, functools.partial) else attack
    found = getattr(base, "info", None)
    return attack, found if isinstance(found, registry.AttackInfo) else None


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    if name in params:
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def finish_under_transforms(
    problem: Problem,
    x_adv: Tensor,
    *,
    transforms: RandomTransform | None,
    eval_samples: int,
    average: str,
    seed: int | None,
    generator: torch.Generator | None,
    loss: Tensor | None = None,
    extra_queries: Tensor | None = None,
) -> EOTResult:
    """Check ``x_adv`` against the threat (via :meth:`Problem.finish`) and judge it under
    ``eval_samples`` fresh transforms: success = majority (shared by eot and sticker)."""
    checked = problem.finish(x_adv)
    fields = {f.name: getattr(checked, f.name) for f in dataclasses.fields(AttackResult)}
    result = EOTResult(**fields, expected_success=checked.x_adv.new_zeros(0), eval_samples=0)
    if problem.n == 0:
        return result
    fraction, logits = expected_success(
        problem.model,
        result.x_adv,
        problem.y,
        targeted=problem.targeted,
        transforms=transforms,
        samples=eval_samples,
        average=average,
        seed=seed if generator is None else None,
        generator=generator,
    )
    result.expected_success = fraction
    result.eval_samples = eval_samples
    result.success = fraction > 0.5
    result.logits = logits
    if loss is not None:
        result.loss = loss
    queries = problem.queries + eval_samples
    if extra_queries is not None:
        queries = queries + extra_queries
    result.queries = queries
    return result


@register(
    "eot",
    norms=("linf", "l2", "l1"),
    targeted=True,
    kind="gradient",
    paper="Athalye, Engstrom, Ilyas & Kwok 2018, Synthesizing Robust Adversarial Examples",
    defaults="attack = pgd, samples = 8 (mean logits), eval_samples = 64, early_stop = False",
)
def eot(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    attack: str | Callable = "pgd",
    transforms: RandomTransform | None = None,
    samples: int = 8,
    average: str = "logits",
    eval_samples: int = 64,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    **attack_kwargs,
) -> EOTResult:
    """Run ``attack`` on :func:`eot_model` ``(model, transforms, samples)``; judge the result
    under ``eval_samples`` fresh transforms.

    Args:
        attack: a registered attack name (default ``"pgd"``) or attack function; it must
            support the threat's norm (and ``targeted`` when asked).
        transforms: an :mod:`advml.transforms` distribution (or a list, composed), or ``None``
            for none (a randomized model averaged over its own randomness).
        samples: transforms per input at every forward pass (the EOT estimate's size).
        average: ``"logits"`` (mean logits) or ``"probs"`` (log of the mean probabilities).
        eval_samples: fresh draws on which ``expected_success`` (and ``success``, the majority)
            is measured.
        seed, generator: the random source of the transforms and of the inner attack (passed
            on when it takes them).
        **attack_kwargs: passed to the inner attack (``steps``, ``step_size``, ``loss``, ...).
            ``early_stop`` defaults to ``False``: a sample broken under 8 draws is not yet
            robustly broken, so the attack keeps ascending and returns the iterate with the
            highest EOT loss among the successful ones.

    Returns an :class:`EOTResult`: ``success`` is the majority under ``eval_samples`` fresh
    transforms, ``expected_success`` the fraction, ``logits`` their average, ``loss`` the
    inner attack's objective on the EOT model, ``queries`` forward passes of the base model
    (each pass of the wrapper counts ``samples``).
    """
    fn, found = _inner_attack(attack)
    samples = check_positive_int(samples, "samples")
    eval_samples = check_positive_int(eval_samples, "eval_samples")
    average = _check_average(average)
    transforms = _check_transforms(transforms)
    if found is not None:
        if found.name == "eot":
            raise UserError("eot: the inner attack cannot be eot itself; pick e.g. 'pgd'")
        if isinstance(threat, ThreatModel) and threat.name not in found.norms:
            raise UserError(
                f"eot: the inner attack {found.name} does not support the {threat.name} threat "
                f"model; it supports {', '.join(sorted(found.norms))}"
            )
        if targeted and not found.targeted:
            raise UserError(f"eot: the inner attack {found.name} has no targeted variant")
    with frozen_eval(model):
        problem = Problem("eot", model, x, y, threat, targeted)
        wrapped = EOTModel(
            model, transforms, samples, average=average, seed=seed, generator=generator
        )
        kwargs = dict(attack_kwargs)
        if _accepts(fn, "early_stop"):
            kwargs.setdefault("early_stop", False)
        if _accepts(fn, "seed"):
            kwargs.setdefault("seed", seed)
        if generator is not None and _accepts(fn, "generator"):
            kwargs.setdefault("generator", generator)
        inner = fn(wrapped, problem.x, problem.y, threat, targeted=targeted, **kwargs)
        if not isinstance(inner, AttackResult):
            raise UserError(f"eot: the inner attack must return an AttackResult; got {inner!r}")
        return finish_under_transforms(
            problem,
            inner.x_adv,
            transforms=transforms,
            eval_samples=eval_samples,
            average=average,
            seed=seed,
            generator=generator,
            loss=inner.loss.to(problem.x.dtype) if problem.n else None,
            extra_queries=inner.queries * samples if problem.n else None,
        )
