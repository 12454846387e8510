"""Recording user code: operators, NumPy functions, structure, arguments.

Spec tables of small user functions drive most tests: each is recorded once,
then replayed at other points and compared with the same function run on
plain NumPy arrays (values) and with central differences (Jacobians).
"""
import functools

import numpy as np
import pytest

import wengert as wg
from wengert import _array_recording
from wengert._opcodes import Kind
from wengert.testing import check_grads

from _helpers import assert_rel, central_jacobian, elementwise_ops, recorded_ops

VALUE_RTOL = 1e-13       # tape vs NumPy (summation orders may differ)
FD_TOL = 1e-6            # tape vs central differences
MODES_RTOL = 1e-13       # forward-mode vs reverse-mode Jacobians

A = np.array([[1.0, 2.0, -1.0], [0.5, -3.0, 2.0]])
C = np.array([1.5, -2.0, 0.25])
TRAPEZOID = getattr(np, "trapezoid", getattr(np, "trapz", None))   # NumPy 2.0 renamed it


def _inplace_array(x):
    y = x * 1.0
    y += 2.0
    y -= x[0]
    y *= x
    y /= 3.0
    y **= 2
    y[1] += x[2]
    return y


def _inplace_scalar(x):
    s = x[0]
    s += x[1]
    s *= 2.0
    s -= x[2]
    s /= x[1]
    s **= 2
    return s


def _loop(x):
    total = 0.0
    for i in range(len(x)):
        total = total + x[i] * (i + 1.0)
    return total


def _setitem(x):
    out = wg.array([x[0] * x[1], x[1] + 1.0, 2.0])
    out[2] = x[2] ** 3
    return out


# label, f; every f maps x of shape (3,) (entries in (0.3, 0.95) or (1.05, 2))
OPERATORS = [
    ("x + c", lambda x: x + 1.5), ("c + x", lambda x: 1.5 + x),
    ("x - c", lambda x: x - 1.5), ("c - x", lambda x: 1.5 - x),
    ("x * c", lambda x: x * 1.5), ("c * x", lambda x: 1.5 * x),
    ("x / c", lambda x: x / 1.5), ("c / x", lambda x: 1.5 / x),
    ("x ** c", lambda x: x ** 1.5), ("c ** x", lambda x: 1.5 ** x),
    ("x ** int", lambda x: x ** 3), ("x ** -int", lambda x: x ** -2),
    ("x ** x", lambda x: x ** x), ("x ** 2", lambda x: x ** 2), ("x ** -1", lambda x: x ** -1),
    ("-x", lambda x: -x), ("+x", lambda x: +x), ("abs(-x)", lambda x: abs(-x)),
    ("array constant on the left", lambda x: C * x - C / x + np.abs(C) ** x),
    ("array constant on the right", lambda x: x * C - x / C + x ** C),
    ("numpy scalar on the left", lambda x: np.float64(2.5) - x * np.float64(0.5)),
    ("traced scalars", lambda x: x[0] * x[1] - x[2] / x[0] + x[1] ** x[2]),
    ("reflected on traced scalars", lambda x: 2.0 - x[0] + 3.0 / x[1] + 2.0 ** x[2]),
    ("traced scalar times array", lambda x: x[0] * x),
    ("array times traced scalar", lambda x: x / x[1]),
    ("broadcast outer", lambda x: x[:, None] * x[None, :]),
    ("A @ x", lambda x: A @ x), ("x @ A.T", lambda x: x @ A.T), ("x @ x", lambda x: x @ x),
    ("outer @", lambda x: x[:, None] @ x[None, :]),
    ("in-place on arrays", _inplace_array),
    ("in-place on traced scalars", _inplace_scalar),
    ("Python loop", _loop),
    ("wg.array and setitem", _setitem),
    ("comparison as 0/1 factor", lambda x: (x > 1.0) * x + (x <= 1.0) * 2.0),
    ("~ comparison", lambda x: wg.where(~(x > 1.0), -x, x)),
    ("comparison & comparison", lambda x: wg.where((x > 0.5) & (x < 1.0), x ** 2, x)),
    ("comparison | comparison", lambda x: wg.where((x < 0.5) | (x > 1.0), x ** 2, x)),
    ("comparisons of traced scalars", lambda x: wg.where(x[0] < x[1], x[0], x[1]) * x[2]),
    ("reflected comparison", lambda x: wg.where(1.0 < x, x, 0.0)),
]

