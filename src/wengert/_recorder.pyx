# Recording: the growable tape under construction and the traced scalar.
#
# Every appended operation is evaluated at once by the same zero-order sweep
# that replays the tape (``forward0`` over the new range), so the values seen
# while recording are bit-for-bit the values a replay produces.
cimport cython
from libc.math cimport signbit
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from wengert._types cimport real_t, index_t, opcode_t, TapeView
from wengert._opcodes cimport *
from wengert._dispatch cimport binary_value, is_array_entry, is_comparison
from wengert._operands cimport operand_role, operand_exists, operand_value
from wengert._sweeps cimport first_bad_operation, forward0
from libc.stdint cimport uint8_t

from wengert._errors import TracingError, WengertError
from wengert._opcodes import valid_codes

cnp.import_array()

# Python-level behaviour of traced values that lives in tracing.py
# (comparisons, ufuncs, array functions); tracing.py fills this in at import.
hooks = {}

cdef Py_ssize_t MAX_SLOTS = 2**31 - 2
_VALID_CODES = np.ascontiguousarray(valid_codes(), dtype=np.uint8)
cdef const uint8_t[::1] VALID_CODES = _VALID_CODES


@cython.final
cdef class Recorder:
    """A tape under construction: structure-of-arrays buffers that grow."""
    cdef TapeView view
    cdef object _opcodes, _args, _values, _consts, _aux, _array_entries
    cdef opcode_t* op_p
    cdef index_t* arg_p
    cdef real_t* val_p
    cdef real_t* const_p
    cdef index_t* aux_p
    cdef readonly Py_ssize_t n_ops, n_consts, n_aux, first, n_inputs, n_params, n_slots
    cdef Py_ssize_t cap_ops, cap_consts, cap_aux, cap_slots
    cdef dict _const_ids
    cdef readonly list guards
    cdef bint _finished

    def __cinit__(self, inputs, params):
        cdef const real_t[::1] x = np.ascontiguousarray(inputs, np.float64).reshape(-1)
        cdef const real_t[::1] q = np.ascontiguousarray(params, np.float64).reshape(-1)
        self.n_inputs = x.shape[0]
        self.n_params = q.shape[0]
        self.first = self.n_inputs + self.n_params
        if self.first > MAX_SLOTS:
            raise WengertError("too many inputs for 32-bit slot indices")
        self.n_ops = self.n_consts = self.n_aux = 0
        self.n_slots = self.cap_slots = self.first
        self.cap_ops = self.cap_consts = self.cap_aux = 0
        self._opcodes = np.empty(0, np.uint8)
        self._args = np.empty((0, 2), np.int32)
        self._consts = np.empty(0, np.float64)
        self._aux = np.empty(0, np.int32)
        self._array_entries = np.empty(0, np.int32)
        self._values = np.empty(self.first, np.float64)
        self._values[:self.n_inputs] = x
        self._values[self.n_inputs:] = q
        self._const_ids = {}
        self.guards = []
        self._finished = False
        self._reserve_ops(256)
        self._reserve_consts(64)
        self._reserve_aux(16)

    # -- buffers -------------------------------------------------------------

    cdef int _reserve_ops(self, Py_ssize_t extra, Py_ssize_t extra_slots=-1) except -1:
        """Room for ``extra`` more operations writing ``extra_slots`` more
        slots (default: one each)."""
        cdef Py_ssize_t need = self.n_ops + extra, cap
        cdef Py_ssize_t need_slots = self.n_slots + (extra if extra_slots < 0 else extra_slots)
        if need <= self.cap_ops and need_slots <= self.cap_slots:
            return 0
        self._check_open()
        if need_slots > MAX_SLOTS:
            raise WengertError(
                f"the tape would exceed {MAX_SLOTS} slots (32-bit indices); "
                "record a smaller problem or split it")
        if need > self.cap_ops:
            cap = max(need, 2 * self.cap_ops)
            self._opcodes = _grown(self._opcodes, cap)
            self._args = _grown(self._args, cap)
            self.cap_ops = cap
        if need_slots > self.cap_slots:
            cap = min(max(need_slots, 2 * self.cap_slots - self.first), MAX_SLOTS)
            self._values = _grown(self._values, cap)
            self.cap_slots = cap
        self.op_p = <opcode_t*>cnp.PyArray_DATA(self._opcodes)
        self.arg_p = <index_t*>cnp.PyArray_DATA(self._args)
        self.val_p = <real_t*>cnp.PyArray_DATA(self._values)
        self.view.opcodes = self.op_p
        self.view.args = self.arg_p
        self.view.first = self.first
        return 0

    cdef int _check_open(self) except -1:
        if self._finished:
            raise TracingError(
                "this recording is finished: a traced value (or a comparison of traced "
                "values) escaped from the recorded function and was used afterwards; "
                "return it from the function instead")
        return 0

    cdef int _reserve_consts(self, Py_ssize_t extra) except -1:
        self._check_open()
        cdef Py_ssize_t need = self.n_consts + extra
        if need <= self.cap_consts:
            return 0
        self.cap_consts = max(need, 2 * self.cap_consts)
        self._consts = _grown(self._consts, self.cap_consts)
        self.const_p = <real_t*>cnp.PyArray_DATA(self._consts)
        self.view.consts = self.const_p
        return 0

    cdef int _reserve_aux(self, Py_ssize_t extra) except -1:
        self._check_open()
        cdef Py_ssize_t need = self.n_aux + extra
        if need <= self.cap_aux:
            return 0
        self.cap_aux = max(need, 2 * self.cap_aux)
        self._aux = _grown(self._aux, self.cap_aux)
        self.aux_p = <index_t*>cnp.PyArray_DATA(self._aux)
        self.view.aux = self.aux_p
        return 0

    # -- appending -----------------------------------------------------------

    cdef Py_ssize_t push(self, int code, Py_ssize_t a0, Py_ssize_t a1) except -1:
        """Append one operation, evaluate it, return its slot."""
        cdef Py_ssize_t i = self.n_ops, s = self.n_slots
        if i >= self.cap_ops or s >= self.cap_slots:
            self._reserve_ops(1)
        self.op_p[i] = <opcode_t>code
        self.arg_p[2 * i] = <index_t>a0
        self.arg_p[2 * i + 1] = <index_t>a1
        forward0(&self.view, self.val_p, 1, i, i + 1, s)
        self.n_ops = i + 1
        self.n_slots = s + 1
        return s

    cdef Py_ssize_t constant(self, real_t c) except -1:
        """Index of ``c`` in the constant pool (shared by equal constants)."""
        cdef Py_ssize_t k
        cdef bint shareable = not (c == 0.0 and signbit(c))   # keep -0.0 apart
        if shareable:
            found = self._const_ids.get(c)
            if found is not None:
                return found
        if self.n_consts >= self.cap_consts:
            self._reserve_consts(1)
        k = self.n_consts
        self.const_p[k] = c
        self.n_consts = k + 1
        if shareable:
            self._const_ids[c] = k
        return k

    def push_one(self, int code, Py_ssize_t a0, Py_ssize_t a1=0):
        """Append one operation; return its slot (checked like push_many)."""
        if not (0 <= code < 256 and VALID_CODES[code]) or not (-2**31 <= a0 < 2**31
                                                              and -2**31 <= a1 < 2**31):
            raise WengertError(f"not a valid operation: opcode {code}, operands {a0}, {a1}")
        if is_array_entry(code):
            raise WengertError(f"opcode {code} is an array entry: use push_array")
        cdef Py_ssize_t i = self.n_ops, s = self.n_slots
        if i >= self.cap_ops or s >= self.cap_slots:
            self._reserve_ops(1)
        self.op_p[i] = <opcode_t>code
        self.arg_p[2 * i] = <index_t>a0
        self.arg_p[2 * i + 1] = <index_t>a1
        self._check_new(i, i + 1)
        forward0(&self.view, self.val_p, 1, i, i + 1, s)
        self.n_ops = i + 1
        self.n_slots = s + 1
        return s

    cdef int _check_new(self, Py_ssize_t start, Py_ssize_t end) except -1:
        """Refuse appended entries that a sweep could not trust (they stay
        beyond n_ops, so the next append overwrites them)."""
        cdef Py_ssize_t slot = self.n_slots
        cdef Py_ssize_t bad = first_bad_operation(&self.view, &VALID_CODES[0], self.n_consts,
                                                  self.n_aux, start, end, &slot)
        if bad >= 0:
            raise WengertError(
                f"internal error: operation {bad - start} of an append has opcode "
                f"{self.op_p[bad]} or operands {self.arg_p[2 * bad]}, {self.arg_p[2 * bad + 1]} "
                "that refer to nothing recorded before it")
        return 0

    def push_many(self, int code, a0, a1=None):
        """Append ``len(a0)`` operations of one opcode with operand index
        arrays ``a0`` (and ``a1``); evaluate them; return their first slot.

        Operand indices must refer to slots (or constants) that exist before
        each new operation; anything else raises before evaluation.
        """
        cdef Py_ssize_t n = len(a0), start = self.n_ops, slot = self.n_slots
        if not (0 <= code < 256 and VALID_CODES[code]) or is_array_entry(code):
            raise WengertError(f"not a valid opcode: {code}")
        self._reserve_ops(n)
        args = self._args[start:start + n]
        args[:, 0] = a0
        args[:, 1] = 0 if a1 is None else a1
        self._opcodes[start:start + n] = code
        self._check_new(start, start + n)
        with nogil:
            forward0(&self.view, self.val_p, 1, start, start + n, slot)
        self.n_ops = start + n
        self.n_slots = slot + n
        return slot

    def push_array(self, int code, descriptor, Py_ssize_t n_slots):
        """Append one array entry (``_opcodes.ARRAY_LAYOUTS``) writing
        ``n_slots`` slots, with its side-table ``descriptor``; evaluate it;
        return its first result slot. A descriptor that refers to anything
        not recorded before it raises before evaluation."""
        if not is_array_entry(code):
            raise WengertError(f"opcode {code} is not an array entry")
        descriptor = np.ascontiguousarray(descriptor, dtype=np.int64).reshape(-1)
        if descriptor.size and (descriptor.min() < -2**31 or descriptor.max() >= 2**31):
            raise WengertError("an array entry's descriptor exceeds 32-bit indices")
        if not 1 <= n_slots <= MAX_SLOTS:
            raise WengertError(f"an array entry writes 1 to {MAX_SLOTS} slots, not {n_slots}")
        cdef Py_ssize_t d = self.n_aux, i = self.n_ops, slot = self.n_slots
        self._reserve_aux(descriptor.size)
        self._reserve_ops(1, n_slots)
        self._aux[d:d + descriptor.size] = descriptor
        self.n_aux = d + descriptor.size
        self.op_p[i] = <opcode_t>code
        self.arg_p[2 * i] = <index_t>d
        self.arg_p[2 * i + 1] = <index_t>n_slots
        try:
            self._check_new(i, i + 1)
        except WengertError:
            self.n_aux = d
            raise
        # The sweeps find array entries in this list, not by their opcodes.
        cdef Py_ssize_t k = self.view.n_arrays
        self._array_entries = _grown(self._array_entries, max(2 * k, 16)) if (
            k >= self._array_entries.shape[0]) else self._array_entries
        self._array_entries[k] = i
        self.view.arrays = <const index_t*>cnp.PyArray_DATA(self._array_entries)
        self.view.n_arrays = k + 1
        with nogil:
            forward0(&self.view, self.val_p, 1, i, i + 1, slot)
        self.n_ops = i + 1
        self.n_slots = slot + n_slots
        return slot

    def add_constants(self, values):
        """Append constants; return their pool indices (int64 array)."""
        values = np.ascontiguousarray(values, np.float64).reshape(-1)
        cdef Py_ssize_t n = values.shape[0], start = self.n_consts
        if n == 1:
            return np.array([self.constant(values[0])], dtype=np.int64)
        self._reserve_consts(n)
        self._consts[start:start + n] = values
        self.n_consts = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def constant_index(self, double c):
        return self.constant(c)

    def push_select_many(self, cond, a, b):
        """Append selects ``cond != 0 ? a : b`` elementwise; return first slot."""
        cdef Py_ssize_t n = len(cond), start_aux = self.n_aux
        self._reserve_aux(2 * n)
        aux = self._aux[start_aux:start_aux + 2 * n]
        aux[0::2] = a
        aux[1::2] = b
        self.n_aux = start_aux + 2 * n
        return self.push_many(OP_SELECT, cond, np.arange(start_aux, start_aux + 2 * n, 2))

    # -- values and guards ---------------------------------------------------

    def value(self, Py_ssize_t slot):
        if not 0 <= slot < self.n_slots:
            raise IndexError(f"slot {slot} is not recorded")
        return self.val_p[slot]

    def values_of(self, slots):
        """Recorded values of an array of slots (same shape)."""
        return self._values[:self.n_slots][slots]

    def constants_of(self, indices):
        return self._consts[:self.n_consts][indices]

    def compare(self, int code, Py_ssize_t a0, Py_ssize_t a1):
        """Outcome of a comparison opcode on recorded operands, computed by
        the kernel the guard check uses at replay."""
        self._check_open()
        cdef int role0 = operand_role(code, 0) if 0 <= code < 256 else ROLE_NONE
        cdef int role1 = operand_role(code, 1) if 0 <= code < 256 else ROLE_NONE
        if (not is_comparison(code & BASE_MASK)
                or a0 != <index_t>a0 or a1 != <index_t>a1
                or role0 == ROLE_NONE or role0 == ROLE_AUX
                or role1 == ROLE_NONE or role1 == ROLE_AUX
                or not operand_exists(role0, <index_t>a0, self.n_slots, self.n_consts, NULL, 0)
                or not operand_exists(role1, <index_t>a1, self.n_slots, self.n_consts, NULL, 0)):
            raise WengertError(f"not a comparison of recorded values: opcode {code}, "
                               f"operands {a0}, {a1}")
        cdef real_t av = operand_value(role0, <index_t>a0, self.val_p, self.const_p, 1, 0)
        cdef real_t bv = operand_value(role1, <index_t>a1, self.val_p, self.const_p, 1, 0)
        return binary_value(code & BASE_MASK, av, bv) != 0.0

    def add_guard(self, int code, Py_ssize_t a0, Py_ssize_t a1, bint expected, str where, str text):
        self.guards.append((code, a0, a1, expected, where, text))

    def arrays(self):
        """The recorded tape's arrays, trimmed; ends the recording.

        The buffers are shrunk in place (realloc, no copy of up to hundreds
        of MB) and handed over, so the recorder accepts no more operations.
        """
        self._opcodes.resize(self.n_ops, refcheck=False)
        self._args.resize((self.n_ops, 2), refcheck=False)
        self._consts.resize(self.n_consts, refcheck=False)
        self._aux.resize(self.n_aux, refcheck=False)
        result = dict(opcodes=self._opcodes, args=self._args, consts=self._consts, aux=self._aux)
        # The buffers now belong to the tape; values stay for inspection of
        # escaped traced values, and zero capacity makes every push refuse.
        self._opcodes = np.empty(0, np.uint8)
        self._args = np.empty((0, 2), np.int32)
        self._consts = np.empty(0, np.float64)
        self._aux = np.empty(0, np.int32)
        self.cap_ops = self.cap_consts = self.cap_aux = 0
        self.op_p = NULL
        self.arg_p = NULL
        self.const_p = NULL
        self.aux_p = NULL
        self.view.opcodes = NULL
        self.view.args = NULL
        self.view.consts = NULL
        self.view.aux = NULL
        self.view.arrays = NULL
        self.view.n_arrays = 0
        self._finished = True
        return result

