"""Every operation of the table, called the way users call it.

Two spec tables drive the tests. ``UNARY`` has one row per way of calling a
one-argument operation (``np.sin``, ``wg.sin``, ``x ** 2`` ...), including
powers with a constant on one side; ``BINARY`` one row per way of calling a
two-argument operation, each tested with both operands traced (var-var), the
second constant (var-const) and the first constant (const-var). A row gives
the input domain and the closed-form derivative. Each row is recorded on a
traced scalar and on a traced array (one operation per element), and the
tests check

* the recorded operations (name and operand kind);
* values against the table's NumPy reference, to a few ulps;
* derivatives against the closed form, to ~1e-14, in every mode (gradient,
  jvp and vjp with k directions, jacobian forward and reverse);
* derivatives against central differences of the plain NumPy function;
* a batch of B points against the points one at a time.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest
import scipy.special

import wengert as wg
from wengert import _opcodes as ops
from wengert._opcodes import Kind
from wengert.testing import check_grads

from _helpers import assert_rel, assert_ulps, central_jacobian, elementwise_ops, recorded_ops

# Derivatives from the tape and from the closed form agree to this
# (relative); central differences (eps 1e-6) to FD_TOL.
DERIVATIVE_RTOL = 1e-14
FD_TOL = 1e-6
N_POINTS = 16          # batch size B
N_ELEMENTS = 5         # length of the traced arrays

# Input domains: unions of intervals, sampled uniformly.
WIDE = ((-3.0, 3.0),)
NONZERO = ((-3.0, -0.3), (0.3, 3.0))
POSITIVE = ((0.2, 4.0),)
UNIT = ((-0.9, 0.9),)
EXP = ((-5.0, 5.0),)


def sample(rng, domain, shape):
    pick = rng.integers(len(domain), size=shape)
    low = np.array([d[0] for d in domain])[pick]
    high = np.array([d[1] for d in domain])[pick]
    return rng.uniform(low, high)


def ones(*xs):
    return np.ones(np.broadcast_shapes(*map(np.shape, xs)))


# ---- one-argument operations --------------------------------------------------

@dataclass(frozen=True)
class Unary:
    records: str                  # table row it must record
    label: str                    # how the user writes it
    call: Callable                # f(x), on traced values or plain arrays
    domain: tuple
    derivative: Callable          # closed-form f'(x), NumPy
    reference: Optional[Callable] = None  # default: the table's Operation.reference
    kind: Kind = Kind.UNARY
    ulps: float = 4
    scalar_records: Optional[tuple] = None  # (name, kind) on a traced scalar, if different

    def value(self, x):
        return (self.reference or ops.BY_NAME[self.records].reference)(x)


LN2, LN10 = np.log(2.0), np.log(10.0)
expit = scipy.special.expit

UNARY = [
    Unary("neg", "-x", operator.neg, WIDE, lambda x: -ones(x)),
    Unary("neg", "np.negative", np.negative, WIDE, lambda x: -ones(x)),
    Unary("square", "np.square", np.square, WIDE, lambda x: 2 * x),
    Unary("square", "wg.square", wg.square, WIDE, lambda x: 2 * x),
    Unary("square", "x ** 2", lambda x: x ** 2, WIDE, lambda x: 2 * x),
    Unary("square", "np.power(x, 2)", lambda x: np.power(x, 2), WIDE, lambda x: 2 * x),
    Unary("sqrt", "np.sqrt", np.sqrt, POSITIVE, lambda x: 0.5 / np.sqrt(x)),
    Unary("sqrt", "wg.sqrt", wg.sqrt, POSITIVE, lambda x: 0.5 / np.sqrt(x)),
    Unary("sqrt", "x ** 0.5", lambda x: x ** 0.5, POSITIVE, lambda x: 0.5 / np.sqrt(x),
          # Active.__pow__ has no sqrt shortcut (TracedArray's power has).
          scalar_records=("pow", Kind.VC)),
    Unary("cbrt", "np.cbrt", np.cbrt, NONZERO, lambda x: 1 / (3 * np.cbrt(x) ** 2)),
    Unary("cbrt", "wg.cbrt", wg.cbrt, NONZERO, lambda x: 1 / (3 * np.cbrt(x) ** 2)),
    Unary("reciprocal", "np.reciprocal", np.reciprocal, NONZERO, lambda x: -1 / x ** 2),
    Unary("reciprocal", "wg.reciprocal", wg.reciprocal, NONZERO, lambda x: -1 / x ** 2),
    Unary("reciprocal", "x ** -1", lambda x: x ** -1, NONZERO, lambda x: -1 / x ** 2),
    Unary("pow", "x ** 3", lambda x: x ** 3, WIDE, lambda x: 3 * x ** 2,
          reference=lambda x: np.power(x, 3.0), kind=Kind.VC),
    Unary("pow", "x ** -2", lambda x: x ** -2, NONZERO, lambda x: -2 / x ** 3,
          reference=lambda x: np.power(x, -2.0), kind=Kind.VC),
    Unary("pow", "x ** 2.5", lambda x: x ** 2.5, POSITIVE, lambda x: 2.5 * x ** 1.5,
          reference=lambda x: np.power(x, 2.5), kind=Kind.VC),
    Unary("pow", "np.power(x, 3)", lambda x: np.power(x, 3), WIDE, lambda x: 3 * x ** 2,
          reference=lambda x: np.power(x, 3.0), kind=Kind.VC),
    Unary("pow", "wg.power(x, -1.5)", lambda x: wg.power(x, -1.5), POSITIVE,
          lambda x: -1.5 * x ** -2.5, reference=lambda x: np.power(x, -1.5), kind=Kind.VC),
    Unary("pow", "x ** 0", lambda x: x ** 0, WIDE, lambda x: 0 * x,
          reference=lambda x: np.power(x, 0.0), kind=Kind.VC),
    Unary("pow", "2.0 ** x", lambda x: 2.0 ** x, WIDE, lambda x: LN2 * 2.0 ** x,
          reference=lambda x: np.power(2.0, x), kind=Kind.CV),
    Unary("pow", "np.exp2", np.exp2, WIDE, lambda x: LN2 * 2.0 ** x,
          reference=lambda x: np.power(2.0, x), kind=Kind.CV),
    Unary("pow", "x ** x", lambda x: x ** x, POSITIVE, lambda x: x ** x * (np.log(x) + 1),
          reference=lambda x: np.power(x, x), kind=Kind.VV),
    Unary("mul", "x * x", lambda x: x * x, WIDE, lambda x: 2 * x,
          reference=lambda x: x * x, kind=Kind.VV),
    Unary("exp", "np.exp", np.exp, EXP, np.exp),
    Unary("exp", "wg.exp", wg.exp, EXP, np.exp),
    Unary("expm1", "np.expm1", np.expm1, EXP, np.exp),
    Unary("expm1", "wg.expm1", wg.expm1, EXP, np.exp),
    Unary("log", "np.log", np.log, POSITIVE, lambda x: 1 / x),
    Unary("log", "wg.log", wg.log, POSITIVE, lambda x: 1 / x),
    Unary("log1p", "np.log1p", np.log1p, ((-0.8, 4.0),), lambda x: 1 / (1 + x)),
    Unary("log1p", "wg.log1p", wg.log1p, ((-0.8, 4.0),), lambda x: 1 / (1 + x)),
    Unary("log2", "np.log2", np.log2, POSITIVE, lambda x: 1 / (x * LN2)),
    Unary("log2", "wg.log2", wg.log2, POSITIVE, lambda x: 1 / (x * LN2)),
    Unary("log10", "np.log10", np.log10, POSITIVE, lambda x: 1 / (x * LN10)),
    Unary("log10", "wg.log10", wg.log10, POSITIVE, lambda x: 1 / (x * LN10)),
    Unary("sin", "np.sin", np.sin, WIDE, np.cos),
    Unary("sin", "wg.sin", wg.sin, WIDE, np.cos),
    Unary("cos", "np.cos", np.cos, WIDE, lambda x: -np.sin(x)),
    Unary("cos", "wg.cos", wg.cos, WIDE, lambda x: -np.sin(x)),
    Unary("tan", "np.tan", np.tan, ((-1.2, 1.2),), lambda x: 1 / np.cos(x) ** 2),
    Unary("tan", "wg.tan", wg.tan, ((-1.2, 1.2),), lambda x: 1 / np.cos(x) ** 2),
    Unary("arcsin", "np.arcsin", np.arcsin, UNIT, lambda x: 1 / np.sqrt((1 - x) * (1 + x))),
    Unary("arcsin", "wg.arcsin", wg.arcsin, UNIT, lambda x: 1 / np.sqrt((1 - x) * (1 + x))),
    Unary("arccos", "np.arccos", np.arccos, UNIT, lambda x: -1 / np.sqrt((1 - x) * (1 + x))),
    Unary("arccos", "wg.arccos", wg.arccos, UNIT, lambda x: -1 / np.sqrt((1 - x) * (1 + x))),
    Unary("arctan", "np.arctan", np.arctan, WIDE, lambda x: 1 / (1 + x ** 2)),
    Unary("arctan", "wg.arctan", wg.arctan, WIDE, lambda x: 1 / (1 + x ** 2)),
    Unary("sinh", "np.sinh", np.sinh, WIDE, np.cosh),
    Unary("sinh", "wg.sinh", wg.sinh, WIDE, np.cosh),
    Unary("cosh", "np.cosh", np.cosh, WIDE, np.sinh),
    Unary("cosh", "wg.cosh", wg.cosh, WIDE, np.sinh),
    Unary("tanh", "np.tanh", np.tanh, WIDE, lambda x: 1 / np.cosh(x) ** 2),
    Unary("tanh", "wg.tanh", wg.tanh, WIDE, lambda x: 1 / np.cosh(x) ** 2),
    Unary("arcsinh", "np.arcsinh", np.arcsinh, WIDE, lambda x: 1 / np.sqrt(x ** 2 + 1)),
    Unary("arcsinh", "wg.arcsinh", wg.arcsinh, WIDE, lambda x: 1 / np.sqrt(x ** 2 + 1)),
    Unary("arccosh", "np.arccosh", np.arccosh, ((1.1, 5.0),),
          lambda x: 1 / np.sqrt((x - 1) * (x + 1))),
    Unary("arccosh", "wg.arccosh", wg.arccosh, ((1.1, 5.0),),
          lambda x: 1 / np.sqrt((x - 1) * (x + 1))),
    Unary("arctanh", "np.arctanh", np.arctanh, UNIT, lambda x: 1 / ((1 - x) * (1 + x))),
    Unary("arctanh", "wg.arctanh", wg.arctanh, UNIT, lambda x: 1 / ((1 - x) * (1 + x))),
    Unary("abs", "np.abs", np.abs, NONZERO, np.sign),
    Unary("abs", "np.fabs", np.fabs, NONZERO, np.sign),
    Unary("abs", "abs(x)", abs, NONZERO, np.sign),
    Unary("abs", "wg.abs", wg.abs, NONZERO, np.sign),
    Unary("sign", "np.sign", np.sign, NONZERO, lambda x: 0 * x),
    Unary("sign", "wg.sign", wg.sign, NONZERO, lambda x: 0 * x),
    Unary("sigmoid", "wg.sigmoid", wg.sigmoid, EXP, lambda x: expit(x) * expit(-x)),
    Unary("sigmoid", "scipy.special.expit", expit, EXP, lambda x: expit(x) * expit(-x)),
    Unary("erf", "wg.erf", wg.erf, WIDE, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x ** 2)),
    Unary("erf", "scipy.special.erf", scipy.special.erf, WIDE,
          lambda x: 2 / np.sqrt(np.pi) * np.exp(-x ** 2)),
    # glibc's erfc (the kernel) and SciPy's (Cephes, the reference) differ by
    # up to 5 ulps where erfc(x) is small; against mpmath over [-3, 3] glibc
    # is within 3 ulps, SciPy within 11.
    Unary("erfc", "wg.erfc", wg.erfc, WIDE, lambda x: -2 / np.sqrt(np.pi) * np.exp(-x ** 2),
          ulps=8),
    Unary("erfc", "scipy.special.erfc", scipy.special.erfc, WIDE,
          lambda x: -2 / np.sqrt(np.pi) * np.exp(-x ** 2), ulps=8),
]


# ---- two-argument operations --------------------------------------------------

@dataclass(frozen=True)
class Binary:
    records: str
    label: str
    call: Callable                # f(a, b)
    domain_a: tuple
    domain_b: tuple
    partials: Callable            # closed form (df/da, df/db), NumPy
    ulps: float = 4

    def value(self, a, b):
        return ops.BY_NAME[self.records].reference(a, b)


def _pow_partials(a, b):
    return b * a ** (b - 1), np.log(a) * a ** b


def _arctan2_partials(a, b):
    r2 = a * a + b * b
    return b / r2, -a / r2


def _hypot_partials(a, b):
    h = np.hypot(a, b)
    return a / h, b / h


BINARY = [
    Binary("add", "a + b", operator.add, WIDE, WIDE, lambda a, b: (ones(a, b), ones(a, b))),
    Binary("add", "np.add", np.add, WIDE, WIDE, lambda a, b: (ones(a, b), ones(a, b))),
    Binary("sub", "a - b", operator.sub, WIDE, WIDE, lambda a, b: (ones(a, b), -ones(a, b))),
    Binary("sub", "np.subtract", np.subtract, WIDE, WIDE,
           lambda a, b: (ones(a, b), -ones(a, b))),
    Binary("mul", "a * b", operator.mul, WIDE, WIDE, lambda a, b: (b * ones(a), a * ones(b))),
    Binary("mul", "np.multiply", np.multiply, WIDE, WIDE,
           lambda a, b: (b * ones(a), a * ones(b))),
    Binary("div", "a / b", operator.truediv, WIDE, NONZERO, lambda a, b: (1 / b * ones(a), -a / b ** 2)),
    Binary("div", "np.divide", np.divide, WIDE, NONZERO, lambda a, b: (1 / b * ones(a), -a / b ** 2)),
    Binary("pow", "a ** b", operator.pow, POSITIVE, ((-2.5, 2.5),), _pow_partials),
    Binary("pow", "np.power", np.power, POSITIVE, ((-2.5, 2.5),), _pow_partials),
    Binary("pow", "wg.power", wg.power, POSITIVE, ((-2.5, 2.5),), _pow_partials),
    Binary("arctan2", "np.arctan2", np.arctan2, NONZERO, WIDE, _arctan2_partials),
    Binary("arctan2", "wg.arctan2", wg.arctan2, NONZERO, WIDE, _arctan2_partials),
    Binary("hypot", "np.hypot", np.hypot, WIDE, WIDE, _hypot_partials),
    Binary("hypot", "wg.hypot", wg.hypot, WIDE, WIDE, _hypot_partials),
    Binary("minimum", "np.minimum", np.minimum, WIDE, WIDE,
           lambda a, b: ((a < b) * 1.0, (b < a) * 1.0)),
    Binary("minimum", "wg.minimum", wg.minimum, WIDE, WIDE,
           lambda a, b: ((a < b) * 1.0, (b < a) * 1.0)),
    Binary("maximum", "np.maximum", np.maximum, WIDE, WIDE,
           lambda a, b: ((a > b) * 1.0, (b > a) * 1.0)),
    Binary("maximum", "wg.maximum", wg.maximum, WIDE, WIDE,
           lambda a, b: ((a > b) * 1.0, (b > a) * 1.0)),
    Binary("logaddexp", "np.logaddexp", np.logaddexp, EXP, EXP,
           lambda a, b: (expit(a - b), expit(b - a))),
    Binary("logaddexp", "wg.logaddexp", wg.logaddexp, EXP, EXP,
           lambda a, b: (expit(a - b), expit(b - a))),
]


# ---- problems: a row recorded one way ------------------------------------------

@dataclass
class Problem:
    """A function to record, B points, and what the tape must give there."""
    f: Callable
    points: np.ndarray            # (B,) + in_shape
    in_shape: tuple
    out_shape: tuple
    value: Callable               # points -> (B,) + out_shape
    jacobian: Callable            # points -> (B,) + out_shape + in_shape
    operations: list              # expected [(name, kind)] on the tape
    ulps: float

    @property
    def x0(self):
        """The recording point: the first of the points."""
        return float(self.points[0]) if self.in_shape == () else self.points[0]


def _diagonal(d):
    """(B, n) elementwise derivatives -> (B, n, n) Jacobians."""
    return d[:, :, None] * np.eye(d.shape[1])


def unary_problem(spec, form, rng):
    n = N_ELEMENTS
    if form == "scalar":
        points = sample(rng, spec.domain, (N_POINTS,))
        expected_op = spec.scalar_records or (spec.records, spec.kind)
        return Problem(spec.call, points, (), (), spec.value, spec.derivative,
                       [expected_op], spec.ulps)
    points = sample(rng, spec.domain, (N_POINTS, n))
    return Problem(spec.call, points, (n,), (n,), spec.value,
                   lambda P: _diagonal(spec.derivative(P)),
                   [(spec.records, spec.kind)] * n, spec.ulps)


def binary_problem(spec, kind, form, rng):
    n = N_ELEMENTS
    B = N_POINTS
    name = spec.records
    if form == "scalar":
        if kind == Kind.VV:
            a = sample(rng, spec.domain_a, (B,))
            b = sample(rng, spec.domain_b, (B,))
            return Problem(lambda x: spec.call(x[0], x[1]), np.stack([a, b], axis=1), (2,), (),
                           lambda P: spec.value(P[:, 0], P[:, 1]),
                           lambda P: np.stack(spec.partials(P[:, 0], P[:, 1]), axis=-1),
                           [(name, kind)], spec.ulps)
        if kind == Kind.VC:
            c = float(sample(rng, spec.domain_b, ()))
            return Problem(lambda x: spec.call(x, c), sample(rng, spec.domain_a, (B,)), (), (),
                           lambda P: spec.value(P, c), lambda P: spec.partials(P, c)[0],
                           [(name, kind)], spec.ulps)
        c = float(sample(rng, spec.domain_a, ()))
        return Problem(lambda x: spec.call(c, x), sample(rng, spec.domain_b, (B,)), (), (),
                       lambda P: spec.value(c, P), lambda P: spec.partials(c, P)[1],
                       [(name, kind)], spec.ulps)
    if kind == Kind.VV:
        a = sample(rng, spec.domain_a, (B, n))
        b = sample(rng, spec.domain_b, (B, n))

        def jacobian(P):
            da, db = spec.partials(P[:, 0], P[:, 1])
            return np.stack([_diagonal(da), _diagonal(db)], axis=2)   # (B, n, 2, n)
        return Problem(lambda x: spec.call(x[0], x[1]), np.stack([a, b], axis=1), (2, n), (n,),
                       lambda P: spec.value(P[:, 0], P[:, 1]), jacobian,
                       [(name, kind)] * n, spec.ulps)
    if kind == Kind.VC:
        c = sample(rng, spec.domain_b, (n,))
        return Problem(lambda x: spec.call(x, c), sample(rng, spec.domain_a, (B, n)), (n,), (n,),
                       lambda P: spec.value(P, c), lambda P: _diagonal(spec.partials(P, c)[0]),
                       [(name, kind)] * n, spec.ulps)
    c = sample(rng, spec.domain_a, (n,))
    return Problem(lambda x: spec.call(c, x), sample(rng, spec.domain_b, (B, n)), (n,), (n,),
                   lambda P: spec.value(c, P), lambda P: _diagonal(spec.partials(c, P)[1]),
                   [(name, kind)] * n, spec.ulps)


FORMS = ("scalar", "array")
CASES = (
    [pytest.param(lambda rng, s=s, form=form: unary_problem(s, form, rng),
                  id=f"{s.records}[{s.label}]-{form}")
     for s in UNARY for form in FORMS]
    + [pytest.param(lambda rng, s=s, k=k, form=form: binary_problem(s, k, form, rng),
                    id=f"{s.records}[{s.label}]-{k.name}-{form}")
       for s in BINARY for k in (Kind.VV, Kind.VC, Kind.CV) for form in FORMS]
)


@pytest.fixture(params=CASES)
def problem(request, rng):
    return request.param(rng)


# ---- the tests ------------------------------------------------------------------

def tape_point(x):
    """A point as a user passes it: a float for scalar inputs."""
    return float(x) if np.ndim(x) == 0 else x


def test_records_one_operation_per_element(problem):
    tape = wg.record(problem.f, problem.x0)
    assert recorded_ops(tape) == problem.operations
    assert len(tape) == len(problem.operations)
    assert tape.in_shape == problem.in_shape and tape.out_shape == problem.out_shape
    assert tape.n_guards == 0


def test_value_matches_numpy_reference(problem):
    tape = wg.record(problem.f, problem.x0)
    P = problem.points
    expected = problem.value(P)
    assert_ulps(tape.forward(P), expected, problem.ulps)
    # The same function on plain NumPy arrays (the user's code, untraced).
    assert_ulps(np.asarray(problem.f(tape_point(P[0]))),
                expected[0], problem.ulps)


@pytest.mark.parametrize("mode", ["jvp", "vjp", "jacobian-forward", "jacobian-reverse"])
def test_derivative_matches_closed_form(problem, mode):
    tape = wg.record(problem.f, problem.x0)
    P = problem.points
    B = len(P)
    J = problem.jacobian(P)                          # (B,) + out + in
    n_in = int(np.prod(problem.in_shape))
    n_out = int(np.prod(problem.out_shape))
    if mode == "jvp":
        # All n_in unit directions at once: V of shape in_shape + (k,).
        V = np.eye(n_in).reshape(problem.in_shape + (n_in,))
        got = tape.jvp(P, V).reshape((B,) + problem.out_shape + problem.in_shape)
    elif mode == "vjp":
        # All n_out unit weights at once: W of shape (k,) + out_shape.
        W = np.eye(n_out).reshape((n_out,) + problem.out_shape)
        got = tape.vjp(P, W).reshape((B,) + problem.out_shape + problem.in_shape)
        if problem.out_shape == ():
            assert_rel(tape.gradient(P), J, DERIVATIVE_RTOL)
    else:
        got = tape.jacobian(P, mode=mode.split("-")[1])
    assert_rel(got, J, DERIVATIVE_RTOL)


def test_derivative_matches_central_differences(problem):
    for i in range(3):
        x = problem.points[i]
        tape = check_grads(problem.f, x, atol=FD_TOL, rtol=FD_TOL, seed=i)
        assert_rel(tape.jacobian(tape_point(x), mode="forward"),
                   central_jacobian(problem.f, x), FD_TOL, FD_TOL)


def test_batch_gives_the_same_as_single_points(problem, rng):
    tape = wg.record(problem.f, problem.x0)
    P = problem.points
    v = rng.standard_normal(problem.in_shape)
    w = rng.standard_normal(problem.out_shape)
    values = tape.forward(P)
    jvps = tape.jvp(P, v)
    vjps = tape.vjp(P, w)
    jac_f = tape.jacobian(P, mode="forward")
    jac_r = tape.jacobian(P, mode="reverse")
    grads = tape.gradient(P) if problem.out_shape == () else None
    assert values.shape == (len(P),) + problem.out_shape
    assert jac_f.shape == jac_r.shape == (len(P),) + problem.out_shape + problem.in_shape
    for i, x in enumerate(P):
        x = tape_point(x)
        np.testing.assert_array_equal(tape.forward(x), values[i])
        np.testing.assert_array_equal(tape.jvp(x, v), jvps[i])
        np.testing.assert_array_equal(tape.vjp(x, w), vjps[i])
        np.testing.assert_array_equal(tape.jacobian(x, mode="forward"), jac_f[i])
        np.testing.assert_array_equal(tape.jacobian(x, mode="reverse"), jac_r[i])
        if grads is not None:
            np.testing.assert_array_equal(tape.gradient(x), grads[i])
    # Batched directions: a different v per point.
    V = rng.standard_normal((len(P),) + problem.in_shape)
    batched = tape.jvp(P, V)
    for i, x in enumerate(P):
        np.testing.assert_array_equal(tape.jvp(tape_point(x), V[i]), batched[i])


def test_second_derivatives_match_differences_of_the_closed_form(problem, rng):
    """hessian and hvp (of w·f for array outputs) against central differences
    of the closed-form first derivative, at every point of the batch."""
    tape = wg.record(problem.f, problem.x0)
    P = problem.points
    B = len(P)
    n_in = int(np.prod(problem.in_shape))
    w = rng.standard_normal(problem.out_shape)
    weighted = {} if problem.out_shape == () else {"w": w}
    axes = tuple(range(1, 1 + len(problem.out_shape)))

    def weighted_gradient(X):          # (B,) + in_shape: w · J(x), closed form
        J = problem.jacobian(X).reshape((B,) + problem.out_shape + (n_in,))
        return np.tensordot(J, w, axes=(axes, tuple(a - 1 for a in axes))) if axes else J

    eps = 1e-5
    H = np.empty((B, n_in, n_in))
    for j in range(n_in):
        step = np.zeros(n_in)
        step[j] = eps
        step = step.reshape(problem.in_shape)
        H[:, :, j] = (weighted_gradient(P + step) - weighted_gradient(P - step)) / (2 * eps)
    H = H.reshape((B,) + problem.in_shape + problem.in_shape)
    scale = 1e-6 * max(1.0, np.abs(H).max())
    got = tape.hessian(P, **weighted)
    assert_rel(got, H, 1e-6, scale)
    v = rng.standard_normal(problem.in_shape)
    for i in range(B):
        x = tape_point(P[i])
        single = tape.hessian(x, **weighted)
        assert_rel(single, got[i], 1e-15)
        Hv = np.tensordot(np.reshape(single, (n_in, n_in)), v.reshape(-1), axes=1)
        assert_rel(tape.hvp(x, v if v.shape else float(v), **weighted),
                   Hv.reshape(problem.in_shape), 1e-12, 1e-12 * np.abs(single).max())


# ---- comparisons: 0/1 indicators with zero derivative ------------------------------

COMPARISONS = [
    ("lt", operator.lt, np.less), ("le", operator.le, np.less_equal),
    ("gt", operator.gt, np.greater), ("ge", operator.ge, np.greater_equal),
    ("eq", operator.eq, np.equal), ("ne", operator.ne, np.not_equal),
]


@pytest.mark.parametrize("name, python_op, ufunc", COMPARISONS, ids=[c[0] for c in COMPARISONS])
@pytest.mark.parametrize("how", ["operator", "ufunc"])
@pytest.mark.parametrize("kind", ["VV", "VC", "CV"])
def test_comparison_indicator_values_and_zero_derivative(name, python_op, ufunc, how, kind, rng):
    """``(a < b) * 1.0`` records the comparison as a 0/1 value; ties and NaN
    follow IEEE (NaN makes every ordered comparison false, != true)."""
    compare = python_op if how == "operator" else ufunc
    n = 8
    grid = np.array([-1.0, 0.0, 1.0, np.nan])
    P = grid[rng.integers(4, size=(N_POINTS, 2, n))]
    c = grid[rng.integers(3, size=n)]         # finite constants
    if kind == "VV":
        f, X, a, b = (lambda x: compare(x[0], x[1]) * 1.0), P, P[:, 0], P[:, 1]
    elif kind == "VC":
        f, X, a, b = (lambda x: compare(x, c) * 1.0), P[:, 0], P[:, 0], c
    else:
        f, X, a, b = (lambda x: compare(c, x) * 1.0), P[:, 0], c, P[:, 0]
    tape = wg.record(f, np.ones(X.shape[1:]))
    expected = ops.BY_NAME[name].reference(a, b)
    np.testing.assert_array_equal(tape.forward(X), expected)
    assert set(expected.ravel()) == {0.0, 1.0}         # both outcomes were exercised
    for mode in ("forward", "reverse"):
        J = tape.jacobian(X, mode=mode)
        assert np.all(J == 0.0), mode
    assert tape.n_guards == 0


# ---- more checks of single rules ------------------------------------------------

def test_sigmoid_is_accurate(rng):
    """wg.sigmoid agrees with scipy.special.expit to 4 ulps, even where the
    table's tanh form of the reference loses precision."""
    x = np.concatenate([sample(rng, ((-40.0, 40.0),), (200,)), [-745.0, -700.0, 0.0, 700.0]])
    for call in (wg.sigmoid, expit):
        tape = wg.record(call, 0.0)
        assert_ulps(tape.forward(x), expit(x), 4)
    assert tape.forward(-1000.0) == 0.0 and tape.forward(1000.0) == 1.0
    assert tape.gradient(-1000.0) == 0.0 and tape.gradient(1000.0) == 0.0