# label, f, number of tape operations for x of shape (2, 3)
FUNCTIONS = [
    ("np.sum", np.sum, 5), ("np.sum axis=0", lambda x: np.sum(x, axis=0), 3),
    ("np.sum axis=1 keepdims", lambda x: np.sum(x, axis=1, keepdims=True), 4),
    ("x.sum()", lambda x: x.sum(), 5), ("wg.sum", wg.sum, 5),
    ("np.prod", np.prod, 5), ("np.prod axis=1", lambda x: np.prod(x, axis=1), 4),
    ("wg.prod", wg.prod, 5),
    ("np.mean", np.mean, 6), ("np.mean axis=0", lambda x: np.mean(x, axis=0), 6),
    ("x.mean(axis=1)", lambda x: x.mean(axis=1), 6),
    ("np.var", np.var, None), ("np.var axis=0 ddof=1", lambda x: np.var(x, axis=0, ddof=1), None),
    ("np.var correction keepdims", lambda x: np.var(x, axis=1, correction=1, keepdims=True),
     None),
    ("x.var()", lambda x: x.var(), None), ("np.std", np.std, None),
    ("np.std axis=(0, 1)", lambda x: np.std(x, axis=(0, 1)), None),
    ("x.std(axis=1, ddof=1)", lambda x: x.std(axis=1, ddof=1), None),
    ("np.average", np.average, None),
    ("np.average weights", lambda x: np.average(x, weights=A ** 2), None),
    ("np.average weights along axis", lambda x: np.average(x, axis=1, weights=[1.0, 2.0, 3.0]),
     None),
    ("np.average traced weights", lambda x: np.average(x[0], weights=x[1]), None),
    ("np.average traced weights along axis keepdims",
     lambda x: np.average(x, axis=0, weights=x[0, :2] * 1.5, keepdims=True), None),
    ("np.ptp", np.ptp, None), ("np.ptp axis=1 keepdims", lambda x: np.ptp(x, 1, keepdims=True), None),
    ("np.cumprod", np.cumprod, None), ("np.cumprod axis=1", lambda x: np.cumprod(x, axis=1), None),
    ("np.cumprod axis=0", lambda x: np.cumprod(x, axis=0), None),
    ("np.cumprod of one element", lambda x: np.cumprod(x[0, 1]), None),
    ("np.trapezoid", lambda x: TRAPEZOID(x), None),
    ("np.trapezoid axis=0 dx", lambda x: TRAPEZOID(x, dx=0.5, axis=0), None),
    ("np.trapezoid constant x", lambda x: TRAPEZOID(x, x=[0.0, 1.0, 3.0]), None),
    ("np.trapezoid traced x", lambda x: TRAPEZOID(x[0], x=x[1]), None),
    ("np.trapezoid traced 2-d x", lambda x: TRAPEZOID(A, x=x, axis=1), None),
    ("np.kron", lambda x: np.kron(x, x), None), ("np.kron constant", lambda x: np.kron(A, x[0]), None),
    ("np.kron vectors", lambda x: np.kron(x[0], x[1]), None),
    ("np.kron of a 0-d value", lambda x: np.kron(x[0, 1], x), None),
    ("np.kron of two 0-d values", lambda x: np.kron(x[0, 1], x[1, 2]), None),
    ("np.linalg.norm", np.linalg.norm, 12),
    ("np.linalg.norm axis=1", lambda x: np.linalg.norm(x, axis=1), 6 + 4 + 2),
    ("np.dot vectors", lambda x: np.dot(x[0], x[1]), 5),
    ("wg.dot", lambda x: wg.dot(x[0], x[1]), 5),
    ("np.dot matrix-vector", lambda x: np.dot(x, C), None),
    ("x @ x.T", lambda x: x @ x.T, 1),
    ("A.T @ x", lambda x: A.T @ x, None),
    ("np.matmul", lambda x: np.matmul(x.T, x), 1),
    ("np.inner", lambda x: np.inner(x[0], x[1]), 5),
    ("np.outer", lambda x: np.outer(x[0], x[1]), 1),
    ("np.vdot", lambda x: np.vdot(x, x), 11),
    ("np.trace", lambda x: np.trace(x @ x.T), 2),
    ("np.where comparison", lambda x: np.where(x > 1.0, x, -x), 18),
    ("wg.where comparison", lambda x: wg.where(x > 1.0, np.sin(x), 0.5), 18 + 1),
    ("np.maximum", lambda x: np.maximum(x[0], x[1]), 3),
    ("np.minimum with constant", lambda x: np.minimum(x, 1.0), 6),
    ("np.max", np.max, 5), ("np.min axis=0", lambda x: np.min(x, axis=0), 3),
    ("x.max(axis=1)", lambda x: x.max(axis=1), 4),
    ("np.clip", lambda x: np.clip(x, 0.5, 1.5), 12), ("wg.clip", lambda x: wg.clip(x, None, 1.5), 6),
    ("x.clip", lambda x: x.clip(0.5), 6),
    ("np.abs", lambda x: np.abs(x - 1.0), 12),
    ("np.concatenate", lambda x: np.concatenate([np.sin(x[0]), x[1], [3.0]]), 3 + 1),
    ("wg.concatenate", lambda x: wg.concatenate([x[1], x[0] * 2.0]), 3),
    ("np.stack", lambda x: np.stack([x[0] * x[1], x[1]], axis=1), 3),
    ("wg.stack", lambda x: wg.stack([x[0], np.exp(x[1])]), 3),
    ("np.hstack/vstack", lambda x: np.vstack([np.hstack([x[0], x[1]]), np.hstack([x[1], x[0]])]), 0),
    ("np.cumsum", lambda x: np.cumsum(x), 5), ("np.diff", lambda x: np.diff(x, axis=1), 4),
    ("np.triu", lambda x: np.triu(x), 1), ("np.tril", lambda x: np.tril(x, -1) + 1.0, 1 + 6),
    ("np.diag of a vector", lambda x: np.diag(x[0]), 1),
    ("np.diagonal", lambda x: np.diagonal(x @ x.T), 1),
    ("np.sum of a comparison-weighted array", lambda x: np.sum((x > 1.0) * x), 6 + 6 + 5),
]


