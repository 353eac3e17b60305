r"""Differentiable, batched, randomly parameterized image transforms.

The physical world does not show a classifier the exact pixels an attacker computed: the
camera sees the object rotated, farther or closer, shifted, under other lighting, with sensor
noise and blur (Kurakin, Goodfellow & Bengio 2016, "Adversarial examples in the physical
world"). Expectation over Transformation (Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing
Robust Adversarial Examples") models this as a distribution :math:`T` over transforms
:math:`t` and optimizes :math:`\mathbb{E}_{t \sim T}[\log P(y_t \mid t(x'))]`; its gradient is
estimated by averaging over a few transforms drawn afresh at every step. This module gives the
distribution; :mod:`advml.attacks.eot` the attack.

Every transform here

* acts on a batch in ``[0, 1]`` (NCHW for the geometric ones and blur; any shape ``(N, ...)``
  for brightness/contrast and noise) and returns values in ``[0, 1]`` (each transform clamps
  to the box; bilinear resampling pads with zeros, a black background);
* is differentiable in the input (``grid_sample``, ``conv2d``, affine arithmetic): gradients
  flow back through it to the attack;
* draws its **own parameters per sample** (and per copy) from a random source: a
  ``torch.Generator``, an advml random source (:class:`advml.threats.RandomSource`, e.g. the
  per-sample keyed :class:`advml.attacks.rng.KeyedRNG`) or ``None`` (torch's global
  generator). Parameters are drawn with shape ``(N, samples, ...)`` so a keyed source gives
  every sample its own, batch-independent draws;
* is the identity, exactly, at its zero parameters (angle 0, scale 1, no shift, brightness
  0, contrast 1, sigma 0).

``transform.sample(x, generator, samples=K)`` returns ``K`` transformed copies of every input,
stacked on the batch dimension **sample-major** (rows ``i*K .. i*K+K-1`` are copies of
``x[i]``), so ``out.reshape(N, K, ...)`` groups them; ``transform(x, generator, samples)`` is
the same call, usable inside a forward pass (transforms are parameter-free ``nn.Module``\ s).
:class:`Compose` chains transforms, each drawing its own parameters.

>>> t = Compose([Affine(rotation=15, translation=1), BrightnessContrast(0.1), GaussianNoise(0.05)])
>>> x_t = t.sample(x, torch.Generator().manual_seed(0), samples=8)  # (8 N, C, H, W)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.threats import Generator, _uniform

__all__ = [
    "Affine",
    "BrightnessContrast",
    "Compose",
    "GaussianBlur",
    "GaussianNoise",
    "RandomTransform",
    "Rotation",
    "Scale",
    "Translation",
    "physical",
]


def _range(value: float | Sequence[float], what: str, center: float = 0.0) -> tuple[float, float]:
    """``a`` -> ``(center - a, center + a)``; ``(lo, hi)`` passes through; validated."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be a number or a (low, high) pair, not a bool")
    if isinstance(value, (int, float)):
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{what} must be a finite number >= 0; got {value!r}")
        return center - value, center + value
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number or a (low, high) pair; got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise UserError(f"{what} needs finite low <= high; got ({lo!r}, {hi!r})")
    return lo, hi


def _check_samples(samples: object) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UserError(f"samples must be an integer >= 1; got {samples!r}")
    return samples


def _check_input(x: Tensor, name: str, image: bool) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise UserError(f"{name}: x must be a floating-point tensor of shape (N, ...)")
    if image and x.ndim != 4:
        raise UserError(
            f"{name} needs images of shape (N, C, H, W); got shape {tuple(x.shape)} "
            "(use brightness/contrast or noise for other inputs)"
        )
    if not image and x.ndim < 1:
        raise UserError(f"{name}: x needs a batch dimension, shape (N, ...)")


def _draw(generator: Generator, n: int, k: int, shape: tuple[int, ...], x: Tensor) -> Tensor:
    """Uniform ``[0, 1)`` numbers of shape ``(n * k, *shape)``, drawn as ``(n, k, *shape)``."""
    u = _uniform(generator, (n, k, *shape), x.dtype, x.device)
    return u.to(x.dtype).reshape(n * k, *shape)


def _lerp_range(u: Tensor, lo: float, hi: float) -> Tensor:
    """``u`` in [0, 1) mapped to [lo, hi]; exactly ``lo`` when ``lo == hi``."""
    return lo + (hi - lo) * u if hi > lo else torch.full_like(u, lo)


