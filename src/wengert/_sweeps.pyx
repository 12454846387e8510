# The sweeps: tight loops over a validated tape, the GIL released.
#
# Storage is slot-major: the values of slot s for B points are
# val[s*B : s*B + B]; its tangents (or adjoints) for K directions at point p
# are dot[(s*B + p)*K : ... + K], so the innermost loops run over contiguous
# points or directions. The loops only dispatch (the hottest full opcodes
# first, then by operand kind); the mathematics sits in _kernels.pxd, and
# the loops of array entries (one entry over many slots) in _arrays.pxi.
#
# A scalar entry writes one slot and an array entry as many as its arg1
# says, so the sweeps carry the result slot along: forward from the first
# result slot, backward from the slot after the last.
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.stdint cimport uint8_t

from wengert._types cimport real_t, index_t, opcode_t, TapeView
from wengert._opcodes cimport *
from wengert._kernels cimport azmul
from wengert._operands cimport operand_role, operand_exists, operand_value
from wengert._dispatch cimport (
    is_comparison, is_array_entry, unary_value, unary_partial, unary_second,
    binary_value, binary_partials, binary_seconds,
)
from scipy.linalg.cython_blas cimport dgemm


# Each sweep body is compiled for two widths: one point and one direction
# (B = K = 1 become constants and the inner loops vanish) and any B and K.
cdef struct _one:
    char unused
cdef struct _many:
    char unused
ctypedef fused width_t:
    _one
    _many

# Which sweep a kernel application belongs to.
cdef struct _values:
    char unused
cdef struct _tangents:
    char unused
cdef struct _adjoints:
    char unused
cdef struct _seconds:
    char unused
ctypedef fused sweep_t:
    _values
    _tangents
    _adjoints
    _seconds

ctypedef struct Work:
    const TapeView* t
    real_t* val      # (n_slots, B)
    real_t* deriv    # tangents, adjoints or adjoint tangents, (n_slots, B, K)
    real_t* dot      # second order: the tangents from forward1, (n_slots, B, K)
    real_t* bar      # second order: the first-order adjoints, (n_slots, B)
    Py_ssize_t B
    Py_ssize_t K
    bint clear       # adjoints, one point: zero each result's adjoint once used


cdef inline Work _work(const TapeView* t, const real_t* val, real_t* deriv,
                       const real_t* dot, real_t* bar, Py_ssize_t B,
                       Py_ssize_t K) noexcept nogil:
    """The state one sweep hands to its kernels (NULL where it has none).

    ``val`` and ``dot`` are const for the sweeps that only read them; one
    Work type serves all four sweeps, so it stores them writable.
    """
    cdef Work w
    w.t = t
    w.val = <real_t*>val
    w.deriv = deriv
    w.dot = <real_t*>dot
    w.bar = bar
    w.clear = False
    w.B = B
    w.K = K
    return w


# Full opcodes of the operations that dominate typical tapes: the dispatch
# switch sends them straight to their kernel with a constant base, saving the
# second dispatch (about 10% of a gradient on arithmetic-heavy tapes).
cdef enum:
    ADD_VV = (KIND_VV << KIND_SHIFT) | OP_ADD
    SUB_VV = (KIND_VV << KIND_SHIFT) | OP_SUB
    MUL_VV = (KIND_VV << KIND_SHIFT) | OP_MUL
    DIV_VV = (KIND_VV << KIND_SHIFT) | OP_DIV
    ADD_VC = (KIND_VC << KIND_SHIFT) | OP_ADD
    SUB_VC = (KIND_VC << KIND_SHIFT) | OP_SUB
    MUL_VC = (KIND_VC << KIND_SHIFT) | OP_MUL
    DIV_VC = (KIND_VC << KIND_SHIFT) | OP_DIV
    ADD_CV = (KIND_CV << KIND_SHIFT) | OP_ADD
    SUB_CV = (KIND_CV << KIND_SHIFT) | OP_SUB
    MUL_CV = (KIND_CV << KIND_SHIFT) | OP_MUL
    DIV_CV = (KIND_CV << KIND_SHIFT) | OP_DIV


