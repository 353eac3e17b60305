"""Malformed checkpoints: every failure is one FormatError naming the file; nothing unpickles."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_save

from advml.errors import FormatError
from advml.models import build, load, read_card, save


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A small valid checkpoint ``(weights, card)``, copied by each test that edits it."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build("cnn-small", (1, 8, 8), 10, mean=0.5, std=0.25)
    weights = save(model, folder / "net.safetensors", {"dataset": "digits"})
    return weights, weights.with_suffix(".json")


@pytest.fixture
def ckpt(saved, tmp_path) -> tuple[Path, Path]:
    weights, card = saved
    shutil.copy(weights, tmp_path / weights.name)
    shutil.copy(card, tmp_path / card.name)
    return tmp_path / weights.name, tmp_path / card.name


def _card(path: Path) -> dict:
    return json.loads(path.read_text())


def _write_card(path: Path, card: dict) -> None:
    path.write_text(json.dumps(card, indent=2))


def _write_weights(weights: Path, card_path: Path, data: bytes) -> None:
    """Replace the weights and record their hash, so the safetensors parser is reached."""
    weights.write_bytes(data)
    card = _card(card_path)
    card["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    _write_card(card_path, card)


def _expect(path: Path, match: str, target: Path | str | None = None) -> FormatError:
    with pytest.raises(FormatError, match=match) as info:
        load(target if target is not None else path)
    error = info.value
    assert Path(error.path) == path, (error.path, path)
    assert str(path) in str(error)
    return error


def test_valid_checkpoint_loads(ckpt):
    weights, _ = ckpt
    assert load(weights).advml_card["dataset"] == "digits"


def test_invalid_json_reports_the_line(ckpt):
    weights, card = ckpt
    lines = card.read_text().splitlines()
    lines[3] = lines[3].replace(",", "")  # drop a comma on line 4
    card.write_text("\n".join(lines))
    error = _expect(card, "invalid JSON", weights)
    assert error.line == 5
    assert f"{card}:5:" in str(error)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"format": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"[" * 100_000, "invalid JSON"),
        (b"", "invalid JSON"),
    ],
)
def test_not_a_json_object(ckpt, text, match):
    weights, card = ckpt
    card.write_bytes(text)
    _expect(card, match, weights)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"format": "something.else"}, "not an advml model card: format is 'something.else'"),
        ({"format_version": 2}, "unsupported format version 2.*upgrade advml"),
        ({"format_version": 0}, "unsupported format version 0"),
        ({"format_version": "1"}, "format_version must be an integer"),
        ({"arch": 5}, "arch must be a non-empty string"),
        ({"arch_kwargs": []}, "arch_kwargs must be an object"),
        ({"input_shape": [1, -8, 8]}, "input_shape must be a list of positive integers"),
        ({"num_classes": 10.0}, "num_classes must be a positive integer"),
        ({"normalization": {"mean": [0.5]}}, "normalization must be null"),
        ({"weights": {"sha256": "abc"}}, "64 lower-case hex"),
        ({"weights": []}, "weights must be an object"),
    ],
)
def test_bad_card_fields(ckpt, edit, match):
    weights, card = ckpt
    _write_card(card, {**_card(card), **edit})
    _expect(card, match, weights)
    with pytest.raises(FormatError, match=match):
        read_card(card)


@pytest.mark.parametrize("key", ["format", "arch", "input_shape", "weights", "normalization"])
def test_missing_keys(ckpt, key):
    weights, card = ckpt
    data = _card(card)
    del data[key]
    _write_card(card, data)
    _expect(card, "missing" if key != "format" else "format is missing", weights)


def test_missing_keys_are_listed_together(ckpt):
    weights, card = ckpt
    data = _card(card)
    del data["num_classes"], data["arch_kwargs"]
    _write_card(card, data)
    _expect(card, "missing keys: arch_kwargs, num_classes", weights)


def test_unknown_architecture(ckpt):
    weights, card = ckpt
    _write_card(card, {**_card(card), "arch": "vgg-99"})
    _expect(card, r"unknown architecture 'vgg-99'.*cnn-small", weights)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"arch_kwargs": {"depth": 3}}, "no option 'depth'"),
        ({"input_shape": [2]}, "image inputs"),
        ({"normalization": {"mean": [0.5, 0.5], "std": [1.0, 1.0]}}, "give 1 or 1"),
        ({"normalization": {"mean": [0.5], "std": [0.0]}}, "std must be > 0"),
    ],
)
def test_card_that_cannot_be_built(ckpt, edit, match):
    weights, card = ckpt
    _write_card(card, {**_card(card), **edit})
    _expect(card, f"cannot build the card's architecture.*{match}", weights)


def test_weights_hash_mismatch(ckpt):
    weights, card = ckpt
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    _expect(weights, "sha256 .* does not match", card)


def test_truncated_weights(ckpt):
    weights, _ = ckpt
    weights.write_bytes(weights.read_bytes()[:-100])
    _expect(weights, "does not match")


def test_truncated_weights_with_matching_hash(ckpt):
    weights, card = ckpt
    _write_weights(weights, card, weights.read_bytes()[:-100])
    _expect(weights, "not a valid safetensors file")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "too short"),
        (b"garbage", "too short"),
        (struct.pack("<Q", 1 << 40) + b"{}", "header of 1099511627776 bytes"),
        (struct.pack("<Q", 2) + b"[]", "not a valid safetensors"),
        (struct.pack("<Q", 5) + b"nope!", "not a valid safetensors"),
        (b"\x80\x02}q\x00." + b"\x00" * 16, "not a valid safetensors file|header of"),
    ],
)
def test_garbage_weights(ckpt, data, match):
    weights, card = ckpt
    _write_weights(weights, card, data)
    _expect(weights, match)


def test_missing_unexpected_and_misshaped_tensors_are_named(ckpt):
    weights, card = ckpt
    tensors = dict(load(weights).state_dict())
    del tensors["conv1.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    tensors["fc2.weight"] = torch.zeros(3, 128)
    _write_weights(weights, card, safetensors_save(tensors))
    error = _expect(weights, "weights do not fit")
    message = str(error)
    assert "missing tensors: conv1.bias" in message
    assert "unexpected tensors: extra.weight" in message
    assert "fc2.weight is (3, 128), expected (10, 128)" in message


def test_wrong_dtype_kind_is_named(ckpt):
    weights, card = ckpt
    tensors = {k: v.clone() for k, v in load(weights).state_dict().items()}
    tensors["fc1.bias"] = torch.zeros(128, dtype=torch.int32)
    _write_weights(weights, card, safetensors_save(tensors))
    _expect(weights, "wrong dtypes: fc1.bias is int32, expected a floating-point tensor")


def test_weights_file_missing(ckpt):
    weights, card = ckpt
    weights.unlink()
    _expect(weights, "weights file not found", card)


def test_card_missing(ckpt):
    weights, card = ckpt
    card.unlink()
    _expect(card, "model card not found", weights)


def test_nothing_there(tmp_path):
    _expect(tmp_path / "none.safetensors", "no such checkpoint")
    _expect(tmp_path / "none", "no such checkpoint")
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty" / "model.safetensors", "no such checkpoint", tmp_path / "empty")
    (tmp_path / "model.pt").write_bytes(b"\x80\x02")
    _expect(tmp_path / "model.pt", "not a checkpoint")


def test_card_that_is_a_directory(ckpt):
    weights, card = ckpt
    card.unlink()
    card.mkdir()
    _expect(card, "is a directory", weights)


def test_load_never_unpickles(ckpt, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("advml.models.load must not unpickle")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.serialization, "load", forbidden)
    weights, card = ckpt
    model = load(weights)
    read_card(card)
    save(model, weights.parent / "again.safetensors")
    load(weights.parent / "again.json")


# --------------------------------------------------------------------------- fuzz

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _only_format_errors(target: Path) -> None:
    try:
        load(target)
    except FormatError as error:
        assert str(target.parent) in str(error)
    # loading may also succeed (e.g. a card change that does not matter)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_random_card_bytes(ckpt, data):
    weights, card = ckpt
    card.write_bytes(data)
    with pytest.raises(FormatError):
        load(weights)


@FUZZ
@given(data=st.data())
def test_fuzz_truncated_card(saved, ckpt, data):
    weights, card = ckpt
    original = saved[1].read_bytes()
    cut = data.draw(st.integers(0, len(original) - 2))
    card.write_bytes(original[:cut])
    with pytest.raises(FormatError):
        load(weights)


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_card(saved, ckpt, data):
    weights, card = ckpt
    original = bytearray(saved[1].read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    card.write_bytes(bytes(original))
    _only_format_errors(weights)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_random_weight_bytes(ckpt, data):
    weights, _ = ckpt
    weights.write_bytes(data)
    with pytest.raises(FormatError):
        load(weights)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_random_weight_bytes_with_matching_hash(ckpt, data):
    weights, card = ckpt
    _write_weights(weights, card, data)
    with pytest.raises(FormatError):
        load(weights)


@FUZZ
@given(data=st.data())
def test_fuzz_truncated_or_mutated_weights_with_matching_hash(saved, ckpt, data):
    weights, card = ckpt
    original = bytearray(saved[0].read_bytes())
    if data.draw(st.booleans()):
        original = original[: data.draw(st.integers(0, len(original) - 1))]
    else:
        header = int.from_bytes(original[:8], "little") + 8
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, header - 1))  # corrupt the header region
            original[position] = data.draw(st.integers(0, 255))
    _write_weights(weights, card, bytes(original))
    _only_format_errors(weights)
