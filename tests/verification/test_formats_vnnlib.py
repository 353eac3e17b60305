"""VNN-LIB reader (ACAS Xu properties, each construct, errors with path:line, fuzzing) and
the VNN-COMP counterexample format."""

import contextlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advml.errors import FormatError, UserError
from advml.verification.vnnlib import read_counterexample, read_vnnlib, write_counterexample

DECLARE = "\n".join(
    [
        *(f"(declare-const X_{i} Real)" for i in range(2)),
        *(f"(declare-const Y_{j} Real)" for j in range(3)),
    ]
)
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))"


def spec(tmp_path, body: str, name: str = "spec.vnnlib", declare: str = DECLARE):
    path = tmp_path / name
    path.write_text(f"; a test\n{declare}\n{body}\n")
    return path


def acasxu_prop(data_root, n):
    path = data_root / "acasxu" / "vnnlib" / f"prop_{n}.vnnlib"
    if not path.is_file():
        pytest.skip(f"ACAS Xu property {path} not found")
    return read_vnnlib(path, n_inputs=5, n_outputs=5)


def test_all_acasxu_properties_parse(data_root):
    counts = {n: [len(p.unsafe) for p in acasxu_prop(data_root, n)] for n in range(1, 11)}
    assert counts == {
        1: [1],
        2: [1],
        3: [1],
        4: [1],
        5: [4],
        6: [4, 4],
        7: [2],
        8: [3],
        9: [4],
        10: [4],
    }

    (prop1,) = acasxu_prop(data_root, 1)
    assert prop1.lower.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    assert prop1.upper.tolist() == [0.679857769, 0.5, 0.5, 0.5, -0.45]
    (unsafe,) = prop1.unsafe  # Y_0 >= 3.991125645861615
    assert unsafe.C.tolist() == [[-1.0, 0.0, 0.0, 0.0, 0.0]]
    assert unsafe.d.tolist() == [-3.991125645861615]

    (prop2,) = acasxu_prop(data_root, 2)
    (unsafe,) = prop2.unsafe  # Y_0 maximal: Y_j <= Y_0 for j = 1..4
    assert unsafe.C.tolist() == [
        [-1.0, 1, 0, 0, 0],
        [-1, 0, 1, 0, 0],
        [-1, 0, 0, 1, 0],
        [-1, 0, 0, 0, 1],
    ]
    assert unsafe.d.tolist() == [0.0] * 4
    y = torch.tensor([[5.0, 1, 2, 3, 4], [1.0, 5, 2, 3, 4]], dtype=torch.float64)
    x = prop2.lower[None].expand(2, 5)
    assert prop2.violated_by(x, y).tolist() == [True, False]

    first, second = acasxu_prop(data_root, 6)
    assert first.lower.tolist() == [-0.129289109, 0.11140846, -0.499999896, -0.5, -0.5]
    assert second.upper.tolist() == [0.700434925, -0.11140846, -0.499204121, 0.5, 0.5]
    assert [c.C.tolist() for c in first.unsafe] == [c.C.tolist() for c in second.unsafe]


def test_constructs(tmp_path):
    body = f"""{BOX}
; comment (with parentheses
(assert (or (and (< Y_0 Y_1) (> Y_2 -0.5)) (>= 1e-1 Y_2) (<= Y_1 (- 0.25))))
(assert (<= (- Y_0) 3)) (check-sat)
"""
    (prop,) = read_vnnlib(spec(tmp_path, body), n_inputs=2, n_outputs=3)
    assert prop.lower.tolist() == [-1.0, 0.0] and prop.upper.tolist() == [1.0, 0.5]
    rows = [(c.C.tolist(), c.d.tolist()) for c in prop.unsafe]
    assert rows == [
        ([[1, -1, 0], [0, 0, -1], [-1, 0, 0]], [0.0, 0.5, 3.0]),
        ([[0, 0, 1], [-1, 0, 0]], [0.1, 3.0]),
        ([[0, 1, 0], [-1, 0, 0]], [-0.25, 3.0]),
    ]


