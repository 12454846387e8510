"""Recording NumPy calls as array entries: one tape entry per call.

A traced array is an integer array of slots, so indexing, slicing,
reshaping and broadcasting move slot numbers and record nothing. An
elementwise call, ``wg.where``, a sum and a matrix product then record one
entry whose
operands are *grids*: start + o * outer + j * inner over an (n_outer,
n_inner) grid (``_opcodes.ARRAY_LAYOUTS``). Most operands are such grids
already (a slice, a transpose, a broadcast row or column); any other is
first copied into consecutive slots by one gather entry.

Arrays smaller than :data:`MIN_SIZE` elements keep scalar entries, which
replay faster one by one than an array entry's loop.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from wengert import _opcodes as ops
from wengert._opcodes import Kind, Role

# Below this many elements an operation records scalar entries.
MIN_SIZE = 8

_MAP, _SUM, _GATHER, _MATMUL, _WHERE, _CUMSUM = (
    ops.code_of(name) for name in ("map", "sum", "gather", "matmul", "where", "cumsum"))


def enabled(size):
    return size >= MIN_SIZE


@contextlib.contextmanager
def scalar_entries():
    """Within it, NumPy calls record one scalar entry per element, as
    before array entries existed (the tests and benchmarks of tools that
    read tapes entry by entry use it). Not thread-safe: it sets a module
    global."""
    global MIN_SIZE
    saved = MIN_SIZE
    MIN_SIZE = 2**62
    try:
        yield
    finally:
        MIN_SIZE = saved


def _grid_of(index, n_outer, n_inner):
    """``(start, outer, inner)`` if the flat int array ``index`` is
    start + o * outer + j * inner over an (n_outer, n_inner) grid, else None."""
    grid = index.reshape(n_outer, n_inner)
    start = int(grid[0, 0])
    inner = int(grid[0, 1] - grid[0, 0]) if n_inner > 1 else 0
    outer = int(grid[1, 0] - grid[0, 0]) if n_outer > 1 else 0
    if not (-2**31 < inner < 2**31 and -2**31 < outer < 2**31):
        return None
    expected = (start + np.arange(n_outer, dtype=np.int64)[:, None] * outer
                + np.arange(n_inner, dtype=np.int64)[None, :] * inner)
    return (start, outer, inner) if np.array_equal(grid, expected) else None


def _splits(shape):
    """(n_outer, n_inner) foldings of ``shape`` to try, the flattest first."""
    size = math.prod(shape)
    yield 1, size
    for axis in range(len(shape) - 1, 0, -1):
        inner = math.prod(shape[axis:])
        yield size // inner, inner


def _consecutive(rec, index, role):
    """A grid over consecutive copies of the operand ``index`` (flat): slots
    through one gather entry, constants appended to the pool."""
    if role == Role.CONST:
        start = int(rec.add_constants(rec.constants_of(index))[0])
    else:
        start = rec.push_array(_GATHER, index, index.size)
    return start, 1


def _grids(rec, operands, roles, shape):
    """``(n_outer, n_inner, grids)``: one folding of ``shape`` over which
    every operand (an index array broadcast to ``shape``; ``roles`` says
    whether it indexes slots or constants) is a grid ``(start, outer,
    inner)``; operands that fit no folding are first copied into
    consecutive slots (or constants), over the flat grid."""
    flat = [np.ascontiguousarray(np.broadcast_to(o, shape), dtype=np.int64).reshape(-1)
            for o in operands]
    for n_outer, n_inner in _splits(shape):
        grids = [_grid_of(f, n_outer, n_inner) for f in flat]
        if all(g is not None for g in grids):
            return n_outer, n_inner, grids
    size = flat[0].size
    grids = []
    for f, role in zip(flat, roles):
        g = _grid_of(f, 1, size)
        if g is None:
            start, inner = _consecutive(rec, f, role)
            g = (start, 0, inner)
        grids.append(g)
    return 1, size, grids


def _results(first, shape):
    return np.arange(first, first + math.prod(shape), dtype=np.intp).reshape(shape)


def record_map(rec, code, operands, shape):
    """One map entry of full opcode ``code`` over ``operands``: slot (or
    constant-pool) index arrays, each broadcast to ``shape``. Returns the
    result slots, shaped ``shape``."""
    n_outer, n_inner, grids = _grids(rec, operands, ops.ROLES[code], shape)
    descriptor = [code, n_outer, n_inner, *(v for g in grids for v in g)]
    descriptor += [0] * (9 - len(descriptor))
    return _results(rec.push_array(_MAP, descriptor, math.prod(shape)), shape)


def record_where(rec, cond, a, b, shape):
    """One where entry: ``cond != 0 ? a : b`` elementwise over slot arrays
    broadcast to ``shape``; returns the result slots."""
    n_outer, n_inner, grids = _grids(rec, (cond, a, b), (Role.SLOT,) * 3, shape)
    descriptor = [n_outer, n_inner, *(v for g in grids for v in g)]
    return _results(rec.push_array(_WHERE, descriptor, math.prod(shape)), shape)


def _rows(rec, rows):
    """The grid ``(start, outer, inner)`` of the slot matrix ``rows``: a sum
    reads no more elements than slots exist (validation bounds its work so),
    so a matrix of repeated slots (a broadcast, moving windows) or one that
    is no grid is first copied into consecutive slots."""
    n_outer, n_inner = rows.shape
    index = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    grid = _grid_of(index, n_outer, n_inner)
    if grid is None or index.size > rec.n_slots:
        grid = (rec.push_array(_GATHER, index, index.size), n_inner, 1)
    return grid


def record_sum(rec, rows):
    """One sum entry over each row of the slot matrix ``rows`` (R, L);
    returns the R result slots."""
    n_outer, n_inner = rows.shape
    first = rec.push_array(_SUM, [n_outer, n_inner, *_rows(rec, rows)], n_outer)
    return _results(first, (n_outer,))


def record_cumsum(rec, rows):
    """One cumsum entry: running sums along each row of the slot matrix
    ``rows`` (R, L); returns the result slots (R, L)."""
    first = rec.push_array(_CUMSUM, [*rows.shape, *_rows(rec, rows)], rows.size)
    return _results(first, rows.shape)


def _matrix(rec, operand, is_slots, pooled=None):
    """``(start, rows, cols)`` of a 2-d operand: a slot grid stored by rows
    or by columns (a transpose; the replay copies it by rows for BLAS), or
    consecutive copies of any other slots (one gather entry: a broadcast,
    a fancy index), or a constant matrix appended to the pool by rows."""
    m, k = operand.shape
    if not is_slots:
        # A constant matrix broadcast over a stack is the same memory each
        # time: ``pooled`` remembers where its values went in the pool.
        key = (operand.__array_interface__["data"][0], operand.strides, operand.shape)
        if pooled is None or key not in pooled:
            start = int(rec.add_constants(np.ascontiguousarray(operand, dtype=np.float64))[0])
            if pooled is not None:
                pooled[key] = start
        return pooled[key] if pooled is not None else start, k, 1
    index = np.ascontiguousarray(operand, dtype=np.int64).reshape(-1)
    grid = _grid_of(index, m, k)
    if grid is not None:
        start, rows, cols = grid
        if (cols == 1 and rows >= k) or (rows == 1 and cols >= m) or m == 1 or k == 1:
            return start, rows, cols
    start = rec.push_array(_GATHER, index, index.size)
    return start, k, 1


def record_matmul(rec, a, a_slots, b, b_slots, pooled=None):
    """One matmul entry for the 2-d operands ``a`` (m, k) @ ``b`` (k, n),
    each a slot array (``*_slots`` True) or a float array (its pool position
    kept in the dict ``pooled`` across the matrices of a stack). Returns
    the result slots (m, n)."""
    m, k = a.shape
    n = b.shape[1]
    kind = Kind.VV if (a_slots and b_slots) else (Kind.VC if a_slots else Kind.CV)
    descriptor = [ops.code_of("mul", kind), m, k, n, *_matrix(rec, a, a_slots, pooled),
                  *_matrix(rec, b, b_slots, pooled)]
    first = rec.push_array(_MATMUL, descriptor, m * n)
    return np.arange(first, first + m * n, dtype=np.intp).reshape(m, n)
