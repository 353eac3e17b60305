"""``advml gan train|sample|score``: run folder, PNGs, scores, one-line user errors."""

import json

import pytest
import torch

from advml.cli.main import main


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "ring"
    code = main(
        [
            "gan",
            "train",
            "--dataset",
            "toy-ring",
            "--arch",
            "toy-mlp",
            "--steps",
            "120",
            "--n-train",
            "2000",
            "--batch-size",
            "50",
            "--lr-g",
            "1e-3",
            "--ema",
            "0.9",
            "--arch-option",
            "hidden=32",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_run_folder(ring_run):
    rows = [json.loads(r) for r in (ring_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # 40 steps per epoch, 120 steps
    assert {"train_d_loss", "train_g_loss", "modes", "high_quality"} <= rows[-1].keys()
    config = json.loads((ring_run / "config.json").read_text())
    assert config["settings"]["game"]["gan"]["options"]["hidden"] == 32
    assert config["command"].startswith("advml gan train")
    card = json.loads((ring_run / "model.json").read_text())
    assert card["format"] == "advml.gan" and card["ema"] is True
    assert card["epochs_trained"] == 3
    assert (ring_run / "samples" / "epoch-0003.png").read_bytes()[:8] == PNG
    assert (ring_run / "checkpoint" / "latest").exists()


def test_sample_and_score(ring_run, capsys, tmp_path):
    code, out, _ = run_cli(
        capsys, "gan", "sample", "--checkpoint", ring_run, "--n", 300, "--out", tmp_path / "s.png"
    )
    assert code == 0 and (tmp_path / "s.png").read_bytes()[:8] == PNG
    code, out, _ = run_cli(capsys, "gan", "score", "--checkpoint", ring_run, "--json")
    assert code == 0
    scores = json.loads(out)
    assert scores["num_modes"] == 8 and scores["samples"] == 2500
    assert 0 <= scores["modes"] <= 8


def test_resume_continues_the_run(ring_run, capsys):
    code, _, _ = run_cli(
        capsys,
        "gan",
        "train",
        "--dataset",
        "toy-ring",
        "--arch",
        "toy-mlp",
        "--steps",
        "160",
        "--n-train",
        "2000",
        "--batch-size",
        "50",
        "--lr-g",
        "1e-3",
        "--ema",
        "0.9",
        "--arch-option",
        "hidden=32",
        "--out",
        ring_run,
        "--no-progress",
        "--resume",
    )
    assert code == 0
    rows = (ring_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arch", "nope"], "unknown GAN architecture 'nope'"),
        (["--pack", "0"], "pack must be an integer >= 1"),
        (["--dataset", "digits"], "vector data"),
        (["--n-critic", "0"], "--n-critic must be >= 1"),
        (["--conditional", "--pack", "2"], "cannot be combined"),
        (["--gp", "5"], "--gp applies to --loss wgan-gp"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, extra, message):
    argv = [
        "gan",
        "train",
        "--dataset",
        "toy-ring",
        "--steps",
        "1",
        "--out",
        tmp_path / "r",
        "--no-progress",
        *extra,
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_loss_and_missing_checkpoint(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["gan", "train", "--dataset", "toy-ring", "--loss", "wasserstein", "--out", "x"])
    assert stop.value.code == 2
    assert "invalid choice: 'wasserstein'" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "gan", "score", "--checkpoint", tmp_path)
    assert code == 2 and "no GAN checkpoint" in err
