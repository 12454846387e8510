"""Sparsity patterns, colourings and sparse derivatives (wengert.sparsity).

* A spec table gives, for every operation of the table and every operand
  kind, the Jacobian and Hessian pattern of that one operation; the
  computed patterns must equal it, contain the numerical nonzeros, and the
  sparse derivatives must equal the dense ones.
* Random programs (hypothesis) check the same on compositions: patterns
  contain every nonzero at several points, sparse equals dense.
* Colourings are checked structurally on random patterns (columns of one
  colour never share a row; a star colouring two-colours no path on four
  vertices) and by exact recovery of random matrices with the pattern.
* The problems of the issue: Bratu (Jacobian, 3 colours), extended
  Rosenbrock (Hessian, 3 colours), CppAD's sparse_jacobian/sparse_hessian
  maps; caching, errors, parameters, selects, running sums.
"""
from __future__ import annotations

import operator
import pickle
from itertools import product

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import wengert as wg
from wengert import _opcodes as ops
from wengert import _colouring, _sparsity
from wengert import sparsity
from wengert._opcodes import Kind
from wengert.sparsity import (Colouring, hessian_colouring, hessian_sparsity,
                              jacobian_colouring, jacobian_sparsity, sparse_hessian,
                              sparse_jacobian)
from wengert.tape import Tape

from _helpers import scalar_recording


def dense(matrix):
    assert sp.issparse(matrix) and matrix.format == "csr"
    return matrix.toarray()


def assert_inside(values, pattern, what):
    """Every numerical nonzero (or NaN) of ``values`` is in ``pattern``."""
    values = np.asarray(values).reshape(pattern.shape)
    outside = (values != 0) & ~dense(pattern)
    assert not outside.any(), (
        f"{what}: nonzeros outside the pattern at {np.argwhere(outside)[:5].tolist()}")


def assert_close(actual, expected, rtol=1e-13):
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ---- one operation at a time: the spec table ---------------------------------------

def one_operation_tape(code, consts=(0.7,)):
    """A tape over x = (x0, x1) whose output is one operation on them:
    unary on x0, VV on (x0, x1), VC on (x0, c), CV on (c, x1)."""
    op, kind = ops.split(code)
    if kind == Kind.VC:
        args = (0, 0)
    elif kind == Kind.CV:
        args = (0, 1)
    elif kind == Kind.VV:
        args = (0, 1)
    else:
        args = (0, 0)
    return Tape(opcodes=np.array([code], np.uint8), args=np.array([args], np.int32),
                consts=np.array(consts), aux=np.zeros(0, np.int32),
                outputs=np.array([2], np.int32),
                in_shape=(2,), out_shape=())


LINEAR_UNARY = {"neg", "abs", "sign"}             # second derivative 0 (a.e.)
NO_DERIVATIVE = {"const", "sign"}                 # first derivative 0
PIECEWISE_LINEAR = {"add", "sub", "minimum", "maximum"}
FULLY_NONLINEAR = {"pow", "arctan2", "hypot", "logaddexp"}

B = {(0, 1), (1, 0)}


def expected_patterns(name, kind):
    """(Jacobian columns, Hessian pairs) of one operation, by the rules of
    hessian_sparsity's docstring; the table covers every operation."""
    var = {Kind.UNARY: {0}, Kind.VV: {0, 1}, Kind.VC: {0}, Kind.CV: {1}}[kind]
    if name in NO_DERIVATIVE or name in ops.COMPARISONS:
        return set(), set()
    if kind == Kind.UNARY:
        return var, (set() if name in LINEAR_UNARY else {(0, 0)})
    if name in PIECEWISE_LINEAR:
        return var, set()
    if name == "mul":
        return var, (B if kind == Kind.VV else set())
    if name == "div":
        return var, {Kind.VV: B | {(1, 1)}, Kind.VC: set(), Kind.CV: {(1, 1)}}[kind]
    if name in FULLY_NONLINEAR:
        return var, {(i, j) for i in var for j in var}
    raise AssertionError(f"the sparsity spec table has no row for {name!r}: add one "
                         "(and teach _sparsity.nonlinearity about it)")


# One-entry tapes of every scalar entry (array entries reach the sparsity
# passes expanded into these).
SPEC = [(op.name, kind) for op in ops.OPERATIONS if op.arity in (0, 1, 2)
        for kind in ((Kind.VV, Kind.VC, Kind.CV) if ops.is_binary(op) else (Kind.UNARY,))]


