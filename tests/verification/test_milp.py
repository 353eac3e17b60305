"""The MILP reference: exact against brute force on tiny networks, attained, and the bound
order IBP ⊇ CROWN ⊇ α-CROWN ⊇ exact; exact property verification with checked counterexamples."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advml.errors import UserError
from advml.verification.crown import bounds
from advml.verification.milp import exact_bounds, exact_extrema, solve_conjunction, verify_exact
from advml.verification.network import Dense, Elementwise, Network, ReLU
from advml.verification.spec import Conjunction, Property, robustness_property

F64 = torch.float64


def mlp(seed: int, widths: list[int], n_in: int, n_out: int, elementwise: bool = False) -> Network:
    gen = torch.Generator().manual_seed(seed)
    layers: list = []
    if elementwise:
        layers.append(
            Elementwise(
                torch.rand(n_in, generator=gen, dtype=F64) + 0.5, torch.zeros(n_in, dtype=F64)
            )
        )
    previous = n_in
    for width in widths:
        weight = torch.randn(width, previous, generator=gen, dtype=F64)
        layers += [Dense(weight, 0.5 * torch.randn(width, generator=gen, dtype=F64)), ReLU()]
        previous = width
    weight = torch.randn(n_out, previous, generator=gen, dtype=F64)
    layers.append(Dense(weight, torch.randn(n_out, generator=gen, dtype=F64)))
    return Network(tuple(layers), (n_in,))


def grid(lower, upper, n):
    axes = [
        torch.linspace(float(lo), float(hi), n, dtype=F64)
        for lo, hi in zip(lower, upper, strict=True)
    ]
    return torch.cartesian_prod(*axes)


def lipschitz(network: Network, C: torch.Tensor) -> torch.Tensor:
    """Per row of ``C``: ``|C| |W_L| … |W_1|`` summed over inputs, a bound on ``|∂(C f)/∂x|₁``."""
    product = C.abs()
    for layer in reversed(network.affine_layers):
        product = product @ layer.dense().abs()
    return product.max(1).values


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(3, 5))
def test_exact_bounds_match_a_dense_grid_search(seed, width):
    network = mlp(seed, [width], 2, 2)
    gen = torch.Generator().manual_seed(seed)
    lower = torch.rand(2, generator=gen, dtype=F64) * 2 - 1
    upper = lower + 0.2 + torch.rand(2, generator=gen, dtype=F64)
    C = torch.randn(3, 2, generator=gen, dtype=F64)
    low, high = exact_bounds(network, lower, upper, C)
    n = 401
    values = network(grid(lower, upper, n)) @ C.T
    spacing = float((upper - lower).max()) / (n - 1)
    slack = lipschitz(network, C) * spacing  # the nearest grid point is within spacing/2 per axis
    assert (low <= values.min(0).values + 1e-9).all()
    assert (values.min(0).values - low <= slack + 1e-9).all()
    assert (high >= values.max(0).values - 1e-9).all()
    assert (high - values.max(0).values <= slack + 1e-9).all()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([[4], [6, 5], [5, 4, 3], [8, 6]]),
    elementwise=st.booleans(),
)
def test_bound_order_ibp_crown_alpha_exact_and_exact_is_attained(seed, shape, elementwise):
    n_in = 3
    network = mlp(seed, shape, n_in, 3, elementwise)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(n_in, generator=gen, dtype=F64)
    radius = 0.05 + 0.4 * torch.rand(1, generator=gen, dtype=F64)
    lower, upper = centre - radius, centre + radius
    C = torch.randn(2, 3, generator=gen, dtype=F64)
    exact_l, exact_u, argmin, argmax = exact_extrema(network, lower, upper, C)
    ibp_l, ibp_u = bounds(network, lower, upper, C, method="ibp")
    crown_l, crown_u = bounds(network, lower, upper, C, method="crown")
    alpha_l, alpha_u = bounds(network, lower, upper, C, method="alpha-crown", alpha_steps=30)
    tol = 1e-7
    assert (ibp_l[0] <= crown_l[0] + tol).all() and (crown_u[0] <= ibp_u[0] + tol).all()
    assert (crown_l[0] <= alpha_l[0] + tol).all() and (alpha_u[0] <= crown_u[0] + tol).all()
    assert (alpha_l[0] <= exact_l + tol).all() and (exact_u <= alpha_u[0] + tol).all()
    assert (exact_l <= exact_u).all()
    # attained: the MILP's optimal points reach the bounds by forward pass
    at_min = (network(argmin) * C).sum(1)
    at_max = (network(argmax) * C).sum(1)
    assert ((argmin >= lower) & (argmin <= upper)).all()
    torch.testing.assert_close(at_min, exact_l, atol=1e-6, rtol=0)
    torch.testing.assert_close(at_max, exact_u, atol=1e-6, rtol=0)
    samples = lower + (upper - lower) * torch.rand(10_000, n_in, generator=gen, dtype=F64)
    values = network(samples) @ C.T
    assert (values >= exact_l - 1e-9).all() and (values <= exact_u + 1e-9).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(3, 5), quantile=st.floats(0.0, 0.3))
def test_solve_conjunction_agrees_with_sampling(seed, width, quantile):
    network = mlp(seed, [width], 2, 3)
    gen = torch.Generator().manual_seed(seed)
    lower = torch.rand(2, generator=gen, dtype=F64) - 0.5
    upper = lower + 0.5 + torch.rand(2, generator=gen, dtype=F64)
    C = torch.randn(2, 3, generator=gen, dtype=F64)
    points = grid(lower, upper, 201)
    values = network(points) @ C.T
    # thresholds around the sampled range, so that some conjunctions are feasible, some not
    d = torch.quantile(values, quantile, dim=0) - 0.05 * (
        values.max(0).values - values.min(0).values
    )
    conjunction = Conjunction(C, d)
    status, x = solve_conjunction(network, lower, upper, conjunction)
    sampled = conjunction.holds(network(points))
    if sampled.any():
        assert status == "feasible"
    assert status in ("feasible", "infeasible")
    if status == "feasible":
        assert x is not None and x.dtype == F64 and x.shape == (2,)
        assert ((x >= lower) & (x <= upper)).all()
        assert conjunction.holds(network(x[None]), tol=1e-6).all()
    else:
        assert x is None


def test_phases_split_the_problem_exactly():
    network = mlp(3, [3], 2, 2)
    lower, upper = torch.full((2,), -1.0, dtype=F64), torch.full((2,), 1.0, dtype=F64)
    points = grid(lower, upper, 301)
    outputs = network(points)
    pre = network.layers[0].forward(points)
    C = torch.tensor([[1.0, -1.0]], dtype=F64)
    for d in (outputs @ C.T).quantile(torch.tensor([0.0, 0.1, 0.5], dtype=F64)).flatten():
        conjunction = Conjunction(C, (d - 1e-3).reshape(1))
        overall, _ = solve_conjunction(network, lower, upper, conjunction)
        by_pattern = []
        for pattern in itertools.product([1, -1], repeat=3):
            phases = [torch.tensor(pattern, dtype=torch.int8)]
            status, x = solve_conjunction(network, lower, upper, conjunction, phases=phases)
            by_pattern.append(status)
            in_region = ((pre >= 0) == (torch.tensor(pattern) > 0)).all(1)
            hit = conjunction.holds(outputs[in_region])
            if hit.any():
                assert status == "feasible"
            if status == "feasible":
                z = network.layers[0].forward(x[None])[0]
                assert ((z >= -1e-9) | (torch.tensor(pattern) < 0)).all()
                assert ((z <= 1e-9) | (torch.tensor(pattern) > 0)).all()
        assert (overall == "feasible") == ("feasible" in by_pattern)


def test_verify_exact_falsifies_with_a_checked_counterexample_and_verifies_small_balls():
    network = mlp(5, [8, 6], 4, 3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, generator=gen, dtype=F64)
    label = int(network(x[None]).argmax())
    small = verify_exact(network, robustness_property(x, 1e-4, label, 3, low=-10, high=10))
    assert small.status == "verified"
    assert small.stats["milps"] >= 0 and small.stats["relus"] == 14
    big_prop = robustness_property(x, 3.0, label, 3, low=-10, high=10)
    big = verify_exact(network, big_prop)
    samples = big_prop.lower + (big_prop.upper - big_prop.lower) * torch.rand(20_000, 4, dtype=F64)
    broken = big_prop.violated_by(samples, network(samples)).any()
    if broken:
        assert big.status == "falsified"
    if big.status == "falsified":
        cx, cy = big.counterexample
        torch.testing.assert_close(cy, network(cx[None])[0])
        assert big_prop.violated_by(cx[None], network(cx[None])).all()
        assert big.stats["milps"] >= 1


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.05, 0.2, 0.5]))
def test_verify_exact_agrees_with_sampling_and_crown(seed, eps):
    network = mlp(seed, [6, 5], 3, 3)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, generator=gen, dtype=F64)
    label = int(network(x[None]).argmax())
    prop = robustness_property(x, eps, label, 3, low=-5, high=5)
    result = verify_exact(network, prop)
    assert result.status in ("verified", "falsified")
    samples = prop.lower + (prop.upper - prop.lower) * torch.rand(
        20_000, 3, generator=gen, dtype=F64
    )
    if prop.violated_by(samples, network(samples)).any():
        assert result.status == "falsified"
    C = torch.stack([c.C[0] for c in prop.unsafe])
    crown_l, _ = bounds(network, prop.lower, prop.upper, C)
    if (crown_l > 0).all():  # CROWN proves it: the exact answer must agree
        assert result.status == "verified"
    if result.status == "falsified":
        cx, cy = result.counterexample
        assert prop.violated_by(cx[None], cy[None]).all()


def test_a_spent_time_limit_gives_unknown_timeout():
    network = mlp(0, [5], 2, 2)
    prop = robustness_property(torch.zeros(2, dtype=F64), 1.0, 0, 2, low=-5, high=5)
    result = verify_exact(network, prop, time_limit=0.0)
    assert result.status == "unknown" and result.reason == "timeout"
    assert result.vnncomp == "timeout"


def test_conjunctions_with_several_rows_and_float32_networks():
    network = mlp(9, [6], 3, 4).to(torch.float32)
    lower, upper = torch.zeros(3), torch.ones(3)
    C = torch.tensor([[1.0, -1.0, 0, 0], [0, 1.0, -1.0, 0]])
    low, high = exact_bounds(network, lower, upper, C)
    assert low.dtype == F64 and (low <= high).all()
    # a conjunction that asks for both rows below their exact minima is infeasible
    status, _ = solve_conjunction(network, lower, upper, Conjunction(C, low - 0.1))
    assert status == "infeasible"
    status, x = solve_conjunction(network, lower, upper, Conjunction(C, high + 0.1))
    assert status == "feasible" and x is not None
    prop = Property(lower, upper, (Conjunction(C, high + 0.1),))
    result = verify_exact(network, prop)
    assert result.status == "falsified"


def test_bad_arguments_are_user_errors():
    network = mlp(0, [3], 2, 2)
    box = torch.zeros(2, dtype=F64)
    with pytest.raises(UserError, match="box"):
        exact_bounds(network, torch.zeros(3), torch.ones(3))
    with pytest.raises(UserError, match="phase"):
        solve_conjunction(
            network, box, box + 1, Conjunction(torch.eye(2), torch.zeros(2)), phases=[]
        )
    with pytest.raises(UserError, match="outputs"):
        verify_exact(network, robustness_property(torch.zeros(2), 0.1, 0, 3))


def test_an_output_exactly_on_the_boundary_is_a_counterexample():
    # every ReLU is inactive on the box: the output is a constant, and C y <= d holds with
    # equality; rounding in CROWN's bound must not turn that into "infeasible"
    weight = torch.tensor([[1.0, 0.3], [-0.2, 0.7]], dtype=F64)
    network = Network(
        (
            Dense(weight, torch.tensor([-5.0, -5.0], dtype=F64)),
            ReLU(),
            Dense(torch.eye(2, dtype=F64), torch.tensor([0.1, 0.7], dtype=F64)),
        ),
        (2,),
    )
    lower, upper = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
    C = torch.tensor([[0.3, 0.1], [-0.7, 0.9]], dtype=F64)
    d = network(lower[None])[0] @ C.T
    status, x = solve_conjunction(network, lower, upper, Conjunction(C, d))
    assert status == "feasible" and x is not None
    result = verify_exact(network, Property(lower, upper, (Conjunction(C, d),)))
    assert result.status == "falsified"
    status, _ = solve_conjunction(network, lower, upper, Conjunction(C, d - 1e-3))
    assert status == "infeasible"


def test_a_point_the_forward_pass_does_not_confirm_is_never_reported(monkeypatch):
    import advml.verification.milp as milp_module

    network = mlp(1, [4], 2, 2)
    x = torch.zeros(2, dtype=F64)
    label = int(network(x[None]).argmax())
    prop = robustness_property(x, 0.01, label, 2, low=-1, high=1)

    def fake(net, lower, upper, conjunction, phases, time_limit):  # a solver that is wrong
        return "feasible", lower.clone(), {"milps": 1.0, "relus_encoded": 0.0}

    monkeypatch.setattr(milp_module, "_solve_conjunction", fake)
    result = verify_exact(network, prop)
    assert result.status == "unknown" and "tolerance" in result.reason
    assert result.stats["milps"] == 2  # the MILP, then the LP of its activation region


def test_exact_bounds_out_of_time_warn_and_stay_sound():
    network = mlp(2, [6, 6], 3, 2)
    lower, upper = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.warns(RuntimeWarning, match="time limit"):
        low, high = exact_bounds(network, lower, upper, time_limit=0.0)
    samples = torch.rand(10_000, 3, dtype=F64)
    values = network(samples)
    assert (values >= low - 1e-9).all() and (values <= high + 1e-9).all()
