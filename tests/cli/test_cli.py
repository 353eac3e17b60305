"""The ``advml`` command: jobs write their run folder; user errors are one line and exit 2."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from advml import __version__
from advml.cli.main import main
from advml.models import load as load_model


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_through_the_installed_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "advml", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"advml {__version__}"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "digits-std"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--arch",
            "mlp",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--lr",
            "0.003",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["settings"]["train_config"]["epochs"] == 3
    assert config["settings"]["seed"] == 0
    assert {"advml", "torch", "python"} <= config["versions"].keys()
    assert config["command"].startswith("advml ")
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    model = load_model(trained_run)
    assert model.advml_card["dataset"] == "digits"
    assert model.advml_card["metrics"]["test_acc"] == pytest.approx(rows[-1]["test_acc"])
    assert rows[-1]["test_acc"] > 0.85


def test_train_resume_continues_to_more_epochs_only_with_same_settings(trained_run, capsys):
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.003",
        "--out",
        str(trained_run),
        "--resume",
        "--device",
        "cpu",
    )
    assert code == 2
    assert "batch_size: 64 -> 32" in err
    assert len(err.strip().splitlines()) == 1


def test_attack_saves_the_adversarial_set(trained_run, tmp_path, capsys):
    out = tmp_path / "pgd"
    code, stdout, _ = run_cli(
        capsys,
        "attack",
        "--checkpoint",
        str(trained_run),
        "--dataset",
        "digits",
        "--attack",
        "pgd",
        "--threat",
        "linf",
        "--eps",
        "0.2",
        "--n",
        "100",
        "--steps",
        "10",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0
    assert "robust accuracy" in stdout
    saved = load_file(str(out / "adversarial.safetensors"))
    assert saved["x_adv"].shape == (100, 1, 8, 8)
    from advml.data import load

    x = load("digits", "test")[0][:100]
    assert (saved["x_adv"] - x).abs().amax() <= 0.2 + 1e-6
    assert saved["x_adv"].min() >= 0 and saved["x_adv"].max() <= 1
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 100
    assert results["robust_accuracy"] < results["clean_accuracy"]
    # success means misclassified: recompute it with an independent forward pass
    model = load_model(trained_run)
    with torch.no_grad():
        fooled = model(saved["x_adv"]).argmax(1) != saved["y"]
    assert torch.equal(fooled, saved["success"])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--dataset", "no-such-set", "--out", "{tmp}/r"], "no-such-set"),
        (
            ["train", "--dataset", "digits", "--arch", "transformer", "--out", "{tmp}/r"],
            "transformer",
        ),
        (["train", "--dataset", "digits", "--epochs", "0", "--out", "{tmp}/r"], "positive"),
        (["train", "--dataset", "digits", "--recipe", "nope", "--out", "{tmp}/r"], "nope"),
        (["train", "--dataset", "digits", "--eps", "0.1", "--out", "{tmp}/r"], "--recipe pgd"),
        (
            ["train", "--dataset", "digits", "--eps-warmup", "0.2", "--out", "{tmp}/r"],
            "--recipe pgd",
        ),
        (
            ["train", "--recipe", "pgd", "--eps-warmup", "1.5", "--out", "{tmp}/r"],
            "eps_warmup",
        ),
        (["train", "--dataset", "digits", "--lr", "-1", "--out", "{tmp}/r"], "must be > 0"),
        (["train", "--dataset", "mnist", "--data-dir", "{tmp}/empty", "--out", "{tmp}/r"], "mnist"),
        (["train", "--dataset", "digits", "--out", "{tmp}/r", "--resume"], "no checkpoint"),
        (["train", "--dataset", "digits", "--out", "{tmp}/file.txt"], "not a folder"),
        (
            [
                "attack",
                "--checkpoint",
                "{tmp}/missing",
                "--dataset",
                "digits",
                "--eps",
                "0.1",
                "--out",
                "{tmp}/a",
            ],
            "missing",
        ),
        (["data", "download", "imagenet"], "imagenet"),
        (["frobnicate"], "frobnicate"),
        (["train", "--dataset"], "--dataset"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    _, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_user_error_from_a_subprocess_has_no_traceback(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "advml",
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"ADVML_PROGRESS": "0", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "advml data download mnist" in done.stderr or "ADVML_DATA" in done.stderr


def test_data_list_shows_every_dataset(capsys):
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "usps", "toy-ring", "toy-grid"):
        assert name in out


def test_adversarial_training_keeps_the_best_robust_epoch(tmp_path, capsys):
    out = tmp_path / "pgd"
    code, stdout, _ = run_cli(
        capsys,
        "train",
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--recipe",
        "pgd",
        "--eps",
        "0.1",
        "--attack-steps",
        "3",
        "--epochs",
        "3",
        "--robust-val",
        "100",
        "--eps-warmup",
        "0.3",
        "--no-normalize",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= row["robust_val_acc"] <= 1.0 for row in rows)
    best_epoch = max(rows, key=lambda row: row["robust_val_acc"])["epoch"]
    best = load_model(out / "best.safetensors")
    assert best.advml_card["epochs_trained"] == best_epoch
    assert best.advml_card["recipe_settings"]["eps_warmup"] == 0.3
    assert not any(type(m).__name__ == "Normalize" for m in best.modules())  # --no-normalize
    assert "best robust validation accuracy" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["recipe"] == "pgd"
