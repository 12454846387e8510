"""Replays release the GIL: two threads replaying one tape run side by side.

Extended Rosenbrock at n = 10^5: two gradients one after the other, and the
same two gradients on two threads at once (one tape, shared). On a 2-core
machine the threaded pair should take well under twice one gradient; the
speedup (sequential time / threaded time) is in the figures. Correctness is
asserted; the speedup is not (the machine is shared).
"""
import threading

import numpy as np

from benchmarks import problems as P
from benchmarks._support import annotate, tape

GROUP = "threads rosenbrock n=10^5"
N = 10**5


def _two_gradients_in_threads(t, x, results):
    def work(k):
        results[k] = t.gradient(x)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_gradients_sequential(benchmark):
    benchmark.group = GROUP
    t = tape("rosenbrock", N)
    x = P.point("rosenbrock", N)
    results = benchmark(lambda: [t.gradient(x), t.gradient(x)])
    expected = P.reference("rosenbrock", N)[1]
    assert all(P.rel_error(g, expected) <= P.RTOL for g in results)
    annotate(benchmark, n_ops=2 * len(t))


def test_two_gradients_on_two_threads(benchmark):
    benchmark.group = GROUP
    t = tape("rosenbrock", N)
    x = P.point("rosenbrock", N)
    results = [None, None]
    benchmark(_two_gradients_in_threads, t, x, results)
    expected = P.reference("rosenbrock", N)[1]
    assert all(P.rel_error(g, expected) <= P.RTOL for g in results)
    assert np.array_equal(results[0], results[1])
    annotate(benchmark, n_ops=2 * len(t))
