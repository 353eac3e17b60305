"""Normalize: numerics, broadcasting, buffers that move with the model, validation."""

from __future__ import annotations

import pytest
import torch

from advml.errors import UserError
from advml.models import Normalize


def test_per_channel_numerics_on_images():
    layer = Normalize([0.5, 0.25, 0.0], [0.5, 0.25, 2.0])
    x = torch.rand(4, 3, 5, 6)
    out = layer(x)
    expected = torch.stack(
        [(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 0.25, (x[:, 2] - 0.0) / 2.0], dim=1
    )
    torch.testing.assert_close(out, expected)


def test_scalar_statistics_broadcast_everywhere():
    layer = Normalize(0.1307, 0.3081)
    for shape in [(2, 1, 8, 8), (2, 3, 4, 4), (5, 2), (7,)]:
        x = torch.rand(shape)
        torch.testing.assert_close(layer(x), (x - 0.1307) / 0.3081)


def test_flat_inputs_normalize_per_feature():
    layer = Normalize([1.0, -1.0], [2.0, 4.0])
    x = torch.tensor([[3.0, 3.0], [1.0, -1.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_single_value_expands_to_the_other_length():
    layer = Normalize(0.5, [0.1, 0.2])
    assert layer.mean.tolist() == [0.5, 0.5]
    assert layer.num_channels == 2


def test_statistics_are_buffers_in_the_state_dict():
    layer = Normalize([0.1, 0.2], [0.3, 0.4])
    assert set(layer.state_dict()) == {"mean", "std"}
    assert list(layer.parameters()) == []


def test_dtype_moves_with_the_module():
    layer = Normalize([0.1, 0.2], [0.3, 0.4]).double()
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    out = layer(x)
    assert layer.mean.dtype == torch.float64
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.2) / 0.4)


def test_device_moves_with_the_module():
    layer = Normalize([0.1, 0.2], [0.3, 0.4]).to("meta")
    assert layer.mean.device.type == "meta" and layer.std.device.type == "meta"


def test_accepts_numpy_values():
    import numpy as np

    layer = Normalize(np.array([0.5, 0.25]), np.float32(0.5))
    assert layer.mean.tolist() == [0.5, 0.25] and layer.std.tolist() == [0.5, 0.5]


def test_accepts_tensors_and_is_differentiable():
    layer = Normalize(torch.tensor([0.5]), torch.tensor([0.5]))
    x = torch.rand(2, 1, 3, 3, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (0.0, 0.0, "std must be > 0"),
        (0.0, [1.0, -1.0], "std must be > 0"),
        ([0.0, 0.0], [1.0, 1.0, 1.0], "mean has 2 values but std has 3"),
        ([], [1.0], "must not be empty"),
        ("abc", 1.0, "number"),
        (float("nan"), 1.0, "finite"),
        (0.0, [1.0, True], "only numbers"),
    ],
)
def test_invalid_statistics_are_user_errors(mean, std, match):
    with pytest.raises(UserError, match=match):
        Normalize(mean, std)


def test_channel_mismatch_at_call_time_is_a_user_error():
    layer = Normalize([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    with pytest.raises(UserError, match="3 channels"):
        layer(torch.rand(2, 1, 4, 4))


def test_repr_shows_statistics():
    assert "mean=[0.1307]" in repr(Normalize(0.1307, 0.3081))
