"""A domain check over a whole array: ``if np.all(x > 0):`` records one
guard (a map entry for the comparison, a sum entry counting it, one guard),
Python's ``if all(x > 0):`` one guard per element. Recording and the
gradient replay (which checks every guard) at n = 10^4, each beside the
hand-written NumPy gradient."""
from __future__ import annotations

import numpy as np
import pytest

import wengert as wg
from benchmarks._support import annotate, ratios, run

N = 10**4
X = np.linspace(0.5, 2.0, N)


def barrier_np_all(x):
    if np.all(x > 0):
        return np.sum(x * np.log(x))
    return np.sum(x ** 2)


def barrier_builtin_all(x):
    if all(x > 0):
        return np.sum(x * np.log(x))
    return np.sum(x ** 2)


def barrier_gradient(x):
    """The hand-written gradient (the reference)."""
    return np.log(x) + 1.0 if np.all(x > 0) else 2.0 * x


CASES = {"np.all": barrier_np_all, "builtin all": barrier_builtin_all}
_TAPES = {}


def _tape(name):
    if name not in _TAPES:
        _TAPES[name] = wg.record(CASES[name], X)
    return _TAPES[name]


def test_numpy_gradient(benchmark):
    benchmark.group = "guards: gradient n=10^4"
    run(benchmark, barrier_gradient, X)
    annotate(benchmark)


@pytest.mark.parametrize("name", list(CASES))
def test_guarded_gradient(benchmark, name):
    benchmark.group = "guards: gradient n=10^4"
    tape = _tape(name)
    g = run(benchmark, tape.gradient, X)
    np.testing.assert_allclose(g, barrier_gradient(X), rtol=1e-13)
    annotate(benchmark, entries=len(tape), guards=tape.n_guards,
             **ratios(benchmark, numpy="test_numpy_gradient"))


@pytest.mark.parametrize("name", list(CASES))
def test_record_guarded(benchmark, name):
    benchmark.group = "guards: recording n=10^4"
    tape = run(benchmark, wg.record, CASES[name], X, rounds=5)
    assert tape.n_guards == (1 if name == "np.all" else N)
    annotate(benchmark, entries=len(tape), guards=tape.n_guards)
