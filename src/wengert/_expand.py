"""A tape of scalar entries only, equivalent to one with array entries.

An array entry covers many slots with one entry (``_opcodes.ARRAY_LAYOUTS``).
The *scalar form* built here is the test oracle of the tools that read
array entries natively (sparsity patterns, traces, the Graphviz graph): each map element becomes its scalar entry, each sum a pairwise tree of
additions (as NumPy sums), a running sum its chain of additions, each matrix
product its products and sums, each where its selects, and a gather's
results are its sources (no entry at all). Values and derivatives
are those of the original tape, up to the rounding of sums in another order.

:func:`expand` works on a tape's state (``Tape._state()``) in NumPy passes,
in time and memory linear in the scalar entries it writes.
"""
from __future__ import annotations

import math

import numpy as np

from wengert import _opcodes as ops
from wengert._errors import WengertError
from wengert._opcodes import Kind, Role

_ADD_VV = ops.code_of("add", Kind.VV)
_MAP, _SUM, _GATHER, _MATMUL, _WHERE, _CUMSUM, _SELECT = (
    ops.code_of(name) for name in ("map", "sum", "gather", "matmul", "where", "cumsum", "select"))
_IS_ARRAY = np.zeros(256, dtype=bool)
_IS_ARRAY[[op.code() for op in ops.OPERATIONS if op.arity == ops.ARRAY]] = True
# The most scalar entries an expansion writes (each costs about 25 bytes
# while it is built).
_MAX_ENTRIES = 2**28


def has_array_entries(opcodes):
    return bool(_IS_ARRAY[np.asarray(opcodes)].any())


def elementwise_count(state):
    """The scalar operations one replay of a tape performs: one per scalar
    entry and one per element of an array entry (a sum its additions, a
    matrix product its multiply-adds)."""
    opcodes = np.asarray(state["opcodes"])
    args = np.asarray(state["args"], dtype=np.int64).reshape(-1, 2)
    aux = np.asarray(state["aux"], dtype=np.int64)
    total = int(np.count_nonzero(~_IS_ARRAY[opcodes]))
    for i in np.flatnonzero(_IS_ARRAY[opcodes]).tolist():
        code, d, n = int(opcodes[i]), int(args[i, 0]), int(args[i, 1])
        if code in (_SUM, _CUMSUM):
            total += int(aux[d]) * int(aux[d + 1])
        elif code == _MATMUL:
            total += int(aux[d + 1]) * int(aux[d + 2]) * int(aux[d + 3])
        else:
            total += n
    return total


def _grid(start, n_outer, outer, n_inner, inner):
    o = np.arange(n_outer, dtype=np.int64)[:, None] * outer
    return (start + o + np.arange(n_inner, dtype=np.int64)[None, :] * inner).reshape(-1)


