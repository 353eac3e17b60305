"""ONNX import: small graphs built with ``onnx.helper`` match a numpy/torch reference;
ACAS Xu reads as 7 dense layers and 6 ReLUs; anything else fails with a clear error."""

import contextlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from advml.errors import FormatError, UserError
from advml.verification.network import Conv, Dense, ReLU, UnsupportedOperator
from advml.verification.onnx_import import read_onnx


def save(path: Path, nodes, inits: dict, in_shape, opset: int = 13) -> Path:
    """Write a one-input (``x``), one-output (``y``) ONNX model; floats stored as float32."""
    tensors = [
        numpy_helper.from_array(v if v.dtype.kind in "iu" else v.astype(np.float32), k)
        for k, v in ((k, np.asarray(v)) for k, v in inits.items())
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        tensors,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def f32(*shape, rng):
    """Random values exactly representable in float32, as float64."""
    return rng.standard_normal(shape).astype(np.float32).astype(np.float64)


def as_stored(inits: dict) -> dict:
    """The values as ``save`` stores them (floats rounded to float32)."""
    return {
        k: v if v.dtype.kind in "iu" else v.astype(np.float32).astype(np.float64)
        for k, v in inits.items()
    }


def test_gemm_relu_mlp_matches_torch(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    w1, b1, w2, b2 = (p.detach().numpy() for p in model.parameters())
    w1, b1, w2, b2 = (a.astype(np.float32).astype(np.float64) for a in (w1, b1, w2, b2))
    with torch.no_grad():
        for p, a in zip(model.parameters(), (w1, b1, w2, b2), strict=True):
            p.copy_(torch.from_numpy(a))
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
    ]
    path = save(tmp_path / "mlp.onnx", nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, [1, 6])
    net = read_onnx(path)
    assert net.input_shape == (6,)
    assert [type(layer) for layer in net.layers] == [Dense, ReLU, Dense]
    x = torch.randn(50, 6, dtype=torch.float64)
    torch.testing.assert_close(net(x), model(x), rtol=1e-12, atol=1e-12)


def test_affine_operators_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    inits = {
        "mean": f32(1, 4, rng=rng),
        "std": np.abs(f32(4, rng=rng)) + 0.5,
        "wa": f32(4, 5, rng=rng),  # Gemm with transB=0, alpha, beta
        "ca": f32(5, rng=rng),
        "wm": f32(5, 3, rng=rng),  # MatMul, constant on the right
        "bm": f32(1, 3, rng=rng),
        "left": f32(2, 1, rng=rng),  # MatMul, constant on the left: (2,1) @ (1,3)
        "scale": f32(2, 3, rng=rng),
        "flat": np.array([1, -1], dtype=np.int64),
        "same": np.array([0, 6], dtype=np.int64),
    }
    inits = as_stored(inits)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b"]),
        helper.make_node("Gemm", ["b", "wa", "ca"], ["c"], alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["c"], ["d"]),
        helper.make_node("MatMul", ["d", "wm"], ["e"]),
        helper.make_node("Add", ["e", "bm"], ["f"]),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32([3.0]))),
        helper.make_node("Sub", ["k", "f"], ["g"]),  # 3 - f
        helper.make_node("Identity", ["g"], ["h"]),
        helper.make_node("MatMul", ["left", "h"], ["i"]),  # (2, 3)
        helper.make_node("Mul", ["i", "scale"], ["j"]),
        helper.make_node("Relu", ["j"], ["l"]),
        helper.make_node("Reshape", ["l", "flat"], ["m"]),  # (1, 6)
        helper.make_node("Reshape", ["m", "same"], ["n"]),  # (1, 6) again
        helper.make_node("Neg", ["n"], ["o"]),
        helper.make_node("Flatten", ["o"], ["y"]),
    ]
    path = save(tmp_path / "ops.onnx", nodes, inits, [1, 4])
    net = read_onnx(path)
    x = rng.standard_normal((20, 4))
    c = 0.5 * ((x - inits["mean"]) / inits["std"]) @ inits["wa"] + 2.0 * inits["ca"]
    f = np.maximum(c, 0) @ inits["wm"] + inits["bm"]
    g = 3.0 - f
    i = inits["left"][None] @ g[:, None, :]  # (20, 2, 3)
    expected = -np.maximum(i * inits["scale"], 0).reshape(20, 6)
    np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), expected, rtol=1e-10, atol=1e-10)
    assert sum(isinstance(layer, ReLU) for layer in net.layers) == 2
    assert net.n_outputs == 6


