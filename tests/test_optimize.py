"""tape.optimize(): dead code, constant folding, common subexpressions and
trivial algebra, checked against the original tape.

What must hold (see wengert/optimize.py):

* values: bit for bit at every point, -0.0 included; NaN exactly where the
  original is NaN (only a NaN's payload/sign may differ, which IEEE 754
  leaves open for add/mul of two NaNs);
* forward-mode derivatives: equal (==, NaN where NaN);
* reverse-mode derivatives: equal (==) when no operation was merged or
  aliased; otherwise the adjoint sums are associated differently, and the
  results agree to REVERSE_RTOL relative to the largest entry (where both are
  finite: merging can turn the original's inf - inf into a 0 * inf = 0);
* guards: the same BranchChangedError, with the same message, at the same
  points;
* the original tape is untouched, and optimising twice changes nothing more.
"""
from __future__ import annotations

import operator
import pickle
import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

import wengert as wg
from wengert import _opcodes as ops
from wengert.optimize import OptimizeReport, optimize_tape

from _helpers import recorded_ops, scalar_recording

# Reverse-mode Jacobians after merging: relative to the largest |entry|.
# Reassociating a sum of k adjoint contributions moves it by about
# k * eps * (sum of their magnitudes); 1e-10 leaves room for k ~ 1e5.
REVERSE_RTOL = 1e-10


# ---- comparing two tapes ---------------------------------------------------------

def assert_same_bits(actual, expected):
    """Identical float64 bit patterns, -0.0 included; NaN at the same places."""
    actual = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    expected = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    assert actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan, err_msg="NaN positions differ")
    a_bits = actual.view(np.uint64)[~nan]
    e_bits = expected.view(np.uint64)[~nan]
    bad = np.flatnonzero(a_bits != e_bits)
    assert bad.size == 0, (f"{bad.size} values differ in their bits: "
                           f"{actual[~nan][bad[:5]]!r} vs {expected[~nan][bad[:5]]!r}")


def assert_close_where_finite(actual, expected, rtol=REVERSE_RTOL):
    finite = np.isfinite(actual) & np.isfinite(expected)
    scale = np.max(np.abs(expected[finite]), initial=0.0)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=rtol * scale)


def outcome(call):
    """("ok", result) or ("branch", message) of a tape call."""
    try:
        return "ok", call()
    except wg.BranchChangedError as exc:
        return "branch", str(exc)


def assert_equivalent(tape, small, points, *args):
    """``small`` replays like ``tape`` at every point: values bit for bit,
    forward Jacobians equal, reverse Jacobians equal or close (see the
    module docstring), the same BranchChangedError messages."""
    report = small.optimize_report
    reassociated = report.merged + report.simplified > 0
    for x in points:
        for what, call in [
                ("forward", lambda t: t.forward(x, *args)),
                ("jacobian-forward", lambda t: t.jacobian(x, *args, mode="forward")),
                ("jacobian-reverse", lambda t: t.jacobian(x, *args, mode="reverse"))]:
            got, want = outcome(lambda: call(small)), outcome(lambda: call(tape))
            assert got[0] == want[0], f"{what} at {x}: {got} vs {want}"
            if got[0] == "branch":
                assert got[1] == want[1]
            elif what == "forward":
                assert_same_bits(got[1], want[1])
            elif what == "jacobian-forward" or not reassociated:
                np.testing.assert_array_equal(got[1], want[1], err_msg=f"{what} at {x}")
            else:
                assert_close_where_finite(np.asarray(got[1]), np.asarray(want[1]))


def state_copy(tape):
    state = tape._state()
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key].view(np.uint8), b[key].view(np.uint8), err_msg=key)
        elif key != "param_specs":
            assert a[key] == b[key], key


def names(tape):
    return [name for name, _ in recorded_ops(tape)]


SPECIAL_POINTS = [
    [-0.0, 0.0, 1.0], [np.inf, -np.inf, 2.0], [np.nan, 1.0, -1.0], [1e-310, -2.5, 0.5],
    [1e300, -1e300, 3.0],
]


