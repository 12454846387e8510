"""Measure wengert's key figures directly and print them as one table.

Run from the repository root, with wengert built in place or installed::

    PYTHONPATH=src python benchmarks/report.py            # everything, ~50 s
    PYTHONPATH=src python benchmarks/report.py --sizes 100 10000 --no-fd
    PYTHONPATH=src python benchmarks/report.py --sparse-only   # second order, ~15 s
    PYTHONPATH=src python benchmarks/report.py --arrays-only   # array entries, ~30 s

Every time is the median of several repeats (``timeit``), each repeat long
enough (>= 20 ms, or one call) to dwarf the timer. On a shared machine,
compare figures from one run: the ratios are steadier than the absolute
times. A second table covers second derivatives and sparsity (the problems
of ``sparse_problems.py``), a third NumPy code recorded as array entries
beside the hand-written NumPy gradient of the same function. The last section checks the figures against the
targets of the performance issues.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import timeit

if __package__ in (None, ""):
    # Run as a script: make ``benchmarks`` importable from the repository root.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from scipy.optimize import approx_fprime

import wengert as wg
from benchmarks import problems as P
from benchmarks import sparse_problems as S
from benchmarks._support import record_scalar

# The targets.
FORWARD_NS_PER_OP = 1.5        # n = 10^4, zero-order replay
GRADIENT_NS_PER_OP = 4.0       # n = 10^4, gradient (forward + reverse)
GRADIENT_OVER_NUMPY_F = 8.0    # n = 10^6, gradient time / one NumPy f
FD_SPEEDUP = 1000.0            # n = 10^4, approx_fprime time / gradient time
GRADIENT_RTOL = 1e-13          # n = 10^4
SURVEY_US = 2.0                # tape.gradient(x) per call
ROSENBROCK100_US = 6.0
RECORD_LOOP_NS_PER_OP = 300.0  # scalar Python loop, n = 10^4
RECORD_OPS_PER_S = 2e7         # vectorised code, n = 10^6
# Second order and sparsity.
HVP_OVER_GRADIENT = 4.0        # rosenbrock, tape.hvp(x, v) / tape.gradient(x), every n
HESSIAN_COLOURS = 3            # rosenbrock n = 10^5, star colouring
SPARSE_HESSIAN_OVER_GRADIENT = 10.0   # rosenbrock n = 10^5, sparse_hessian / gradient
BRATU_COLOURS = 3              # bratu, column colouring, every n
SPARSE_JACOBIAN_OVER_VJP = 6.0  # bratu, sparse_jacobian / one vjp of the same tape, every n
PATTERN_SECONDS = 1.0          # rosenbrock Hessian and bratu Jacobian pattern, n = 10^5, fresh tape
# Array entries.
ARRAY_GRADIENT_OVER_NUMPY = 1.0   # each of P.ARRAY_CASES, gradient / hand-written NumPy gradient

#: (problem, sizes) of the second-order and sparsity table; the dense
#: derivative is timed at n <= SPARSE_DENSE_MAX only.
SPARSE_CASES = (("rosenbrock", (10**2, 10**4, 10**5)), ("bratu", (10**3, 10**5)),
                ("cppad_jac", (10**3, 10**4)), ("cppad_hes", (10**3, 10**4)))
SPARSE_DENSE_MAX = 10**3


def median_seconds(fn, *args, min_repeat_time=0.02, repeats=7, slow_repeats=3):
    """Median seconds per call of ``fn(*args)`` over repeats of timeit.

    One untimed warm-up call first (it also allocates the tape's work space).
    Calls slower than 0.2 s are repeated ``slow_repeats`` times, once each.
    """
    start = time.perf_counter()
    fn(*args)
    first = time.perf_counter() - start
    if first > 0.2:
        times = timeit.repeat(lambda: fn(*args), number=1, repeat=slow_repeats)
        return statistics.median(times)
    number = max(1, int(np.ceil(min_repeat_time / max(first, 1e-7))))
    times = timeit.repeat(lambda: fn(*args), number=number, repeat=repeats)
    return statistics.median(times) / number


def measure_problem(problem, n, fd):
    """Figures for one problem at one size (a dict)."""
    x = P.point(problem.name, n)
    value_ref, grad_ref = P.reference(problem.name, n)
    row = {"problem": problem.name, "n": n}
    row["record_s"] = median_seconds(record_scalar, problem.f, x, repeats=5)
    tape = record_scalar(problem.f, x)
    row["ops"] = len(tape)
    row["forward_s"] = median_seconds(tape.forward, x)
    row["gradient_s"] = median_seconds(tape.gradient, x)
    row["numpy_f_s"] = median_seconds(problem.f, x)
    row["value_error"] = abs(tape.forward(x) - value_ref) / abs(value_ref)
    row["gradient_error"] = P.rel_error(tape.gradient(x), grad_ref)
    if fd and n in P.FD_SIZES:
        # n + 1 evaluations of f: 0.2 - 2 s a call at 10^4, then median of 3 calls.
        row["fd_s"] = median_seconds(approx_fprime, x, problem.f)
        grad_fd = approx_fprime(x, problem.f)
        row["fd_error"] = P.rel_error(grad_fd, grad_ref)
    del tape
    return row


def measure_recording():
    n_loop, n_vec = 10**4, 10**6
    x = P.point("rosenbrock", n_loop)
    loop_s = median_seconds(record_scalar, P.rosenbrock_loop, x, repeats=5)
    loop_ops = len(record_scalar(P.rosenbrock_loop, x))
    return {"loop_ns_per_op": loop_s * 1e9 / loop_ops, "loop_ops": loop_ops,
            "loop_s": loop_s, "n_loop": n_loop, "n_vec": n_vec}


def measure_calls():
    survey = record_scalar(P.survey, P.SURVEY_POINT)
    x100 = P.point("rosenbrock", 100)
    rosen = record_scalar(P.rosenbrock, x100)
    return {
        "survey gradient": median_seconds(survey.gradient, P.SURVEY_POINT) * 1e6,
        "survey forward": median_seconds(survey.forward, P.SURVEY_POINT) * 1e6,
        "survey NumPy gradient (control)": median_seconds(P.survey_gradient, P.SURVEY_POINT) * 1e6,
        "rosenbrock n=100 gradient": median_seconds(rosen.gradient, x100) * 1e6,
        "rosenbrock n=100 forward": median_seconds(rosen.forward, x100) * 1e6,
        "rosenbrock n=100 NumPy gradient (control)": median_seconds(P.rosenbrock_gradient, x100) * 1e6,
    }


def fresh_seconds(f, x, fn, prepare=None, repeats=5):
    """Median seconds of ``fn(tape)`` on a newly recorded tape each time (so
    nothing cached on a tape survives), after one warm-up; ``prepare(tape)``
    runs untimed after recording."""
    times = []
    for _ in range(repeats + 1):
        tape = record_scalar(f, x)
        if prepare is not None:
            prepare(tape)
        start = time.perf_counter()
        fn(tape)
        times.append(time.perf_counter() - start)
        del tape
    return statistics.median(times[1:])


def _sparse_rel_error(computed, expected):
    if not S.same_pattern(computed, expected):
        return float("inf")
    return S.sparse_rel_error(computed, expected)


def interleaved_medians(calls, min_repeat_time=0.02, repeats=9):
    """Median seconds per call of each ``fn(*args)`` in ``calls`` (a dict
    name -> (fn, args)), timed in turn within every repeat, so that a change
    in the machine's load hits all of them alike and their ratios stay
    steady. One untimed warm-up call each first (it also computes and caches
    patterns and colourings); each timing lasts >= ``min_repeat_time``."""
    numbers = {}
    for name, (fn, args) in calls.items():
        start = time.perf_counter()
        fn(*args)
        first = time.perf_counter() - start
        numbers[name] = max(1, int(np.ceil(min_repeat_time / max(first, 1e-7))))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            number = numbers[name]
            times[name].append(timeit.timeit(lambda: fn(*args), number=number) / number)
    return {name: statistics.median(t) for name, t in times.items()}


def measure_sparse(name, n):
    """Second-order and sparsity figures for one problem at one size (a dict).

    ``sweep_s`` is the first-order sweep the sparse derivative is compared
    with: the gradient of a scalar tape, one ``vjp`` of a vector one.
    ``compressed_s`` is the sparse derivative's own sweep alone (``hvp``,
    ``jvp`` or ``vjp`` with the colouring's seed matrix): the rest of
    ``sparse_s`` is the Python wrapper and the gather into CSR. All the
    per-call times of one row come from one interleaved measurement.
    """
    f, x = S.function(name, n), S.point(name, n)
    kind = S.KIND[name]
    repeats = 5 if n >= 10**5 else (9 if n >= 10**4 else 15)
    tape = record_scalar(f, x)
    row = {"problem": name, "n": n, "kind": kind, "ops": len(tape)}
    if kind == "hessian":
        pattern_fn, colouring_fn = (lambda t: t.hessian_sparsity()), (lambda t: t.hessian_colouring())
        sparse_fn, dense_fn, sweep_fn = tape.sparse_hessian, tape.hessian, tape.gradient
        sweep_args = (x,)
    else:
        pattern_fn, colouring_fn = (lambda t: t.jacobian_sparsity()), (lambda t: t.jacobian_colouring())
        sparse_fn, dense_fn, sweep_fn = tape.sparse_jacobian, tape.jacobian, tape.vjp
        sweep_args = (x, S.direction(n))
    row["pattern_s"] = fresh_seconds(f, x, pattern_fn, repeats=repeats)
    row["colouring_s"] = fresh_seconds(f, x, colouring_fn, prepare=pattern_fn, repeats=repeats)
    colouring = colouring_fn(tape)
    row["colours"] = colouring.n_colours
    row["colouring_kind"] = colouring.kind
    calls = {"sweep": (sweep_fn, sweep_args), "sparse": (sparse_fn, (x,))}
    if colouring.kind == "row":
        calls["compressed"] = (tape.vjp, (x, np.ascontiguousarray(colouring.seed.T)))
    elif kind == "hessian":
        calls["compressed"] = (tape.hvp, (x, colouring.seed))
    else:
        calls["compressed"] = (tape.jvp, (x, colouring.seed))
    if name == "rosenbrock":
        calls["hvp"] = (tape.hvp, (x, S.direction(n)))
    if name == "bratu":
        rosenbrock = record_scalar(P.rosenbrock, P.point("rosenbrock", n))
        calls["rosenbrock_gradient"] = (rosenbrock.gradient, (P.point("rosenbrock", n),))
    if n <= SPARSE_DENSE_MAX:
        calls["dense"] = (dense_fn, (x,))
    for key, seconds in interleaved_medians(calls).items():
        row[f"{key}_s"] = seconds

    result = sparse_fn(x)
    row["nnz"] = result.nnz
    row["error"] = _sparse_rel_error(result, S.matrix(name, n))
    row["sweep_error"] = P.rel_error(sweep_fn(*sweep_args), S.sweep_reference(name, n))
    if name == "rosenbrock":
        row["hvp_error"] = P.rel_error(tape.hvp(x, S.direction(n)), S.rosenbrock_hvp(n))
    if n <= SPARSE_DENSE_MAX:
        row["dense_error"] = P.rel_error(dense_fn(x), result.toarray())
    return row


SPARSE_LEGEND = """\
second order and sparsity (H = Hessian of a scalar tape, J = Jacobian of a vector one):
pattern = hessian_/jacobian_sparsity() on a fresh tape; colouring = the colouring on a fresh
tape whose pattern is computed; sparse = sparse_hessian/sparse_jacobian(x) with both cached;
compressed = its hvp/jvp/vjp with the seed matrix alone (the rest of sparse is the wrapper
and the gather into CSR); 1st-order sweep = gradient (H) or one vjp(x, w) (J) of the same
tape; hvp = tape.hvp(x, v), one direction; dense = tape.hessian/jacobian(x) (n <= 10^3);
err = max relative error of the sparse matrix, first-order sweep and hvp against the
closed forms (long double). The per-call times of a row are medians of one interleaved
measurement.
"""


def measure_arrays(scalar_mlp=False):
    """Per array case: the gradient recorded as array entries, the same code
    recorded with one scalar entry per element (skipped for the perceptron
    unless asked: 5·10^7 entries), and the hand-written NumPy gradient,
    timed interleaved; recording time, entry counts and errors."""
    rows = []
    for name, (f, gradient, point) in P.ARRAY_CASES.items():
        x = point()
        row = {"problem": name, "n": x.size}
        row["record_s"] = median_seconds(wg.record, f, x, repeats=3)
        tape = wg.record(f, x)
        row["entries"], row["elementwise"] = len(tape), tape.stats()["n_elementwise"]
        expected = gradient(x)
        row["error"] = P.rel_error(tape.gradient(x), expected)
        calls = {"numpy": (gradient, (x,)), "arrays": (tape.gradient, (x,)),
                 "forward": (tape.forward, (x,))}
        if name != "mlp" or scalar_mlp:
            scalars = record_scalar(f, x)
            row["scalar_entries"] = len(scalars)
            calls["scalars"] = (scalars.gradient, (x,))
        row.update({f"{k}_s": v for k, v in interleaved_medians(calls, repeats=7).items()})
        rows.append(row)
        del tape
    return rows


def print_array_table(rows):
    header = ("problem", "n", "entries", "elementwise", "record", "forward", "gradient",
              "NumPy gradient", "grad/NumPy", "scalar entries", "scalar grad/NumPy", "err")
    lines = [header]
    for r in rows:
        scalar = r.get("scalars_s")
        lines.append((
            r["problem"], str(r["n"]), str(r["entries"]), f"{r['elementwise']:.3g}",
            _fmt_time(r["record_s"]), _fmt_time(r["forward_s"]), _fmt_time(r["arrays_s"]),
            _fmt_time(r["numpy_s"]), f"{r['arrays_s'] / r['numpy_s']:.2f}",
            f"{r['scalar_entries']:.3g}" if scalar else "-",
            f"{scalar / r['numpy_s']:.2f}" if scalar else "-", f"{r['error']:.1e}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def check_array_targets(rows):
    return [(f"array entries, {r['problem']} gradient / hand-written NumPy gradient "
             f"<= {ARRAY_GRADIENT_OVER_NUMPY}", f"{r['arrays_s'] / r['numpy_s']:.2f}",
             r["arrays_s"] / r["numpy_s"] <= ARRAY_GRADIENT_OVER_NUMPY) for r in rows]


def print_sparse_table(rows):
    header = ("problem", "", "n", "tape ops", "nnz", "colours", "pattern", "colouring",
              "sparse", "compressed", "1st-order sweep", "sparse/sweep", "hvp", "hvp/grad",
              "dense", "err")
    lines = [header]
    for r in rows:
        hvp = r.get("hvp_s")
        lines.append((
            r["problem"], "H" if r["kind"] == "hessian" else "J", f"{r['n']:.0e}".replace("+0", ""),
            str(r["ops"]), str(r["nnz"]), f"{r['colours']} {r['colouring_kind']}",
            _fmt_time(r["pattern_s"]), _fmt_time(r["colouring_s"]), _fmt_time(r["sparse_s"]),
            _fmt_time(r["compressed_s"]),
            _fmt_time(r["sweep_s"]) + (" grad" if r["kind"] == "hessian" else " vjp"),
            f"{r['sparse_s'] / r['sweep_s']:.1f}",
            _fmt_time(hvp), "-" if hvp is None else f"{hvp / r['sweep_s']:.1f}",
            _fmt_time(r.get("dense_s")),
            f"{max(r['error'], r['sweep_error'], r.get('hvp_error', 0.0)):.1e}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if "rosenbrock_gradient_s" in r:
            print(f"  {r['problem']} n={r['n']:.0e}: sparse Jacobian = "
                  f"{r['sparse_s'] / r['rosenbrock_gradient_s']:.1f} Rosenbrock gradients at the "
                  f"same n ({_fmt_time(r['rosenbrock_gradient_s'])})".replace("+0", ""))


def check_sparse_targets(rows):
    """(description, measured text, met) for the second-order and sparsity targets."""
    out = []
    by = {(r["problem"], r["n"]): r for r in rows}
    for r in rows:
        if r["problem"] == "rosenbrock":
            ratio = r["hvp_s"] / r["sweep_s"]
            out.append((f"rosenbrock n={r['n']:.0e} hvp <= {HVP_OVER_GRADIENT:g} x gradient".replace("+0", ""),
                        f"{ratio:.1f} x", ratio <= HVP_OVER_GRADIENT and r["hvp_error"] <= P.RTOL))
    r = by.get(("rosenbrock", 10**5))
    if r is not None:
        ratio = r["sparse_s"] / r["sweep_s"]
        out.append((f"rosenbrock n=1e5 sparse Hessian <= {HESSIAN_COLOURS} colours and "
                    f"<= {SPARSE_HESSIAN_OVER_GRADIENT:g} x gradient",
                    f"{r['colours']} colours, {ratio:.1f} x",
                    r["colours"] <= HESSIAN_COLOURS and ratio <= SPARSE_HESSIAN_OVER_GRADIENT
                    and r["error"] <= P.RTOL))
        out.append((f"rosenbrock n=1e5 hessian_sparsity (fresh tape) < {PATTERN_SECONDS:g} s",
                    _fmt_time(r["pattern_s"]), r["pattern_s"] < PATTERN_SECONDS))
    for r in rows:
        if r["problem"] == "bratu":
            ratio = r["sparse_s"] / r["sweep_s"]
            out.append((f"bratu n={r['n']:.0e} sparse Jacobian {BRATU_COLOURS} colours and "
                        f"<= {SPARSE_JACOBIAN_OVER_VJP:g} x one vjp".replace("+0", ""),
                        f"{r['colours']} colours, {ratio:.1f} x",
                        r["colours"] == BRATU_COLOURS and ratio <= SPARSE_JACOBIAN_OVER_VJP
                        and r["error"] <= P.RTOL))
    r = by.get(("bratu", 10**5))
    if r is not None:
        out.append((f"bratu n=1e5 jacobian_sparsity (fresh tape) < {PATTERN_SECONDS:g} s",
                    _fmt_time(r["pattern_s"]), r["pattern_s"] < PATTERN_SECONDS))
    for r in rows:
        out.append((f"{r['problem']} n={r['n']:.0e} sparse {'Hessian' if r['kind'] == 'hessian' else 'Jacobian'}"
                    f" and first-order sweep err <= {P.RTOL:g}".replace("+0", ""),
                    f"{max(r['error'], r['sweep_error']):.1e}",
                    max(r["error"], r["sweep_error"], r.get("dense_error", 0.0)) <= P.RTOL))
    return out


# Elementwise operations for the --ops diagnostic: name -> g(x), each one
# tape operation per element (x in [0.5, 1.5]).
OP_KINDS = {
    "add  x + x": lambda x: x + x,
    "add  x + 1": lambda x: x + 1.0,
    "mul  x * x": lambda x: x * x,
    "mul  3 * x": lambda x: 3.0 * x,
    "div  x / x": lambda x: x / x,
    "square": lambda x: x**2,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "pow  x ** 1.5": lambda x: x**1.5,
}


def measure_ops(n=10**4):
    """Forward and gradient ns per operation of each kind, from the tapes of
    sum(g(x)) and sum(x), beside NumPy's ns per element for g."""
    x = 1.0 + 0.5 * np.sin(np.arange(n))
    base = record_scalar(np.sum, x)
    base_fwd = median_seconds(base.forward, x)
    base_grad = median_seconds(base.gradient, x)
    rows = []
    for name, g in OP_KINDS.items():
        tape = record_scalar(lambda v: np.sum(g(v)), x)
        extra = len(tape) - len(base)
        fwd = (median_seconds(tape.forward, x) - base_fwd) * 1e9 / extra
        grad = (median_seconds(tape.gradient, x) - base_grad) * 1e9 / extra
        numpy_ns = median_seconds(g, x) * 1e9 / n
        rows.append((name, extra, fwd, grad, numpy_ns))
    return rows


def print_ops(rows, n=10**4):
    print(f"cost per operation at n={n}: wengert forward / gradient (ns), beside "
          "NumPy's ufunc (ns per element)")
    print(f"  {'operation':<14} {'ops':>6} {'fwd ns':>7} {'grad ns':>8} {'NumPy ns':>9} {'fwd/NumPy':>10}")
    for name, extra, fwd, grad, numpy_ns in rows:
        print(f"  {name:<14} {extra:>6} {fwd:>7.2f} {grad:>8.2f} {numpy_ns:>9.2f} {fwd / numpy_ns:>10.1f}")


def _fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def print_table(rows):
    header = ("problem", "n", "tape ops", "rec ns/op", "rec Mop/s", "fwd ns/op", "grad ns/op",
              "NumPy f", "grad/f", "approx_fprime", "FD/grad", "err wengert", "err FD")
    lines = [header]
    for r in rows:
        fd = r.get("fd_s")
        lines.append((
            r["problem"], f"{r['n']:.0e}".replace("+0", ""), str(r["ops"]),
            f"{r['record_s'] * 1e9 / r['ops']:.1f}", f"{r['ops'] / r['record_s'] / 1e6:.1f}",
            f"{r['forward_s'] * 1e9 / r['ops']:.2f}", f"{r['gradient_s'] * 1e9 / r['ops']:.2f}",
            _fmt_time(r["numpy_f_s"]), f"{r['gradient_s'] / r['numpy_f_s']:.1f}",
            _fmt_time(fd), "-" if fd is None else f"{fd / r['gradient_s']:.0f}",
            f"{r['gradient_error']:.1e}",
            "-" if fd is None else f"{r['fd_error']:.1e}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def check_targets(rows, rec, calls):
    """(description, measured text, met) for each of the issue's targets."""
    out = []
    by = {(r["problem"], r["n"]): r for r in rows}

    def each(n, what, fn):
        for p in P.PROBLEMS:
            r = by.get((p.name, n))
            if r is not None:
                out.append((f"{what} [{p.name}]",) + fn(r))

    each(10**4, f"n=10^4 forward <= {FORWARD_NS_PER_OP} ns/op",
         lambda r: (f"{r['forward_s'] * 1e9 / r['ops']:.2f} ns/op",
                    r["forward_s"] * 1e9 / r["ops"] <= FORWARD_NS_PER_OP))
    each(10**4, f"n=10^4 gradient <= {GRADIENT_NS_PER_OP} ns/op",
         lambda r: (f"{r['gradient_s'] * 1e9 / r['ops']:.2f} ns/op",
                    r["gradient_s"] * 1e9 / r["ops"] <= GRADIENT_NS_PER_OP))
    each(10**6, f"n=10^6 gradient <= {GRADIENT_OVER_NUMPY_F:g} x NumPy f",
         lambda r: (f"{r['gradient_s'] / r['numpy_f_s']:.1f} x",
                    r["gradient_s"] / r["numpy_f_s"] <= GRADIENT_OVER_NUMPY_F))
    each(10**4, f"n=10^4 gradient >= {FD_SPEEDUP:g} x faster than approx_fprime, err <= 1e-13",
         lambda r: ("not measured", None) if "fd_s" not in r else
         (f"{r['fd_s'] / r['gradient_s']:.0f} x, err {r['gradient_error']:.1e}",
          r["fd_s"] / r["gradient_s"] >= FD_SPEEDUP and r["gradient_error"] <= GRADIENT_RTOL))
    if calls:
        us = calls["survey gradient"]
        out.append((f"survey tape.gradient <= {SURVEY_US:g} us/call", f"{us:.2f} us", us <= SURVEY_US))
        us = calls["rosenbrock n=100 gradient"]
        out.append((f"rosenbrock n=100 tape.gradient <= {ROSENBROCK100_US:g} us/call",
                    f"{us:.2f} us", us <= ROSENBROCK100_US))
    if rec:
        ns = rec["loop_ns_per_op"]
        out.append((f"recording, scalar loop n=10^4 <= {RECORD_LOOP_NS_PER_OP:g} ns/op",
                    f"{ns:.0f} ns/op", ns <= RECORD_LOOP_NS_PER_OP))
    each(10**6, f"recording, vectorised n=10^6 >= {RECORD_OPS_PER_S:.0e} ops/s",
         lambda r: (f"{r['ops'] / r['record_s']:.3g} ops/s", r["ops"] / r["record_s"] >= RECORD_OPS_PER_S))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(P.SIZES),
                        help="problem sizes (default: 100 10000 1000000)")
    parser.add_argument("--problems", nargs="+", default=[p.name for p in P.PROBLEMS],
                        choices=[p.name for p in P.PROBLEMS])
    parser.add_argument("--no-fd", action="store_true", help="skip scipy's approx_fprime")
    parser.add_argument("--ops", action="store_true",
                        help="add the cost of each kind of operation (diagnostic)")
    parser.add_argument("--no-sparse", action="store_true",
                        help="skip the second-order and sparsity table")
    parser.add_argument("--sparse-only", action="store_true",
                        help="only the second-order and sparsity table")
    parser.add_argument("--no-arrays", action="store_true", help="skip the array-entry table")
    parser.add_argument("--arrays-only", action="store_true", help="only the array-entry table")
    parser.add_argument("--scalar-mlp", action="store_true",
                        help="also time the perceptron recorded as scalar entries (slow)")
    args = parser.parse_args(argv)
    if args.arrays_only:
        args.sparse_only, args.no_sparse = True, True
    if args.sparse_only and not args.arrays_only:
        args.no_arrays = True

    print(f"wengert {wg.__version__}, NumPy {np.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    if not args.sparse_only:
        print("ns/op = median time / tape length; grad = forward + reverse sweep; "
              "grad/f = gradient time / one NumPy evaluation of f;\nFD/grad = approx_fprime "
              "time / gradient time; err = max|g - g_exact| / max|g_exact| (closed form in "
              "long double)\n")
    started = time.perf_counter()
    rows, rec, calls, op_rows, sparse_rows, array_rows = [], None, None, None, [], []
    if not args.sparse_only:
        for problem in (P.BY_NAME[name] for name in args.problems):
            for n in args.sizes:
                rows.append(measure_problem(problem, n, fd=not args.no_fd))
                print(f"  measured {problem.name} n={n} ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr)
        rec = measure_recording()
        calls = measure_calls()
        op_rows = measure_ops() if args.ops else None
    if not args.no_sparse:
        for name, sizes in SPARSE_CASES:
            for n in sizes:
                sparse_rows.append(measure_sparse(name, n))
                print(f"  measured {name} n={n} (second order and sparsity, "
                      f"{time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if not args.no_arrays:
        array_rows = measure_arrays(scalar_mlp=args.scalar_mlp)
        print(f"  measured the array entries ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)

    if rows:
        print_table(rows)
        print()
        print(f"recording, scalar Python loop (rosenbrock n=10^4, {rec['loop_ops']} ops): "
              f"{rec['loop_ns_per_op']:.0f} ns/op ({_fmt_time(rec['loop_s'])} per recording)")
        for r in rows:
            if r["n"] == max(args.sizes):
                print(f"recording, vectorised ({r['problem']} n={r['n']}, {r['ops']} ops): "
                      f"{r['ops'] / r['record_s']:.3g} ops/s")
        print()
        for name, us in calls.items():
            print(f"per call, {name}: {us:.2f} us")
        print()
    if op_rows:
        print_ops(op_rows)
        print()
    if sparse_rows:
        print(SPARSE_LEGEND)
        print_sparse_table(sparse_rows)
        print()
    if array_rows:
        print("array entries: NumPy code recorded as one entry per NumPy call, beside the "
              "hand-written NumPy gradient\nand the same code recorded with one scalar entry "
              "per element; times are medians of interleaved repeats")
        print_array_table(array_rows)
        print()
    print("targets:")
    checks = ((check_targets(rows, rec, calls) if rows else []) + check_sparse_targets(sparse_rows)
              + check_array_targets(array_rows))
    for what, measured, met in checks:
        verdict = "n/a " if met is None else ("MET " if met else "MISS")
        print(f"  {verdict}  {what}: {measured}")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
