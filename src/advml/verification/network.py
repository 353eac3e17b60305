r"""The one internal form of a network for verification: affine maps and ReLUs in sequence.

A :class:`Network` computes ``f(x) = A_L(σ(A_{L-1}( … σ(A_1 x) … )))`` on flattened inputs,
where each ``A_k(z) = W_k z + b_k`` is an :class:`Affine` map and ``σ`` is the elementwise
ReLU. Every verifier in :mod:`advml.verification` (CROWN, branch-and-bound, the MILP
reference) works on this form, and every importer produces it: :func:`from_torch` here,
ONNX and NNet in their own modules.

An affine map need not be stored as a dense matrix: :class:`Conv` keeps a convolution's
kernel and applies ``W`` and ``Wᵀ`` through ``conv2d`` and its input gradient, so a CNN on
28×28 images stays small. Each map offers

* ``forward(z)``: ``z Wᵀ + b`` for a batch ``z`` of shape ``(B, in_features)``;
* ``backward(a)``: ``a W`` for ``a`` of shape ``(..., out_features)`` — the step of every
  backward bound computation (CROWN's ``Λ W``);
* ``dense()``: ``W`` as an ``(out_features, in_features)`` matrix (for small layers, the MILP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError


class UnsupportedOperator(UserError):
    """A layer or operator the verifier has no rule for; ``operator`` names it."""

    def __init__(self, operator: str, where: str = "") -> None:
        detail = f" ({where})" if where else ""
        super().__init__(
            f"unsupported operator {operator}{detail}; the verifier handles affine maps "
            "(Linear/Gemm/MatMul/Conv/Add/Sub/Div/BatchNorm/Normalize), ReLU, Flatten/Reshape"
        )
        self.operator = operator


class Affine:
    """``z ↦ W z + b`` on flattened vectors; subclasses store ``W`` their own way."""

    in_features: int
    out_features: int
    bias: torch.Tensor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, a: torch.Tensor) -> torch.Tensor:
        """``a W`` for ``a`` of shape ``(..., out_features)``."""
        raise NotImplementedError

    def dense(self) -> torch.Tensor:
        """``W`` as an ``(out_features, in_features)`` matrix."""
        eye = torch.eye(self.out_features, dtype=self.bias.dtype, device=self.bias.device)
        return self.backward(eye)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Dense(Affine):
    """``W z + b`` with ``W`` stored as a matrix ``(out, in)``."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise UserError(
                f"dense layer: weight {tuple(self.weight.shape)} and bias "
                f"{tuple(self.bias.shape)} do not form an affine map"
            )

    @property
    def in_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.weight, self.bias)

    def backward(self, a: torch.Tensor) -> torch.Tensor:
        return a @ self.weight

    def dense(self) -> torch.Tensor:
        return self.weight

    def to(self, dtype=None, device=None) -> Dense:
        return Dense(self.weight.to(device=device, dtype=dtype), self.bias.to(device, dtype))


