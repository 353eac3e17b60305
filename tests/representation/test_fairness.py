"""Fair representations: the metrics on hand-made cases, the recipe's bookkeeping, and a short
seeded run on synthetic data where the adversary moves ΔDP toward 0 relative to weight 0."""

from __future__ import annotations

import pytest
import torch

from advml.data.adult import TabularData
from advml.errors import UserError
from advml.representation.fair_training import FairConfig, parse_weights, sweep, train_fair
from advml.representation.fairness import (
    FairNet,
    FairRecipe,
    group_normalized_bce,
    pack_labels,
    unpack_labels,
)
from advml.representation.fairness_metrics import (
    accuracy,
    demographic_parity_gap,
    equalized_odds_gap,
    fairness_report,
)
from advml.representation.figures import tradeoff_curve
from advml.runtime import generator
from advml.training import StepInfo, get_recipe


def test_demographic_parity_by_hand():
    # group 0: 3 of 4 positive (0.75); group 1: 1 of 4 positive (0.25)
    prediction = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0])
    sensitive = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert demographic_parity_gap(prediction, sensitive) == pytest.approx(0.5)
    assert demographic_parity_gap(prediction, 1 - sensitive) == pytest.approx(0.5)
    assert demographic_parity_gap(torch.ones(8, dtype=torch.long), sensitive) == 0.0


def test_equalized_odds_by_hand():
    label = torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])
    sensitive = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    # group 0: TPR 1, FPR 0.5; group 1: TPR 0.5, FPR 0 -> 0.5 + 0.5
    prediction = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0])
    assert equalized_odds_gap(prediction, label, sensitive) == pytest.approx(1.0)
    assert equalized_odds_gap(label, label, sensitive) == 0.0  # a perfect classifier
    # equal positive rates per group (ΔDP 0) can still violate equalized odds
    label2 = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0])
    prediction2 = torch.tensor([1, 0, 1, 0, 0, 1, 0, 1])
    assert demographic_parity_gap(prediction2, sensitive) == 0.0
    # group 0: TPR 1/2, FPR 1/2; group 1: TPR 0, FPR 2/3
    assert equalized_odds_gap(prediction2, label2, sensitive) == pytest.approx(0.5 + 1 / 6)
    report = fairness_report(prediction, label, sensitive)
    assert report.accuracy == accuracy(prediction, label) == pytest.approx(6 / 8)


def test_metric_errors():
    with pytest.raises(UserError, match="only 0 and 1"):
        demographic_parity_gap(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(UserError, match="no samples in group A=1"):
        demographic_parity_gap(torch.tensor([0, 1]), torch.tensor([0, 0]))
    with pytest.raises(UserError, match="3 entries but prediction has 2"):
        equalized_odds_gap(torch.tensor([0, 1]), torch.tensor([0, 1, 1]), torch.tensor([0, 1]))
    with pytest.raises(UserError, match="group A=0, Y=0"):
        equalized_odds_gap(torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([0, 1]))


def test_labels_and_group_normalized_loss():
    y, s = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    joint = pack_labels(y, s)
    assert joint.tolist() == [0, 1, 2, 3]
    assert all(torch.equal(a, b) for a, b in zip(unpack_labels(joint), (y, s), strict=True))
    # 3 samples of group 0 and 1 of group 1: each group weighs one half
    logit = torch.tensor([0.0, 0.0, 0.0, 2.0])
    target = torch.tensor([1, 1, 1, 0])
    groups = torch.tensor([0, 0, 0, 1])
    import torch.nn.functional as F

    per = F.binary_cross_entropy_with_logits(logit, target.float(), reduction="none")
    assert group_normalized_bce(logit, target, groups) == pytest.approx(
        float(0.5 * per[:3].mean() + 0.5 * per[3])
    )


def test_recipe_and_model_contract():
    with pytest.raises(UserError, match="'dp' or 'eo'"):
        get_recipe("fair", objective="parity")
    with pytest.raises(UserError, match=">= 0"):
        FairRecipe(-1.0)
    model = FairNet(5, objective="eo")
    x = torch.randn(6, 5)
    assert model(x).shape == (6, 2)
    with pytest.raises(UserError, match="needs the labels"):
        model(x, adversary_scale=1.0)
    recipe = FairRecipe(2.0, "eo")
    step = StepInfo(model, 1, 0, 0.0, generator(0))
    with pytest.raises(UserError, match="joint labels"):
        recipe.loss(model, x, torch.tensor([0, 1, 4, 0, 1, 2]), step)
    loss, metrics = recipe.loss(model, x, torch.tensor([0, 1, 2, 3, 1, 2]), step)
    loss.backward()
    assert {"task", "adversary_loss", "adversary_acc"} <= set(metrics)
    assert recipe.settings() == {"adversary_weight": 2.0, "objective": "eo"}


def _synthetic(n: int, seed: int) -> TabularData:
    """The label depends on a fair feature and on the sensitive attribute, and two features
    are noisy proxies of the attribute (so hiding it costs something)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n,), generator=g)
    fair = torch.randn(n, 3, generator=g)
    proxies = s[:, None].float() + 0.5 * torch.randn(n, 2, generator=g)
    score = fair[:, 0] + 1.5 * (s.float() - 0.5) + 0.3 * torch.randn(n, generator=g)
    y = (score > 0).long()
    x = torch.cat([fair, proxies], 1)
    return TabularData(x, y, s, tuple(f"f{i}" for i in range(5)))


def test_adversary_moves_demographic_parity_toward_zero(tmp_path):
    train, test = _synthetic(3000, 0), _synthetic(2000, 1)
    config = FairConfig(epochs=8, batch_size=128, code=8, hidden=32, probe_epochs=5)
    rows = sweep(train, test, [0.0, 10.0], config, log=lambda _: None)
    unfair, fair = rows
    assert unfair["delta_dp"] > 0.3  # the label itself depends on the attribute
    assert fair["delta_dp"] < 0.25 * unfair["delta_dp"]
    assert fair["accuracy"] > 0.6
    path = tradeoff_curve(rows, tmp_path / "tradeoff.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_fair_eo_runs_and_writes_a_run_folder(tmp_path):
    train, test = _synthetic(600, 0), _synthetic(300, 1)
    config = FairConfig(objective="eo", epochs=1, batch_size=100, probe_epochs=1)
    _, row = train_fair(train, test, config, out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert 0 <= row["delta_eo"] <= 2 and 0 <= row["adversary_accuracy"] <= 1
    assert parse_weights("1, 0,0.1,1") == [0.0, 0.1, 1.0]
    with pytest.raises(UserError, match=">= 0"):
        parse_weights("-1")
