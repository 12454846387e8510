# The tape-reading half of wengert.sparsity: index-set propagation over a
# tape (Jacobian patterns) and nonlinear-interaction (Hessian) patterns. The
# colourings that use them live in _colouring.pyx.
#
# Index sets are sorted int32 runs in one append-only pool; a slot's set is
# (off[s], cnt[s]) into it. Inputs own the runs pool[i] = {i}. Unary
# operations alias their operand's run, and a union that equals one operand,
# or whose operands are already adjacent in the pool, costs no copy (so a
# tree sum of the inputs never copies at all). Any other union whose result
# has exactly one consumer stays *lazy* (no run of its own): the first
# consumer that needs a run gathers it from the whole lazy in-tree at once,
# so a running sum s += t over n terms costs O(n), not O(n^2) copying.
#
# The Hessian pattern then adds, for each operation that can reach an output
# and is nonlinear, blocks of pairs S(a) x S(b) of its operands' sets; the
# blocks are expanded row by row at the end.
#
# An array entry's elements are read natively, element by element, with
# the rule of the scalar entries its expansion (wengert._expand) would
# write: a map element by its opcode's rule, a sum the union of its row, a
# running sum the union of the previous element and its own operand, a
# where its two branches, a gather its source, a matrix product element
# (i, j) the union over l of A[i, l] and B[l, j] (and, for the Hessian, the
# block S(A[i, l]) x S(B[l, j]) of each product). Array elements are never
# lazy; they may read lazy scalar slots.
cimport cython
from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memcpy
from libc.stdint cimport int32_t, int64_t, uint8_t

import numpy as np

from wengert._errors import WengertError
cimport numpy as cnp

from wengert._types cimport index_t, opcode_t
from wengert._opcodes cimport *

cnp.import_array()

# Interaction blocks of more pairs than this are de-duplicated before they
# are expanded (see _expand_blocks).
cdef enum:
    DEDUP_PAIRS = 64

# How an operation's second derivatives couple its operands' index sets
# (WG_INTERACTION, generated from the table's curvature column):
#   NL_NONE   linear, piecewise linear or constant: no pairs
#   NL_SELF   S(u) x S(u) for its one differentiable operand u
#   NL_CROSS  S(a) x S(b)                      (a * b)
#   NL_DIV    S(a) x S(b) and S(b) x S(b)      (a / b)
#   NL_ALL    (S(a) u S(b)) x (S(a) u S(b))    (pow, arctan2, ...)


# ---- the tape, as the sparsity loops see it ------------------------------------

ctypedef struct Ops:
    const opcode_t* code
    const index_t* args
    const index_t* aux
    Py_ssize_t n_ops
    Py_ssize_t first      # slot of operation 0
    Py_ssize_t n_in       # inputs (slots 0 .. n_in-1); parameters follow
    # With array entries: the first slot of every entry and the entry of
    # every operation slot (NULL without: entry i writes slot first + i).
    const int64_t* start
    const int32_t* entry


cdef inline Py_ssize_t entry_of(const Ops* t, Py_ssize_t s) noexcept nogil:
    """The entry that writes operation slot s."""
    return s - t.first if t.entry == NULL else t.entry[s - t.first]


cdef inline Py_ssize_t start_of(const Ops* t, Py_ssize_t i) noexcept nogil:
    """The first slot entry i writes."""
    return t.first + i if t.start == NULL else t.start[i]


cdef inline bint is_array(opcode_t code) noexcept nogil:
    return OP_MAP <= code <= OP_CUMSUM


cdef inline int operands(const Ops* t, Py_ssize_t i, index_t* out) noexcept nogil:
    """The operand slots that operation i's derivative depends on (at most
    two). Constants, sign and comparisons have none; a select has its two
    branches but not its condition; VC/CV operations only their slot."""
    cdef int which = WG_OPERANDS[t.code[i]]
    cdef index_t a0 = t.args[2 * i], a1 = t.args[2 * i + 1]
    if which == OPERANDS_FIRST:
        out[0] = a0
        return 1
    if which == OPERANDS_BOTH:
        out[0] = a0
        out[1] = a1
        return 2
    if which == OPERANDS_SECOND:
        out[0] = a1
        return 1
    if which == OPERANDS_BRANCHES:
        out[0] = t.aux[a1]
        out[1] = t.aux[a1 + 1]
        return 2
    return 0


cdef inline int nonlinearity(int code) noexcept nogil:
    """Which second-derivative pairs an opcode contributes (NL_*)."""
    return WG_INTERACTION[code]


