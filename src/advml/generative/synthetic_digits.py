"""Synthetic digits rendered from the machine's fonts: the "simulator" of the sim-to-real
experiments (SimGAN, Shrivastava et al. 2017; PixelDA, Bousmalis et al. 2017).

Each digit ``0..9`` of each TrueType/OpenType font found (:func:`find_fonts`: ``fc-list``,
else the usual font folders) is rendered once with PIL, white on black, cropped to its ink,
scaled to fit a ``20 x 20`` box and centred by its centre of mass in a ``28 x 28`` frame — the
normalization of MNIST (LeCun et al. 1998). :func:`render_digits` then draws ``n`` samples:
a random template each, a random affine jitter (rotation, anisotropic scale, shear,
translation; one batched ``affine_grid`` / ``grid_sample``), random stroke thickening (a 3x3
max filter) and random contrast. Draws depend only on ``seed`` and ``n`` (and on the fonts
installed, which the returned :class:`SyntheticDigits` lists).

Without PIL or fonts, ``fonts=()`` or ``source="segments"`` draws seven-segment digits
procedurally instead (the same jitter applies).
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from advml.errors import UserError

__all__ = [
    "SyntheticDigits",
    "find_fonts",
    "font_templates",
    "jitter",
    "render_digits",
    "segment_templates",
]

FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts")
_SUFFIXES = (".ttf", ".otf")
_BOX, _FRAME = 20, 28


@dataclass
class SyntheticDigits:
    """``x`` ``(n, 1, size, size)`` in ``[0, 1]``, labels ``y``, the template of each sample
    and what the templates were drawn from (font files or ``"seven-segment"``)."""

    x: Tensor
    y: Tensor
    template: Tensor
    sources: list[str] = field(default_factory=list)


def find_fonts(folders: Sequence[str] = FONT_DIRS) -> list[Path]:
    """TrueType/OpenType files on this machine: ``fc-list`` if present, else the files under
    ``folders``; sorted, without duplicates."""
    found: set[Path] = set()
    if shutil.which("fc-list"):
        try:
            listing = subprocess.run(
                ["fc-list", "--format", "%{file}\\n"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
            found = {Path(line) for line in listing.splitlines() if line.endswith(_SUFFIXES)}
        except (OSError, subprocess.SubprocessError):
            found = set()
    if not found:
        for folder in folders:
            root = Path(folder).expanduser()
            if root.is_dir():
                found |= {p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES}
    return sorted(p for p in found if p.is_file())


def _normalize(glyph: Tensor, size: int) -> Tensor:
    """Crop ``glyph`` (H, W) to its ink, fit it in a 20/28 box, centre it by mass."""
    rows, cols = glyph.sum(1).nonzero().flatten(), glyph.sum(0).nonzero().flatten()
    ink = glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = max(1, round(size * _BOX / _FRAME))
    scale = box / max(ink.shape)
    h, w = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    small = F.interpolate(ink[None, None], (h, w), mode="bilinear", antialias=True)[0, 0]
    small = small.clamp(0, 1)
    mass = small.sum().clamp_min(1e-6)
    cy = (small.sum(1) * torch.arange(h)).sum() / mass
    cx = (small.sum(0) * torch.arange(w)).sum() / mass
    top = min(max(round(size / 2 - 0.5 - float(cy)), 0), size - h)
    left = min(max(round(size / 2 - 0.5 - float(cx)), 0), size - w)
    frame = torch.zeros(size, size)
    frame[top : top + h, left : left + w] = small
    return frame


def _render_font(path: Path, size: int) -> Tensor | None:
    """The ten digits of one font, ``(10, size, size)``; ``None`` if it cannot draw them."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(path), 96)
    except OSError:
        return None
    glyphs = []
    for digit in "0123456789":
        canvas = Image.new("L", (192, 192), 0)
        ImageDraw.Draw(canvas).text((40, 20), digit, font=font, fill=255)
        glyph = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8)
        glyph = glyph.reshape(192, 192).float() / 255.0
        if glyph.sum() < 20:  # a font without digit glyphs (symbols, emoji)
            return None
        glyphs.append(_normalize(glyph, size))
    stack = torch.stack(glyphs)
    flat = stack.flatten(1)
    if torch.cdist(flat, flat).add(torch.eye(10) * 1e9).min() < 1.0:
        return None  # identical glyphs for different digits (a placeholder font)
    return stack


@functools.lru_cache(maxsize=8)
def _font_templates(paths: tuple[str, ...], size: int) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    rendered = [(p, _render_font(Path(p), size)) for p in paths]
    kept = [(p, t) for p, t in rendered if t is not None]
    if not kept:
        raise UserError("none of the fonts can render digits; use source='segments'")
    x = torch.cat([t for _, t in kept])[:, None]
    y = torch.arange(10).repeat(len(kept))
    return x, y, tuple(p for p, _ in kept)


