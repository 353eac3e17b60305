r"""Adversarial patch (Brown, Mané, Roy, Abadi & Gilmer 2017, "Adversarial Patch").

A patch is a small picture :math:`p` (a square or a disc covering a fraction of the image)
that, pasted **anywhere** on **any** image, makes the classifier output the target class
:math:`\hat y`. It is universal (one patch for all images) and trained by Expectation over
Transformation over images :math:`x \sim X`, locations :math:`l \sim L` and patch transforms
:math:`t \sim T` (rotation, scale):

.. math::  \hat p = \arg\max_p \; \mathbb{E}_{x \sim X,\, t \sim T,\, l \sim L}
           \big[\log \Pr(\hat y \mid A(p, x, l, t))\big],

where :math:`A(p, x, l, t) = (1 - m) \odot x + m \odot p'` pastes the transformed patch
:math:`p'` with its mask :math:`m` at :math:`l`. Training ascends this objective with Adam on
minibatches of images, every image with its own random location (and rotation/scale); the
patch is projected onto the box after every step. ``transforms=`` adds whole-image transforms
(:mod:`advml.transforms`: lighting, noise, ...) applied after pasting.

**The threat model of a patch is its region, not an Lp ball.** The contract, checked on every
output of :func:`patch` (and of :func:`apply_patch`) by :func:`check_confined`, which raises
:class:`~advml.attacks.ThreatViolation`:

* outside the pasted mask (``m == 0``) ``x_adv == x`` exactly;
* inside it every feature lies in the box ``[low, high]`` (and is finite).

The registered attack additionally keeps advml's rule that every result lies in the attack's
threat model: the patched image is projected onto ``threat`` (the projections never move an
unchanged feature, so the result stays confined to the patch). Pass ``Linf(1.0)`` (the box:
no intensity limit) or ``L0(k)`` with ``k`` at least the patch's features for Brown et al.'s
unconstrained patch; a smaller ball gives a fainter, semi-transparent patch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, ThreatViolation, frozen_eval
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import Generator, ThreatModel, _uniform
from advml.transforms import RandomTransform, _range

__all__ = ["Patch", "apply_patch", "check_confined", "patch", "patch_mask", "train_patch"]


@dataclasses.dataclass
class Patch:
    """A trained patch.

    Attributes:
        pixels: ``(C, s, s)`` the patch's values, in ``[low, high]``.
        mask: ``(s, s)`` float, 1 on the patch's shape (square or disc), 0 elsewhere.
        target: the target class, or ``None`` for an untargeted patch.
        rotation: the rotation range (degrees) it was trained under; :func:`apply_patch`
            uses it by default.
        scale: the scale range it was trained under.
        low, high: the box.
        image_size: ``(H, W)`` of the training images.
        train_success: success rate on the training images at the last step (random
            locations), for information.
    """

    pixels: Tensor
    mask: Tensor
    target: int | None = None
    rotation: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    low: float = 0.0
    high: float = 1.0
    image_size: tuple[int, int] = (0, 0)
    train_success: float = math.nan

    @property
    def side(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def area(self) -> int:
        """Pixels covered by the (unscaled) patch."""
        return int((self.mask > 0).sum())

    def to(self, *args, **kwargs) -> Patch:
        """A copy on another device / dtype (``Tensor.to`` arguments)."""
        return dataclasses.replace(
            self, pixels=self.pixels.to(*args, **kwargs), mask=self.mask.to(*args, **kwargs)
        )


def patch_mask(side: int, shape: str = "square", *, dtype=torch.float32, device=None) -> Tensor:
    """An ``(side, side)`` 0/1 mask: all ones (``"square"``) or the pixels whose centers lie
    in the inscribed disc (``"circle"``)."""
    side = check_positive_int(side, "patch side")
    if shape == "square":
        return torch.ones(side, side, dtype=dtype, device=device)
    if shape == "circle":
        c = torch.arange(side, dtype=torch.float64) + 0.5 - side / 2
        inside = (c.reshape(-1, 1) ** 2 + c.reshape(1, -1) ** 2) <= (side / 2) ** 2
        return inside.to(dtype=dtype, device=device)
    raise UserError(f"patch shape must be 'square' or 'circle'; got {shape!r}")


def _side(size: float | int, shape: str, height: int, width: int) -> int:
    """Patch side from ``size``: a fraction of the image area (float < 1) or pixels (int)."""
    if isinstance(size, bool):
        raise UserError("size must be a fraction of the image area or a side in pixels")
    if isinstance(size, int):
        side = size
    else:
        size = float(size)
        if not (0 < size < 1):
            raise UserError(
                f"size must be a fraction of the image area in (0, 1) or an int side; got {size}"
            )
        area = size * height * width * (4 / math.pi if shape == "circle" else 1.0)
        side = max(1, round(math.sqrt(area)))
    if not 1 <= side <= min(height, width):
        raise UserError(f"the patch side {side} must fit in the {height}x{width} image")
    return side


def _check_images(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"{who} needs float images of shape (N, C, H, W); got {shape}")


def check_confined(
    x_adv: Tensor, x: Tensor, mask: Tensor, low: float, high: float, who: str
) -> None:
    """Raise :class:`ThreatViolation` unless ``x_adv`` equals ``x`` wherever ``mask`` is 0 and
    lies in ``[low, high]`` (finite) everywhere. ``mask`` broadcasts against ``x``."""
    region = torch.broadcast_to(mask != 0, x.shape)
    moved = (x_adv != x) & ~region
    outside = ~torch.isfinite(x_adv) | (x_adv < low) | (x_adv > high)
    if moved.any() or outside.any():
        per = x.reshape(x.shape[0], -1)
        bad_moved = int(moved.reshape(per.shape).any(dim=1).sum())
        bad_box = int(outside.reshape(per.shape).any(dim=1).sum())
        raise ThreatViolation(
            f"{who} changed features outside its mask in {bad_moved} and left the box "
            f"[{low:g}, {high:g}] in {bad_box} of {x.shape[0]} inputs; this is a bug in advml, "
            "please report it"
        )


def _placement(
    n: int,
    height: int,
    width: int,
    side: int,
    rotation: tuple[float, float],
    scale: tuple[float, float],
    location,
    source: Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Per-image placement ``(n, 4)``: top, left (pixels), angle (degrees), scale."""
    u = _uniform(source, (n, 4), dtype, device).to(dtype)
    angle = rotation[0] + (rotation[1] - rotation[0]) * u[:, 2]
    factor = scale[0] + (scale[1] - scale[0]) * u[:, 3]
    extent = torch.ceil(side * factor - 1e-6).clamp_max(min(height, width))
    if isinstance(location, str) and location == "random":
        top = torch.floor(u[:, 0] * (height - extent + 1)).clamp_max(height - extent)
        left = torch.floor(u[:, 1] * (width - extent + 1)).clamp_max(width - extent)
        top = top + (extent - side * factor) / 2  # center the scaled patch in its cell
        left = left + (extent - side * factor) / 2
    elif location is None:
        top = (height - side * factor) / 2
        left = (width - side * factor) / 2
    else:
        loc = torch.as_tensor(location, dtype=dtype, device=device)
        if loc.shape == (2,):
            loc = loc.expand(n, 2)
        if loc.shape != (n, 2):
            raise UserError(
                "location must be 'random', None (centered), a (top, left) pair or a tensor "
                f"of shape (N, 2); got shape {tuple(loc.shape)}"
            )
        top, left = loc[:, 0], loc[:, 1]
    return torch.stack([top, left, angle, factor], dim=1)