def point_for(name, rng):
    low, high = (1.2, 1.8) if name == "arccosh" else (0.2, 0.8)
    return rng.uniform(low, high, 2)


@pytest.mark.parametrize("name,kind", SPEC, ids=[f"{n}-{k.name}" for n, k in SPEC])
def test_one_operation_patterns(name, kind, rng):
    tape = one_operation_tape(ops.code_of(name, kind))
    jac_cols, hess_pairs = expected_patterns(name, kind)
    J = dense(jacobian_sparsity(tape))
    H = dense(hessian_sparsity(tape))
    assert J.dtype == bool and J.shape == (1, 2) and H.shape == (2, 2)
    assert set(np.flatnonzero(J[0])) == jac_cols
    assert set(map(tuple, np.argwhere(H))) == hess_pairs
    for _ in range(3):
        x = point_for(name, rng)
        jac = tape.jacobian(x)
        assert_inside(jac, jacobian_sparsity(tape), f"{name} Jacobian")
        np.testing.assert_array_equal(dense(sparse_jacobian(tape, x)).reshape(-1), jac)


@pytest.mark.parametrize("name,kind", SPEC, ids=[f"{n}-{k.name}" for n, k in SPEC])
def test_one_operation_hessians(name, kind, rng):
    tape = one_operation_tape(ops.code_of(name, kind))
    for _ in range(3):
        x = point_for(name, rng)
        hess = tape.hessian(x)
        assert_inside(hess, hessian_sparsity(tape), f"{name} Hessian")
        assert_close(dense(sparse_hessian(tape, x)), hess)


def test_spec_table_covers_every_operation():
    names = {name for name, _ in SPEC} | {"select"}
    assert names == {op.name for op in ops.OPERATIONS if op.arity != ops.ARRAY}


# ---- selects, comparisons, guards ------------------------------------------------------

def test_select_counts_both_branches_not_the_condition(rng):
    def f(x):
        return wg.where(x[0] > 0, x[1] ** 2, x[2] * x[3])
    tape = wg.record(f, np.array([1.0, 2.0, 3.0, 4.0]))
    assert dense(jacobian_sparsity(tape)).astype(int).tolist() == [[0, 1, 1, 1]]
    H = dense(hessian_sparsity(tape))
    assert set(map(tuple, np.argwhere(H))) == {(1, 1), (2, 3), (3, 2)}
    for sign in (1.0, -1.0):       # both branches, at points the tape is valid
        x = rng.uniform(0.5, 2.0, 4)
        x[0] *= sign
        np.testing.assert_array_equal(dense(sparse_jacobian(tape, x))[0], tape.gradient(x))
        assert_close(dense(sparse_hessian(tape, x)), tape.hessian(x))


def test_comparisons_and_sign_carry_no_derivative():
    def f(x):
        return np.stack([np.sign(x[0]) * x[1], wg.where(x[2] < x[3], 1.0, 2.0) + x[4]])
    tape = wg.record(f, np.arange(1.0, 6.0))
    # sign(x0) * x1 depends on x1 only; the select has constant branches.
    assert dense(jacobian_sparsity(tape)).astype(int).tolist() == [
        [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]]
    assert hessian_sparsity(tape).nnz == 0


def test_guarded_branch_pattern_is_the_recorded_one():
    def f(x):
        if x[0] > 0:
            return x[0] * x[1]
        return x[2]
    tape = wg.record(f, np.array([1.0, 2.0, 3.0]))
    assert dense(jacobian_sparsity(tape)).astype(int).tolist() == [[1, 1, 0]]
    with pytest.raises(wg.BranchChangedError):
        sparse_jacobian(tape, np.array([-1.0, 2.0, 3.0]))


def test_dead_code_and_parameters_are_not_in_patterns(rng):
    def f(x, p):
        unused = np.exp(x[0] * x[1])          # never reaches the output
        return x[1:] * p + 0.0 * np.sum(unused) * 0.0 + x[:-1] ** 2 * p[0]
    p = rng.uniform(1, 2, 3)
    tape = wg.record(f, rng.uniform(1, 2, 4), p)
    J = dense(jacobian_sparsity(tape))
    # 0.0 * unused still depends structurally on x0, x1: it is on the tape.
    assert J[:, :2].any()
    x, q = rng.uniform(1, 2, 4), rng.uniform(1, 2, 3)
    np.testing.assert_array_equal(dense(sparse_jacobian(tape, x, q)), tape.jacobian(x, q))
    # The parameter is a tape input but never a pattern column.
    assert J.shape == (3, 4)


