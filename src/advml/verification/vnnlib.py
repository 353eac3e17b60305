"""Read VNN-LIB specifications and read/write VNN-COMP counterexamples.

Format: VNN-LIB (https://www.vnnlib.org), the SMT-LIB 2 subset used by VNN-COMP
(https://github.com/stanleybak/vnncomp2021 and later editions). Supported:

* ``;`` comments; ``(declare-const X_i Real)`` for inputs, ``(declare-const Y_j Real)`` for
  outputs (indices ``0 … n-1``, each declared once, before use);
* ``(assert F)``, where ``F`` is built from ``and``, ``or`` and comparisons ``<=``, ``>=``,
  ``<``, ``>``, ``=`` between two operands. The strict ``<``/``>`` are read as ``<=``/``>=``:
  the sets differ only on their boundary, which has measure zero and which no floating
  point verifier can tell apart;
* operands: a variable, a number (``0.5``, ``-0.5``, ``1e-3``) or ``(- operand)``.

A constraint on inputs must be a bound on one ``X_i``; a constraint on outputs may compare
two outputs (``(<= Y_1 Y_0)``) or an output and a number; one comparison cannot mix
``X`` and ``Y``. Ignored commands: ``check-sat``, ``get-model``, ``set-logic``,
``set-info``, ``set-option``, ``exit``.

Semantics: the conjunction of all assertions is put in disjunctive normal form (at most
``max_terms`` terms). In each term the input bounds form a box, which must bound every
``X_i`` and be non-empty, and the output constraints a conjunction ``C y ≤ d``. Terms are
grouped by box: the result is one :class:`~.spec.Property` per distinct box, whose unsafe
region is the disjunction of that box's output conjunctions.

Counterexamples use VNN-COMP's format (no ``sat`` line; :func:`read_counterexample` also
accepts a leading ``sat``, as VNN-COMP 2022+ result files have)::

    (
    (X_0 0.6)
    (Y_0 -0.0234)
    )
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from advml.errors import FormatError, UserError
from advml.runs import atomic_write_bytes
from advml.verification.result import VerificationResult
from advml.verification.spec import Conjunction, Property

#: Most DNF terms a specification may expand to.
MAX_TERMS = 10_000
#: Deepest nesting of parentheses accepted.
MAX_DEPTH = 100

_TOKEN = re.compile(r"\s+|;[^\n]*|\(|\)|[^\s();]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_VARIABLE = re.compile(r"([XY])_(\d+)")
_IGNORED = {"check-sat", "get-model", "set-logic", "set-info", "set-option", "exit"}
_COMPARISONS = {"<=", ">=", "<", ">", "="}


@dataclass(frozen=True)
class _Symbol:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple[_Symbol | _List, ...]
    line: int


_Expr = _Symbol | _List


def _read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as error:
        raise UserError(f"{name}: cannot read ({error.strerror or error})") from None
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FormatError(name, "not a text file (invalid UTF-8)", line) from None


def _parse(text: str, path: str) -> list[_Expr]:
    """The s-expressions of ``text``, each carrying the line it starts on."""
    stack: list[list[_Expr]] = [[]]
    starts: list[int] = []
    line = 1
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == "(":
            if len(starts) >= MAX_DEPTH:
                raise FormatError(path, f"parentheses nested deeper than {MAX_DEPTH}", line)
            stack.append([])
            starts.append(line)
        elif token == ")":
            if not starts:
                raise FormatError(path, "unbalanced ')'", line)
            items = stack.pop()
            stack[-1].append(_List(tuple(items), starts.pop()))
        elif token[0].isspace():
            line += token.count("\n")
        elif token[0] != ";":
            stack[-1].append(_Symbol(token, line))
    if starts:
        raise FormatError(path, "unbalanced '(': never closed", starts[-1])
    return stack[0]


def _number(symbol: _Symbol, path: str) -> float | None:
    if not _NUMBER.fullmatch(symbol.text):
        return None
    value = float(symbol.text)
    if not math.isfinite(value):
        raise FormatError(path, f"number {symbol.text[:30]} is out of range", symbol.line)
    return value


def _head(expr: _Expr) -> str:
    if isinstance(expr, _List) and expr.items and isinstance(expr.items[0], _Symbol):
        return expr.items[0].text
    return ""


@dataclass(frozen=True)
class _Bound:
    """``X_index <= value`` (``upper``) or ``X_index >= value``."""

    index: int
    upper: bool
    value: float
    line: int


@dataclass(frozen=True)
class _Row:
    """``Σ coefficients[j] · Y_j <= bound``."""

    coefficients: tuple[tuple[int, float], ...]
    bound: float
    line: int


_Term = tuple[_Bound | _Row, ...]


class _Spec:
    def __init__(self, path: str, max_terms: int) -> None:
        self.path = path
        self.max_terms = max_terms
        self.declared: dict[str, dict[int, int]] = {"X": {}, "Y": {}}  # index -> line

    def fail(self, message: str, line: int | None) -> FormatError:
        return FormatError(self.path, message, line)

    def command(self, expr: _Expr) -> list[_Term] | None:
        """The DNF of an ``assert`` (``None`` for other commands)."""
        head = _head(expr)
        if not isinstance(expr, _List) or not head:
            raise self.fail("expected a command such as (assert ...)", expr.line)
        if head == "declare-const":
            self.declare(expr)
            return None
        if head == "assert":
            if len(expr.items) != 2:
                raise self.fail("assert takes one formula", expr.line)
            return self.dnf(expr.items[1])
        if head in _IGNORED:
            return None
        raise self.fail(f"unknown command {head[:40]!r}", expr.line)

    def declare(self, expr: _List) -> None:
        items = expr.items
        if len(items) != 3 or not all(isinstance(item, _Symbol) for item in items):
            raise self.fail("expected (declare-const NAME Real)", expr.line)
        name, sort = items[1].text, items[2].text  # type: ignore[union-attr]
        match = _VARIABLE.fullmatch(name)
        if match is None:
            raise self.fail(f"variable {name[:40]!r} is neither X_i nor Y_j", expr.line)
        if sort != "Real":
            raise self.fail(f"variable {name} has sort {sort[:40]!r}, expected Real", expr.line)
        kind, index = match.group(1), int(match.group(2))
        if index in self.declared[kind]:
            previous = self.declared[kind][index]
            raise self.fail(f"{name} is declared twice (first on line {previous})", expr.line)
        self.declared[kind][index] = expr.line

    def dnf(self, expr: _Expr) -> list[_Term]:
        head = _head(expr)
        if isinstance(expr, _Symbol) or not head:
            raise self.fail("expected a formula: (and ...), (or ...) or a comparison", expr.line)
        args = expr.items[1:]
        if head == "and":
            terms: list[_Term] = [()]
            for arg in args:
                terms = self.product(terms, self.dnf(arg), expr.line)
            return terms
        if head == "or":
            terms = []
            for arg in args:
                terms += self.dnf(arg)
                if len(terms) > self.max_terms:
                    raise self.too_many(expr.line)
            return terms
        if head in _COMPARISONS:
            return self.comparison(head, args, expr.line)
        raise self.fail(f"unknown operator {head[:40]!r}", expr.line)

    def product(self, left: list[_Term], right: list[_Term], line: int) -> list[_Term]:
        if len(left) * len(right) > self.max_terms:
            raise self.too_many(line)
        return [a + b for a in left for b in right]

    def too_many(self, line: int) -> FormatError:
        return self.fail(
            f"the specification expands to more than {self.max_terms} terms in disjunctive "
            "normal form; split it into several files",
            line,
        )

    def comparison(self, op: str, args: tuple[_Expr, ...], line: int) -> list[_Term]:
        if len(args) != 2:
            raise self.fail(f"{op} takes two operands, got {len(args)}", line)
        left, right = (self.operand(arg) for arg in args)
        if op == "=":
            return self.product(
                self.less_equal(left, right, line), self.less_equal(right, left, line), line
            )
        if op in ("<=", "<"):
            return self.less_equal(left, right, line)
        return self.less_equal(right, left, line)

    def operand(self, expr: _Expr) -> tuple[dict[tuple[str, int], float], float]:
        """A linear form ``({(kind, index): coefficient}, constant)``."""
        if isinstance(expr, _List):
            if _head(expr) == "-" and len(expr.items) == 2:
                coefficients, constant = self.operand(expr.items[1])
                return {key: -value for key, value in coefficients.items()}, -constant
            raise self.fail("an operand must be a variable, a number or (- operand)", expr.line)
        value = _number(expr, self.path)
        if value is not None:
            return {}, value
        match = _VARIABLE.fullmatch(expr.text)
        if match is None:
            raise self.fail(f"unknown symbol {expr.text[:40]!r}", expr.line)
        kind, index = match.group(1), int(match.group(2))
        if index not in self.declared[kind]:
            raise self.fail(f"undeclared variable {expr.text}", expr.line)
        return {(kind, index): 1.0}, 0.0

    def less_equal(self, left, right, line: int) -> list[_Term]:
        """The DNF of ``left <= right`` for two linear forms."""
        coefficients = dict(left[0])
        for key, value in right[0].items():
            coefficients[key] = coefficients.get(key, 0.0) - value
        coefficients = {key: value for key, value in coefficients.items() if value != 0.0}
        bound = right[1] - left[1]
        kinds = {kind for kind, _ in coefficients}
        if not kinds:
            return [()] if bound >= 0 else []
        if kinds == {"X", "Y"}:
            raise self.fail("a comparison mixes inputs X_i and outputs Y_j", line)
        if "X" in kinds:
            if len(coefficients) != 1:
                raise self.fail("an input constraint must bound one X_i by a number", line)
            (((_, index), scale),) = coefficients.items()
            return [(_Bound(index, scale > 0, bound / scale, line),)]
        row = tuple(sorted((index, value) for (_, index), value in coefficients.items()))
        return [(_Row(row, bound, line),)]

    def properties(
        self, terms: list[_Term], n_inputs: int | None, n_outputs: int | None
    ) -> list[Property]:
        n_in = self.count("X", n_inputs, "inputs")
        n_out = self.count("Y", n_outputs, "outputs")
        if not terms:
            raise self.fail("the assertions contradict each other: there is no unsafe region", None)
        boxes: dict[tuple[tuple[float, ...], tuple[float, ...]], dict[tuple, Conjunction]] = {}
        for term in terms:
            lower, upper = self.box(term, n_in)
            rows = [atom for atom in term if isinstance(atom, _Row)]
            C = torch.zeros(len(rows), n_out, dtype=torch.float64)
            for r, row in enumerate(rows):
                for index, value in row.coefficients:
                    C[r, index] = value
            d = torch.tensor([row.bound for row in rows], dtype=torch.float64)
            key = (tuple(C.flatten().tolist()), tuple(d.tolist()))
            boxes.setdefault((lower, upper), {}).setdefault(key, Conjunction(C, d))
        return [
            Property(
                torch.tensor(lower, dtype=torch.float64),
                torch.tensor(upper, dtype=torch.float64),
                tuple(conjunctions.values()),
            )
            for (lower, upper), conjunctions in boxes.items()
        ]

    def count(self, kind: str, expected: int | None, words: str) -> int:
        indices = self.declared[kind]
        n = len(indices)
        if n == 0:
            raise self.fail(f"no {words} {kind}_i are declared", None)
        missing = sorted(set(range(n)) - set(indices))
        if missing:
            extra = max(indices)
            raise self.fail(
                f"{kind}_{extra} is declared but {kind}_{missing[0]} is not", indices[extra]
            )
        if expected is not None and expected != n:
            raise self.fail(f"declares {n} {words} {kind}_i, the network has {expected}", None)
        return n

    def box(self, term: _Term, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        lower: list[float] = [-math.inf] * n
        upper: list[float] = [math.inf] * n
        lines: list[list[int]] = [[0, 0] for _ in range(n)]
        for atom in term:
            if not isinstance(atom, _Bound):
                continue
            if atom.upper and atom.value < upper[atom.index]:
                upper[atom.index], lines[atom.index][1] = atom.value, atom.line
            elif not atom.upper and atom.value > lower[atom.index]:
                lower[atom.index], lines[atom.index][0] = atom.value, atom.line
        for i in range(n):
            for side, value in (("lower", lower[i]), ("upper", upper[i])):
                if math.isinf(value):
                    raise self.fail(f"input X_{i} has no {side} bound", self.declared["X"][i])
            if lower[i] > upper[i]:
                raise self.fail(
                    f"empty input box: X_{i} >= {lower[i]!r} (line {lines[i][0]}) and "
                    f"X_{i} <= {upper[i]!r} (line {lines[i][1]})",
                    max(lines[i]),
                )
        return tuple(lower), tuple(upper)


def read_vnnlib(
    path: str | os.PathLike[str],
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    *,
    max_terms: int = MAX_TERMS,
) -> list[Property]:
    """The properties of a VNN-LIB file: one per distinct input box (see the module docstring).

    ``n_inputs``/``n_outputs``, when given, must match the declared ``X_i``/``Y_j``.
    """
    name, text = _read_text(path)
    spec = _Spec(name, max_terms)
    terms: list[_Term] = [()]
    for expr in _parse(text, name):
        dnf = spec.command(expr)
        if dnf is not None:
            terms = spec.product(terms, dnf, expr.line)
    return spec.properties(terms, n_inputs, n_outputs)


def _values(tensor: torch.Tensor | Sequence[float], what: str) -> list[float]:
    values = [float(v) for v in torch.as_tensor(tensor).reshape(-1).tolist()]
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"counterexample: {what} holds a value that is not finite")
    return values


def format_counterexample(
    x: torch.Tensor | Sequence[float], y: torch.Tensor | Sequence[float]
) -> str:
    """``x`` and ``y`` (any shape; flattened) in VNN-COMP's counterexample format."""
    lines = ["("]
    lines += [f"(X_{i} {v!r})" for i, v in enumerate(_values(x, "x"))]
    lines += [f"(Y_{j} {v!r})" for j, v in enumerate(_values(y, "y"))]
    lines.append(")")
    return "\n".join(lines) + "\n"


