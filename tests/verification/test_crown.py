"""CROWN and α-CROWN: sound on sampled inputs (with and without splits), exact for one affine
layer, batch-independent, and tighter than IBP on a trained model without contradicting PGD."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advml.attacks import get as get_attack
from advml.data import load
from advml.errors import UserError
from advml.threats import make as make_threat
from advml.verification.crown import METHODS, bounds, interval_layer_bounds
from advml.verification.network import Dense, Elementwise, Network, ReLU, from_torch

N_SAMPLES = 10_000


def random_network(seed: int, kind: str, dtype: torch.dtype) -> Network:
    """MLPs of 1–4 hidden layers (widths 2–30), a small conv net, or an MLP with
    elementwise maps (normalization, folded batch norm) in several places."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "conv":
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3),
            nn.ReLU(),
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16, 5),
        )
        return from_torch(model.to(dtype), (1, 6, 6))
    depth = int(kind[3:]) if kind.startswith("mlp") else 2
    widths = [int(w) for w in torch.randint(2, 31, (depth,), generator=gen)]
    n_in = int(torch.randint(2, 7, (1,), generator=gen))
    layers: list = []
    if kind == "elementwise":
        scale = torch.rand(n_in, generator=gen, dtype=dtype) * 3 - 1.5
        layers.append(Elementwise(scale, torch.randn(n_in, generator=gen, dtype=dtype)))
    previous = n_in
    for k, width in enumerate(widths):
        weight = torch.randn(width, previous, generator=gen, dtype=dtype) / previous**0.5
        layers.append(Dense(weight, 0.3 * torch.randn(width, generator=gen, dtype=dtype)))
        if kind == "elementwise" and k == 0:
            scale = torch.rand(width, generator=gen, dtype=dtype) * 3 - 1.5
            layers.append(Elementwise(scale, torch.randn(width, generator=gen, dtype=dtype)))
        layers.append(ReLU())
        if kind == "elementwise" and k == 1:
            scale = torch.rand(width, generator=gen, dtype=dtype) + 0.5
            layers.append(Elementwise(scale, torch.randn(width, generator=gen, dtype=dtype)))
        previous = width
    weight = torch.randn(3, previous, generator=gen, dtype=dtype) / previous**0.5
    layers.append(Dense(weight, torch.randn(3, generator=gen, dtype=dtype)))
    return Network(tuple(layers), (n_in,) if kind != "conv" else (1, 6, 6))


def pre_activations(network: Network, x: torch.Tensor) -> list[torch.Tensor]:
    out, z = [], x
    for layer in network.layers:
        if isinstance(layer, ReLU):
            out.append(z)
            z = z.clamp_min(0)
        else:
            z = layer.forward(z)
    return out


