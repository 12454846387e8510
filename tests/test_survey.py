"""The running example of Baydin et al., "Automatic differentiation in
machine learning: a survey" (JMLR 2018), tables 2 and 3:

    f(x1, x2) = ln(x1) + x1 * x2 - sin(x2)   at (x1, x2) = (2, 5)

value 11.652..., df/dx1 = 1/x1 + x2 = 5.5, df/dx2 = x1 - cos(x2) = 1.716...
"""
import math
import re

import numpy as np
import pytest

import wengert as wg
from wengert.testing import check_grads

from _helpers import assert_rel


def f(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


X = np.array([2.0, 5.0])
VALUE = math.log(2.0) + 10.0 - math.sin(5.0)
GRADIENT = np.array([1 / 2.0 + 5.0, 2.0 - math.cos(5.0)])
HESSIAN = np.array([[-1 / 4.0, 1.0], [1.0, math.sin(5.0)]])


@pytest.fixture(scope="module")
def tape():
    return wg.record(f, X)


def test_value(tape):
    value = tape.forward(X)
    assert type(value) is float
    assert value == pytest.approx(11.652071455223084, rel=1e-15)
    assert_rel(value, VALUE, 1e-15)


def test_gradient(tape):
    grad = tape.gradient(X)
    assert grad.shape == (2,)
    assert grad[0] == 5.5
    assert grad[1] == pytest.approx(1.716337814536774, rel=1e-15)
    assert_rel(grad, GRADIENT, 1e-15)
    value, grad2 = tape.value_and_gradient([2.0, 5.0])
    assert_rel(value, VALUE, 1e-15)
    np.testing.assert_array_equal(grad2, grad)


def test_wengert_list(tape):
    """Five operations, exactly the survey's v1..v5."""
    assert len(tape) == 5
    assert tape.n_inputs == 2 and tape.n_outputs == 1 and tape.n_params == 0
    assert tape.n_guards == 0


def test_listing_shows_the_intermediate_values(tape):
    text = tape.listing(X)
    numbers = [float(n) for n in re.findall(r"=\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*$", text, re.M)]
    # Inputs 2 and 5, then v1..v5 of the survey's table 2 (>= 4 significant digits).
    expected = [2.0, 5.0, math.log(2.0), 10.0, math.log(2.0) + 10.0, math.sin(5.0), VALUE]
    for value in expected:
        assert any(abs(n - value) <= 5e-4 * max(1.0, abs(value)) for n in numbers), (value, text)
    for shown in ("0.6931", "10", "-0.9589", "11.65"):
        assert shown in text
    assert "log" in text and "sin" in text


def test_forward_mode(tape):
    """The survey's table 2: tangent along x1 gives 5.5; along x2 1.716."""
    assert tape.jvp(X, [1.0, 0.0]) == 5.5
    assert_rel(tape.jvp(X, [0.0, 1.0]), GRADIENT[1], 1e-15)
    assert_rel(tape.jvp(X, np.eye(2)), GRADIENT, 1e-15)          # both columns at once
    assert_rel(tape.jvp(X, [3.0, -2.0]), GRADIENT @ [3.0, -2.0], 1e-15)


def test_reverse_mode(tape):
    """The survey's table 3: one reverse sweep gives both adjoints."""
    np.testing.assert_array_equal(tape.vjp(X, 1.0), tape.gradient(X))
    assert_rel(tape.vjp(X, 2.0), 2.0 * GRADIENT, 1e-15)
    assert_rel(tape.vjp(X, [1.0, -1.0]), np.array([GRADIENT, -GRADIENT]), 1e-15)


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_jacobian(tape, mode):
    J = tape.jacobian(X, mode=mode)
    assert J.shape == (2,)
    assert_rel(J, GRADIENT, 1e-15)


def test_hessian(tape):
    assert_rel(tape.hessian(X), HESSIAN, 1e-15)
    assert_rel(tape.hvp(X, [1.0, 0.0]), HESSIAN[:, 0], 1e-15)


def test_batch_of_points(tape):
    P = np.array([[2.0, 5.0], [1.0, 0.0], [3.0, -1.0]])
    assert_rel(tape.forward(P), np.log(P[:, 0]) + P[:, 0] * P[:, 1] - np.sin(P[:, 1]), 1e-15)
    assert_rel(tape.gradient(P), np.stack([1 / P[:, 0] + P[:, 1], P[:, 0] - np.cos(P[:, 1])], 1),
               1e-15)


def test_check_grads_agrees():
    check_grads(f, X)
    check_grads(f, [0.5, -3.0], seed=3)


def test_traces_show_the_survey_tables(tape):
    """tape.trace prints the forward tangent (table 2) and reverse adjoint
    (table 3) traces with their values."""
    forward = tape.trace(X, [1.0, 0.0], mode="forward")
    for shown in ("0.5", "5.5", "0.6931", "-0.9589"):
        assert shown in forward
    reverse = tape.trace(X, 1.0, mode="reverse")
    for shown in ("5.5", "1.716", "0.2836"):   # v̄4·cos(v0) = -cos 5
        assert shown in reverse
