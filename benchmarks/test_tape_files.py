"""Tapes on disk and tape optimisation.

* Loading a 10^7-operation tape, validation included (target: under 1 s),
  beside saving it.
* ``tape.optimize()`` on the benchmark problems (no duplicates: nothing to
  remove) and on code that computes subexpressions more than once, with the
  reduction in the figures; and at about 10^6 scalar entries, where the
  passes' own loops, not Python, take the time (optimize's array-entry
  benchmarks are in test_arrays.py).
"""
import os

import numpy as np
import pytest

import wengert as wg
from benchmarks import problems as P
from benchmarks._support import annotate, record_scalar

GROUP_FILES = "tape files 10^7 operations"
GROUP_OPTIMIZE = "optimize n=10^4"
GROUP_OPTIMIZE_LARGE = "optimize n=10^5, scalar entries"


def _big(x):
    # 10 operations per element: 10^7 operations at n = 10^6.
    y = np.sin(x) * x + np.exp(-x * x) - np.sqrt(1.0 + x * x) / (2.0 + x)
    return y * y


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 10^7-operation tape, its point and its file (removed with pytest's
    temporary directories)."""
    x = np.linspace(0.0, 1.0, 10**6)
    tape = record_scalar(_big, x)
    path = str(tmp_path_factory.mktemp("tape-files") / "big.wgt")
    tape.save(path)
    return tape, x, path


def test_load_10e7_operations(benchmark, saved):
    benchmark.group = GROUP_FILES
    tape, x, path = saved
    loaded = benchmark.pedantic(wg.load, args=(path,), rounds=5, warmup_rounds=1)
    assert len(loaded) == len(tape) >= 10**7
    assert np.array_equal(loaded.forward(x), tape.forward(x))
    annotate(benchmark, n_ops=len(loaded), file_mb=os.path.getsize(path) / 2**20)


def test_save_10e7_operations(benchmark, saved):
    benchmark.group = GROUP_FILES
    tape, x, path = saved
    target = path + ".copy"
    benchmark.pedantic(tape.save, args=(target,), rounds=3, warmup_rounds=1)
    assert os.path.getsize(target) == os.path.getsize(path)
    annotate(benchmark, n_ops=len(tape))


def _repeated(x):
    # sin(x) three times, exp(-x*x) twice, and a constant chain: what
    # optimize() is for.
    s = np.sin(x) * np.sin(x) + np.sin(x)
    g = np.exp(-x * x) + np.exp(-x * x) * np.exp(2.0)
    return np.sum(s * g * 1.0)


OPTIMIZE_CASES = [("rosenbrock", P.rosenbrock), ("speelpenning", P.speelpenning),
                  ("transcendental", P.transcendental), ("repeated", _repeated)]


def _optimize_case(name, f):
    def test(benchmark):
        benchmark.group = GROUP_OPTIMIZE
        n = 10**4
        x = P.point(name, n) if name in P.BY_NAME else np.linspace(0.1, 1.0, n)
        tape = record_scalar(f, x)
        small = benchmark.pedantic(tape.optimize, rounds=3, warmup_rounds=1)
        assert np.array_equal(np.asarray(small.forward(x)), np.asarray(tape.forward(x)))
        # Merged subexpressions sum their adjoints in another order: equal to
        # rounding, measured against the largest entry (some entries cancel).
        reference = tape.gradient(x)
        np.testing.assert_allclose(small.gradient(x), reference, rtol=0,
                                   atol=1e-13 * np.max(np.abs(reference)))
        if name == "repeated":
            assert len(small) < 0.7 * len(tape)
        annotate(benchmark, n_ops=len(tape), ops_after=len(small),
                 removed_percent=round(100 * (1 - len(small) / len(tape)), 1))
    test.__name__ = f"test_optimize_{name}"
    return test


for _name, _f in OPTIMIZE_CASES:
    globals()[f"test_optimize_{_name}"] = _optimize_case(_name, _f)


@pytest.mark.parametrize("name", ["rosenbrock", "repeated"])
def test_optimize_scalar_entries_n1e5(benchmark, name):
    # 8*10^5 and 1.6*10^6 scalar entries: tapes without array entries take
    # the passes' scalar-only loops.
    benchmark.group = GROUP_OPTIMIZE_LARGE
    x = P.point(name, 10**5) if name in P.BY_NAME else np.linspace(0.1, 1.0, 10**5)
    tape = record_scalar(dict(OPTIMIZE_CASES)[name], x)
    small = benchmark.pedantic(tape.optimize, rounds=5, warmup_rounds=1)
    assert np.array_equal(np.asarray(small.forward(x)), np.asarray(tape.forward(x)))
    annotate(benchmark, n_ops=len(tape), ops_after=len(small))