def interaction(int code):
    """The NL_* class ``nonlinearity`` gives an opcode, as
    ``(name, ...)``: "none", "self", "cross", "div" or "all" (for the test
    that checks it against the operation table's curvature column)."""
    return ("none", "self", "cross", "div", "all")[nonlinearity(code)]


cdef Ops _ops_of(engine, const opcode_t[::1] code, const index_t[:, ::1] args,
                 const index_t[::1] aux, const int64_t[::1] start, const int32_t[::1] entry):
    cdef Ops t
    t.n_ops = code.shape[0]
    t.code = &code[0] if t.n_ops else NULL
    t.args = &args[0, 0] if t.n_ops else NULL
    t.aux = &aux[0] if aux.shape[0] else NULL
    t.first = engine.first
    t.n_in = engine.n_inputs
    t.start = &start[0] if start.shape[0] else NULL
    t.entry = &entry[0] if entry.shape[0] else NULL
    return t


# The most slots the passes take from a tape with array entries (whose few
# entries may declare many slots): about 30 bytes of work each.
MAX_SLOTS = 2**28


def _slot_maps(engine):
    """``(start, entry)`` for :func:`_ops_of`: empty without array entries."""
    if not engine.array_entries.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    if engine.n_slots > MAX_SLOTS:
        raise WengertError(
            f"this tape's array entries write {engine.n_slots - engine.first:,} slots, too "
            f"many for the sparsity passes (at most {MAX_SLOTS:,}, about 30 bytes of work "
            "each); use them on a smaller problem (replays, gradients and Hessians do "
            "not need them)")
    counts = np.ones(engine.opcodes.size, dtype=np.int64)
    counts[engine.array_entries] = engine.args[engine.array_entries, 1]
    start = engine.first + np.cumsum(counts) - counts
    entry = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    return start.astype(np.int64), entry


# ---- growable buffers ------------------------------------------------------------

ctypedef struct Pool:
    index_t* data
    Py_ssize_t size
    Py_ssize_t cap


cdef int reserve(Pool* p, Py_ssize_t extra) except -1 nogil:
    """Room for ``extra`` more elements (pointers into the pool move)."""
    cdef Py_ssize_t cap
    cdef index_t* data
    if p.size + extra <= p.cap:
        return 0
    cap = 2 * p.cap
    if cap < p.size + extra:
        cap = p.size + extra
    if cap < 1024:
        cap = 1024
    data = <index_t*>realloc(p.data, cap * sizeof(index_t))
    if data == NULL:
        with gil:
            raise MemoryError("sparsity pattern: out of memory for index sets")
    p.data = data
    p.cap = cap
    return 0


ctypedef struct Blocks:
    int64_t* data          # (count, 4): offA, nA, offB, nB
    Py_ssize_t count
    Py_ssize_t cap


cdef int add_block(Blocks* b, Py_ssize_t oa, Py_ssize_t na, Py_ssize_t ob,
                   Py_ssize_t nb) except -1 nogil:
    """Record the pairs S_a x S_b (and their mirror); runs are ordered so
    that a repeated pair of runs is recognised as one block."""
    cdef Py_ssize_t cap
    cdef int64_t* data
    cdef int64_t* row
    if na == 0 or nb == 0:
        return 0
    if oa > ob or (oa == ob and na > nb):
        oa, na, ob, nb = ob, nb, oa, na
    if b.count == b.cap:
        cap = 2 * b.cap if b.cap else 256
        data = <int64_t*>realloc(b.data, 4 * cap * sizeof(int64_t))
        if data == NULL:
            with gil:
                raise MemoryError("sparsity pattern: out of memory for interaction blocks")
        b.data = data
        b.cap = cap
    row = b.data + 4 * b.count
    row[0] = oa
    row[1] = na
    row[2] = ob
    row[3] = nb
    b.count += 1
    return 0


# ---- sorting -----------------------------------------------------------------------

cdef int _cmp_index(const void* a, const void* b) noexcept nogil:
    cdef index_t x = (<const index_t*>a)[0], y = (<const index_t*>b)[0]
    return (x > y) - (x < y)


cdef int _cmp_block(const void* a, const void* b) noexcept nogil:
    cdef const int64_t* x = <const int64_t*>a
    cdef const int64_t* y = <const int64_t*>b
    cdef int j
    for j in range(4):
        if x[j] != y[j]:
            return -1 if x[j] < y[j] else 1
    return 0


