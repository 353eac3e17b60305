"""NNet reader: exact round trip, the (de-)normalisation, FormatError with the line number
for malformed files, and agreement with the VNN-COMP ONNX files on all 45 ACAS Xu networks."""

import contextlib
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advml.errors import FormatError, UserError
from advml.verification.network import Dense, ReLU
from advml.verification.nnet import parse_nnet, read_nnet
from advml.verification.onnx_import import read_onnx


def nnet_lines(sizes=(3, 4, 5, 2), seed=0) -> tuple[list[str], dict]:
    """An NNet file as a list of lines (two comment lines first) and the values written."""
    rng = np.random.default_rng(seed)
    n_in = sizes[0]
    values = {
        "mins": rng.uniform(-2, 0, n_in),
        "maxes": rng.uniform(0.5, 2, n_in),
        "means": rng.uniform(-1, 1, n_in + 1),
        "ranges": rng.uniform(0.5, 3, n_in + 1),
        "weights": [rng.standard_normal((b, a)) for a, b in pairwise(sizes)],
        "biases": [rng.standard_normal(b) for b in sizes[1:]],
    }

    def row(numbers):
        return ",".join(repr(float(v)) for v in numbers) + ","

    lines = [
        "// Neural Network File Format by Kyle Julian, Stanford 2016",
        "// a test network",
        f"{len(sizes) - 1},{n_in},{sizes[-1]},{max(sizes)},",
        ",".join(str(s) for s in sizes) + ",",
        "0,",
        row(values["mins"]),
        row(values["maxes"]),
        row(values["means"]),
        row(values["ranges"]),
    ]
    for weight, bias in zip(values["weights"], values["biases"], strict=True):
        lines += [row(r) for r in weight]
        lines += [row([b]) for b in bias]
    return lines, values


