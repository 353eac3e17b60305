"""The model zoo: every committed card re-measured (RobustBench's pattern), the card's zoo
section, the build script's table, unknown names and tampered weights."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest
import torch

from advml import data, zoo
from advml.errors import FormatError, UserError
from advml.models import load, read_card

REPO = Path(__file__).resolve().parents[2]
ENTRIES = zoo.names()
#: Entries the zoo must always have (the MNIST ones are built later with the same script).
DIGITS = ("digits-standard", "digits-pgd")


def _build_script():
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("zoo_build")


def _data_root(request: pytest.FixtureRequest, name: str, dataset: str) -> Path | None:
    """The data root for ``dataset`` (None for bundled data); skips when it is missing."""
    if data.info(dataset).folder is None:
        return None
    root = request.getfixturevalue("data_root")  # skips when there is no shared data folder
    status = {row.name: row.status for row in data.available(root)}.get(dataset)
    if status != "found":
        pytest.skip(
            f"zoo entry {name} is measured on {dataset}, which is {status} under {root}; "
            f"set ADVML_DATA to a folder holding {dataset}/"
        )
    return root


def test_the_digits_entries_are_committed():
    assert set(DIGITS) <= set(ENTRIES)


@pytest.mark.parametrize("name", ENTRIES)
def test_card_clean_accuracy_is_remeasured(request, name):
    section = zoo.info(name)
    root = _data_root(request, name, section["dataset"])
    model = load(f"zoo:{name}")
    x, y = data.load(section["dataset"], section["split"], root=root)
    n = section["n"]
    x, y = x[:n], y[:n]
    assert len(y) == n
    correct = 0
    with torch.no_grad():
        for start in range(0, n, 500):
            logits = model(x[start : start + 500])
            correct += int((logits.argmax(dim=1) == y[start : start + 500]).sum())
    recorded = round(section["clean_accuracy"] * n)
    assert abs(correct - recorded) <= 1, (
        f"{name}: {correct}/{n} correct now, the card records {recorded}/{n}"
    )


@pytest.mark.parametrize("name", ENTRIES)
def test_card_zoo_section_is_complete_and_consistent(name):
    card = zoo.card(name)
    section = zoo.info(name)
    assert set(zoo.REQUIRED_FIELDS) <= set(section)
    assert section["name"] == name
    assert section["dataset"] == card["dataset"]
    assert section["arch"] == card["arch"]
    assert section["recipe"] == card.get("recipe", "standard")
    assert section["attacks"] == "standard"
    assert isinstance(section["n"], int) and section["n"] > 0
    assert 0.0 <= section["robust_accuracy"] <= section["clean_accuracy"] <= 1.0
    assert section["eps"] > 0
    if section["recipe"] == "standard":
        assert section["train_eps"] is None
    else:
        assert section["train_eps"] == section["eps"]  # robust accuracy at the training eps
    # the card is the one `advml train` wrote, and the recorded command is the one that ran
    assert card["command"] == section["train_command"]
    assert section["train_command"].startswith("advml train ")
    evaluation = section["eval_command"].split()
    assert evaluation[:4] == ["advml", "evaluate", "--checkpoint", f"zoo:{name}"]
    for option, value in [
        ("--attacks", "standard"),
        ("--eps", f"{section['eps']:g}"),
        ("--n", str(section["n"])),
        ("--threat", section["threat"]),
        ("--split", section["split"]),
    ]:
        assert evaluation[evaluation.index(option) + 1] == value
    assert len(section["date"]) == 10 and section["date"][4] == "-"


@pytest.mark.parametrize("name", ENTRIES)
def test_cards_agree_with_the_build_scripts_table(name):
    script = _build_script()
    section = zoo.info(name)
    entry = script.ENTRIES[name]
    device = section.get("device", "cpu")
    assert section["train_command"] == script.train_command(entry, device)
    assert section["eval_command"] == script.eval_command(entry, device)
    assert (section["dataset"], section["eps"], section["n"]) == (entry.dataset, entry.eps, entry.n)


def test_build_script_covers_the_required_entries():
    script = _build_script()
    assert {
        "mnist-standard",
        "mnist-fgsm-rs",
        "mnist-trades",
        "digits-standard",
        "digits-pgd",
    } <= set(script.ENTRIES)
    fgsm_rs = script.train_command(script.ENTRIES["mnist-fgsm-rs"])
    assert "--recipe fgsm-rs" in fgsm_rs and "--eps 0.3" in fgsm_rs
    assert "--schedule cyclic" in fgsm_rs and "--epochs 10" in fgsm_rs
    assert "--recipe trades --threat linf --eps 0.3" in script.train_command(
        script.ENTRIES["mnist-trades"]
    )


def test_digits_entries_match_the_demo():
    """The demo's defaults (architecture, epochs, PGD ε) are the digits entries' settings."""
    from advml.cli.main import build_parser

    demo = build_parser().parse_args(["demo"])
    standard, robust = zoo.info("digits-standard"), zoo.info("digits-pgd")
    assert standard["arch"] == robust["arch"] == demo.arch
    assert robust["recipe"] == "pgd" and robust["train_eps"] == demo.train_eps
    for section in (standard, robust):
        assert f"--epochs {demo.epochs} " in section["train_command"]
    assert robust["eps"] in demo.eps


@pytest.mark.parametrize("name", ENTRIES)
def test_weights_are_small(name):
    assert zoo.path(name).stat().st_size < 5 << 20


def test_load_by_name_with_or_without_prefix():
    model = zoo.load("digits-standard")
    same = load("zoo:digits-standard")
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(model(x), same(x))
    assert model.advml_card["zoo"]["name"] == "digits-standard"
    assert zoo.path("zoo:digits-pgd") == zoo.resolve("digits-pgd")[0]
    assert read_card("zoo:digits-pgd")["zoo"] == zoo.info("digits-pgd")


@pytest.mark.parametrize("name", ["nope", "../weights/digits-pgd", "digits-pgd.json", ""])
def test_unknown_name_lists_the_available_ones(name):
    for call in (
        lambda: load(f"zoo:{name}"),
        lambda: read_card(f"zoo:{name}"),
        lambda: zoo.info(name),
    ):
        with pytest.raises(UserError, match="unknown zoo model") as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message
        for entry in ENTRIES:
            assert entry in message


def test_tampered_weights_are_rejected(tmp_path, monkeypatch):
    copy = tmp_path / "weights"
    shutil.copytree(zoo.ZOO_DIR, copy)
    weights = copy / "digits-standard.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0x01  # one bit of the last parameter
    weights.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="sha256"):
        load(weights)
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    with pytest.raises(FormatError, match=r"sha256 \w+ does not match"):
        load("zoo:digits-standard")
    load("zoo:digits-pgd")  # the untouched entry still loads


def test_card_without_zoo_section_is_not_published(tmp_path, monkeypatch):
    copy = tmp_path / "weights"
    shutil.copytree(zoo.ZOO_DIR, copy)
    card = copy / "digits-pgd.json"
    card.write_text(card.read_text().replace('"zoo": {', '"not_zoo": {'))
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    with pytest.raises(FormatError, match="no 'zoo' section"):
        zoo.info("digits-pgd")


def test_empty_zoo_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "missing")
    assert zoo.names() == []
    with pytest.raises(UserError, match="available: none"):
        load("zoo:digits-pgd")