cdef inline void _swap_blocks(int64_t* data, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef int64_t t
    cdef int c
    if i == j:
        return
    for c in range(4):
        t = data[4 * i + c]
        data[4 * i + c] = data[4 * j + c]
        data[4 * j + c] = t


cdef void sort_marked(index_t* a, Py_ssize_t k, const index_t* mark, index_t stamp,
                      Py_ssize_t n) noexcept nogil:
    """Sort the k distinct values a[0..k-1] in 0..n-1, all marked ``stamp``:
    insertion sort when short, a scan of the marks when dense (O(n) beats
    qsort's k log k once k > n/32), qsort otherwise."""
    cdef Py_ssize_t i, j
    cdef index_t v
    if k <= 24:
        for i in range(1, k):
            v = a[i]
            j = i - 1
            while j >= 0 and a[j] > v:
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = v
    elif 32 * k >= n:
        j = 0
        for i in range(n):
            if mark[i] == stamp:
                a[j] = <index_t>i
                j += 1
    else:
        qsort(a, k, sizeof(index_t), _cmp_index)


# ---- unions of sorted runs ---------------------------------------------------------

cdef bint cheap_union(Pool* p, Py_ssize_t oa, Py_ssize_t na, Py_ssize_t ob,
                      Py_ssize_t nb, Py_ssize_t* ro, Py_ssize_t* rn) except -1 nogil:
    """The union of two runs when it needs no merge: one side empty, both
    the same run, or the two ordered one after the other and either adjacent
    in the pool or the first one ending the pool (then only the second is
    copied). Returns False when a real merge is needed."""
    cdef const index_t* A
    cdef const index_t* B
    cdef Py_ssize_t skip, j
    if nb == 0 or (oa == ob and na == nb):
        ro[0] = oa
        rn[0] = na
        return True
    if na == 0:
        ro[0] = ob
        rn[0] = nb
        return True
    A = p.data + oa
    B = p.data + ob
    if B[nb - 1] <= A[0]:      # b before a: swap so that a comes first
        oa, na, ob, nb = ob, nb, oa, na
        A = p.data + oa
        B = p.data + ob
    if A[na - 1] > B[0]:
        return False
    skip = 1 if A[na - 1] == B[0] else 0
    if skip == 0 and oa + na == ob:
        ro[0] = oa
        rn[0] = na + nb
        return True
    if oa + na == p.size:       # a ends the pool: append the rest of b
        reserve(p, nb)
        B = p.data + ob
        for j in range(skip, nb):
            p.data[p.size] = B[j]
            p.size += 1
        ro[0] = oa
        rn[0] = na + nb - skip
        return True
    return False


cdef int merge_union(Pool* p, Py_ssize_t oa, Py_ssize_t na, Py_ssize_t ob,
                     Py_ssize_t nb, Py_ssize_t* ro, Py_ssize_t* rn) except -1 nogil:
    """The union of two sorted runs by a merge; a result equal to one of
    them reuses that run and gives the new space back."""
    cdef Py_ssize_t i = 0, j = 0, k = 0
    cdef const index_t* A
    cdef const index_t* B
    cdef index_t* R
    cdef index_t x, y
    reserve(p, na + nb)
    A = p.data + oa
    B = p.data + ob
    R = p.data + p.size
    while i < na and j < nb:
        x = A[i]
        y = B[j]
        if x < y:
            R[k] = x
            i += 1
        elif y < x:
            R[k] = y
            j += 1
        else:
            R[k] = x
            i += 1
            j += 1
        k += 1
    while i < na:
        R[k] = A[i]
        i += 1
        k += 1
    while j < nb:
        R[k] = B[j]
        j += 1
        k += 1
    if k == na:
        ro[0] = oa
    elif k == nb:
        ro[0] = ob
    else:
        ro[0] = p.size
        p.size += k
    rn[0] = k
    return 0


ctypedef struct Sets:
    Pool pool
    Py_ssize_t* off       # (n_slots,) run of each materialised set
    Py_ssize_t* cnt
    uint8_t* lazy         # 1: the set is the union of the operands' sets
    index_t* mark         # (n_in,) stamp per input, for de-duplication
    Pool stack            # slots still to gather into a lazy in-tree's set


cdef int gather(const Ops* t, Sets* S, Py_ssize_t s) except -1 nogil:
    """Materialise slot s's set from its operands, descending through lazy
    operands (each lazy slot has a single consumer, so it is walked once)."""
    cdef Py_ssize_t i = entry_of(t, s)
    S.stack.size = 0
    if is_array(t.code[i]):
        element_operands(t, i, s - t.start[i], &S.stack)
    else:
        push_operands(t, i, &S.stack)
    return drain(t, S, s)


cdef inline int push_operands(const Ops* t, Py_ssize_t i, Pool* out) except -1 nogil:
    """Append the operands of scalar entry i to ``out``."""
    cdef index_t ops[2]
    cdef int j, m = operands(t, i, ops)
    reserve(out, 2)
    for j in range(m):
        out.data[out.size] = ops[j]
        out.size += 1
    return 0


cdef int drain(const Ops* t, Sets* S, Py_ssize_t s) except -1 nogil:
    """Materialise slot s's set as the union of the sets of the slots on
    ``S.stack`` (emptied), descending through lazy ones."""
    cdef Py_ssize_t start = S.pool.size, k = 0, j, o, n, u, i
    cdef index_t v
    cdef index_t stamp = <index_t>s
    while S.stack.size > 0:
        S.stack.size -= 1
        u = S.stack.data[S.stack.size]
        if S.lazy[u]:
            i = entry_of(t, u)
            if is_array(t.code[i]):
                element_operands(t, i, u - t.start[i], &S.stack)
            else:
                push_operands(t, i, &S.stack)
            continue
        n = S.cnt[u]
        reserve(&S.pool, n)
        o = S.off[u]
        for j in range(n):
            v = S.pool.data[o + j]
            if S.mark[v] != stamp:
                S.mark[v] = stamp
                S.pool.data[start + k] = v
                k += 1
                S.pool.size += 1
    sort_marked(S.pool.data + start, k, S.mark, stamp, t.n_in)
    S.off[s] = start
    S.cnt[s] = k
    return 0


cdef int set_of(const Ops* t, Sets* S, Py_ssize_t s, bint may_lazy) except -1 nogil:
    """Compute slot s's index set from its operands' sets."""
    cdef index_t ops[2]
    cdef int m = operands(t, entry_of(t, s), ops)
    cdef Py_ssize_t a, b
    if m == 0:
        S.cnt[s] = 0
        return 0
    a = ops[0]
    if m == 1:
        if not S.lazy[a]:
            S.off[s] = S.off[a]
            S.cnt[s] = S.cnt[a]
        elif may_lazy:
            S.lazy[s] = 1
        else:
            gather(t, S, s)
        return 0
    b = ops[1]
    if not S.lazy[a] and not S.lazy[b]:
        if cheap_union(&S.pool, S.off[a], S.cnt[a], S.off[b], S.cnt[b], &S.off[s], &S.cnt[s]):
            return 0
        # Merging small runs eagerly when s could stay lazy measured no
        # faster (up to 20% slower on 10^5-operation tapes): stay lazy.
        if not may_lazy:
            merge_union(&S.pool, S.off[a], S.cnt[a], S.off[b], S.cnt[b], &S.off[s], &S.cnt[s])
            return 0
    if may_lazy:
        S.lazy[s] = 1
    else:
        gather(t, S, s)
    return 0


# ---- array entries, element by element ----------------------------------------------

cdef inline int push(Pool* p, Py_ssize_t v) except -1 nogil:
    reserve(p, 1)
    p.data[p.size] = <index_t>v
    p.size += 1
    return 0


cdef int element_operands(const Ops* t, Py_ssize_t i, Py_ssize_t e, Pool* out) except -1 nogil:
    """Append to ``out`` the operand slots that element e of array entry i
    depends on, as its expansion's scalar entries would (a matrix product's
    as pairs A[i, l], B[l, j] when both are slots); returns how many."""
    cdef const index_t* d = t.aux + t.args[2 * i]
    cdef opcode_t code = t.code[i]
    cdef Py_ssize_t size0 = out.size, o, j, l, n_inner, row, col
    cdef int which
    if code == OP_GATHER:
        push(out, d[e])
    elif code == OP_SUM:
        for j in range(d[1]):
            push(out, d[2] + e * d[3] + j * d[4])
    elif code == OP_CUMSUM:
        n_inner = d[1]
        o = e // n_inner
        j = e - o * n_inner
        if j:                  # the running sum so far, then this element
            push(out, start_of(t, i) + e - 1)
        push(out, d[2] + o * d[3] + j * d[4])
    elif code == OP_WHERE:     # the branches, not the condition
        o = e // d[1]
        j = e - o * d[1]
        push(out, d[5] + o * d[6] + j * d[7])
        push(out, d[8] + o * d[9] + j * d[10])
    elif code == OP_MAP:
        o = e // d[2]
        j = e - o * d[2]
        which = WG_OPERANDS[d[0]]
        if which == OPERANDS_FIRST or which == OPERANDS_BOTH:
            push(out, d[3] + o * d[4] + j * d[5])
        if which == OPERANDS_SECOND or which == OPERANDS_BOTH:
            push(out, d[6] + o * d[7] + j * d[8])
    elif code == OP_MATMUL:
        row = e // d[3]
        col = e - row * d[3]
        which = WG_OPERANDS[d[0]]
        for l in range(d[2]):
            if which == OPERANDS_FIRST or which == OPERANDS_BOTH:
                push(out, d[4] + row * d[5] + l * d[6])
            if which == OPERANDS_SECOND or which == OPERANDS_BOTH:
                push(out, d[7] + l * d[8] + col * d[9])
    return <int>(out.size - size0)


cdef int element_set(const Ops* t, Sets* S, Py_ssize_t s, Py_ssize_t i, Py_ssize_t e,
                     bint may_lazy) except -1 nogil:
    """Compute slot s, element e of array entry i, from its operands' sets,
    as set_of does for a scalar entry (lazy when it may be)."""
    cdef Py_ssize_t a, b, m
    S.stack.size = 0
    element_operands(t, i, e, &S.stack)
    m = S.stack.size
    if m == 0:
        S.off[s] = 0
        S.cnt[s] = 0
        return 0
    a = S.stack.data[0]
    if m == 1 and not S.lazy[a]:
        S.off[s] = S.off[a]
        S.cnt[s] = S.cnt[a]
        return 0
    if m == 2:
        b = S.stack.data[1]
        if not S.lazy[a] and not S.lazy[b]:
            if cheap_union(&S.pool, S.off[a], S.cnt[a], S.off[b], S.cnt[b], &S.off[s],
                           &S.cnt[s]):
                return 0
            if not may_lazy:
                merge_union(&S.pool, S.off[a], S.cnt[a], S.off[b], S.cnt[b], &S.off[s],
                            &S.cnt[s])
                return 0
    if may_lazy:
        S.lazy[s] = 1
        return 0
    return drain(t, S, s)


cdef int element_blocks(const Ops* t, Sets* S, Py_ssize_t i, const Pool* ops,
                        Blocks* B) except -1 nogil:
    """The interaction blocks of a live element of array entry i, whose
    operands (runs) are ``ops``: a map element's by its opcode, a matrix
    product's S(A[i, l]) x S(B[l, j]) for each l; the rest are linear."""
    cdef const index_t* d = t.aux + t.args[2 * i]
    cdef Py_ssize_t l, a, b
    if t.code[i] == OP_MAP:
        return pair_blocks(S, nonlinearity(d[0]), ops.data, <int>ops.size, B)
    if t.code[i] == OP_MATMUL and nonlinearity(d[0]) != NL_NONE:
        for l in range(0, ops.size, 2):
            a = ops.data[l]
            b = ops.data[l + 1]
            add_block(B, S.off[a], S.cnt[a], S.off[b], S.cnt[b])
    return 0


cdef int mark_backward(const Ops* t, const index_t* outputs, Py_ssize_t n_out,
                       bint hessian, uint8_t* live, uint8_t* need, uint8_t* pin,
                       int32_t* uses, Pool* buf) except -1 nogil:
    """One reverse pass: ``live`` slots can carry a nonzero adjoint (they
    reach an output through differentiable edges); ``need`` slots must have
    their index set computed; ``pin`` slots need it as a run (outputs for the
    Jacobian, operands of live nonlinear operations for the Hessian);
    ``uses`` counts the needed consumers of each slot."""
    cdef Py_ssize_t i, s, j
    cdef index_t ops[2]
    cdef int m, nl
    for j in range(n_out):
        live[outputs[j]] = 1
        if not hessian:
            need[outputs[j]] = 1
            pin[outputs[j]] = 1
    for i in range(t.n_ops - 1, -1, -1):
        if is_array(t.code[i]):
            mark_elements(t, i, hessian, live, need, pin, uses, buf)
            continue
        s = t.first + i if t.start == NULL else t.start[i]
        if not live[s] and not need[s]:
            continue
        m = operands(t, i, ops)
        if hessian and live[s]:
            nl = nonlinearity(t.code[i])
            if nl != NL_NONE:
                for j in range(m):
                    need[ops[j]] = 1
                    pin[ops[j]] = 1
        for j in range(m):
            if live[s]:
                live[ops[j]] = 1
            if need[s]:
                need[ops[j]] = 1
                uses[ops[j]] += 1
    return 0


cdef int mark_elements(const Ops* t, Py_ssize_t i, bint hessian, uint8_t* live,
                       uint8_t* need, uint8_t* pin, int32_t* uses, Pool* buf) except -1 nogil:
    """mark_backward over the elements of array entry i, last first (a
    running sum's element reads the one before it)."""
    cdef const index_t* d = t.aux + t.args[2 * i]
    cdef Py_ssize_t e, s, j, u, first_slot = t.start[i]
    cdef bint nonlinear = False
    if t.code[i] == OP_MAP or t.code[i] == OP_MATMUL:
        nonlinear = nonlinearity(d[0]) != NL_NONE
    for e in range(t.args[2 * i + 1] - 1, -1, -1):
        s = first_slot + e
        if not live[s] and not need[s]:
            continue
        buf.size = 0
        element_operands(t, i, e, buf)
        for j in range(buf.size):
            u = buf.data[j]
            if hessian and live[s] and nonlinear:
                need[u] = 1
                pin[u] = 1
            if live[s]:
                live[u] = 1
            if need[s]:
                need[u] = 1
                uses[u] += 1
    return 0


cdef int pair_blocks(Sets* S, int nl, const index_t* ops, int m, Blocks* B) except -1 nogil:
    """The interaction blocks of an operation of class ``nl`` whose operand
    slots (runs) are ``ops[:m]``."""
    cdef Py_ssize_t a, b
    if nl == NL_NONE or m == 0:
        return 0
    a = ops[0]
    if nl == NL_SELF or m == 1:
        add_block(B, S.off[a], S.cnt[a], S.off[a], S.cnt[a])
        return 0
    b = ops[1]
    add_block(B, S.off[a], S.cnt[a], S.off[b], S.cnt[b])
    if nl == NL_DIV or nl == NL_ALL:
        add_block(B, S.off[b], S.cnt[b], S.off[b], S.cnt[b])
    if nl == NL_ALL:
        add_block(B, S.off[a], S.cnt[a], S.off[a], S.cnt[a])
    return 0


cdef int emit_blocks(const Ops* t, Sets* S, Py_ssize_t i, Blocks* B) except -1 nogil:
    """The interaction blocks of live operation i (operand sets are runs)."""
    cdef index_t ops[2]
    cdef int m = operands(t, i, ops)
    return pair_blocks(S, nonlinearity(t.code[i]), ops, m, B)


cdef class _Work:
    """Owns the buffers of one pattern computation (freed on any exit)."""
    cdef Sets S
    cdef Blocks B
    cdef Pool buf             # an array element's operand slots
    cdef uint8_t* flags       # live, need, pin: 3 * n_slots
    cdef int32_t* uses

    def __cinit__(self, Py_ssize_t n_slots, Py_ssize_t n_in):
        cdef Py_ssize_t i
        self.S.off = <Py_ssize_t*>malloc((n_slots + 1) * sizeof(Py_ssize_t))
        self.S.cnt = <Py_ssize_t*>malloc((n_slots + 1) * sizeof(Py_ssize_t))
        self.S.lazy = <uint8_t*>malloc(n_slots + 1)
        self.S.mark = <index_t*>malloc((n_in + 1) * sizeof(index_t))
        self.S.stack.data = NULL
        self.S.stack.size = 0
        self.S.stack.cap = 0
        self.flags = <uint8_t*>malloc(3 * n_slots + 1)
        self.uses = <int32_t*>malloc((n_slots + 1) * sizeof(int32_t))
        self.S.pool.data = NULL
        self.S.pool.size = 0
        self.S.pool.cap = 0
        self.B.data = NULL
        self.B.count = 0
        self.B.cap = 0
        self.buf.data = NULL
        self.buf.size = 0
        self.buf.cap = 0
        if (self.S.off == NULL or self.S.cnt == NULL or self.S.lazy == NULL
                or self.S.mark == NULL or self.flags == NULL
                or self.uses == NULL):
            raise MemoryError("sparsity pattern: out of memory")
        for i in range(n_slots):
            self.S.cnt[i] = 0
            self.S.off[i] = 0
            self.S.lazy[i] = 0
            self.uses[i] = 0
        for i in range(3 * n_slots):
            self.flags[i] = 0
        for i in range(n_in):
            self.S.mark[i] = -1

    def __dealloc__(self):
        free(self.S.off)
        free(self.S.cnt)
        free(self.S.lazy)
        free(self.S.mark)
        free(self.S.stack.data)
        free(self.S.pool.data)
        free(self.flags)
        free(self.uses)
        free(self.B.data)
        free(self.buf.data)


cdef int propagate(const Ops* t, Sets* S, Blocks* B, uint8_t* flags, int32_t* uses,
                   const index_t* outputs, Py_ssize_t n_out, Py_ssize_t n_slots,
                   bint hessian, Pool* buf) except -1 nogil:
    """Mark, then compute the needed index sets in tape order (and, for the
    Hessian, the interaction blocks of every live nonlinear operation)."""
    cdef uint8_t* live = flags
    cdef uint8_t* need = flags + n_slots
    cdef uint8_t* pin = flags + 2 * n_slots
    cdef Py_ssize_t i, s, e
    mark_backward(t, outputs, n_out, hessian, live, need, pin, uses, buf)
    reserve(&S.pool, t.n_in)
    for i in range(t.n_in):
        S.pool.data[i] = <index_t>i
        S.off[i] = i
        S.cnt[i] = 1
    S.pool.size = t.n_in
    for i in range(t.n_ops):
        if is_array(t.code[i]):
            for e in range(t.args[2 * i + 1]):
                s = t.start[i] + e
                if hessian and live[s]:
                    buf.size = 0
                    element_operands(t, i, e, buf)
                    element_blocks(t, S, i, buf, B)
                if need[s]:
                    element_set(t, S, s, i, e, uses[s] == 1 and not pin[s])
            continue
        s = t.first + i if t.start == NULL else t.start[i]
        if need[s]:
            set_of(t, S, s, uses[s] == 1 and not pin[s])
        if hessian and live[s]:
            emit_blocks(t, S, i, B)
    return 0


def jacobian_pattern(engine):
    """CSR ``(indptr, indices)`` of the Jacobian pattern of a tape's
    :class:`~wengert._sweeps.Engine`: row j lists the inputs that output j
    depends on through differentiable operations."""
    cdef const opcode_t[::1] code = engine.opcodes
    cdef const index_t[:, ::1] args = engine.args
    cdef const index_t[::1] aux = engine.aux
    cdef const index_t[::1] outputs = engine.outputs
    start_a, entry_a = _slot_maps(engine)
    cdef const int64_t[::1] start = start_a
    cdef const int32_t[::1] entry = entry_a
    cdef Ops t = _ops_of(engine, code, args, aux, start, entry)
    cdef Py_ssize_t n_slots = engine.n_slots, n_out = outputs.shape[0], j, total = 0
    cdef _Work w = _Work(n_slots, t.n_in)
    with nogil:
        propagate(&t, &w.S, &w.B, w.flags, w.uses, &outputs[0] if n_out else NULL,
                  n_out, n_slots, False, &w.buf)
    for j in range(n_out):
        total += w.S.cnt[outputs[j]]
    indptr = np.empty(n_out + 1, dtype=np.int64)
    indices = np.empty(total, dtype=np.int32)
    cdef int64_t[::1] ptr = indptr
    cdef index_t[::1] idx = indices
    cdef Py_ssize_t k = 0, o, n
    ptr[0] = 0
    with nogil:
        for j in range(n_out):
            o = w.S.off[outputs[j]]
            n = w.S.cnt[outputs[j]]
            if n:
                memcpy(&idx[k], w.S.pool.data + o, n * sizeof(index_t))
            k += n
            ptr[j + 1] = k
    return indptr, indices


def hessian_pattern(engine):
    """CSR ``(indptr, indices)`` of the (symmetric) Hessian pattern of
    ``w . f`` for any output weight w, over the inputs."""
    cdef const opcode_t[::1] code = engine.opcodes
    cdef const index_t[:, ::1] args = engine.args
    cdef const index_t[::1] aux = engine.aux
    cdef const index_t[::1] outputs = engine.outputs
    start_a, entry_a = _slot_maps(engine)
    cdef const int64_t[::1] start = start_a
    cdef const int32_t[::1] entry = entry_a
    cdef Ops t = _ops_of(engine, code, args, aux, start, entry)
    cdef Py_ssize_t n_slots = engine.n_slots, n_out = outputs.shape[0]
    cdef _Work w = _Work(n_slots, t.n_in)
    with nogil:
        propagate(&t, &w.S, &w.B, w.flags, w.uses, &outputs[0] if n_out else NULL,
                  n_out, n_slots, True, &w.buf)
    return _expand_blocks(&w.S.pool, &w.B, t.n_in)


cdef _expand_blocks(Pool* pool, Blocks* B, Py_ssize_t n):
    """Rows of the union of the blocks A x B and B x A, each sorted."""
    cdef Py_ssize_t m, i, j, r, k, pos, total = 0, row_start, count
    cdef int64_t* blk
    cdef const index_t* P
    # Repeated blocks (a chain like sin(sin(u)) gives the same runs again)
    # are merged so that their pairs are enumerated once. Only blocks of
    # more than DEDUP_PAIRS pairs are worth it: sorting all of them cost 3x
    # the rest of a Rosenbrock pattern, and the marks absorb small repeats.
    with nogil:
        m = 0
        for i in range(B.count):        # big blocks first, in place
            blk = B.data + 4 * i
            if blk[1] * blk[3] > DEDUP_PAIRS:
                _swap_blocks(B.data, i, m)
                m += 1
        qsort(B.data, m, 4 * sizeof(int64_t), _cmp_block)
        k = 0
        for i in range(m):
            if k == 0 or _cmp_block(B.data + 4 * i, B.data + 4 * (k - 1)) != 0:
                _swap_blocks(B.data, i, k)
                k += 1
        for i in range(m, B.count):     # then the small ones
            _swap_blocks(B.data, i, k)
            k += 1
        B.count = k
        m = k
    item_ptr_a = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] item_ptr = item_ptr_a
    for i in range(m):
        blk = B.data + 4 * i
        total += blk[1] + (0 if (blk[0] == blk[2] and blk[1] == blk[3]) else blk[3])
    item_off_a = np.empty(total, dtype=np.int64)
    item_cnt_a = np.empty(total, dtype=np.int64)
    mark_a = np.full(n + 1, -1, dtype=np.int32)
    cdef int64_t[::1] item_off = item_off_a
    cdef int64_t[::1] item_cnt = item_cnt_a
    cdef index_t[::1] mark = mark_a
    cdef Pool out
    out.data = NULL
    out.size = 0
    out.cap = 0
    indptr_a = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] indptr = indptr_a
    try:
        with nogil:
            P = pool.data
            # Counting sort of the items (row r takes the run R) by row.
            for i in range(m):
                blk = B.data + 4 * i
                for j in range(blk[1]):
                    item_ptr[P[blk[0] + j] + 1] += 1
                if not (blk[0] == blk[2] and blk[1] == blk[3]):
                    for j in range(blk[3]):
                        item_ptr[P[blk[2] + j] + 1] += 1
            for r in range(n):
                item_ptr[r + 1] += item_ptr[r]
            for i in range(m):
                blk = B.data + 4 * i
                for j in range(blk[1]):
                    r = P[blk[0] + j]
                    pos = item_ptr[r]
                    item_off[pos] = blk[2]
                    item_cnt[pos] = blk[3]
                    item_ptr[r] = pos + 1
                if not (blk[0] == blk[2] and blk[1] == blk[3]):
                    for j in range(blk[3]):
                        r = P[blk[2] + j]
                        pos = item_ptr[r]
                        item_off[pos] = blk[0]
                        item_cnt[pos] = blk[1]
                        item_ptr[r] = pos + 1
            # item_ptr[r] now ends row r; rows start where the previous ended.
            indptr[0] = 0
            for r in range(n):
                row_start = out.size
                for pos in range(item_ptr[r - 1] if r else 0, item_ptr[r]):
                    count = item_cnt[pos]
                    reserve(&out, count)
                    for k in range(count):
                        j = P[item_off[pos] + k]
                        if mark[j] != r:
                            mark[j] = <index_t>r
                            out.data[out.size] = <index_t>j
                            out.size += 1
                sort_marked(out.data + row_start, out.size - row_start, &mark[0],
                            <index_t>r, n)
                indptr[r + 1] = out.size
        indices = np.empty(out.size, dtype=np.int32)
        if out.size:
            memcpy(cnp.PyArray_DATA(indices), out.data, out.size * sizeof(index_t))
        return indptr_a, indices
    finally:
        free(out.data)
