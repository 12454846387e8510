"""Derivatives at kinks and through selects (docs/architecture.md, "Kinks",
and the README's "Branches and piecewise functions"): abs'(0) = 0, a tie of maximum/minimum gives each argument
half, sign' = 0, sqrt'(0) = inf, and in where() the branch not taken
contributes exactly zero even where it is NaN or infinite.

Every row is checked every way: gradient, jvp, vjp, jacobian forward and
reverse, and in a batch; all must give exactly the expected Jacobian.
"""
import numpy as np
import pytest

import wengert as wg

from _helpers import assert_all_ways_equal

INF = np.inf


def _where_sqrt(where):
    return lambda x: where(x > 0, np.sqrt(x), 0.0)


def _where_log(where):
    return lambda x: where(x > 0, np.log(x), 0.0)


# label, f, point, expected Jacobian (out.shape + x.shape), expected value
KINKS = [
    ("abs'(0)=0 np.abs", np.abs, 0.0, 0.0, 0.0),
    ("abs'(-0.0)=0", np.abs, -0.0, 0.0, 0.0),
    ("abs'(0)=0 abs()", abs, 0.0, 0.0, 0.0),
    ("abs'(0)=0 wg.abs", wg.abs, 0.0, 0.0, 0.0),
    ("abs on an array", np.abs, [-2.0, 0.0, 3.0], np.diag([-1.0, 0.0, 1.0]), [2.0, 0.0, 3.0]),
    ("sign'=0", np.sign, [-2.0, 0.0, 3.0], np.zeros((3, 3)), [-1.0, 0.0, 1.0]),
    ("wg.sign'(0)=0", wg.sign, 0.0, 0.0, 0.0),
    ("maximum tie var-var", lambda x: np.maximum(x[0], x[1]), [1.5, 1.5], [0.5, 0.5], 1.5),
    ("minimum tie var-var", lambda x: np.minimum(x[0], x[1]), [1.5, 1.5], [0.5, 0.5], 1.5),
    ("wg.maximum tie", lambda x: wg.maximum(x[0], x[1]), [-2.0, -2.0], [0.5, 0.5], -2.0),
    ("wg.minimum tie", lambda x: wg.minimum(x[0], x[1]), [-2.0, -2.0], [0.5, 0.5], -2.0),
    ("maximum tie var-const", lambda x: np.maximum(x, 1.0), 1.0, 0.5, 1.0),
    ("maximum tie const-var", lambda x: np.maximum(1.0, x), 1.0, 0.5, 1.0),
    ("minimum tie var-const", lambda x: np.minimum(x, 1.0), 1.0, 0.5, 1.0),
    ("minimum tie const-var", lambda x: np.minimum(1.0, x), 1.0, 0.5, 1.0),
    ("maximum(x, x)", lambda x: np.maximum(x, x), 2.0, 1.0, 2.0),
    ("maximum off the tie", lambda x: np.maximum(x[0], x[1]), [3.0, 1.0], [1.0, 0.0], 3.0),
    ("minimum off the tie", lambda x: np.minimum(x[0], x[1]), [3.0, 1.0], [0.0, 1.0], 1.0),
    ("np.clip at and between bounds", lambda x: np.clip(x, -1.0, 1.0), [-1.0, 0.5, 1.0, 2.0],
     np.diag([0.5, 1.0, 0.5, 0.0]), [-1.0, 0.5, 1.0, 1.0]),
    ("sqrt'(0)=inf np.sqrt", np.sqrt, 0.0, INF, 0.0),
    ("sqrt'(0)=inf wg.sqrt", wg.sqrt, 0.0, INF, 0.0),
    ("where(x>0, sqrt(x), 0) wg.where", _where_sqrt(wg.where), [0.0, -1.0, 4.0],
     np.diag([0.0, 0.0, 0.25]), [0.0, 0.0, 2.0]),
    ("where(x>0, sqrt(x), 0) np.where", _where_sqrt(np.where), [0.0, -1.0, 4.0],
     np.diag([0.0, 0.0, 0.25]), [0.0, 0.0, 2.0]),
    ("where(x>0, sqrt(x), 0) scalar at 0", _where_sqrt(wg.where), 0.0, 0.0, 0.0),
    ("where(x>0, sqrt(x), 0) scalar at -1", _where_sqrt(wg.where), -1.0, 0.0, 0.0),
    ("where(x>0, log(x), 0) at -1", _where_log(wg.where), -1.0, 0.0, 0.0),
    ("where(x>0, log(x), 0) np.where", _where_log(np.where), [-1.0, 0.0, 2.0],
     np.diag([0.0, 0.0, 0.5]), [0.0, 0.0, np.log(2.0)]),
    ("where(x!=0, 1/x, 0): inf branch", lambda x: wg.where(x != 0, 1.0 / x, 0.0), [0.0, 2.0],
     np.diag([0.0, -0.25]), [0.0, 0.5]),
    ("where(x>0, x*log(x), 0) summed", lambda x: np.sum(np.where(x > 0, x * np.log(x), 0.0)),
     [-1.0, 0.0, 1.0], [0.0, 0.0, 1.0], 0.0),
    ("where(x<0, 0, sqrt(x)): taken branch is inf", lambda x: wg.where(x < 0, 0.0, np.sqrt(x)),
     0.0, INF, 0.0),
    ("NaN branch then arithmetic", lambda x: 2.0 * wg.where(x > 0, np.sqrt(x), 0.0) + x,
     -4.0, 1.0, -4.0),
    ("nested where", lambda x: wg.where(x > 0, np.log(x), wg.where(x < -1, np.sqrt(-1 - x), x)),
     [2.0, -0.5, -5.0, -1.0], np.diag([0.5, 1.0, -0.25, 1.0]), [np.log(2.0), -0.5, 2.0, -1.0]),
]