def points_for(rng, n=3):
    return [rng.normal(size=n) * 2.0 for _ in range(4)] + [np.resize(p, n) for p in SPECIAL_POINTS]


# ---- each rewrite on its own --------------------------------------------------------

def test_sin_computed_three_times_is_computed_once(rng):
    def f(x):
        return np.sin(x) + np.sin(x) * np.sin(x)

    tape = wg.record(f, np.ones(5))
    small = tape.optimize()
    assert names(tape).count("sin") == 15
    assert names(small).count("sin") == 5
    report = small.optimize_report
    assert (report.merged, report.dead, report.folded, report.simplified) == (10, 0, 0, 0)
    assert report.ops_before - report.ops_after == 10
    assert_equivalent(tape, small, points_for(rng, 5))


def test_add_and_mul_operands_are_sorted_but_not_sub_or_div(rng):
    def f(x):
        a, b = x[0], x[1]
        return np.stack([a * b, b * a, a + b, b + a, 2.0 + a, a + 2.0, 3.0 * b, b * 3.0,
                         a - b, b - a, a / b, b / a, np.maximum(a, b), np.maximum(b, a)])

    tape = wg.record(f, np.array([0.3, 1.7]))
    small = tape.optimize()
    # The four commutative pairs merge; sub, div and maximum (whose
    # NaN and tie behaviour is not symmetric) stay.
    assert small.optimize_report.merged == 4
    assert names(small).count("sub") == 2 and names(small).count("div") == 2
    assert names(small).count("maximum") == 2
    assert_equivalent(tape, small, points_for(rng, 2))


def test_unused_work_is_dead_code(rng):
    def f(x):
        wasted = np.exp(x) * np.cos(x)       # never used
        _ = wasted + 1.0
        return np.sum(x ** 2)

    tape = wg.record(f, np.ones(4))
    small = tape.optimize()
    report = small.optimize_report
    assert report.dead == 4 * 4
    assert "exp" not in names(small) and "cos" not in names(small)
    assert len(small) == len(tape) - 16
    assert_equivalent(tape, small, points_for(rng, 4))


def test_constant_chains_fold_to_one_immediate(rng):
    def f(x):
        z = np.concatenate([x, np.array([2.0, 3.0])])   # z[3], z[4]: const entries
        c = np.exp(z[3]) * np.sqrt(z[4]) + z[3]       # a chain of constants only
        return c * x + np.log(z[4]) - z[3]

    x0 = np.array([0.5, -1.0, 2.0])
    tape = wg.record(f, x0)
    small = tape.optimize()
    report = small.optimize_report
    # exp, sqrt, mul, add and log are evaluated; what remains reads the
    # results as immediates: x * c (VC), then + log 3, then - 2.
    assert report.evaluated == 5
    assert set(names(small)) == {"mul", "add", "sub"}
    assert "const" not in names(small)
    kinds = {kind for _, kind in recorded_ops(small)}
    assert kinds == {ops.Kind.VC}
    # The folded value is the one the replay computes, bit for bit.
    c = np.exp(np.float64(2.0)) * np.sqrt(np.float64(3.0)) + 2.0
    assert small.optimize_report.consts_after == 3
    assert_same_bits(small.forward(np.ones(3)), tape.forward(np.ones(3)))
    assert np.isclose(small.forward(np.ones(3))[0], c + np.log(3.0) - 2.0, rtol=1e-15)
    assert_equivalent(tape, small, points_for(rng))


def test_folding_uses_the_replay_kernels_bit_for_bit():
    # Every unary operation on a constant: the folded immediate must be the
    # exact bits the original tape computes when replayed.
    unary = [op.name for op in ops.OPERATIONS if op.arity == 1 and op.name != "neg"]
    values = [0.3, -0.7, 1.5, 0.0, -0.0, 40.0, -800.0, np.inf, np.nan]

    def f(x):
        z = np.concatenate([x, np.array(values)])
        out = [getattr(wg, name)(z[1 + k]) * x[0]
               for name in unary for k in range(len(values))]
        return np.stack(out)

    tape = wg.record(f, np.array([1.0]))
    small = tape.optimize()
    assert small.optimize_report.evaluated == len(unary) * len(values)
    assert set(names(small)) == {"mul"}
    for x in ([1.0], [-0.0], [np.inf], [np.nan]):
        assert_same_bits(small.forward(x), tape.forward(x))


