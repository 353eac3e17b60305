"""save/load round trips, the card's contents, path forms, and save-side errors."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import advml
from advml.errors import UserError
from advml.models import CARD_FORMAT, CARD_VERSION, build, load, read_card, save

ROUND_TRIP = [
    ("linear", (2,), {}),
    ("mlp", (1, 8, 8), {"hidden": [16, 8]}),
    ("cnn-small", (1, 8, 8), {}),
    ("lenet", (1, 28, 28), {}),
    ("madry-mnist", (1, 8, 8), {}),
    ("wong-mnist", (1, 28, 28), {}),
    ("resnet-lite", (3, 16, 16), {"width": 4, "blocks": 1}),
]


def _perturb_batchnorm(model: nn.Module) -> None:
    """Make BN statistics non-trivial so the round trip checks buffers too."""
    model.train()
    with torch.no_grad():
        shape = model.advml_spec["input_shape"]
        model(torch.rand(16, *shape, dtype=next(model.parameters()).dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("arch", "shape", "kwargs"), ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_round_trip_gives_identical_outputs(tmp_path, arch, shape, kwargs, dtype):
    mean = [0.5] * shape[0] if len(shape) == 3 else None
    std = [0.25] * shape[0] if len(shape) == 3 else None
    model = build(arch, shape, 5, mean=mean, std=std, **kwargs).to(dtype)
    _perturb_batchnorm(model)
    model.eval()
    x = torch.rand(4, *shape, dtype=dtype)
    path = save(model, tmp_path / "net.safetensors", {"dataset": "toy"})
    loaded = load(path)
    assert not loaded.training
    assert next(loaded.parameters()).dtype == dtype
    assert torch.equal(model(x), loaded(x))
    for (name, a), (name_b, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == name_b and a.dtype == b.dtype and torch.equal(a, b)


def test_loaded_model_is_trainable_and_independent(tmp_path):
    model = build("mlp", (2,), 2, hidden=[3])
    save(model, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    assert all(p.requires_grad for p in loaded.parameters())
    before = model.fc1.weight.clone()
    with torch.no_grad():
        loaded.fc1.weight.add_(1.0)
    assert torch.equal(model.fc1.weight, before)
    loaded.train()
    loss = loaded(torch.rand(4, 2)).sum()
    loss.backward()
    assert loaded.fc1.weight.grad is not None


def test_card_contents(tmp_path):
    model = build("cnn-small", (1, 28, 28), 10, mean=0.1307, std=0.3081)
    extra = {
        "dataset": "mnist",
        "recipe": "standard",
        "metrics": {"clean_acc": 0.99, "n": torch.tensor(3)},
        "seed": 0,
        "command": "advml train --arch cnn-small",
        "out": Path("runs/x"),
    }
    path = save(model, tmp_path / "cnn.safetensors", extra)
    card_path = tmp_path / "cnn.json"
    card = json.loads(card_path.read_text())
    assert card["format"] == CARD_FORMAT == "advml.model"
    assert card["format_version"] == CARD_VERSION == 1
    assert card["arch"] == "cnn-small" and card["arch_kwargs"] == {}
    assert card["input_shape"] == [1, 28, 28] and card["num_classes"] == 10
    assert card["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert card["advml_version"] == advml.__version__
    assert card["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["weights"]["bytes"] == path.stat().st_size
    assert card["weights"]["dtype"] == "float32"
    assert card["weights"]["parameters"] == 720_074
    assert datetime.fromisoformat(card["created"]).tzinfo is not None
    assert card["dataset"] == "mnist" and card["recipe"] == "standard"
    assert card["metrics"] == {"clean_acc": 0.99, "n": 3}
    assert card["seed"] == 0 and card["command"].startswith("advml train")
    assert card["out"] == "runs/x"
    assert read_card(path) == card == read_card(card_path) == load(path).advml_card


def test_weights_file_is_plain_safetensors(tmp_path):
    model = build("mlp", (2,), 2, hidden=[3], mean=0.0, std=1.0)
    path = save(model, tmp_path / "m.safetensors")
    tensors = load_file(path)
    assert set(tensors) == set(model.state_dict())
    assert "normalize.mean" in tensors


def test_card_is_compact_and_readable(tmp_path):
    save(build("linear", (1, 8, 8), 10), tmp_path / "m.safetensors")
    text = (tmp_path / "m.json").read_text()
    assert '"input_shape": [1, 8, 8]' in text
    assert text.endswith("}\n")


def test_directory_form(tmp_path):
    model = build("linear", (2,), 2)
    out = tmp_path / "run" / "best"
    path = save(model, out)
    assert path == out / "model.safetensors" and (out / "model.json").is_file()
    for form in (out, str(out), out / "model.json", out / "model.safetensors"):
        assert isinstance(load(form), nn.Sequential)
    assert read_card(out)["arch"] == "linear"


def test_save_creates_parents_and_overwrites_atomically(tmp_path):
    model = build("linear", (2,), 2)
    path = tmp_path / "a" / "b" / "m.safetensors"
    save(model, path, {"seed": 1})
    save(model, path, {"seed": 2})
    assert read_card(path)["seed"] == 2
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in {"m.safetensors", "m.json"}]
    assert leftovers == []


def test_loaded_card_can_be_passed_back(tmp_path):
    model = build("mlp", (2,), 2, hidden=[3], mean=[0.0, 1.0], std=[1.0, 2.0])
    save(model, tmp_path / "a.safetensors", {"dataset": "toy", "seed": 7})
    loaded = load(tmp_path / "a.safetensors")
    with torch.no_grad():
        loaded.fc1.bias.zero_()
    save(loaded, tmp_path / "b.safetensors", loaded.advml_card)
    card_b = read_card(tmp_path / "b.json")
    assert card_b["dataset"] == "toy" and card_b["seed"] == 7
    assert card_b["weights"]["sha256"] != loaded.advml_card["weights"]["sha256"]
    assert torch.equal(load(tmp_path / "b.json").fc1.bias, torch.zeros(3))


def test_load_does_not_touch_the_global_random_state(tmp_path):
    save(build("resnet-lite", (3, 8, 8), 2, width=4, blocks=1), tmp_path / "r.safetensors")
    state = torch.random.get_rng_state()
    load(tmp_path / "r.safetensors")
    read_card(tmp_path / "r.safetensors")
    assert torch.equal(state, torch.random.get_rng_state())


def test_save_handles_shared_and_non_contiguous_tensors(tmp_path):
    model = build("mlp", (3,), 3, hidden=[3])
    with torch.no_grad():
        model.fc2.weight = model.fc1.weight  # tied: the state dict holds one storage twice
    model.register_buffer("unused", torch.empty(0))  # not in the architecture
    with pytest.raises(UserError, match="unexpected tensors: unused"):
        save(model, tmp_path / "m.safetensors")
    del model.unused
    path = save(model, tmp_path / "m.safetensors")
    loaded = load(path)
    assert torch.equal(loaded.fc1.weight, loaded.fc2.weight)
    x = torch.rand(2, 3)
    assert torch.equal(model(x), loaded(x))

    transposed = build("linear", (4,), 4)
    with torch.no_grad():
        transposed.fc1.weight = nn.Parameter(torch.rand(4, 4).t())
    assert not transposed.fc1.weight.is_contiguous()
    loaded = load(save(transposed, tmp_path / "t.safetensors"))
    assert torch.equal(loaded.fc1.weight, transposed.fc1.weight)


def test_save_unbuilt_model_explains_how(tmp_path):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(UserError, match=r"advml\.models\.build.*'arch'"):
        save(plain, tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()


def test_save_unbuilt_model_with_explicit_spec(tmp_path):
    from collections import OrderedDict

    plain = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(4, 2)))
    spec = {"arch": "linear", "input_shape": [4], "num_classes": 2}
    path = save(plain, tmp_path / "p.safetensors", spec)
    loaded = load(path)
    x = torch.rand(3, 4)
    assert torch.equal(plain(x), loaded(x))
    assert loaded.advml_card["arch_kwargs"] == {} and loaded.advml_card["normalization"] is None

    wrong = {"arch": "linear", "input_shape": [5], "num_classes": 2}
    with pytest.raises(UserError, match=r"does not match architecture 'linear'.*fc1.weight"):
        save(plain, tmp_path / "q.safetensors", wrong)
    with pytest.raises(UserError, match="unknown architecture"):
        save(plain, tmp_path / "q.safetensors", {**spec, "arch": "nope"})


def test_save_rejects_card_that_contradicts_the_model(tmp_path):
    model = build("linear", (2,), 2)
    with pytest.raises(UserError, match="num_classes=3 disagrees"):
        save(model, tmp_path / "m.safetensors", {"num_classes": 3})
    save(model, tmp_path / "m.safetensors", {"num_classes": 2, "input_shape": (2,)})


def test_save_rejects_modified_architecture(tmp_path):
    model = build("mlp", (2,), 2, hidden=[3])
    model.fc2 = nn.Linear(3, 5)
    with pytest.raises(UserError, match=r"mis-shaped tensors: fc2.weight is \(5, 3\)"):
        save(model, tmp_path / "m.safetensors")


@pytest.mark.parametrize(
    ("card", "match"),
    [
        ({"metrics": float("nan")}, "NaN"),
        ({"obj": object()}, "JSON"),
        ({1: "x"}, "keys must be strings"),
        ("dataset=mnist", "dict"),
    ],
)
def test_save_rejects_non_json_cards(tmp_path, card, match):
    with pytest.raises(UserError, match=match):
        save(build("linear", (2,), 2), tmp_path / "m.safetensors", card)


def test_save_path_errors(tmp_path):
    model = build("linear", (2,), 2)
    with pytest.raises(UserError, match=r"\.safetensors"):
        save(model, tmp_path / "model.pt")
    with pytest.raises(UserError, match="zoo"):
        save(model, "zoo:mnist")
    with pytest.raises(UserError, match=r"nn\.Module"):
        save("model", tmp_path / "m.safetensors")


def test_unwritable_targets_are_user_errors(tmp_path):
    model = build("linear", (2,), 2)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot create directory"):
        save(model, blocker / "m.safetensors")
    (tmp_path / "m.json").mkdir()  # the card's place is taken by a directory
    with pytest.raises(UserError, match=r"cannot write .*m\.json"):
        save(model, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unknown_zoo_names_list_the_available_ones():
    with pytest.raises(UserError, match=r"unknown zoo model 'mnist-cnn'; available: .*digits"):
        load("zoo:mnist-cnn")
    with pytest.raises(UserError, match="unknown zoo model"):
        read_card("zoo:mnist-cnn")


def test_map_location(tmp_path):
    path = save(build("linear", (2,), 2, mean=0.0, std=1.0), tmp_path / "m.safetensors")
    model = load(path, map_location=torch.device("cpu"))
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    with pytest.raises(UserError, match="map_location"):
        load(path, map_location="not-a-device")


def test_wrapped_models_are_unwrapped(tmp_path):
    model = build("mlp", (2,), 2, hidden=[3])
    path = save(nn.DataParallel(model), tmp_path / "dp.safetensors")
    assert set(load(path).state_dict()) == set(model.state_dict())
