"""Second order: every operation's second-derivative rule, hvp and hessian.

The spec tables of test_operations drive one Hessian test per way of calling
each operation (and per operand kind for binary ones). The reference is the
central difference of the tape's own gradient, which is exact to rounding
(test_operations checks it), so a wrong second-order rule shows as an error
of order one while differencing noise stays near 1e-8.
"""
import numpy as np
import pytest

import wengert as wg
from wengert._opcodes import Kind

from _helpers import assert_rel
from test_operations import BINARY, UNARY, sample

FD_RTOL = 2e-6
EPS = 1e-5


def gradient_differences(tape, x, *args, w=None):
    """Central differences of the (weighted) gradient: a Hessian reference."""
    x = np.asarray(x, dtype=np.float64)
    if w is None:
        grad = lambda z: tape.gradient(z, *args)
    else:
        grad = lambda z: tape.vjp(z, w, *args)
    H = np.empty((x.size, x.size))
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = EPS * max(1.0, abs(x.reshape(-1)[j]))
        step = step.reshape(x.shape)
        H[:, j] = ((np.asarray(grad(x + step)) - np.asarray(grad(x - step)))
                   / (2 * step.reshape(-1)[j])).reshape(-1)
    return H


def unique(specs):
    seen, rows = set(), []
    for spec in specs:
        if spec.label not in seen:
            seen.add(spec.label)
            rows.append(spec)
    return rows


@pytest.mark.parametrize("spec", unique(UNARY), ids=lambda s: s.label)
def test_unary_second_derivatives(spec, rng):
    x = sample(rng, spec.domain, (4,))
    tape = wg.record(lambda z: np.sum(spec.call(z) * np.array([1.0, 2.0, 3.0, 4.0])), x)
    H = tape.hessian(x)
    assert_rel(H - np.diag(np.diag(H)), np.zeros((4, 4)), 0.0)   # elementwise: diagonal
    assert_rel(H, gradient_differences(tape, x), FD_RTOL, atol=1e-6)


@pytest.mark.parametrize("kind", [Kind.VV, Kind.VC, Kind.CV], ids=lambda k: k.name)
@pytest.mark.parametrize("spec", unique(BINARY), ids=lambda s: s.label)
def test_binary_second_derivatives(spec, kind, rng):
    a = sample(rng, spec.domain_a, (3,))
    b = sample(rng, spec.domain_b, (3,))
    if kind == Kind.VV:
        f, x = (lambda z: np.sum(spec.call(z[0], z[1]) * np.array([1.0, -2.0, 0.5]))), np.stack([a, b])
    elif kind == Kind.VC:
        f, x = (lambda z: np.sum(spec.call(z, b) * np.array([1.0, -2.0, 0.5]))), a
    else:
        f, x = (lambda z: np.sum(spec.call(a, z) * np.array([1.0, -2.0, 0.5]))), b
    tape = wg.record(f, x)
    assert_rel(tape.hessian(x), gradient_differences(tape, x).reshape(x.shape + x.shape),
               FD_RTOL, atol=1e-6)


# Closed forms, for a few operations where a sign or factor slip would still
# pass a loose finite-difference check at an unlucky point.
CLOSED = [
    ("x*y*z", lambda x: x[0] * x[1] * x[2], [1.5, -2.0, 0.5],
     lambda x: np.array([[0, x[2], x[1]], [x[2], 0, x[0]], [x[1], x[0], 0]])),
    ("x/y", lambda x: x[0] / x[1], [1.5, -2.0],
     lambda x: np.array([[0, -1 / x[1] ** 2], [-1 / x[1] ** 2, 2 * x[0] / x[1] ** 3]])),
    ("x**y", lambda x: x[0] ** x[1], [1.5, 2.5],
     lambda x: np.array([
         [x[1] * (x[1] - 1) * x[0] ** (x[1] - 2), x[0] ** (x[1] - 1) * (1 + x[1] * np.log(x[0]))],
         [x[0] ** (x[1] - 1) * (1 + x[1] * np.log(x[0])), np.log(x[0]) ** 2 * x[0] ** x[1]]])),
    ("sin(x) exp(y)", lambda x: np.sin(x[0]) * np.exp(x[1]), [0.7, -0.3],
     lambda x: np.array([[-np.sin(x[0]) * np.exp(x[1]), np.cos(x[0]) * np.exp(x[1])],
                         [np.cos(x[0]) * np.exp(x[1]), np.sin(x[0]) * np.exp(x[1])]])),
    ("hypot", lambda x: np.hypot(x[0], x[1]), [3.0, 4.0],
     lambda x: np.array([[16, -12], [-12, 9]]) / 125.0),
    ("logaddexp", lambda x: np.logaddexp(x[0], x[1]), [0.3, -0.4],
     lambda x: (lambda p: p * (1 - p) * np.array([[1, -1], [-1, 1]]))(1 / (1 + np.exp(x[1] - x[0])))),
    ("arctan2", lambda x: np.arctan2(x[0], x[1]), [1.0, 2.0],
     lambda x: np.array([[-2 * x[0] * x[1], x[0] ** 2 - x[1] ** 2],
                         [x[0] ** 2 - x[1] ** 2, 2 * x[0] * x[1]]]) / (x[0] ** 2 + x[1] ** 2) ** 2),
]