def test_var_var_with_a_constant_slot_becomes_var_const(rng):
    def f(x):
        z = np.concatenate([x, np.array([0.25])])
        return np.stack([x[0] - z[2], z[2] / x[1], np.arctan2(z[2], x[0])])

    tape = wg.record(f, np.array([1.0, 2.0]))
    small = tape.optimize()
    assert [kind for _, kind in recorded_ops(small)] == [ops.Kind.VC, ops.Kind.CV, ops.Kind.CV]
    assert small.optimize_report.inlined == 3
    assert small.optimize_report.folded == 1           # the const entry
    assert_equivalent(tape, small, points_for(rng, 2))


IDENTITIES = [
    ("x * 1", lambda x, one, zero, nzero: x * 1.0),
    ("1 * x", lambda x, one, zero, nzero: 1.0 * x),
    ("x * slot 1", lambda x, one, zero, nzero: x * one),
    ("x / 1", lambda x, one, zero, nzero: x / 1.0),
    ("x - 0", lambda x, one, zero, nzero: x - 0.0),
    ("x - slot 0", lambda x, one, zero, nzero: x - zero),
    ("x + (-0)", lambda x, one, zero, nzero: x + (-0.0)),
    ("(-0) + x", lambda x, one, zero, nzero: -0.0 + x),
    ("x + slot -0", lambda x, one, zero, nzero: x + nzero),
    ("-(-x)", lambda x, one, zero, nzero: -(-x)),
    ("where(c, x, x)", lambda x, one, zero, nzero: wg.where(x > 1.0, x, x)),
    ("where(1, x, y)", lambda x, one, zero, nzero: wg.where(one > 0.0, x, np.sin(x))),
    ("where(0, y, x)", lambda x, one, zero, nzero: wg.where(zero > 0.0, np.sin(x), x)),
]


@pytest.mark.parametrize("name, identity", IDENTITIES, ids=[i[0] for i in IDENTITIES])
def test_exact_identities_disappear(name, identity):
    def f(x):
        z = np.concatenate([x, np.array([1.0, 0.0, -0.0])])
        return np.exp(identity(x, z[3], z[4], z[5]))

    x0 = np.array([0.5, -0.0, 2.0])
    tape = wg.record(f, x0)
    small = tape.optimize()
    assert names(small) == ["exp"] * 3
    assert small.optimize_report.simplified >= 3
    # Including the points where a wrong identity would show: -0.0, inf, NaN.
    assert_equivalent(tape, small, [x0, *SPECIAL_POINTS])


NOT_IDENTITIES = [
    # -0.0 + 0.0 is +0.0: x + 0 is not x.
    ("x + 0", lambda x: x + 0.0, [-0.0]),
    # x - (-0.0) is x + 0.0, the same.
    ("x - (-0)", lambda x: x - (-0.0), [-0.0]),
    # inf * 0 and NaN * 0 are NaN: x * 0 is not 0.
    ("x * 0", lambda x: x * 0.0, [np.inf]),
    # inf - inf is NaN: x - x is not 0.
    ("x - x", lambda x: x - x, [np.inf]),
    # x / x is NaN at 0 and inf.
    ("x / x", lambda x: x / x, [0.0]),
    # 0 - x is +0.0 at x = +0.0, where -x is -0.0.
    ("0 - x", lambda x: 0.0 - x, [0.0]),
    # x * -1 is -x except for the sign of a NaN result: left alone.
    ("x * -1", lambda x: x * -1.0, [1.0]),
]


@pytest.mark.parametrize("name, expression, witness", NOT_IDENTITIES,
                         ids=[i[0] for i in NOT_IDENTITIES])
def test_inexact_identities_are_kept(name, expression, witness):
    tape = wg.record(lambda x: expression(x), np.array([1.5]))
    small = tape.optimize()
    assert len(small) == len(tape) == 1
    for x in (witness, [1.5], [-0.0], [np.inf], [np.nan]):
        assert_same_bits(small.forward(x), tape.forward(x))