def write_counterexample(
    path: str | os.PathLike[str],
    x: torch.Tensor | Sequence[float],
    y: torch.Tensor | Sequence[float],
) -> None:
    """Write ``x`` and ``y`` (any shape; flattened) in VNN-COMP's counterexample format."""
    atomic_write_bytes(path, format_counterexample(x, y).encode())


def write_result(path: str | os.PathLike[str], result: VerificationResult) -> None:
    """VNN-COMP's result file: ``unsat``, ``timeout``, ``unknown``, or ``sat`` followed by the
    counterexample (the format of VNN-COMP 2022 onwards; :func:`read_counterexample` reads it).
    """
    text = result.vnncomp + "\n"
    if result.counterexample is not None:
        text += format_counterexample(*result.counterexample)
    atomic_write_bytes(path, text.encode())


def read_counterexample(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as float64 vectors from a counterexample file (an optional ``sat`` first)."""
    name, text = _read_text(path)
    exprs = _parse(text, name)
    if exprs and isinstance(exprs[0], _Symbol) and exprs[0].text.lower() == "sat":
        exprs = exprs[1:]
    if len(exprs) != 1 or not isinstance(exprs[0], _List):
        line = exprs[1].line if len(exprs) > 1 else (exprs[0].line if exprs else None)
        raise FormatError(name, "expected one parenthesised list of (X_i value) pairs", line)
    found: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for item in exprs[0].items:
        pair = item.items if isinstance(item, _List) else ()
        match = _VARIABLE.fullmatch(pair[0].text) if pair and isinstance(pair[0], _Symbol) else None
        value = _number(pair[1], name) if len(pair) == 2 and isinstance(pair[1], _Symbol) else None
        if match is None or value is None:
            raise FormatError(name, "expected (X_i value) or (Y_j value)", item.line)
        kind, index = match.group(1), int(match.group(2))
        if index in found[kind]:
            raise FormatError(name, f"{kind}_{index} appears twice", item.line)
        found[kind][index] = value
    vectors = []
    for kind in ("X", "Y"):
        values = found[kind]
        if not values or sorted(values) != list(range(len(values))):
            raise FormatError(name, f"the {kind}_i are not numbered 0 to {len(values) - 1}", None)
        vectors.append(torch.tensor([values[i] for i in range(len(values))], dtype=torch.float64))
    return vectors[0], vectors[1]
