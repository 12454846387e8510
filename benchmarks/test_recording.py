"""Recording benchmarks: how fast user code turns into a tape.

* A scalar Python loop (Rosenbrock at n = 10^4, one traced scalar operation
  per Python operator) beside the same function written with vectorised
  slices: ns per recorded operation.
* Vectorised NumPy code at n = 10^6: recorded operations per second.

Each benchmark checks that the tape it made replays to the right value.
"""
from benchmarks import problems as P
from benchmarks._support import (LARGE, LARGE_RECORD_ROUNDS, annotate, record_scalar, run,
                                 size_label)

import wengert as wg

N_LOOP = 10**4


def _check(tape, n):
    expected, _ = P.reference("rosenbrock", n)
    value = tape.forward(P.point("rosenbrock", n))
    assert abs(value - expected) <= P.RTOL * abs(expected), f"{value} != {expected}"


def test_record_scalar_loop(benchmark):
    benchmark.group = f"recording rosenbrock n={size_label(N_LOOP)}"
    tape = run(benchmark, record_scalar, P.rosenbrock_loop, P.point("rosenbrock", N_LOOP))
    _check(tape, N_LOOP)
    annotate(benchmark, n_ops=len(tape), ops_per_s=True)


def test_record_vectorised(benchmark):
    benchmark.group = f"recording rosenbrock n={size_label(N_LOOP)}"
    tape = run(benchmark, record_scalar, P.rosenbrock, P.point("rosenbrock", N_LOOP))
    _check(tape, N_LOOP)
    annotate(benchmark, n_ops=len(tape), ops_per_s=True)


def test_record_vectorised_large(benchmark):
    benchmark.group = f"recording rosenbrock n={size_label(LARGE)}"
    tape = run(benchmark, record_scalar, P.rosenbrock, P.point("rosenbrock", LARGE),
               rounds=LARGE_RECORD_ROUNDS)
    _check(tape, LARGE)
    annotate(benchmark, n_ops=len(tape), ops_per_s=True)