def _points(rng, shape, n=3):
    pick = rng.integers(2, size=(n,) + shape)
    return np.where(pick, rng.uniform(0.3, 0.95, (n,) + shape), rng.uniform(1.05, 2.0, (n,) + shape))


def _check_against_numpy(f, X):
    """Record at X[0]; replay at every point of X, singly and as a batch."""
    tape = wg.record(f, X[0])
    batch = tape.forward(X)
    for i, x in enumerate(X):
        expected = np.asarray(f(x), dtype=float)
        got = tape.forward(x)
        assert np.shape(got) == expected.shape
        assert_rel(got, expected, VALUE_RTOL, 1e-15)
        np.testing.assert_array_equal(batch[i], got)
        forward = tape.jacobian(x, mode="forward")
        reverse = tape.jacobian(x, mode="reverse")
        assert forward.shape == expected.shape + x.shape
        assert_rel(forward, central_jacobian(f, x), FD_TOL, FD_TOL)
        assert_rel(reverse, forward, MODES_RTOL, 1e-15)
        check_grads(f, x, seed=i)
    return tape


@pytest.mark.parametrize("label, f", OPERATORS, ids=[c[0] for c in OPERATORS])
def test_operators(label, f, rng):
    _check_against_numpy(f, _points(rng, (3,)))