def test_conv_batchnorm_net_matches_torch_and_is_folded(tmp_path):
    rng = np.random.default_rng(2)
    inits = {
        "mean": f32(1, 2, 1, 1, rng=rng),
        "std": np.abs(f32(1, 2, 1, 1, rng=rng)) + 0.5,
        "k1": f32(4, 2, 3, 3, rng=rng),
        "c1": f32(4, rng=rng),
        "gamma": f32(4, rng=rng),  # negative scales too
        "beta": f32(4, rng=rng),
        "rmean": f32(4, rng=rng),
        "rvar": np.abs(f32(4, rng=rng)) + 0.5,
        "k2": f32(6, 2, 2, 2, rng=rng),  # group=2: 4 channels in, 6 out
        "w": f32(6 * 2 * 2, 3, rng=rng),
        "b": f32(3, rng=rng),
    }
    inits = as_stored(inits)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b0"]),
        helper.make_node(
            "Conv", ["b0", "k1", "c1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"
        ),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "rmean", "rvar"], ["d"], epsilon=1e-3
        ),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node(
            "Conv", ["e", "k2"], ["f"], dilations=[2, 2], group=2, kernel_shape=[2, 2]
        ),
        helper.make_node("Relu", ["f"], ["g"]),
        helper.make_node("Flatten", ["g"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["i"]),
        helper.make_node("Add", ["i", "b"], ["y"]),
    ]
    path = save(tmp_path / "cnn.onnx", nodes, inits, ["N", 2, 8, 8])
    net = read_onnx(path)
    assert net.input_shape == (2, 8, 8)
    assert [type(layer) for layer in net.layers] == [Conv, ReLU, Conv, ReLU, Dense]

    t = {k: torch.from_numpy(v) for k, v in inits.items()}
    x = torch.randn(10, 2, 8, 8, dtype=torch.float64)
    z = F.conv2d((x - t["mean"]) / t["std"], t["k1"], t["c1"], stride=2, padding=1)
    z = F.batch_norm(z, t["rmean"], t["rvar"], t["gamma"], t["beta"], False, 0.0, 1e-3)
    z = F.conv2d(z.relu(), t["k2"], None, dilation=2, groups=2).relu()
    expected = z.flatten(1) @ t["w"] + t["b"]
    torch.testing.assert_close(net(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("shape", "input_shape"),
    [([1, 784], (784,)), ([1, 1, 28, 28], (1, 28, 28)), (["batch", 784], (784,)), ([5], (5,))],
)
def test_input_shape_drops_the_batch_dimension(tmp_path, shape, input_shape):
    path = save(tmp_path / "r.onnx", [helper.make_node("Relu", ["x"], ["y"])], {}, shape)
    net = read_onnx(path)
    assert net.input_shape == input_shape
    x = torch.randn(3, *input_shape, dtype=torch.float64)
    torch.testing.assert_close(net(x), x.reshape(3, -1).relu())


def test_acasxu_onnx_has_seven_dense_layers(data_root):
    files = sorted((data_root / "acasxu" / "onnx").glob("*.onnx"))
    if len(files) != 45:
        pytest.skip(f"ACAS Xu ONNX files not found under {data_root / 'acasxu' / 'onnx'}")
    for path in files:
        net = read_onnx(path)
        assert [type(layer) for layer in net.layers] == [Dense, ReLU] * 6 + [Dense]
        assert net.input_shape == (1, 1, 5) and net.n_inputs == 5 and net.n_outputs == 5


@pytest.mark.parametrize("op", ["Sigmoid", "MaxPool", "Tanh"])
def test_unsupported_operator_is_named(tmp_path, op):
    attrs = {"kernel_shape": [2, 2]} if op == "MaxPool" else {}
    nodes = [helper.make_node(op, ["x"], ["y"], name="bad_node", **attrs)]
    path = save(tmp_path / "u.onnx", nodes, {}, [1, 1, 4, 4])
    with pytest.raises(UnsupportedOperator) as info:
        read_onnx(path)
    assert info.value.operator == op
    assert str(path) in str(info.value) and "bad_node" in str(info.value)


@pytest.mark.parametrize(
    ("nodes", "inits", "operator"),
    [
        ([helper.make_node("Div", ["c", "x"], ["y"])], {"c": [2.0]}, "Div of a constant"),
        ([helper.make_node("Add", ["x", "x"], ["y"])], {}, "Add of two input-dependent"),
        (
            [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
            {},
            "Add reading an earlier tensor",
        ),
        (
            [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 0, 0, 0])],
            {"k": np.ones((1, 1, 2, 2))},
            "Conv with asymmetric pads",
        ),
    ],
)
def test_unsupported_graph_shapes(tmp_path, nodes, inits, operator):
    path = save(tmp_path / "u.onnx", nodes, inits, [1, 1, 3, 3])
    with pytest.raises(UnsupportedOperator, match=operator):
        read_onnx(path)


