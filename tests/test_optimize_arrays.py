"""``tape.optimize()`` on tapes with array entries.

Dead array entries go, identical array entries merge, scalar entries fold
and merge as on scalar tapes; a slot grid that reads several entries keeps
all of them in place (pinned), and every grid moves with its slots when the
tape is renumbered. The optimised tape replays like the original: values bit
for bit, derivatives equal up to the reassociation of merged adjoints.
"""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import wengert as wg
from wengert import _opcodes as ops

from _helpers import elementwise_ops, recorded_ops, scalar_recording
from test_array_entries import K, Builder, array_programs, code, fd_gradient, run_program
from test_optimize import assert_same_bits, assert_same_state, outcome, state_copy


def names(tape):
    return [name for name, _ in recorded_ops(tape)]


def assert_replays_alike(tape, small, points, *, hessian=True):
    """Values bit for bit, gradients and Hessians equal to rounding, the same
    BranchChangedError messages."""
    for x in points:
        got, want = outcome(lambda: small.forward(x)), outcome(lambda: tape.forward(x))
        assert got[0] == want[0]
        if got[0] == "branch":
            assert got[1] == want[1]
            continue
        assert_same_bits(got[1], want[1])
        g, g0 = small.gradient(x), tape.gradient(x)
        np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12 * (1 + np.max(np.abs(g0))))
        np.testing.assert_array_equal(small.jacobian(x, mode="forward"),
                                      tape.jacobian(x, mode="forward"))
        if hessian:
            H, H0 = small.hessian(x), tape.hessian(x)
            np.testing.assert_allclose(H, H0, rtol=1e-11, atol=1e-11 * (1 + np.max(np.abs(H0))))


def counts(report):
    return report.dead, report.folded, report.merged, report.simplified


# ---- each rewrite on array entries ----------------------------------------------------

def test_an_unused_array_entry_is_dead_code(rng):
    def f(x):
        unused = np.exp(x) * x
        return np.sum(np.sin(x))

    x = rng.uniform(-1, 1, 20)
    tape = wg.record(f, x)
    small = tape.optimize()
    assert names(tape) == ["map", "map", "map", "sum"]
    assert names(small) == ["map", "sum"]
    assert counts(small.optimize_report) == (2, 0, 0, 0)
    assert_replays_alike(tape, small, [x, -x])


def test_identical_array_entries_merge_and_their_readers_follow(rng):
    def f(x):
        # sin twice (merged), then sum of each (the second reads the merged
        # map, so it merges too), then a scalar add of the two sums.
        return np.sum(np.sin(x)) + np.sum(np.sin(x)) * np.sum(np.sin(x) * np.sin(x))

    x = rng.uniform(-1, 1, 30)
    tape = wg.record(f, x)
    small = tape.optimize()
    report = small.optimize_report
    # Four sin maps are one; two of the three sums are one; the product reads
    # one map twice.
    assert names(small).count("map") == 2 and names(small).count("sum") == 2
    assert report.merged == 3 + 1
    assert report.removed == report.merged
    assert_replays_alike(tape, small, [x, 2 * x])


def test_array_entries_with_different_operands_or_constants_stay(rng):
    def f(x):
        return np.sum(np.sin(x) * 2.0) + np.sum(np.sin(x) * 3.0) + np.sum(np.sin(x[::-1]))

    x = rng.uniform(-1, 1, 30)
    tape = wg.record(f, x)
    small = tape.optimize()
    # One sin of x merges; the reversed read and the other constant differ.
    assert small.optimize_report.merged == 1
    assert len(small) == len(tape) - 1
    assert_replays_alike(tape, small, [x])


def test_a_broadcast_scalar_moves_to_its_representative(rng):
    def f(x):
        c = x[0] * x[1]
        d = x[1] * x[0]          # the same product: merged, and the map reads c
        e = x[2] * 1.0           # an identity: the map reads x[2]
        return np.sum(np.sin(x) * d + e * x)

    x = rng.uniform(-1, 1, 12)
    tape = wg.record(f, x)
    small = tape.optimize()
    report = small.optimize_report
    assert (report.merged, report.simplified) == (1, 1)
    assert [name for name, _ in elementwise_ops(small)].count("mul") == 1 + 12 + 12
    assert_replays_alike(tape, small, [x, -x])