class _Writer:
    """Scalar entries appended in order; slot ``next`` is the next result."""

    def __init__(self, first):
        self.codes, self.left, self.right = [], [], []
        self.next = first
        self.aux, self.n_aux = [], 0      # the new side table (select branches)

    def check_room(self, n):
        """Refuse, before building them, n more entries than the tools take."""
        if self.next + n > _MAX_ENTRIES:
            raise WengertError(
                f"this tape's array entries expand to more than {_MAX_ENTRIES:,} scalar "
                "operations, too many for its scalar form; use it on a smaller problem "
                "(replays, gradients, Hessians and sparsity patterns do not need it)")

    def emit(self, code, left, right=None):
        """Entries ``code`` over operand arrays; returns their result slots."""
        left = np.asarray(left, dtype=np.int64).reshape(-1)
        right = np.zeros_like(left) if right is None else np.asarray(right, np.int64).reshape(-1)
        n = left.size
        self.check_room(n)
        self.codes.append(np.full(n, code, dtype=np.uint8))
        self.left.append(left)
        self.right.append(right)
        first = self.next
        self.next += n
        return np.arange(first, first + n, dtype=np.int64)

    def emit_select(self, cond, a, b):
        """Selects ``cond != 0 ? a : b``, their branch slots appended to the
        side table."""
        at = self.n_aux + 2 * np.arange(cond.size, dtype=np.int64)
        self.aux.append(np.stack([a, b], axis=1).reshape(-1))
        self.n_aux += 2 * cond.size
        return self.emit(_SELECT, cond, at)

    def emit_run(self, codes, args):
        """Scalar entries already in the new numbering, slots from ``next``."""
        self.codes.append(np.asarray(codes, dtype=np.uint8))
        self.left.append(args[:, 0])
        self.right.append(args[:, 1])
        self.next += codes.size

    def tree_sum(self, rows):
        """Pairwise sums of each row of slots ``rows`` (R, L), L >= 1."""
        while rows.shape[1] > 1:
            half = rows.shape[1] // 2
            paired = self.emit(_ADD_VV, rows[:, 0:2 * half:2], rows[:, 1:2 * half:2])
            paired = paired.reshape(rows.shape[0], half)
            if rows.shape[1] % 2:
                paired = np.concatenate([paired, rows[:, -1:]], axis=1)
            rows = paired
        return rows[:, 0]


def expand(state):
    """``(scalar_state, slot_of)``: the state of an equivalent tape of scalar
    entries, and for every slot of the original tape its slot there."""
    opcodes = np.asarray(state["opcodes"])
    args = np.asarray(state["args"], dtype=np.int64).reshape(-1, 2)
    aux = np.asarray(state["aux"], dtype=np.int64)
    first = math.prod(state["in_shape"]) + state["n_params"]
    # Refused before anything is allocated: the expansion writes at most
    # this many entries (and the slots map one per result of the tape).
    _Writer(first).check_room(elementwise_count(state) + len(opcodes))
    n_old = first + int(np.where(_IS_ARRAY[opcodes], args[:, 1], 1).sum())
    slot_of = np.empty(n_old, dtype=np.int64)
    slot_of[:first] = np.arange(first)
    out = _Writer(first)
    old = first            # the next slot of the original tape
    # Runs of scalar entries are remapped in one pass each.
    array_at = np.flatnonzero(_IS_ARRAY[opcodes])
    start = 0
    for stop in list(array_at) + [opcodes.size]:
        if stop > start:
            n = stop - start
            # The run's own results first: its entries may read each other.
            slot_of[old:old + n] = np.arange(out.next, out.next + n)
            codes = opcodes[start:stop]
            a = args[start:stop].copy()
            roles = ops.ROLES[codes]
            for k in range(2):
                is_slot = roles[:, k] == Role.SLOT
                a[is_slot, k] = slot_of[a[is_slot, k]]
                is_aux = roles[:, k] == Role.AUX
                if is_aux.any():
                    branches = aux[a[is_aux, k][:, None] + np.array([0, 1])]
                    out.aux.append(slot_of[branches].reshape(-1))
                    a[is_aux, k] = out.n_aux + 2 * np.arange(np.count_nonzero(is_aux))
                    out.n_aux += 2 * int(np.count_nonzero(is_aux))
            out.check_room(n)
            out.emit_run(codes, a)
            old += n
        if stop == opcodes.size:
            break
        code, d, n = int(opcodes[stop]), int(args[stop, 0]), int(args[stop, 1])
        slot_of[old:old + n] = _expand_array_entry(out, code, aux, d, n, slot_of)
        old += n
        start = stop + 1
    new = dict(state)
    guards = list(state["guards"])
    guard_codes = np.array([g.code for g in guards], dtype=np.int64)
    guard_roles = ops.ROLES[guard_codes] if guards else np.zeros((0, 2), np.uint8)
    new_guards = []
    for g, roles in zip(guards, guard_roles):
        a0 = int(slot_of[g.a0]) if roles[0] == Role.SLOT else g.a0
        a1 = int(slot_of[g.a1]) if roles[1] == Role.SLOT else g.a1
        new_guards.append(g._replace(a0=a0, a1=a1))
    consts = np.asarray(state["consts"], dtype=np.float64)
    new.update(
        opcodes=np.concatenate(out.codes) if out.codes else np.zeros(0, np.uint8),
        args=np.stack([np.concatenate(out.left), np.concatenate(out.right)], axis=1)
        .astype(np.int32) if out.codes else np.zeros((0, 2), np.int32),
        consts=consts,
        aux=np.concatenate(out.aux).astype(np.int32) if out.aux else np.zeros(0, np.int32),
        outputs=slot_of[np.asarray(state["outputs"], dtype=np.int64)].astype(np.int32),
        guards=new_guards)
    return new, slot_of


