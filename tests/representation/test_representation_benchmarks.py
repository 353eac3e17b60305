"""Smoke tests of ``benchmarks/dann.py`` and ``benchmarks/fairness.py`` on tiny settings, so the
scripts keep working as advml changes."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_dann_benchmark_runs(data_root, tmp_path):
    out = tmp_path / "dann.json"
    report = _script("dann").main(
        [
            "--pairs", "usps", "--epochs", "1", "--n-source", "128", "--n-eval", "100",
            "--probe-samples", "50", "--data-dir", str(data_root), "--out", str(out),
        ]
    )  # fmt: skip
    row = report["pairs"]["mnist->usps"]
    assert set(row["methods"]) == {"source-only", "dann", "oracle"}
    assert "meets_target" in row and json.loads(out.read_text())["pairs"]


def test_fairness_benchmark_runs(data_root, tmp_path):
    out = tmp_path / "fair.json"
    report = _script("fairness").main(
        [
            "--weights", "0,1", "--objectives", "dp", "--epochs", "1",
            "--data-dir", str(data_root), "--out", str(out),
        ]
    )  # fmt: skip
    assert len(report["rows"]) == 2 and isinstance(report["meets_target"], bool)
    assert Path(report["figures"]["delta_dp"]).exists()
