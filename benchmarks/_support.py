"""Shared helpers of the benchmark suite: cached tapes, rounds, extra_info."""
from __future__ import annotations

import numpy as np

import wengert as wg
from benchmarks import problems as P
from wengert._array_recording import scalar_entries

#: Fixed rounds for the benchmarks at n = 10**6 (each call takes 10 ms - 1 s).
LARGE = 10**6
LARGE_ROUNDS = 5
LARGE_RECORD_ROUNDS = 3

#: (group, test name, info) of every annotated benchmark, for the summary
#: that conftest.py prints at the end of the run.
SUMMARY = []

#: Median seconds of every annotated benchmark, by (group, test function),
#: for the ratios between benchmarks of one group (see ``ratios``).
MEDIANS = {}

_TAPES = {}
_SPARSE_TAPES = {}


def record_scalar(f, x, *args):
    """``wg.record`` with one scalar entry per element: the per-operation
    replay figures (and the comparisons with the C++ tapes) measure those.
    Array entries, one per NumPy call, have benchmarks of their own
    (test_arrays.py)."""
    with scalar_entries():
        return wg.record(f, x, *args)


def size_label(n):
    """``10^4`` for 10000: group names that sort and read well."""
    exponent = int(round(np.log10(n)))
    return f"10^{exponent}" if 10**exponent == n else str(n)


def size_id(n):
    """``n1e4`` for 10000: test ids that ``-k`` can select."""
    return f"n{n:.0e}".replace("+0", "").replace("+", "")


def tape(name, n):
    """The tape of problem ``name`` at size ``n``, recorded once per session."""
    key = (name, n)
    if key not in _TAPES:
        _TAPES[key] = record_scalar(P.BY_NAME[name].f, P.point(name, n))
    return _TAPES[key]


def sparse_tape(name, n):
    """The tape of ``sparse_problems`` problem ``name`` at size ``n``,
    recorded once per session (patterns and colourings then stay cached on
    it, as they would in an application)."""
    from benchmarks import sparse_problems as S
    key = (name, n)
    if key not in _SPARSE_TAPES:
        _SPARSE_TAPES[key] = record_scalar(S.function(name, n), S.point(name, n))
    return _SPARSE_TAPES[key]


def fresh_tape_setup(f, x, prepare=None):
    """A ``benchmark.pedantic`` setup that records a new tape before each
    round, so nothing cached on a tape (patterns, colourings) survives into
    the timed call; ``prepare(tape)`` runs untimed after recording."""
    def setup():
        t = record_scalar(f, x)
        if prepare is not None:
            prepare(t)
        return (t,), {}
    return setup


def keep_tape(name, n, recorded):
    """Reuse a tape a recording benchmark made, so it is not recorded twice."""
    _TAPES.setdefault((name, n), recorded)


def run(benchmark, fn, *args, rounds=None):
    """``benchmark(fn, *args)``, or ``rounds`` rounds of one call each after one
    warm-up round (which allocates a tape's work space) when ``rounds`` is given."""
    if rounds is None:
        return benchmark(fn, *args)
    return benchmark.pedantic(fn, args=args, rounds=rounds, warmup_rounds=1, iterations=1)


def median_seconds(benchmark):
    """Median seconds per call, or None under --benchmark-disable."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median


def annotate(benchmark, n_ops=None, ops_per_s=False, us_per_call=False, **info):
    """Put the tape length, ns per tape operation (from the median) and any
    other figures in ``benchmark.extra_info`` and in the end-of-run summary."""
    seconds = median_seconds(benchmark)
    if n_ops is not None:
        info["n_ops"] = int(n_ops)
    if seconds is not None:
        if n_ops:
            info["ns_per_op"] = seconds * 1e9 / n_ops
            if ops_per_s:
                info["ops_per_s"] = n_ops / seconds
        if us_per_call:
            info["us_per_call"] = seconds * 1e6
    benchmark.extra_info.update(info)
    MEDIANS[(benchmark.group or "", _base_name(benchmark))] = seconds
    SUMMARY.append((benchmark.group or "", benchmark.name, seconds, dict(info)))


def _base_name(benchmark):
    return benchmark.name.split("[", 1)[0]


def ratios(benchmark, **others):
    """``{"over_<key>": median / median of test function <others[key]>}`` for
    each other benchmark of the same group that already ran with timing (the
    test functions of a file run in order, so put the reference sweep
    first). Missing ones (deselected, --benchmark-disable) are left out."""
    seconds = median_seconds(benchmark)
    out = {}
    for key, test_name in others.items():
        other = MEDIANS.get((benchmark.group or "", test_name))
        if seconds is not None and other:
            out[f"over_{key}"] = seconds / other
    return out
