"""Smoke tests of the benchmark scripts: each ``main`` runs end to end on a few images of the
bundled digits data with a tiny model trained into a temporary cache, so the scripts cannot
rot. Peers (torchattacks, ART, Foolbox) run only where they import; the project environment
has none of them, and advml alone covers the scripts' own code."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


def _peer_args(cache: Path, out: Path, peers: str, attacks: str) -> list[str]:
    return [
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "1",
        "--cache",
        str(cache),
        "--n",
        "6",
        "--batch-size",
        "3",
        "--warmup",
        "2",
        "--cw-n",
        "2",
        "--square-queries",
        "60",
        "--cw-binary-steps",
        "2",
        "--cw-steps",
        "10",
        "--attacks",
        attacks,
        "--peers",
        peers,
        "--out",
        str(out),
    ]


def test_attacks_vs_peers_advml_only(cache: Path, tmp_path: Path, capsys) -> None:
    peers = _script("attacks_vs_peers")
    out = tmp_path / "peers.json"
    # CW with its defaults (9 x 1000 steps) is too slow for a smoke test; "cw-matched" runs the
    # same code with a small budget
    names = [a for a in peers.ATTACKS if a != "cw"]
    payload = peers.main(_peer_args(cache, out, "", ",".join(names)))
    assert set(payload["results"]) == set(names)
    for name, per_library in payload["results"].items():
        record = per_library["advml"]
        assert "error" not in record, (name, record.get("error"))
        assert record["trusted"], name  # advml's outputs stay inside the threat model
        assert record["images_per_second"] > 0
        if name in ("cw-matched", "deepfool"):
            assert record["median_l2"] >= 0 or math.isinf(record["median_l2"])
        else:
            assert 0.0 <= record["robust_accuracy"] <= record["clean_accuracy"]
    # PGD-40 at L∞ 0.3 breaks a standard digits MLP
    assert payload["results"]["pgd"]["advml"]["robust_accuracy"] == 0.0
    assert json.loads(out.read_text())["targets"].keys() == payload["targets"].keys()
    printed = capsys.readouterr().out
    assert "| attack" in printed and "advml / fastest peer" in printed


@pytest.mark.parametrize("peer", ["torchattacks", "art", "foolbox"])
def test_attacks_vs_peers_with_peer(peer: str, cache: Path, tmp_path: Path) -> None:
    pytest.importorskip(peer)
    peers = _script("attacks_vs_peers")
    payload = peers.main(_peer_args(cache, tmp_path / "p.json", peer, "fgsm,pgd,deepfool"))
    for name in ("fgsm", "pgd", "deepfool"):
        record = payload["results"][name][peer]
        assert "error" not in record, (name, record.get("error"))
    assert payload["targets"]["pgd"]["ratio"] is not None


def test_goodfellow_fgsm(cache: Path, tmp_path: Path, capsys) -> None:
    goodfellow = _script("goodfellow_fgsm")
    payload = goodfellow.main(
        [
            "--dataset",
            "digits",
            "--models",
            "linear:1,mlp:1,mlp:1:fgsm",
            "--cache",
            str(cache),
            "--n",
            "100",
            "--out",
            str(tmp_path / "g.json"),
        ]
    )
    results = payload["results"]
    assert [(r["arch"], r["variant"]) for r in results] == [
        ("linear", "box"),
        ("linear", "no clip"),
        ("mlp", "box"),
        ("mlp", "no clip"),
        ("mlp", "box"),
        ("mlp", "no clip"),
    ]
    assert [r["recipe"] for r in results] == ["standard"] * 4 + ["fgsm"] * 2
    assert results[-1]["stands_for"] == "maxout network, FGSM-trained"
    for r in results:
        assert r["linf"] <= 0.25 + 1e-6
        assert r["error"] >= r["clean_error"] - 0.05  # FGSM raises the error
        low, high = r["range"]
        if r["variant"] == "box":
            assert low >= 0.0 and high <= 1.0
    assert any(r["range"][0] < 0 for r in results if r["variant"] == "no clip")
    assert "paper: error / confidence" in capsys.readouterr().out


def test_wong_fgsm_rs(tmp_path: Path, capsys) -> None:
    wong = _script("wong_fgsm_rs")
    payload = wong.main(
        [
            "--checkpoint",
            "zoo:digits-pgd",
            "--dataset",
            "digits",
            "--eps",
            "0.15",
            "--n",
            "40",
            "--out",
            str(tmp_path / "w.json"),
        ]
    )
    assert 0.0 <= payload["pgd_50_10_accuracy"] <= payload["clean_accuracy"] <= 1.0
    assert payload["standard"] is not None  # the zoo card's own evaluation
    assert "PGD-50, 10 restarts" in capsys.readouterr().out
