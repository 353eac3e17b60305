"""Read the NNet text format of fully connected ReLU networks (ACAS Xu and others).

Format: NNet, by Kyle Julian (Stanford, 2016; reference readers and writers at
https://github.com/sisl/NNet). A file holds, one comma-separated line each (trailing commas
are normal):

1. optional comment lines starting with ``//``;
2. ``numLayers, inputSize, outputSize, maxLayerSize``;
3. the ``numLayers + 1`` layer sizes, input first;
4. a legacy "symmetric" flag (ignored);
5. the minimum and 6. the maximum of each input;
7. the mean and 8. the range of each input, and one more value for the outputs;
9. then for each layer its weight matrix, one row per line, then its biases, one per line.

The network computes ``f`` on *normalised* inputs and gives normalised outputs. A user of
the file first clips each raw input to ``[min, max]``, then normalises it as
``(x - mean) / range``, and de-normalises each output as ``y * range_out + mean_out``.

:func:`read_nnet` with ``normalize=True`` folds the normalisation of the inputs into the first
dense layer and the de-normalisation of the outputs into the last, so the network takes raw
physical inputs and returns physical outputs. The clipping is not affine and is *not*
included: inputs must already lie within ``[min, max]`` (``NNetFile.mins``/``maxes``,
from :func:`parse_nnet`). With ``normalize=False`` the network is the bare one: normalised
inputs, raw outputs. That is the variant the VNN-COMP ACAS Xu ONNX files contain: on all 45
networks their outputs agree with it to 3.1e-7 (float32 rounding of the weights), while the
de-normalised outputs differ by up to ~100; their VNN-LIB properties state output
thresholds already normalised, e.g. ``(1500 - 7.518884) / 373.94992`` for φ1.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch

from advml.errors import FormatError, UserError
from advml.verification.network import Dense, Layer, Network, ReLU

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, eq=False)
class NNetFile:
    """Everything an NNet file holds, in float64; ``network()`` builds the network."""

    layer_sizes: tuple[int, ...]
    mins: torch.Tensor  # (n_inputs,)
    maxes: torch.Tensor  # (n_inputs,)
    means: torch.Tensor  # (n_inputs + 1,): the last one is the outputs' mean
    ranges: torch.Tensor  # (n_inputs + 1,): the last one is the outputs' range
    weights: tuple[torch.Tensor, ...]  # (out, in) per layer
    biases: tuple[torch.Tensor, ...]  # (out,) per layer

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs ``(B, n_inputs)`` clipped to ``[min, max]`` and normalised."""
        x = torch.minimum(torch.maximum(x, self.mins.to(x)), self.maxes.to(x))
        return (x - self.means[:-1].to(x)) / self.ranges[:-1].to(x)

    def denormalize_outputs(self, y: torch.Tensor) -> torch.Tensor:
        """Network outputs ``(B, n_outputs)`` in physical units."""
        return y * self.ranges[-1].to(y) + self.means[-1].to(y)

    def network(self, normalize: bool = True, dtype: torch.dtype = torch.float64) -> Network:
        """The network, with the (de-)normalisation folded in when ``normalize`` is true."""
        weights, biases = list(self.weights), list(self.biases)
        if normalize:
            mean, spread = self.means[:-1], self.ranges[:-1]
            biases[0] = biases[0] - weights[0] @ (mean / spread)
            weights[0] = weights[0] / spread[None, :]
            weights[-1] = weights[-1] * self.ranges[-1]
            biases[-1] = biases[-1] * self.ranges[-1] + self.means[-1]
        layers: list[Layer] = []
        for weight, bias in zip(weights, biases, strict=True):
            layers += [Dense(weight, bias), ReLU()]
        return Network(tuple(layers[:-1]), (self.n_inputs,)).to(dtype)


def read_nnet(
    path: str | os.PathLike[str], *, normalize: bool = True, dtype: torch.dtype = torch.float64
) -> Network:
    """The network in the NNet file ``path``; see the module docstring for ``normalize``."""
    return parse_nnet(path).network(normalize, dtype)


