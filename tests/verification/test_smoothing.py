"""Randomized smoothing (Cohen et al. 2019): the statistics, exact radii of linear classifiers,
abstention, soundness against random perturbations, reproducibility and input checks."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from advml.attacks.rng import KeyedRNG
from advml.errors import UserError
from advml.verification.smoothing import (
    SmoothingResult,
    _binomial_pvalue,
    _gaussian,
    certified_accuracy,
    certify,
    clopper_pearson_lower,
    predict,
)


class Constant(nn.Module):
    """Always class ``label`` out of ``classes``."""

    def __init__(self, label=3, classes=5):
        super().__init__()
        self.label, self.classes = label, classes

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.classes, device=x.device)
        logits[:, self.label] = 1.0
        return logits


class Linear2(nn.Module):
    """Binary ``sign(w.x + b)``: logits ``(0, w.x + b)``."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


class RandomClass(nn.Module):
    """A uniformly random class on every input, from its own seeded generator."""

    def __init__(self, classes):
        super().__init__()
        self.classes = classes
        self.generator = torch.Generator().manual_seed(123)

    def forward(self, x):
        return torch.rand(x.shape[0], self.classes, generator=self.generator)


def linear_net(d=6, classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, classes))


# --------------------------------------------------------------------------------------------
# statistics


def test_clopper_pearson_known_values():
    for n in (1, 10, 1000):
        for alpha in (0.001, 0.05):
            assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), rel=1e-12)
            assert clopper_pearson_lower(0, n, alpha) == 0.0
    # k = 1: P(X >= 1) = 1 - (1 - p)^n = alpha.
    assert clopper_pearson_lower(1, 20, 0.05) == pytest.approx(1 - 0.95 ** (1 / 20), rel=1e-10)
    # In general the bound is the p with P(X >= k | p) = alpha.
    n, alpha = 50, 0.01
    k = np.arange(1, n + 1)
    lower = clopper_pearson_lower(torch.as_tensor(k), n, alpha)
    np.testing.assert_allclose(stats.binom.sf(k - 1, n, lower), alpha, rtol=1e-8)
    assert np.all(np.diff(lower) > 0)


def test_clopper_pearson_coverage():
    alpha, n = 0.05, 30
    rng = np.random.default_rng(0)
    for p in (0.03, 0.2, 0.5, 0.77, 0.95, 0.999):
        k = rng.binomial(n, p, size=20_000)
        simulated = np.mean(clopper_pearson_lower(k, n, alpha) <= p)
        assert simulated >= 1 - alpha - 0.005, (p, simulated)
    # Exact coverage on a fine grid of p: sum of P(k) over the k whose bound stays below p.
    bounds = clopper_pearson_lower(np.arange(n + 1), n, alpha)
    for p in np.linspace(0.001, 0.999, 499):
        coverage = stats.binom.pmf(np.arange(n + 1), n, p)[bounds <= p].sum()
        assert coverage >= 1 - alpha - 1e-12, (p, coverage)


def test_binomial_pvalue_matches_binomtest():
    for n_a in range(0, 40, 3):
        for n_b in range(0, n_a + 1, 2):
            if n_a + n_b == 0:
                continue
            expected = stats.binomtest(n_a, n_a + n_b, 0.5).pvalue
            got = _binomial_pvalue(np.array([n_a]), np.array([n_b]))[0]
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-15), (n_a, n_b)


def test_noise_is_standard_normal_and_keyed_per_draw():
    x = torch.randn(3, 7)
    rng = KeyedRNG.for_inputs(x, 0)
    sid = torch.arange(3).repeat_interleave(2000)
    draw = torch.arange(2000).repeat(3)
    z = _gaussian(rng, sid, draw, 7, torch.device("cpu"))
    assert z.dtype == torch.float64 and z.shape == (6000, 7)
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    corr = np.corrcoef(z[:, :4].T.numpy())  # coordinates (cos and sin halves) uncorrelated
    assert np.abs(corr - np.eye(4)).max() < 0.05
    # Row (sample, draw) is the same whatever else is in the batch.
    picked = _gaussian(rng, torch.tensor([2, 0]), torch.tensor([17, 1999]), 7, torch.device("cpu"))
    assert torch.equal(picked, z[[2 * 2000 + 17, 1999]])


# --------------------------------------------------------------------------------------------
# exact cases


