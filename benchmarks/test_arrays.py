"""Array entries: NumPy code recorded as one entry per NumPy call.

Each group times the wengert gradient of a NumPy-written function beside
the hand-written NumPy gradient of the same function (the reference, run
first) and the same tape recorded with one scalar entry per element (what
wengert did before array entries). ``over_numpy`` in the summary is the
issue's measure: at most 1 is "as fast as a hand-written NumPy gradient".

Problems: the extended Rosenbrock function and the transcendental mix at
n = 10^6, and a two-layer perceptron (784 -> 128 -> 10, tanh, batch 256,
squared error) differentiated with respect to all its weights.
"""
from __future__ import annotations

import numpy as np
import pytest

import wengert as wg
from wengert.sparsity import hessian_sparsity
from benchmarks import problems as P
from benchmarks._support import (LARGE, LARGE_ROUNDS, annotate, fresh_tape_setup, ratios,
                                 record_scalar, run)

CASES = P.ARRAY_CASES
_TAPES = {}


def _tape(name, scalar=False):
    key = (name, scalar)
    if key not in _TAPES:
        f, _, point = CASES[name]
        _TAPES[key] = (record_scalar if scalar else wg.record)(f, point())
    return _TAPES[key]


def _group(benchmark, name):
    size = "784-128-10, batch 256" if name == "mlp" else "n=10^6"
    benchmark.group = f"array entries: {name} gradient {size}"


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_gradient(benchmark, name):
    _group(benchmark, name)
    _, gradient, point = CASES[name]
    run(benchmark, gradient, point(), rounds=LARGE_ROUNDS)
    annotate(benchmark)


@pytest.mark.parametrize("name", list(CASES))
def test_array_entries_gradient(benchmark, name):
    _group(benchmark, name)
    _, gradient, point = CASES[name]
    x = point()
    tape = _tape(name)
    g = run(benchmark, tape.gradient, x, rounds=LARGE_ROUNDS)
    np.testing.assert_allclose(g, gradient(x), rtol=1e-9, atol=1e-12)
    annotate(benchmark, entries=len(tape), n_elementwise=tape.stats()["n_elementwise"],
             **ratios(benchmark, numpy="test_numpy_gradient"))


@pytest.mark.parametrize("name", list(CASES))
def test_scalar_entries_gradient(benchmark, name):
    _group(benchmark, name)
    _, gradient, point = CASES[name]
    x = point()
    tape = _tape(name, scalar=True)
    g = run(benchmark, tape.gradient, x, rounds=LARGE_ROUNDS if name != "mlp" else 2)
    np.testing.assert_allclose(g, gradient(x), rtol=1e-9, atol=1e-12)
    annotate(benchmark, entries=len(tape), **ratios(benchmark, numpy="test_numpy_gradient"))


@pytest.mark.parametrize("name", list(CASES))
def test_record_array_entries(benchmark, name):
    benchmark.group = "array entries: recording"
    f, _, point = CASES[name]
    tape = run(benchmark, wg.record, f, point(), rounds=3)
    annotate(benchmark, entries=len(tape))


def _repeated(x):
    # What optimize() is for: sin(x) three times, exp(-x*x) twice, a
    # constant chain (as in test_tape_files, here as array entries).
    s = np.sin(x) * np.sin(x) + np.sin(x)
    g = np.exp(-x * x) + np.exp(-x * x) * np.exp(2.0)
    return np.sum(s * g * 1.0)


OPTIMIZE_CASES = ("rosenbrock", "mlp", "repeated")


@pytest.mark.parametrize("name", OPTIMIZE_CASES)
def test_optimize_array_entries(benchmark, name):
    # optimize() costs the entries and descriptors, not the elements: about
    # a millisecond for these tapes of 10^6 to 10^7 elementwise operations.
    benchmark.group = "array entries: optimize"
    if name == "repeated":
        x = np.linspace(0.1, 1.0, LARGE)
        tape = wg.record(_repeated, x)
    else:
        x = CASES[name][2]()
        tape = _tape(name)
    small = run(benchmark, tape.optimize, rounds=LARGE_ROUNDS)
    assert np.array_equal(small.forward(x), tape.forward(x))
    np.testing.assert_allclose(small.gradient(x), tape.gradient(x), rtol=1e-12, atol=1e-14)
    annotate(benchmark, entries=len(tape), entries_after=len(small),
             n_elementwise=tape.stats()["n_elementwise"])


# ---- sparsity patterns of array tapes ---------------------------------------------
#
# The Hessian pattern of the Rosenbrock function at n = 10^5 recorded as
# arrays, on a fresh tape each round: read natively (the passes go through
# the array entries element by element), through the tape's expansion into
# scalar entries (what the patterns did before; the test oracle now), and on
# the same function recorded with scalar entries. All must be tridiagonal.

SPARSE_N = 10**5


def _sparse_group(benchmark):
    benchmark.group = "array entries: rosenbrock Hessian pattern n=10^5"


def _fresh_array_tape():
    def setup():
        return (wg.record(P.rosenbrock, P.point("rosenbrock", SPARSE_N)),), {}
    return setup


def _check_tridiagonal(pattern):
    assert pattern.shape == (SPARSE_N, SPARSE_N) and pattern.nnz == 3 * SPARSE_N - 2
    rows = np.repeat(np.arange(SPARSE_N), np.diff(pattern.indptr))
    assert np.abs(rows - pattern.indices).max() == 1


def test_scalar_tape_hessian_sparsity(benchmark):
    _sparse_group(benchmark)
    setup = fresh_tape_setup(P.rosenbrock, P.point("rosenbrock", SPARSE_N))
    _check_tridiagonal(benchmark.pedantic(hessian_sparsity, setup=setup,
                                          rounds=5, warmup_rounds=1))
    annotate(benchmark)


def test_expanded_array_tape_hessian_sparsity(benchmark):
    # The expansion itself is timed too: it is built on first use.
    _sparse_group(benchmark)

    def expand_then_pattern(t):
        return hessian_sparsity(t._scalar_form())
    setup = _fresh_array_tape()
    _check_tridiagonal(benchmark.pedantic(expand_then_pattern, setup=setup, rounds=5,
                                          warmup_rounds=1))
    annotate(benchmark, **ratios(benchmark, scalar_tape="test_scalar_tape_hessian_sparsity"))


def test_array_tape_hessian_sparsity(benchmark):
    _sparse_group(benchmark)
    _check_tridiagonal(benchmark.pedantic(hessian_sparsity,
                                          setup=_fresh_array_tape(), rounds=5,
                                          warmup_rounds=1))
    annotate(benchmark, **ratios(benchmark, scalar_tape="test_scalar_tape_hessian_sparsity",
                                 expanded="test_expanded_array_tape_hessian_sparsity"))
