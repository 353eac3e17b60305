"""advml.transforms: identity at zero parameters, the box, gradients, per-sample parameters,
determinism and the sample-major layout of the copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advml import transforms as T
from advml.attacks.rng import KeyedRNG
from advml.errors import UserError


def images(n=3, c=2, h=6, w=7, seed=0, dtype=torch.float32, low=0.0, high=1.0):
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, c, h, w, generator=gen, dtype=dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


ZERO = [
    T.Affine(),
    T.Rotation(0),
    T.Scale(1.0),
    T.Translation(0),
    T.BrightnessContrast(0.0, 0.0),
    T.GaussianNoise(0.0),
    T.GaussianBlur(0.0),
    T.Compose([]),
    T.physical(rotation=0, translation=0, brightness=0, noise=0),
]

RANDOM = [
    T.Affine(rotation=30, scale=(0.8, 1.2), translation=1.5),
    T.BrightnessContrast(0.2, 0.3),
    T.GaussianNoise(0.1),
    T.GaussianBlur((0.2, 1.0)),
    T.physical(contrast=0.1, blur=0.5),
]


@pytest.mark.parametrize("t", ZERO, ids=lambda t: type(t).__name__)
def test_identity_at_zero_parameters(t):
    x = images()
    assert torch.equal(t.sample(x, gen(), samples=1), x)
    out = t.sample(x, gen(), samples=3)
    assert torch.equal(out, x.repeat_interleave(3, dim=0))


@pytest.mark.parametrize(
    "t",
    [
        T.Affine(rotation=30, translation=2),
        T.BrightnessContrast(0.3, 0.3),
        T.GaussianNoise(0.2),
        T.GaussianBlur(1.0),
    ],
    ids=lambda t: type(t).__name__,
)
def test_apply_identity_params_is_exact(t):
    x = images()
    assert torch.equal(t.apply(x, t.identity_params(x)), x)


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_in_box_shape_and_dtype(t, dtype):
    x = images(dtype=dtype)
    x[0] = 1.0  # saturated images stay in the box too
    x[1] = 0.0
    out = t.sample(x, gen(), samples=4)
    assert out.shape == (12, *x.shape[1:]) and out.dtype == dtype
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_gradcheck_float64(t):
    # away from the box's faces, where the clamp is not differentiable
    x = images(n=2, c=1, h=5, w=6, dtype=torch.float64, low=0.2, high=0.8).requires_grad_(True)
    if isinstance(t, T.GaussianNoise | T.Compose):
        t = T.GaussianNoise(0.02) if isinstance(t, T.GaussianNoise) else T.physical(noise=0.02)
    assert torch.autograd.gradcheck(lambda z: t.sample(z, gen(3), samples=2), (x,))


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_parameters_differ_per_sample_and_copy(t):
    x = images(n=1).expand(4, -1, -1, -1).contiguous()  # four identical inputs
    out = t.sample(x, gen(), samples=2)
    flat = out.reshape(8, -1)
    assert torch.unique(flat, dim=0).shape[0] == 8


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_deterministic_under_a_generator(t):
    x = images()
    a, b = t.sample(x, gen(5), samples=3), t.sample(x, gen(5), samples=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, t.sample(x, gen(6), samples=3))


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_keyed_source_is_batch_independent(t):
    x = images(n=5, dtype=torch.float64)
    whole = t.sample(x, KeyedRNG.for_inputs(x, 0), samples=2)
    parts = [t.sample(x[i : i + 2], KeyedRNG.for_inputs(x[i : i + 2], 0), 2) for i in (0, 2, 4)]
    torch.testing.assert_close(whole, torch.cat(parts), rtol=0, atol=1e-12)


def test_copies_are_sample_major():
    x = images(n=4)
    out = T.GaussianNoise(1e-3).sample(x, gen(), samples=5).reshape(4, 5, *x.shape[1:])
    assert (out - x.unsqueeze(1)).abs().max() < 1e-2
    assert torch.equal(T.Compose([]).sample(x, gen(), samples=2)[2], x[1])


def test_geometry():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 1] = 1.0
    rot = T.Affine().apply(x, torch.tensor([[90.0, 1.0, 0.0, 0.0]]))
    # positive angles turn clockwise on screen (the row axis points down)
    torch.testing.assert_close(rot, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)
    shift = T.Affine().apply(x, torch.tensor([[0.0, 1.0, 1.0, 2.0]]))  # 1 right, 2 down
    expected = torch.zeros_like(x)
    expected[0, 0, 2, 2] = 1.0
    torch.testing.assert_close(shift, expected, atol=1e-5, rtol=0)
    zoom = T.Affine().apply(torch.ones(1, 1, 4, 4), torch.tensor([[0.0, 0.5, 0.0, 0.0]]))
    assert zoom[0, 0, 0, 0] == 0 and zoom[0, 0, 1:3, 1:3].eq(1).all()  # zero padding


def test_non_square_rotation_keeps_shapes():
    x = torch.zeros(1, 1, 4, 8)
    x[0, 0, 1:3, 1:7] = 1.0  # a horizontal bar
    out = T.Affine().apply(x, torch.tensor([[90.0, 1.0, 0.0, 0.0]]))
    columns = out[0, 0].sum(dim=0)
    assert columns[3:5].min() > 1.5 and columns[0] < 0.1  # now vertical, centered


def test_brightness_contrast_and_blur_values():
    x = torch.full((1, 1, 5, 5), 0.5)
    x[0, 0, 2, 2] = 0.9
    bc = T.BrightnessContrast().apply(x, torch.tensor([[0.1, 1.0]]))
    torch.testing.assert_close(bc, (x + 0.1).clamp(0, 1))
    contrast = T.BrightnessContrast().apply(x, torch.tensor([[0.0, 2.0]]))
    mean = x.mean()
    torch.testing.assert_close(contrast, (mean + 2 * (x - mean)).clamp(0, 1))
    blur = T.GaussianBlur(1.0).apply(x, torch.tensor([[1.0]]))
    assert blur[0, 0, 2, 2] < 0.9 and blur[0, 0, 2, 3] > 0.5  # the peak spreads
    assert abs(float(blur.sum()) - float(x.sum())) < 0.05  # replicate padding, nearly kept


def test_noise_statistics():
    x = torch.full((2, 1, 32, 32), 0.5, dtype=torch.float64)
    out = T.GaussianNoise(0.05).sample(x, gen(), samples=4)
    noise = out - 0.5
    assert abs(float(noise.mean())) < 3e-3 and abs(float(noise.std()) - 0.05) < 3e-3
    ranged = T.GaussianNoise((0.0, 0.1)).sample(x, gen(), samples=4).reshape(8, -1) - 0.5
    stds = ranged.std(dim=1)
    assert stds.min() < stds.max() - 0.01  # sigma drawn per copy


def test_pointwise_transforms_accept_any_shape():
    x = torch.rand(5, 3, generator=gen())
    for t in (
        T.BrightnessContrast(0.1, 0.1),
        T.GaussianNoise(0.1),
        T.Compose([T.GaussianNoise(0.1)]),
    ):
        out = t.sample(x, gen(), samples=2)
        assert out.shape == (10, 3) and out.min() >= 0 and out.max() <= 1


def test_usable_inside_a_forward_pass():
    class Augmented(nn.Module):
        def __init__(self):
            super().__init__()
            self.t = T.physical()
            self.fc = nn.Linear(2 * 6 * 7, 3)

        def forward(self, x):
            return self.fc(self.t(x, gen(), 2).flatten(1))

    model = Augmented()
    x = images().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert list(T.physical().parameters()) == []


def test_global_generator_when_none():
    x = images()
    torch.manual_seed(0)
    a = T.GaussianNoise(0.1)(x)
    torch.manual_seed(0)
    assert torch.equal(a, T.GaussianNoise(0.1)(x))


def test_errors():
    with pytest.raises(UserError, match=r"\(N, C, H, W\)"):
        T.Affine(rotation=10).sample(torch.rand(4, 3))
    with pytest.raises(UserError, match=r"\(N, C, H, W\)"):
        T.physical().sample(torch.rand(4, 3))
    with pytest.raises(UserError, match="samples"):
        T.GaussianNoise(0.1).sample(images(), samples=0)
    with pytest.raises(UserError, match="rotation"):
        T.Affine(rotation=-5)
    with pytest.raises(UserError, match="scale"):
        T.Scale(0.0, 1.0)
    with pytest.raises(UserError, match="low <= high"):
        T.BrightnessContrast(brightness=(0.2, -0.2))
    with pytest.raises(UserError, match="sigma"):
        T.GaussianNoise(-0.1)
    with pytest.raises(UserError, match="odd"):
        T.GaussianBlur(1.0, kernel_size=4)
    with pytest.raises(UserError, match="Compose takes"):
        T.Compose([nn.ReLU()])
    with pytest.raises(UserError, match="padding"):
        T.Affine(padding="wrap")