def test_output_that_is_an_input_or_a_constant():
    tape = wg.record(lambda x: np.stack([x[1], x[0] * 0 + 3.0, np.sin(x[0])]), np.ones(2))
    x = np.array([0.3, -0.4])
    np.testing.assert_array_equal(dense(sparse_jacobian(tape, x)), tape.jacobian(x))
    assert dense(jacobian_sparsity(tape))[0].tolist() == [False, True]


# ---- random programs ---------------------------------------------------------------------

UNARY_FUNCS = [
    np.sin, np.cos, np.tanh, np.arctan, np.negative, np.abs, np.sign, wg.sigmoid, wg.erf,
    lambda u: u * u, lambda u: np.exp(np.sin(u)), lambda u: np.sqrt(1.0 + u * u),
    lambda u: np.log1p(u * u), lambda u: 1.0 / (2.0 + np.sin(u)), lambda u: 2.0 ** np.sin(u),
    lambda u: 3.0 * u, lambda u: u - 1.5, lambda u: np.sin(u) ** 3,
]
BINARY_FUNCS = [
    operator.add, operator.sub, operator.mul, operator.mul,
    lambda a, b: a / (2.0 + np.cos(b)), lambda a, b: np.cos(a) / (2.0 + np.cos(b)),
    np.arctan2, np.logaddexp, np.maximum, np.minimum,
    lambda a, b: np.hypot(a, 1.0 + b * b),
    lambda a, b: (1.5 + np.sin(a)) ** np.cos(b),
    lambda a, b: wg.where(a > b, a * b, np.sin(a)),
    lambda a, b: wg.where(a < 0.1, b, -b),
]


def random_program(seed, n_inputs, n_ops, n_outputs):
    """A random straight-line program over traced scalars: each step applies
    a random unary or binary function to recent or random earlier values."""
    prog = np.random.default_rng(seed)
    steps = []
    for k in range(n_ops):
        size = n_inputs + k
        pick = lambda: int(size - 1 - min(prog.geometric(0.3) - 1, size - 1)) \
            if prog.random() < 0.6 else int(prog.integers(size))
        if prog.random() < 0.4:
            steps.append((int(prog.integers(len(UNARY_FUNCS))), pick(), None))
        else:
            steps.append((int(prog.integers(len(BINARY_FUNCS))), pick(), pick()))
    outs = sorted(set(prog.integers(n_inputs, n_inputs + n_ops, n_outputs).tolist()))

    def f(x):
        values = [x[i] for i in range(n_inputs)]
        for fn, a, b in steps:
            values.append(UNARY_FUNCS[fn](values[a]) if b is None
                          else BINARY_FUNCS[fn](values[a], values[b]))
        return wg.array([values[i] for i in outs])
    return f