def font_templates(
    fonts: Sequence[str | Path] | None = None, size: int = _FRAME
) -> tuple[Tensor, Tensor, list[str]]:
    """``(templates (10 F, 1, size, size), labels, font files)`` for the fonts (default: all
    found). Raises :class:`UserError` when PIL or fonts are missing."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise UserError("rendering fonts needs Pillow; use source='segments'") from None
    paths = [Path(f) for f in fonts] if fonts is not None else find_fonts()
    if not paths:
        raise UserError("no TrueType/OpenType fonts found; use source='segments'")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"font file not found: {missing[0]}")
    x, y, kept = _font_templates(tuple(str(p) for p in paths), size)
    return x.clone(), y.clone(), list(kept)


#: Segments a..g of each digit (a top, b top right, c bottom right, d bottom, e bottom left,
#: f top left, g middle).
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abdeg",
    3: "abcdg",
    4: "bcfg",
    5: "acdfg",
    6: "acdefg",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def segment_templates(size: int = _FRAME) -> tuple[Tensor, Tensor]:
    """Seven-segment digits ``(10, 1, size, size)`` and labels, drawn on a grid (no fonts)."""
    s = size / _FRAME
    t = max(1, round(2.5 * s))  # stroke width
    x0, x1 = round(9 * s), round(19 * s)  # left/right columns
    y0, y1, y2 = round(4 * s), round(14 * s), round(24 * s)  # top/middle/bottom rows
    boxes = {
        "a": (y0, y0 + t, x0, x1 + t),
        "b": (y0, y1 + t, x1, x1 + t),
        "c": (y1, y2 + t, x1, x1 + t),
        "d": (y2, y2 + t, x0, x1 + t),
        "e": (y1, y2 + t, x0, x0 + t),
        "f": (y0, y1 + t, x0, x0 + t),
        "g": (y1, y1 + t, x0, x1 + t),
    }
    rows = torch.arange(size)[:, None]
    cols = torch.arange(size)[None, :]
    masks = {
        k: ((rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)).float()
        for k, (r0, r1, c0, c1) in boxes.items()
    }
    x = torch.stack([sum(masks[k] for k in _SEGMENTS[d]) for d in range(10)]).clamp(0, 1)
    return x[:, None], torch.arange(10)


def jitter(
    images: Tensor,
    generator: torch.Generator,
    *,
    rotation: float = 15.0,
    scale: tuple[float, float] = (0.8, 1.1),
    shear: float = 0.2,
    shift: float = 0.1,
    thicken: float = 0.3,
    contrast: tuple[float, float] = (0.7, 1.0),
) -> Tensor:
    """Random affine jitter of ``(N, C, H, W)`` images (one batched ``grid_sample``):
    rotation in degrees, anisotropic scale, shear, translation as a fraction of the side;
    then stroke thickening with probability ``thicken`` and a random contrast factor."""
    n = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    angle = uniform(-rotation, rotation) * math.pi / 180
    sx, sy = uniform(*scale), uniform(*scale)
    k = uniform(-shear, shear)
    cos, sin = angle.cos(), angle.sin()
    # inverse map output -> input: rotate, shear, then scale (grid units are [-1, 1])
    a11, a12 = cos / sx, (-sin + k * cos) / sx
    a21, a22 = sin / sy, (cos + k * sin) / sy
    t = uniform(-2 * shift, 2 * shift, 2)
    theta = torch.stack(
        [torch.stack([a11, a12, t[:, 0]], 1), torch.stack([a21, a22, t[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    thick = torch.rand(n, generator=generator) < thicken
    out = torch.where(thick[:, None, None, None], F.max_pool2d(out, 3, 1, 1), out)
    return (out * uniform(*contrast)[:, None, None, None]).clamp(0, 1)


def render_digits(
    n: int,
    *,
    size: int = _FRAME,
    seed: int = 0,
    fonts: Sequence[str | Path] | None = None,
    source: str = "fonts",
    **jitter_options: float | tuple[float, float],
) -> SyntheticDigits:
    """``n`` jittered synthetic digits with balanced random labels (``source="fonts"``: the
    fonts found or given; ``"segments"``: seven-segment digits, no fonts needed)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"number of synthetic digits must be an integer >= 1, got {n!r}")
    if size < 8:
        raise UserError(f"synthetic digits need size >= 8, got {size}")
    if source == "fonts":
        templates, labels, sources = font_templates(fonts, size)
    elif source == "segments":
        templates, labels = segment_templates(size)
        sources = ["seven-segment"]
    else:
        raise UserError(f"unknown digit source {source!r}; use 'fonts' or 'segments'")
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(templates), (n,), generator=generator)
    x = jitter(templates[pick], generator, **jitter_options)
    return SyntheticDigits(x.contiguous(), labels[pick].clone(), pick, sources)
