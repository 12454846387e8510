"""The wg.grad family: record once, replay, retape when needed, threads."""
import functools
import threading

import numpy as np
import pytest

import wengert as wg

from _helpers import assert_rel


def survey(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def survey_gradient(x):
    return np.array([1 / x[0] + x[1], x[0] - np.cos(x[1])])


def test_grad_records_once_and_replays():
    calls = []

    def f(x):
        calls.append(1)
        return survey(x)

    df = wg.grad(f)
    for point in ([2.0, 5.0], [1.0, 1.0], [3.0, 0.5]):
        assert_rel(df(np.array(point)), survey_gradient(np.array(point)), 1e-15)
    assert len(calls) == 1
    assert len(df.cached_tapes()) == 1


def test_every_transform_matches_the_tape():
    f = lambda x: np.stack([x[0] * x[1] ** 2, np.sin(x[0])])
    x, v, w = np.array([0.3, 2.0]), np.array([1.0, -1.0]), np.array([2.0, 0.5])
    tape = wg.record(f, x)
    assert_rel(wg.jacobian(f)(x), tape.jacobian(x), 0.0)
    assert_rel(wg.jacobian(f, mode="forward")(x), tape.jacobian(x, mode="forward"), 0.0)
    assert_rel(wg.jvp(f)(x, v), tape.jvp(x, v), 0.0)
    assert_rel(wg.vjp(f)(x, w), tape.vjp(x, w), 0.0)
    value, grad = wg.value_and_grad(survey)(np.array([2.0, 5.0]))
    assert value == pytest.approx(11.652071455223084, rel=1e-15)
    assert_rel(grad, survey_gradient(np.array([2.0, 5.0])), 1e-15)
    g = lambda x: x[0] ** 2 * x[1]
    assert_rel(wg.hessian(g)(np.array([1.0, 2.0])), np.array([[4.0, 2.0], [2.0, 0.0]]), 0.0)
    assert_rel(wg.hvp(g)(np.array([1.0, 2.0]), np.array([1.0, 0.0])), np.array([4.0, 2.0]), 0.0)


@pytest.mark.filterwarnings("ignore::wengert.RecordingWarning")   # integer keys on purpose
def test_new_shape_and_new_static_argument_retape():
    calls = []

    def f(x, power):
        calls.append(power)
        return np.sum(x ** power)

    df = wg.grad(f)
    assert_rel(df(np.ones(3), 2), np.full(3, 2.0), 0.0)
    assert_rel(df(np.ones(3), 2), np.full(3, 2.0), 0.0)
    assert_rel(df(np.ones(4), 2), np.full(4, 2.0), 0.0)
    assert_rel(df(np.ones(3), 3), np.full(3, 3.0), 0.0)
    assert calls == [2, 2, 3]


def test_dynamic_parameters_replay_without_retaping():
    calls = []

    def f(x, scale, data):
        calls.append(1)
        return scale * np.sum((x - data) ** 2)

    df = wg.grad(f)
    x = np.array([1.0, 2.0])
    assert_rel(df(x, 1.0, np.zeros(2)), 2 * x, 0.0)
    assert_rel(df(x, 3.0, np.ones(2)), 6 * (x - 1), 0.0)
    assert len(calls) == 1
    df(x, 3.0, np.ones(1))         # a new parameter shape records again
    assert len(calls) == 2


def test_branch_flip_retapes_and_keeps_both_tapes():
    calls = []

    def f(x):
        calls.append(1)
        if x > 0:
            return x ** 2
        return -x ** 3

    df = wg.grad(f)
    assert df(2.0) == 4.0
    assert df(-2.0) == -12.0
    assert df(3.0) == 6.0
    assert df(-1.0) == -3.0
    assert len(calls) == 2          # one tape per branch region, then replays
    assert len(df.cached_tapes()) == 2


def test_unhashable_static_argument_is_a_type_error():
    df = wg.grad(lambda x, opts: np.sum(x) * len(opts))
    with pytest.raises(TypeError, match="unhashable"):
        df(np.ones(2), [1, 2])
    assert_rel(df(np.ones(2), (1, 2)), np.full(2, 2.0), 0.0)


@pytest.mark.filterwarnings("ignore::wengert.RecordingWarning")   # integer keys on purpose
def test_cache_is_bounded():
    df = wg.grad(lambda x, k: np.sum(x) * k)
    for k in range(100):
        df(np.ones(2), k)
    assert len(df.cached_tapes()) <= 16


def test_any_callable_and_metadata_is_kept():
    class Model:
        def __call__(self, x, a=2.0):
            return a * np.sum(x ** 2)

    def named(x):
        """Docs."""
        return np.sum(x)

    assert_rel(wg.grad(Model())(np.ones(2)), np.full(2, 4.0), 0.0)
    assert_rel(wg.grad(functools.partial(Model(), a=3.0))(np.ones(2)), np.full(2, 6.0), 0.0)
    assert wg.grad(named).__name__ == "named" and wg.grad(named).__doc__ == "Docs."
    with pytest.raises(TypeError):
        wg.grad(42)


def test_threads_share_one_transform_safely():
    def f(x):
        if x[0] > 0:
            return np.sum(np.sin(x) * x[0])
        return np.sum(np.cos(x) * x[1])

    df = wg.grad(f)
    rng = np.random.default_rng(7)
    points = rng.uniform(-1, 1, (400, 3))
    expected = [wg.record(f, p).gradient(p) for p in points]
    results = [None] * len(points)
    errors = []

    def work(indices):
        try:
            for i in indices:
                results[i] = df(points[i])
        except Exception as exc:      # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(range(k, len(points), 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected):
        assert_rel(got, want, 0.0)


def test_threads_share_one_tape_safely():
    x0 = np.linspace(0.5, 1.5, 50)
    tape = wg.record(lambda x: np.sum(np.exp(x) * x[::-1]), x0)
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 2, (200, 50))
    expected = [tape.gradient(p) for p in points]
    results = [None] * len(points)

    def work(k):
        for i in range(k, len(points), 4):
            results[i] = tape.gradient(points[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)