@pytest.mark.parametrize("label, f, x, exact", CLOSED, ids=[c[0] for c in CLOSED])
def test_hessian_matches_closed_form(label, f, x, exact):
    tape = wg.record(f, np.array(x))
    assert_rel(tape.hessian(x), exact(np.array(x)), 1e-14, atol=1e-15)


def rosenbrock(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_hessian(x):
    n = x.size
    H = np.zeros((n, n))
    i = np.arange(n - 1)
    H[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
    H[i + 1, i + 1] += 200
    H[i, i + 1] = H[i + 1, i] = -400 * x[i]
    return H


def test_rosenbrock_hessian_hvp_and_batches(rng):
    x = rng.uniform(-2, 2, 7)
    tape = wg.record(rosenbrock, x)
    H = tape.hessian(x)
    assert_rel(H, rosenbrock_hessian(x), 1e-14, atol=1e-12)
    assert np.array_equal(H, H.T)
    v = rng.normal(size=7)
    assert_rel(tape.hvp(x, v), H @ v, 1e-13, atol=1e-12)
    V = rng.normal(size=(7, 3))
    assert_rel(tape.hvp(x, V), H @ V, 1e-13, atol=1e-12)
    X = rng.uniform(-2, 2, (4, 7))
    HB = tape.hessian(X)
    assert HB.shape == (4, 7, 7)
    for b in range(4):
        assert_rel(HB[b], rosenbrock_hessian(X[b]), 1e-14, atol=1e-12)
        assert_rel(tape.hvp(X, V)[b], rosenbrock_hessian(X[b]) @ V, 1e-13, atol=1e-12)
    # v batched with x, and v shared by the batch
    VB = rng.normal(size=(4, 7))
    out = tape.hvp(X, VB)
    for b in range(4):
        assert_rel(out[b], rosenbrock_hessian(X[b]) @ VB[b], 1e-13, atol=1e-12)


def test_vector_output_needs_a_weight_and_uses_it(rng):
    f = lambda x: np.stack([np.sin(x[0]) * x[1], np.exp(x[0] * x[1]), x[2] ** 3])
    x = np.array([0.5, 0.3, -1.2])
    tape = wg.record(f, x)
    with pytest.raises(ValueError, match="weight"):
        tape.hessian(x)
    with pytest.raises(wg.WengertError):
        tape.hvp(x, np.ones(3))
    w = np.array([1.0, 2.0, -0.5])
    H = tape.hessian(x, w=w)
    assert_rel(H, gradient_differences(tape, x, w=w), FD_RTOL, atol=1e-7)
    assert_rel(tape.hvp(x, np.eye(3), w=w), H, 1e-14, atol=1e-15)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        tape.hessian(x, w=np.ones(2))


def test_hessian_with_dynamic_parameters():
    tape = wg.record(lambda x, a: a * x[0] ** 2 * x[1], np.ones(2), 1.0)
    assert_rel(tape.hessian([1.0, 2.0], 3.0), 3.0 * np.array([[4.0, 2.0], [2.0, 0.0]]), 0.0)


def test_scalar_input_hessian_is_a_float():
    tape = wg.record(lambda x: x ** 3, 2.0)
    assert tape.hessian(2.0) == 12.0 and isinstance(tape.hessian(2.0), float)
    assert tape.hvp(2.0, 0.5) == 6.0


@pytest.mark.parametrize("x", [0.0, -1.0, 4.0])
def test_branch_not_taken_never_leaks_into_second_order(x):
    def f(z):
        return np.sum(wg.where(z > 0, np.sqrt(z) ** 3, 0.0) + wg.where(z > 0.5, np.log(z), 0.0))
    tape = wg.record(f, np.array([x]))
    with np.errstate(all="ignore"):
        H = tape.hessian(np.array([x]))
        v = tape.hvp(np.array([x]), np.array([1.0]))
    expected = 0.75 / np.sqrt(x) - 1 / x ** 2 if x > 0.5 else 0.0
    assert np.isfinite(H).all() and np.isfinite(v).all()
    assert_rel(H, np.array([[expected]]), 1e-14)


def test_guards_are_checked_by_second_order_drivers():
    def f(x):
        if x[0] > 0:
            return x[0] ** 3
        return -x[0] ** 2
    tape = wg.record(f, np.array([1.0]))
    with pytest.raises(wg.BranchChangedError):
        tape.hessian(np.array([-1.0]))
    with pytest.raises(wg.BranchChangedError):
        tape.hvp(np.array([-1.0]), np.array([1.0]))


def test_transforms_hessian_and_hvp_retape_on_branch_flips():
    def f(x):
        if x[0] > 0:
            return x[0] ** 3 * x[1]
        return -x[0] ** 2 * x[1]
    H = wg.hessian(f)
    hvp = wg.hvp(f)
    assert_rel(H(np.array([1.0, 2.0])), np.array([[12.0, 3.0], [3.0, 0.0]]), 0.0)
    assert_rel(H(np.array([-1.0, 2.0])), np.array([[-4.0, 2.0], [2.0, 0.0]]), 0.0)
    assert_rel(hvp(np.array([-1.0, 2.0]), np.array([1.0, 0.0])), np.array([-4.0, 2.0]), 0.0)


def test_hvp_costs_no_more_than_its_shape_says():
    # One direction or k: same numbers.
    x = np.linspace(-1, 1, 9)
    tape = wg.record(rosenbrock, x)
    V = np.random.default_rng(0).normal(size=(9, 4))
    together = tape.hvp(x, V)
    apart = np.stack([tape.hvp(x, V[:, j]) for j in range(4)], axis=1)
    assert_rel(together, apart, 1e-15, atol=1e-13)


# Closed-form second derivatives of every one-argument operation of the table.
SECOND = {
    "neg": (lambda x: -x, lambda x: 0 * x, (-3.0, 3.0)),
    "square": (np.square, lambda x: 2 + 0 * x, (-3.0, 3.0)),
    "sqrt": (np.sqrt, lambda x: -0.25 * x ** -1.5, (0.2, 4.0)),
    "cbrt": (np.cbrt, lambda x: -2.0 / 9.0 * np.abs(x) ** (-5.0 / 3.0) * np.sign(x), (0.3, 3.0)),
    "reciprocal": (lambda x: 1.0 / x, lambda x: 2.0 / x ** 3, (0.3, 3.0)),
    "exp": (np.exp, np.exp, (-3.0, 3.0)),
    "expm1": (np.expm1, np.exp, (-30.0, 3.0)),
    "log": (np.log, lambda x: -1.0 / x ** 2, (0.2, 4.0)),
    "log1p": (np.log1p, lambda x: -1.0 / (1 + x) ** 2, (-0.8, 4.0)),
    "log2": (np.log2, lambda x: -1.0 / (x ** 2 * np.log(2.0)), (0.2, 4.0)),
    "log10": (np.log10, lambda x: -1.0 / (x ** 2 * np.log(10.0)), (0.2, 4.0)),
    "sin": (np.sin, lambda x: -np.sin(x), (-3.0, 3.0)),
    "cos": (np.cos, lambda x: -np.cos(x), (-3.0, 3.0)),
    "tan": (np.tan, lambda x: 2 * np.tan(x) / np.cos(x) ** 2, (-1.2, 1.2)),
    "arcsin": (np.arcsin, lambda x: x / (1 - x * x) ** 1.5, (-0.9, 0.9)),
    "arccos": (np.arccos, lambda x: -x / (1 - x * x) ** 1.5, (-0.9, 0.9)),
    "arctan": (np.arctan, lambda x: -2 * x / (1 + x * x) ** 2, (-3.0, 3.0)),
    "sinh": (np.sinh, np.sinh, (-3.0, 3.0)),
    "cosh": (np.cosh, np.cosh, (-3.0, 3.0)),
    "tanh": (np.tanh, lambda x: -2 * np.tanh(x) / np.cosh(x) ** 2, (-12.0, 12.0)),
    "arcsinh": (np.arcsinh, lambda x: -x / (x * x + 1) ** 1.5, (-3.0, 3.0)),
    "arccosh": (np.arccosh, lambda x: -x / (x * x - 1) ** 1.5, (1.1, 5.0)),
    "arctanh": (np.arctanh, lambda x: 2 * x / (1 - x * x) ** 2, (-0.9, 0.9)),
    "abs": (np.abs, lambda x: 0 * x, (0.3, 3.0)),
    "sign": (np.sign, lambda x: 0 * x, (0.3, 3.0)),
    "sigmoid": (wg.sigmoid,
                lambda x: -np.tanh(x / 2) / (4 * np.cosh(x / 2) ** 2), (-30.0, 30.0)),
    "erf": (wg.erf, lambda x: -4 * x / np.sqrt(np.pi) * np.exp(-x * x), (-3.0, 3.0)),
    "erfc": (wg.erfc, lambda x: 4 * x / np.sqrt(np.pi) * np.exp(-x * x), (-3.0, 3.0)),
}


def test_every_unary_operation_has_a_closed_form_here():
    from wengert import _opcodes as ops
    unary = {op.name for op in ops.OPERATIONS if op.arity == 1}
    assert unary == set(SECOND)


@pytest.mark.parametrize("name", sorted(SECOND))
def test_unary_second_derivative_matches_closed_form(name, rng):
    f, second, (low, high) = SECOND[name]
    x = rng.uniform(low, high, 6)
    tape = wg.record(lambda z: np.sum(f(z)), x)
    assert_rel(np.diag(tape.hessian(x)), second(x), 1e-13, atol=1e-300)
    assert_rel(tape.hvp(x, np.ones(6)), second(x), 1e-13, atol=1e-300)
