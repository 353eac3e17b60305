"""Read an ONNX model into the verifier's internal form, a :class:`~.network.Network`.

Format: ONNX, the Open Neural Network Exchange (https://onnx.ai; operators as specified at
https://onnx.ai/onnx/operators/). The file is read with the ``onnx`` package only:
``onnx.load`` parses the protobuf and ``onnx.numpy_helper`` turns tensors into arrays.
Nothing is executed (no onnxruntime) and nothing is unpickled.

The graph must be a chain: one input, one output, and each node reads at most one tensor
that depends on the input; its other inputs are initializers or ``Constant`` outputs.
Supported on that chain:

* ``Gemm`` (``alpha``, ``beta``, ``transB``; ``transA=0``), ``MatMul`` with a constant on
  either side, ``Add``/``Sub``/``Mul``/``Div`` with a constant (``c - x`` too; not ``c / x``),
  ``Neg``, ``Conv`` (2-D; ``pads`` equal on both sides, ``strides``, ``dilations``,
  ``group``), ``BatchNormalization`` (inference form, folded into an elementwise map);
* ``Relu``;
* ``Flatten``, ``Reshape``, ``Identity``, ``Dropout`` (inference): they keep the flattened
  values in order, so they only change the tracked shape.

Nodes whose inputs are all constant (``Constant`` nodes, arithmetic on weights, reshapes of
weights) are evaluated while reading. Any other operator raises :class:`UnsupportedOperator`
naming it; a file that is not ONNX or whose graph is malformed raises :class:`FormatError`.

Shapes: when the input has rank ≥ 2 and its first dimension is 1 or symbolic, that is the
batch dimension and ``input_shape`` leaves it out (``[1,1,1,5]`` → ``(1, 1, 5)``,
``[1,784]`` → ``(784,)``, ``[N,1,28,28]`` → ``(1, 28, 28)``). Consecutive affine maps are
merged where that stays cheap (bias additions into the layer before them, normalisation and
batch norm into a neighbouring ``Conv``), so the ACAS Xu networks read as 7 dense layers
with 6 ReLUs. Weights are combined in float64; the network is returned in ``dtype``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from advml.errors import FormatError, UserError
from advml.verification.network import (
    Conv,
    Dense,
    Elementwise,
    Layer,
    Network,
    ReLU,
    UnsupportedOperator,
)

#: Most values one tensor on the chain may hold (guards memory against absurd shapes).
MAX_VALUES = 10_000_000
#: Most entries of a dense matrix built by expanding a general ``MatMul``.
MAX_DENSE_ENTRIES = 20_000_000


@dataclass
class _Chain:
    """The state of the walk: constants known so far and the input-dependent tensor."""

    path: str
    constants: dict[str, np.ndarray]
    current: str
    shape: tuple[int, ...]  # of ``current``, batch dimension (of size 1) included
    layers: list[Layer] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)  # earlier input-dependent tensors


def read_onnx(path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float64) -> Network:
    """The network stored in the ONNX file ``path`` (see the module docstring)."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise UserError(f"{name}: no such file")
    try:
        model = onnx.load(name)
    except Exception as error:  # protobuf and onnx raise many types for a corrupt file
        raise FormatError(
            name, f"not a valid ONNX model ({type(error).__name__}: {error})"
        ) from None
    try:
        return _convert(model.graph, name).to(dtype)
    except UserError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as error:
        raise FormatError(name, f"malformed graph ({type(error).__name__}: {error})") from None


def _convert(graph: onnx.GraphProto, path: str) -> Network:
    constants: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        constants[tensor.name] = _array(tensor, path, f"initializer {tensor.name!r}")
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise FormatError(path, f"expected one graph input, found {len(inputs)}")
    if len(graph.output) != 1:
        raise FormatError(path, f"expected one graph output, found {len(graph.output)}")
    input_shape, shape = _input_shape(inputs[0], path)
    chain = _Chain(path, constants, inputs[0].name, shape)
    for index, node in enumerate(graph.node):
        _step(chain, node, f"node {node.name or f'#{index}'}")
    output = graph.output[0].name
    if output != chain.current:
        problem = "does not depend on the input" if output in constants else "is not on the chain"
        raise FormatError(path, f"graph output {output!r} {problem}")
    layers = chain.layers
    if not layers or isinstance(layers[-1], ReLU):
        width = math.prod(chain.shape)
        layers.append(Elementwise(_ones(width), torch.zeros(width, dtype=torch.float64)))
    return Network(tuple(layers), input_shape).simplified()