def test_constant_on_the_left_equality_and_or_over_inputs(tmp_path):
    body = """(assert (or (and (<= -1 X_0) (>= 0 X_0)) (and (<= X_0 2) (>= X_0 1))))
(assert (= X_1 0.5))
(assert (or (and (<= Y_0 0)) (and (<= Y_0 0)) (and (= Y_1 Y_2))))"""
    first, second = read_vnnlib(spec(tmp_path, body))
    assert (first.lower.tolist(), first.upper.tolist()) == ([-1.0, 0.5], [0.0, 0.5])
    assert (second.lower.tolist(), second.upper.tolist()) == ([1.0, 0.5], [2.0, 0.5])
    for prop in (first, second):  # the repeated (<= Y_0 0) appears once
        assert [c.C.tolist() for c in prop.unsafe] == [[[1, 0, 0]], [[0, 1, -1], [0, -1, 1]]]


def test_same_box_twice_is_one_property(tmp_path):
    bounds = "(<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0)"
    body = f"(assert (or (and {bounds} (<= Y_0 0)) (and {bounds} (<= Y_1 0))))"
    (prop,) = read_vnnlib(spec(tmp_path, body))
    assert len(prop.unsafe) == 2


ERRORS = [
    ("unclosed", f"{BOX}\n(assert (<= Y_0 0)", 11, "never closed"),
    ("extra close", f"{BOX}\n(assert (<= Y_0 0)))", 11, r"unbalanced '\)'"),
    ("unknown operator", f"{BOX}\n(assert (not (<= Y_0 0)))", 11, "unknown operator 'not'"),
    ("unknown command", f"{BOX}\n(define-fun f () Real 0)", 11, "unknown command"),
    ("undeclared", f"{BOX}\n(assert (<= Y_7 0))", 11, "undeclared variable Y_7"),
    ("unknown symbol", f"{BOX}\n(assert (<= Y_0 zero))", 11, "unknown symbol 'zero'"),
    ("declared twice", "(declare-const Y_1 Real)", 7, "declared twice"),
    ("bad name", "(declare-const Z_0 Real)", 7, "neither X_i nor Y_j"),
    ("bad sort", "(declare-const X_9 Int)", 7, "expected Real"),
    ("gap in X", "(declare-const X_3 Real)\n" + BOX, 7, "X_3 is declared but X_2 is not"),
    ("X against X", f"{BOX}\n(assert (<= X_0 X_1))", 11, "bound one X_i"),
    ("X against Y", f"{BOX}\n(assert (<= X_0 Y_1))", 11, "mixes inputs"),
    (
        "missing bound",
        "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (<= X_1 1))",
        3,
        "X_1 has no lower",
    ),
    ("empty box", f"{BOX}\n(assert (>= X_1 2))\n(assert (<= Y_0 0))", 11, "empty input box"),
    ("three operands", f"{BOX}\n(assert (<= Y_0 Y_1 Y_2))", 11, "two operands"),
    ("bad operand", f"{BOX}\n(assert (<= (+ Y_0 Y_1) 0))", 11, "operand must be"),
    ("huge number", f"{BOX}\n(assert (<= Y_0 1e999))", 11, "out of range"),
    ("symbol formula", f"{BOX}\n(assert Y_0)", 11, "expected a formula"),
    ("contradiction", f"{BOX}\n(assert (<= 1 0))", None, "contradict"),
    ("deep nesting", f"{BOX}\n(assert {'(and ' * 150}{')' * 150})", 11, "nested deeper"),
    (
        "dnf blow-up",
        BOX + "\n(assert (or (<= Y_0 0) (<= Y_1 0)))" * 14,
        24,
        "disjunctive normal form",
    ),
]