def sample_box(lower, upper, n, gen):
    """``n`` points per box ``(B, n, d)``: half uniform, half box vertices."""
    B, d = lower.shape
    u = torch.rand((B, n // 2, d), generator=gen, dtype=lower.dtype)
    uniform = lower[:, None] + (upper - lower)[:, None] * u
    flip = torch.rand((B, n - n // 2, d), generator=gen) < 0.5
    corners = torch.where(flip, lower[:, None], upper[:, None])
    return torch.cat([uniform, corners], 1)


def tolerance(dtype, *bounds_):
    scale = max(
        1.0, *(float(b[b.isfinite()].abs().max()) if b.isfinite().any() else 1.0 for b in bounds_)
    )
    return (1e-9 if dtype == torch.float64 else 2e-5) * scale


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["mlp1", "mlp2", "mlp3", "mlp4", "conv", "elementwise"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    eps=st.sampled_from([0.01, 0.1, 0.5]),
)
def test_bounds_contain_ten_thousand_sampled_outputs(seed, kind, dtype, eps):
    network = random_network(seed, kind, dtype)
    gen = torch.Generator().manual_seed(seed)
    B = 2
    centre = torch.rand((B, network.n_inputs), generator=gen, dtype=dtype)
    lower, upper = centre - eps, centre + eps
    points = sample_box(lower, upper, N_SAMPLES, gen)
    with torch.no_grad():
        outputs = network.forward(points.flatten(0, 1)).view(B, N_SAMPLES, -1)
    C = torch.randn((B, 4, network.n_outputs), generator=gen, dtype=dtype)
    projected = outputs @ C.transpose(1, 2)
    for method in METHODS:
        low, high = bounds(network, lower, upper, method=method, alpha_steps=8)
        tol = tolerance(dtype, low, high)
        assert low.shape == high.shape == (B, network.n_outputs)
        assert (outputs >= low[:, None] - tol).all(), method
        assert (outputs <= high[:, None] + tol).all(), method
        low, high = bounds(network, lower, upper, C, method=method, alpha_steps=8)
        assert low.shape == (B, 4)
        assert (projected >= low[:, None] - tol).all(), method
        assert (projected <= high[:, None] + tol).all(), method


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["mlp2", "mlp3", "elementwise", "conv"]),
    method=st.sampled_from(METHODS),
)
def test_bounds_with_splits_contain_the_outputs_of_inputs_that_satisfy_them(seed, kind, method):
    dtype = torch.float64
    network = random_network(seed, kind, dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    B = 4
    centre = torch.rand((B, network.n_inputs), generator=gen, dtype=dtype)
    lower, upper = centre - 0.3, centre + 0.3
    _, _, inter = bounds(network, lower, upper, return_intermediate=True)
    splits = []
    for l, u in inter:  # constrain up to two unstable neurons per layer, at random
        unstable = (l < 0) & (u > 0)
        pick = unstable & (torch.rand(l.shape, generator=gen, dtype=dtype) < 2 / l.shape[1])
        sign = torch.where(torch.rand(l.shape, generator=gen) < 0.5, 1, -1)
        splits.append(torch.where(pick, sign, 0).to(torch.int8))
    points = sample_box(lower, upper, N_SAMPLES, gen)
    flat = points.flatten(0, 1)
    with torch.no_grad():
        outputs = network.forward(flat).view(B, N_SAMPLES, -1)
        pre = pre_activations(network, flat)
    ok = torch.ones(B * N_SAMPLES, dtype=torch.bool)
    for z, split in zip(pre, splits, strict=True):
        s = split.repeat_interleave(N_SAMPLES, 0)
        ok &= ((s != 1) | (z >= 0)).all(1) & ((s != -1) | (z <= 0)).all(1)
    ok = ok.view(B, N_SAMPLES)
    low, high, inter_split = bounds(
        network, lower, upper, method=method, splits=splits, alpha_steps=5, return_intermediate=True
    )
    infeasible = torch.isinf(low).all(1)
    assert (torch.isinf(high).all(1) == infeasible).all()
    assert (low[infeasible] > 0).all() and (high[infeasible] < 0).all()
    for b in range(B):
        if infeasible[b]:
            assert not ok[b].any()  # claimed infeasible: no sample satisfies the splits
            continue
        feasible_out = outputs[b][ok[b]]
        assert (feasible_out >= low[b] - 1e-9).all()
        assert (feasible_out <= high[b] + 1e-9).all()
        for z, (l, u), split in zip(pre, inter_split, splits, strict=True):
            zb = z.view(B, N_SAMPLES, -1)[b][ok[b]]
            assert (zb >= l[b] - 1e-9).all() and (zb <= u[b] + 1e-9).all()
            assert (l[b][split[b] == 1] >= 0).all() and (u[b][split[b] == -1] <= 0).all()


def test_splits_that_empty_the_box_give_infinite_bounds():
    network = random_network(3, "mlp2", torch.float64)
    lower = torch.zeros(2, network.n_inputs, dtype=torch.float64)
    upper = lower + 1.0
    _, _, inter = bounds(network, lower, upper, return_intermediate=True)
    l, u = inter[0]
    splits = [
        torch.zeros_like(l, dtype=torch.int8),
        torch.zeros_like(inter[1][0], dtype=torch.int8),
    ]
    # force a contradiction in box 0: a neuron that is always negative, constrained active
    negative = (u[0] < 0).nonzero()
    if len(negative) == 0:  # make one: shift the first neuron's bias far down
        layers = list(network.layers)
        bias = layers[0].bias.clone()
        bias[0] = -100.0
        layers[0] = Dense(layers[0].weight, bias)
        network = Network(tuple(layers), network.input_shape)
        index = 0
    else:
        index = int(negative[0])
    splits[0][0, index] = 1
    for method in METHODS:
        low, high = bounds(network, lower, upper, method=method, splits=splits)
        assert torch.isposinf(low[0]).all() and torch.isneginf(high[0]).all()
        assert torch.isfinite(low[1]).all() and torch.isfinite(high[1]).all()
        free_low, free_high = bounds(network, lower[1:], upper[1:], method=method)
        torch.testing.assert_close(low[1:], free_low)
        torch.testing.assert_close(high[1:], free_high)


@pytest.mark.parametrize("method", METHODS)
def test_one_affine_layer_is_exact(method):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    layer = Dense(weight, torch.randn(4, generator=gen, dtype=torch.float64))
    network = Network(
        (
            Elementwise(
                torch.rand(6, dtype=torch.float64) - 0.5, torch.ones(6, dtype=torch.float64)
            ),
            layer,
        ),
        (6,),
    )
    x = torch.rand(3, 6, generator=gen, dtype=torch.float64)
    low, high = bounds(network, x - 0.1, x + 0.1, method=method)
    effective = weight * network.layers[0].scale  # the composed map's matrix
    for j in range(4):  # output j is extreme at the corner x ± 0.1 sign(W_j)
        direction = 0.1 * effective[j].sign()
        torch.testing.assert_close(high[:, j], network(x + direction)[:, j])
        torch.testing.assert_close(low[:, j], network(x - direction)[:, j])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["mlp3", "conv", "elementwise"])
def test_bounds_of_a_batch_equal_bounds_one_box_at_a_time(method, kind):
    network = random_network(11, kind, torch.float64)
    gen = torch.Generator().manual_seed(5)
    centre = torch.rand(5, network.n_inputs, generator=gen, dtype=torch.float64)
    radius = torch.tensor([0.01, 0.05, 0.1, 0.3, 0.0], dtype=torch.float64)[:, None]
    lower, upper = centre - radius, centre + radius
    C = torch.randn(5, 2, network.n_outputs, generator=gen, dtype=torch.float64)
    low, high, inter = bounds(network, lower, upper, C, method=method, return_intermediate=True)
    for b in range(5):
        lb, ub, ib = bounds(
            network, lower[b], upper[b], C[b], method=method, return_intermediate=True
        )
        torch.testing.assert_close(lb[0], low[b], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(ub[0], high[b], rtol=1e-7, atol=1e-9)
        for (l1, u1), (l2, u2) in zip(ib, inter, strict=True):
            torch.testing.assert_close(l1[0], l2[b], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(u1[0], u2[b], rtol=1e-9, atol=1e-9)


def test_a_point_box_gives_the_output_itself():
    network = random_network(2, "mlp4", torch.float64)
    x = torch.rand(3, network.n_inputs, dtype=torch.float64)
    for method in METHODS:
        low, high = bounds(network, x, x, method=method)
        torch.testing.assert_close(low, network(x))
        torch.testing.assert_close(high, network(x))


def test_crown_is_tighter_than_ibp_and_alpha_crown_tighter_than_crown():
    for seed in range(5):
        network = random_network(seed, "mlp3", torch.float64)
        x = torch.rand(8, network.n_inputs, dtype=torch.float64)
        results = {m: bounds(network, x - 0.2, x + 0.2, method=m) for m in METHODS}
        (il, iu), (cl, cu), (al, au) = (results[m] for m in METHODS)
        assert (il <= cl + 1e-12).all() and (cu <= iu + 1e-12).all()
        assert (cl <= al + 1e-12).all() and (au <= cu + 1e-12).all()
        assert (al <= au).all()
    assert (cu - cl).sum() < (iu - il).sum()


def test_intermediate_bounds_are_at_least_as_tight_as_ibp():
    network = random_network(7, "elementwise", torch.float64)
    x = torch.rand(4, network.n_inputs, dtype=torch.float64)
    ibp = interval_layer_bounds(network, x - 0.2, x + 0.2)
    _, _, inter = bounds(network, x - 0.2, x + 0.2, return_intermediate=True)
    assert len(ibp) == len(inter) + 1
    for (il, iu), (cl, cu) in zip(ibp, inter, strict=False):
        assert (il <= cl + 1e-12).all() and (cu <= iu + 1e-12).all()
    out_l, out_h = ibp[-1]
    low, high = bounds(network, x - 0.2, x + 0.2, method="ibp")
    assert (out_l <= low + 1e-12).all() and (high <= out_h + 1e-12).all()


def test_float32_network_with_float64_box_rounds_the_box_outward():
    network = random_network(4, "mlp2", torch.float32)
    lower = torch.full((1, network.n_inputs), 0.1, dtype=torch.float64)
    low, high = bounds(network, lower, lower + 1e-9)
    assert low.dtype == torch.float32
    y = network(lower.float())
    assert (low <= y + 1e-5).all() and (y <= high + 1e-5).all()


def test_bad_arguments_are_user_errors():
    network = random_network(0, "mlp1", torch.float64)
    box = torch.zeros(2, network.n_inputs, dtype=torch.float64)
    with pytest.raises(UserError, match="method"):
        bounds(network, box, box, method="deeppoly")
    with pytest.raises(UserError, match="inputs"):
        bounds(network, box[:, :1], box[:, :1])
    with pytest.raises(UserError, match="C"):
        bounds(network, box, box, torch.zeros(3, network.n_outputs + 1))
    with pytest.raises(UserError, match="split"):
        bounds(network, box, box, splits=[])


def test_empty_input_box_gives_infinite_bounds():
    network = random_network(0, "mlp1", torch.float64)
    lower = torch.zeros(2, network.n_inputs, dtype=torch.float64)
    upper = lower + 1.0
    upper[0, 0] = -1.0
    low, high = bounds(network, lower, upper)
    assert torch.isposinf(low[0]).all() and torch.isneginf(high[0]).all()
    assert torch.isfinite(low[1]).all()


def test_conv_network_on_mnist_sized_input_with_nine_margins():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 50),
        nn.ReLU(),
        nn.Linear(50, 10),
    )
    network = from_torch(model, (1, 28, 28))
    x = torch.rand(3, 784)
    C = torch.zeros(9, 10)
    C[:, 0] = 1.0
    C[torch.arange(9), torch.arange(1, 10)] = -1.0
    for method in METHODS:
        low, high = bounds(network, x - 0.01, x + 0.01, C, method=method, alpha_steps=3)
        margins = network(x) @ C.T
        assert low.shape == (3, 9)
        assert (low <= margins + 1e-4).all() and (margins <= high + 1e-4).all()


def _train_digits_mlp() -> nn.Module:
    x, y = load("digits", "train")
    x = x.flatten(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


def test_crown_verifies_more_digits_than_ibp_and_never_one_that_pgd_breaks():
    model = _train_digits_mlp()
    x, y = load("digits", "test")
    x, y = x[:100], y[:100]
    network = from_torch(model, (1, 8, 8)).to(torch.float64)
    eps = 0.02
    lower = (x.flatten(1) - eps).clamp(0, 1).double()
    upper = (x.flatten(1) + eps).clamp(0, 1).double()
    others = torch.stack([torch.tensor([j for j in range(10) if j != int(c)]) for c in y])
    C = torch.zeros(100, 9, 10, dtype=torch.float64)
    C[torch.arange(100)[:, None], torch.arange(9)[None], y[:, None]] = 1.0
    C[torch.arange(100)[:, None], torch.arange(9)[None], others] = -1.0
    verified = {}
    for method in METHODS:
        low, _ = bounds(network, lower, upper, C, method=method)
        verified[method] = (low > 0).all(1)
    assert verified["crown"].sum() > verified["ibp"].sum()
    assert (verified["ibp"] <= verified["crown"]).all()
    assert (verified["crown"] <= verified["alpha-crown"]).all()
    attack = get_attack("pgd")(model, x, y, make_threat("linf", eps), steps=30, restarts=2)
    assert attack.success.any()  # the eps is large enough for PGD to break some samples
    assert not (attack.success & verified["alpha-crown"]).any()
    clean_wrong = model(x).argmax(1) != y
    assert not (clean_wrong & verified["alpha-crown"]).any()