@pytest.mark.parametrize("arrays", [False, True], ids=["scalar entries", "with array entries"])
def test_an_identity_on_the_first_entry_reads_through_to_its_operand(arrays):
    # The first entry is the edge of the passes' branch-free slot lookups
    # (compiled apart for tapes of scalar entries only): its readers must
    # read x[0], not the slot of the entry that goes.
    def f(x):
        y = x[0] * 1.0
        return y * x[1] + y + np.sum(np.sin(x[1:]))

    x0 = np.linspace(0.5, 1.5, 9)
    if arrays:
        tape = wg.record(f, x0)
    else:
        with scalar_recording():
            tape = wg.record(f, x0)
    assert names(tape)[0] == "mul" and ("map" in names(tape)) == arrays
    small = tape.optimize()
    assert small.optimize_report.simplified == 1
    assert len(small) == len(tape) - 1
    assert_equivalent(tape, small, [x0, -x0, np.resize(SPECIAL_POINTS[1], 9)])


def test_only_negation_cancels_negation():
    unary = [op.name for op in ops.OPERATIONS if op.arity == 1 and op.name != "neg"]

    def f(x):
        return np.stack([getattr(wg, name)(-x[0]) for name in unary]
                        + [-(-(-x[1])), -(-(-(-x[2])))])

    tape = wg.record(f, np.array([0.3, 0.4, 0.5]))
    small = tape.optimize()
    # One neg of x[0] shared by every f(-x[0]); -(-(-x)) is one neg.
    assert names(small) == ["neg"] + unary + ["neg"]
    for x in ([0.3, 0.4, 0.5], [-0.0, 0.0, -0.0], [np.inf, np.nan, -1.0]):
        assert_same_bits(small.forward(x), tape.forward(x))


def test_equal_constants_merge_by_bits_only():
    def f(x):
        z = np.concatenate([x, np.array([0.0, -0.0, 0.0, np.nan, np.nan])])
        return np.stack([z[1], z[2], z[3], z[4], z[5]]) * x[0]

    tape = wg.record(f, np.array([2.0]))
    small = tape.optimize()
    # 0.0 twice and the (identical) NaN twice merge; -0.0 stays apart.
    assert_same_bits(small.forward([2.0]), tape.forward([2.0]))
    assert_same_bits(small.forward([-3.0]), tape.forward([-3.0]))
    assert small.optimize_report.merged >= 2
    pool = small._state()["consts"]
    assert sorted(np.signbit(pool[pool == 0.0]).tolist()) == [False, True]


def test_parameters_are_not_constants(rng):
    def f(x, p):
        return x * p + p * 2.0 + np.sin(p) * x

    tape = wg.record(f, np.ones(3), 0.5)
    small = tape.optimize()
    assert small.optimize_report.evaluated == 0
    for p in (0.5, -1.25, np.inf):
        for x in points_for(rng):
            assert_same_bits(small.forward(x, p), tape.forward(x, p))
            np.testing.assert_array_equal(small.jacobian(x, p), tape.jacobian(x, p))


def test_selects_merge_when_condition_and_branches_match(rng):
    def f(x):
        a = wg.where(x > 0.0, np.sin(x), np.cos(x))
        b = wg.where(x > 0.0, np.sin(x), np.cos(x))
        c = wg.where(x > 0.0, np.cos(x), np.sin(x))    # branches swapped: different
        return a + b + c

    tape = wg.record(f, np.array([0.5, -0.5]))
    small = tape.optimize()
    assert names(small).count("select") == 4
    assert names(small).count("gt") == 2
    assert_equivalent(tape, small, points_for(rng, 2))


# ---- guards ------------------------------------------------------------------------------

def guarded(x):
    s = np.sin(x[0])
    t = np.sin(x[0])                 # duplicate: the guard reads a merged slot
    y = x[1] * 1.0                   # aliased to x[1]
    if t > 0.25:
        y = y * s
    z = np.concatenate([x, np.array([3.0])])
    if y < z[2]:                     # a constant slot in a guard: becomes immediate
        y = y + 1.0
    return y