def write(tmp_path, lines, name="net.nnet"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def reference(values, x):
    z = x
    for k, (w, b) in enumerate(zip(values["weights"], values["biases"], strict=True)):
        z = z @ w.T + b
        if k < len(values["weights"]) - 1:
            z = np.maximum(z, 0)
    return z


def test_round_trip_is_exact(tmp_path):
    lines, values = nnet_lines()
    parsed = parse_nnet(write(tmp_path, lines))
    assert parsed.layer_sizes == (3, 4, 5, 2)
    for key in ("mins", "maxes", "means", "ranges"):
        assert np.array_equal(getattr(parsed, key).numpy(), values[key])
    for got, want in zip(parsed.weights, values["weights"], strict=True):
        assert np.array_equal(got.numpy(), want)
    for got, want in zip(parsed.biases, values["biases"], strict=True):
        assert np.array_equal(got.numpy(), want)


def test_normalisation_is_folded_into_the_first_and_last_layers(tmp_path):
    lines, values = nnet_lines()
    path = write(tmp_path, lines)
    rng = np.random.default_rng(1)
    raw = rng.uniform(values["mins"], values["maxes"], (200, 3))  # inside [min, max]
    normalised = (raw - values["means"][:-1]) / values["ranges"][:-1]
    bare = reference(values, normalised)
    physical = bare * values["ranges"][-1] + values["means"][-1]

    plain = read_nnet(path, normalize=False)
    folded = read_nnet(path)
    assert [type(layer) for layer in folded.layers] == [Dense, ReLU, Dense, ReLU, Dense]
    assert folded.input_shape == (3,) and folded.dtype == torch.float64
    np.testing.assert_allclose(plain(torch.from_numpy(normalised)).numpy(), bare, rtol=1e-12)
    np.testing.assert_allclose(folded(torch.from_numpy(raw)).numpy(), physical, rtol=1e-10)
    nnet = parse_nnet(path)
    torch.testing.assert_close(
        nnet.normalize_inputs(torch.from_numpy(raw)), torch.from_numpy(normalised)
    )
    assert read_nnet(path, dtype=torch.float32).dtype == torch.float32


# the file written by nnet_lines((3, 4, 5, 2)): 1-2 comments, 3 header, 4 sizes, 5 flag,
# 6 mins, 7 maxes, 8 means, 9 ranges, 10-13 weights of layer 1, 14-17 its biases, ..., 31 lines
def _set(index, text):
    def change(lines):
        lines[index - 1] = text
        return lines

    return change


MALFORMED = [
    ("header not a number", _set(3, "3,3,x,5,"), 3, "not an integer"),
    ("header float", _set(3, "3,3.5,2,5,"), 3, "not an integer"),
    ("negative size", _set(3, "3,-3,2,5,"), 3, "positive"),
    ("zero layers", _set(3, "0,3,2,5,"), 3, "positive"),
    ("too few sizes", _set(4, "3,4,5,"), 4, "expected 4 value"),
    ("sizes disagree", _set(4, "2,4,5,2,"), 4, "header says"),
    ("huge sizes", _set(4, "3,4000000000,5000000000,2,"), 4, "more than the file holds"),
    ("too few mins", _set(6, "0.1,0.2,"), 6, "expected 3 value"),
    ("max below min", _set(7, "-5,-5,-5,"), 7, "below its minimum"),
    ("too many means", _set(8, "1,2,3,4,5,"), 8, "expected 4 value"),
    ("zero range", _set(9, "1,0,1,1,"), 9, "range is zero"),
    ("short weight row", _set(11, "1,2,"), 11, "expected 3 value"),
    ("word in weights", _set(12, "1,abc,3,"), 12, "not a number"),
    ("nan in weights", _set(12, "1,nan,3,"), 12, "not a number"),
    ("inf by overflow", _set(12, "1,1e999,3,"), 12, "finite"),
    ("empty item", _set(13, "1,,3,"), 13, "not a number"),
    ("two biases on a line", _set(15, "1,2,"), 15, "expected 1 value"),
    ("truncated", lambda lines: lines[:20], 21, "ends early"),
    ("extra data", lambda lines: [*lines, "1,2,3,"], 32, "after the last layer"),
    ("blank file", lambda lines: [], 2, "ends early"),  # one empty line
]


@pytest.mark.parametrize(
    ("change", "line", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_file_names_the_line(tmp_path, change, line, message):
    lines, _ = nnet_lines()
    assert len(lines) == 31
    path = write(tmp_path, change(lines))
    with pytest.raises(FormatError, match=message) as info:
        parse_nnet(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:")


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "bin.nnet"
    path.write_bytes(b"// ok\n1,1,1,1,\n\xff\xfe\n")
    with pytest.raises(FormatError) as info:
        parse_nnet(path)
    assert info.value.line == 3
    with pytest.raises(UserError, match="cannot read"):
        parse_nnet(tmp_path / "absent.nnet")


def acasxu_pairs(data_root):
    nnets = sorted((data_root / "acasxu" / "nnet").glob("*.nnet"))
    if len(nnets) != 45:
        pytest.skip(f"ACAS Xu NNet files not found under {data_root / 'acasxu' / 'nnet'}")
    return [(path, data_root / "acasxu" / "onnx" / f"{path.stem}.onnx") for path in nnets]


def test_acasxu_onnx_equals_nnet_without_normalisation(data_root):
    """The VNN-COMP ONNX files take normalised inputs and give the *raw* outputs: they are
    ``normalize=False``; the de-normalised outputs differ by ~100 (output range 373.9)."""
    worst = 0.0
    for nnet_path, onnx_path in acasxu_pairs(data_root):
        nnet = parse_nnet(nnet_path)
        assert nnet.layer_sizes == (5, *[50] * 6, 5)
        onnx_net = read_onnx(onnx_path)
        gen = torch.Generator().manual_seed(0)
        raw = torch.rand(300, 5, generator=gen, dtype=torch.float64)
        raw = nnet.mins + raw * (nnet.maxes - nnet.mins)
        x = nnet.normalize_inputs(raw)
        expected = onnx_net(x)
        worst = max(worst, float((nnet.network(normalize=False)(x) - expected).abs().max()))
        physical = nnet.network(normalize=True)(raw)
        torch.testing.assert_close(
            physical, nnet.denormalize_outputs(expected), rtol=1e-5, atol=1e-3
        )
        assert float((physical - expected).abs().max()) > 1.0
    assert worst < 1e-5  # float32 rounding of the ONNX weights (measured: 3.1e-7)


def test_acasxu_nnet_structure(data_root):
    nnet_path, _ = acasxu_pairs(data_root)[0]
    net = read_nnet(nnet_path)
    assert [type(layer) for layer in net.layers] == [Dense, ReLU] * 6 + [Dense]
    assert net.input_shape == (5,)
    nnet = parse_nnet(nnet_path)
    assert nnet.mins.tolist() == [0.0, -3.141593, -3.141593, 100.0, 0.0]
    assert nnet.ranges[-1].item() == 373.94992


def _mutations():
    line = st.integers(0, 60)
    return st.lists(
        st.one_of(
            st.tuples(st.just("delete"), line),
            st.tuples(st.just("duplicate"), line),
            st.tuples(st.just("replace"), line, st.text(",.-+e0123456789 x", max_size=12)),
            st.tuples(
                st.just("token"),
                line,
                st.integers(0, 6),
                st.sampled_from(["", "-", "1e9", "x", ",", "3"]),
            ),
        ),
        min_size=1,
        max_size=3,
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutations=_mutations(), data=st.binary(max_size=200))
def test_fuzzed_files_raise_only_user_errors(tmp_path, mutations, data):
    lines, _ = nnet_lines()
    for mutation in mutations:
        index = mutation[1] % len(lines) if lines else 0
        if not lines:
            break
        if mutation[0] == "delete":
            del lines[index]
        elif mutation[0] == "duplicate":
            lines.insert(index, lines[index])
        elif mutation[0] == "replace":
            lines[index] = mutation[2]
        else:
            items = lines[index].split(",")
            items[mutation[2] % len(items)] = mutation[3]
            lines[index] = ",".join(items)
    for path in (write(tmp_path, lines, "mutated.nnet"), tmp_path / "bytes.nnet"):
        if path.name == "bytes.nnet":
            path.write_bytes(data)
        with contextlib.suppress(UserError):
            read_nnet(path)