cdef object _grown(object array, Py_ssize_t capacity):
    # In place (realloc, often without a copy): the recorder holds the only
    # reference to its buffers, and copying them cost half of a large
    # vectorised recording.
    array.resize((capacity,) + array.shape[1:], refcheck=False)
    return array


# ---- the traced scalar -------------------------------------------------------

_FLOAT_MESSAGE = (
    "a traced value cannot become a Python {what}: wengert records operations "
    "on traced values, and {call} would drop out of the recording. Use the NumPy "
    "ufuncs (np.sin, np.exp, ...) or the wg.* functions (wg.sin, ...) instead of "
    "math.*, keep arithmetic on the traced values, and build arrays with "
    "np.stack / wg.array rather than writing into a float array.")


_UNPICKLABLE = (
    "a traced value cannot be pickled: it is a slot of a recording in progress. "
    "Pickle the tape that wg.record returns instead.")


# What every traced type (scalar, array, comparison) does where Python asks
# for a number, a format or a pickle.

def refuse_round(value, ndigits=None):
    raise TracingError(_FLOAT_MESSAGE.format(what="rounded number", call="round(x)"))


def refuse_format(value, spec):
    if spec:
        raise TracingError(_FLOAT_MESSAGE.format(what="formatted number",
                                                 call=f"formatting with {spec!r}"))
    return repr(value)