def test_guards_survive_with_their_messages():
    x0 = np.array([1.0, 2.0])
    tape = wg.record(guarded, x0)
    small = tape.optimize()
    assert small.n_guards == tape.n_guards == 2
    assert "const" not in names(small)
    for x in ([1.0, 2.0], [1.2, -7.0], [-1.0, 2.0], [1.0, 50.0], [np.nan, 1.0], [0.5, np.nan]):
        got, want = outcome(lambda: small.forward(x)), outcome(lambda: tape.forward(x))
        assert got[0] == want[0]
        if got[0] == "branch":
            assert got[1] == want[1]
            assert "test_optimize.py" in got[1]
        else:
            assert_same_bits(got[1], want[1])
    with pytest.raises(wg.BranchChangedError, match=r"`v\[\d+\] > 0.25`.*was True"):
        small.gradient([-1.0, 2.0])
    with pytest.raises(wg.BranchChangedError, match=r"batch row 1"):
        small.forward(np.array([[1.0, 2.0], [1.0, 9.0]]))
    assert_equivalent(tape, small, [x0, [1.1, 0.5], [-1.0, 2.0], [1.0, 50.0]])


def test_a_guard_keeps_otherwise_dead_code_alive():
    def f(x):
        unused = np.exp(x[0]) - x[1]
        if unused > 0.0:
            return x[0] * 2.0
        return x[0] * 3.0

    tape = wg.record(f, np.array([1.0, 0.5]))
    small = tape.optimize()
    assert names(small) == names(tape)
    with pytest.raises(wg.BranchChangedError):
        small.forward([0.0, 5.0])


# ---- the contract: a new tape, the old one untouched, idempotent ----------------------

def mixed(x):
    z = np.concatenate([x, np.array([2.0, -0.0])])
    a = np.sin(x) * np.sin(x) * 1.0 + np.exp(z[-2]) * x
    b = wg.where(x > 0.0, -(-a), a + z[-1])
    if x[0] > -5.0:
        b = b / 1.0 + np.cos(x)
    unused = np.tanh(b)
    return np.sum(b * b) + np.prod(x)


def test_the_original_tape_is_unchanged():
    tape = wg.record(mixed, np.array([0.5, -1.0, 2.0]))
    before = state_copy(tape)
    x = np.array([0.1, 0.2, -0.3])
    value, grad = tape.value_and_gradient(x)
    small = tape.optimize()
    assert small is not tape and len(small) < len(tape)
    assert_same_state(state_copy(tape), before)
    assert tape.value_and_gradient(x)[0] == value
    np.testing.assert_array_equal(tape.value_and_gradient(x)[1], grad)


def test_optimising_twice_changes_nothing_more(rng):
    tape = wg.record(mixed, np.array([0.5, -1.0, 2.0]))
    once = tape.optimize()
    twice = once.optimize()
    assert twice.optimize_report.removed == 0
    assert twice.optimize_report.inlined == 0 and twice.optimize_report.evaluated == 0
    assert_same_state(state_copy(twice), state_copy(once))
    assert_equivalent(tape, once, points_for(rng))


def test_report_counts_add_up_and_print():
    tape = wg.record(mixed, np.array([0.5, -1.0, 2.0]))
    report = tape.optimize().optimize_report
    assert isinstance(report, OptimizeReport)
    assert report.removed == report.dead + report.folded + report.merged + report.simplified
    assert report.removed == len(tape) - report.ops_after > 0
    assert min(report.dead, report.folded, report.merged, report.simplified) > 0
    text = str(report)
    assert text.splitlines()[0].startswith(f"tape.optimize(): {len(tape)} -> {report.ops_after}")
    for label in ("dead code", "constant folding", "common subexpressions", "trivial algebra",
                  "constant pool", "guards"):
        assert label in text
    assert report.guards == 1


def test_optimize_tape_is_tape_optimize():
    tape = wg.record(mixed, np.array([0.5, -1.0, 2.0]))
    assert_same_state(state_copy(optimize_tape(tape)), state_copy(tape.optimize()))