def _expand_array_entry(out, code, aux, d, n, slot_of):
    """Write the scalar entries of one array entry; return the new slots of
    its n results."""
    if code == _GATHER:
        return slot_of[aux[d:d + n]]
    if code == _SUM:
        n_outer, n_inner, start, outer, inner = (int(v) for v in aux[d:d + 5])
        rows = slot_of[_grid(start, n_outer, outer, n_inner, inner)].reshape(n_outer, n_inner)
        return out.tree_sum(rows)
    if code == _CUMSUM:
        n_outer, n_inner, start, outer, inner = (int(v) for v in aux[d:d + 5])
        rows = slot_of[_grid(start, n_outer, outer, n_inner, inner)].reshape(n_outer, n_inner)
        result = rows.copy()           # element 0 of each row is its own operand
        for j in range(1, n_inner):
            result[:, j] = out.emit(_ADD_VV, result[:, j - 1], rows[:, j])
        return result.reshape(-1)
    if code == _WHERE:
        n_outer, n_inner = int(aux[d]), int(aux[d + 1])
        cond, a, b = (slot_of[_grid(*(int(v) for v in (aux[d + 2 + 3 * e], n_outer,
                                                       aux[d + 3 + 3 * e], n_inner,
                                                       aux[d + 4 + 3 * e])))]
                      for e in range(3))
        return out.emit_select(cond, a, b)
    if code == _MAP:
        inner_code = int(aux[d])
        n_outer, n_inner = int(aux[d + 1]), int(aux[d + 2])
        roles = ops.ROLES[inner_code]
        operands = []
        for k in range(2):
            if roles[k] == Role.NONE:
                operands.append(None)
                continue
            index = _grid(*(int(v) for v in (aux[d + 3 + 3 * k], n_outer, aux[d + 4 + 3 * k],
                                             n_inner, aux[d + 5 + 3 * k])))
            operands.append(slot_of[index] if roles[k] == Role.SLOT else index)
        return out.emit(inner_code, operands[0], operands[1])
    if code == _MATMUL:
        inner_code, m, k, n_cols, a0, ar, ac, b0, br, bc = (int(v) for v in aux[d:d + 10])
        # Checked before anything is built: a product's expansion is not
        # bounded by the tape's size (m * n * k products from m*k + k*n slots).
        out.check_room(m * n_cols * k * 2)
        roles = ops.ROLES[inner_code]
        A = _grid(a0, m, ar, k, ac).reshape(m, k)
        B = _grid(b0, k, br, n_cols, bc).reshape(k, n_cols)
        if roles[0] == Role.SLOT:
            A = slot_of[A]
        if roles[1] == Role.SLOT:
            B = slot_of[B]
        # Products (m, n, k): A[i, l] * B[l, j], then sums over l.
        left = np.broadcast_to(A[:, None, :], (m, n_cols, k))
        right = np.broadcast_to(B.T[None, :, :], (m, n_cols, k))
        products = out.emit(inner_code, left, right).reshape(m * n_cols, k)
        return out.tree_sum(products)
    raise WengertError(f"internal error: opcode {code} is not an array entry")
