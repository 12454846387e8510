"""Per-call cost of replaying a small tape from Python.

For the survey's two-input example and Rosenbrock at n = 100, the time of
one ``tape.gradient(x)`` call (and of ``tape.forward(x)``) beside the
hand-written NumPy gradient, which is what a user would otherwise write.
At these sizes the fixed cost of a call (argument checks, array creation)
dominates the sweeps themselves.
"""
from functools import lru_cache

import numpy as np

import wengert as wg
from benchmarks import problems as P
from benchmarks._support import annotate, tape

GROUP_SURVEY = "call overhead survey f(x0, x1)"
GROUP_ROSENBROCK = "call overhead rosenbrock n=10^2"
N = 100


def _survey_expected():
    """(value, gradient) in extended precision, as float64."""
    x = P.SURVEY_POINT.astype(np.longdouble)
    return float(P.survey(x)), P.survey_gradient(x).astype(np.float64)


@lru_cache(maxsize=None)
def _survey_tape():
    return wg.record(P.survey, P.SURVEY_POINT)


def test_survey_gradient(benchmark):
    benchmark.group = GROUP_SURVEY
    t = _survey_tape()
    grad = benchmark(t.gradient, P.SURVEY_POINT)
    error = P.rel_error(grad, _survey_expected()[1])
    assert error <= P.RTOL
    assert np.allclose(grad, [5.5, 1.716], atol=5e-4)     # the survey's table 3
    annotate(benchmark, n_ops=len(t), us_per_call=True, rel_error=error)


def test_survey_forward(benchmark):
    benchmark.group = GROUP_SURVEY
    t = _survey_tape()
    value = benchmark(t.forward, P.SURVEY_POINT)
    assert abs(value - _survey_expected()[0]) <= P.RTOL * 11.652
    annotate(benchmark, n_ops=len(t), us_per_call=True)


def test_survey_numpy_gradient(benchmark):
    """The control: the hand-written gradient [1/x0 + x1, x0 - cos(x1)]."""
    benchmark.group = GROUP_SURVEY
    grad = benchmark(P.survey_gradient, P.SURVEY_POINT)
    error = P.rel_error(grad, _survey_expected()[1])
    assert error <= P.RTOL
    annotate(benchmark, us_per_call=True, rel_error=error)


def test_rosenbrock_gradient(benchmark):
    benchmark.group = GROUP_ROSENBROCK
    t = tape("rosenbrock", N)
    grad = benchmark(t.gradient, P.point("rosenbrock", N))
    error = P.rel_error(grad, P.reference("rosenbrock", N)[1])
    assert error <= P.RTOL
    annotate(benchmark, n_ops=len(t), us_per_call=True, rel_error=error)


def test_rosenbrock_forward(benchmark):
    benchmark.group = GROUP_ROSENBROCK
    t = tape("rosenbrock", N)
    value = benchmark(t.forward, P.point("rosenbrock", N))
    expected = P.reference("rosenbrock", N)[0]
    assert abs(value - expected) <= P.RTOL * abs(expected)
    annotate(benchmark, n_ops=len(t), us_per_call=True)


def test_rosenbrock_numpy_gradient(benchmark):
    """The control: the vectorised closed-form gradient in NumPy."""
    benchmark.group = GROUP_ROSENBROCK
    grad = benchmark(P.rosenbrock_gradient, P.point("rosenbrock", N))
    error = P.rel_error(grad, P.reference("rosenbrock", N)[1])
    assert error <= P.RTOL
    annotate(benchmark, us_per_call=True, rel_error=error)


@lru_cache(maxsize=None)
def _survey_grad():
    df = wg.grad(P.survey)
    df(P.SURVEY_POINT)              # records; the benchmark times cached replays
    return df


def test_survey_wg_grad(benchmark):
    """wg.grad(f)(x) on its cached tape: the transform's own overhead
    (target: at most 1.5x tape.gradient and at most 1 us more)."""
    benchmark.group = GROUP_SURVEY
    df = _survey_grad()
    grad = benchmark(df, P.SURVEY_POINT)
    error = P.rel_error(grad, _survey_expected()[1])
    assert error <= P.RTOL
    assert len(df.cached_tapes()) == 1
    annotate(benchmark, n_ops=len(_survey_tape()), us_per_call=True, rel_error=error)