def parse_nnet(path: str | os.PathLike[str]) -> NNetFile:
    """Parse an NNet file; every problem raises :class:`FormatError` with its line number."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as error:
        raise UserError(f"{name}: cannot read ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FormatError(name, "not a text file (invalid UTF-8)", line) from None
    return _Reader(name, text).parse()


class _Reader:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.size = len(text)
        self.lines = text.split("\n")
        # where "the line after the last one" is, for errors about a truncated file
        self.end = len(self.lines) if self.lines[-1] == "" else len(self.lines) + 1
        self.rows = self._rows()
        self.last = 0  # line number of the last row read

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        in_header = True
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if not stripped or (in_header and stripped.startswith("//")):
                continue
            in_header = False
            items = [item.strip() for item in stripped.split(",")]
            if items[-1] == "":
                items.pop()  # the usual trailing comma
            yield number, items

    def row(self, what: str, count: int, pattern: re.Pattern[str] = _NUMBER) -> list[str]:
        try:
            self.last, items = next(self.rows)
        except StopIteration:
            raise FormatError(self.path, f"file ends early: expected {what}", self.end) from None
        if len(items) != count:
            raise FormatError(
                self.path, f"expected {count} value(s) for {what}, found {len(items)}", self.last
            )
        for item in items:
            if not pattern.fullmatch(item):
                kind = "an integer" if pattern is _INTEGER else "a number"
                raise FormatError(self.path, f"{what}: {item[:30]!r} is not {kind}", self.last)
        return items

    def numbers(self, what: str, count: int) -> torch.Tensor:
        values = [float(item) for item in self.row(what, count)]
        if not all(math.isfinite(value) for value in values):
            raise FormatError(self.path, f"{what}: values must be finite", self.last)
        return torch.tensor(values, dtype=torch.float64)

    def parse(self) -> NNetFile:
        header = [
            int(item) for item in self.row("the header (numLayers, inputSize, ...)", 4, _INTEGER)
        ]
        header_line = self.last
        n_layers, n_inputs, n_outputs, _ = header
        if min(header) < 1:
            raise FormatError(
                self.path, f"header sizes must be positive, got {header}", header_line
            )
        if n_layers > self.size:
            raise FormatError(self.path, f"{n_layers} layers cannot fit in this file", header_line)
        sizes = [int(item) for item in self.row("the layer sizes", n_layers + 1, _INTEGER)]
        if min(sizes) < 1:
            raise FormatError(self.path, f"layer sizes must be positive, got {sizes}", self.last)
        if sizes[0] != n_inputs or sizes[-1] != n_outputs:
            raise FormatError(
                self.path,
                f"layer sizes start with {sizes[0]} and end with {sizes[-1]}, but the header "
                f"says {n_inputs} inputs and {n_outputs} outputs",
                self.last,
            )
        values = sum(a * b + b for a, b in pairwise(sizes))
        if values > self.size:  # every value takes at least one character
            raise FormatError(
                self.path,
                f"layer sizes {sizes} need {values} values, more than the file holds",
                self.last,
            )
        try:
            self.last, _ = next(self.rows)  # legacy "symmetric" flag, ignored
        except StopIteration:
            raise FormatError(
                self.path, "file ends early: expected the symmetric flag", self.end
            ) from None
        mins = self.numbers("the input minimums", n_inputs)
        maxes = self.numbers("the input maximums", n_inputs)
        if bool((mins > maxes).any()):
            raise FormatError(self.path, "an input maximum is below its minimum", self.last)
        means = self.numbers("the means (inputs, then outputs)", n_inputs + 1)
        ranges = self.numbers("the ranges (inputs, then outputs)", n_inputs + 1)
        if bool((ranges == 0).any()):
            raise FormatError(self.path, "a range is zero (it divides the inputs)", self.last)
        weights, biases = [], []
        for layer, (n_in, n_out) in enumerate(pairwise(sizes), start=1):
            rows = [
                self.numbers(f"row {i + 1} of layer {layer}'s weights", n_in) for i in range(n_out)
            ]
            bias = [self.numbers(f"bias {i + 1} of layer {layer}", 1) for i in range(n_out)]
            weights.append(torch.stack(rows))
            biases.append(torch.cat(bias))
        for number, _ in self.rows:
            raise FormatError(self.path, "unexpected data after the last layer", number)
        return NNetFile(tuple(sizes), mins, maxes, means, ranges, tuple(weights), tuple(biases))
