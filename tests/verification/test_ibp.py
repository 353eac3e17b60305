"""Interval bound propagation: bounds contain every sampled output; elision is tighter."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advml.models import Normalize, build
from advml.verification import UnsupportedLayer, interval_bounds, margin_lower_bounds
from advml.verification.ibp import input_box


def conv_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(
        Normalize([0.3, 0.5], [0.2, 0.4]),
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3, 8),
        nn.ReLU(),
        nn.Sequential(nn.Linear(8, 5)),
    )
    with torch.no_grad():
        net[2].running_mean.uniform_(-0.5, 0.5)
        net[2].running_var.uniform_(0.5, 2.0)
        net[2].weight.uniform_(-1.5, 1.5)  # negative scales too
    return net.eval().double()


def mlp_net(seed, width):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 4),
    ).double()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([0.01, 0.05, 0.2, 0.5]),
    kind=st.sampled_from(["conv", "mlp8", "mlp32"]),
)
def test_bounds_contain_ten_thousand_sampled_outputs(seed, eps, kind):
    if kind == "conv":
        net, shape = conv_net(seed), (2, 2, 6, 6)
    else:
        net, shape = mlp_net(seed, int(kind[3:])), (2, 6)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    lower, upper = input_box(x, eps)
    out_low, out_high = interval_bounds(net, lower, upper)
    samples = lower[:, None] + (upper - lower)[:, None] * torch.rand(
        (shape[0], 5000, *shape[1:]), generator=gen, dtype=torch.float64
    )
    corners = torch.where(
        torch.rand(samples.shape, generator=gen) < 0.5, lower[:, None], upper[:, None]
    )  # vertices of the box, where extremes often lie
    points = torch.cat([samples, corners], 1)  # 10,000 inputs per sample
    with torch.no_grad():
        outputs = net(points.flatten(0, 1)).view(shape[0], 10_000, -1)
    assert (outputs >= out_low[:, None] - 1e-9).all()
    assert (outputs <= out_high[:, None] + 1e-9).all()

    y = torch.randint(0, 4 if kind != "conv" else 5, (shape[0],), generator=gen)
    margins = margin_lower_bounds(net, lower, upper, y)
    true_margins = outputs.gather(2, y.view(-1, 1, 1).expand(-1, 10_000, 1)) - outputs
    assert (true_margins >= margins[:, None] - 1e-9).all()
    naive = out_low.gather(1, y[:, None]) - out_high
    assert (margins >= naive - 1e-9).all()  # folding the last layer never loosens


def test_bounds_are_exact_for_a_single_linear_layer():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).double()
    x = torch.rand(4, 3, dtype=torch.float64)
    low, high = interval_bounds(layer, x - 0.1, x + 0.1)
    with torch.no_grad():
        for j in range(2):  # output j is extreme at the corner x ± 0.1 sign(W_j)
            direction = 0.1 * layer.weight[j].sign()
            torch.testing.assert_close(high[:, j], layer(x + direction)[:, j])
            torch.testing.assert_close(low[:, j], layer(x - direction)[:, j])


def test_advml_architectures_are_supported():
    for arch in ("linear", "mlp", "cnn-small", "wong-mnist"):
        model = build(arch, (1, 28, 28), 10, mean=0.13, std=0.31).eval()
        x = torch.rand(2, 1, 28, 28)
        low, high = interval_bounds(model, *input_box(x, 0.01))
        with torch.no_grad():
            out = model(x)
        assert (low <= out + 1e-4).all() and (out <= high + 1e-4).all()


def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2))
    with pytest.raises(UnsupportedLayer, match="GELU"):
        interval_bounds(net, torch.zeros(1, 2), torch.ones(1, 2))
