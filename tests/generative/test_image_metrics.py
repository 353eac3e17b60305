"""Offline image metrics: FID against closed forms, KID unbiasedness, precision/recall on
constructed point clouds, Stacked-MNIST mode counting, GAN-test, and the feature network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from advml.errors import UserError
from advml.generative.metrics import (
    STACKED_MODES,
    FeatureNetwork,
    classify_modes,
    feature_network,
    fid,
    frechet_distance,
    gan_test,
    kernel_distance,
    knn_radii,
    load_stacked_mnist,
    penultimate,
    precision_recall,
    score_images,
    stack_digits,
    stacked_mode_coverage,
)

# --------------------------------------------------------------------------- helpers


def _exact_sample(mu: torch.Tensor, sigma: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` rows whose sample mean is exactly ``mu`` and unbiased covariance exactly ``sigma``
    (random rows, centred and whitened, then coloured by a square root of ``sigma``)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mu.shape[0], generator=gen, dtype=torch.float64)
    z = z - z.mean(0)
    cov = z.T @ z / (n - 1)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(cov)).T
    return z @ torch.linalg.cholesky(sigma).T + mu


def _random_orthogonal(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q


# --------------------------------------------------------------------------- FID


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid(x, x.flip(0)) == pytest.approx(0.0, abs=1e-8)  # order does not matter


def test_fid_commuting_non_diagonal_covariances_closed_form():
    # Σ1 = Q diag(a) Qᵀ and Σ2 = Q diag(b) Qᵀ share eigenvectors (Q is not diagonal), so
    # tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½) = Σ_i (√a_i - √b_i)².
    d = 6
    q = _random_orthogonal(d, 1)
    a = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1, 4.0], dtype=torch.float64)
    b = torch.tensor([2.0, 1.0, 0.3, 5.0, 0.2, 1.0], dtype=torch.float64)
    mu1 = torch.linspace(-1, 1, d, dtype=torch.float64)
    mu2 = mu1 + torch.tensor([0.3, -0.2, 0.0, 1.0, 0.5, -0.7], dtype=torch.float64)
    sigma1, sigma2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    assert sigma1[0, 1].abs() > 1e-3  # really non-diagonal
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    x1 = _exact_sample(mu1, sigma1, 300, seed=2)
    x2 = _exact_sample(mu2, sigma2, 500, seed=3)
    assert fid(x1, x2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)


def test_fid_non_commuting_2d_closed_form():
    # For a 2x2 matrix M with positive eigenvalues, tr(√M) = sqrt(tr M + 2 sqrt(det M)).
    sigma1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    sigma2 = torch.tensor([[0.5, -0.3], [-0.3, 1.5]], dtype=torch.float64)
    assert not torch.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
    mu1 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    mu2 = torch.tensor([2.0, -1.0], dtype=torch.float64)
    m = sigma1 @ sigma2
    tr_sqrt = math.sqrt(float(m.trace()) + 2 * math.sqrt(float(torch.linalg.det(m))))
    expected = float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace()) - 2 * tr_sqrt
    x1 = _exact_sample(mu1, sigma1, 200, seed=4)
    x2 = _exact_sample(mu2, sigma2, 250, seed=5)
    assert fid(x1, x2) == pytest.approx(expected, rel=1e-9)


def test_fid_general_covariances_match_scipy_sqrtm():
    gen = torch.Generator().manual_seed(6)
    d = 10
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    b = torch.randn(d, d, generator=gen, dtype=torch.float64)
    sigma1, sigma2 = a @ a.T / d + 0.1 * torch.eye(d), b @ b.T / d + 0.1 * torch.eye(d)
    mu1, mu2 = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    root = scipy.linalg.sqrtm(sigma1.numpy() @ sigma2.numpy())
    expected = float(
        np.sum((mu1.numpy() - mu2.numpy()) ** 2)
        + np.trace(sigma1.numpy() + sigma2.numpy() - 2 * np.real(root))
    )
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_fid_singular_covariances_and_shift():
    # rank-1 features (all rows on a line): the Gaussian fit is singular
    t = torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None]
    direction = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    line = t * direction
    assert fid(line, line) == pytest.approx(0.0, abs=1e-10)
    shift = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    assert fid(line, line + shift) == pytest.approx(25.0, rel=1e-9)


def test_fid_rejects_bad_input():
    with pytest.raises(UserError):
        fid(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(UserError):
        fid(torch.randn(1, 3), torch.randn(10, 3))
    with pytest.raises(UserError):
        fid(torch.full((5, 2), float("nan")), torch.randn(5, 2))


# --------------------------------------------------------------------------- KID


def _kernel(a: np.ndarray, b: np.ndarray) -> float:
    return (float(a @ b) / a.shape[0] + 1) ** 3


def _mmd2_u_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (Gretton et al. 2012, Eq. 4) written term by term."""
    m = len(x)
    xx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(_kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_full_subset_equals_the_u_statistic():
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(12, 5, generator=gen), torch.randn(12, 5, generator=gen) + 0.5
    kid = kernel_distance(x, y, subsets=3, subset_size=12)
    expected = _mmd2_u_reference(x.double().numpy(), y.double().numpy())
    assert kid.mean == pytest.approx(expected, rel=1e-10)
    assert kid.std == pytest.approx(0.0, abs=1e-10)  # every subset is the whole set


def test_kid_of_a_set_with_itself_is_near_zero():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(600, 8, generator=gen)
    same = kernel_distance(x, x, subsets=20, subset_size=200)
    shifted = kernel_distance(x, x + 1.0, subsets=20, subset_size=200)
    assert abs(same.mean) < 0.02 * shifted.mean
    assert shifted.std > 0


def test_kid_is_unbiased_on_a_discrete_distribution():
    # P uniform on 3 points, Q uniform on 3 other points: the population MMD² is a finite sum.
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    q = torch.tensor([[0.5, 1.0], [1.5, 0.0], [0.0, 0.0]], dtype=torch.float64)

    def k(a, b):
        return (a @ b.mT / 2 + 1) ** 3

    population = float(k(p, p).mean() + k(q, q).mean() - 2 * k(p, q).mean())
    gen = torch.Generator().manual_seed(9)
    m, trials = 5, 3000
    xs = p[torch.randint(3, (trials, m), generator=gen)]
    ys = q[torch.randint(3, (trials, m), generator=gen)]
    unbiased = torch.tensor(
        [kernel_distance(xs[t], ys[t], subsets=1, subset_size=m).mean for t in range(trials)]
    )
    kxx, kyy, kxy = k(xs, xs), k(ys, ys), k(xs, ys)
    biased = kxx.mean((1, 2)) + kyy.mean((1, 2)) - 2 * kxy.mean((1, 2))  # V-statistic
    se = float(unbiased.std()) / math.sqrt(trials)
    assert abs(float(unbiased.mean()) - population) < 4 * se
    # the check has power: the biased estimator is detectably off
    assert abs(float(biased.mean()) - population) > 8 * se


def test_kid_rejects_bad_subsets():
    x = torch.randn(10, 3)
    with pytest.raises(UserError):
        kernel_distance(x, x, subsets=0)
    with pytest.raises(UserError):
        kernel_distance(x, x, subset_size=1)


# --------------------------------------------------------------------------- precision/recall


def _reference_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(a):
        return np.array([np.sort(np.linalg.norm(a - row, axis=1))[k] for row in a])

    def coverage(points, centres, r):
        return np.mean(
            [
                any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r, strict=True))
                for p in points
            ]
        )

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_identical_and_far_apart():
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(200, 4, generator=gen)
    assert tuple(precision_recall(x, x)) == (1.0, 1.0)
    assert tuple(precision_recall(x, x + 100.0)) == (0.0, 0.0)


