"""``advml evaluate``: the report folder, the terminal output, user errors as one line, and
two torchrun processes giving exactly the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advml.cli.main import main
from advml.models import save

ARGS = ["--eps", "0.05,0.1", "--attacks", "pgd,apgd-ce,apgd-t", "-n", "100", "--no-progress"]


def cli(args: list[str]) -> int:
    """``advml ARGS`` in this process; argparse errors exit with status 2 (SystemExit)."""
    try:
        return main(args)
    except SystemExit as stop:
        return int(stop.code)


def results(folder):
    return json.loads((folder / "results.json").read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory, digits_checkpoint):
    folder = tmp_path_factory.mktemp("single")
    import contextlib
    import io

    from evaluation_threads import one_thread

    out = io.StringIO()
    with one_thread(), contextlib.redirect_stdout(out):
        code = main(
            ["evaluate", "--checkpoint", str(digits_checkpoint), *ARGS, "--out", str(folder)]
        )
    assert code == 0
    return folder, out.getvalue()


def test_cli_writes_the_report_folder(single):
    folder, printed = single
    for name in ("results.json", "config.json", "report.md", "report.html", "robustness.png"):
        assert (folder / name).is_file(), name
    data = results(folder)
    assert data["n"] == 100 and data["eps"] == [0.05, 0.1]
    assert data["attacks"] == ["pgd", "apgd-ce", "apgd-t", "fgsm-check"]
    assert data["dataset"].startswith("digits")  # taken from the checkpoint's card
    config = json.loads((folder / "config.json").read_text())
    assert config["settings"]["attacks"] == "pgd,apgd-ce,apgd-t"
    assert isinstance(config["command"], str) and "versions" in config
    # the terminal: the table, the diagnostics, where the report is
    assert "apgd-ce" in printed and "robust" in printed and "clean accuracy" in printed
    assert "diagnostics:" in printed and "report.html" in printed
    acc = data["robust_accuracy"]["0.1"]
    assert f"{100 * acc:.2f} %" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "-0.1"], "budgets must be numbers >= 0"),
        (["--eps", "0.1", "--attacks", "nope"], "unknown attack 'nope'"),
        (["--eps", "0.1", "--attacks", "square", "--threat", "l1"], "not the l1 threat"),
        (["--eps", "0.1", "--attacks", "standard", "--threat", "l1", "--n", "0"], "positive"),
    ],
)
def test_cli_user_errors_are_one_line(extra, message, digits_checkpoint, tmp_path, capsys):
    code = cli(["evaluate", "--checkpoint", str(digits_checkpoint), *extra, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_needs_a_dataset_when_the_card_has_none(digits_model, tmp_path, capsys):
    save(digits_model, tmp_path / "ck")
    code = cli(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--eps",
            "0.1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--dataset" in err and len(err.strip().splitlines()) == 1


def test_cli_missing_checkpoint(tmp_path, capsys):
    code = cli(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "nothing"),
            "--eps",
            "0.1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.distributed
def test_two_processes_match_one(single, digits_checkpoint, tmp_path):
    folder = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADVML_PROGRESS": "0"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "advml",
        "evaluate",
        "--checkpoint",
        str(digits_checkpoint),
        *ARGS,
        "--batch-size",
        "17",  # and a batch size that splits the shards differently
        "--out",
        str(folder),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote") == 1  # rank 0 alone prints and writes
    one, two = results(single[0]), results(folder)
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in (
        "clean_accuracy",
        "robust_accuracy",
        "broken_by",
        "samples",
        "flags",
        "unbounded_check",
        "attacks",
    ):
        assert one[key] == two[key], key
    for eps, stats in one["per_attack"].items():
        counts = [(s["label"], s["attacked"], s["broken"], s["robust_after"]) for s in stats]
        assert counts == [
            (s["label"], s["attacked"], s["broken"], s["robust_after"])
            for s in two["per_attack"][eps]
        ]