def test_optimised_tapes_pickle_and_replay_batches(rng):
    tape = wg.record(mixed, np.array([0.5, -1.0, 2.0]))
    small = pickle.loads(pickle.dumps(tape.optimize()))
    X = rng.normal(size=(6, 3))
    assert_same_bits(small.forward(X), tape.forward(X))
    np.testing.assert_allclose(small.gradient(X), tape.gradient(X), rtol=1e-13)


@pytest.mark.parametrize("f, x0", [
    (lambda x: x, np.ones(3)),                           # outputs are inputs, no operations
    (lambda x: np.array([1.0, 2.0]) + 0.0 * np.sum(x) * 0.0, np.ones(2)),
    (lambda x: 2.0, np.ones(2)),                         # a constant output
    (lambda x: x * 1.0, 3.0),                            # scalar input
])
def test_degenerate_tapes(f, x0):
    tape = wg.record(f, x0)
    small = tape.optimize()
    assert len(small) <= len(tape)
    assert small.out_shape == tape.out_shape and small.in_shape == tape.in_shape
    for x in (x0, np.full(np.shape(x0), -0.0), np.full(np.shape(x0), np.nan)):
        assert_same_bits(small.forward(x), tape.forward(x))


def test_empty_tape():
    tape = wg.record(lambda x: wg.where(x > 0, x, x) * 1.0, np.ones(0))
    small = tape.optimize()
    assert len(small) == 0 and small.out_shape == (0,)
    assert small.optimize_report.consts_after == 0


# ---- the benchmark problems -------------------------------------------------------------

def rosenbrock(x):
    a, b = x[:-1], x[1:]
    return np.sum(100.0 * (b - a**2)**2 + (1.0 - a)**2)


def speelpenning(x):
    return np.prod(x)


def transcendental(x):
    a, b = x[:-1], x[1:]
    return np.sum(np.sin(a) * np.exp(np.cos(b)) + np.log(1.0 + a**2) + np.tanh(a * b))


def rosenbrock_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100 * (x[i + 1] - x[i]**2)**2 + (1 - x[i])**2
    return s


@pytest.mark.parametrize("f", [rosenbrock, speelpenning, transcendental, rosenbrock_loop])
def test_benchmark_problems_are_already_minimal(f, rng):
    # Vectorised NumPy code computes nothing twice: nothing to remove, and
    # the optimised tape gives the same bits, value and gradient.
    x = 1.0 + 0.1 * rng.normal(size=300)
    tape = wg.record(f, x)
    small = tape.optimize()
    assert small.optimize_report.removed == 0
    value, grad = tape.value_and_gradient(x)
    value2, grad2 = small.value_and_gradient(x)
    assert_same_bits(value2, value)
    assert_same_bits(grad2, grad)


def test_linear_time_on_a_long_chain_and_a_wide_tape(scalar_entries):
    # A scalar loop gives a dependency chain as long as the tape, the case
    # a level-by-level NumPy pass could not handle; and a wide tape with
    # many duplicates. Both well under a second (measured: 0.01 s and 0.06 s).
    def chain(x):
        y = x[0]
        for _ in range(50_000):
            y = np.sin(y) * 1.0 + x[1]
        return y

    def wide(x):
        return np.sum(np.sin(x) * np.sin(x) + np.cos(x))

    for f, x in ((chain, np.array([0.1, 0.2])), (wide, np.linspace(0, 1, 200_000))):
        tape = wg.record(f, x)
        start = time.process_time()
        small = tape.optimize()
        assert time.process_time() - start < 5.0
        assert len(small) < len(tape)
        assert_same_bits(small.forward(x), tape.forward(x))


# ---- random programs -----------------------------------------------------------------

CONSTANTS = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 3.0, np.inf, np.nan]
UNARY = [op.name for op in ops.OPERATIONS if op.arity == 1]
BINARY = [op.name for op in ops.OPERATIONS if ops.is_binary(op) and op.name not in ops.COMPARISONS]
COMPARE = [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
_OPERATOR = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
             "div": operator.truediv, "pow": operator.pow}


def _unary(name, a):
    return -a if name == "neg" else getattr(wg, name)(a)