@pytest.mark.parametrize("label, f, x, expected, value", KINKS, ids=[k[0] for k in KINKS])
def test_kink_convention(label, f, x, expected, value):
    tape = wg.record(f, x)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(tape.forward(x), value)
        assert_all_ways_equal(tape, x, expected)


@pytest.mark.parametrize("label, f, x, expected, value", KINKS, ids=[k[0] for k in KINKS])
def test_kink_convention_when_recorded_elsewhere(label, f, x, expected, value):
    """The conventions are the compiled rules', not the recording's: a tape
    recorded at a smooth point gives them at the kink too (for selects,
    recorded where the other branch is taken)."""
    x = np.asarray(x, dtype=np.float64)
    elsewhere = 3.0 + np.arange(x.size, dtype=float).reshape(x.shape)
    tape = wg.record(f, float(elsewhere) if x.ndim == 0 else elsewhere)
    assert tape.n_guards == 0
    point = float(x) if x.ndim == 0 else x
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(tape.forward(point), value)
        assert_all_ways_equal(tape, point, expected)


def test_where_records_no_guard_and_both_branches():
    tape = wg.record(_where_sqrt(wg.where), np.array([4.0, -1.0]))
    assert tape.n_guards == 0
    # Both branches are valid at replay: the condition is re-evaluated.
    np.testing.assert_array_equal(tape.forward([-1.0, 9.0]), [0.0, 3.0])
    np.testing.assert_array_equal(tape.jacobian([-1.0, 9.0]), np.diag([0.0, 1.0 / 6.0]))


def test_zero_seeds_never_become_nan():
    """0 * inf is 0 in a tangent or adjoint: an unseeded direction stays 0
    at sqrt(0), and a zero output weight gives a zero gradient."""
    tape = wg.record(lambda x: np.sqrt(x[0]) + x[1], np.array([0.0, 1.0]))
    np.testing.assert_array_equal(tape.jvp([0.0, 1.0], [0.0, 1.0]), 1.0)
    np.testing.assert_array_equal(tape.jvp([0.0, 1.0], [1.0, 0.0]), INF)
    np.testing.assert_array_equal(tape.vjp([0.0, 1.0], 0.0), [0.0, 0.0])
    np.testing.assert_array_equal(tape.gradient([0.0, 1.0]), [INF, 1.0])
    outputs = wg.record(lambda x: np.stack([np.sqrt(x[0]), x[1]]), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(outputs.vjp([0.0, 1.0], [0.0, 1.0]), [0.0, 1.0])
    np.testing.assert_array_equal(outputs.jacobian([0.0, 1.0], mode="reverse"),
                                  [[INF, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(outputs.jacobian([0.0, 1.0], mode="forward"),
                                  [[INF, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("ties", [[3.0, 3.0, 3.0], [1.0, 3.0, 3.0], [3.0, 1.0, 3.0, 3.0, 2.0],
                                  [2.0, 2.0, 2.0, 2.0]])
@pytest.mark.parametrize("reduction", [np.max, np.min], ids=["max", "min"])
def test_reductions_over_ties_split_the_derivative(ties, reduction):
    """np.max/np.min are trees of maximum/minimum: with ties, the derivative
    is shared among the tied elements (nothing goes elsewhere) and sums to 1."""
    x = np.array(ties) if reduction is np.max else -np.array(ties)
    tape = wg.record(reduction, x)
    for g in (tape.gradient(x), tape.jacobian(x, mode="forward")):
        assert g.sum() == 1.0
        assert np.all(g[x != reduction(x)] == 0.0)
        assert np.all(g[x == reduction(x)] > 0.0)


# A zero factor wins over an infinite one in every derivative product, so
# forward and reverse mode agree where an infinite partial meets a zero one.
SINGULAR = [
    ("sqrt(x)**3 at 0", lambda x: np.sqrt(x) ** 3, 0.0, 0.0),
    ("sqrt(x*x) at 0", lambda x: np.sqrt(x * x), 0.0, 0.0),
    ("0 * log(x) at 0", lambda x: 0.0 * np.log(x), 0.0, 0.0),
    ("cbrt(x)**2 * x at 0", lambda x: np.cbrt(x) ** 2 * x, 0.0, 0.0),
]


@pytest.mark.parametrize("label, f, x, expected", SINGULAR, ids=[s[0] for s in SINGULAR])
def test_forward_and_reverse_agree_at_singular_points(label, f, x, expected):
    tape = wg.record(lambda z: np.sum(f(z)), np.array([x]))
    with np.errstate(all="ignore"):
        ways = {"gradient": tape.gradient(np.array([x]))[0],
                "jvp": tape.jvp(np.array([x]), np.array([1.0])),
                "jacobian-forward": tape.jacobian(np.array([x]), mode="forward")[0],
                "jacobian-reverse": tape.jacobian(np.array([x]), mode="reverse")[0]}
    assert all(value == expected for value in ways.values()), ways