def test_precision_recall_half_on_manifold():
    gen = torch.Generator().manual_seed(11)
    real = torch.randn(100, 3, generator=gen)
    far = torch.randn(50, 3, generator=gen) + 50.0
    fake = torch.cat([real[:50], far])
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == 0.5
    ref = _reference_pr(real.double().numpy(), fake.double().numpy(), 3)
    assert (precision, recall) == pytest.approx(ref)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_brute_force(k):
    gen = torch.Generator().manual_seed(12 + k)
    real = torch.randn(60, 3, generator=gen)
    fake = 1.3 * torch.randn(45, 3, generator=gen) + 0.4
    got = precision_recall(real, fake, k=k, batch_size=7)
    ref = _reference_pr(real.double().numpy(), fake.double().numpy(), k)
    assert tuple(got) == pytest.approx(ref)
    radii = knn_radii(real, k, batch_size=11)
    a = real.double().numpy()
    expected = [np.sort(np.linalg.norm(a - row, axis=1))[k] for row in a]
    assert radii.numpy() == pytest.approx(expected)


# --------------------------------------------------------------------------- score_images


class _Pixels(nn.Module):
    """Feature network stand-in: flattened pixels through a fixed random projection."""

    def __init__(self, pixels: int, dim: int = 6) -> None:
        super().__init__()
        self.proj = nn.Linear(pixels, dim, bias=False)

    def forward(self, x):
        return self.proj(x.flatten(1))