@pytest.mark.parametrize(
    ("body", "line", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_path_and_line(tmp_path, body, line, message):
    path = spec(tmp_path, body)
    with pytest.raises(FormatError, match=message) as info:
        read_vnnlib(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:" if line else f"{path}:")


def test_sizes_must_match_the_network(tmp_path):
    path = spec(tmp_path, f"{BOX}\n(assert (<= Y_0 0))")
    assert len(read_vnnlib(path, 2, 3)) == 1
    with pytest.raises(FormatError, match="declares 2 inputs X_i, the network has 5"):
        read_vnnlib(path, n_inputs=5)
    with pytest.raises(FormatError, match="declares 3 outputs"):
        read_vnnlib(path, n_outputs=10)
    with pytest.raises(UserError, match="cannot read"):
        read_vnnlib(tmp_path / "absent.vnnlib")


VALID = f"{DECLARE}\n{BOX}\n(assert (or (and (<= Y_1 Y_0) (<= Y_2 Y_0)) (and (>= Y_0 -0.5))))\n"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "duplicate", "replace"]),
            st.booleans(),  # True: a whole line, False: one token
            st.integers(0, 500),
            st.sampled_from(["(", ")", "X_0", "Y_9", "-", "1e5", "and", "or", "<=", "assert", ""]),
        ),
        min_size=1,
        max_size=4,
    ),
    data=st.binary(max_size=200),
)
def test_fuzzed_files_raise_only_user_errors(tmp_path, edits, data):
    text = VALID
    for action, whole_line, where, replacement in edits:
        pieces = (
            text.split("\n")
            if whole_line
            else text.replace("(", " ( ").replace(")", " ) ").split(" ")
        )
        i = where % len(pieces)
        if action == "delete":
            del pieces[i]
        elif action == "duplicate":
            pieces.insert(i, pieces[i])
        else:
            pieces[i] = replacement
        text = ("\n" if whole_line else " ").join(pieces)
    mutated = tmp_path / "mutated.vnnlib"
    mutated.write_text(text)
    raw = tmp_path / "raw.vnnlib"
    raw.write_bytes(data)
    for path in (mutated, raw):
        with contextlib.suppress(UserError):
            read_vnnlib(path)
        with contextlib.suppress(UserError):
            read_counterexample(path)


def test_counterexample_round_trip(tmp_path):
    x = torch.tensor([[0.1, -0.5], [1e-300, 123456789.125]], dtype=torch.float64)
    y = torch.tensor([1 / 3, -2.5e-7, 0.0], dtype=torch.float32)
    path = tmp_path / "cex" / "out.txt"
    write_counterexample(path, x, y)
    lines = path.read_text().splitlines()
    assert lines[0] == "(" and lines[-1] == ")" and "sat" not in path.read_text()
    assert (
        lines[1] == "(X_0 0.1)"
        and lines[2] == "(X_1 -0.5)"
        and lines[5].startswith("(Y_0 0.333333")
    )
    got_x, got_y = read_counterexample(path)
    assert torch.equal(got_x, x.reshape(-1)) and got_x.dtype == torch.float64
    assert torch.equal(got_y, y.double())

    with_sat = tmp_path / "sat.txt"
    with_sat.write_text("sat\n((X_0 1.5)\n (Y_0 -2))\n")
    assert [t.tolist() for t in read_counterexample(with_sat)] == [[1.5], [-2.0]]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("(\n(X_0 1)\n(X_0 2)\n(Y_0 1)\n)", 3),
        ("(\n(X_0 1)\n(Y_0 one)\n)", 3),
        ("(\n(X_1 1)\n(Y_0 1)\n)", None),
        ("(\n(X_0 1)\n(Y_0 1)\n)\n(X_1 2)", 5),
    ],
)
def test_bad_counterexample_files(tmp_path, text, line):
    path = tmp_path / "cex.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read_counterexample(path)
    assert info.value.line == line
    with pytest.raises(UserError, match="not finite"):
        write_counterexample(tmp_path / "nan.txt", [math.nan], [0.0])
