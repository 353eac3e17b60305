"""Adversarial recipes of the one trainer: each raises robust accuracy over standard training,
and their degenerate settings reduce exactly to standard training."""

import pytest
import torch
from torch import nn

from advml.attacks import pgd
from advml.data import load
from advml.errors import UserError
from advml.threats import Linf
from advml.training import TrainConfig, Trainer, get_recipe

EPS = 0.1


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train"), load("digits", "test")


def mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def train(recipe, data, epochs=12):
    model = mlp()
    config = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, device="cpu", progress=False)
    Trainer(model, recipe, config).fit(data)
    return model


def pgd_robust_accuracy(model, x, y, eps=EPS):
    result = pgd(model, x, y, Linf(eps), steps=20)
    with torch.no_grad():
        return (model(result.x_adv).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def standard_robustness(digits):
    model = train(get_recipe("standard"), digits[0])
    return pgd_robust_accuracy(model, *digits[1])


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("pgd", {"eps": EPS, "steps": 5}),
        ("fgsm", {"eps": EPS}),
        ("fgsm-rs", {"eps": EPS}),
        ("trades", {"eps": EPS, "steps": 5}),
        ("mart", {"eps": EPS, "steps": 5}),
        ("free", {"eps": EPS, "replays": 4}),
        ("pgd", {"eps": EPS, "steps": 5, "eps_warmup": 0.3}),
    ],
)
def test_recipe_raises_robust_accuracy_over_standard(name, settings, digits, standard_robustness):
    model = train(get_recipe(name, **settings), digits[0])
    x, y = digits[1]
    robust = pgd_robust_accuracy(model, x, y)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert clean > 0.8, f"{name}: clean accuracy collapsed to {clean:.2f}"
    assert robust > standard_robustness + 0.1, (name, robust, standard_robustness)


@pytest.mark.parametrize(
    ("name", "settings"), [("trades", {"beta": 0.0}), ("fgsm", {"alpha": 1.0})]
)
def test_degenerate_settings_equal_standard_training(name, settings, digits):
    reference = train(get_recipe("standard"), digits[0], epochs=2)
    model = train(get_recipe(name, eps=EPS, **settings), digits[0], epochs=2)
    for (key, a), b in zip(
        reference.state_dict().items(), model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("pgd", {"eps": 0.0}, "eps > 0"),
        ("fgsm", {"alpha": 2.0}, "alpha"),
        ("trades", {"beta": -1.0}, "beta"),
        ("fgsm-rs", {"steps": 3}, "one gradient step"),
        ("pgd", {"threat": "l7"}, "l7"),
        ("trades", {"eps_warmup": 1.0}, "eps_warmup"),
        ("free", {"eps_warmup": -0.1}, "eps_warmup"),
    ],
)
def test_bad_recipe_settings_are_user_errors(name, settings, message):
    with pytest.raises(UserError, match=message):
        get_recipe(name, **settings)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("pgd", {"eps": EPS, "steps": 3}),
        ("free", {"eps": EPS, "replays": 2}),
        ("trades", {"eps": EPS, "steps": 2, "eps_warmup": 0.75}),
    ],
)
def test_adversarial_training_resumes_exactly(tmp_path, digits, name, settings):
    class Stop(Exception):
        pass

    def stop_after_first(epoch, _row):
        if epoch == 1:
            raise Stop

    config = TrainConfig(epochs=2, batch_size=64, lr=3e-3, device="cpu", progress=False)
    straight = mlp()
    Trainer(straight, get_recipe(name, **settings), config, out_dir=tmp_path / "a").fit(digits[0])
    with pytest.raises(Stop):
        Trainer(
            mlp(),
            get_recipe(name, **settings),
            config,
            out_dir=tmp_path / "b",
            callbacks=[stop_after_first],
        ).fit(digits[0])
    resumed = mlp()
    Trainer(resumed, get_recipe(name, **settings), config, out_dir=tmp_path / "b").fit(
        digits[0], resume=True
    )
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _step(progress):
    from advml.training.recipe import StepInfo

    return StepInfo(
        module=mlp().eval(),
        epoch=1,
        step=0,
        progress=progress,
        generator=torch.Generator().manual_seed(0),
        seed=7,
    )


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("pgd", {"steps": 3}),
        ("fgsm-rs", {}),
        ("trades", {"steps": 3}),
        ("mart", {"steps": 3}),
        ("pgd", {"steps": 3, "step_size": 0.05}),
    ],
)
def test_eps_warmup_ramps_the_budget_of_the_inner_maximizer(name, settings, digits):
    recipe = get_recipe(name, eps=0.3, eps_warmup=0.5, **settings)
    x, y = digits[0][0][:64], digits[0][1][:64]
    assert recipe.eps_factor(_step(0.0)) == 0.0
    assert torch.equal(recipe.adversarial_batch(x, y, _step(0.0)), x)  # ε = 0: the clean batch
    assert recipe.eps_factor(_step(0.25)) == pytest.approx(0.5)
    assert recipe.eps_factor(_step(0.5)) == 1.0 and recipe.eps_factor(_step(0.9)) == 1.0
    for progress, eps_t in ((0.1, 0.06), (0.25, 0.15), (0.75, 0.3)):
        step = _step(progress)
        assert recipe.threat_at(step).eps == pytest.approx(eps_t)
        delta = (recipe.adversarial_batch(x, y, step) - x).abs().flatten(1).amax(1)
        assert (delta <= eps_t + 1e-6).all(), (progress, delta.max())
        # the inner maximizer uses the budget it is given: not stuck at 0, not the full eps
        assert delta.max() > 0.5 * eps_t, (progress, delta.max())


