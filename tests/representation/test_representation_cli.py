"""``advml dann`` and ``advml fair`` end to end on small subsets of the real data."""

from __future__ import annotations

import json

from advml.cli.main import main


def test_dann_cli_mnist_to_usps(data_root, tmp_path, capsys):
    out = tmp_path / "dann"
    code = main(
        [
            "dann", "--source", "mnist", "--target", "usps", "--data-dir", str(data_root),
            "--out", str(out), "--epochs", "1", "--n-source", "256", "--n-target", "256",
            "--n-eval", "200", "--probe-samples", "100", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for method in ("source-only", "dann", "oracle"):
        assert f"| {method} |" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["pair"] == "mnist->usps" and result["sizes"]["target_test"] == 200
    assert result["methods"]["dann"]["domain_acc"] is not None
    assert (out / "dann" / "model.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["command"].startswith("advml dann")


def test_dann_cli_errors(tmp_path, capsys):
    assert main(["dann", "--target", "mnist", "--out", str(tmp_path)]) == 2
    assert "both mnist" in capsys.readouterr().err
    try:
        main(["dann", "--target", "usps", "--methods", "dann,magic", "--out", str(tmp_path)])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "methods must be" in capsys.readouterr().err


def test_fair_cli_single_weight_and_sweep(data_root, tmp_path, capsys):
    out = tmp_path / "fair"
    common = ["--data-dir", str(data_root), "--epochs", "1", "--no-progress"]
    assert main(["fair", "--adversary-weight", "1", "--out", str(out), *common]) == 0
    result = json.loads((out / "results.json").read_text())
    (row,) = result["rows"]
    assert row["adversary_weight"] == 1.0 and 0.5 < row["accuracy"] < 1
    assert "| dp | 1 |" in capsys.readouterr().out
    out = tmp_path / "sweep"
    assert main(["fair", "--sweep", "0,2", "--objective", "eo", "--out", str(out), *common]) == 0
    assert (out / "tradeoff_delta_dp.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 2


def test_fair_cli_errors(tmp_path, capsys):
    assert main(["fair", "--objective", "parity", "--out", str(tmp_path)]) == 2
    assert "--objective must be" in capsys.readouterr().err
    assert main(["fair", "--sweep", "a,b", "--out", str(tmp_path)]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