def refuse_pickle(value):
    raise TracingError(_UNPICKLABLE)


cdef inline bint _is_number(object x):
    return type(x) is float or type(x) is int or isinstance(x, (float, int, np.floating, np.integer))


# Methods NumPy calls on elements of object arrays (np.log1p(obj_array)
# calls .log1p()): one per unary row's NumPy binding, generated from the table.
include "_active_methods.pxi"


@cython.final
cdef class Active(_UfuncMethods):
    """A traced scalar: one slot of the tape being recorded.

    Produced by :func:`wengert.record` for scalar inputs, by indexing a
    traced array, and by every operation on traced values. Arithmetic on it
    appends operations to the tape.
    """
    cdef readonly Recorder recorder
    cdef readonly Py_ssize_t slot

    __array_priority__ = 100

    @property
    def value(self):
        """The value at the recording point, a plain float, for inspection
        and printing only.

        It escapes the recording: ``if x.value > 0:`` records **no guard**,
        so a replay on the other side of that branch silently follows the
        recorded one. Branch on the traced value itself (``if x > 0:``,
        which records a guard) or use :func:`wengert.where`.
        """
        return self.recorder.val_p[self.slot]

    shape = ()
    ndim = 0
    size = 1

    def __repr__(self):
        return f"<traced scalar v{self.slot} = {self.recorder.val_p[self.slot]!r}>"

    # -- refusing to become a number ---------------------------------------

    def __float__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="float", call="float(x) or math.*(x)"))

    def __int__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="int", call="int(x)"))

    def __index__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="index", call="using it as an index"))

    def __complex__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="complex", call="complex(x)"))

    def __hash__(self):
        raise TracingError("traced values are unhashable: a set or dict key would need "
                           "the value, which differs at every replay")

    def __round__(self, ndigits=None): return refuse_round(self, ndigits)
    def __format__(self, spec): return refuse_format(self, spec)
    def __reduce__(self): return refuse_pickle(self)

    def __bool__(self):
        return bool(hooks["compare"](OP_NE, self, 0.0))

    # -- arithmetic ------------------------------------------------------------

    def __add__(self, other): return _binary(OP_ADD, self, other, False)
    def __radd__(self, other): return _binary(OP_ADD, self, other, True)
    def __sub__(self, other): return _binary(OP_SUB, self, other, False)
    def __rsub__(self, other): return _binary(OP_SUB, self, other, True)
    def __mul__(self, other): return _binary(OP_MUL, self, other, False)
    def __rmul__(self, other): return _binary(OP_MUL, self, other, True)
    def __truediv__(self, other): return _binary(OP_DIV, self, other, False)
    def __rtruediv__(self, other): return _binary(OP_DIV, self, other, True)

    def __pow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        if _is_number(other):
            if other == 2:
                return _unary(OP_SQUARE, self)
            if other == 1:
                return self
            if other == -1:
                return _unary(OP_RECIPROCAL, self)
        return _binary(OP_POW, self, other, False)

    def __rpow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        return _binary(OP_POW, self, other, True)

    def __neg__(self): return _unary(OP_NEG, self)
    def __pos__(self): return self
    def __abs__(self): return _unary(OP_ABS, self)

    # -- comparisons record nothing until used (see tracing.Comparison) ----

    def __lt__(self, other): return hooks["compare"](OP_LT, self, other)
    def __le__(self, other): return hooks["compare"](OP_LE, self, other)
    def __gt__(self, other): return hooks["compare"](OP_GT, self, other)
    def __ge__(self, other): return hooks["compare"](OP_GE, self, other)
    def __eq__(self, other): return hooks["compare"](OP_EQ, self, other)
    def __ne__(self, other): return hooks["compare"](OP_NE, self, other)

    # -- NumPy protocols -------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return hooks["ufunc"](ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return hooks["function"](func, types, args, kwargs)


    def conjugate(self): return self
    @property
    def real(self): return self
    def item(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="float", call="x.item()"))