cdef void forward0(const TapeView* t, real_t* val, Py_ssize_t B,
                   Py_ssize_t start, Py_ssize_t end, Py_ssize_t slot) noexcept nogil:
    """Values of operations start..end-1 at B points; ``slot`` is the first
    result slot of operation start."""
    cdef Work w = _work(t, val, NULL, NULL, NULL, B, 1)
    _run(<_values*>NULL, &w, start, end, slot)


cdef void forward1(const TapeView* t, real_t* val, real_t* dot,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Values and K tangent directions at B points, in one pass.

    The caller fills the values and tangents of the input and parameter
    slots; every other slot is written here.
    """
    cdef Work w = _work(t, val, dot, NULL, NULL, B, K)
    _run(<_tangents*>NULL, &w, 0, t.n_ops, t.first)


cdef void reverse1(const TapeView* t, const real_t* val, real_t* bar,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Accumulate K adjoint directions at B points, last operation first.

    ``val`` holds every slot's value (from forward0); ``bar`` holds the
    seeded output adjoints and zeros elsewhere.
    """
    cdef Work w = _work(t, val, bar, NULL, NULL, B, K)
    _run(<_adjoints*>NULL, &w, 0, t.n_ops, t.n_slots)


cdef void reverse1_clearing(const TapeView* t, const real_t* val, real_t* bar) noexcept nogil:
    """reverse1 at one point along one direction that leaves every
    operation's adjoint zero again once it is used: with the input and
    parameter rows zeroed afterwards, ``bar`` is all zero for the next call,
    so a cached adjoint block never needs a memset (a pass over n_slots
    doubles, ~13% of a gradient)."""
    cdef Work w = _work(t, val, bar, NULL, NULL, 1, 1)
    w.clear = True
    _run(<_adjoints*>NULL, &w, 0, t.n_ops, t.n_slots)


cdef void reverse2(const TapeView* t, const real_t* val, const real_t* dot,
                   real_t* bar, real_t* bardot, Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Second order, forward over reverse: adjoints ``bar`` (n_slots, B) and
    their tangents ``bardot`` (n_slots, B, K) along the K directions whose
    tangents ``dot`` forward1 computed. Seed ``bar`` at the outputs (the
    weight w) and zero ``bardot``; afterwards the input rows of ``bardot``
    hold H(w.F) @ V.
    """
    cdef Work w = _work(t, val, bardot, dot, bar, B, K)
    _run(<_seconds*>NULL, &w, 0, t.n_ops, t.n_slots)


cdef inline void _run(sweep_t* sweep, Work* w, Py_ssize_t start, Py_ssize_t end,
                      Py_ssize_t slot) noexcept nogil:
    """Operations start..end-1: first to last for values and tangents
    (``slot`` is the first result slot of operation start), last to first
    for adjoints (``slot`` is the slot after the last result of operation
    end-1).

    The runs of scalar entries between array entries go through the tight
    loop of _scalars, whose result slots follow the operation index (a tape
    without array entries is one run); each array entry in between writes
    its many slots through _array_entry."""
    cdef const TapeView* t = w.t
    cdef Py_ssize_t i, k, stop, s = slot, n
    if sweep_t is _values or sweep_t is _tangents:
        k = _first_array_at_or_after(t, start)
        i = start
        while True:
            stop = t.arrays[k] if k < t.n_arrays and t.arrays[k] < end else end
            _scalars(sweep, w, i, stop, s - i)
            s += stop - i
            if stop == end:
                return
            n = t.args[2 * stop + 1]
            _array_entry(sweep, w[0], t.opcodes[stop], s, t.aux + t.args[2 * stop], n)
            s += n
            i = stop + 1
            k += 1
    else:
        k = _first_array_at_or_after(t, end) - 1
        i = end
        while True:
            stop = t.arrays[k] + 1 if k >= 0 and t.arrays[k] >= start else start
            s -= i - stop
            _scalars(sweep, w, stop, i, s - stop)
            if stop == start:
                return
            i = stop - 1
            n = t.args[2 * i + 1]
            s -= n
            _array_entry(sweep, w[0], t.opcodes[i], s, t.aux + t.args[2 * i], n)
            if sweep_t is _adjoints:
                # (A map clears its results' adjoints as it reads them.)
                if w.clear and t.opcodes[i] != OP_MAP:
                    memset(w.deriv + s, 0, n * sizeof(real_t))
            k -= 1


cdef inline Py_ssize_t _first_array_at_or_after(const TapeView* t, Py_ssize_t i) noexcept nogil:
    """Position in t.arrays of the first array entry at operation i or later
    (t.n_arrays if none): a binary search."""
    cdef Py_ssize_t low = 0, high = t.n_arrays, mid
    while low < high:
        mid = (low + high) // 2
        if t.arrays[mid] < i:
            low = mid + 1
        else:
            high = mid
    return low


cdef inline void _scalars(sweep_t* sweep, Work* w, Py_ssize_t start, Py_ssize_t end,
                          Py_ssize_t shift) noexcept nogil:
    """Scalar operations start..end-1, operation i writing slot shift + i;
    the one-point, one-direction body when it fits."""
    cdef Py_ssize_t i
    cdef bint one = w.B == 1 and w.K == 1
    if sweep_t is _values or sweep_t is _tangents:
        if one:
            for i in range(start, end):
                _step(sweep, <_one*>NULL, w, i, shift + i)
        else:
            for i in range(start, end):
                _step(sweep, <_many*>NULL, w, i, shift + i)
    else:
        if one:
            for i in range(end - 1, start - 1, -1):
                _step(sweep, <_one*>NULL, w, i, shift + i)
                if sweep_t is _adjoints:
                    if w.clear:
                        w.deriv[shift + i] = 0.0
        else:
            for i in range(end - 1, start - 1, -1):
                _step(sweep, <_many*>NULL, w, i, shift + i)


cdef inline void _step(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i,
                       Py_ssize_t s) noexcept nogil:
    """Dispatch scalar operation i, whose result slot is s: the hot opcodes
    first, then by operand kind."""
    cdef int code = w.t.opcodes[i]
    cdef Py_ssize_t a = w.t.args[2 * i]
    if code == ADD_VV: _binary(sweep, width, w, ADD_VV, s, a, w.t.args[2 * i + 1])
    elif code == SUB_VV: _binary(sweep, width, w, SUB_VV, s, a, w.t.args[2 * i + 1])
    elif code == MUL_VV: _binary(sweep, width, w, MUL_VV, s, a, w.t.args[2 * i + 1])
    elif code == DIV_VV: _binary(sweep, width, w, DIV_VV, s, a, w.t.args[2 * i + 1])
    elif code == ADD_VC: _binary(sweep, width, w, ADD_VC, s, a, w.t.args[2 * i + 1])
    elif code == SUB_VC: _binary(sweep, width, w, SUB_VC, s, a, w.t.args[2 * i + 1])
    elif code == MUL_VC: _binary(sweep, width, w, MUL_VC, s, a, w.t.args[2 * i + 1])
    elif code == DIV_VC: _binary(sweep, width, w, DIV_VC, s, a, w.t.args[2 * i + 1])
    elif code == ADD_CV: _binary(sweep, width, w, ADD_CV, s, a, w.t.args[2 * i + 1])
    elif code == SUB_CV: _binary(sweep, width, w, SUB_CV, s, a, w.t.args[2 * i + 1])
    elif code == MUL_CV: _binary(sweep, width, w, MUL_CV, s, a, w.t.args[2 * i + 1])
    elif code == DIV_CV: _binary(sweep, width, w, DIV_CV, s, a, w.t.args[2 * i + 1])
    elif code == OP_SQUARE: _unary(sweep, width, w, OP_SQUARE, s, a)
    elif code == OP_NEG: _unary(sweep, width, w, OP_NEG, s, a)
    elif code == OP_CONST: _const(sweep, width, w, s, a)
    elif code == OP_SELECT:
        _select(sweep, width, w, s, a, w.t.aux[w.t.args[2 * i + 1]],
                w.t.aux[w.t.args[2 * i + 1] + 1])
    elif (code >> KIND_SHIFT) == KIND_UNARY: _unary(sweep, width, w, code, s, a)
    else: _binary(sweep, width, w, code, s, a, w.t.args[2 * i + 1])


cdef inline void _unary(sweep_t* sweep, width_t* width, Work* w, int base,
                        Py_ssize_t s, Py_ssize_t a) noexcept nogil:
    """Slot s = base(slot a)."""
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef real_t* r = w.val + s * B
    cdef const real_t* x = w.val + a * B
    cdef real_t rv, d, dd, seed
    cdef real_t* rd
    cdef real_t* xd
    cdef const real_t* xt
    if sweep_t is _values:
        for p in range(B):
            r[p] = unary_value(base, x[p])
    elif sweep_t is _tangents:
        rd = w.deriv + s * BK
        xd = w.deriv + a * BK
        for p in range(B):
            rv = unary_value(base, x[p])
            r[p] = rv
            d = unary_partial(base, x[p], rv)
            for j in range(K):
                rd[p * K + j] = azmul(xd[p * K + j], d)
    elif sweep_t is _adjoints:
        rd = w.deriv + s * BK
        xd = w.deriv + a * BK
        for p in range(B):
            d = unary_partial(base, x[p], r[p])
            for j in range(K):
                xd[p * K + j] += azmul(rd[p * K + j], d)
    else:
        # (x̄, x̄̇) += (r̄ φ', r̄̇ φ' + r̄ φ'' ẋ)
        rd = w.deriv + s * BK
        xd = w.deriv + a * BK
        xt = w.dot + a * BK
        for p in range(B):
            d = unary_partial(base, x[p], r[p])
            seed = w.bar[s * B + p]
            w.bar[a * B + p] += azmul(seed, d)
            dd = azmul(seed, unary_second(base, x[p], r[p]))
            for j in range(K):
                xd[p * K + j] += azmul(rd[p * K + j], d) + azmul(dd, xt[p * K + j])


cdef inline void _binary(sweep_t* sweep, width_t* width, Work* w, int code,
                         Py_ssize_t s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Slot s = code(a, b); a constant operand (kind VC or CV: a or b
    indexes the pool) has no derivative storage and receives no adjoint. The
    hot codes arrive as constants, so the operand roles fold away."""
    cdef int base = code & BASE_MASK
    cdef bint x_const = operand_role(code, 0) == ROLE_CONST
    cdef bint y_const = operand_role(code, 1) == ROLE_CONST
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef const TapeView* t = w.t
    cdef real_t* r = w.val + s * B
    cdef const real_t* x = w.val + a * B
    cdef const real_t* y = w.val + b * B
    cdef real_t c = 0.0, xv, yv, rv, dx, dy, seed, dxx, dxy, dyy, tx, ty
    cdef real_t* rd
    cdef real_t* xd
    cdef real_t* yd
    cdef const real_t* xt
    cdef const real_t* yt
    if y_const:
        c = t.consts[b]
    elif x_const:
        c = t.consts[a]
    if sweep_t is not _values:
        rd = w.deriv + s * BK
        xd = w.deriv + a * BK
        yd = w.deriv + b * BK
    if sweep_t is _values:
        for p in range(B):
            xv = c if x_const else x[p]
            yv = c if y_const else y[p]
            r[p] = binary_value(base, xv, yv)
    elif sweep_t is _tangents:
        for p in range(B):
            xv = c if x_const else x[p]
            yv = c if y_const else y[p]
            rv = binary_value(base, xv, yv)
            r[p] = rv
            if is_comparison(base):
                for j in range(K):
                    rd[p * K + j] = 0.0
                continue
            binary_partials(base, xv, yv, rv, &dx, &dy)
            for j in range(K):
                if not x_const and not y_const:
                    rd[p * K + j] = azmul(xd[p * K + j], dx) + azmul(yd[p * K + j], dy)
                elif y_const:
                    rd[p * K + j] = azmul(xd[p * K + j], dx)
                else:
                    rd[p * K + j] = azmul(yd[p * K + j], dy)
    elif sweep_t is _adjoints:
        if is_comparison(base):
            return
        for p in range(B):
            xv = c if x_const else x[p]
            yv = c if y_const else y[p]
            binary_partials(base, xv, yv, r[p], &dx, &dy)
            for j in range(K):
                seed = rd[p * K + j]
                if not x_const:
                    xd[p * K + j] += azmul(seed, dx)
                if not y_const:
                    yd[p * K + j] += azmul(seed, dy)
    else:
        # x̄̇ += r̄̇ φx + r̄ (φxx ẋ + φxy ẏ), and alike for y; a constant
        # operand has no tangent and receives nothing.
        if is_comparison(base):
            return
        xt = w.dot + a * BK
        yt = w.dot + b * BK
        for p in range(B):
            xv = c if x_const else x[p]
            yv = c if y_const else y[p]
            binary_partials(base, xv, yv, r[p], &dx, &dy)
            binary_seconds(base, xv, yv, r[p], &dxx, &dxy, &dyy)
            seed = w.bar[s * B + p]
            if not x_const:
                w.bar[a * B + p] += azmul(seed, dx)
            if not y_const:
                w.bar[b * B + p] += azmul(seed, dy)
            dxx = azmul(seed, dxx)
            dxy = azmul(seed, dxy)
            dyy = azmul(seed, dyy)
            for j in range(K):
                tx = 0.0 if x_const else xt[p * K + j]
                ty = 0.0 if y_const else yt[p * K + j]
                if not x_const:
                    xd[p * K + j] += (azmul(rd[p * K + j], dx) + azmul(dxx, tx)
                                      + azmul(dxy, ty))
                if not y_const:
                    yd[p * K + j] += (azmul(rd[p * K + j], dy) + azmul(dxy, tx)
                                      + azmul(dyy, ty))


cdef inline void _const(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t s,
                        Py_ssize_t pool_index) noexcept nogil:
    cdef Py_ssize_t B = w.B, K = w.K, p
    if width_t is _one:
        B = 1
        K = 1
    cdef real_t c = w.t.consts[pool_index]
    # A constant has no derivative: reverse sweeps have nothing to do.
    if sweep_t is _values or sweep_t is _tangents:
        for p in range(B):
            w.val[s * B + p] = c
    if sweep_t is _tangents:
        memset(w.deriv + s * B * K, 0, B * K * sizeof(real_t))


cdef inline void _select(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t s,
                         Py_ssize_t cond_slot, Py_ssize_t x, Py_ssize_t y) noexcept nogil:
    """Slot s = ``cond != 0 ? x : y`` (a select's branch slots are in the
    side table, a where entry's in its grids); only the chosen branch is
    read, so a NaN in the other never reaches a value, a tangent or an
    adjoint."""
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef const real_t* cond = w.val + cond_slot * B
    cdef Py_ssize_t chosen
    for p in range(B):
        chosen = x if cond[p] != 0.0 else y
        if sweep_t is _values:
            w.val[s * B + p] = w.val[chosen * B + p]
        elif sweep_t is _tangents:
            w.val[s * B + p] = w.val[chosen * B + p]
            for j in range(K):
                w.deriv[(s * B + p) * K + j] = w.deriv[(chosen * B + p) * K + j]
        elif sweep_t is _adjoints:
            for j in range(K):
                w.deriv[(chosen * B + p) * K + j] += w.deriv[(s * B + p) * K + j]
        else:
            w.bar[chosen * B + p] += w.bar[s * B + p]
            for j in range(K):
                w.deriv[(chosen * B + p) * K + j] += w.deriv[(s * B + p) * K + j]


cdef Py_ssize_t first_failed_guard(const TapeView* t, const real_t* val,
                                   Py_ssize_t B, Py_ssize_t* point) noexcept nogil:
    """Index of the first guard whose outcome differs from the recorded one
    (its point in ``point``), or -1 when every guard holds at every point."""
    cdef Py_ssize_t g, p
    cdef int code
    cdef real_t av, bv
    cdef const index_t* arg
    for p in range(B):
        for g in range(t.n_guards):
            code = t.guard_codes[g]
            arg = t.guard_args + 2 * g
            av = operand_value(operand_role(code, 0), arg[0], val, t.consts, B, p)
            bv = operand_value(operand_role(code, 1), arg[1], val, t.consts, B, p)
            if (binary_value(code & BASE_MASK, av, bv) != 0.0) != (t.guard_expected[g] != 0):
                point[0] = p
                return g
    return -1


# ---- validation ------------------------------------------------------------

cdef Py_ssize_t first_bad_operation(const TapeView* t, const uint8_t* valid,
                                    Py_ssize_t n_consts, Py_ssize_t n_aux,
                                    Py_ssize_t start, Py_ssize_t end,
                                    Py_ssize_t* slot) noexcept nogil:
    """Index of the first operation in start..end-1 with an unknown opcode or
    an operand outside what exists before it, or -1. ``slot`` holds the
    first result slot of operation start, and on success the slot after
    the last result of operation end-1 (on failure, that of the bad one)."""
    cdef Py_ssize_t i, s = slot[0], n
    cdef int code, k
    for i in range(start, end):
        code = t.opcodes[i]
        if not valid[code]:
            slot[0] = s
            return i
        if is_array_entry(code):
            n = array_entry_slots(t, code, t.args[2 * i], t.args[2 * i + 1], s, n_consts, n_aux)
            if n <= 0:
                slot[0] = s
                return i
            s += n
            continue
        for k in range(2):
            if not operand_exists(operand_role(code, k), t.args[2 * i + k], s,
                                  n_consts, t.aux, n_aux):
                slot[0] = s
                return i
        s += 1
    slot[0] = s
    return -1


cdef Py_ssize_t first_bad_guard(const TapeView* t, Py_ssize_t n_slots,
                                Py_ssize_t n_consts) noexcept nogil:
    """Index of the first guard that is not a comparison of existing slots
    and constants with a 0/1 outcome, or -1."""
    cdef Py_ssize_t g
    cdef int code, k, role
    for g in range(t.n_guards):
        code = t.guard_codes[g]
        if not is_comparison(code & BASE_MASK) or t.guard_expected[g] > 1:
            return g
        for k in range(2):
            role = operand_role(code, k)
            if ((role != ROLE_SLOT and role != ROLE_CONST)
                    or not operand_exists(role, t.guard_args[2 * g + k], n_slots, n_consts,
                                          NULL, 0)):
                return g
    return -1


include "_vector_table.pxi"
include "_arrays.pxi"
include "_map_loops.pxi"


# Which functions map entries evaluate four at a time: "avx2" (glibc's
# libmvec found, on a CPU with AVX2 and FMA) or "none" (scalar libm, as
# scalar entries). WENGERT_VECTOR_MATH=0 turns it off, e.g. to compare.
import os as _os
cdef bint _vector_on = wg_vector_setup(
    WG_VECTOR_FNS, WG_VECTOR_NAMES, WG_VECTOR_SCALARS, WG_N_VECTOR_FNS,
    _os.environ.get("WENGERT_VECTOR_MATH", "1").strip() not in ("0", "off", "no", "false"))
vector_math = "avx2" if _vector_on else "none"
