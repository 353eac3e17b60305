"""Random numbers for attacks that do not depend on how samples are batched.

A :class:`KeyedRNG` is counter-based: the numbers drawn for sample ``i`` depend only on
``(seed, key_i, stream, draw, feature index)``, through the SplitMix64 finalizer computed on
int64 tensors. The key of a sample is a hash of its contents (as float32 bits), so

* the same seed gives the same random starts whatever the batch size, the order of samples
  in the batch, or which samples are still being attacked (early stopping);
* the uniform numbers are bit-identical on CPU and GPU (integer arithmetic is exact); what is
  computed from them with ``log``/``cos`` agrees to about one ulp; float64 uses 53 random
  bits, other dtypes 24;
* identical inputs get identical noise (harmless: their attacks are identical too).

:class:`TorchRNG` wraps a ``torch.Generator`` (or the global generator) behind the same
interface; it draws sample-major, so results are reproducible for the same batch only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advml.errors import UserError

__all__ = ["KeyedRNG", "TorchRNG", "make_rng"]

_MASK64 = (1 << 64) - 1


def _s64(value: int) -> int:
    """A Python int reduced mod 2**64 and written as a signed int64."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_C1 = _s64(0xBF58476D1CE4E5B9)
_C2 = _s64(0x94D049BB133111EB)


def _srl(z: Tensor, shift: int) -> Tensor:
    """Logical right shift of int64 values (torch shifts arithmetically)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def mix64(z: Tensor) -> Tensor:
    """SplitMix64 finalizer on int64 tensors (wrapping arithmetic), a bijection of 64-bit words."""
    z = z + _GOLDEN
    z = (z ^ _srl(z, 30)) * _C1
    z = (z ^ _srl(z, 27)) * _C2
    return z ^ _srl(z, 31)


def mix64_int(value: int) -> int:
    """:func:`mix64` on one Python int (reference implementation, also used for scalars)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return _s64(z ^ (z >> 31))


def content_keys(x: Tensor) -> Tensor:
    """One int64 key per sample: a hash of the sample's values rounded to float32."""
    flat = x.detach().reshape(x.shape[0], math.prod(x.shape[1:])).to(torch.float32)
    flat = (flat + 0.0).contiguous()  # -0.0 -> 0.0
    bits = flat.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    position = torch.arange(1, flat.shape[1] + 1, device=x.device, dtype=torch.int64) * _GOLDEN
    return mix64(mix64(bits + position).sum(dim=1))


class KeyedRNG:
    """Counter-based uniform numbers keyed per sample (see the module docstring).

    ``keys`` holds one int64 per row. Each call to :meth:`uniform` advances a draw counter, so
    successive draws differ; :meth:`rows` and :meth:`stream` give fresh sources (counter 0)
    for a subset of rows, a restart, or a sub-task.
    """

    def __init__(self, keys: Tensor | None, seed: int, stream: int = 0) -> None:
        self._keys = None if keys is None else keys.to(torch.int64)
        self._inputs: Tensor | None = None
        self.seed = int(seed)
        self._stream = int(stream)
        self._draw = 0

    @classmethod
    def for_inputs(cls, x: Tensor, seed: int) -> KeyedRNG:
        """A source whose row ``i`` is keyed by the contents of ``x[i]`` (hashed on first use:
        an attack that draws nothing, such as FGSM without a random start, pays nothing)."""
        rng = cls(None, seed)
        rng._inputs = x.detach()
        return rng

    @property
    def keys(self) -> Tensor:
        """One int64 key per row."""
        if self._keys is None:
            assert self._inputs is not None
            self._keys, self._inputs = content_keys(self._inputs), None
        return self._keys

    def rows(self, index: Tensor, restart: Tensor | int = 0) -> KeyedRNG:
        """A fresh source for rows ``keys[index]``, restart number ``restart`` (int or per row)."""
        keys = self.keys[index.to(self.keys.device)]
        restart = torch.as_tensor(restart, dtype=torch.int64, device=keys.device)
        keys = mix64(keys ^ mix64(restart * _C1 + 1))
        return KeyedRNG(keys, self.seed, self._stream)

    def stream(self, stream: int) -> KeyedRNG:
        """A fresh source for the same rows with another stream number (e.g. another phase)."""
        return KeyedRNG(self.keys, self.seed, stream)

    def uniform(
        self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """Uniform numbers in ``[0, 1)`` of ``shape``; ``shape[0]`` must be the number of rows."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.keys.numel():
            raise UserError(
                f"random source has {self.keys.numel()} rows but {shape} numbers were asked for"
            )
        salt = mix64_int(
            mix64_int(self.seed) ^ mix64_int(self._stream * 0x632BE59BD9B4E019 + self._draw)
        )
        self._draw += 1
        n = shape[0]
        per_row = 1
        for s in shape[1:]:
            per_row *= s
        keys = self.keys.to(device)
        base = mix64(keys ^ salt).reshape(n, 1)
        counter = torch.arange(per_row, device=device, dtype=torch.int64) * _GOLDEN
        bits = mix64(base + counter)
        if dtype == torch.float64:
            out = _srl(bits, 11).to(torch.float64) * (2.0**-53)
        else:
            out = _srl(bits, 40).to(torch.float32) * (2.0**-24)
            out = out.to(dtype)
        return out.reshape(shape)


class TorchRNG:
    """A ``torch.Generator`` (or, with ``None``, torch's global generator) as a random source."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def rows(self, index: Tensor, restart: Tensor | int = 0) -> TorchRNG:
        return self

    def stream(self, stream: int) -> TorchRNG:
        return self

    def uniform(
        self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        if self.generator is None:
            return torch.rand(shape, dtype=dtype, device=device)
        g = self.generator
        return torch.rand(shape, generator=g, dtype=dtype, device=g.device).to(device)


def make_rng(x: Tensor, seed: int | None, generator: torch.Generator | None) -> KeyedRNG | TorchRNG:
    """The random source of one attack call.

    ``seed`` (an int) gives a :class:`KeyedRNG`: reproducible and independent of batching.
    ``generator`` gives a :class:`TorchRNG` over it. Both ``None``: torch's global generator.
    """
    if generator is not None and seed is not None:
        raise UserError(
            "give either seed or generator, not both (set seed=None to use a generator)"
        )
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise UserError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        return TorchRNG(generator)
    if seed is None:
        return TorchRNG(None)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed must be an int or None; got {seed!r}")
    return KeyedRNG.for_inputs(x, seed)
