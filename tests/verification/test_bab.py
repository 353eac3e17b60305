"""Branch-and-bound: sound and complete, agreeing with the exact MILP on small networks."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from advml.errors import UserError
from advml.verification import bab, crown, milp
from advml.verification.network import Dense, Network, ReLU, from_torch
from advml.verification.spec import Conjunction, Property, robustness_property


def _confirmed(network: Network, prop: Property, result) -> bool:
    """The counterexample lies in the box and a float64 forward pass puts it in the region."""
    x, y = result.counterexample
    x = x.reshape(1, -1).to(torch.float64)
    inside = bool(((x >= prop.lower) & (x <= prop.upper)).all())
    y_again = network.to(torch.float64).forward(x)
    same = torch.allclose(y_again[0], y, rtol=0, atol=1e-12)
    return inside and bool(prop.violated_by(x, y_again)[0]) and same


def _mlp(seed: int, n_in: int, widths: list[int], n_out: int) -> Network:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = n_in
    for hidden in widths:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return from_torch(nn.Sequential(*layers).double(), (n_in,))


def _case(seed: int) -> tuple[Network, Property, str]:
    """A random network and box property whose thresholds sit a margin off the exact optimum.

    For each conjunction, the MILP gives ``t* = min_x max_r (C_r f(x) − o_r)``; thresholds
    ``d = o + t* + δ`` make it feasible with margin ``δ > 0`` or infeasible with ``−δ``.
    Kinds: a single row, one conjunction of 2–3 rows, a disjunction of 2–3 conjunctions.
    """
    g = torch.Generator().manual_seed(seed)

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=g))

    n_in, n_out = randint(2, 5), randint(2, 4)
    net = _mlp(seed, n_in, [randint(4, 16) for _ in range(randint(1, 3))], n_out)
    lower = torch.rand(n_in, generator=g, dtype=torch.float64) * 2 - 1
    upper = lower + 0.1 + torch.rand(n_in, generator=g, dtype=torch.float64)
    kind = ("row", "conjunction", "disjunction")[seed % 3]
    n_conj = randint(2, 3) if kind == "disjunction" else 1
    feasible_odds = 1 - 0.5 ** (1 / n_conj)  # about half the properties falsified
    samples = lower + (upper - lower) * torch.rand(4000, n_in, generator=g, dtype=torch.float64)
    outputs = net(samples)
    conjunctions, expected = [], "verified"
    for _ in range(n_conj):
        rows = 1 if kind == "row" else randint(2, 3) if kind == "conjunction" else randint(1, 2)
        C = torch.randn(rows, n_out, generator=g, dtype=torch.float64)
        offset = torch.randn(rows, generator=g, dtype=torch.float64) * 0.1
        # with every threshold far above the outputs, the MILP's point minimises max_r(...)
        status, x = milp.solve_conjunction(
            net, lower, upper, Conjunction(C, offset + 1e3 + (outputs @ C.T).abs().max())
        )
        assert status == "feasible"
        t_star = float((net(x[None])[0] @ C.T - offset).max())
        spread = float((outputs @ C.T - offset).amax(1).max()) - t_star
        delta = 0.002 * 25 ** float(torch.rand(1, generator=g)) * spread  # 0.2%–5%
        if float(torch.rand(1, generator=g)) >= feasible_odds:
            delta = -delta
        else:
            expected = "falsified"
        conjunctions.append(Conjunction(C, offset + t_star + delta))
    return net, Property(lower, upper, tuple(conjunctions)), expected


CASES = range(36)


@pytest.mark.parametrize("method", ["input-split", "relu-split"])
def test_agrees_with_the_exact_milp_on_random_networks(method):
    statuses = []
    for seed in CASES:
        net, prop, expected = _case(seed)
        reference = milp.verify_exact(net, prop)
        assert reference.status == expected, seed
        result = bab.verify(net, prop, method=method, timeout=30)
        assert result.status == expected, (seed, result.reason, result.stats)
        if expected == "falsified":
            assert _confirmed(net, prop, result), seed
        statuses.append(expected)
    assert 0.3 < statuses.count("verified") / len(statuses) < 0.7


@pytest.mark.parametrize("method", ["input-split", "relu-split"])
def test_pure_branching_without_attack_or_milp_shortcuts(method, monkeypatch):
    """No attack, no MILP but on fully split domains (an LP): the branching alone decides."""
    monkeypatch.setattr(bab, "_MILP_SHARE", 0.0)
    monkeypatch.setattr(bab, "_INPUT_MILP_UNSTABLE", -1)
    monkeypatch.setattr(bab, "MILP_FREE_NEURONS", 0)
    branched = 0
    for seed in CASES:
        net, prop, expected = _case(seed)
        result = bab.verify(net, prop, method=method, timeout=30, attack=False)
        assert result.status == expected, (seed, result.reason, result.stats)
        if expected == "falsified":
            assert _confirmed(net, prop, result), seed
        branched += result.stats.get("branches", 0) > 0
    assert branched >= 10  # the search really split sub-problems


def test_linear_bounds_are_crowns_and_sound():
    """The backward pass BaB uses for children and candidates equals CROWN's and is sound."""
    net = _mlp(3, 4, [12, 12, 12], 3)
    g = torch.Generator().manual_seed(1)
    centre = torch.rand(64, 4, generator=g, dtype=torch.float64)
    radius = 0.3 * torch.rand(64, 4, generator=g, dtype=torch.float64)
    lower, upper = centre - radius, centre + radius
    C = torch.randn(3, 3, generator=g, dtype=torch.float64)
    prop = Property(lower[0], upper[0], (Conjunction(C, torch.zeros(3, dtype=torch.float64)),))
    spec = bab._Spec.of(prop, torch.float64, torch.device("cpu"))
    lb, _, intermediate = crown.bounds(net, lower, upper, C, return_intermediate=True)
    linear = bab._linear_bounds(net, spec, intermediate, 64)
    assert torch.allclose(linear.minimum(lower, upper), lb, atol=1e-9)
    x = lower[:, None] + (upper - lower)[:, None] * torch.rand(64, 500, 4, generator=g).double()
    true = net(x.reshape(-1, 4)).reshape(64, 500, 3) @ C.T
    value = torch.einsum("bmn,bsn->bsm", linear.A, x) + linear.c[:, None]
    assert bool((value <= true + 1e-12).all())