@pytest.mark.parametrize("label, f, n_ops", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_numpy_functions(label, f, n_ops, rng):
    tape = _check_against_numpy(f, _points(rng, (2, 3)))
    if n_ops is not None:        # None: the count is not part of the contract
        assert len(tape) == tape.n_ops == n_ops
    assert tape.n_guards == 0


# label, f on x of shape (2, 3): functions that only move elements
STRUCTURAL = [
    ("x[1]", lambda x: x[1]), ("x[1, 2]", lambda x: x[1, 2]), ("x[:, 1:]", lambda x: x[:, 1:]),
    ("x[::-1]", lambda x: x[::-1]), ("x[..., None]", lambda x: x[..., None]),
    ("fancy index", lambda x: x[[1, 0, 1], [2, 2, 0]]),
    ("boolean mask", lambda x: x[:, np.array([True, False, True])]),
    ("x.reshape(3, 2)", lambda x: x.reshape(3, 2)), ("x.reshape((-1,))", lambda x: x.reshape((-1,))),
    ("np.reshape", lambda x: np.reshape(x, (6, 1))),
    ("x.T", lambda x: x.T), ("x.transpose(1, 0)", lambda x: x.transpose(1, 0)),
    ("np.transpose", np.transpose), ("x.ravel()", lambda x: x.ravel()),
    ("x.flatten()", lambda x: x.flatten()), ("np.ravel", np.ravel),
    ("np.concatenate", lambda x: np.concatenate([x[1], x[0], x[1]])),
    ("np.concatenate axis=1", lambda x: np.concatenate([x, x[:, :1]], axis=1)),
    ("np.stack", lambda x: np.stack([x[1], x[0]])),
    ("np.stack axis=-1", lambda x: np.stack([x, x], axis=-1)),
    ("np.hstack", lambda x: np.hstack([x[0], x[1]])), ("np.vstack", lambda x: np.vstack([x[1], x[0]])),
    ("np.column_stack", lambda x: np.column_stack([x[0], x[1]])),
    ("np.flip", np.flip), ("np.fliplr", np.fliplr), ("np.roll", lambda x: np.roll(x, 1)),
    ("np.moveaxis", lambda x: np.moveaxis(x, 0, 1)), ("np.swapaxes", lambda x: np.swapaxes(x, 0, 1)),
    ("np.expand_dims", lambda x: np.expand_dims(x, 1)), ("np.squeeze", lambda x: np.squeeze(x[:1])),
    ("np.broadcast_to", lambda x: np.broadcast_to(x[0], (4, 3))), ("np.tile", lambda x: np.tile(x, 2)),
    ("np.repeat", lambda x: np.repeat(x, 2, axis=0)), ("np.diagonal", np.diagonal),
    ("np.take", lambda x: np.take(x, [2, 0], axis=1)), ("np.copy", np.copy),
    ("x.copy()", lambda x: x.copy()), ("np.split", lambda x: np.split(x, 3, axis=1)[1]),
    ("np.atleast_2d", lambda x: np.atleast_2d(x[0])),
    ("iteration", lambda x: np.stack(list(x))),
]


@pytest.mark.parametrize("label, f", STRUCTURAL, ids=[c[0] for c in STRUCTURAL])
def test_structural_operations_cost_no_tape_operations(label, f, rng):
    x = rng.standard_normal((2, 3))
    tape = wg.record(f, x)
    assert len(tape) == 0
    assert recorded_ops(tape) == []
    y = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(tape.forward(y), f(y))
    # The Jacobian is a 0/1 selection: exactly that of the same map on indices.
    expected = (np.asarray(f(np.arange(6.0).reshape(2, 3)))[..., None] == np.arange(6.0)) * 1.0
    for mode in ("forward", "reverse"):
        np.testing.assert_array_equal(tape.jacobian(y, mode=mode),
                                      expected.reshape(np.shape(f(y)) + (2, 3)))


# label, f on x of shape (3,): array functions given constants among their
# array arguments, and non-array arguments (indices, counts) that are arrays
CONSTANT_MIXES = [
    ("np.stack with a float", lambda x: np.stack([x[0], 1.0])),
    ("wg.stack with a float", lambda x: wg.stack([x[0], 2.0, x[2]])),
    ("np.concatenate with a list", lambda x: np.concatenate([x, [3.0, 4.0]])),
    ("np.concatenate with an array", lambda x: np.concatenate([C, x])),
    ("np.hstack with a float", lambda x: np.hstack([x, 0.0])),
    ("np.vstack with a list", lambda x: np.vstack([x, [0.0, 1.0, 2.0]])),
    ("np.stack with nested lists", lambda x: np.stack([[x[0], 1.0], [x[1], x[2]]])),
    ("np.append a float", lambda x: np.append(x, 1.0)),
    ("np.append onto a constant", lambda x: np.append([1.0, 2.0], x)),
    ("np.take with an index array", lambda x: np.take(x, np.array([2, 0]))),
    ("np.repeat with a counts array", lambda x: np.repeat(x, np.array([1, 0, 2]))),
    ("np.triu", lambda x: np.triu(x[:, None] * x)),
    ("np.diag of a vector", np.diag),
    ("constant matrix @ x", lambda x: A @ x),
    ("np.matmul(x, constant)", lambda x: np.matmul(x, A.T)),
    ("np.dot(constant, x)", lambda x: np.dot(A, x)),
]


@pytest.mark.parametrize("label, f", CONSTANT_MIXES, ids=[c[0] for c in CONSTANT_MIXES])
def test_constants_and_index_arguments_of_array_functions(label, f, rng):
    """Constants among the arrays stay constants (never read as slot
    indices); index and count arrays stay indices."""
    X = rng.uniform(0.5, 2.0, (3, 3))
    tape = wg.record(f, X[0])
    for x in X[1:]:
        np.testing.assert_array_equal(tape.forward(x), f(x))
        assert_rel(tape.jacobian(x), central_jacobian(f, x), FD_TOL, FD_TOL)


@pytest.mark.parametrize("n", [1, 2, 7, 100])
@pytest.mark.parametrize("op, recorded", [
    (np.sin, ("sin", Kind.UNARY)), (np.exp, ("exp", Kind.UNARY)),
    (np.negative, ("neg", Kind.UNARY)), (lambda x: x * 2.0, ("mul", Kind.VC)),
    (lambda x: x + x, ("add", Kind.VV)), (lambda x: 2.0 ** x, ("pow", Kind.CV)),
    (lambda x: wg.where(x > 0.0, x, x), ("gt", Kind.VC)),
], ids=["sin", "exp", "negative", "x*c", "x+x", "c**x", "where"])
def test_elementwise_op_over_n_elements_appends_n_operations(op, recorded, n, rng):
    x = rng.standard_normal(n)
    tape = wg.record(op, x)
    if recorded[0] == "gt":       # a comparison and a select per element
        assert elementwise_ops(tape) == [recorded] * n + [("select", Kind.UNARY)] * n
    else:
        assert elementwise_ops(tape) == [recorded] * n
    # Small arrays record scalar entries, larger ones one array entry.
    array_entry = n >= _array_recording.MIN_SIZE
    assert recorded_ops(tape)[0] == (("map", Kind.UNARY) if array_entry else recorded)


def test_one_op_per_element_for_every_shape(rng):
    for shape in [(), (1,), (4,), (2, 3), (2, 1, 3)]:
        x = rng.uniform(0.5, 2.0, shape)
        tape = wg.record(np.log, float(x) if shape == () else x)
        assert len(tape) == max(1, x.size)
        assert tape.in_shape == tape.out_shape == shape


def test_repeated_traced_value_is_one_slot():
    """x[0] used many times costs no copies; x * x is one multiplication."""
    tape = wg.record(lambda x: x[0] * x[0] + x[0], np.array([3.0, 1.0]))
    assert recorded_ops(tape) == [("mul", Kind.VV), ("add", Kind.VV)]
    np.testing.assert_array_equal(tape.gradient([3.0, 1.0]), [7.0, 0.0])
    np.testing.assert_array_equal(tape.gradient([-2.0, 1.0]), [-3.0, 0.0])


# ---- constants ------------------------------------------------------------------------

def test_constants_are_not_tape_inputs(rng):
    weights = rng.standard_normal(4)
    bias = 0.5

    def f(x):
        return np.sum(weights * np.tanh(x + bias)) + 3.0

    x = rng.standard_normal(4)
    tape = wg.record(f, x)
    assert tape.n_inputs == 4 and tape.n_params == 0
    # var-const operations: the constants live in the constant pool.
    assert all(kind in (Kind.UNARY, Kind.VC, Kind.CV, Kind.VV) for _, kind in recorded_ops(tape))
    assert ("add", Kind.VC) in recorded_ops(tape) and ("mul", Kind.CV) in recorded_ops(tape)
    y = rng.standard_normal(4)
    assert_rel(tape.forward(y), f(y), VALUE_RTOL)
    assert_rel(tape.gradient(y), weights / np.cosh(y + bias) ** 2, 1e-14)


def test_constant_output_entries_have_zero_derivative():
    tape = wg.record(lambda x: wg.array([x[0] * 2.0, 7.0, x[1]]), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(tape.forward([3.0, 4.0]), [6.0, 7.0, 4.0])
    np.testing.assert_array_equal(tape.jacobian([3.0, 4.0], mode="reverse"),
                                  [[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(tape.jacobian([3.0, 4.0], mode="forward"),
                                  [[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])


def test_function_of_nothing_traced_records_a_constant():
    tape = wg.record(lambda x: 4.0, np.array([1.0, 2.0]))
    assert tape.forward([5.0, 6.0]) == 4.0
    np.testing.assert_array_equal(tape.gradient([5.0, 6.0]), [0.0, 0.0])


# ---- dynamic parameters and static arguments -----------------------------------------------

def _model(x, scale, weights, power, label):
    assert label == "ok"
    return scale * np.sum(weights * x ** power)


def test_dynamic_parameters_replay_at_new_values(rng):
    x = rng.uniform(0.5, 2.0, 3)
    w = rng.standard_normal(3)
    tape = wg.record(_model, x, 2.0, w, 3, "ok")
    assert tape.n_inputs == 3
    assert tape.n_params == 1 + 3
    expected_grad = lambda x, s, w: s * w * 3 * x ** 2   # noqa: E731
    # Omitted extras default to the recorded values.
    assert_rel(tape.gradient(x), expected_grad(x, 2.0, w), 1e-14)
    assert_rel(tape.forward(x), _model(x, 2.0, w, 3, "ok"), VALUE_RTOL)
    # New parameter values, no retaping: the same as recording at them.
    y = rng.uniform(0.5, 2.0, 3)
    w2 = rng.standard_normal(3)
    assert_rel(tape.gradient(y, -1.5, w2), expected_grad(y, -1.5, w2), 1e-14)
    assert_rel(tape.forward(y, -1.5, w2, 3, "ok"), _model(y, -1.5, w2, 3, "ok"), VALUE_RTOL)
    assert_rel(tape.gradient(y, -1.5), expected_grad(y, -1.5, w), 1e-14)
    fresh = wg.record(_model, y, -1.5, w2, 3, "ok")
    np.testing.assert_array_equal(tape.gradient(y, -1.5, w2), fresh.gradient(y))
    # Every tape method takes the parameters after its own operands.
    v = rng.standard_normal(3)
    assert_rel(tape.jvp(y, v, -1.5, w2), expected_grad(y, -1.5, w2) @ v, 1e-13)
    assert_rel(tape.vjp(y, 2.0, -1.5, w2), 2.0 * expected_grad(y, -1.5, w2), 1e-14)
    assert_rel(tape.jacobian(y, -1.5, w2, mode="forward"), expected_grad(y, -1.5, w2), 1e-14)
    # Parameters are not differentiated: the gradient has x's shape only.
    assert tape.gradient(y, -1.5, w2).shape == (3,)
    # A batch of points at one parameter value.
    Y = rng.uniform(0.5, 2.0, (4, 3))
    assert_rel(tape.gradient(Y, 0.5, w2), expected_grad(Y, 0.5, w2), 1e-14)
    check_grads(_model, y, -1.5, w2, 3, "ok")


@pytest.mark.parametrize("param", [2.0, np.float64(2.0), np.float32(2.0), np.array(2.0),
                                   np.array([2.0, 3.0], dtype=np.float32)],
                         ids=["float", "np.float64", "np.float32", "0-d array", "float32 array"])
def test_floating_extras_are_dynamic(param):
    tape = wg.record(lambda x, p: x * p, np.ones(2), param)
    assert tape.n_params == np.size(param)
    new = np.asarray(param) * 0 + 5.0
    np.testing.assert_array_equal(tape.forward([1.0, 2.0], new), [5.0, 10.0])
    np.testing.assert_array_equal(tape.jacobian([1.0, 2.0], new), 5.0 * np.eye(2))


@pytest.mark.parametrize("static, changed", [
    (3, 4), (True, False), ("sum", "prod"), ((1, 2), (2, 1)), (np.array([1, 2]), np.array([2, 2])),
    (None, 0),
], ids=["int", "bool", "str", "tuple", "int array", "None"])
def test_changed_static_argument_is_an_error(static, changed):
    def f(x, s):
        return x * 2.0

    tape = wg.record(f, np.ones(2), static)
    assert tape.n_params == 0
    # The same static value is fine.
    np.testing.assert_array_equal(tape.forward([1.0, 2.0], static), [2.0, 4.0])
    with pytest.raises(ValueError, match="static argument changed") as info:
        tape.forward([1.0, 2.0], changed)
    assert isinstance(info.value, wg.WengertError)
    with pytest.raises(wg.WengertError, match="static argument changed"):
        tape.jacobian([1.0, 2.0], changed)


def test_static_argument_is_baked_in():
    def f(x, n):
        return sum(x[i] ** n for i in range(2))

    tape = wg.record(f, np.ones(2), 3)
    np.testing.assert_array_equal(tape.gradient([1.0, 2.0]), [3.0, 12.0])
    np.testing.assert_array_equal(tape.gradient([1.0, 2.0], 3), [3.0, 12.0])


# ---- what f may be ---------------------------------------------------------------------------

class _Quadratic:
    def __init__(self, a):
        self.a = a

    def __call__(self, x):
        return self.a * np.sum(x ** 2)

    def method(self, x, shift):
        return np.sum((x - shift) ** 2)


def _scaled(x, scale, *, power):
    return scale * np.sum(x ** power)


@pytest.mark.parametrize("f, extras, grad", [
    (lambda x: np.sum(x ** 2), (), lambda x: 2 * x),
    (_Quadratic(3.0), (), lambda x: 6 * x),
    (_Quadratic(1.0).method, (1.0,), lambda x: 2 * (x - 1.0)),
    (functools.partial(_scaled, power=3), (2.0,), lambda x: 6 * x ** 2),
    (functools.partial(_scaled, scale=2.0, power=2), (), lambda x: 4 * x),
    (functools.partial(functools.partial(_scaled, power=2), scale=0.5), (), lambda x: x),
], ids=["lambda", "callable object", "bound method", "partial", "partial with args",
        "nested partial"])
def test_any_callable_can_be_recorded(f, extras, grad, rng):
    x = rng.standard_normal(3)
    tape = wg.record(f, x, *extras)
    y = rng.standard_normal(3)
    assert_rel(tape.gradient(y), grad(y), 1e-15)
    assert_rel(tape.forward(y), f(y, *extras), VALUE_RTOL)


def test_numpy_ufunc_itself_as_f(rng):
    x = rng.uniform(0.5, 2.0, 4)
    tape = wg.record(np.log, x)
    np.testing.assert_array_equal(tape.jacobian(x), np.diag(1 / x))


# ---- shapes of inputs and results --------------------------------------------------------

def test_float_input_gives_float_results():
    tape = wg.record(lambda x: x ** 3 + np.sin(x), 0.5)
    assert tape.in_shape == () and tape.n_inputs == 1
    x = 1.3
    for result, expected in [(tape.forward(x), x ** 3 + np.sin(x)),
                             (tape.gradient(x), 3 * x ** 2 + np.cos(x)),
                             (tape.jvp(x, 2.0), 2 * (3 * x ** 2 + np.cos(x))),
                             (tape.vjp(x, 2.0), 2 * (3 * x ** 2 + np.cos(x))),
                             (tape.jacobian(x, mode="forward"), 3 * x ** 2 + np.cos(x)),
                             (tape.jacobian(x, mode="reverse"), 3 * x ** 2 + np.cos(x))]:
        assert type(result) is float
        assert_rel(result, expected, 1e-15)
    value, grad = tape.value_and_gradient(x)
    assert type(value) is float and type(grad) is float
    assert_rel(value, x ** 3 + np.sin(x), 1e-15)
    # A batch of scalar points gives arrays.
    X = np.array([0.1, 0.2, 0.3])
    assert_rel(tape.gradient(X), 3 * X ** 2 + np.cos(X), 1e-15)
    assert tape.forward(X).shape == (3,)


def test_numpy_and_list_and_int_inputs():
    tape = wg.record(lambda x: x[0] * x[1], [2, 3])
    assert tape.in_shape == (2,)
    assert tape.forward([4, 5]) == 20.0
    np.testing.assert_array_equal(tape.gradient(np.array([4, 5])), [5.0, 4.0])
    assert wg.record(lambda x: x * x, 3).gradient(2) == 4.0


def test_scalar_input_vector_output():
    tape = wg.record(lambda t: wg.stack([np.cos(t), np.sin(t), t]), 0.0)
    t = 0.7
    J = tape.jacobian(t)
    assert J.shape == (3,)
    assert_rel(J, [-np.sin(t), np.cos(t), 1.0], 1e-15)
    assert_rel(tape.jvp(t, 1.0), J, 1e-15)
    assert_rel(tape.vjp(t, [1.0, 1.0, 1.0]), float(np.sum(J)), 1e-15)


def test_output_of_shape_one_is_not_a_scalar():
    tape = wg.record(lambda x: np.sum(x, keepdims=True) * 2.0, np.ones(3))
    assert tape.out_shape == (1,)
    out = tape.forward([1.0, 2.0, 3.0])
    assert isinstance(out, np.ndarray) and out.shape == (1,) and out[0] == 12.0
    with pytest.raises(ValueError, match=r"\(1,\)") as info:
        tape.gradient([1.0, 2.0, 3.0])
    assert isinstance(info.value, wg.WengertError)
    np.testing.assert_array_equal(tape.jacobian([1.0, 2.0, 3.0]), [[2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(tape.vjp([1.0, 2.0, 3.0], [1.0]), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 1, 2)])
def test_result_shapes_follow_jax(shape, rng):
    x = rng.uniform(0.5, 2.0, shape)
    tape = wg.record(lambda z: np.stack([np.sum(z ** 2), np.prod(z)]), x)
    assert tape.out_shape == (2,)
    assert tape.jacobian(x).shape == (2,) + shape
    assert tape.jvp(x, np.ones(shape)).shape == (2,)
    assert tape.jvp(x, np.ones(shape + (4,))).shape == (2, 4)
    assert tape.vjp(x, np.ones(2)).shape == shape
    assert tape.vjp(x, np.ones((5, 2))).shape == (5,) + shape
    scalar = wg.record(lambda z: np.sum(np.sin(z)), x)
    assert scalar.gradient(x).shape == shape
    assert_rel(scalar.gradient(x), np.cos(x), 1e-15)
    X = rng.uniform(0.5, 2.0, (4,) + shape)
    assert scalar.gradient(X).shape == (4,) + shape
    assert tape.jacobian(X).shape == (4, 2) + shape
    assert tape.forward(X).shape == (4, 2)


def test_results_are_fresh_arrays(rng):
    x = rng.standard_normal(3)
    vector = wg.record(lambda z: z * 2.0, x)
    scalar = wg.record(lambda z: np.sum(z ** 2), x)
    X = rng.standard_normal((2, 3))
    calls = [
        lambda: vector.forward(x), lambda: vector.forward(X), lambda: vector.jacobian(x),
        lambda: vector.jacobian(x, mode="reverse"), lambda: vector.jvp(x, x),
        lambda: vector.vjp(x, x), lambda: scalar.gradient(x), lambda: scalar.gradient(X),
        lambda: scalar.value_and_gradient(x)[1], lambda: vector.jacobian(X),
    ]
    for call in calls:
        first = call()
        expected = first.copy()
        first[...] = 1e300
        second = call()
        np.testing.assert_array_equal(second, expected)
        assert not np.shares_memory(first, second)


def test_replay_does_not_modify_its_arguments(rng):
    x = rng.standard_normal(3)
    v = rng.standard_normal(3)
    keep_x, keep_v = x.copy(), v.copy()
    tape = wg.record(lambda z: np.sin(z) * z, x)
    tape.forward(x), tape.jvp(x, v), tape.vjp(x, v), tape.jacobian(x)
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(v, keep_v)


def test_recording_point_is_not_special(rng):
    """A tape recorded at one point replays exactly as one recorded at another."""
    f = lambda z: np.sum(np.exp(z[:2]) * z[1:]) / np.linalg.norm(z)   # noqa: E731
    a, b = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(wg.record(f, a).gradient(b), wg.record(f, b).gradient(b))
    np.testing.assert_array_equal(wg.record(f, a).forward(b), wg.record(f, b).forward(b))


def test_len_and_counts():
    tape = wg.record(lambda x, p: np.sin(x) * p, np.ones((2, 3)), np.ones(3))
    assert len(tape) == tape.n_ops == 12
    assert tape.n_inputs == 6 and tape.n_params == 3 and tape.n_outputs == 6
    assert tape.in_shape == (2, 3) and tape.out_shape == (2, 3)


@pytest.mark.parametrize("call, error", [
    (lambda x: np.var(x, ddof="1"), wg.ArgumentTypeError),
    (lambda x: np.std(x, ddof=True), wg.ArgumentTypeError),
    (lambda x: np.var(x, axis=2), wg.AxisError),
    (lambda x: np.var(x, out=np.empty(())), wg.TracingError),
    (lambda x: np.ptp(x, out=np.empty(())), wg.TracingError),
    (lambda x: np.average(x, weights=[1.0, 2.0]), wg.ShapeError),
    (lambda x: np.average(x, axis=1, weights=[1.0, 2.0]), wg.ShapeError),
    (lambda x: np.average(x, weights=np.zeros((2, 3))), wg.ArgumentError),
    (lambda x: np.average(x, weights=np.full((2, 3), 1j)), wg.ArgumentTypeError),
    (lambda x: np.average(x, weights="abc"), wg.ArgumentTypeError),
], ids=["ddof str", "ddof bool", "axis", "var out", "ptp out", "weights shape",
        "weights along axis", "weights sum to zero", "complex weights", "str weights"])
def test_statistics_refuse_what_numpy_refuses(call, error):
    with pytest.raises(error):
        wg.record(call, np.ones((2, 3)))


def test_variance_with_no_degrees_of_freedom_divides_by_zero_as_numpy():
    tape = wg.record(lambda x: np.var(x, ddof=3), np.arange(3.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        assert tape.forward(np.arange(3.0)) == np.inf
        assert np.isnan(tape.forward(np.ones(3)))


@pytest.mark.parametrize("axis", [0, 1, None])
def test_cumprod_over_long_rows_records_array_entries(axis, rng):
    x = rng.uniform(0.5, 1.5, (9, 12))
    tape = wg.record(lambda v: np.cumprod(v, axis=axis), x)
    if axis is not None:                       # each step covers 9 or 12 elements
        assert len(tape) < x.size
    assert_rel(tape.forward(x), np.cumprod(x, axis=axis), 1e-14)
    check_grads(lambda v: np.cumprod(v, axis=axis), x)


@pytest.mark.parametrize("call, error", [
    (lambda x: np.cumprod(x, out=np.empty(6)), wg.TracingError),
    (lambda x: np.cumprod(x, axis=3), wg.AxisError),
    (lambda x: TRAPEZOID(x, x=[0.0, 1.0]), wg.ShapeError),
    (lambda x: TRAPEZOID(x, axis=-3), wg.AxisError),
], ids=["cumprod out", "cumprod axis", "trapezoid points", "trapezoid axis"])
def test_array_functions_refuse_what_numpy_refuses(call, error):
    with pytest.raises(error):
        wg.record(call, np.ones((2, 3)))
