"""Property tests: random expression programs over the table's operations.

A program is a random DAG: 1-4 inputs, then up to 10 steps, each applying
one operation (the way a user writes it) to earlier nodes or constants.
Operands that need a domain are wrapped first (``u*u + 0.5`` before log or
sqrt, ``0.9*tanh(u)`` before arcsin, ``tanh(u)`` before exp), so every
program is finite and smooth wherever the smooth operations alone are used.

Whole tapes are then checked: Jacobians forward == reverse (to ~1e-12),
against central differences of the same program on plain NumPy, values
against NumPy, and a batch against the points one at a time.
"""
import operator
from dataclasses import dataclass

import numpy as np
from hypothesis import given, strategies as st

import wengert as wg
from wengert.testing import check_grads

from _helpers import assert_rel, central_jacobian


def positive(u):
    return u * u + 0.5


def unit(u):
    return 0.9 * np.tanh(u)


def bounded(u):
    return np.tanh(u)


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    call: object          # f(*operands), on traced values or NumPy
    smooth: bool = True


OPS = [
    Op("neg", 1, operator.neg), Op("square", 1, np.square), Op("x**2", 1, lambda u: u ** 2),
    Op("sqrt", 1, lambda u: np.sqrt(positive(u))), Op("cbrt", 1, lambda u: np.cbrt(positive(u))),
    Op("reciprocal", 1, lambda u: 1.0 / positive(u)), Op("x**-1", 1, lambda u: positive(u) ** -1),
    Op("exp", 1, lambda u: np.exp(bounded(u))), Op("expm1", 1, lambda u: np.expm1(bounded(u))),
    Op("log", 1, lambda u: np.log(positive(u))), Op("log1p", 1, lambda u: np.log1p(positive(u))),
    Op("log2", 1, lambda u: wg.log2(positive(u))), Op("log10", 1, lambda u: np.log10(positive(u))),
    Op("sin", 1, np.sin), Op("cos", 1, wg.cos), Op("tan", 1, lambda u: np.tan(unit(u))),
    Op("arcsin", 1, lambda u: np.arcsin(unit(u))), Op("arccos", 1, lambda u: wg.arccos(unit(u))),
    Op("arctan", 1, np.arctan), Op("sinh", 1, lambda u: np.sinh(bounded(u))),
    Op("cosh", 1, lambda u: np.cosh(bounded(u))), Op("tanh", 1, np.tanh),
    Op("arcsinh", 1, np.arcsinh), Op("arccosh", 1, lambda u: np.arccosh(positive(u) + 1.0)),
    Op("arctanh", 1, lambda u: np.arctanh(unit(u))), Op("sigmoid", 1, wg.sigmoid),
    Op("erf", 1, wg.erf), Op("x**3", 1, lambda u: u ** 3),
    Op("add", 2, operator.add), Op("sub", 2, operator.sub), Op("mul", 2, operator.mul),
    Op("div", 2, lambda a, b: a / positive(b)),
    Op("pow", 2, lambda a, b: positive(a) ** bounded(b)),
    Op("np.power", 2, lambda a, b: np.power(positive(a), 2.0 * bounded(b))),
    Op("arctan2", 2, lambda a, b: np.arctan2(a, positive(b))),
    Op("hypot", 2, lambda a, b: np.hypot(a, positive(b))),
    Op("logaddexp", 2, np.logaddexp),
    # Kinks and selects: derivatives by convention at ties, jumps at switches.
    Op("abs", 1, np.abs, smooth=False), Op("sign", 1, np.sign, smooth=False),
    Op("minimum", 2, np.minimum, smooth=False), Op("maximum", 2, wg.maximum, smooth=False),
    Op("clip", 1, lambda u: np.clip(u, -0.5, 0.5), smooth=False),
    Op("where", 4, lambda a, b, c, d: wg.where(a > b, c, d), smooth=False),
    Op("np.where", 4, lambda a, b, c, d: np.where(a <= b, c * d, c - d), smooth=False),
]
SMOOTH_OPS = [op for op in OPS if op.smooth]
CONSTANTS = [-1.5, -0.5, 0.25, 1.0, 2.0, 3.0]


@dataclass(frozen=True)
class Program:
    """``n_inputs`` inputs, then ``steps`` of (op, operand indices, constant
    positions). ``lanes`` > 0: every node is an array of that many lanes
    (elementwise recording); ``n_out`` 0: scalar output (the last node),
    else the last ``n_out`` nodes stacked."""
    n_inputs: int
    steps: tuple
    n_out: int
    lanes: int

    @property
    def in_shape(self):
        return (self.n_inputs, self.lanes) if self.lanes else (self.n_inputs,)

    def __call__(self, x):
        nodes = [x[i] for i in range(self.n_inputs)]
        for op, operands, constants in self.steps:
            args = [c if c is not None else nodes[i] for i, c in zip(operands, constants)]
            nodes.append(op.call(*args))
        if self.n_out == 0:
            return nodes[-1]
        return np.stack(nodes[-self.n_out:])

    def __repr__(self):
        lines = [f"Program(n_inputs={self.n_inputs}, lanes={self.lanes}, n_out={self.n_out})"]
        for k, (op, operands, constants) in enumerate(self.steps):
            args = [repr(c) if c is not None else f"v{i}" for i, c in zip(operands, constants)]
            lines.append(f"  v{self.n_inputs + k} = {op.name}({', '.join(args)})")
        return "\n".join(lines)


