"""``advml zoo list | info | get`` and ``zoo:NAME`` as a checkpoint of other commands."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from advml import zoo
from advml.cli.main import main
from advml.models import load


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_every_entry_with_its_accuracies(capsys):
    code, out, err = run_cli(capsys, "zoo", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "dataset", "arch", "recipe", "eps", "clean", "robust", "n"]
    assert zoo.names()
    for name in zoo.names():
        section = zoo.info(name)
        (row,) = [line for line in lines if line.split()[:1] == [name]]
        assert section["dataset"] in row and section["arch"] in row
        assert f"{100 * section['clean_accuracy']:.2f} %" in row
        assert f"{100 * section['robust_accuracy']:.2f} %" in row


def test_info_prints_the_zoo_section_as_json(capsys):
    code, out, _ = run_cli(capsys, "zoo", "info", "digits-pgd")
    assert code == 0
    assert json.loads(out) == zoo.info("digits-pgd")


def test_get_copies_a_checkpoint_that_load_reads_back(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "zoo", "get", "digits-pgd", "--out", str(tmp_path / "models"))
    assert code == 0
    path = Path(out.strip())
    assert path == tmp_path / "models" / "digits-pgd.safetensors"
    assert path.with_suffix(".json").is_file()
    copy, original = load(path), zoo.load("digits-pgd")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(copy(x), original(x))
    assert copy.advml_card == original.advml_card


def test_unknown_name_exits_2_with_one_line(capsys, tmp_path):
    for argv in (["get", "nope", "--out", str(tmp_path)], ["info", "nope"]):
        code, out, err = run_cli(capsys, "zoo", *argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "unknown zoo model 'nope'" in err
        assert all(name in err for name in zoo.names())
    assert list(tmp_path.iterdir()) == []


def test_zoo_without_action_prints_help(capsys):
    code, out, _ = run_cli(capsys, "zoo")
    assert code == 2 and "list" in out and "get" in out


def test_evaluate_takes_a_zoo_name(capsys, tmp_path):
    code, _, _ = run_cli(
        capsys,
        "evaluate",
        "--checkpoint",
        "zoo:digits-standard",
        "--attacks",
        "fgsm",
        "--eps",
        "0.05",
        "--n",
        "20",
        "--examples",
        "0",
        "--no-checks",
        "--out",
        str(tmp_path / "eval"),
        "--device",
        "cpu",
    )
    assert code == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["model"] == "zoo:digits-standard" and results["n"] == 20