def test_constant_model_radius_is_exact():
    x = torch.randn(4, 1, 3, 3)
    sigma, n, alpha = 0.7, 1000, 0.001
    result = certify(Constant(), x, sigma, n0=10, n=n, alpha=alpha, progress=False)
    assert torch.equal(result.prediction, torch.full((4,), 3))
    expected_p = alpha ** (1 / n)
    torch.testing.assert_close(result.p_lower, torch.full((4,), expected_p, dtype=torch.float64))
    expected_r = sigma * stats.norm.ppf(expected_p)
    torch.testing.assert_close(result.radius, torch.full((4,), expected_r, dtype=torch.float64))
    assert result.counts.shape == (4, 5) and torch.equal(result.counts[:, 3], torch.full((4,), n))
    assert torch.equal(predict(Constant(), x, sigma, n=20), torch.full((4,), 3))


def test_linear_classifier_radius_is_sound_and_tight():
    torch.manual_seed(1)
    d, sigma = 5, 0.5
    w, b = torch.randn(d, dtype=torch.float64), 0.3
    unit = w / w.norm()
    on_plane = torch.randn(8, d, dtype=torch.float64)
    on_plane -= ((on_plane @ w + b) / w.norm())[:, None] * unit
    signed = torch.tensor([-1.2, -0.6, -0.3, 0.2, 0.5, 0.9, 1.25, 1e-4], dtype=torch.float64)
    x = on_plane + signed[:, None] * unit
    distance = (x @ w + b).abs() / w.norm()
    torch.testing.assert_close(distance, signed.abs())

    model = Linear2(w, b)
    result = certify(model, x, sigma, n0=100, n=100_000, batch_size=20_000, progress=False)
    base = (x @ w + b > 0).long()
    made = result.prediction >= 0
    assert made[:7].all()
    assert torch.equal(result.prediction[made], base[made])
    assert (result.radius <= distance).all()  # soundness
    assert (result.radius[:7] >= 0.9 * distance[:7]).all()  # tight for large n
    # p_A is exactly Phi(distance / sigma): the bound sits just below it.
    p_true = torch.from_numpy(stats.norm.cdf(distance.numpy() / sigma))
    assert (result.p_lower <= p_true).all()
    assert (result.p_lower[:7] >= p_true[:7] - 0.01).all()
    assert torch.equal(predict(model, x[:7], sigma, n=2000), base[:7])


def test_random_model_abstains():
    x = torch.randn(6, 4)
    assert torch.equal(predict(RandomClass(10), x, 0.5, n=1000), torch.full((6,), -1))
    for classes in (2, 10):
        result = certify(RandomClass(classes), x, 0.5, n0=50, n=2000, progress=False)
        assert torch.equal(result.prediction, torch.full((6,), -1))
        assert torch.equal(result.radius, torch.zeros(6, dtype=torch.float64))
        assert (result.p_lower < 0.5).all()
        assert torch.equal(result.counts.sum(1), torch.full((6,), 2000))


# --------------------------------------------------------------------------------------------
# soundness on a trained model


def blobs(n, seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 1.5], [-1.3, -0.75], [1.3, -0.75]])
    y = torch.randint(0, 3, (n,), generator=gen)
    return centres[y] + 0.55 * torch.randn(n, 2, generator=gen), y