def _binary(name, a, b):
    return _OPERATOR[name](a, b) if name in _OPERATOR else getattr(wg, name)(a, b)


@st.composite
def programs(draw, guards):
    """A random straight-line program over x[0..2], a parameter p and two
    constant entries, with repeats (common subexpressions), constants
    (folding, identities), selects, comparisons and optionally guards; it
    returns some of its values (the rest is dead code)."""
    constants = draw(st.lists(st.sampled_from(CONSTANTS), min_size=2, max_size=2))
    index = st.integers(0, 10**6)
    constant = st.sampled_from(CONSTANTS)
    step = st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(UNARY), index),
        st.tuples(st.just("binary"), st.sampled_from(BINARY), index, index),
        st.tuples(st.just("binary-vc"), st.sampled_from(BINARY), index, constant),
        st.tuples(st.just("binary-cv"), st.sampled_from(BINARY), constant, index),
        st.tuples(st.just("indicator"), st.sampled_from(COMPARE), index, index),
        st.tuples(st.just("where"), st.sampled_from(COMPARE), index, index, index, index),
        st.tuples(st.just("repeat"), index),
        *([st.tuples(st.just("guard"), st.sampled_from(COMPARE), index, constant, index)]
          if guards else []),
    )
    steps = draw(st.lists(step, min_size=1, max_size=25))
    outputs = draw(st.lists(index, min_size=1, max_size=4))
    return constants, steps, outputs


def run_program(program):
    constants, steps, outputs = program

    def f(x, p):
        z = np.concatenate([x, np.array(constants)])
        values = [z[i] for i in range(5)] + [p]
        done = []

        def pick(k):
            return values[k % len(values)]

        for step in steps:
            if step[0] == "repeat" and done:
                step = done[step[1] % len(done)]
            kind = step[0]
            if kind == "unary":
                values.append(_unary(step[1], pick(step[2])))
            elif kind == "binary":
                values.append(_binary(step[1], pick(step[2]), pick(step[3])))
            elif kind == "binary-vc":
                values.append(_binary(step[1], pick(step[2]), step[3]))
            elif kind == "binary-cv":
                values.append(_binary(step[1], step[2], pick(step[3])))
            elif kind == "indicator":
                values.append(step[1](pick(step[2]), pick(step[3])) * 1.0)
            elif kind == "where":
                values.append(wg.where(step[1](pick(step[2]), pick(step[3])),
                                       pick(step[4]), pick(step[5])))
            elif kind == "guard":
                if step[1](pick(step[2]), step[3]):
                    values.append(pick(step[4]) + 1.0)
                else:
                    values.append(pick(step[4]) * 2.0)
            else:
                continue
            done.append(step)
        return np.stack([pick(k) for k in outputs])

    return f


PROGRAM_POINTS = [np.array(p) for p in (
    [0.7, -1.3, 2.1], [0.3, 0.9, -0.4], [-2.0, 0.0, 1.0], [-0.0, 0.0, -0.0],
    [np.inf, 1.0, -np.inf], [np.nan, 0.5, 2.0], [1e-310, 1e300, -1e-300])]


@pytest.mark.slow
@given(programs(guards=False))
def test_random_programs_replay_identically(program):
    f = run_program(program)
    tape = wg.record(f, PROGRAM_POINTS[0], 0.4)
    small = tape.optimize()
    report = small.optimize_report
    assert report.removed == report.dead + report.folded + report.merged + report.simplified
    for p in (0.4, -0.0, np.nan):
        assert_equivalent(tape, small, PROGRAM_POINTS, p)
    twice = small.optimize()
    assert twice.optimize_report.removed == 0
    assert_same_state(state_copy(twice), state_copy(small))


@pytest.mark.slow
@given(programs(guards=True))
def test_random_programs_with_guards_replay_identically(program):
    f = run_program(program)
    tape = wg.record(f, PROGRAM_POINTS[0], 0.4)
    before = state_copy(tape)
    small = tape.optimize()
    assert small.n_guards == tape.n_guards
    assert_equivalent(tape, small, PROGRAM_POINTS, 0.4)
    assert_same_state(state_copy(tape), before)
