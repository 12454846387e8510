# The Python-facing half of the compiled engine: a validated, immutable copy
# of a tape's arrays, the work blocks the one-point fast paths reuse, and
# the entry points wengert.tape calls. The nogil loops themselves are in
# _sweeps.pyx.
cimport cython
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t

import numpy as np
cimport numpy as cnp

from wengert._types cimport real_t, index_t, opcode_t, TapeView
from wengert._sweeps cimport (
    forward0, forward1, reverse1, reverse1_clearing, reverse2,
    first_bad_operation, first_bad_guard, first_failed_guard,
)
from wengert._opcodes cimport ROLE_SLOT
from wengert._operands cimport operand_exists, operand_role
from wengert._dispatch cimport is_array_entry

cnp.import_array()

# Which opcodes are array entries, for the sweeps' list of them.
_ARRAY_CODES = np.array([is_array_entry(code) for code in range(256)], dtype=bool)


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
    cdef readonly object array_entries    # the operations that are array entries
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
        if self.first + op_v.shape[0] >= 2**31 - 1:
            raise ValueError(f"{self.first + op_v.shape[0]} slots exceed the 32-bit index range")
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
        cdef Py_ssize_t end_slot = self.first
        with nogil:
            bad = first_bad_operation(&self.view, &valid[0], const_v.shape[0], aux_v.shape[0],
                                      0, self.view.n_ops, &end_slot)
        if bad >= 0:
            raise ValueError(
                f"operation {bad} (opcode {op_v[bad]}, operands {arg_v[bad, 0]}, "
                f"{arg_v[bad, 1]}) is not a known opcode or refers to a slot, constant "
                f"or side-table entry that does not exist before it")
        # Array entries write many slots each: the count follows the entries.
        self.n_slots = end_slot
        self.view.n_slots = end_slot
        self.array_entries = _frozen(np.flatnonzero(_ARRAY_CODES[self.opcodes]), np.int32, (-1,))
        cdef const index_t[::1] arrays_v = self.array_entries
        self.view.arrays = &arrays_v[0] if arrays_v.shape[0] else NULL
        self.view.n_arrays = arrays_v.shape[0]
        bad = first_bad_guard(&self.view, self.n_slots, const_v.shape[0])
        if bad >= 0:
            raise ValueError(f"guard {bad} is not a comparison of existing slots")
        for i in range(self.n_out):
            if not operand_exists(ROLE_SLOT, out_v[i], self.n_slots, 0, NULL, 0):
                raise ValueError(f"output {i} refers to slot {out_v[i]}, outside 0..{self.n_slots - 1}")

    @staticmethod
    def operand_roles(int code):
        """The ROLE_* of both operands of a full opcode, as the compiled passes
        decode them (the tests compare it with _opcodes.ROLES)."""
        if not 0 <= code < 256:
            raise ValueError(f"opcode {code} is not a byte")
        return operand_role(code, 0), operand_role(code, 1)

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
            forward0(&self.view, &val[0, 0], B, 0, self.view.n_ops, self.first)
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
                forward0(&self.view, val, 1, 0, self.view.n_ops, self.first)
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
                forward0(&self.view, val, 1, 0, self.view.n_ops, self.first)
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