def test_score_images_names_and_values():
    torch.manual_seed(13)
    real = torch.rand(80, 1, 8, 8)
    net = _Pixels(64)
    same = score_images(
        real,
        real,
        features=net,
        dataset_name="mnist",
        batch_size=30,
        kid_subset_size=40,
        kid_subsets=5,
    )
    assert sorted(same) == sorted(
        ["MNIST-FID", "MNIST-KID", "MNIST-KID-std", "MNIST-precision", "MNIST-recall"]
    )
    assert same["MNIST-FID"] == pytest.approx(0.0, abs=1e-6)
    assert same["MNIST-precision"] == 1.0 and same["MNIST-recall"] == 1.0
    dark = score_images(
        real, real * 0.2, features=net, dataset_name="mnist", kid_subset_size=40, kid_subsets=5
    )
    assert dark["MNIST-FID"] > 0.1 and dark["MNIST-KID"] > same["MNIST-KID"]
    unnamed = score_images(real, real, features=net, kid_subsets=2)
    assert "features-FID" in unnamed
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        score_images(real, real * 2, features=net)
    with pytest.raises(UserError, match="differ in shape"):
        score_images(real, torch.rand(80, 1, 8, 4), features=net)


# --------------------------------------------------------------------------- feature network


def test_feature_network_trains_once_and_is_cached(tmp_path, monkeypatch):
    net = feature_network("digits", cache_dir=tmp_path, seed=1, train_size=300, epochs=2)
    assert isinstance(net, FeatureNetwork) and net.label == "digits" and net.dim == 128
    files = sorted(p.name for p in tmp_path.iterdir())
    stem = "digits-cnn-small-e2-n300-seed1"
    assert files == [f"{stem}.json", f"{stem}.safetensors"]
    card = (tmp_path / files[0]).read_text()
    assert '"test_acc"' in card and '"train_size": 300' in card
    x = torch.rand(5, 1, 8, 8)
    features = net(x)
    assert features.shape == (5, 128) and not features.requires_grad
    assert not net.training and not net.train().training

    from advml.training import Trainer

    def no_training(*args, **kwargs):
        raise AssertionError("the cached network must not be retrained")

    monkeypatch.setattr(Trainer, "fit", no_training)
    again = feature_network("digits", cache_dir=tmp_path, seed=1, train_size=300, epochs=2)
    assert torch.equal(again(x), features)
    with pytest.raises(AssertionError, match="retrained"):
        feature_network("digits", cache_dir=tmp_path, seed=2, train_size=300, epochs=2)
    with pytest.raises(UserError, match="expects images"):
        net(torch.rand(2, 1, 28, 28))


def test_penultimate_needs_a_linear_head():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    body, dim = penultimate(model)
    assert dim == 3 and len(body) == 3
    with pytest.raises(UserError):
        penultimate(nn.Conv2d(1, 1, 1))


# --------------------------------------------------------------------------- Stacked MNIST


def _label_images(labels: torch.Tensor, size: int = 6) -> torch.Tensor:
    """Grey images whose constant value encodes the digit: (label + 0.5) / 10."""
    return ((labels.float() + 0.5) / 10)[:, None, None, None].expand(-1, 1, size, size).clone()


