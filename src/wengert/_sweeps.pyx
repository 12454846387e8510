# The sweeps: tight loops over a validated tape, the GIL released.
#
# Storage is slot-major: the values of slot s for B points are
# val[s*B : s*B + B]; its tangents (or adjoints) for K directions at point p
# are dot[(s*B + p)*K : ... + K], so the innermost loops run over contiguous
# points or directions. The loops only dispatch (the hottest full opcodes
# first, then by operand kind); the mathematics sits in _kernels.pxd.
cimport cython
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t

import numpy as np
cimport numpy as cnp

from wengert._types cimport real_t, index_t, opcode_t, TapeView
from wengert._opcodes cimport *
from wengert._kernels cimport azmul
from wengert._dispatch cimport (
    is_comparison, unary_value, unary_partial, unary_second,
    binary_value, binary_partials, binary_seconds,
)

cnp.import_array()


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
                   Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """Values of operations start..end-1 at B points."""
    cdef Work w = _work(t, val, NULL, NULL, NULL, B, 1)
    _run(<_values*>NULL, &w, start, end)


cdef void forward1(const TapeView* t, real_t* val, real_t* dot,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Values and K tangent directions at B points, in one pass.

    The caller fills the values and tangents of the input and parameter
    slots; every other slot is written here.
    """
    cdef Work w = _work(t, val, dot, NULL, NULL, B, K)
    _run(<_tangents*>NULL, &w, 0, t.n_ops)


cdef void reverse1(const TapeView* t, const real_t* val, real_t* bar,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Accumulate K adjoint directions at B points, last operation first.

    ``val`` holds every slot's value (from forward0); ``bar`` holds the
    seeded output adjoints and zeros elsewhere.
    """
    cdef Work w = _work(t, val, bar, NULL, NULL, B, K)
    _run(<_adjoints*>NULL, &w, 0, t.n_ops)


cdef void reverse1_clearing(const TapeView* t, const real_t* val, real_t* bar) noexcept nogil:
    """reverse1 at one point along one direction that leaves every
    operation's adjoint zero again once it is used: with the input and
    parameter rows zeroed afterwards, ``bar`` is all zero for the next call,
    so a cached adjoint block never needs a memset (a pass over n_slots
    doubles, ~13% of a gradient)."""
    cdef Work w = _work(t, val, bar, NULL, NULL, 1, 1)
    w.clear = True
    _run(<_adjoints*>NULL, &w, 0, t.n_ops)


cdef void reverse2(const TapeView* t, const real_t* val, const real_t* dot,
                   real_t* bar, real_t* bardot, Py_ssize_t B, Py_ssize_t K) noexcept nogil:
    """Second order, forward over reverse: adjoints ``bar`` (n_slots, B) and
    their tangents ``bardot`` (n_slots, B, K) along the K directions whose
    tangents ``dot`` forward1 computed. Seed ``bar`` at the outputs (the
    weight w) and zero ``bardot``; afterwards the input rows of ``bardot``
    hold H(w.F) @ V.
    """
    cdef Work w = _work(t, val, bardot, dot, bar, B, K)
    _run(<_seconds*>NULL, &w, 0, t.n_ops)


cdef inline void _run(sweep_t* sweep, Work* w, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """Operations start..end-1: first to last for values and tangents, last
    to first for adjoints; the one-point, one-direction body when it fits."""
    cdef Py_ssize_t i
    cdef bint one = w.B == 1 and w.K == 1
    if sweep_t is _values or sweep_t is _tangents:
        if one:
            for i in range(start, end):
                _step(sweep, <_one*>NULL, w, i)
        else:
            for i in range(start, end):
                _step(sweep, <_many*>NULL, w, i)
    else:
        if one:
            for i in range(end - 1, start - 1, -1):
                _step(sweep, <_one*>NULL, w, i)
                if sweep_t is _adjoints:
                    if w.clear:
                        w.deriv[w.t.first + i] = 0.0
        else:
            for i in range(end - 1, start - 1, -1):
                _step(sweep, <_many*>NULL, w, i)


cdef inline void _step(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i) noexcept nogil:
    """Dispatch operation i: the hot opcodes first, then by operand kind."""
    cdef int code = w.t.opcodes[i]
    if code == ADD_VV: _binary(sweep, width, w, i, OP_ADD, KIND_VV)
    elif code == SUB_VV: _binary(sweep, width, w, i, OP_SUB, KIND_VV)
    elif code == MUL_VV: _binary(sweep, width, w, i, OP_MUL, KIND_VV)
    elif code == DIV_VV: _binary(sweep, width, w, i, OP_DIV, KIND_VV)
    elif code == ADD_VC: _binary(sweep, width, w, i, OP_ADD, KIND_VC)
    elif code == SUB_VC: _binary(sweep, width, w, i, OP_SUB, KIND_VC)
    elif code == MUL_VC: _binary(sweep, width, w, i, OP_MUL, KIND_VC)
    elif code == DIV_VC: _binary(sweep, width, w, i, OP_DIV, KIND_VC)
    elif code == ADD_CV: _binary(sweep, width, w, i, OP_ADD, KIND_CV)
    elif code == SUB_CV: _binary(sweep, width, w, i, OP_SUB, KIND_CV)
    elif code == MUL_CV: _binary(sweep, width, w, i, OP_MUL, KIND_CV)
    elif code == DIV_CV: _binary(sweep, width, w, i, OP_DIV, KIND_CV)
    elif code == OP_SQUARE: _unary(sweep, width, w, i, OP_SQUARE)
    elif code == OP_NEG: _unary(sweep, width, w, i, OP_NEG)
    elif code == OP_CONST: _const(sweep, width, w, i)
    elif code == OP_SELECT: _select(sweep, width, w, i)
    elif (code >> KIND_SHIFT) == KIND_UNARY: _unary(sweep, width, w, i, code)
    else: _binary(sweep, width, w, i, code & BASE_MASK, code >> KIND_SHIFT)


cdef inline void _unary(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i,
                        int base) noexcept nogil:
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef Py_ssize_t s = w.t.first + i, a = w.t.args[2 * i]
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


cdef inline void _binary(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i,
                         int base, int kind) noexcept nogil:
    """A binary operation; a constant operand (kind VC or CV) reads the
    pool, has no derivative storage and receives no adjoint."""
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef const TapeView* t = w.t
    cdef Py_ssize_t s = t.first + i
    cdef Py_ssize_t a = t.args[2 * i], b = t.args[2 * i + 1]
    cdef real_t* r = w.val + s * B
    cdef const real_t* x = w.val + a * B
    cdef const real_t* y = w.val + b * B
    cdef real_t c = 0.0, xv, yv, rv, dx, dy, seed, dxx, dxy, dyy, tx, ty
    cdef real_t* rd
    cdef real_t* xd
    cdef real_t* yd
    cdef const real_t* xt
    cdef const real_t* yt
    if kind == KIND_VC:
        c = t.consts[b]
    elif kind == KIND_CV:
        c = t.consts[a]
    if sweep_t is not _values:
        rd = w.deriv + s * BK
        xd = w.deriv + a * BK
        yd = w.deriv + b * BK
    if sweep_t is _values:
        for p in range(B):
            xv = c if kind == KIND_CV else x[p]
            yv = c if kind == KIND_VC else y[p]
            r[p] = binary_value(base, xv, yv)
    elif sweep_t is _tangents:
        for p in range(B):
            xv = c if kind == KIND_CV else x[p]
            yv = c if kind == KIND_VC else y[p]
            rv = binary_value(base, xv, yv)
            r[p] = rv
            if is_comparison(base):
                for j in range(K):
                    rd[p * K + j] = 0.0
                continue
            binary_partials(base, xv, yv, rv, &dx, &dy)
            for j in range(K):
                if kind == KIND_VV:
                    rd[p * K + j] = azmul(xd[p * K + j], dx) + azmul(yd[p * K + j], dy)
                elif kind == KIND_VC:
                    rd[p * K + j] = azmul(xd[p * K + j], dx)
                else:
                    rd[p * K + j] = azmul(yd[p * K + j], dy)
    elif sweep_t is _adjoints:
        if is_comparison(base):
            return
        for p in range(B):
            xv = c if kind == KIND_CV else x[p]
            yv = c if kind == KIND_VC else y[p]
            binary_partials(base, xv, yv, r[p], &dx, &dy)
            for j in range(K):
                seed = rd[p * K + j]
                if kind != KIND_CV:
                    xd[p * K + j] += azmul(seed, dx)
                if kind != KIND_VC:
                    yd[p * K + j] += azmul(seed, dy)
    else:
        # x̄̇ += r̄̇ φx + r̄ (φxx ẋ + φxy ẏ), and alike for y; a constant
        # operand has no tangent and receives nothing.
        if is_comparison(base):
            return
        xt = w.dot + a * BK
        yt = w.dot + b * BK
        for p in range(B):
            xv = c if kind == KIND_CV else x[p]
            yv = c if kind == KIND_VC else y[p]
            binary_partials(base, xv, yv, r[p], &dx, &dy)
            binary_seconds(base, xv, yv, r[p], &dxx, &dxy, &dyy)
            seed = w.bar[s * B + p]
            if kind != KIND_CV:
                w.bar[a * B + p] += azmul(seed, dx)
            if kind != KIND_VC:
                w.bar[b * B + p] += azmul(seed, dy)
            dxx = azmul(seed, dxx)
            dxy = azmul(seed, dxy)
            dyy = azmul(seed, dyy)
            for j in range(K):
                tx = 0.0 if kind == KIND_CV else xt[p * K + j]
                ty = 0.0 if kind == KIND_VC else yt[p * K + j]
                if kind != KIND_CV:
                    xd[p * K + j] += (azmul(rd[p * K + j], dx) + azmul(dxx, tx)
                                      + azmul(dxy, ty))
                if kind != KIND_VC:
                    yd[p * K + j] += (azmul(rd[p * K + j], dy) + azmul(dxy, tx)
                                      + azmul(dyy, ty))


cdef inline void _const(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t B = w.B, K = w.K, p
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t s = w.t.first + i
    cdef real_t c = w.t.consts[w.t.args[2 * i]]
    # A constant has no derivative: reverse sweeps have nothing to do.
    if sweep_t is _values or sweep_t is _tangents:
        for p in range(B):
            w.val[s * B + p] = c
    if sweep_t is _tangents:
        memset(w.deriv + s * B * K, 0, B * K * sizeof(real_t))


cdef inline void _select(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t i) noexcept nogil:
    """``cond != 0 ? x : y``; only the chosen branch is read, so a NaN in
    the other never reaches a value, a tangent or an adjoint."""
    cdef Py_ssize_t B = w.B, K = w.K, p, j
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t BK = B * K
    cdef const TapeView* t = w.t
    cdef Py_ssize_t s = t.first + i
    cdef const real_t* cond = w.val + <Py_ssize_t>t.args[2 * i] * B
    cdef const index_t* branches = t.aux + t.args[2 * i + 1]
    cdef Py_ssize_t chosen
    for p in range(B):
        chosen = branches[0] if cond[p] != 0.0 else branches[1]
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
    cdef int code, base, kind
    cdef real_t av, bv
    cdef const index_t* arg
    for p in range(B):
        for g in range(t.n_guards):
            code = t.guard_codes[g]
            base = code & BASE_MASK
            kind = code >> KIND_SHIFT
            arg = t.guard_args + 2 * g
            av = t.consts[arg[0]] if kind == KIND_CV else val[<Py_ssize_t>arg[0] * B + p]
            bv = t.consts[arg[1]] if kind == KIND_VC else val[<Py_ssize_t>arg[1] * B + p]
            if (binary_value(base, av, bv) != 0.0) != (t.guard_expected[g] != 0):
                point[0] = p
                return g
    return -1


# ---- validation ------------------------------------------------------------

cdef inline bint _slot_ok(index_t s, Py_ssize_t limit) noexcept nogil:
    return 0 <= s and s < limit


cdef Py_ssize_t first_bad_operation(const TapeView* t, const uint8_t* valid,
                                    Py_ssize_t n_consts, Py_ssize_t n_aux,
                                    Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """Index of the first operation in start..end-1 with an unknown opcode or
    an operand outside what exists before it, or -1."""
    cdef Py_ssize_t i, s
    cdef int code, base, kind
    cdef index_t a0, a1
    cdef bint ok
    for i in range(start, end):
        code = t.opcodes[i]
        if not valid[code]:
            return i
        base = code & BASE_MASK
        kind = code >> KIND_SHIFT
        s = t.first + i
        a0 = t.args[2 * i]
        a1 = t.args[2 * i + 1]
        if kind == KIND_VV:
            ok = _slot_ok(a0, s) and _slot_ok(a1, s)
        elif kind == KIND_VC:
            ok = _slot_ok(a0, s) and _slot_ok(a1, n_consts)
        elif kind == KIND_CV:
            ok = _slot_ok(a0, n_consts) and _slot_ok(a1, s)
        elif base == OP_CONST:
            ok = _slot_ok(a0, n_consts)
        elif base == OP_SELECT:
            ok = (_slot_ok(a0, s) and _slot_ok(a1, n_aux - 1)
                  and _slot_ok(t.aux[a1], s) and _slot_ok(t.aux[a1 + 1], s))
        else:
            ok = _slot_ok(a0, s)
        if not ok:
            return i
    return -1


cdef Py_ssize_t _first_bad_guard(const TapeView* t, Py_ssize_t n_slots,
                                 Py_ssize_t n_consts) noexcept nogil:
    cdef Py_ssize_t g
    cdef int code, base, kind
    cdef index_t a0, a1
    for g in range(t.n_guards):
        code = t.guard_codes[g]
        base = code & BASE_MASK
        kind = code >> KIND_SHIFT
        a0 = t.guard_args[2 * g]
        a1 = t.guard_args[2 * g + 1]
        if not is_comparison(base) or kind == KIND_UNARY or t.guard_expected[g] > 1:
            return g
        if not _slot_ok(a0, n_consts if kind == KIND_CV else n_slots):
            return g
        if not _slot_ok(a1, n_consts if kind == KIND_VC else n_slots):
            return g
    return -1


# Cached work blocks, each taken by one caller at a time (the GIL orders
# the taking). POOL of them serve that many threads replaying one tape at
# once without allocating: a fresh block of many MB costs its page faults on
# every call (two threads on one tape were slower than one before). Callers
# beyond that get a private block.
cdef enum:
    POOL = 4

ctypedef struct Block:
    real_t* data
    Py_ssize_t size
    bint busy


cdef real_t* _block_take(Block* pool, Py_ssize_t n, bint zeroed) except NULL:
    cdef real_t* block
    cdef Block* b
    cdef int k
    n = max(n, 1)     # malloc(0) may return NULL
    for k in range(POOL):
        b = &pool[k]
        if b.busy:
            continue
        if b.size < n:
            free(b.data)
            b.data = <real_t*>(calloc(n, sizeof(real_t)) if zeroed else malloc(n * sizeof(real_t)))
            b.size = n if b.data != NULL else 0
            if b.data == NULL:
                raise MemoryError()
        b.busy = True
        return b.data
    block = <real_t*>(calloc(n, sizeof(real_t)) if zeroed else malloc(n * sizeof(real_t)))
    if block == NULL:
        raise MemoryError()
    return block


cdef void _block_give(Block* pool, real_t* block) noexcept:
    cdef int k
    for k in range(POOL):
        if block == pool[k].data:
            pool[k].busy = False
            return
    free(block)


@cython.final
cdef object _frozen(values, dtype, shape):
    """A private, immutable copy of ``values``: an array over a ``bytes``
    object. The sweeps trust what was validated, so no caller may keep a
    writable handle on it; unlike ``flags.writeable = False`` on an owned
    array, a bytes-backed array cannot be made writable again."""
    cdef object array = np.ascontiguousarray(values, dtype)
    return np.frombuffer(array.tobytes(), dtype=dtype).reshape(shape)


cdef class Engine:
    """The compiled half of a tape: validated arrays and the sweeps over them.

    Construction validates every array (a malformed tape raises ValueError
    with the reason); afterwards the sweeps trust the data.
    """
    cdef TapeView view
    cdef readonly object opcodes, args, consts, aux, outputs
    cdef readonly object guard_codes, guard_args, guard_expected
    cdef readonly Py_ssize_t n_inputs, n_params, n_slots, first
    cdef const index_t* out_ptr
    cdef Py_ssize_t n_out
    cdef Block cache[POOL]        # work space for the one-point fast paths
    cdef Block zeros[POOL]        # adjoint blocks kept all zero between calls
    cdef public object branch_error   # callable(guard, point or -1) -> exception

    def __cinit__(self, opcodes, args, consts, aux, outputs, Py_ssize_t n_inputs,
                  Py_ssize_t n_params, guard_codes, guard_args, guard_expected,
                  valid_codes):
        self.opcodes = _frozen(opcodes, np.uint8, (-1,))
        self.args = _frozen(args, np.int32, (-1, 2))
        self.consts = _frozen(consts, np.float64, (-1,))
        self.aux = _frozen(aux, np.int32, (-1,))
        self.outputs = _frozen(outputs, np.int32, (-1,))
        self.guard_codes = _frozen(guard_codes, np.uint8, (-1,))
        self.guard_args = _frozen(guard_args, np.int32, (-1, 2))
        self.guard_expected = _frozen(guard_expected, np.uint8, (-1,))
        cdef const opcode_t[::1] op_v = self.opcodes
        cdef const index_t[:, ::1] arg_v = self.args
        cdef const real_t[::1] const_v = self.consts
        cdef const index_t[::1] aux_v = self.aux
        cdef const index_t[::1] out_v = self.outputs
        cdef const opcode_t[::1] gc_v = self.guard_codes
        cdef const index_t[:, ::1] ga_v = self.guard_args
        cdef const uint8_t[::1] ge_v = self.guard_expected
        cdef const uint8_t[::1] valid = np.ascontiguousarray(valid_codes, np.uint8)
        cdef Py_ssize_t bad, i
        cdef int k
        for k in range(POOL):
            self.cache[k] = Block(NULL, 0, False)
            self.zeros[k] = Block(NULL, 0, False)
        if n_inputs < 0 or n_params < 0:
            raise ValueError("negative input or parameter count")
        if op_v.shape[0] != arg_v.shape[0]:
            raise ValueError(f"{op_v.shape[0]} opcodes but {arg_v.shape[0]} operand rows")
        if gc_v.shape[0] != ga_v.shape[0] or gc_v.shape[0] != ge_v.shape[0]:
            raise ValueError("guard arrays have different lengths")
        if valid.shape[0] != 256:
            raise ValueError("valid_codes must have 256 entries")
        self.n_inputs = n_inputs
        self.n_params = n_params
        self.first = n_inputs + n_params
        self.n_slots = self.first + op_v.shape[0]
        if self.n_slots >= 2**31 - 1:
            raise ValueError(f"{self.n_slots} slots exceed the 32-bit index range")
        self.view.n_ops = op_v.shape[0]
        self.view.first = self.first
        self.view.n_guards = gc_v.shape[0]
        self.view.opcodes = &op_v[0] if op_v.shape[0] else NULL
        self.view.args = &arg_v[0, 0] if arg_v.shape[0] else NULL
        self.view.consts = &const_v[0] if const_v.shape[0] else NULL
        self.view.aux = &aux_v[0] if aux_v.shape[0] else NULL
        self.view.guard_codes = &gc_v[0] if gc_v.shape[0] else NULL
        self.view.guard_args = &ga_v[0, 0] if ga_v.shape[0] else NULL
        self.view.guard_expected = &ge_v[0] if ge_v.shape[0] else NULL
        self.out_ptr = &out_v[0] if out_v.shape[0] else NULL
        self.n_out = out_v.shape[0]
        with nogil:
            bad = first_bad_operation(&self.view, &valid[0], const_v.shape[0], aux_v.shape[0],
                                      0, self.view.n_ops)
        if bad >= 0:
            raise ValueError(
                f"operation {bad} (opcode {op_v[bad]}, operands {arg_v[bad, 0]}, "
                f"{arg_v[bad, 1]}) is not a known opcode or refers to a slot, constant "
                f"or side-table entry that does not exist before it")
        bad = _first_bad_guard(&self.view, self.n_slots, const_v.shape[0])
        if bad >= 0:
            raise ValueError(f"guard {bad} is not a comparison of existing slots")
        for i in range(self.n_out):
            if not _slot_ok(out_v[i], self.n_slots):
                raise ValueError(f"output {i} refers to slot {out_v[i]}, outside 0..{self.n_slots - 1}")

    def __dealloc__(self):
        cdef int k
        for k in range(POOL):
            free(self.cache[k].data)
            free(self.zeros[k].data)

    # -- work space: one cached block, taken by one caller at a time --------

    cdef real_t* _take(self, Py_ssize_t n) except NULL:
        return _block_take(self.cache, n, False)

    cdef void _give(self, real_t* block) noexcept:
        _block_give(self.cache, block)

    cdef real_t* _take_zeros(self, Py_ssize_t n) except NULL:
        """A block of n zeros; hand it back all zero with _give_zeros."""
        return _block_take(self.zeros, n, True)

    cdef void _give_zeros(self, real_t* block) noexcept:
        _block_give(self.zeros, block)

    cdef int _raise_branch(self, Py_ssize_t g, Py_ssize_t p) except -1:
        raise self.branch_error(g, p)

    # -- generic sweeps over caller-owned arrays (batches, many directions) -

    def values(self, real_t[:, ::1] val, bint batched=True):
        """Fill every slot of ``val`` (n_slots, B) from its input rows;
        raise the branch error if a guard fails (naming the point when
        ``batched``)."""
        cdef Py_ssize_t g, p = 0, B = val.shape[1]
        if val.shape[0] != self.n_slots:
            raise ValueError("work array has the wrong number of slots")
        with nogil:
            forward0(&self.view, &val[0, 0], B, 0, self.view.n_ops)
            g = first_failed_guard(&self.view, &val[0, 0], B, &p)
        if g >= 0:
            self._raise_branch(g, p if batched else -1)

    def tangents(self, real_t[:, ::1] val, real_t[:, :, ::1] dot, bint batched=True):
        """Values and tangents: val (n_slots, B), dot (n_slots, B, K) with
        input rows filled."""
        cdef Py_ssize_t g, p = 0, B = val.shape[1], K = dot.shape[2]
        if val.shape[0] != self.n_slots or dot.shape[0] != self.n_slots or dot.shape[1] != B:
            raise ValueError("work arrays have the wrong shape")
        with nogil:
            forward1(&self.view, &val[0, 0], &dot[0, 0, 0], B, K)
            g = first_failed_guard(&self.view, &val[0, 0], B, &p)
        if g >= 0:
            self._raise_branch(g, p if batched else -1)

    def adjoints(self, const real_t[:, ::1] val, real_t[:, :, ::1] bar):
        """Reverse sweep: val from :meth:`values`, bar (n_slots, B, K) seeded."""
        cdef Py_ssize_t B = val.shape[1], K = bar.shape[2]
        if val.shape[0] != self.n_slots or bar.shape[0] != self.n_slots or bar.shape[1] != B:
            raise ValueError("work arrays have the wrong shape")
        with nogil:
            reverse1(&self.view, &val[0, 0], &bar[0, 0, 0], B, K)

    def seconds(self, const real_t[:, ::1] val, const real_t[:, :, ::1] dot,
                real_t[:, ::1] bar, real_t[:, :, ::1] bardot):
        """Second-order reverse sweep (see reverse2); val and dot from
        :meth:`tangents`, bar seeded at the outputs, bardot zero."""
        cdef Py_ssize_t B = val.shape[1], K = dot.shape[2]
        if (val.shape[0] != self.n_slots or dot.shape[0] != self.n_slots or dot.shape[1] != B
                or bar.shape[0] != self.n_slots or bar.shape[1] != B
                or bardot.shape[0] != self.n_slots or bardot.shape[1] != B or bardot.shape[2] != K):
            raise ValueError("work arrays have the wrong shape")
        with nogil:
            reverse2(&self.view, &val[0, 0], &dot[0, 0, 0], &bar[0, 0], &bardot[0, 0, 0], B, K)

    # -- one point, one direction: the fast paths ---------------------------

    def value_point(self, cnp.ndarray x, cnp.ndarray params, bint scalar):
        """Output values at one point: a float when ``scalar``, else a new
        flat float64 array. ``x`` and ``params`` must be float64 arrays of the
        right sizes, ``params`` C-contiguous (checked; plain ndarrays rather
        than typed memoryviews because acquiring those costs ~0.3 us a call)."""
        cdef Py_ssize_t i, g, p = 0
        cdef cnp.ndarray result
        cdef real_t* out
        x = self._check_point(x, params)
        cdef real_t* val = self._take(self.n_slots)
        try:
            self._load(val, x, params)
            with nogil:
                forward0(&self.view, val, 1, 0, self.view.n_ops)
                g = first_failed_guard(&self.view, val, 1, &p)
            if g >= 0:
                self._raise_branch(g, -1)
            if scalar:
                return val[self.out_ptr[0]]
            result = cnp.PyArray_EMPTY(1, [self.n_out], cnp.NPY_FLOAT64, 0)
            out = <real_t*>cnp.PyArray_DATA(result)
            for i in range(self.n_out):
                out[i] = val[self.out_ptr[i]]
            return result
        finally:
            self._give(val)

    def gradient_point(self, cnp.ndarray x, cnp.ndarray params):
        """``(value, gradient)`` of a single output at one point; the
        gradient has the shape of ``x`` (same requirements as value_point)."""
        cdef Py_ssize_t g, p = 0, n = self.n_slots
        cdef cnp.ndarray result
        cdef real_t value
        if self.n_out != 1:
            raise ValueError("gradient_point needs exactly one output")
        x = self._check_point(x, params)
        cdef real_t* val = self._take(n)
        cdef real_t* bar
        try:
            bar = self._take_zeros(n)
        except MemoryError:
            self._give(val)
            raise
        try:
            self._load(val, x, params)
            with nogil:
                forward0(&self.view, val, 1, 0, self.view.n_ops)
                g = first_failed_guard(&self.view, val, 1, &p)
                if g < 0:
                    bar[self.out_ptr[0]] = 1.0
                    reverse1_clearing(&self.view, val, bar)
            if g >= 0:
                self._raise_branch(g, -1)
            value = val[self.out_ptr[0]]
            result = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), cnp.NPY_FLOAT64, 0)
            if self.n_inputs:
                memcpy(cnp.PyArray_DATA(result), bar, self.n_inputs * sizeof(real_t))
            return value, result
        finally:
            # Operations' adjoints are zero again (reverse1_clearing); the
            # inputs' and parameters' rows hold the gradient: clear them too.
            memset(bar, 0, self.first * sizeof(real_t))
            self._give_zeros(bar)
            self._give(val)

    def hvp_point(self, cnp.ndarray x, cnp.ndarray params, cnp.ndarray v, cnp.ndarray weights):
        """H(w·f) @ v at one point along one direction, shaped like ``x``;
        ``v`` like ``x``, ``weights`` (n_outputs,) float64 contiguous."""
        cdef Py_ssize_t g, p = 0, n = self.n_slots, i
        cdef cnp.ndarray result
        x = self._check_point(x, params)
        v = self._check_point(v, params)
        if (cnp.PyArray_TYPE(weights) != cnp.NPY_FLOAT64 or not cnp.PyArray_IS_C_CONTIGUOUS(weights)
                or cnp.PyArray_SIZE(weights) != self.n_out):
            raise ValueError("output weights have the wrong type or length")
        cdef const real_t* wp = <const real_t*>cnp.PyArray_DATA(weights)
        cdef real_t* work = self._take(4 * n)
        cdef real_t* val = work
        cdef real_t* dot = work + n
        cdef real_t* bar = work + 2 * n
        cdef real_t* bardot = work + 3 * n
        try:
            self._load(val, x, params)
            memset(dot, 0, self.first * sizeof(real_t))
            if self.n_inputs:
                memcpy(dot, cnp.PyArray_DATA(v), self.n_inputs * sizeof(real_t))
            with nogil:
                forward1(&self.view, val, dot, 1, 1)
                g = first_failed_guard(&self.view, val, 1, &p)
                if g < 0:
                    memset(bar, 0, 2 * n * sizeof(real_t))
                    for i in range(self.n_out):
                        bar[self.out_ptr[i]] += wp[i]
                    reverse2(&self.view, val, dot, bar, bardot, 1, 1)
            if g >= 0:
                self._raise_branch(g, -1)
            result = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), cnp.NPY_FLOAT64, 0)
            if self.n_inputs:
                memcpy(cnp.PyArray_DATA(result), bardot, self.n_inputs * sizeof(real_t))
            return result
        finally:
            self._give(work)

    cdef cnp.ndarray _check_point(self, cnp.ndarray x, cnp.ndarray params):
        """``x`` as a C-contiguous array (a copy only if it was not)."""
        if (cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT64 or cnp.PyArray_SIZE(x) != self.n_inputs
                or cnp.PyArray_TYPE(params) != cnp.NPY_FLOAT64
                or not cnp.PyArray_IS_C_CONTIGUOUS(params)
                or cnp.PyArray_SIZE(params) != self.n_params):
            raise ValueError("input or parameter vector has the wrong type or length")
        if cnp.PyArray_IS_C_CONTIGUOUS(x):
            return x
        return cnp.PyArray_GETCONTIGUOUS(x)

    cdef void _load(self, real_t* val, cnp.ndarray x, cnp.ndarray params) noexcept:
        if self.n_inputs:
            memcpy(val, cnp.PyArray_DATA(x), self.n_inputs * sizeof(real_t))
        if self.n_params:
            memcpy(val + self.n_inputs, cnp.PyArray_DATA(params), self.n_params * sizeof(real_t))