program_seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=40)
@given(seed=program_seeds)
def test_random_programs_jacobian(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    f = random_program(seed, n, int(rng.integers(1, 40)), int(rng.integers(1, 6)))
    tape = wg.record(f, rng.uniform(-1.5, 1.5, n))
    pattern = jacobian_sparsity(tape)
    for _ in range(4):
        x = rng.uniform(-1.5, 1.5, n)
        jac = tape.jacobian(x).reshape(tape.n_outputs, n)
        assert_inside(jac, pattern, "random program Jacobian")
        for mode in ("auto", "forward", "reverse"):
            got = sparse_jacobian(tape, x, mode=mode)
            assert got.nnz == pattern.nnz
            # Exactly the dense Jacobian by the same mode (modes differ in rounding).
            same = "forward" if jacobian_colouring(tape, mode).kind == "column" else "reverse"
            np.testing.assert_array_equal(
                dense(got), tape.jacobian(x, mode=same).reshape(jac.shape), err_msg=mode)


@settings(max_examples=40)
@given(seed=program_seeds)
def test_random_programs_hessian(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    f = random_program(seed, n, int(rng.integers(1, 40)), int(rng.integers(1, 6)))
    tape = wg.record(f, rng.uniform(-1.5, 1.5, n))
    pattern = hessian_sparsity(tape)
    assert (dense(pattern) == dense(pattern).T).all()
    w = rng.standard_normal(tape.n_outputs)
    for _ in range(3):
        x = rng.uniform(-1.5, 1.5, n)
        hess = tape.hessian(x, w=w)
        assert_inside(hess, pattern, "random program Hessian")
        for method in ("star", "distance2"):
            assert_close(dense(sparse_hessian(tape, x, w=w, method=method)), hess)


def test_random_program_hessian_against_differences(rng):
    """Without hvp: central differences of the gradient stay inside the
    pattern (entries above the difference noise)."""
    for seed in range(20):
        n = 6
        f = random_program(seed, n, 30, 1)
        tape = wg.record(lambda x: f(x)[0], rng.uniform(-1, 1, n))
        x = rng.uniform(-1, 1, n)
        eps = 1e-5
        fd = np.array([(tape.gradient(x + eps * e) - tape.gradient(x - eps * e)) / (2 * eps)
                       for e in np.eye(n)])
        big = np.abs(fd) > 1e-4 * max(1.0, np.abs(fd).max())
        assert not (big & ~dense(hessian_sparsity(tape))).any(), seed


def reference_patterns(tape):
    """Jacobian rows and Hessian pairs by the rules, with Python sets: the
    reference for the pooled, lazy index sets of the compiled version."""
    e = tape._engine
    n_in, first, n_slots = tape.n_inputs, e.first, e.n_slots
    codes, args, aux = e.opcodes.tolist(), e.args.tolist(), e.aux.tolist()

    def operands(i):
        op, kind = ops.split(codes[i])
        a0, a1 = args[i]
        if op.name in ("const", "sign") or op.name in ops.COMPARISONS:
            return []
        if op.name == "select":
            return [aux[a1], aux[a1 + 1]]
        return {Kind.UNARY: [a0], Kind.VV: [a0, a1], Kind.VC: [a0], Kind.CV: [a1]}[kind]

    live = [False] * n_slots
    for o in e.outputs.tolist():
        live[o] = True
    for i in reversed(range(len(codes))):
        if live[first + i]:
            for u in operands(i):
                live[u] = True
    sets = [{s} if s < n_in else set() for s in range(first)]
    pairs = set()
    for i in range(len(codes)):
        us = operands(i)
        sets.append(set().union(*(sets[u] for u in us)))
        if not live[first + i] or not us:
            continue
        op, kind = ops.split(codes[i])
        var = set().union(*(sets[u] for u in us))
        if kind == Kind.UNARY:
            if op.name not in LINEAR_UNARY and op.name != "select":
                pairs |= set(product(var, var))
        elif kind != Kind.VV:
            if op.name in FULLY_NONLINEAR or (op.name == "div" and kind == Kind.CV):
                pairs |= set(product(var, var))
        elif op.name == "mul":
            a, b = sets[us[0]], sets[us[1]]
            pairs |= set(product(a, b)) | set(product(b, a))
        elif op.name == "div":
            a, b = sets[us[0]], sets[us[1]]
            pairs |= set(product(a, b)) | set(product(b, a)) | set(product(b, b))
        elif op.name in FULLY_NONLINEAR:
            pairs |= set(product(var, var))
    return [sets[o] for o in e.outputs.tolist()], pairs


def wide_program(seed, n_inputs, n_ops, n_outputs):
    """Like random_program, plus sums over random subsets (tree sums) and
    running sums, so that index sets grow large and unions stay lazy."""
    prog = np.random.default_rng(seed)
    steps = []
    for k in range(n_ops):
        size = n_inputs + k
        r = prog.random()
        if r < 0.1:
            steps.append(("sum", prog.integers(size, size=int(prog.integers(2, 30))).tolist()))
        elif r < 0.15:
            steps.append(("running", prog.integers(size, size=int(prog.integers(2, 30))).tolist()))
        elif r < 0.45:
            steps.append(("unary", int(prog.integers(len(UNARY_FUNCS))), int(prog.integers(size))))
        else:
            a = int(size - 1 - min(prog.geometric(0.2) - 1, size - 1))
            steps.append(("binary", int(prog.integers(len(BINARY_FUNCS))), a,
                          int(prog.integers(size))))
    outs = sorted(set(prog.integers(n_inputs, n_inputs + n_ops, n_outputs).tolist()))

    def f(x):
        values = [x[i] for i in range(n_inputs)]
        for step in steps:
            if step[0] == "sum":
                values.append(np.sum(wg.array([values[j] for j in step[1]])))
            elif step[0] == "running":
                s = 0.0
                for j in step[1]:
                    s = s + values[j]
                values.append(s)
            elif step[0] == "unary":
                values.append(UNARY_FUNCS[step[1]](values[step[2]]))
            else:
                values.append(BINARY_FUNCS[step[1]](values[step[2]], values[step[3]]))
        return wg.array([values[i] for i in outs])
    return f


@settings(max_examples=30)
@given(seed=program_seeds)
def test_wide_programs_match_the_reference_rules(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 150))
    f = wide_program(seed, n, int(rng.integers(20, 200)), int(rng.integers(1, 20)))
    with scalar_recording():     # the reference rules read scalar entries
        tape = wg.record(f, rng.uniform(-1.5, 1.5, n))
    rows, pairs = reference_patterns(tape)
    J = jacobian_sparsity(tape)
    assert J.has_sorted_indices
    for i, row in enumerate(rows):
        assert J.indices[J.indptr[i]:J.indptr[i + 1]].tolist() == sorted(row)
    H = hessian_sparsity(tape)
    assert set(zip(*H.nonzero())) == pairs


# ---- colourings on random patterns ----------------------------------------------------

def _pattern(matrix):
    m = sp.csr_matrix(matrix)
    m.sum_duplicates()
    m.sort_indices()
    return sparsity._Pattern(m.shape, m.indptr, m.indices)


def random_pattern(rng, shape, density):
    m = sp.random(*shape, density=density, random_state=rng, format="csr")
    return (m != 0).astype(bool)


def random_symmetric(rng, n, density, diagonal):
    m = random_pattern(rng, (n, n), density)
    m = m + m.T
    if diagonal:
        m = m + sp.eye(n, dtype=bool)
    return sp.csr_matrix(m, dtype=bool)


def structurally_orthogonal(pattern, colours):
    A = dense(pattern).astype(int)
    for c in np.unique(colours):
        if (A[:, colours == c].sum(axis=1) > 1).any():
            return False
    return True


def is_star_colouring(adjacency, colours):
    """Distance-1, and no path on four vertices uses only two colours."""
    A = dense(adjacency).copy()
    np.fill_diagonal(A, False)
    n = A.shape[0]
    nbrs = [np.flatnonzero(A[i]) for i in range(n)]
    for i in range(n):
        if (colours[nbrs[i]] == colours[i]).any():
            return False
    for b in range(n):
        for c in nbrs[b]:
            for a in nbrs[b]:
                if a == c or colours[a] != colours[c]:
                    continue
                for d in nbrs[c]:
                    if d != b and d != a and colours[d] == colours[b]:
                        return False
    return True


@settings(max_examples=60)
@given(seed=program_seeds, rows=st.integers(1, 40), cols=st.integers(1, 40),
       density=st.floats(0.0, 0.5))
def test_column_and_row_colourings_recover_random_matrices(seed, rows, cols, density):
    rng = np.random.default_rng(seed)
    P = random_pattern(rng, (rows, cols), density)
    pattern = _pattern(P)
    A = sp.csr_matrix((rng.standard_normal(pattern.nnz), pattern.indices, pattern.indptr),
                      shape=pattern.shape).toarray()
    col = sparsity._column_colouring(pattern)
    assert structurally_orthogonal(P, col.colours)
    np.testing.assert_array_equal(dense(col.recover(A @ col.seed)), A)
    row = sparsity._row_colouring(pattern)
    assert structurally_orthogonal(P.T.tocsr(), row.colours)
    np.testing.assert_array_equal(dense(row.recover(row.seed.T @ A)), A)
    # A greedy colouring needs at least the longest row and at most max degree + 1.
    longest = int(np.diff(pattern.indptr).max(initial=0))
    assert col.n_colours >= min(longest, 1) and col.n_colours >= longest


@settings(max_examples=60)
@given(seed=program_seeds, n=st.integers(1, 30), density=st.floats(0.0, 0.4),
       diagonal=st.booleans())
def test_symmetric_colourings_recover_random_matrices(seed, n, density, diagonal):
    rng = np.random.default_rng(seed)
    P = random_symmetric(rng, n, density, diagonal)
    pattern = _pattern(P)
    vals = rng.standard_normal(pattern.nnz)
    A = sp.csr_matrix((vals, pattern.indices, pattern.indptr), shape=P.shape).toarray()
    A = np.triu(A) + np.triu(A, 1).T                       # symmetric values
    star = sparsity._make_hessian_colouring(pattern, "star")
    assert is_star_colouring(P, star.colours)
    np.testing.assert_array_equal(dense(star.recover(A @ star.seed)), A)
    d2 = sparsity._make_hessian_colouring(pattern, "distance2")
    assert structurally_orthogonal(P, d2.colours)
    np.testing.assert_array_equal(dense(d2.recover(A @ d2.seed)), A)
    assert star.n_colours <= max(d2.n_colours, 1) + 2   # star is rarely worse


def test_star_colouring_uses_symmetry_on_an_arrowhead():
    n = 2000
    P = sp.lil_matrix((n, n), dtype=bool)
    P[0, :] = True
    P[:, 0] = True
    P.setdiag(True)
    pattern = _pattern(P.tocsr())
    assert sparsity._make_hessian_colouring(pattern, "star").n_colours == 2
    assert sparsity._make_hessian_colouring(pattern, "distance2").n_colours == n


def test_invalid_colouring_is_detected():
    pattern = _pattern(np.ones((2, 2), bool))
    source = _colouring.direct_recovery(pattern.indptr, pattern.indices,
                                       np.zeros(2, np.int32), 1, True)
    assert source < 0


# ---- the problems of the issue -----------------------------------------------------------

def bratu(x, lam=1.0):
    """F_i = x_{i-1} - 2 x_i + x_{i+1} + h^2 lam exp(x_i), zero boundary values."""
    h = 1.0 / (x.size + 1)
    left = np.concatenate([[0.0], x[:-1]])
    right = np.concatenate([x[1:], [0.0]])
    return left - 2 * x + right + h * h * lam * np.exp(x)


def bratu_jacobian(x, lam=1.0):
    h = 1.0 / (x.size + 1)
    return (np.diag(-2 + h * h * lam * np.exp(x)) + np.diag(np.ones(x.size - 1), 1)
            + np.diag(np.ones(x.size - 1), -1))


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian(x):
    n = x.size
    H = np.zeros((n, n))
    a, b = x[:-1], x[1:]
    i = np.arange(n - 1)
    H[i, i] += 1200 * a ** 2 - 400 * b + 2
    H[i + 1, i + 1] += 200
    H[i, i + 1] = H[i + 1, i] = -400 * a
    return H


@pytest.mark.parametrize("n", [3, 10, 1000])
def test_bratu_jacobian_three_colours(n, rng):
    tape = wg.record(bratu, np.zeros(n))
    P = jacobian_sparsity(tape)
    assert P.nnz == 3 * n - 2
    assert jacobian_colouring(tape).n_colours == 3
    assert jacobian_colouring(tape).kind == "column"
    x = rng.uniform(0, 1, n)
    J = sparse_jacobian(tape, x)
    assert_close(J.toarray(), bratu_jacobian(x), rtol=1e-15)
    if n <= 10:
        np.testing.assert_array_equal(dense(J), tape.jacobian(x))


@pytest.mark.parametrize("n,star", [(2, 2), (3, 2), (4, 3), (10, 3), (1000, 3)])
def test_rosenbrock_hessian_three_colours(n, star, rng):
    tape = wg.record(rosenbrock, np.zeros(n))
    P = hessian_sparsity(tape)
    assert (dense(P) == (rosenbrock_hessian(rng.uniform(1, 2, n)) != 0)).all()
    # A path on 3 vertices is a two-coloured star; longer paths need 3.
    assert hessian_colouring(tape).n_colours == star
    assert hessian_colouring(tape, "distance2").n_colours == min(n, 3)
    x = rng.uniform(-1, 1, n)
    assert_close(sparse_hessian(tape, x).toarray(), rosenbrock_hessian(x), rtol=1e-14)


def test_large_problems_keep_their_colours():
    n = 10**5
    assert jacobian_colouring(wg.record(bratu, np.zeros(n))).n_colours == 3
    assert hessian_colouring(wg.record(rosenbrock, np.zeros(n))).n_colours == 3


def cppad_maps(rng, n, m, k):
    row = rng.integers(m, size=k)
    col = rng.integers(n, size=k)
    return row, col


def test_cppad_sparse_jacobian_map(rng):
    """CppAD's speed problem: f[row[k]] += exp(x[col[k]]^2 / 2)."""
    n, m = 60, 40
    row, col = cppad_maps(rng, n, m, 150)

    def f(x):
        out = [0.0] * m
        for r, c in zip(row, col):
            out[r] = out[r] + np.exp(x[c] ** 2 / 2)
        return wg.array(out)
    tape = wg.record(f, rng.uniform(-1, 1, n))
    expected = np.zeros((m, n), bool)
    expected[row, col] = True
    assert (dense(jacobian_sparsity(tape)) == expected).all()
    for _ in range(3):
        x = rng.uniform(-1, 1, n)
        ref = np.zeros((m, n))
        np.add.at(ref, (row, col), x[col] * np.exp(x[col] ** 2 / 2))
        J = sparse_jacobian(tape, x)
        assert_close(J.toarray(), ref, rtol=1e-14)
        np.testing.assert_array_equal(dense(J), tape.jacobian(x))


def test_cppad_sparse_hessian_map(rng):
    """CppAD's speed problem: f = sum_k exp(x[row[k]] * x[col[k]])."""
    n = 50
    row, col = cppad_maps(rng, n, n, 120)

    def f(x):
        return np.sum(np.exp(x[row] * x[col]))
    tape = wg.record(f, rng.uniform(-1, 1, n))
    expected = np.zeros((n, n), bool)
    expected[row, col] = expected[col, row] = True
    expected[row, row] = expected[col, col] = True
    assert (dense(hessian_sparsity(tape)) == expected).all()
    for _ in range(3):
        x = rng.uniform(-1, 1, n)
        ref = np.zeros((n, n))
        e = np.exp(x[row] * x[col])
        np.add.at(ref, (row, row), x[col] ** 2 * e)
        np.add.at(ref, (col, col), x[row] ** 2 * e)
        np.add.at(ref, (row, col), (1 + x[row] * x[col]) * e)
        np.add.at(ref, (col, row), (1 + x[row] * x[col]) * e)
        assert_close(sparse_hessian(tape, x).toarray(), ref, rtol=1e-13)
        assert_close(sparse_hessian(tape, x).toarray(), tape.hessian(x))


# ---- long programs: running sums, shared subexpressions -------------------------------------

def test_running_sum_patterns(rng):
    """s += term in a Python loop: the sums stay lazy (linear time) and the
    patterns are exact."""
    n = 300
    perm = rng.permutation(n)

    def f(x):
        s = 0.0
        outs = []
        for k, i in enumerate(perm):
            s = s + x[i] * x[(i + 1) % n]
            if k % 60 == 59:
                outs.append(s)
        outs.append(np.sin(s))
        return wg.array(outs)
    x = rng.uniform(-1, 1, n)
    tape = wg.record(f, x)
    J = dense(jacobian_sparsity(tape))
    for j in range(J.shape[0] - 1):
        seen = perm[:60 * (j + 1)]
        expected = np.zeros(n, bool)
        expected[seen] = expected[(seen + 1) % n] = True
        assert (J[j] == expected).all()
    assert J[-1].all()
    np.testing.assert_array_equal(dense(sparse_jacobian(tape, x)), tape.jacobian(x))
    assert dense(hessian_sparsity(tape)).all()      # sin of the full sum: dense


def test_running_sum_is_fast():
    import time
    n = 20000

    def f(x):
        s = 0.0
        for i in range(n - 1):
            s = s + 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
        return s
    tape = wg.record(f, np.ones(n))
    start = time.perf_counter()
    assert jacobian_sparsity(tape).nnz == n
    assert hessian_colouring(tape).n_colours == 3
    assert time.perf_counter() - start < 2.0


def test_chained_nonlinear_operations_on_a_large_set():
    """sin(sin(...(sum x))) couples everything once, not once per link."""
    n = 400

    def f(x):
        s = np.sum(x)
        for _ in range(50):
            s = np.sin(s)
        return s * x[0]
    tape = wg.record(f, np.ones(n))
    assert dense(hessian_sparsity(tape)).all()


# ---- caching, results, errors -----------------------------------------------------------

def test_patterns_and_colourings_are_computed_once(monkeypatch, rng):
    tape = wg.record(bratu, np.zeros(20))
    calls = []
    original = _sparsity.jacobian_pattern
    monkeypatch.setattr(_sparsity, "jacobian_pattern",
                        lambda engine: calls.append(1) or original(engine))
    x = rng.uniform(0, 1, 20)
    first = sparse_jacobian(tape, x)
    cache = sparsity._cache(tape)
    pattern, colouring = cache.jacobian, jacobian_colouring(tape)
    second = sparse_jacobian(tape, x)
    jacobian_sparsity(tape)
    assert len(calls) == 1
    assert sparsity._cache(tape) is cache and cache.jacobian is pattern
    assert jacobian_colouring(tape) is colouring
    np.testing.assert_array_equal(first.toarray(), second.toarray())


def test_results_are_fresh(rng):
    tape = wg.record(bratu, np.zeros(10))
    x = rng.uniform(0, 1, 10)
    J = sparse_jacobian(tape, x)
    J.indices[:] = 0
    J.data[:] = -1
    P = jacobian_sparsity(tape)
    P.indices[:] = 0
    np.testing.assert_array_equal(sparse_jacobian(tape, x).toarray(), tape.jacobian(x))
    assert jacobian_sparsity(tape).nnz == 28 and dense(jacobian_sparsity(tape))[0, 1]
    with pytest.raises(ValueError):
        jacobian_colouring(tape).seed[0, 0] = 5.0


def test_batches_and_bad_arguments_raise():
    tape = wg.record(rosenbrock, np.zeros(4))
    with pytest.raises(wg.ShapeError, match=r"\(4,\)"):
        sparse_jacobian(tape, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="one point"):
        sparse_hessian(tape, np.zeros((3, 4)))
    with pytest.raises(wg.ArgumentError):
        sparse_jacobian(tape, np.zeros(4), mode="sideways")
    with pytest.raises(wg.ArgumentError):
        hessian_colouring(tape, method="acyclic")
    with pytest.raises(wg.ShapeError):
        jacobian_colouring(tape).recover(np.zeros((5, 5)))


def test_vector_output_hessian_needs_a_weight(rng):
    tape = wg.record(lambda x: np.stack([x[0] * x[1], np.sin(x[2])]), np.ones(3))
    assert set(map(tuple, np.argwhere(dense(hessian_sparsity(tape))))) == {(0, 1), (1, 0), (2, 2)}
    with pytest.raises(ValueError):
        sparse_hessian(tape, np.ones(3))
    x, w = rng.uniform(-1, 1, 3), rng.standard_normal(2)
    assert_close(sparse_hessian(tape, x, w=w).toarray(), tape.hessian(x, w=w))


def test_dynamic_parameters(rng):
    def f(x, p):
        return x[1:] * x[:-1] * p + np.exp(x[1:] * p)
    p = rng.uniform(1, 2, 5)
    tape = wg.record(f, rng.uniform(-1, 1, 6), p)
    x, q = rng.uniform(-1, 1, 6), rng.uniform(1, 2, 5)
    np.testing.assert_array_equal(dense(sparse_jacobian(tape, x, q)), tape.jacobian(x, q))
    w = rng.standard_normal(5)
    assert_close(dense(sparse_hessian(tape, x, q, w=w)), tape.hessian(x, q, w=w))


def test_matrix_inputs_are_flattened(rng):
    tape = wg.record(lambda X: np.sin(X) * X[:, ::-1], np.ones((3, 4)))
    X = rng.uniform(-1, 1, (3, 4))
    J = sparse_jacobian(tape, X)
    assert J.shape == (12, 12)
    assert_close(dense(J), tape.jacobian(X).reshape(12, 12), rtol=1e-15)


def test_auto_mode_picks_reverse_for_dense_rows(rng):
    n = 50

    def f(x):
        return np.stack([np.sum(x ** 2), x[0] * x[1], np.prod(x[:3])])
    tape = wg.record(f, np.ones(n))
    colouring = jacobian_colouring(tape)
    assert colouring.kind == "row" and colouring.n_colours <= 3
    assert jacobian_colouring(tape, "forward").n_colours == n
    x = rng.uniform(-1, 1, n)
    np.testing.assert_array_equal(dense(sparse_jacobian(tape, x)), tape.jacobian(x))


def test_colouring_object(rng):
    tape = wg.record(bratu, np.zeros(9))
    c = jacobian_colouring(tape)
    assert isinstance(c, Colouring) and c.shape == (9, 9)
    assert c.seed.shape == (9, c.n_colours) and (c.seed.sum(axis=1) == 1).all()
    assert (c.seed[np.arange(9), c.colours] == 1).all()
    assert dense(c.pattern).sum() == 25
    assert "3 colours" in repr(c)
    x = rng.uniform(0, 1, 9)
    np.testing.assert_array_equal(c.recover(tape.jvp(x, c.seed)).toarray(), tape.jacobian(x))


def test_tape_with_patterns_still_pickles(rng):
    tape = wg.record(bratu, np.zeros(6))
    jacobian_colouring(tape)
    clone = pickle.loads(pickle.dumps(tape))
    x = rng.uniform(0, 1, 6)
    np.testing.assert_array_equal(sparse_jacobian(clone, x).toarray(),
                                  sparse_jacobian(tape, x).toarray())


def test_no_inputs_and_empty_patterns():
    tape = wg.record(lambda x: np.sign(x) + 1.0, np.ones(3))
    assert jacobian_sparsity(tape).nnz == 0 and hessian_sparsity(tape).nnz == 0
    J = sparse_jacobian(tape, np.ones(3))
    assert J.shape == (3, 3) and J.nnz == 0
    H = sparse_hessian(tape, np.ones(3), w=np.ones(3))
    assert H.shape == (3, 3) and H.nnz == 0
