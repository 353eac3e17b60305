"""``advml verify`` (VNN-COMP's run_instance contract) and ``advml certify``."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from advml.cli.main import main
from advml.verification import read_counterexample, read_onnx, read_vnnlib


def _acas(data_root, net: str, prop: int):
    onnx_path = data_root / "acasxu" / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    vnnlib_path = data_root / "acasxu" / "vnnlib" / f"prop_{prop}.vnnlib"
    if not onnx_path.is_file() or not vnnlib_path.is_file():
        pytest.skip(f"ACAS Xu files not found under {data_root / 'acasxu'}")
    return onnx_path, vnnlib_path


def test_verify_sat_writes_a_counterexample_that_violates_the_property(data_root, tmp_path, capsys):
    onnx_path, vnnlib_path = _acas(data_root, "2_1", 2)
    out = tmp_path / "result.txt"
    code = main(
        [
            "verify",
            "--onnx",
            str(onnx_path),
            "--vnnlib",
            str(vnnlib_path),
            "--timeout",
            "60",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == "sat"
    assert out.read_text().splitlines()[0] == "sat"
    x, y = read_counterexample(out)
    network = read_onnx(onnx_path)
    (prop,) = read_vnnlib(vnnlib_path, network.n_inputs, network.n_outputs)
    y_check = network.to(torch.float64)(x[None])
    torch.testing.assert_close(y_check[0], y, rtol=0, atol=1e-9)
    assert bool(prop.violated_by(x[None], y_check)[0])


def test_verify_unsat_through_the_nnet_file(data_root, tmp_path, capsys):
    _acas(data_root, "1_1", 3)
    nnet = data_root / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
    vnnlib_path = data_root / "acasxu" / "vnnlib" / "prop_3.vnnlib"
    out = tmp_path / "result.txt"
    code = main(["verify", "--nnet", str(nnet), "--vnnlib", str(vnnlib_path), "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.strip() == "unsat"
    assert out.read_text().strip() == "unsat"


def _sigmoid_onnx(path):
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Sigmoid", ["h"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[weight],
    )
    onnx.save(helper.make_model(graph), str(path))


def test_verify_unsupported_operator_answers_unknown(tmp_path, capsys):
    net = tmp_path / "sigmoid.onnx"
    _sigmoid_onnx(net)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(declare-const Y_1 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
        "(assert (>= X_1 0))\n(assert (<= X_1 1))\n(assert (>= Y_0 2))\n"
    )
    out = tmp_path / "r.txt"
    assert main(["verify", "--onnx", str(net), "--vnnlib", str(prop), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "unknown"
    assert "Sigmoid" in captured.err
    assert out.read_text().strip() == "unknown"


def test_verify_malformed_property_is_a_one_line_error(data_root, tmp_path, capsys):
    onnx_path, _ = _acas(data_root, "1_1", 1)
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    assert main(["verify", "--onnx", str(onnx_path), "--vnnlib", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.vnnlib" in err


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory):
    out = tmp_path_factory.mktemp("certify") / "mlp"
    argv = ["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "4"]
    assert main([*argv, "--batch-size", "64", "--out", str(out), "--device", "cpu"]) == 0
    return out


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_certify_reports_certified_next_to_attacked(digits_mlp, method, tmp_path, capsys):
    out = tmp_path / method
    argv = ["certify", "--checkpoint", str(digits_mlp), "--eps", "0.01", "--method", method]
    assert main([*argv, "--n", "60", "--attacks", "fast", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "certified accuracy" in printed and "robust accuracy under attack" in printed
    results = json.loads((out / "results.json").read_text())
    assert len(results["per_sample"]) == 60 == sum(results["counts"].values())
    assert results["certified_accuracy"] <= results["robust_accuracy_under_attack"]
    assert results["robust_accuracy_under_attack"] <= results["clean_accuracy"]
    assert (out / "config.json").is_file()


def test_certify_rejects_a_mismatched_threat(digits_mlp, tmp_path, capsys):
    argv = ["certify", "--checkpoint", str(digits_mlp), "--eps", "0.1", "--method", "smoothing"]
    assert main([*argv, "--out", str(tmp_path / "s")]) == 2
    assert "L2" in capsys.readouterr().err