def _rows(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape((-1,) + (1,) * (like.ndim - 1))


class RandomTransform(nn.Module):
    """Base class: a distribution over transforms with per-sample parameters.

    Subclasses define :meth:`draw` (parameters ``(rows, P)`` for ``n`` inputs times ``k``
    copies) and :meth:`apply` (the transform for given parameters, differentiable in ``x``).
    """

    #: Whether the transform needs NCHW images (geometric transforms, blur).
    image_only: bool = False

    def draw(self, x: Tensor, n: int, k: int, generator: Generator) -> Tensor:  # pragma: no cover
        """Parameters for ``n`` inputs, ``k`` copies each: shape ``(n * k, P)``, sample-major."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Tensor) -> Tensor:  # pragma: no cover
        """The transform of each row of ``x`` with its row of ``params``."""
        raise NotImplementedError

    def identity_params(self, x: Tensor) -> Tensor:  # pragma: no cover
        """The parameters (one row per input) of the identity transform."""
        raise NotImplementedError

    def _transform(self, xs: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        _check_input(xs, type(self).__name__, self.image_only)
        return self.apply(xs, self.draw(xs, n, k, generator))

    def sample(self, x: Tensor, generator: Generator = None, samples: int = 1) -> Tensor:
        """``samples`` randomly transformed copies of each input, sample-major on dim 0."""
        samples = _check_samples(samples)
        _check_input(x, type(self).__name__, self.image_only)
        n = int(x.shape[0])
        xs = x.repeat_interleave(samples, dim=0) if samples > 1 else x
        return self._transform(xs, n, samples, generator)

    def forward(self, x: Tensor, generator: Generator = None, samples: int = 1) -> Tensor:
        return self.sample(x, generator, samples)


class Affine(RandomTransform):
    """Random rotation, scaling and translation about the image center, in one resampling.

    Per sample: angle ``~ U(rotation)`` degrees (a number ``a`` means ``(-a, a)``), scale
    ``~ U(scale)`` (``> 1`` zooms in), shifts ``~ U(translation)`` pixels along each axis.
    Output pixel ``p`` (centered pixel coordinates) shows the input at
    ``R(-angle) (p - shift) / scale`` (bilinear, zero padding), so the content turns by
    ``angle``, grows by ``scale`` and moves by ``shift``. Rows whose parameters are the
    identity are returned unchanged, bit for bit.
    """

    image_only = True

    def __init__(
        self,
        rotation: float | Sequence[float] = 0.0,
        scale: float | Sequence[float] = (1.0, 1.0),
        translation: float | Sequence[float] = 0.0,
        *,
        mode: str = "bilinear",
        padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.rotation = _range(rotation, "rotation (degrees)")
        self.scale = _range(scale, "scale", center=1.0)
        if self.scale[0] <= 0:
            raise UserError(f"scale must stay > 0; got range {self.scale}")
        self.translation = _range(translation, "translation (pixels)")
        if mode not in ("bilinear", "nearest"):
            raise UserError(f"mode must be 'bilinear' or 'nearest'; got {mode!r}")
        if padding not in ("zeros", "border", "reflection"):
            raise UserError(f"padding must be 'zeros', 'border' or 'reflection'; got {padding!r}")
        self.mode, self.padding = mode, padding

    def extra_repr(self) -> str:
        return f"rotation={self.rotation}, scale={self.scale}, translation={self.translation}"

    def draw(self, x: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        u = _draw(generator, n, k, (4,), x)
        return torch.stack(
            [
                _lerp_range(u[:, 0], *self.rotation),
                _lerp_range(u[:, 1], *self.scale),
                _lerp_range(u[:, 2], *self.translation),
                _lerp_range(u[:, 3], *self.translation),
            ],
            dim=1,
        )

    def identity_params(self, x: Tensor) -> Tensor:
        params = torch.zeros(x.shape[0], 4, dtype=x.dtype, device=x.device)
        params[:, 1] = 1.0
        return params

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        return affine_warp(x, params, mode=self.mode, padding=self.padding)


def affine_matrices(params: Tensor, height: int, width: int) -> Tensor:
    """``(rows, 2, 3)`` matrices for :func:`torch.nn.functional.affine_grid`.

    ``params`` rows are ``(angle in degrees, scale, shift x, shift y in pixels)``. Works in
    centered pixel units (so rotations stay rotations on non-square images) and converts to
    the normalized coordinates of ``affine_grid(align_corners=False)``.
    """
    angle = params[:, 0] * (math.pi / 180.0)
    scale, tx, ty = params[:, 1], params[:, 2], params[:, 3]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # input = M (output - t), M = R(-angle) / scale  (pixel units, centered)
    sx, sy = width / 2.0, height / 2.0
    m00, m01, m10, m11 = cos, sin, -sin, cos
    theta = torch.stack(
        [
            torch.stack([m00, m01 * sy / sx, -(m00 * tx + m01 * ty) / sx], dim=1),
            torch.stack([m10 * sx / sy, m11, -(m10 * tx + m11 * ty) / sy], dim=1),
        ],
        dim=1,
    )
    return theta


def affine_warp(
    x: Tensor, params: Tensor, *, mode: str = "bilinear", padding: str = "zeros"
) -> Tensor:
    """Rotate/scale/shift each image of ``x`` (NCHW) by its row of ``params`` (see Affine)."""
    n, _, h, w = x.shape
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    theta = affine_matrices(params.to(work.dtype), h, w)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(work, grid, mode=mode, padding_mode=padding, align_corners=False)
    out = out.to(x.dtype).clamp(0.0, 1.0)
    identity = (params[:, 0] == 0) & (params[:, 1] == 1) & (params[:, 2] == 0) & (params[:, 3] == 0)
    return torch.where(_rows(identity, x), x, out)


class Rotation(Affine):
    """Random rotation by ``U(-degrees, degrees)`` (or a ``(low, high)`` range) about the center."""

    def __init__(self, degrees: float | Sequence[float], **kwargs) -> None:
        super().__init__(rotation=degrees, **kwargs)


class Scale(Affine):
    """Random scaling by ``U(low, high)`` about the center (``Scale(0.9, 1.1)``)."""

    def __init__(self, low: float, high: float | None = None, **kwargs) -> None:
        super().__init__(scale=(low, low if high is None else high), **kwargs)


class Translation(Affine):
    """Random shift by ``U(-pixels, pixels)`` along each axis (sub-pixel, bilinear)."""

    def __init__(self, pixels: float | Sequence[float], **kwargs) -> None:
        super().__init__(translation=pixels, **kwargs)


class BrightnessContrast(RandomTransform):
    """``x' = clamp(x + (c - 1)(x - mean(x)) + b)`` with ``b ~ U(brightness)``,
    ``c ~ U(1 ± contrast)`` per sample; ``mean`` over all features of the sample.

    Works on any shape ``(N, ...)``. A number ``a`` means ``(-a, a)`` for brightness and
    ``(1 - a, 1 + a)`` for contrast; pass pairs for explicit ranges.
    """

    def __init__(
        self,
        brightness: float | Sequence[float] = 0.0,
        contrast: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__()
        self.brightness = _range(brightness, "brightness")
        self.contrast = _range(contrast, "contrast", center=1.0)
        if self.contrast[0] < 0:
            raise UserError(f"contrast factors must be >= 0; got range {self.contrast}")

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}"

    def draw(self, x: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        u = _draw(generator, n, k, (2,), x)
        return torch.stack(
            [_lerp_range(u[:, 0], *self.brightness), _lerp_range(u[:, 1], *self.contrast)], dim=1
        )

    def identity_params(self, x: Tensor) -> Tensor:
        params = torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device)
        params[:, 1] = 1.0
        return params

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        b, c = _rows(params[:, 0], x), _rows(params[:, 1], x)
        mean = x.reshape(x.shape[0], -1).mean(dim=1) if x[0].numel() else x.new_zeros(len(x))
        return (x + (c - 1) * (x - _rows(mean, x)) + b).clamp(0.0, 1.0)


class GaussianNoise(RandomTransform):
    """Additive Gaussian noise ``x' = clamp(x + sigma * eps)``, ``eps ~ N(0, I)`` per feature.

    ``sigma`` is a number or a ``(low, high)`` range drawn per sample. Any shape ``(N, ...)``.
    Normal numbers come from the random source by the Box-Muller transform (so a keyed source
    gives batch-independent noise).
    """

    def __init__(self, sigma: float | Sequence[float] = 0.05) -> None:
        super().__init__()
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            self.sigma = _range((float(sigma), float(sigma)), "sigma")
        else:
            self.sigma = _range(sigma, "sigma")
        if self.sigma[0] < 0:
            raise UserError(f"sigma must be >= 0; got {self.sigma}")

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def draw(self, x: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        feat = tuple(x.shape[1:])
        sigma = _lerp_range(_draw(generator, n, k, (1,), x), *self.sigma)
        u1 = _draw(generator, n, k, feat, x).reshape(n * k, -1)
        u2 = _draw(generator, n, k, feat, x).reshape(n * k, -1)
        normal = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)
        return torch.cat([sigma, normal], dim=1)

    def identity_params(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], 1 + x[0].numel(), dtype=x.dtype, device=x.device)

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        noise = (params[:, :1] * params[:, 1:]).reshape(x.shape)
        return (x + noise).clamp(0.0, 1.0)


class GaussianBlur(RandomTransform):
    """Gaussian blur with a per-sample standard deviation ``sigma ~ U(sigma)`` (pixels).

    A separable kernel of ``kernel_size`` taps (default ``2 ceil(3 sigma_max) + 1``), edges
    replicated, one grouped convolution per axis for the whole batch. ``sigma = 0`` is the
    identity (a delta kernel).
    """

    image_only = True

    def __init__(
        self, sigma: float | Sequence[float] = (0.0, 1.0), kernel_size: int | None = None
    ) -> None:
        super().__init__()
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            self.sigma = _range((0.0, float(sigma)), "sigma")
        else:
            self.sigma = _range(sigma, "sigma")
        if self.sigma[0] < 0:
            raise UserError(f"sigma must be >= 0; got {self.sigma}")
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * self.sigma[1]) + 1
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise UserError(f"kernel_size must be an odd integer >= 1; got {kernel_size!r}")
        if kernel_size % 2 == 0:
            raise UserError(f"kernel_size must be odd; got {kernel_size}")
        self.kernel_size = kernel_size

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, kernel_size={self.kernel_size}"

    def draw(self, x: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        return _lerp_range(_draw(generator, n, k, (1,), x), *self.sigma)

    def identity_params(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        n, c, h, w = x.shape
        r = self.kernel_size // 2
        if r == 0:
            return x
        taps = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        sigma = params[:, :1].clamp_min(1e-6)
        kernel = torch.exp(-0.5 * (taps / sigma).square())  # (n, K); sigma -> 0: a delta
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        kernel = kernel.repeat_interleave(c, dim=0)  # (n c, K)
        flat = x.reshape(1, n * c, h, w)
        flat = F.pad(flat, (r, r, r, r), mode="replicate")
        flat = F.conv2d(flat, kernel.reshape(n * c, 1, 1, -1), groups=n * c)
        flat = F.conv2d(flat, kernel.reshape(n * c, 1, -1, 1), groups=n * c)
        return flat.reshape(n, c, h, w).clamp(0.0, 1.0)


class Compose(RandomTransform):
    """Apply transforms in order; each draws its own parameters for every copy.

    ``Compose([])`` is the identity. Geometric transforms and blur need NCHW images.
    """

    def __init__(self, transforms: Sequence[RandomTransform]) -> None:
        super().__init__()
        items = list(transforms)
        for t in items:
            if not isinstance(t, RandomTransform):
                raise UserError(f"Compose takes advml.transforms objects; got {type(t).__name__}")
        self.transforms = nn.ModuleList(items)
        self.image_only = any(t.image_only for t in items)

    def _transform(self, xs: Tensor, n: int, k: int, generator: Generator) -> Tensor:
        for t in self.transforms:
            xs = t._transform(xs, n, k, generator)
        return xs


def physical(
    rotation: float = 15.0,
    scale: float | Sequence[float] = (1.0, 1.0),
    translation: float = 1.0,
    brightness: float = 0.1,
    contrast: float = 0.0,
    noise: float = 0.05,
    blur: float = 0.0,
) -> Compose:
    """A ready-made EOT distribution: one affine resampling, lighting, blur, sensor noise.

    Defaults are mild enough for 8x8 digits (±15°, ±1 px, ±0.1 brightness, σ = 0.05 noise);
    a zero turns a component off.
    """
    parts: list[RandomTransform] = []
    if rotation or translation or tuple(_range(scale, "scale", 1.0)) != (1.0, 1.0):
        parts.append(Affine(rotation=rotation, scale=scale, translation=translation))
    if brightness or contrast:
        parts.append(BrightnessContrast(brightness, contrast))
    if blur:
        parts.append(GaussianBlur((0.0, blur)))
    if noise:
        parts.append(GaussianNoise(noise))
    return Compose(parts)