@st.composite
def programs(draw, smooth):
    ops = SMOOTH_OPS if smooth else OPS
    n_inputs = draw(st.integers(1, 4))
    steps = []
    for k in range(draw(st.integers(1, 10))):
        n_nodes = n_inputs + k
        op = draw(st.sampled_from(ops))
        # Mostly recent nodes, so programs get deep as well as wide.
        operands = tuple(draw(st.integers(max(0, n_nodes - 4), n_nodes - 1)
                              | st.integers(0, n_nodes - 1)) for _ in range(op.arity))
        constants = [None] * op.arity
        if op.arity >= 2 and draw(st.booleans()):
            # One operand constant (var-const or const-var), never all of them.
            constants[draw(st.integers(0, op.arity - 1))] = draw(st.sampled_from(CONSTANTS))
        steps.append((op, operands, tuple(constants)))
    n_out = draw(st.integers(0, 3))
    n_out = min(n_out, n_inputs + len(steps))
    lanes = draw(st.sampled_from([0, 0, 3]))
    return Program(n_inputs, tuple(steps), n_out, lanes)


def points(program, n):
    return st.lists(
        st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False).map(float),
        min_size=n * int(np.prod(program.in_shape)), max_size=n * int(np.prod(program.in_shape)),
    ).map(lambda v: np.array(v).reshape((n,) + program.in_shape))


@st.composite
def programs_and_points(draw, smooth, n=1):
    program = draw(programs(smooth))
    return program, draw(points(program, n))


def scale_of(*arrays):
    return max([1.0] + [float(np.max(np.abs(a))) for a in arrays if np.size(a)])


@given(programs_and_points(smooth=False))
def test_forward_and_reverse_jacobians_agree(case):
    program, X = case
    x = X[0]
    tape = wg.record(program, x)
    forward = tape.jacobian(x, mode="forward")
    reverse = tape.jacobian(x, mode="reverse")
    assert forward.shape == np.shape(program(x)) + x.shape
    assert_rel(forward, reverse, 1e-12, 1e-12 * scale_of(forward))
    if tape.out_shape == ():
        assert_rel(tape.gradient(x), reverse, 1e-12, 1e-12 * scale_of(forward))
    # One random direction and weight: the inner-product identity.
    rng = np.random.default_rng(0)
    v = rng.standard_normal(x.shape)
    w = rng.standard_normal(tape.out_shape)
    lhs = np.sum(w * tape.jvp(x, v))
    rhs = np.sum(tape.vjp(x, w) * v)
    assert abs(lhs - rhs) <= 1e-11 * scale_of(forward) * (1 + np.sum(np.abs(w)) * np.sum(np.abs(v)))


@given(programs_and_points(smooth=True))
def test_jacobians_match_central_differences(case):
    program, X = case
    x = X[0]
    tape = wg.record(program, x)
    value = np.asarray(program(x))
    assert_rel(tape.forward(x), value, 1e-10, 1e-12 * scale_of(value))
    expected = central_jacobian(program, x)
    tolerance = 1e-6 * scale_of(expected, value)
    for mode in ("forward", "reverse"):
        assert_rel(tape.jacobian(x, mode=mode), expected, 1e-5, tolerance)
    check_grads(program, x, atol=tolerance, rtol=1e-5)


@given(programs_and_points(smooth=False, n=4))
def test_batch_equals_points(case):
    program, X = case
    tape = wg.record(program, X[0])
    values = tape.forward(X)
    jac_f = tape.jacobian(X, mode="forward")
    jac_r = tape.jacobian(X, mode="reverse")
    for i, x in enumerate(X):
        np.testing.assert_array_equal(tape.forward(x), values[i])
        np.testing.assert_array_equal(tape.jacobian(x, mode="forward"), jac_f[i])
        np.testing.assert_array_equal(tape.jacobian(x, mode="reverse"), jac_r[i])
        # Recording at the point itself gives the same tape values.
        np.testing.assert_array_equal(wg.record(program, x).forward(x), values[i])
    if tape.out_shape == ():
        grads = tape.gradient(X)
        for i, x in enumerate(X):
            np.testing.assert_array_equal(tape.gradient(x), grads[i])


@given(programs_and_points(smooth=False, n=3))
def test_values_match_numpy(case):
    program, X = case
    tape = wg.record(program, X[0])
    got = tape.forward(X)
    for i, x in enumerate(X):
        expected = np.asarray(program(x))
        assert_rel(got[i], expected, 1e-10, 1e-12 * scale_of(expected))