def test_constants_fold_into_what_an_array_entry_reads(rng):
    def f(x):
        z = np.concatenate([x, np.array([2.0, 3.0])])
        c = np.exp(z[-2]) * np.sqrt(z[-1])        # constants only: folded
        return np.sum(np.sin(x) * c) + c * x[0]

    x = rng.uniform(-1, 1, 10)
    tape = wg.record(f, x)
    small = tape.optimize()
    report = small.optimize_report
    assert report.evaluated == 3
    # The map reads the folded product from a const entry: that one stays.
    assert names(small).count("const") == 1
    assert "exp" not in names(small) and "sqrt" not in names(small)
    assert_replays_alike(tape, small, [x, -x])


def build_pinned():
    """Eight scalar entries read as one grid by a map: a duplicate, an
    identity and an all-constant operation among them, each of which would
    go on its own; after them the same three again, which do go."""
    b = Builder(4, consts=[1.0, 2.0])
    one = b.scalar(code("const"), 0)
    grid = [b.scalar(code("mul", K.VV), 0, 1),      # x0 * x1
            b.scalar(code("mul", K.VV), 0, 1),      # duplicate
            b.scalar(code("mul", K.VC), 2, 0),      # x2 * 1
            b.scalar(code("exp"), one),             # constant
            b.scalar(code("sin"), 3),
            b.scalar(code("add", K.VV), 0, 3),
            b.scalar(code("neg"), 2),
            b.scalar(code("cos"), 1)]
    assert grid == list(range(grid[0], grid[0] + 8))
    dup = b.scalar(code("mul", K.VV), 0, 1)         # duplicate of grid[0]: merged
    ident = b.scalar(code("mul", K.VC), 2, 0)       # x2 * 1: aliased to x2
    b.scalar(code("cos"), 3)                        # dead
    m = b.map(code("sin"), 1, 8, (grid[0], 0, 1))
    w = b.map(code("mul", K.VV), 1, 8, (m, 0, 1), (grid[0], 0, 1))
    total = b.sum(1, 8, (w, 0, 1))
    y = b.scalar(code("add", K.VV), total, dup)
    y = b.scalar(code("mul", K.VV), y, ident)
    return b.tape([y], ())


def test_a_grid_over_several_scalar_entries_pins_them(rng):
    tape = build_pinned()
    small = tape.optimize()
    report = small.optimize_report
    # Outside the grid: the duplicate merges, the identity goes, the cos is
    # dead and so is the const entry once exp is folded ... but exp is
    # pinned (it becomes a const entry in place), so the const it read goes.
    assert (report.merged, report.simplified, report.dead) == (1, 1, 1)
    assert report.folded == 1
    assert names(small)[:8] == ["mul", "mul", "mul", "const", "sin", "add", "neg", "cos"]
    assert names(small)[8:] == ["map", "map", "sum", "add", "mul"]
    for x in (rng.uniform(-1, 1, 4), np.array([0.0, -0.0, np.inf, np.nan])):
        assert_same_bits(small.forward(x), tape.forward(x))
    assert_replays_alike(tape, small, [rng.uniform(-1, 1, 4)])


def test_a_grid_over_inputs_and_entries_pins_the_entries(rng):
    # x0 * 1 would be x0, but the map reads it right after the inputs.
    b = Builder(4, consts=[1.0])
    ident = b.scalar(code("mul", K.VC), 0, 0)
    dup = b.scalar(code("mul", K.VC), 0, 0)          # not read by the grid: aliased
    m = b.map(code("sin"), 1, 5, (0, 0, 1))
    total = b.sum(1, 5, (m, 0, 1))
    y = b.scalar(code("mul", K.VV), total, dup)
    tape = b.tape([y], ())
    assert ident == 4
    small = tape.optimize()
    assert small.optimize_report.simplified == 1
    assert names(small) == ["mul", "map", "sum", "mul"]
    assert_replays_alike(tape, small, [rng.uniform(-1, 1, 4), np.array([-0.0, 1.0, 2.0, 3.0])])