class _ValueDigitClassifier(nn.Module):
    """A perfect 'digit classifier' for :func:`_label_images`: logits peak at the digit."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x):
        value = x.mean(dim=(1, 2, 3))[:, None]
        centres = (torch.arange(10).float() + 0.5) / 10
        return -self.scale * (value - centres).abs()


def test_stack_digits_and_exact_mode_counting():
    labels = torch.arange(10).repeat(3)
    digits = _label_images(labels)
    images, modes = stack_digits(digits, labels, 5000, seed=3)
    assert images.shape == (5000, 3, 6, 6)
    decoded = (images[:, :, 0, 0] * 10 - 0.5).round().long()
    assert torch.equal(modes, decoded[:, 0] * 100 + decoded[:, 1] * 10 + decoded[:, 2])
    again, _ = stack_digits(digits, labels, 5000, seed=3)
    assert torch.equal(images, again)
    assert torch.equal(classify_modes(images, _ValueDigitClassifier(), batch_size=777), modes)


def test_stacked_mode_coverage_on_exact_modes():
    every = torch.arange(STACKED_MODES)
    full = stacked_mode_coverage(every.repeat(2))
    assert full.modes == 1000 and full.kl == pytest.approx(0.0, abs=1e-12)
    one = stacked_mode_coverage(torch.full((50,), 123))
    assert one.modes == 1 and one.kl == pytest.approx(math.log(1000))
    mixed = stacked_mode_coverage(torch.tensor([7, 7, 7, 999]))
    assert mixed.modes == 2
    assert mixed.kl == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    assert int(mixed.histogram[7]) == 3 and int(mixed.histogram.sum()) == 4
    # three images per mode from a perfect classifier: all 1000 modes, uniform
    a, b, c = every // 100, every // 10 % 10, every % 10
    images = torch.cat([_label_images(a), _label_images(b), _label_images(c)], dim=1)
    modes = classify_modes(images.repeat(3, 1, 1, 1), _ValueDigitClassifier())
    cover = stacked_mode_coverage(modes)
    assert cover.modes == 1000 and cover.kl == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UserError):
        stacked_mode_coverage(torch.tensor([1000]))


def test_load_stacked_mnist(data_root):
    images, modes = load_stacked_mnist("test", 64, root=data_root, seed=0)
    assert images.shape == (64, 3, 28, 28) and modes.shape == (64,)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert int(modes.min()) >= 0 and int(modes.max()) < 1000


# --------------------------------------------------------------------------- GAN-test


class _LabelGenerator(nn.Module):
    """Conditional 'generator' drawing the image of label ``(y + shift) % 10``."""

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        self.shift = shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, y):
        return _label_images((y + self.shift) % 10)


def test_gan_test_accuracy():
    clf = _ValueDigitClassifier()
    right = gan_test(
        _LabelGenerator(0), clf, num_classes=10, latent_dim=4, samples_per_class=7, batch_size=9
    )
    assert right.accuracy == 1.0 and right.samples == 70
    assert right.per_class == {c: 1.0 for c in range(10)}
    wrong = gan_test(
        _LabelGenerator(1),
        clf,
        num_classes=10,
        latent_dim=4,
        samples_per_class=3,
        classes=[2, 5],
        truncation=0.5,
    )
    assert wrong.accuracy == 0.0 and set(wrong.per_class) == {2, 5}
    with pytest.raises(UserError):
        gan_test(_LabelGenerator(), clf, num_classes=10, latent_dim=4, classes=[10])


# --------------------------------------------------------------------------- Inception


def test_inception_network_reads_user_weights(tmp_path):
    from safetensors.torch import save_file

    from advml.errors import FormatError
    from advml.generative.metrics.inception import InceptionV3Pool

    torch.manual_seed(14)
    reference = InceptionV3Pool().eval()
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    state["fc.weight"] = torch.zeros(1008, 2048)  # classifier tensors are ignored
    path = tmp_path / "pt_inception.safetensors"
    save_file(state, str(path))
    net = feature_network("digits", inception_weights=path)
    assert net.label == "Inception" and net.dim == 2048
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x), atol=1e-5)
    assert net(x).shape == (2, 2048)
    del state["Mixed_7c.branch_pool.conv.weight"]
    save_file(state, str(path))
    with pytest.raises(FormatError, match=r"missing: Mixed_7c\.branch_pool\.conv\.weight"):
        feature_network("digits", inception_weights=path)
    with pytest.raises(UserError, match="not found"):
        feature_network("digits", inception_weights=tmp_path / "none.safetensors")