def test_certified_radius_survives_random_perturbations():
    x_train, y_train = blobs(600, 0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        opt.step()

    x, y = blobs(30, 1)
    sigma, alpha = 0.5, 0.001
    result = certify(model, x, sigma, n0=100, n=20_000, alpha=alpha, progress=False)
    certified = (result.prediction >= 0) & (result.radius > 0.05)
    assert certified.sum() >= 25
    accuracy = certified_accuracy(result, y, [0.0, 0.5, 1.0])
    assert accuracy[0] >= 0.9 and accuracy[2] >= 0.3

    # Random points near the edge of each certified ball (norm 0.90R to 0.99R): the smoothed
    # classifier (PREDICT with many draws, wrong with probability <= alpha) never returns
    # another class there; it may abstain where the ball reaches the decision boundary.
    gen = torch.Generator().manual_seed(2)
    index = torch.nonzero(certified)[:, 0].repeat_interleave(8)
    direction = torch.randn(len(index), 2, generator=gen)
    direction /= direction.norm(dim=1, keepdim=True)
    scale = 0.90 + 0.09 * torch.rand(len(index), generator=gen)
    norm = scale * result.radius[index].float()
    moved = predict(model, x[index] + norm[:, None] * direction, sigma, n=10_000, alpha=alpha)
    expected = result.prediction[index]
    assert ((moved == expected) | (moved == -1)).all()
    assert (moved == expected).float().mean() >= 0.9


# --------------------------------------------------------------------------------------------
# reproducibility and bookkeeping


def test_reproducible_and_independent_of_batching():
    model = linear_net()
    x = torch.randn(3, 6)
    kwargs = {"n0": 10, "n": 40, "alpha": 0.05, "progress": False}
    reference = certify(model, x, 1.0, batch_size=1000, **kwargs)
    assert (reference.counts > 0).sum() > 6  # the noise spreads the votes
    for batch_size in (1, 7, 64):
        other = certify(model, x, 1.0, batch_size=batch_size, **kwargs)
        for name in ("prediction", "radius", "p_lower", "counts"):
            assert torch.equal(getattr(other, name), getattr(reference, name)), (batch_size, name)
    again = certify(model, x, 1.0, batch_size=1000, **kwargs)
    assert torch.equal(again.counts, reference.counts)
    # Keyed by content: a subset, reordered, gets the same counts.
    subset = certify(model, x[[2, 0]], 1.0, batch_size=5, **kwargs)
    assert torch.equal(subset.counts, reference.counts[[2, 0]])
    assert not torch.equal(certify(model, x, 1.0, seed=1, **kwargs).counts, reference.counts)
    votes = [predict(model, x, 1.0, n=60, batch_size=b, alpha=0.2) for b in (1, 13, 1000)]
    assert torch.equal(votes[0], votes[1]) and torch.equal(votes[0], votes[2])


def test_model_state_restored_and_num_classes():
    model = linear_net()
    model.train()
    x = torch.randn(2, 6)
    result = certify(model, x, 0.5, n0=5, n=10, num_classes=12, progress=False)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert result.counts.shape == (2, 12) and (result.counts[:, 10:] == 0).all()
    with pytest.raises(UserError, match="num_classes"):
        certify(model, x, 0.5, n0=5, n=10, num_classes=4, progress=False)
    empty = certify(model, x[:0], 0.5, n0=5, n=10, progress=False)
    assert len(empty) == 0 and predict(model, x[:0], 0.5).shape == (0,)


def test_certified_accuracy():
    result = SmoothingResult(
        prediction=torch.tensor([0, 1, -1, 2]),
        radius=torch.tensor([0.5, 1.0, 0.0, 2.0], dtype=torch.float64),
        p_lower=torch.zeros(4, dtype=torch.float64),
        counts=torch.zeros(4, 3, dtype=torch.int64),
    )
    y = torch.tensor([0, 1, 2, 0])
    got = certified_accuracy(result, y, [0.0, 0.5, 0.75, 1.0, 3.0])
    torch.testing.assert_close(got, torch.tensor([0.5, 0.5, 0.25, 0.25, 0.0], dtype=torch.float64))
    assert certified_accuracy(result, y, 0.6).shape == (1,)
    with pytest.raises(UserError, match="shape"):
        certified_accuracy(result, y[:3], [0.0])
    with pytest.raises(UserError, match="radii"):
        certified_accuracy(result, y, [-1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": math.nan}, "sigma"),
        ({"sigma": math.inf}, "sigma"),
        ({"n": 0}, "n must"),
        ({"n0": 0}, "n0"),
        ({"n": 2.5}, "n must"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": "a"}, "seed"),
        ({"x": torch.randn(6)}, "batch"),
        ({"x": torch.ones(2, 6, dtype=torch.int64)}, "floating"),
        ({"x": torch.full((2, 6), math.nan)}, "NaN"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"x": torch.randn(2, 6), "sigma": 0.5, **kwargs}
    x, sigma = args.pop("x"), args.pop("sigma")
    with pytest.raises(UserError, match=match):
        certify(linear_net(), x, sigma, progress=False, **args)
    if "n0" not in args:
        with pytest.raises(UserError, match=match):
            predict(linear_net(), x, sigma, **args)


def test_bad_model_output():
    class Flat(nn.Module):
        def forward(self, x):
            return x.sum(dim=1)

    with pytest.raises(UserError, match="logits of shape"):
        predict(Flat(), torch.randn(2, 3), 0.5, n=4)
    with pytest.raises(UserError, match=r"nn\.Module"):
        predict(lambda x: x, torch.randn(2, 3), 0.5)