def _array(tensor: onnx.TensorProto, path: str, what: str) -> np.ndarray:
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as error:  # wrong data length, unknown data type, missing external file
        raise FormatError(path, f"{what}: unreadable tensor ({error})") from None
    if array.dtype.kind == "f":
        with np.errstate(all="ignore"):
            array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise FormatError(path, f"{what}: holds values that are not finite")
        return array
    if array.dtype.kind not in "iub":
        raise FormatError(path, f"{what}: unsupported tensor type {array.dtype}")
    return array


def _input_shape(value: onnx.ValueInfoProto, path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(input_shape, tracked shape)``: without and with the batch dimension."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        raise FormatError(path, f"input {value.name!r} has no tensor shape")
    dims: list[int | None] = [
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
        for dim in value.type.tensor_type.shape.dim
    ]
    batched = len(dims) >= 2 and dims[0] in (1, None)
    sample = dims[1:] if batched else dims
    if any(size is None for size in sample):
        raise FormatError(path, f"input {value.name!r} has no fixed size in shape {dims}")
    input_shape = tuple(int(size) for size in sample)  # type: ignore[arg-type]
    shape = (1, *input_shape)
    _check_size(shape, path)
    return input_shape, shape


def _check_size(shape: tuple[int, ...], path: str) -> None:
    if math.prod(shape) > MAX_VALUES:
        raise FormatError(path, f"a tensor of shape {shape} exceeds {MAX_VALUES} values")


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {
        attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute
    }


def _step(chain: _Chain, node: onnx.NodeProto, where: str) -> None:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOperator(f"{node.domain}.{op}", _at(chain, where))
    names = list(node.input)
    dynamic = []
    for position, name in enumerate(names):
        if not name or name in chain.constants:
            continue
        if name == chain.current:
            dynamic.append(position)
        elif name in chain.passed:
            raise UnsupportedOperator(
                f"{op} reading an earlier tensor {name!r} (a branch)", _at(chain, where)
            )
        else:
            raise FormatError(chain.path, f"{where}: tensor {name!r} is never defined")
    outputs = [name for name in node.output if name]
    if not outputs:
        raise FormatError(chain.path, f"{where}: {op} has no output")
    if not dynamic:
        value = np.asarray(_fold(chain, node, where))
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise FormatError(chain.path, f"{where}: {op} gives values that are not finite")
        chain.constants[outputs[0]] = value
        return
    if len(dynamic) > 1:
        raise UnsupportedOperator(f"{op} of two input-dependent tensors", _at(chain, where))
    if len(outputs) > 1:
        raise UnsupportedOperator(f"{op} with {len(outputs)} outputs", _at(chain, where))
    handler = _HANDLERS.get(op)
    if handler is None:
        raise UnsupportedOperator(op, _at(chain, where))
    shape = handler(chain, node, dynamic[0], where)
    _check_size(shape, chain.path)
    chain.passed.add(chain.current)
    chain.current, chain.shape = outputs[0], shape


def _at(chain: _Chain, where: str) -> str:
    return f"{chain.path} {where}"


def _const(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> np.ndarray | None:
    """The constant input at ``position`` (``None`` when that optional input is absent)."""
    if position >= len(node.input) or not node.input[position]:
        return None
    return chain.constants[node.input[position]]


def _required(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> np.ndarray:
    value = _const(chain, node, position, where)
    if value is None:
        raise FormatError(chain.path, f"{where}: {node.op_type} lacks input {position}")
    return value


def _float(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float64))


def _ones(width: int) -> torch.Tensor:
    return torch.ones(width, dtype=torch.float64)


# --- handlers for a node on the chain: append layers, return the new tracked shape ---------


def _gemm(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    attrs = _attributes(node)
    if position != 0 or attrs.get("transA", 0):
        raise UnsupportedOperator(
            "Gemm with the input as B or transposed (transA=1)", _at(chain, where)
        )
    if len(chain.shape) != 2:
        raise FormatError(chain.path, f"{where}: Gemm input has shape {chain.shape}, not 2-D")
    b = _required(chain, node, 1, where)
    if b.ndim != 2:
        raise FormatError(chain.path, f"{where}: Gemm B has shape {b.shape}, not 2-D")
    weight = b if attrs.get("transB", 0) else b.T  # (n, k)
    rows, k = chain.shape
    if weight.shape[1] != k:
        raise FormatError(chain.path, f"{where}: Gemm B {b.shape} does not fit input {chain.shape}")
    n = weight.shape[0]
    if rows > 1 and rows * rows * n * k > MAX_DENSE_ENTRIES:
        raise UnsupportedOperator(f"Gemm on {chain.shape} too large to expand", _at(chain, where))
    c = _const(chain, node, 2, where)
    bias = np.zeros((rows, n)) if c is None else np.broadcast_to(c, (rows, n))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))  # type: ignore[arg-type]
    chain.layers.append(_rowwise(alpha * weight, beta * bias, rows))
    return (rows, n)


def _rowwise(weight: np.ndarray, bias: np.ndarray, rows: int) -> Dense:
    """``z ↦ W z + b`` applied to each of ``rows`` rows of a flattened ``(rows, k)`` tensor."""
    if rows != 1:
        weight = np.kron(np.eye(rows), weight)
    return Dense(_float(weight), _float(bias.reshape(-1)))


def _matmul(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    other = _required(chain, node, 1 - position, where)
    shape = chain.shape
    if position == 0 and other.ndim == 2 and math.prod(shape[:-1]) == 1:
        if shape[-1] != other.shape[0]:
            raise FormatError(chain.path, f"{where}: MatMul {shape} @ {other.shape} mismatch")
        chain.layers.append(
            Dense(_float(other.T), torch.zeros(other.shape[1], dtype=torch.float64))
        )
        return (*shape[:-1], other.shape[1])
    if position == 0:
        return _expand(chain, lambda x: np.matmul(x, other), where)
    return _expand(chain, lambda x: np.matmul(other, x), where)


def _expand(
    chain: _Chain, linear: Callable[[np.ndarray], np.ndarray], where: str
) -> tuple[int, ...]:
    """Append the dense matrix of a linear map of the tracked tensor, found on a basis."""
    shape = chain.shape
    try:
        out_shape = linear(np.zeros(shape)).shape
    except ValueError as error:
        raise FormatError(chain.path, f"{where}: shapes do not fit ({error})") from None
    width = math.prod(shape)
    if width * math.prod(out_shape) > MAX_DENSE_ENTRIES:
        raise UnsupportedOperator(f"MatMul on {shape} too large to expand", _at(chain, where))
    basis = np.eye(width).reshape(width, *shape)
    images = linear(basis)
    if images.shape != (width, *out_shape):
        raise UnsupportedOperator(
            f"MatMul broadcasting {shape} to {images.shape[1:]}", _at(chain, where)
        )
    weight = images.reshape(width, -1).T
    chain.layers.append(Dense(_float(weight), torch.zeros(weight.shape[0], dtype=torch.float64)))
    return tuple(out_shape)


def _arithmetic(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    op, shape = node.op_type, chain.shape
    constant = _required(chain, node, 1 - position, where)
    try:
        broadcast = np.broadcast_shapes(shape, constant.shape)
    except ValueError:
        raise FormatError(
            chain.path, f"{where}: {op} of shapes {shape} and {constant.shape} do not broadcast"
        ) from None
    if broadcast != shape:
        raise UnsupportedOperator(
            f"{op} broadcasting the input {shape} to {broadcast}", _at(chain, where)
        )
    c = _float(np.broadcast_to(constant, shape).reshape(-1))
    width = c.shape[0]
    if op == "Add":
        layer = Elementwise(_ones(width), c)
    elif op == "Sub":
        layer = Elementwise(_ones(width), -c) if position == 0 else Elementwise(-_ones(width), c)
    elif op == "Mul":
        layer = Elementwise(c, torch.zeros_like(c))
    elif position == 1:
        raise UnsupportedOperator("Div of a constant by the input", _at(chain, where))
    elif bool((c == 0).any()):
        raise FormatError(chain.path, f"{where}: Div by a constant containing zero")
    else:
        layer = Elementwise(1.0 / c, torch.zeros_like(c))
    chain.layers.append(layer)
    return shape


def _neg(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    width = math.prod(chain.shape)
    chain.layers.append(Elementwise(-_ones(width), torch.zeros(width, dtype=torch.float64)))
    return chain.shape


def _relu(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    chain.layers.append(ReLU())
    return chain.shape


def _identity(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    if position != 0:
        raise UnsupportedOperator(
            f"{node.op_type} with the input in position {position}", _at(chain, where)
        )
    return chain.shape


def _flatten(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    return _flattened(chain.shape, _attributes(node).get("axis", 1), chain.path, where)  # type: ignore[arg-type]


def _flattened(shape: tuple[int, ...], axis: int, path: str, where: str) -> tuple[int, ...]:
    if axis < 0:
        axis += len(shape)
    if not 0 <= axis <= len(shape):
        raise FormatError(path, f"{where}: Flatten axis out of range for shape {shape}")
    return (math.prod(shape[:axis]), math.prod(shape[axis:]))


def _reshape(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    if position != 0:
        raise UnsupportedOperator("Reshape to an input-dependent shape", _at(chain, where))
    target = _required(chain, node, 1, where)
    allow_zero = bool(_attributes(node).get("allowzero", 0))
    return _reshaped(chain.shape, target, allow_zero, chain.path, where)


def _reshaped(
    shape: tuple[int, ...], target: np.ndarray, allow_zero: bool, path: str, where: str
) -> tuple[int, ...]:
    if target.ndim != 1 or target.dtype.kind not in "iu":
        raise FormatError(path, f"{where}: Reshape target must be a 1-D integer tensor")
    sizes = [int(v) for v in target]
    for index, size in enumerate(sizes):
        if size == 0 and not allow_zero:
            if index >= len(shape):
                raise FormatError(path, f"{where}: Reshape copies dimension {index} of {shape}")
            sizes[index] = shape[index]
        elif size < -1:
            raise FormatError(path, f"{where}: Reshape to a negative size {size}")
    total = math.prod(shape)
    if sizes.count(-1) > 1:
        raise FormatError(path, f"{where}: Reshape target {sizes} has more than one -1")
    if -1 in sizes:
        known = math.prod(size for size in sizes if size != -1)
        if known == 0 or total % known:
            raise FormatError(path, f"{where}: cannot reshape {shape} to {sizes}")
        sizes[sizes.index(-1)] = total // known
    if math.prod(sizes) != total:
        raise FormatError(path, f"{where}: cannot reshape {shape} to {sizes}")
    return tuple(sizes)


def _conv(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    path, shape = chain.path, chain.shape
    if position != 0:
        raise UnsupportedOperator("Conv with the input as its kernel", _at(chain, where))
    if len(shape) != 4 or shape[0] != 1:
        raise UnsupportedOperator(
            f"Conv on a tensor of shape {shape} (only 2-D is)", _at(chain, where)
        )
    weight = _required(chain, node, 1, where)
    bias = _const(chain, node, 2, where)
    attrs = _attributes(node)
    groups = int(attrs.get("group", 1))  # type: ignore[call-overload]
    channels = shape[1]
    if (
        weight.ndim != 4
        or groups < 1
        or weight.shape[1] * groups != channels
        or weight.shape[0] % groups
        or min(weight.shape) < 1
    ):
        raise FormatError(path, f"{where}: Conv kernel {weight.shape} does not fit input {shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise FormatError(path, f"{where}: Conv bias {bias.shape} for {weight.shape[0]} channels")
    kernel = tuple(attrs.get("kernel_shape", weight.shape[2:]))  # type: ignore[arg-type]
    if kernel != weight.shape[2:]:
        raise FormatError(path, f"{where}: kernel_shape {kernel} but weights {weight.shape}")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        raise UnsupportedOperator(f"Conv with auto_pad={auto_pad}", _at(chain, where))
    pads = [0, 0, 0, 0] if auto_pad == "VALID" else list(attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    strides = tuple(attrs.get("strides", (1, 1)))  # type: ignore[call-overload]
    dilations = tuple(attrs.get("dilations", (1, 1)))  # type: ignore[call-overload]
    if len(pads) != 4 or len(strides) != 2 or len(dilations) != 2:
        raise FormatError(path, f"{where}: Conv pads/strides/dilations of the wrong length")
    if pads[:2] != pads[2:]:
        raise UnsupportedOperator(f"Conv with asymmetric pads {pads}", _at(chain, where))
    if min(pads) < 0 or min(strides) < 1 or min(dilations) < 1:
        raise FormatError(path, f"{where}: Conv pads/strides/dilations out of range")
    conv = Conv(
        _float(weight),
        torch.empty(0, dtype=torch.float64),
        (shape[1], shape[2], shape[3]),
        (int(strides[0]), int(strides[1])),
        (int(pads[0]), int(pads[1])),
        (int(dilations[0]), int(dilations[1])),
        groups,
    )
    out_shape = conv.out_shape
    if min(out_shape) < 1:
        raise FormatError(path, f"{where}: Conv kernel larger than its padded input {shape}")
    _check_size(out_shape, path)
    per_channel = (
        _float(bias) if bias is not None else torch.zeros(out_shape[0], dtype=torch.float64)
    )
    full_bias = per_channel[:, None, None].expand(out_shape).reshape(-1).contiguous()
    chain.layers.append(
        Conv(
            conv.weight, full_bias, conv.in_shape, conv.stride, conv.padding, conv.dilation, groups
        )
    )
    return (1, *out_shape)


def _batch_norm(chain: _Chain, node: onnx.NodeProto, position: int, where: str) -> tuple[int, ...]:
    path, shape = chain.path, chain.shape
    attrs = _attributes(node)
    if position != 0 or attrs.get("training_mode", 0):
        raise UnsupportedOperator("BatchNormalization in training mode", _at(chain, where))
    if len(shape) < 2:
        raise FormatError(path, f"{where}: BatchNormalization of a tensor of shape {shape}")
    gamma, beta, mean, var = (_required(chain, node, i, where) for i in range(1, 5))
    channels = shape[1]
    if any(a.shape != (channels,) for a in (gamma, beta, mean, var)):
        raise FormatError(path, f"{where}: BatchNormalization parameters for {channels} channels")
    denominator = var + float(attrs.get("epsilon", 1e-5))  # type: ignore[arg-type]
    if (denominator <= 0).any():
        raise FormatError(path, f"{where}: BatchNormalization variance + epsilon is not positive")
    scale = gamma / np.sqrt(denominator)
    shift = beta - mean * scale
    view = (channels,) + (1,) * (len(shape) - 2)
    sample = shape[1:]
    chain.layers.append(
        Elementwise(
            _float(np.broadcast_to(scale.reshape(view), sample).reshape(-1)),
            _float(np.broadcast_to(shift.reshape(view), sample).reshape(-1)),
        )
    )
    return shape


_Handler = Callable[[_Chain, onnx.NodeProto, int, str], tuple[int, ...]]
_HANDLERS: dict[str, _Handler] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Mul": _arithmetic,
    "Div": _arithmetic,
    "Neg": _neg,
    "Relu": _relu,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": _identity,
    "Dropout": _identity,
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
}


# --- constant folding ---------------------------------------------------------------------


def _fold(chain: _Chain, node: onnx.NodeProto, where: str) -> np.ndarray:
    """Evaluate a node whose inputs are all constant."""
    op, path = node.op_type, chain.path
    attrs = _attributes(node)
    args = [chain.constants[name] for name in node.input if name]
    if op == "Constant":
        return _constant_value(attrs, path, where)
    if op in ("Identity", "Dropout") and args:
        return args[0]
    if op == "Neg" and len(args) == 1:
        return -args[0]
    if op in ("Add", "Sub", "Mul", "Div", "MatMul") and len(args) == 2:
        a, b = args
        if a.size * b.size > MAX_DENSE_ENTRIES:
            raise FormatError(path, f"{where}: constant {op} too large to evaluate")
        function = {
            "Add": np.add,
            "Sub": np.subtract,
            "Mul": np.multiply,
            "Div": np.divide,
            "MatMul": np.matmul,
        }[op]
        with np.errstate(all="ignore"):
            return function(a, b)
    if op == "Reshape" and len(args) == 2:
        shape = tuple(args[0].shape)
        return args[0].reshape(
            _reshaped(shape, args[1], bool(attrs.get("allowzero", 0)), path, where)
        )
    if op == "Flatten" and len(args) == 1:
        shape = tuple(args[0].shape)
        return args[0].reshape(_flattened(shape, attrs.get("axis", 1), path, where))  # type: ignore[arg-type]
    if op == "Transpose" and len(args) == 1:
        perm = attrs.get("perm")
        return np.transpose(args[0], None if perm is None else tuple(perm))  # type: ignore[arg-type]
    raise UnsupportedOperator(f"{op} (on constants)", _at(chain, where))


def _constant_value(attrs: dict[str, object], path: str, where: str) -> np.ndarray:
    if "value" in attrs and isinstance(attrs["value"], onnx.TensorProto):
        return _array(attrs["value"], path, where)
    for name, kind in (("value_float", np.float64), ("value_int", np.int64)):
        if name in attrs:
            return np.asarray(attrs[name], dtype=kind)
    for name, kind in (("value_floats", np.float64), ("value_ints", np.int64)):
        if name in attrs:
            return np.asarray(list(attrs[name]), dtype=kind)  # type: ignore[call-overload]
    raise FormatError(path, f"{where}: Constant without a supported value attribute")


# --- merging consecutive affine maps ------------------------------------------------------