@dataclass(frozen=True, eq=False)
class Elementwise(Affine):
    """``scale ⊙ z + shift`` (a diagonal ``W``): normalization and folded batch norm."""

    scale: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        if self.scale.ndim != 1 or self.scale.shape != self.bias.shape:
            raise UserError(
                f"elementwise layer: scale {tuple(self.scale.shape)} and shift "
                f"{tuple(self.bias.shape)} must be vectors of one length"
            )

    @property
    def in_features(self) -> int:  # type: ignore[override]
        return self.scale.shape[0]

    @property
    def out_features(self) -> int:  # type: ignore[override]
        return self.scale.shape[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.bias

    def backward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.scale

    def dense(self) -> torch.Tensor:
        return torch.diag(self.scale)

    def to(self, dtype=None, device=None) -> Elementwise:
        return Elementwise(self.scale.to(device, dtype), self.bias.to(device, dtype))


@dataclass(frozen=True, eq=False)
class Conv(Affine):
    """A 2-D convolution on inputs of shape ``in_shape = (C, H, W)``, flattened in and out."""

    weight: torch.Tensor
    bias: torch.Tensor
    in_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        kh, kw = self.weight.shape[2:]
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return (self.weight.shape[0], oh, ow)

    @property
    def in_features(self) -> int:  # type: ignore[override]
        c, h, w = self.in_shape
        return c * h * w

    @property
    def out_features(self) -> int:  # type: ignore[override]
        c, h, w = self.out_shape
        return c * h * w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(
            z.reshape(-1, *self.in_shape),
            self.weight,
            None,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        return out.flatten(1) + self.bias

    def backward(self, a: torch.Tensor) -> torch.Tensor:
        lead = a.shape[:-1]
        grad = a.reshape(-1, *self.out_shape)
        out = torch.nn.grad.conv2d_input(
            (grad.shape[0], *self.in_shape),
            self.weight,
            grad,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        return out.reshape(*lead, self.in_features)

    def to(self, dtype=None, device=None) -> Conv:
        return Conv(
            self.weight.to(device, dtype),
            self.bias.to(device, dtype),
            self.in_shape,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


@dataclass(frozen=True, eq=False)
class ReLU:
    """The elementwise ``max(z, 0)`` between two affine maps."""


Layer = Affine | ReLU


@dataclass(frozen=True, eq=False)
class Network:
    """A feed-forward ReLU network in the internal form (see the module docstring).

    ``input_shape`` is the shape of one input before flattening (e.g. ``(1, 28, 28)`` or
    ``(5,)``); :meth:`forward` accepts ``(B, *input_shape)`` or ``(B, n_inputs)``.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[-1], Affine):
            raise UserError("network: the last layer must be an affine map")
        width = int(torch.Size(self.input_shape).numel())
        for index, layer in enumerate(self.layers):
            if isinstance(layer, ReLU):
                continue
            if layer.in_features != width:
                raise UserError(
                    f"network: layer {index} takes {layer.in_features} inputs, "
                    f"the previous one gives {width}"
                )
            width = layer.out_features

    @property
    def n_inputs(self) -> int:
        return int(torch.Size(self.input_shape).numel())

    @property
    def n_outputs(self) -> int:
        return self.affine_layers[-1].out_features

    @property
    def affine_layers(self) -> list[Affine]:
        return [layer for layer in self.layers if isinstance(layer, Affine)]

    @property
    def dtype(self) -> torch.dtype:
        return self.affine_layers[0].bias.dtype

    @property
    def device(self) -> torch.device:
        return self.affine_layers[0].bias.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, n_outputs)`` for inputs ``(B, *input_shape)`` or ``(B, n_inputs)``."""
        z = x.reshape(x.shape[0], -1)
        if z.shape[1] != self.n_inputs:
            raise UserError(
                f"network: input has {z.shape[1]} values per sample, expected {self.n_inputs}"
            )
        for layer in self.layers:
            z = z.clamp_min(0) if isinstance(layer, ReLU) else layer.forward(z)
        return z

    __call__ = forward

    def to(self, dtype: torch.dtype | None = None, device=None) -> Network:
        layers = tuple(
            layer if isinstance(layer, ReLU) else layer.to(dtype, device) for layer in self.layers
        )
        return Network(layers, self.input_shape)

    def as_module(self) -> nn.Module:
        """A ``torch.nn.Module`` computing the same function (for the attacks)."""
        return _NetworkModule(self)

    def simplified(self) -> Network:
        """The same function with neighbouring affine maps merged where that stays cheap
        (see :func:`merge_affine`)."""
        return Network(tuple(merge_affine(list(self.layers))), self.input_shape)


class _NetworkModule(nn.Module):
    def __init__(self, network: Network) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.forward(x)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _elementwise(scale: torch.Tensor, shift: torch.Tensor, shape: Sequence[int]) -> Elementwise:
    """``z ↦ scale ⊙ z + shift`` broadcast over ``shape`` (per channel)."""
    scale = torch.broadcast_to(scale, tuple(shape)).reshape(-1)
    shift = torch.broadcast_to(shift, tuple(shape)).reshape(-1)
    return Elementwise(scale.contiguous(), shift.contiguous())


def from_torch(model: nn.Module, input_shape: Sequence[int]) -> Network:
    """Convert a sequential PyTorch model to the internal form.

    Supported: ``Linear``, ``Conv2d``, ``ReLU``, ``Flatten``, ``Identity``, ``Dropout`` (eval),
    ``BatchNorm1d/2d`` (eval; folded into an elementwise affine map) and advml's
    ``Normalize``. Anything else raises :class:`UnsupportedOperator` naming the layer.
    Weights are taken as they are (no copy), so the result tracks the model's dtype.
    """
    from advml.models import Normalize
    from advml.verification.ibp import layers as flat_layers

    shape = tuple(int(s) for s in input_shape)
    out: list[Layer] = []
    for index, layer in enumerate(flat_layers(model)):
        where = f"layer {index}"
        if isinstance(layer, nn.Linear):
            if len(shape) != 1:
                shape = (int(torch.Size(shape).numel()),)
            bias = (
                layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
            )
            out.append(Dense(layer.weight.detach(), bias.detach()))
            shape = (layer.out_features,)
        elif isinstance(layer, nn.Conv2d):
            if len(shape) != 3 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise UnsupportedOperator(f"Conv2d(padding={layer.padding!r})", where)
            n_out = layer.out_channels
            bias = layer.bias if layer.bias is not None else layer.weight.new_zeros(n_out)
            conv = Conv(
                layer.weight.detach(),
                torch.empty(0),
                shape,  # type: ignore[arg-type]
                _pair(layer.stride),
                _pair(layer.padding),
                _pair(layer.dilation),
                layer.groups,
            )
            spatial = conv.out_shape
            full_bias = bias.detach()[:, None, None].expand(spatial).reshape(-1)
            out.append(
                Conv(
                    conv.weight,
                    full_bias,
                    conv.in_shape,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.groups,
                )
            )
            shape = spatial
        elif isinstance(layer, nn.ReLU):
            out.append(ReLU())
        elif isinstance(layer, nn.Flatten | nn.Identity) or (
            isinstance(layer, nn.Dropout) and not layer.training
        ):
            if isinstance(layer, nn.Flatten):
                shape = (int(torch.Size(shape).numel()),)
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            if layer.training or layer.running_var is None:
                raise UnsupportedOperator(f"{type(layer).__name__} in training mode", where)
            scale = (layer.weight if layer.affine else 1.0) / torch.sqrt(
                layer.running_var + layer.eps
            )
            shift = (layer.bias if layer.affine else 0.0) - layer.running_mean * scale
            view = (-1,) + (1,) * (len(shape) - 1)
            out.append(_elementwise(scale.detach().view(view), shift.detach().view(view), shape))
        elif isinstance(layer, Normalize):
            scale = 1.0 / layer.std
            shift = -layer.mean / layer.std
            view = (-1,) + (1,) * (len(shape) - 1)
            out.append(_elementwise(scale.reshape(view), shift.reshape(view), shape))
        else:
            raise UnsupportedOperator(type(layer).__name__, where)
    return Network(tuple(out), tuple(int(s) for s in input_shape))


def merge_affine(layers: list[Layer]) -> list[Layer]:
    """Merge neighbouring affine maps where the result is no larger than the two.

    Folded: an elementwise map into the dense layer before it (a bias ``Add``), into a
    ``Conv`` before it when its scale is per channel (batch norm), into a ``Conv`` after it
    when its scale is per input channel (input normalisation), into a dense layer after it;
    two elementwise maps; two dense layers only when the product is no larger; repeated ReLUs.
    """
    out: list[Layer] = []
    for layer in layers:
        while out:
            merged = _merge_pair(out[-1], layer)
            if merged is None:
                break
            out.pop()
            layer = merged
        out.append(layer)
    return out


def _merge_pair(first: Layer, second: Layer) -> Layer | None:
    if isinstance(first, ReLU) and isinstance(second, ReLU):
        return first
    if not isinstance(first, Affine) or not isinstance(second, Affine):
        return None
    if isinstance(second, Elementwise):
        shift = second.scale * first.bias + second.bias
        if isinstance(first, Elementwise):
            return Elementwise(first.scale * second.scale, shift)
        if isinstance(first, Dense):
            return Dense(second.scale[:, None] * first.weight, shift)
        if isinstance(first, Conv):
            per_channel = second.scale.reshape(first.out_shape[0], -1)
            if bool((per_channel == per_channel[:, :1]).all()):
                weight = first.weight * per_channel[:, 0, None, None, None]
                return Conv(
                    weight,
                    shift,
                    first.in_shape,
                    first.stride,
                    first.padding,
                    first.dilation,
                    first.groups,
                )
        return None
    if isinstance(second, Dense) and isinstance(first, Elementwise):
        return Dense(second.weight * first.scale[None, :], second.forward(first.bias[None])[0])
    if isinstance(second, Dense) and isinstance(first, Dense):
        if second.out_features * first.in_features <= first.weight.numel() + second.weight.numel():
            return Dense(second.weight @ first.weight, second.forward(first.bias[None])[0])
        return None
    if isinstance(second, Conv) and isinstance(first, Elementwise):
        per_channel = first.scale.reshape(second.in_shape[0], -1)
        if not bool((per_channel == per_channel[:, :1]).all()):
            return None
        groups, out_channels = second.groups, second.weight.shape[0]
        factors = per_channel[:, 0].reshape(groups, -1)
        factors = factors[torch.arange(out_channels) // (out_channels // groups)]
        return Conv(
            second.weight * factors[:, :, None, None],
            second.forward(first.bias[None])[0],
            second.in_shape,
            second.stride,
            second.padding,
            second.dilation,
            groups,
        )
    return None