cdef object _unary(int base, Active a):
    cdef Recorder rec = a.recorder
    cdef Py_ssize_t slot = rec.push(base, a.slot, 0)
    return make_active(rec, slot)


cdef object _binary(int base, Active x, object other, bint reflected):
    """``x op other`` (or ``other op x`` when reflected) for a scalar other."""
    cdef Recorder rec = x.recorder
    cdef Active y
    cdef Py_ssize_t slot, c
    if type(other) is Active:
        y = <Active>other
        if y.recorder is not rec:
            raise TracingError(
                "a traced value from another recording was mixed into this one; "
                "pass it in as an argument instead of capturing it")
        if reflected:
            slot = rec.push((KIND_VV << KIND_SHIFT) | base, y.slot, x.slot)
        else:
            slot = rec.push((KIND_VV << KIND_SHIFT) | base, x.slot, y.slot)
        return make_active(rec, slot)
    if _is_number(other):
        c = rec.constant(<double>other)
        if reflected:
            slot = rec.push((KIND_CV << KIND_SHIFT) | base, c, x.slot)
        else:
            slot = rec.push((KIND_VC << KIND_SHIFT) | base, x.slot, c)
        return make_active(rec, slot)
    return NotImplemented


cpdef Active make_active(Recorder rec, Py_ssize_t slot):
    if not 0 <= slot < rec.n_slots:
        raise WengertError(f"internal error: slot {slot} is not recorded")
    cdef Active a = Active.__new__(Active)
    a.recorder = rec
    a.slot = slot
    return a