def test_eps_warmup_zero_is_the_recipe_without_warmup(digits):
    x, y = digits[0][0][:64], digits[0][1][:64]
    step = _step(0.01)
    plain = get_recipe("pgd", eps=EPS, steps=3).adversarial_batch(x, y, step)
    ramped = get_recipe("pgd", eps=EPS, steps=3, eps_warmup=0.0).adversarial_batch(x, y, step)
    assert torch.equal(plain, ramped)


def test_ibp_training_lowers_the_verified_error(digits):
    from advml.verification import verified_robust

    x, y = digits[1]
    standard = train(get_recipe("standard"), digits[0], epochs=20)
    certified = train(get_recipe("ibp", eps=EPS, warmup=0.0, ramp_end=0.5), digits[0], epochs=20)
    verified = {
        name: verified_robust(m, x, y, EPS).float().mean().item()
        for name, m in (("standard", standard), ("ibp", certified))
    }
    with torch.no_grad():
        clean = (certified(x).argmax(1) == y).float().mean().item()
    assert verified["ibp"] > verified["standard"] + 0.3, verified
    assert clean > 0.6, clean


def test_ibp_schedule_ramps_eps_and_kappa():
    recipe = get_recipe("ibp", eps=0.3, warmup=0.1, ramp_end=0.5, kappa_final=0.5)
    assert recipe.schedule(0.05) == (0.0, 1.0)
    eps_mid, kappa_mid = recipe.schedule(0.3)
    assert eps_mid == pytest.approx(0.15) and kappa_mid == pytest.approx(0.75)
    assert recipe.schedule(0.9) == (pytest.approx(0.3), pytest.approx(0.5))


def test_fgsm_rs_batch_is_in_the_ball_keyed_per_sample_and_starts_outside_the_box(digits):
    x, y = digits[0][0][:64], digits[0][1][:64]
    recipe = get_recipe("fgsm-rs", eps=0.3)
    step = _step(0.5)
    x_adv = recipe.adversarial_batch(x, y, step)
    assert Linf(0.3).contains(x_adv, x).all()
    # keyed on contents: a sub-batch gets the same rows (DDP shards match one process)
    assert torch.equal(recipe.adversarial_batch(x[16:40], y[16:40], step), x_adv[16:40])
    clipped = get_recipe("fgsm-rs", eps=0.3, clip_start=True).adversarial_batch(x, y, step)
    assert Linf(0.3).contains(clipped, x).all()
    assert not torch.equal(clipped, x_adv)  # the gradient is taken at another start
    with pytest.raises(UserError, match="L∞"):
        get_recipe("fgsm-rs", threat="l2", eps=1.0)