@pytest.mark.parametrize(
    ("nodes", "inits", "message"),
    [
        ([helper.make_node("MatMul", ["x", "missing"], ["y"])], {}, "never defined"),
        ([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": np.ones((3, 2))}, "MatMul"),
        ([helper.make_node("Gemm", ["x", "w"], ["y"])], {"w": np.ones((3, 2))}, "Gemm"),
        (
            [helper.make_node("Reshape", ["x", "s"], ["y"])],
            {"s": np.array([1, 7], dtype=np.int64)},
            "cannot reshape",
        ),
        ([helper.make_node("Relu", ["x"], ["z"])], {}, "graph output 'y'"),
    ],
)
def test_malformed_graph_is_a_format_error(tmp_path, nodes, inits, message):
    path = save(tmp_path / "m.onnx", nodes, inits, [1, 4])
    with pytest.raises(FormatError, match=message) as info:
        read_onnx(path)
    assert str(path) in str(info.value)


def test_garbage_and_truncated_files_are_format_errors(tmp_path):
    good = save(tmp_path / "good.onnx", [helper.make_node("Relu", ["x"], ["y"])], {}, [1, 4])
    data = good.read_bytes()
    for name, content in [
        ("garbage.onnx", b"\x00\xff not an onnx file \xfe" * 10),
        ("truncated.onnx", data[: len(data) // 2]),
        ("empty.onnx", b""),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(FormatError) as info:
            read_onnx(path)
        assert str(path) in str(info.value)
    with pytest.raises(UserError, match="no such file"):
        read_onnx(tmp_path / "absent.onnx")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=300),
    cut=st.integers(0, 10_000),
    flips=st.lists(st.integers(0, 10_000), max_size=4),
)
def test_fuzzed_bytes_raise_only_user_errors(tmp_path, data, cut, flips):
    rng = np.random.default_rng(0)
    valid = save(
        tmp_path / "valid.onnx",
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["y"]),
        ],
        {"w": f32(3, 4, rng=rng), "b": f32(3, rng=rng)},
        [1, 4],
    ).read_bytes()
    mutated = bytearray(valid[: cut % (len(valid) + 1)] if cut % 3 == 0 else valid)
    for flip in flips:
        if mutated:
            mutated[flip % len(mutated)] ^= 0xFF
    for content in (data, bytes(mutated)):
        path = tmp_path / "fuzz.onnx"
        path.write_bytes(content)
        with contextlib.suppress(UserError):
            read_onnx(path)