def test_rows_combined_settle_a_conjunction_no_single_row_can():
    """y ≤ 0.5 and y ≥ 1 never hold together, though each holds somewhere in the box."""
    eye = torch.eye(1, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    net = Network((Dense(eye, zero), ReLU(), Dense(eye, zero)), (1,))
    C = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    both = Conjunction(C, torch.tensor([0.5, -1.0], dtype=torch.float64))
    prop = Property(zero, 2 * eye[0], (both,))
    result = bab.verify(net, prop, method="input-split", attack=False)
    assert result.status == "verified"
    assert result.stats.get("branches", 0) == 0 and result.stats.get("milp_calls", 0) == 0


def test_a_network_without_relu():
    """No ReLU: CROWN is exact, so bounds and candidates decide at once, split or not."""
    g = torch.Generator().manual_seed(0)
    net = Network((Dense(torch.randn(2, 3, generator=g), torch.zeros(2)),), (3,))
    C = torch.tensor([[1.0, -1.0]])
    box = (-torch.ones(3), torch.ones(3))
    exact = float(milp.exact_bounds(net, *box, C)[0][0])
    for method in ("auto", "relu-split", "input-split"):
        for d, expected in ((exact - 0.1, "verified"), (exact + 0.1, "falsified")):
            prop = Property(*box, (Conjunction(C, torch.tensor([d])),))
            assert bab.verify(net, prop, method=method).status == expected


def _digits_classifier() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from advml.data import load

    x, y = load("digits", "train")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
    )
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(15):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            batch = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    x_test, y_test = load("digits", "test")
    return model.eval(), x_test, y_test


def test_local_robustness_on_digits_never_contradicts_pgd():
    from advml import attacks
    from advml.threats import Linf

    model, x, y = _digits_classifier()
    net = from_torch(model, (1, 8, 8))
    x, y = x[:12], y[:12]
    correct = model(x).argmax(1) == y
    verified_small = 0
    for eps in (0.02, 0.06, 0.1):
        found = attacks.get("pgd")(model, x, y, Linf(eps), steps=40, restarts=2).success
        for i in correct.nonzero()[:, 0].tolist():
            prop = robustness_property(x[i], eps, int(y[i]), 10)
            result = bab.verify(net, prop, timeout=10)
            assert not (result.status == "verified" and bool(found[i])), (eps, i)
            if result.status == "falsified":
                assert _confirmed(net, prop, result)
            if bool(found[i]):
                assert result.status == "falsified", (eps, i, result.reason)
            verified_small += eps == 0.02 and result.status == "verified"
    assert verified_small >= 3


