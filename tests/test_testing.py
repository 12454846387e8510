"""wengert.testing.check_grads: passes on correct tapes, fails loudly (with
both numbers) on wrong values or derivatives."""
import doctest

import numpy as np
import pytest

import wengert as wg
import wengert.testing
from wengert.tape import Tape
from wengert.testing import check_grads


def test_importable_as_documented():
    from wengert.testing import check_grads as imported
    assert imported is check_grads
    assert "check_grads" in wengert.testing.__all__


def test_docstring_example_runs():
    failures, tried = doctest.testmod(wengert.testing, verbose=False)
    assert tried > 0 and failures == 0


@pytest.mark.parametrize("f, x, args", [
    (lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1]), [2.0, 5.0], ()),
    (lambda x: np.tanh(x) * x ** 2, 0.7, ()),                            # float input
    (lambda x: x @ x.T, np.arange(6.0).reshape(2, 3) / 4, ()),           # matrix in and out
    (lambda x, p, n: np.sum(p * x ** n), np.ones(3) * 1.5, (np.array([1.0, -2.0, 0.5]), 3)),
], ids=["survey", "scalar", "matrix", "extra arguments"])
def test_passes_on_correct_tapes(f, x, args):
    tape = check_grads(f, x, *args)
    assert isinstance(tape, Tape)
    for modes in (("forward",), ("reverse",), ()):
        check_grads(f, x, *args, modes=modes)


def test_uses_a_local_generator():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    check_grads(lambda x: np.sum(np.sin(x)), np.ones(3), seed=5)
    assert np.random.random() == before


def _differs_when_traced(traced_value, plain_value):
    def f(x):
        return traced_value(x) if not isinstance(x, (np.ndarray, float)) else plain_value(x)
    return f


def test_fails_when_values_differ():
    f = _differs_when_traced(np.sin, np.cos)
    with pytest.raises(AssertionError, match=r"tape\.forward\(x\).*f\(x\) on NumPy") as info:
        check_grads(f, np.array([0.3, 0.6]))
    # Both numbers appear in the message, in full precision.
    assert f"{float(np.sin(0.3))!r} vs {float(np.cos(0.3))!r}" in str(info.value)


def test_fails_when_the_jvp_is_wrong(monkeypatch):
    real = Tape.jvp
    monkeypatch.setattr(Tape, "jvp", lambda self, x, v, *a: 1.01 * real(self, x, v, *a))
    with pytest.raises(AssertionError, match=r"tape\.jvp\(x, v\).*central difference") as info:
        check_grads(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]), modes=("forward",))
    assert "atol" in str(info.value)
    # Reverse mode alone does not look at the jvp.
    check_grads(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]), modes=("reverse",))


def test_fails_when_the_vjp_is_wrong(monkeypatch):
    real = Tape.vjp
    monkeypatch.setattr(Tape, "vjp", lambda self, x, w, *a: real(self, x, w, *a) * [1.0, 1.01])
    with pytest.raises(AssertionError, match=r"<tape\.vjp\(x, w\), v>"):
        check_grads(lambda x: np.sin(x) * x[0], np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match="central difference"):
        check_grads(lambda x: np.sin(x) * x[0], np.array([1.0, 2.0]), modes=("reverse",))
    check_grads(lambda x: np.sin(x) * x[0], np.array([1.0, 2.0]), modes=("forward",))


def test_tolerances_are_respected():
    # Central differences of exp with a coarse step are off by ~eps**2/6.
    f = lambda x: np.exp(x)      # noqa: E731
    with pytest.raises(AssertionError):
        check_grads(f, np.array([1.0]), eps=1e-2, atol=1e-8, rtol=1e-8)
    check_grads(f, np.array([1.0]), eps=1e-2, atol=1e-4, rtol=1e-4)


def test_unknown_mode():
    with pytest.raises(ValueError, match="sideways"):
        check_grads(lambda x: x * 2.0, np.ones(2), modes=("sideways",))


def test_guarded_functions_are_checked_on_their_branch():
    def f(x):
        if x[0] > 0:
            return x[0] ** 2 * x[1]
        return -x[1]

    check_grads(f, np.array([1.0, 2.0]))
    check_grads(f, np.array([-1.0, 2.0]))


def test_works_for_where_kinks_away_from_the_switch():
    check_grads(lambda x: wg.where(x > 0, np.sqrt(np.abs(x)), -x), np.array([0.5, -2.0, 3.0]))