def _paste(
    x: Tensor, pixels: Tensor, mask: Tensor, place: Tensor, low: float, high: float
) -> tuple[Tensor, Tensor]:
    """Paste ``pixels``/``mask`` on every image at ``place``; differentiable in ``pixels``.

    One bilinear ``grid_sample`` of the ``(C + 1)``-channel patch (values and mask) per image,
    zero outside it. The mask is snapped to exactly 0 / 1 within 1e-6 (so integer placements
    are exact). Returns ``(x_adv, m)`` with ``m`` of shape ``(N, 1, H, W)`` and
    ``x_adv == x`` exactly where ``m == 0``.
    """
    n, c, h, w = x.shape
    side = pixels.shape[-1]
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    top, left, angle, factor = (place[:, i].to(work) for i in range(4))
    rad = angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad) / factor, torch.sin(rad) / factor
    # patch center relative to the image center, in pixels
    dx = left + side * factor / 2 - w / 2
    dy = top + side * factor / 2 - h / 2
    half = side / 2
    # q = R(-angle) (p - d) / factor, normalized by the patch half-side
    theta = (
        torch.stack(
            [
                torch.stack([cos * (w / 2), sin * (h / 2), -(cos * dx + sin * dy)], dim=1),
                torch.stack([-sin * (w / 2), cos * (h / 2), -(-sin * dx + cos * dy)], dim=1),
            ],
            dim=1,
        )
        / half
    )
    mask = mask.to(work).unsqueeze(0)
    source = torch.cat([pixels.to(work) * mask, mask], dim=0)  # premultiplied by the mask
    source = source.unsqueeze(0).expand(n, c + 1, side, side)
    grid = F.affine_grid(theta, [n, c + 1, h, w], align_corners=False)
    canvas = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    exact = (angle == 0) & (factor == 1) & (top == torch.round(top)) & (left == torch.round(left))
    if bool(exact.any()):  # whole-pixel placements: copy by indexing, bit for bit
        rows = torch.arange(h, device=x.device) - torch.round(top).long().reshape(-1, 1)
        cols = torch.arange(w, device=x.device) - torch.round(left).long().reshape(-1, 1)
        valid = ((rows >= 0) & (rows < side)).unsqueeze(2) & (
            (cols >= 0) & (cols < side)
        ).unsqueeze(1)
        picked = source[0][
            :, rows.clamp(0, side - 1).unsqueeze(2), cols.clamp(0, side - 1).unsqueeze(1)
        ]
        copied = torch.where(valid.unsqueeze(1), picked.movedim(0, 1), torch.zeros_like(canvas))
        canvas = torch.where(exact.reshape(-1, 1, 1, 1), copied, canvas)
    m = canvas[:, c:]
    m = torch.where(m < 1e-6, torch.zeros_like(m), m)
    m = torch.where(m > 1 - 1e-6, torch.ones_like(m), m)
    # premultiplied values: canvas = m * p'; recover p' where m > 0
    value = canvas[:, :c] / m.clamp_min(1e-6)
    value = value.clamp(low, high)
    mixed = torch.lerp(x.to(work), value, m).clamp(low, high)
    x_adv = torch.where(m > 0, mixed, x.to(work)).to(x.dtype)
    return x_adv, m.to(x.dtype)


