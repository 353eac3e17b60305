"""Virtual adversarial training: unlabeled data helps when labels are scarce."""

import pytest
import torch
from torch import nn

from advml.cli.main import main
from advml.cli.train import hide_labels
from advml.data import load
from advml.errors import UserError
from advml.training import TrainConfig, Trainer, get_recipe


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_hide_labels_is_class_balanced_and_seeded():
    x, y = load("digits", "train")
    (_, hidden), (_, y_l) = hide_labels((x, y), 50, 10, seed=3)
    assert (hidden >= 0).sum() == 50
    assert torch.bincount(y_l, minlength=10).tolist() == [5] * 10
    assert torch.equal(hidden[hidden >= 0], y[hidden >= 0])
    again = hide_labels((x, y), 50, 10, seed=3)[0][1]
    assert torch.equal(hidden, again)
    with pytest.raises(UserError, match="multiple"):
        hide_labels((x, y), 55, 10, seed=0)


def test_semi_supervised_vat_beats_the_labeled_subset_alone():
    x, y = load("digits", "train")
    xt, yt = load("digits", "test")
    (x_all, hidden), labeled = hide_labels((x, y), 30, 10, seed=0)
    config = TrainConfig(epochs=15, batch_size=64, lr=2e-3, device="cpu", progress=False)

    supervised = mlp()
    Trainer(
        supervised,
        config=TrainConfig(epochs=150, batch_size=30, lr=2e-3, device="cpu", progress=False),
    ).fit(labeled)
    vat = mlp()
    Trainer(vat, get_recipe("vat", eps=1.0, labeled=labeled, labeled_batch=30), config).fit(
        (x_all, hidden)
    )
    with torch.no_grad():
        base = (supervised(xt).argmax(1) == yt).float().mean().item()
        semi = (vat(xt).argmax(1) == yt).float().mean().item()
    assert semi > base + 0.03, (semi, base)


def test_cli_labeled_needs_a_semi_supervised_recipe(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--labeled", "50", "--out", str(tmp_path)])
    assert code == 2
    assert "semi-supervised" in capsys.readouterr().err


def test_cli_semi_supervised_vat_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--arch",
            "mlp",
            "--recipe",
            "vat",
            "--labeled",
            "50",
            "--eps",
            "1.0",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert (tmp_path / "model.safetensors").exists()


def test_lds_compares_outputs_of_the_same_batch_with_batch_norm():
    # p(x) must come from a forward of the unlabeled batch alone, as the perturbed forwards
    # do: with batch norm, a batch mixed with the labeled samples normalizes differently, and
    # the LDS measured that difference instead of the perturbation (Miyato et al.'s code
    # forwards the unlabeled batch by itself).
    from advml.training.recipe import StepInfo

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model.train()
    x_l, y_l = torch.randn(16, 8) + 3.0, torch.arange(16) % 10  # other statistics than x
    x, y = torch.randn(32, 8), torch.full((32,), -1)
    recipe = get_recipe("vat", eps=1e-4, labeled=(x_l, y_l), labeled_batch=16)
    step = StepInfo(
        module=model, epoch=1, step=0, progress=0.0, generator=torch.Generator().manual_seed(0)
    )
    _, info = recipe.loss(model, x, y, step)
    assert info["lds"] < 1e-5, info  # O(eps²): the perturbation alone moves the outputs
