"""Replay benchmarks: the problem suite crossed with the phases.

For each problem and n in 10^2, 10^4, 10^6 one benchmark group holds, side by
side: recording the tape, zero-order forward replay, gradient replay
(forward + reverse sweep), one vectorised NumPy evaluation of ``f`` (the
control), and scipy's finite-difference gradient ``approx_fprime`` (n + 1
evaluations of ``f``; skipped at 10^6). Every benchmark checks its result:
wengert's values and gradients against the closed forms to ``rtol`` relative;
the finite differences only report their error.
"""
import numpy as np
import pytest
from scipy.optimize import approx_fprime

import wengert as wg
from benchmarks import problems as P
from benchmarks._support import (LARGE, LARGE_RECORD_ROUNDS, LARGE_ROUNDS,
                                 annotate, keep_tape, record_scalar, run, size_id, size_label,
                                 tape)

CASES = [pytest.param(p, n, id=f"{p.name}-{size_id(n)}")
         for p in P.PROBLEMS for n in P.SIZES]


def _group(benchmark, problem, n):
    benchmark.group = f"replay {problem.name} n={size_label(n)}"


def _rounds(n, large):
    return large if n >= LARGE else None


def _check_value(value, problem, n):
    expected, _ = P.reference(problem.name, n)
    error = abs(value - expected) / abs(expected)
    assert error <= P.rtol(problem.name, n), f"value off by {error:.2e} relative"
    return error


@pytest.mark.parametrize("problem, n", CASES)
def test_record(benchmark, problem, n):
    _group(benchmark, problem, n)
    x = P.point(problem.name, n)
    recorded = run(benchmark, record_scalar, problem.f, x, rounds=_rounds(n, LARGE_RECORD_ROUNDS))
    _check_value(recorded.forward(x), problem, n)
    keep_tape(problem.name, n, recorded)
    annotate(benchmark, n_ops=len(recorded), ops_per_s=True)


@pytest.mark.parametrize("problem, n", CASES)
def test_forward(benchmark, problem, n):
    _group(benchmark, problem, n)
    x = P.point(problem.name, n)
    t = tape(problem.name, n)
    value = run(benchmark, t.forward, x, rounds=_rounds(n, LARGE_ROUNDS))
    error = _check_value(value, problem, n)
    annotate(benchmark, n_ops=len(t), rel_error=error)


@pytest.mark.parametrize("problem, n", CASES)
def test_gradient(benchmark, problem, n):
    _group(benchmark, problem, n)
    x = P.point(problem.name, n)
    t = tape(problem.name, n)
    grad = run(benchmark, t.gradient, x, rounds=_rounds(n, LARGE_ROUNDS))
    error = P.rel_error(grad, P.reference(problem.name, n)[1])
    assert error <= P.rtol(problem.name, n), f"gradient off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error)


@pytest.mark.parametrize("problem, n", CASES)
def test_numpy_f(benchmark, problem, n):
    """The control: one vectorised NumPy evaluation of f, no derivatives."""
    _group(benchmark, problem, n)
    x = P.point(problem.name, n)
    value = run(benchmark, problem.f, x, rounds=_rounds(n, LARGE_ROUNDS))
    error = _check_value(float(value), problem, n)
    annotate(benchmark, rel_error=error)


@pytest.mark.parametrize("problem, n", CASES)
def test_approx_fprime(benchmark, problem, n):
    """scipy's forward differences: n + 1 evaluations of f, ~1e-5..1e-7 accurate."""
    if n not in P.FD_SIZES:
        pytest.skip(f"approx_fprime at n={size_label(n)} needs n + 1 evaluations of f "
                    "(hours); finite differences run at n <= 10^4")
    _group(benchmark, problem, n)
    x = P.point(problem.name, n)
    # One round at 10^4: a single call already averages 10^4 evaluations of f.
    grad = run(benchmark, approx_fprime, x, problem.f, rounds=1 if n >= 10**4 else None)
    expected = P.reference(problem.name, n)[1]
    error = P.rel_error(grad, expected)
    wengert_error = P.rel_error(tape(problem.name, n).gradient(x), expected)
    # Only a sanity bound: the finite differences' error is reported, not judged.
    assert np.all(np.isfinite(grad)) and error < 1e-2, f"finite differences off by {error:.2e}"
    annotate(benchmark, rel_error=error, wengert_rel_error=wengert_error)