TAILS = [
    ("tanh", np.tanh, lambda x: 1 / np.cosh(x) ** 2, [10.0, -12.0, 20.0]),
    ("sigmoid", wg.sigmoid, lambda x: expit(x) * expit(-x), [10.0, 20.0, 40.0]),
    ("expm1", np.expm1, np.exp, [-10.0, -20.0, -40.0]),
]


@pytest.mark.parametrize("name, call, derivative, x", TAILS, ids=[t[0] for t in TAILS])
def test_derivatives_in_the_tails(name, call, derivative, x):
    tape = wg.record(call, 1.0)
    assert_rel(tape.gradient(np.array(x)), derivative(np.array(x)), 1e-13)


def test_erf_through_scipy_and_wg_record_the_same(rng):
    x = sample(rng, WIDE, (20,))
    a = wg.record(wg.erf, x)
    b = wg.record(scipy.special.erf, x)
    assert elementwise_ops(a) == elementwise_ops(b) == [("erf", Kind.UNARY)] * 20
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    np.testing.assert_array_equal(a.jacobian(x), b.jacobian(x))
    assert_ulps(a.forward(x), scipy.special.erf(x), 4)


@pytest.mark.parametrize("exponent", [1, 2, 3, 4, 5, -1, -2, -3, 0])
def test_integer_powers_of_negative_bases(exponent, rng):
    """x ** n for integer n is defined for x < 0; derivative n x^(n-1)."""
    x = sample(rng, ((-3.0, -0.5),), (N_POINTS,))
    for traced_point in (x[0], x[:4]):
        tape = wg.record(lambda z: z ** exponent, traced_point)
        batch = x if np.ndim(traced_point) == 0 else x.reshape(4, 4)
        assert_ulps(tape.forward(batch), batch ** float(exponent), 4)
        expected = exponent * batch ** float(exponent - 1) if exponent else 0 * batch
        got = tape.gradient(batch) if np.ndim(traced_point) == 0 else \
            np.diagonal(tape.jacobian(batch), axis1=1, axis2=2)
        assert_rel(got, expected, DERIVATIVE_RTOL)