def apply_patch(
    x: Tensor,
    patch: Patch,
    location: str | Sequence[float] | Tensor | None = "random",
    *,
    rotation: float | Sequence[float] | None = None,
    scale: float | Sequence[float] | None = None,
    generator: Generator = None,
    seed: int | None = None,
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Paste ``patch`` on every image of ``x`` (NCHW).

    Args:
        location: ``"random"`` (a uniformly random whole-pixel position per image, the patch
            fully inside), ``None`` (centered), a ``(top, left)`` pair in pixels, or ``(N, 2)``.
        rotation, scale: ranges to draw from per image (default: the patch's training ranges;
            ``0`` / ``1`` for none).
        generator: a ``torch.Generator`` or advml random source for the random placement;
            ``seed`` (an int) keys it per image by the image's values instead (independent of
            batching). Neither: torch's global generator.
        return_mask: also return the pasted mask ``(N, 1, H, W)``.

    The result is checked with :func:`check_confined` (changes only under the mask, in the box).
    """
    _check_images(x, "apply_patch")
    if not isinstance(patch, Patch):
        raise UserError(f"apply_patch needs a Patch (from train_patch); got {type(patch).__name__}")
    if patch.pixels.shape[0] != x.shape[1]:
        raise UserError(
            f"the patch has {patch.pixels.shape[0]} channels but the images have {x.shape[1]}"
        )
    n, _, h, w = x.shape
    rot = patch.rotation if rotation is None else _range(rotation, "rotation")
    sc = patch.scale if scale is None else _range(scale, "scale", center=1.0)
    if sc[0] <= 0:
        raise UserError(f"scale must stay > 0; got {sc}")
    if patch.side * sc[1] > min(h, w) + 1e-6:
        raise UserError(
            f"the patch (side {patch.side}, scale {sc[1]:g}) does not fit a {h}x{w} image"
        )
    if seed is not None and generator is not None:
        raise UserError("apply_patch: give either seed or generator, not both")
    if seed is not None:
        source = make_rng(x, seed, None)
    elif isinstance(generator, torch.Generator):
        source = TorchRNG(generator)
    else:
        source = generator
    place = _placement(n, h, w, patch.side, rot, sc, location, source, x.dtype, x.device)
    with torch.no_grad():
        x_adv, m = _paste(
            x.detach(),
            patch.pixels.to(x.device),
            patch.mask.to(x.device),
            place,
            patch.low,
            patch.high,
        )
    check_confined(x_adv, x.detach(), m, patch.low, patch.high, "apply_patch")
    return (x_adv, m) if return_mask else x_adv


def train_patch(
    model: nn.Module,
    x: Tensor,
    target: int | None = None,
    *,
    y: Tensor | None = None,
    size: float | int = 0.12,
    shape: str = "square",
    steps: int = 200,
    batch_size: int = 128,
    lr: float = 0.05,
    rotation: float | Sequence[float] = 0.0,
    scale: float | Sequence[float] = (1.0, 1.0),
    location: str | Sequence[float] | None = "random",
    transforms: RandomTransform | None = None,
    loss: str | Loss = "ce",
    low: float = 0.0,
    high: float = 1.0,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> Patch:
    """Train a universal patch on the images ``x`` (NCHW) by EOT over location (and
    rotation/scale, and ``transforms``).

    Args:
        target: the target class (a targeted patch, Brown et al.), or ``None`` for an
            untargeted patch that maximizes the loss of the true labels ``y``.
        size: the patch's area as a fraction of the image (float in (0, 1)) or its side in
            pixels (int). ``shape``: ``"square"`` or ``"circle"``.
        steps, batch_size, lr: Adam steps on minibatches of ``batch_size`` images drawn with
            replacement (every image with its own random placement).
        rotation, scale: ranges drawn per image and step (degrees; a number ``a`` means
            ``±a`` for rotation).
        transforms: whole-image transforms applied after pasting (e.g. lighting, noise).
        loss: ``"ce"`` (the paper's log-likelihood), ``"margin"`` or a callable, as for attacks.
        seed / generator: the random source (minibatches, placements, initial patch).

    Returns a :class:`Patch`. The model is put in eval mode and restored (``frozen_eval``).
    """
    _check_images(x, "train_patch")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UserError(f"lr must be a finite number > 0; got {lr!r}")
    n, c, h, w = x.shape
    if n == 0:
        raise UserError("train_patch needs at least one training image")
    x = x.detach()
    if not torch.isfinite(x).all() or x.min() < low or x.max() > high:
        raise UserError(f"train_patch: the images must be finite and lie in [{low:g}, {high:g}]")
    targeted = target is not None
    if targeted:
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise UserError(f"target must be a class index (int >= 0) or None; got {target!r}")
        labels = torch.full((n,), target, dtype=torch.long, device=x.device)
    else:
        if y is None:
            raise UserError("an untargeted patch needs the true labels: train_patch(..., y=labels)")
        labels = torch.as_tensor(y, device=x.device).long().reshape(-1)
        if labels.shape[0] != n:
            raise UserError(f"y must have shape ({n},); got {tuple(labels.shape)}")
    rot = _range(rotation, "rotation")
    sc = _range(scale, "scale", center=1.0)
    if sc[0] <= 0:
        raise UserError(f"scale must stay > 0; got {sc}")
    side = _side(size, shape, h, w)
    if side * sc[1] > min(h, w) + 1e-6:
        raise UserError(f"the patch (side {side}, scale up to {sc[1]:g}) does not fit {h}x{w}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    elif not isinstance(generator, torch.Generator):
        raise UserError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    source = TorchRNG(generator)
    goal = objective(loss, labels, targeted)
    mask = patch_mask(side, shape, dtype=x.dtype, device=x.device)
    init = _uniform(generator, (c, side, side), x.dtype, x.device).to(x.dtype)
    pixels = (low + (high - low) * init).requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    rate = math.nan
    with frozen_eval(model), torch.enable_grad():
        for _ in range(steps):
            idx = (
                torch.floor(_uniform(generator, (batch_size,), torch.float64, x.device) * n)
                .long()
                .clamp_max(n - 1)
            )
            batch = x[idx]
            place = _placement(batch_size, h, w, side, rot, sc, location, source, x.dtype, x.device)
            pasted, _ = _paste(batch, pixels, mask, place, low, high)
            if transforms is not None:
                pasted = transforms.sample(pasted, source, 1)
            logits = model(pasted)
            value = goal(logits, idx)
            optimizer.zero_grad(set_to_none=True)
            (-value.mean()).backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(low, high)
                pred = logits.argmax(dim=1)
                hit = pred == labels[idx] if targeted else pred != labels[idx]
                rate = float(hit.float().mean())
    return Patch(
        pixels.detach(),
        mask,
        target if targeted else None,
        rot,
        sc,
        float(low),
        float(high),
        (h, w),
        rate,
    )


@register(
    "patch",
    norms=("linf", "l2", "l1", "l0"),
    targeted=True,
    kind="gradient",
    paper="Brown, Mané, Roy, Abadi & Gilmer 2017, Adversarial Patch",
    defaults="size = 0.12 of the image, square, 200 Adam steps (lr 0.05, batch 128), "
    "random location",
)
def patch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    patch: Patch | None = None,
    location: str | Sequence[float] | Tensor | None = "random",
    train_x: Tensor | None = None,
    train_y: Tensor | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    **train_kwargs,
) -> AttackResult:
    """Paste a universal patch on every image (NCHW) and report what the model says.

    Args:
        patch: a trained :class:`Patch`. ``None``: train one with :func:`train_patch` on
            ``train_x`` (default: ``x`` itself) with ``**train_kwargs``; targeted: one patch
            per distinct target in ``y`` (a universal patch has one target); untargeted: on
            the labels ``train_y`` (default ``y``).
        location: where to paste (see :func:`apply_patch`); ``"random"`` draws a position per
            image keyed by its values (``seed``): independent of batching.
        seed / generator: random placement (and training, when a patch is trained here).

    The patched images are projected onto ``threat`` (no-op for ``Linf(1.0)``, the box), then
    checked twice: confined to the pasted mask and in the box (:func:`check_confined`), and
    inside ``threat`` (``ThreatViolation`` otherwise). ``success`` is the model's verdict on
    the returned images; ``queries`` counts training forward passes per training image when
    ``train_x`` is ``x``.
    """
    if patch is not None and not isinstance(patch, Patch):
        raise UserError(f"patch must be a Patch from train_patch or None; got {type(patch)}")
    with frozen_eval(model):
        problem = Problem("patch", model, x, y, threat, targeted)
        _check_images(problem.x, "patch")
        if problem.n == 0:
            return problem.finish(problem.x)
        n, _, h, w = problem.x.shape
        # seed=None: training draws its seed from torch's global generator, like the placement
        train_seed = int(torch.randint(2**31 - 1, ()).item()) if seed is None else seed
        patches: dict[int | None, Patch] = {}
        if patch is not None:
            patches = {None: patch}
        else:
            data = problem.x if train_x is None else train_x.detach().to(problem.x)
            opts = {"low": threat.low, "high": threat.high, "seed": train_seed, **train_kwargs}
            if generator is not None:
                opts["generator"] = generator
            if targeted:
                for t in torch.unique(problem.y).tolist():
                    patches[int(t)] = train_patch(model, data, int(t), **opts)
            else:
                labels = problem.y if train_y is None else train_y
                patches[None] = train_patch(model, data, None, y=labels, **opts)
            if train_x is None:
                steps = int(train_kwargs.get("steps", 200))
                batch = int(train_kwargs.get("batch_size", 128))
                per_image = steps * batch * len(patches) // n
                problem.queries += per_image
        x_adv = problem.x.clone()
        region = torch.zeros(n, 1, h, w, dtype=problem.x.dtype, device=problem.x.device)
        for key, item in patches.items():
            rows = (
                torch.arange(n, device=problem.x.device)
                if key is None
                else (problem.y == key).nonzero().squeeze(1)
            )
            where = location
            if isinstance(location, Tensor) and location.ndim == 2:
                where = location.to(problem.x.device)[rows]
            pasted, m = apply_patch(
                problem.x[rows],
                item.to(dtype=problem.x.dtype),
                where,
                generator=generator,
                seed=seed if generator is None else None,
                return_mask=True,
            )
            x_adv[rows] = pasted
            region[rows] = m
        x_adv = threat.project(x_adv, problem.x)
        check_confined(x_adv, problem.x, region, threat.low, threat.high, "patch")
        return problem.finish(x_adv)