def _hard_case() -> tuple[Network, Property]:
    """A wider network and a threshold a hair below the sampled minimum: slow to decide."""
    net = _mlp(11, 5, [40, 40, 40], 3)
    lower = -torch.ones(5, dtype=torch.float64)
    upper = torch.ones(5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    samples = lower + (upper - lower) * torch.rand(20000, 5, generator=g, dtype=torch.float64)
    C = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    d = (net(samples) @ C.T).min(0).values - 1e-9
    return net, Property(lower, upper, (Conjunction(C, d),))


def test_timeout_gives_unknown_never_verified():
    net, prop = _hard_case()
    result = bab.verify(net, prop, timeout=0.0)
    assert (result.status, result.reason) == ("unknown", "timeout")
    start = time.perf_counter()
    result = bab.verify(net, prop, timeout=0.5, attack=False)  # the search takes seconds
    assert time.perf_counter() - start < 3.0
    assert result.status != "verified"
    if result.status == "unknown":
        assert result.reason == "timeout"
        assert result.vnncomp == "timeout"


def test_incomplete_methods_and_milp():
    net, prop, expected = _case(4)
    for method in ("ibp", "crown", "alpha-crown"):
        result = bab.verify(net, prop, method=method, attack=False)
        assert result.status in ("verified", "unknown")
        if result.status == "unknown":
            assert result.reason == "incomplete method"
        if expected == "falsified":
            assert result.status == "unknown"
    assert bab.verify(net, prop, method="milp").status == expected


def test_several_properties_all_or_any():
    seed = next(s for s in CASES if _case(s)[2] == "falsified")
    net, bad, _ = _case(seed)
    safe = Property(bad.lower, bad.upper, tuple(Conjunction(c.C, c.d - 1e3) for c in bad.unsafe))
    assert bab.verify(net, [safe, safe]).status == "verified"
    result = bab.verify(net, [safe, bad], progress=True)
    assert result.status == "falsified" and _confirmed(net, bad, result)
    wrong = Property(torch.zeros(net.n_inputs + 1), torch.ones(net.n_inputs + 1), bad.unsafe)
    with pytest.raises(UserError, match="inputs"):
        bab.verify(net, wrong)


def test_rejects_bad_arguments():
    net, prop, _ = _case(0)
    with pytest.raises(UserError, match="method"):
        bab.verify(net, prop, method="magic")
    with pytest.raises(UserError, match="batch_size"):
        bab.verify(net, prop, batch_size=0)
    with pytest.raises(UserError, match="no property"):
        bab.verify(net, [])
    with pytest.raises(UserError, match="from_torch"):
        bab.verify(nn.Linear(2, 2), prop)


def test_stats_are_reported():
    net, prop, _ = _case(1)
    result = bab.verify(net, prop, method="input-split", attack=False)
    for key in ("bound_calls", "domains_bounded", "time_bounding_s", "time_s"):
        assert key in result.stats
    assert result.time_s > 0


# ----------------------------------------------------------------------------- ACAS Xu


def _acasxu(data_root, net_id: str, prop: int):
    folder = data_root / "acasxu"
    onnx_file = folder / "onnx" / f"ACASXU_run2a_{net_id}_batch_2000.onnx"
    vnnlib_file = folder / "vnnlib" / f"prop_{prop}.vnnlib"
    if not onnx_file.is_file() or not vnnlib_file.is_file():
        pytest.skip(f"ACAS Xu files not found under {folder}: set ADVML_DATA to the shared data")
    onnx_import = pytest.importorskip("advml.verification.onnx_import")
    vnnlib = pytest.importorskip("advml.verification.vnnlib")
    return onnx_import.read_onnx(onnx_file), vnnlib.read_vnnlib(vnnlib_file)


def test_acasxu_prop1_is_unsat(data_root):
    network, properties = _acasxu(data_root, "1_1", 1)
    result = bab.verify(network, properties, timeout=60)
    assert result.status == "verified", result.reason


def test_acasxu_prop2_on_2_1_is_sat_with_a_checked_counterexample(data_root):
    network, properties = _acasxu(data_root, "2_1", 2)
    result = bab.verify(network, properties, timeout=60)
    assert result.status == "falsified"
    assert any(_confirmed(network, prop, result) for prop in properties)