def test_x_to_the_first_records_nothing():
    tape = wg.record(lambda x: x ** 1, np.array([2.0, 3.0]))
    assert len(tape) == 0
    np.testing.assert_array_equal(tape.jacobian([5.0, -1.0]), np.eye(2))


SPECIAL_POINTS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0,
                           1e308, -1e308, 5e-324, 800.0, -800.0])


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("spec", [s for s in UNARY if s.kind == Kind.UNARY],
                         ids=lambda s: f"{s.records}[{s.label}]")
def test_unary_values_at_special_points_follow_numpy(spec, form):
    """Non-finite inputs, signed zeros, huge and tiny arguments give what
    NumPy gives for the same expression on the same kind of operand (a
    float64 scalar or an array)."""
    x = SPECIAL_POINTS
    with np.errstate(all="ignore"):
        if form == "scalar":
            got = wg.record(spec.call, 1.0).forward(x)
            expected = np.array([spec.call(np.float64(v)) for v in x])
        else:
            got = wg.record(spec.call, np.ones(x.size)).forward(x)
            expected = np.asarray(spec.call(x))
    assert_ulps(got, expected, 4)
    zero = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(expected[zero]))


@pytest.mark.parametrize("name", [op.name for op in ops.OPERATIONS if ops.is_binary(op)])
def test_binary_values_at_special_points_follow_numpy(name):
    s = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e308, 5e-324])
    a, b = (g.ravel() for g in np.meshgrid(s, s))
    tape = wg.record(lambda x: wg.tracing.apply_binary(name, x[0], x[1]), np.ones(2))
    with np.errstate(all="ignore"):
        expected = ops.BY_NAME[name].reference(a, b)
        got = tape.forward(np.stack([a, b], axis=1))
    assert_ulps(got, expected, 4)
