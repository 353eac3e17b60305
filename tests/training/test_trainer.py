"""The one trainer: learning, exact resume, atomic checkpoints, errors."""

import json

import pytest
import torch
from torch import nn

from advml.errors import FormatError, UserError
from advml.training import StandardRecipe, TrainConfig, Trainer, get_recipe, recipe_names
from advml.training.schedules import SCHEDULES, get_schedule


def problem(n=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=gen)
    y = (x[:, 0, :2].sum((1, 2)) > x[:, 0, 2:].sum((1, 2))).long()
    return x, y


def mlp(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2)
    )


def config(**overrides):
    base = dict(epochs=4, batch_size=32, lr=0.01, device="cpu", progress=False, schedule="cosine")
    return TrainConfig(**{**base, **overrides})


def test_standard_training_learns_and_logs(tmp_path):
    data = problem()
    result = Trainer(mlp(), config=config(), out_dir=tmp_path).fit(
        data, problem(200, 1), val_name="test"
    )
    assert result.history[0]["test_acc"] < result.final["test_acc"]
    assert result.final["test_acc"] > 0.85
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "test_acc", "lr", "epoch_seconds"} <= rows[0].keys()
    assert (tmp_path / "checkpoint" / "latest").read_text().strip() == "epoch-0004"
    # only the newest `keep_checkpoints` epochs stay on disk
    assert sorted(p.name for p in (tmp_path / "checkpoint").glob("*.json")) == [
        "epoch-0003.json",
        "epoch-0004.json",
    ]


class Interrupt(Exception):
    pass


def interrupt_after(epoch):
    def callback(done, _row):
        if done == epoch:
            raise Interrupt

    return callback


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, optimizer):
    data = problem()
    straight = mlp()
    Trainer(straight, config=config(optimizer=optimizer), out_dir=tmp_path / "a").fit(data)

    interrupted = mlp()
    with pytest.raises(Interrupt):
        Trainer(
            interrupted,
            config=config(optimizer=optimizer),
            out_dir=tmp_path / "b",
            callbacks=[interrupt_after(2)],
        ).fit(data)
    resumed = mlp(seed=99)  # fresh process: weights come only from the checkpoint
    history = (
        Trainer(resumed, config=config(optimizer=optimizer), out_dir=tmp_path / "b")
        .fit(data, resume=True)
        .history
    )
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]


def test_resume_refuses_changed_settings(tmp_path):
    data = problem()
    Trainer(mlp(), config=config(epochs=1), out_dir=tmp_path).fit(data)
    with pytest.raises(UserError, match=r"lr: 0\.01 -> 0\.1"):
        Trainer(mlp(), config=config(lr=0.1), out_dir=tmp_path).fit(data, resume=True)


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(FormatError, match="no checkpoint"):
        Trainer(mlp(), config=config(), out_dir=tmp_path).fit(problem(), resume=True)


def test_corrupt_checkpoint_is_detected(tmp_path):
    Trainer(mlp(), config=config(epochs=1), out_dir=tmp_path).fit(problem())
    weights = tmp_path / "checkpoint" / "epoch-0001.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="sha256"):
        Trainer(mlp(), config=config(), out_dir=tmp_path).fit(problem(), resume=True)


def test_malformed_manifest_names_file_and_line(tmp_path):
    Trainer(mlp(), config=config(epochs=1), out_dir=tmp_path).fit(problem())
    manifest = tmp_path / "checkpoint" / "epoch-0001.json"
    manifest.write_text('{\n  "format": "advml-trainer-state",\n  oops\n}')
    with pytest.raises(FormatError, match=r"epoch-0001\.json:3"):
        Trainer(mlp(), config=config(), out_dir=tmp_path).fit(problem(), resume=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"lr": -1.0}, "learning rate"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "wavy"}, "schedule"),
    ],
)
def test_bad_settings_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        Trainer(mlp(), config=config(**overrides))


def test_mismatched_data_is_a_user_error():
    x, y = problem()
    with pytest.raises(UserError, match="300 inputs but 299 labels"):
        Trainer(mlp(), config=config()).fit((x, y[:-1]))


def test_divergence_is_reported():
    x, y = problem()
    with pytest.raises(UserError, match="diverged"):
        Trainer(mlp(), config=config(lr=1e30, optimizer="sgd")).fit((x * 1e30, y))


def test_schedules_are_pure_functions_of_progress():
    for name in SCHEDULES:
        f = get_schedule(name)
        assert 0.0 <= f(0.3) <= 1.0
        assert f(0.3) == f(0.3)
    assert get_schedule("cosine")(0.0) == pytest.approx(1.0)
    assert get_schedule("cosine")(1.0) == pytest.approx(0.0)
    assert get_schedule("cyclic")(0.4) == pytest.approx(1.0)
    assert get_schedule("step")(0.8) == pytest.approx(0.01)


def test_recipe_registry():
    assert "standard" in recipe_names()
    assert isinstance(get_recipe("standard"), StandardRecipe)
    with pytest.raises(UserError, match="unknown recipe"):
        get_recipe("nope")