def test_an_array_entry_inside_a_wider_grid_does_not_merge(rng):
    # Two identical maps side by side, read together by one sum: merging the
    # second would leave the sum's grid without its second half.
    b = Builder(8)
    s1 = b.map(code("sin"), 1, 8, (0, 0, 1))
    s2 = b.map(code("sin"), 1, 8, (0, 0, 1))
    assert s2 == s1 + 8
    total = b.sum(1, 16, (s1, 0, 1))
    s3 = b.map(code("sin"), 1, 8, (0, 0, 1))       # merges into s1
    other = b.sum(1, 8, (s3, 0, 1))
    y = b.scalar(code("mul", K.VV), total, other)
    tape = b.tape([y], ())
    small = tape.optimize()
    assert small.optimize_report.merged == 1
    assert names(small) == ["map", "map", "sum", "sum", "mul"]
    x = rng.uniform(-1, 1, 8)
    assert_replays_alike(tape, small, [x])


def test_grids_move_with_their_slots_when_entries_before_them_go(rng):
    def f(x):
        dead = np.exp(x) + 1.0               # dead array entries before the rest
        waste = x[0] * x[3]                  # a dead scalar entry
        A = x.reshape(4, 5)
        h = np.tanh(A @ A.T + A[:, :4])     # matmul, then a map reading a slice
        g = wg.where(h > 0, h, -h)          # where over three grids
        c = np.cumsum(g, axis=1)            # cumsum over rows
        picks = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]
        return np.sum(c[:, ::-1] * x[picks].reshape(4, 4))

    x = rng.uniform(-1, 1, 20)
    tape = wg.record(f, x)
    small = tape.optimize()
    assert small.optimize_report.dead >= 3
    assert {"matmul", "where", "cumsum", "gather", "sum"} <= set(names(small))
    with scalar_recording():
        scalars = wg.record(f, x)
    for point in (x, rng.uniform(-1, 1, 20)):
        assert_same_bits(small.forward(point), tape.forward(point))
        np.testing.assert_allclose(small.gradient(point), scalars.gradient(point),
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(small.gradient(x), fd_gradient(f, x), rtol=1e-6, atol=1e-6)
    assert_replays_alike(tape, small, [x])


def test_constant_matrices_stay_where_grids_read_them(rng):
    W = rng.standard_normal((6, 4))

    def f(x):
        z = np.concatenate([x, np.array([0.5])])
        k = z[-1] * 2.0                         # folded: a new constant in the pool
        return np.sum(np.tanh(x.reshape(2, 6) @ W) * k) + np.sum((x.reshape(2, 6) @ W) ** 2)

    x = rng.uniform(-1, 1, 12)
    tape = wg.record(f, x)
    small = tape.optimize()
    assert small.optimize_report.merged == 1          # the second product
    pool = small._state()["consts"]
    np.testing.assert_array_equal(pool[:tape._state()["consts"].size], tape._state()["consts"])
    assert_replays_alike(tape, small, [x, -x])


# ---- guards, outputs, batches -------------------------------------------------------------

def guarded(x):
    s = np.sum(np.sin(x))
    t = np.sum(np.sin(x))                      # merged with s
    y = np.cos(x) * 1.0                        # an array entry, not an identity
    if t > 0.5:
        return np.stack([s * 2.0, t, y[3]])
    return np.stack([s, s, y[0]])


def test_guards_and_outputs_read_merged_array_results():
    x = np.linspace(0.1, 0.9, 10)
    tape = wg.record(guarded, x)
    small = tape.optimize()
    assert small.n_guards == tape.n_guards == 1
    assert small.optimize_report.merged == 2
    points = [x, -x, x * 0.1, np.full(10, np.nan)]
    for p in points:
        got, want = outcome(lambda: small.forward(p)), outcome(lambda: tape.forward(p))
        assert got[0] == want[0]
        if got[0] == "branch":
            assert got[1] == want[1]
        else:
            assert_same_bits(got[1], want[1])
            np.testing.assert_allclose(small.jacobian(p), tape.jacobian(p), rtol=1e-13)
    X = np.stack([x, x * 2])
    assert_same_bits(small.forward(X), tape.forward(X))
    with pytest.raises(wg.BranchChangedError, match="batch row 1"):
        small.forward(np.stack([x, -x]))


def test_optimised_array_tapes_save_load_and_pickle(tmp_path, rng):
    x = np.linspace(0.1, 0.9, 10)
    small = wg.record(guarded, x).optimize()
    path = tmp_path / "small.wgt"
    small.save(path)
    for copy in (wg.load(path), pickle.loads(pickle.dumps(small))):
        assert_same_state(state_copy(copy), state_copy(small))
        assert_same_bits(copy.forward(x), small.forward(x))
        np.testing.assert_array_equal(copy.jacobian(x), small.jacobian(x))


def test_the_original_array_tape_is_unchanged_and_twice_changes_nothing(rng):
    x = rng.uniform(-1, 1, 20)
    tape = wg.record(lambda v: np.sum(np.sin(v) * np.sin(v)) + np.sum(np.exp(v) * 0.0), x)
    before = state_copy(tape)
    once = tape.optimize()
    assert_same_state(state_copy(tape), before)
    twice = once.optimize()
    assert twice.optimize_report.removed == 0
    assert_same_state(state_copy(twice), state_copy(once))


def test_optimize_costs_entries_not_elements():
    # Two identical maps writing 2**29 slots each, and a dead third: a pass
    # that allocated per slot would need gigabytes.
    n = 2**29
    sin, cos = ([code(name), 1, n, 0, 0, 0, 0, 0, 0] for name in ("sin", "cos"))
    t = wg.Tape(opcodes=np.array([ops.code_of("map")] * 3, np.uint8),
                args=[(0, n), (9, n), (18, n)], consts=[],
                aux=np.array(sin + sin + cos, np.int32), outputs=[1, n + 1], in_shape=(1,),
                out_shape=(2,))
    small = t.optimize()
    assert small.n_ops == 1
    assert counts(small.optimize_report) == (1, 0, 1, 0)
    assert small._state()["outputs"].tolist() == [1, 1]


# ---- random array programs ----------------------------------------------------------------

@st.composite
def padded_programs(draw):
    """An array program (see test_array_entries) with extra work: the same
    program again (merged), dead code, constants folded."""
    return (draw(array_programs()), draw(st.booleans()), draw(st.booleans()),
            draw(st.sampled_from([None, 0.5, -2.0])))


def padded(steps, duplicate, dead, constant):
    def f(v):
        out = run_program(steps, v)
        if duplicate:
            out = out + 0.5 * run_program(steps, v)
        if dead:
            np.exp(v) * run_program(steps, v[::-1])
        if constant is not None:
            z = np.concatenate([v, np.array([constant])])
            out = out * np.exp(z[-1] * 0.25) + np.sum(np.sin(v) * z[-1])
        return out
    return f


@settings(max_examples=60)
@given(program=padded_programs(), seed=st.integers(0, 2**16))
def test_random_array_programs_optimise_to_the_same_replays(program, seed):
    steps, duplicate, dead, constant = program
    f = padded(steps, duplicate, dead, constant)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, 12)
    tape = wg.record(f, x)
    small = tape.optimize()
    report = small.optimize_report
    assert len(small) <= len(tape) and report.ops_after == len(small)
    assert report.removed == report.dead + report.folded + report.merged + report.simplified
    if duplicate:
        assert report.merged > 0
    if dead:
        assert report.dead > 0
    if constant is not None:
        assert report.evaluated > 0
    assert small.stats()["n_elementwise"] <= tape.stats()["n_elementwise"]
    points = [x, rng.uniform(-1.0, 1.0, 12)]
    assert_replays_alike(tape, small, points)
    with scalar_recording():
        scalars = wg.record(f, x)
    for p in points:
        g = small.gradient(p)
        np.testing.assert_allclose(g, scalars.gradient(p), rtol=1e-11,
                                   atol=1e-11 * (1 + np.max(np.abs(g))))
    np.testing.assert_allclose(small.gradient(x), fd_gradient(f, x), rtol=1e-5,
                               atol=1e-5 * (1 + np.max(np.abs(small.gradient(x)))))
    twice = small.optimize()
    assert twice.optimize_report.removed == 0
    assert_same_state(state_copy(twice), state_copy(small))
