"""The internal network form: torch import, the transpose of each affine map, merging, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advml.errors import UserError
from advml.models import Normalize, build
from advml.verification import (
    Conv,
    Dense,
    Elementwise,
    Network,
    ReLU,
    UnsupportedOperator,
    from_torch,
    robustness_property,
)


def _conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        Normalize([0.2, 0.4], [0.5, 0.25]),
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(3 * 4 * 4, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 3),
    )
    for bn in (model[2], model[9]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    return model.eval()


@pytest.mark.parametrize("arch", ["linear", "mlp", "wong-mnist"])
def test_from_torch_computes_the_model(arch):
    torch.manual_seed(0)
    model = build(arch, (1, 28, 28), 10, mean=0.13, std=0.3).eval()
    network = from_torch(model, (1, 28, 28))
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(network(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(network.simplified()(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(network.as_module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_conv_batchnorm_normalize_dropout_and_merging():
    model = _conv_bn_net()
    network = from_torch(model, (2, 8, 8))
    simple = network.simplified()
    x = torch.rand(7, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(network(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(simple(x), model(x), rtol=1e-5, atol=1e-5)
    # normalization folds into the first conv, batch norms into the maps before them
    assert [type(layer).__name__ for layer in simple.layers] == [
        "Conv", "ReLU", "Conv", "ReLU", "Dense", "ReLU", "Dense",
    ]  # fmt: skip
    assert network.n_inputs == 128 and network.n_outputs == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_is_the_transpose_of_forward(dtype):
    network = from_torch(_conv_bn_net(), (2, 8, 8)).to(dtype)
    generator = torch.Generator().manual_seed(1)
    for layer in network.affine_layers:
        a = torch.randn(3, layer.out_features, generator=generator, dtype=dtype)
        z = torch.randn(4, layer.in_features, generator=generator, dtype=dtype)
        lhs = a @ (layer.forward(z) - layer.bias).T
        rhs = layer.backward(a) @ z.T
        torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)
        dense = layer.dense()
        assert dense.shape == (layer.out_features, layer.in_features)
        torch.testing.assert_close(z @ dense.T + layer.bias, layer.forward(z))


def test_backward_keeps_leading_dimensions():
    conv = Conv(torch.randn(3, 2, 3, 3), torch.zeros(3 * 4 * 4), (2, 4, 4), padding=(1, 1))
    a = torch.randn(5, 6, conv.out_features)
    assert conv.backward(a).shape == (5, 6, conv.in_features)


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedOperator, match="Sigmoid"):
        from_torch(model, (4,))
    with pytest.raises(UnsupportedOperator, match="MaxPool2d"):
        from_torch(build("cnn-small", (1, 28, 28), 10), (1, 28, 28))
    train_bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    with pytest.raises(UnsupportedOperator, match="training mode"):
        from_torch(train_bn, (4,))


def test_malformed_networks_are_rejected():
    with pytest.raises(UserError, match="last layer"):
        Network((Dense(torch.eye(2), torch.zeros(2)), ReLU()), (2,))
    with pytest.raises(UserError, match="takes 3 inputs"):
        Network(
            (Dense(torch.eye(2), torch.zeros(2)), Dense(torch.ones(1, 3), torch.zeros(1))), (2,)
        )
    with pytest.raises(UserError, match="affine map"):
        Dense(torch.eye(2), torch.zeros(3))
    with pytest.raises(UserError, match="one length"):
        Elementwise(torch.ones(2), torch.zeros(3))
    network = Network((Dense(torch.eye(2), torch.zeros(2)),), (2,))
    with pytest.raises(UserError, match="expected 2"):
        network(torch.zeros(1, 3))


def test_robustness_property_semantics():
    x = torch.full((1, 2, 2), 0.95)
    prop = robustness_property(x, 0.1, label=1, n_classes=3)
    assert torch.equal(prop.upper, torch.ones(4)) and torch.allclose(
        prop.lower, torch.full((4,), 0.85)
    )
    inside = prop.lower[None].repeat(3, 1)
    outputs = torch.tensor([[0.0, 1.0, 0.5], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert prop.violated_by(inside, outputs).tolist() == [False, True, True]  # ties count
    outside = inside - 0.5
    assert not prop.violated_by(outside, outputs).any()
    with pytest.raises(UserError):
        robustness_property(x, -0.1, 0, 3)
    with pytest.raises(UserError):
        robustness_property(x, 0.1, 3, 3)
