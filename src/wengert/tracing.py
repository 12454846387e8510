"""The traced types: traced arrays, comparisons and guards, and their operands.

A traced array is a NumPy integer array of slot indices plus the recorder it
belongs to, so indexing, slicing, reshaping, transposing and concatenating
are NumPy operations on the index array and cost no tape operations. An
elementwise operation on n elements appends one array entry (n >= 8,
``_array_recording``) or n scalar entries in one vectorised call. Traced
scalars are the Cython type :class:`Active`.

What NumPy's functions and ufuncs do on traced values (reductions, products,
``where``, the ufunc maps, ``__array_function__``) lives in
:mod:`wengert._numpy_api`; running a function on traced values lives in
:mod:`wengert.recording`.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from wengert import _array_recording
from wengert import _opcodes as ops
from wengert._arguments import real_array
from wengert._errors import (ArgumentError, ArgumentTypeError, AxisError, IndexingError,
                             ShapeError, TracingError, WengertError)
from wengert._opcodes import Kind, Role
from wengert._recorder import (_FLOAT_MESSAGE, Active, make_active, refuse_format,
                               refuse_pickle, refuse_round)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_CODE = {op.name: op.base for op in ops.OPERATIONS}
_CONST = _CODE["const"]


# ---- operands ---------------------------------------------------------------
#
# Inside this module every argument is turned into an operand: either slot
# indices (``is_slots`` True) or constant values, each a NumPy array.

class _Operand:
    __slots__ = ("is_slots", "data")

    def __init__(self, is_slots, data):
        self.is_slots = is_slots
        self.data = data

    @property
    def shape(self):
        return self.data.shape


# NumPy arrays have at most 64 dimensions; deeper lists are no array.
_MAX_NESTING = 64


def _recorder_of(values, depth=0):
    """The one recorder behind the traced values among ``values``."""
    found = None
    for v in values:
        rec = None
        if isinstance(v, (Active, TracedArray, Comparison)):
            rec = v.recorder
        elif isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.dtype == object):
            if depth > _MAX_NESTING:
                raise ShapeError(f"values nested more than {_MAX_NESTING} lists deep (a list "
                                 "that contains itself?) cannot be an array")
            rec = _recorder_of(list(np.asarray(v, dtype=object).ravel()) if isinstance(v, np.ndarray)
                               else v, depth + 1)
        if rec is not None:
            if found is not None and rec is not found:
                raise TracingError(
                    "traced values from two different recordings were mixed; pass "
                    "values into the recorded function as arguments instead of "
                    "capturing them from another recording")
            found = rec
    return found


def _same_recording(rec, x):
    """Refuse a traced value of another recording: its slot numbers mean
    nothing on this tape."""
    if x.recorder is not rec:
        raise TracingError(
            "a traced value from another recording was used in this one (it escaped "
            "an earlier wg.record or an outer recording: stored in a list, a closure "
            "or a global). Pass values into the recorded function as arguments, and "
            "return the traced values it computes")


def _operand(rec, x):
    """Turn a traced value, a comparison or a constant into an operand."""
    if isinstance(x, TracedArray):
        _same_recording(rec, x)
        return _Operand(True, x.slots)
    if isinstance(x, Active):
        _same_recording(rec, x)
        return _Operand(True, np.array(x.slot, dtype=np.intp))
    if isinstance(x, Comparison):
        _same_recording(rec, x)
        return _Operand(True, x.indicator_slots())
    if (isinstance(x, np.ndarray) and x.dtype == object) or (
            isinstance(x, (list, tuple)) and _recorder_of(x) is not None):
        traced = asarray(x, rec)
        if isinstance(traced, (TracedArray, Active)):
            return _Operand(True, _raw(traced))
        x = traced
    return _Operand(False, _constant(x))


def _constant(x):
    """A constant operand as float64, refused clearly when it is no number."""
    try:
        return real_array(x, "the operand", allow_bool=True)
    except WengertError as exc:
        raise TracingError(
            f"cannot use a {type(x).__name__} as an operand of a traced operation ({exc}); "
            "pass floats, NumPy arrays or traced values") from None


def _slots_of(rec, operand):
    """Slot indices of an operand, materialising constants with const ops."""
    if operand.is_slots:
        return operand.data
    values = operand.data
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.size == 0:
        return np.empty(values.shape, dtype=np.intp)
    # A uniform constant (np.zeros(n), a broadcast scalar) needs one const
    # entry shared by every element, not n of them.
    # Compared as bit patterns, so -0.0 and 0.0 (and NaNs) stay apart.
    bits = flat.view(np.uint64)
    if flat.size > 1 and np.all(bits == bits[0]):
        index = rec.constant_index(float(flat[0]))
        first = rec.push_one(_CONST, index)
        return np.full(values.shape, first, dtype=np.intp)
    indices = rec.add_constants(flat)
    first = rec.push_many(_CONST, indices)
    return np.arange(first, first + flat.size, dtype=np.intp).reshape(values.shape)


def wrap(rec, slots):
    """A traced value over ``slots``: an Active for 0-d, else a TracedArray."""
    slots = np.asarray(slots)
    if slots.ndim == 0:
        return make_active(rec, int(slots))
    return TracedArray(rec, slots)


def _constant_indices(rec, values, shape):
    """Pool indices of ``values`` broadcast to ``shape``: each value is
    added once (a broadcast row stays one row in the pool)."""
    if values.size == 1:
        return np.full(shape, rec.constant_index(float(values.reshape(-1)[0])), dtype=np.intp)
    indices = rec.add_constants(np.ascontiguousarray(values).reshape(-1)).reshape(values.shape)
    return np.broadcast_to(indices, shape)


def apply_unary(name, x, rec=None):
    rec = rec or _recorder_of([x])
    operand = _operand(rec, x)
    if not operand.is_slots:
        return ops.BY_NAME[name].reference(operand.data)
    slots = operand.data
    if slots.ndim == 0:
        return make_active(rec, rec.push_one(_CODE[name], int(slots)))
    if _array_recording.enabled(slots.size):
        return TracedArray(rec, _array_recording.record_map(rec, _CODE[name], [slots],
                                                            slots.shape))
    flat = slots.reshape(-1)
    first = rec.push_many(_CODE[name], flat)
    return TracedArray(rec, np.arange(first, first + flat.size, dtype=np.intp).reshape(slots.shape))


def _binary_operands(rec, a, b):
    """Broadcast operands; returns (kind, a_indices, b_indices, shape)."""
    A = _operand(rec, a)
    B = _operand(rec, b)
    try:
        shape = np.broadcast_shapes(A.shape, B.shape)
    except (ValueError, RuntimeError) as exc:
        raise ShapeError(f"operands could not be broadcast together with shapes "
                         f"{A.shape} {B.shape}") from exc
    if A.is_slots and B.is_slots:
        return Kind.VV, np.broadcast_to(A.data, shape), np.broadcast_to(B.data, shape), shape
    if A.is_slots:
        return Kind.VC, np.broadcast_to(A.data, shape), _constant_indices(rec, B.data, shape), shape
    if B.is_slots:
        return Kind.CV, _constant_indices(rec, A.data, shape), np.broadcast_to(B.data, shape), shape
    return None, A.data, B.data, shape


def apply_binary(name, a, b, rec=None):
    rec = rec or _recorder_of([a, b])
    kind, ia, ib, shape = _binary_operands(rec, a, b)
    if kind is None:
        return ops.BY_NAME[name].reference(ia, ib)
    return apply_binary_indices(rec, name, kind, ia, ib, shape)


def power(a, b):
    """``a ** b`` with the cheap special cases for constant exponents."""
    if isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool):
        if b == 2:
            return apply_unary("square", a)
        if b == 1:
            return _fresh(a)
        if b == -1:
            return apply_unary("reciprocal", a)
        if b == 0.5:
            return apply_unary("sqrt", a)
    return apply_binary("pow", a, b)


# ---- comparisons and guards -------------------------------------------------

def _refuse_traced_index(index):
    if isinstance(index, (Active, TracedArray, Comparison)):
        raise TracingError(
            "a traced value cannot be used as an index: the recorded tape would "
            "not know which element to read at another point; use wg.where")


def _check_single(size):
    """``bool()`` of a traced array needs one element, as in NumPy."""
    if size != 1:
        raise ShapeError(
            "The truth value of an array with more than one element is ambiguous. "
            "Use a.any() or a.all()")


def _user_location():
    """``file:line`` of the innermost frame outside this package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def _truth_method(which):
    """The ``all``/``any`` method of conditions and traced arrays."""
    def method(self, axis=None, out=None, keepdims=False, *, where=True):
        return _numpy_api.all_any(which, self, axis, out, keepdims, where)
    method.__name__ = method.__qualname__ = which
    method.__doc__ = (f"``np.{which}`` of the condition (of a traced array: of ``!= 0``) "
                      "along ``axis``: a condition whose ``bool`` records one guard.")
    return method


class Comparison:
    """The result of comparing traced values (``x > 0``).

    Nothing is recorded until it is used. Converting it to ``bool`` (an
    ``if``, ``while``, ``and``/``or``) records a *guard*: a replay where the
    outcome differs raises :class:`wengert.BranchChangedError`. Passing it to
    :func:`wengert.where` records a select instead, valid everywhere; using
    it in arithmetic records a 0/1 indicator with zero derivative.
    ``c.all()`` and ``c.any()`` (``np.all(c)``, ``np.any(c)``) give a
    condition of the reduced shape whose ``bool`` records one guard.

    ``label``, when given, is the condition in the user's terms
    (``all(x > 0, axis=1)``), used for guard texts instead of the operands.
    """

    __array_priority__ = 100
    # Whether indicator_slots() hold only 0.0 and 1.0 (a comparison's do).
    _zero_one = True

    def __init__(self, rec, name, kind, a, b, shape, label=None):
        self.recorder = rec
        self.name = name
        self.kind = kind
        self._a = a
        self._b = b
        self.shape = shape
        self._indicator = None
        self._label = label
        # Where each element sits in the labelled condition, to name the
        # element a guard is on: `all(x > 0, axis=1)[2]`.
        self._positions = None if label is None else np.arange(math.prod(shape)).reshape(shape)
        self._label_shape = shape

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape))

    def __len__(self):
        if not self.shape:
            raise ArgumentTypeError("len() of a 0-d comparison")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index):
        """A part of the comparison (``c[0]``, ``c[1:]``), still unrecorded."""
        _refuse_traced_index(index)
        try:
            a = np.broadcast_to(self._a, self.shape)[index]
            b = np.broadcast_to(self._b, self.shape)[index]
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, "indexing a comparison") from None
        part = Comparison(self.recorder, self.name, self.kind, a, b, a.shape)
        if self._indicator is not None:
            part._indicator = self._indicator[index]
        self._label_part(part, index)
        return part

    def _label_part(self, part, index):
        """Give ``part`` (``self[index]``) this condition's label."""
        if self._label is not None:
            part._label = self._label
            part._positions = self._positions[index]
            part._label_shape = self._label_shape

    def indicator_slots(self):
        """Slots holding 1.0 where the comparison holds, else 0.0."""
        if self._indicator is None:
            self._indicator = _raw(
                apply_binary_indices(self.recorder, self.name, self.kind, self._a, self._b, self.shape))
        return self._indicator

    def __bool__(self):
        _check_single(self.size)
        a0 = int(np.asarray(self._a).reshape(-1)[0])
        a1 = int(np.asarray(self._b).reshape(-1)[0])
        code = ops.code_of(self.name, self.kind)
        outcome = self.recorder.compare(code, a0, a1)
        self.recorder.add_guard(code, a0, a1, outcome, _user_location(), self._text())
        return outcome

    def _text(self):
        """The whole condition in the user's terms: ``x > 0``,
        ``x[0:3] <= p[0]``, ``all(x > 0, axis=1)[2]``."""
        if self._label is not None:
            part = _part_text(self._positions, self._label_shape)
            # An operator's label (`~(...)`, `(...) & (...)`) is bracketed before an index.
            return (f"({self._label})" if part and self._label.startswith(("~", "("))
                    else self._label) + part
        roles = ops.ROLES[ops.code_of(self.name, self.kind)]
        return (f"{_operands_text(self.recorder, self._a, roles[0])} "
                f"{ops.COMPARISON_SYMBOL[self.name]} "
                f"{_operands_text(self.recorder, self._b, roles[1])}")

    all = _truth_method("all")
    any = _truth_method("any")

    def __invert__(self):
        # Under NaN, not(a < b) differs from a >= b; an indicator keeps IEEE meaning.
        return _IndicatorCondition(self.recorder, apply_binary("sub", 1.0, self._as_value()),
                                   f"~({self._text()})", self._zero_one)

    def _combined(self, name, symbol, other):
        """``self & other`` and the like: ``name`` of the two indicators."""
        value = apply_binary(name, self._as_value(), _condition_value(other))
        label = (f"({self._text()}) {symbol} ({other._text()})" if isinstance(other, Comparison)
                 else None)
        # Two 0/1 operands give 0/1; another operand (a number, a traced
        # value) can give any value, whose truth is != 0.
        zero_one = self._zero_one and (other._zero_one if isinstance(other, Comparison)
                                       else _is_boolean(other))
        return _IndicatorCondition(self.recorder, value, label, zero_one)

    def __and__(self, other): return self._combined("mul", "&", other)
    def __or__(self, other): return self._combined("maximum", "|", other)
    def __xor__(self, other): return self._combined("ne", "^", other)

    __rand__ = __and__
    __ror__ = __or__
    __rxor__ = __xor__

    def _as_value(self):
        return wrap(self.recorder, self.indicator_slots())

    # Python code compares conditions with booleans: `(x > 0) == True`,
    # `c != False`, `c in (True,)`. Each gives the condition the bool stands
    # for, so an `if` on it records the guard it means; without these,
    # object identity would answer and silently pick a branch.
    def __eq__(self, other):
        if not _is_condition_operand(other):
            return NotImplemented
        return compare("eq", self._as_value(), _condition_value(other))

    def __ne__(self, other):
        if not _is_condition_operand(other):
            return NotImplemented
        return compare("ne", self._as_value(), _condition_value(other))

    __hash__ = None

    def __float__(self):
        raise TracingError(_FLOAT_MESSAGE.format(
            what="float", call="float(comparison)"))

    def __int__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="int", call="int(comparison)"))

    def __index__(self):
        raise TracingError(_FLOAT_MESSAGE.format(
            what="index", call="using a comparison as an index"))

    __round__ = refuse_round
    __format__ = refuse_format
    __reduce__ = refuse_pickle

    # Arithmetic with a comparison uses its 0/1 indicator (no guard), as
    # NumPy's arithmetic on booleans does: sum(c for c in ...) counts.
    def __mul__(self, other): return apply_binary("mul", self._as_value(), other)
    def __rmul__(self, other): return apply_binary("mul", other, self._as_value())
    def __add__(self, other): return apply_binary("add", self._as_value(), other)
    def __radd__(self, other): return apply_binary("add", other, self._as_value())
    def __sub__(self, other): return apply_binary("sub", self._as_value(), other)
    def __rsub__(self, other): return apply_binary("sub", other, self._as_value())
    def __truediv__(self, other): return apply_binary("div", self._as_value(), other)
    def __rtruediv__(self, other): return apply_binary("div", other, self._as_value())
    def __neg__(self): return apply_unary("neg", self._as_value())
    def __pos__(self): return _fresh(self._as_value())

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _numpy_api._array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _numpy_api._array_function(func, types, args, kwargs)

    def __repr__(self):
        return f"<traced comparison {ops.COMPARISON_SYMBOL[self.name]} shape={self.shape}>"


class _IndicatorCondition(Comparison):
    """A condition already held as indicator slots (from ~, &, |), true
    where != 0: 0/1 values unless an operand was not a condition or bool."""

    def __init__(self, rec, value, label=None, zero_one=True):
        slots = _raw(value)
        super().__init__(rec, "ne", Kind.VC, slots, None, slots.shape, label)
        self._indicator = slots
        self._zero_one = zero_one

    def __getitem__(self, index):
        _refuse_traced_index(index)
        try:
            part = self._indicator[index]
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, "indexing a comparison") from None
        result = _IndicatorCondition(self.recorder, wrap(self.recorder, part),
                                     zero_one=self._zero_one)
        self._label_part(result, index)
        return result

    def _text(self):
        if self._label is not None:
            return super()._text()
        return f"{_operands_text(self.recorder, self._indicator, Role.SLOT)} != 0"

    def __bool__(self):
        _check_single(self.size)
        slot = int(self._indicator.reshape(-1)[0])
        zero = self.recorder.constant_index(0.0)
        code = ops.code_of("ne", Kind.VC)
        outcome = self.recorder.compare(code, slot, zero)
        self.recorder.add_guard(code, slot, zero, outcome, _user_location(), self._text())
        return outcome


def _condition_value(c):
    if isinstance(c, Comparison):
        return c._as_value()
    return c


def _is_boolean(x):
    """Whether ``x`` is a bool or an array of bools (0/1 as an operand)."""
    return isinstance(x, (bool, np.bool_)) or (isinstance(x, np.ndarray) and x.dtype == np.bool_)


def _is_condition_operand(x):
    """What a condition may be compared with: booleans, numbers, other
    conditions, traced values and arrays of them (as NumPy compares bools)."""
    return isinstance(x, (bool, int, float, np.bool_, np.number, np.ndarray,
                          Comparison, Active, TracedArray))


def apply_binary_indices(rec, name, kind, ia, ib, shape):
    """Record ``name`` of kind ``kind`` on operand indices ``ia``, ``ib``
    already broadcast to ``shape`` (as :func:`_binary_operands` returns them)."""
    code = ops.code_of(name, kind)
    if shape == ():
        return make_active(rec, rec.push_one(code, int(ia), int(ib)))
    if _array_recording.enabled(math.prod(shape)):
        return TracedArray(rec, _array_recording.record_map(rec, code, [ia, ib], shape))
    ia = np.ascontiguousarray(ia).reshape(-1)
    ib = np.ascontiguousarray(ib).reshape(-1)
    first = rec.push_many(code, ia, ib)
    return TracedArray(rec, np.arange(first, first + ia.size, dtype=np.intp).reshape(shape))


def _operand_text(rec, index, role):
    """One operand as guard texts name it: ``x[0]``, ``p[1]``, ``v[3]``, ``0.5``."""
    index = int(index)
    if role == Role.CONST:
        return f"{float(rec.constants_of(index)):g}"
    if index < rec.n_inputs:
        return f"x[{index}]" if rec.n_inputs > 1 else "x"
    if index < rec.first:
        return f"p[{index - rec.n_inputs}]"
    return f"v[{index - rec.first + 1}]"


def _operands_text(rec, indices, role):
    """An array operand as guard texts name it: one name where every
    element is the same (``0``, ``p[0]``), ``x`` for all of the inputs, a
    range for consecutive slots (``x[2:10]``, ``v[5:1005]``, as the listing
    names an array entry), else the first elements (``[x[0], x[3], ...]``)."""
    flat = np.asarray(indices).reshape(-1)
    if flat.size == 0:
        return "[]"
    if role == Role.CONST:
        values = rec.constants_of(flat)
        if np.all(values.view(np.uint64) == values[:1].view(np.uint64)):
            return f"{float(values[0]):g}"
        names = [f"{float(v):g}" for v in values[:3]]
    else:
        first, last = int(flat[0]), int(flat[-1])
        if np.all(flat == first):
            return _operand_text(rec, first, role)
        if np.all(np.diff(flat) == 1):
            if last < rec.n_inputs:
                return "x" if last - first + 1 == rec.n_inputs else f"x[{first}:{last + 1}]"
            if rec.n_inputs <= first and last < rec.first:
                return f"p[{first - rec.n_inputs}:{last + 1 - rec.n_inputs}]"
            if rec.first <= first:
                return f"v[{first - rec.first + 1}:{last - rec.first + 2}]"
        names = [_operand_text(rec, i, role) for i in flat[:3]]
    return "[" + ", ".join(names) + (", ...]" if flat.size > 3 else "]")


def _part_text(positions, shape):
    """Which part of a labelled condition of ``shape`` ``positions`` are:
    nothing for the whole, ``[2]`` or ``[1, 0]`` for one element, else ``[...]``."""
    flat = positions.reshape(-1)
    if flat.size == math.prod(shape) and np.all(flat == np.arange(flat.size)):
        return ""
    if flat.size == 1:
        return "[" + ", ".join(str(int(i)) for i in np.unravel_index(int(flat[0]), shape)) + "]"
    return "[...]"


_COMPARE_NAME = {_CODE[n]: n for n in ops.COMPARISONS}


def compare(name, a, b):
    """Build a :class:`Comparison` (records nothing yet)."""
    if isinstance(name, int):
        name = _COMPARE_NAME[name]
    rec = _recorder_of([a, b])
    kind, ia, ib, shape = _binary_operands(rec, a, b)
    if kind is None:
        return ops.BY_NAME[name].reference(ia, ib).astype(bool)
    return Comparison(rec, name, kind, ia, ib, shape)


# ---- traced arrays -----------------------------------------------------------

class TracedArray:
    """A traced array: slot indices (an integer ndarray) and their recorder.

    Supports indexing, slicing, assignment, reshape, transpose, arithmetic
    operators, comparisons, NumPy ufuncs and the common array functions.
    """

    __array_priority__ = 100

    def __init__(self, rec, slots):
        self.recorder = rec
        self.slots = slots

    # -- array metadata -------------------------------------------------------
    shape = property(lambda self: self.slots.shape)
    ndim = property(lambda self: self.slots.ndim)
    size = property(lambda self: self.slots.size)
    dtype = np.dtype(np.float64)

    def __len__(self):
        return len(self.slots)

    def __iter__(self):
        for i in range(len(self.slots)):
            yield self[i]

    def __repr__(self):
        return f"<traced array shape={self.shape}>"

    def slots_array(self):
        return self.slots

    @property
    def value(self):
        """Values at the recording point, a float array, for inspection and
        printing only: branching on them (``if x.value[0] > 0:``) records
        **no guard**, so a replay where that branch flips silently follows
        the recorded one. Branch on the traced value (``if x[0] > 0:``) or use
        :func:`wengert.where`."""
        return self.recorder.values_of(self.slots)

    # -- indexing costs no tape operations -------------------------------------

    def __getitem__(self, index):
        if type(index) is int:
            # The scalar-loop path (x[i]): as few steps as possible.
            try:
                slot = self.slots[index]
            except IndexError as exc:
                raise _library_error(exc, "indexing a traced array") from None
            if self.slots.ndim == 1:
                return make_active(self.recorder, slot)
            return TracedArray(self.recorder, slot)
        _refuse_traced_index(index)
        try:
            slots = self.slots[index]
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, "indexing a traced array") from None
        return wrap(self.recorder, slots)

    def __setitem__(self, index, value):
        rec = self.recorder
        new = _slots_of(rec, _operand(rec, value))
        try:
            self.slots[index] = new
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, "assigning into a traced array") from None

    # -- shape manipulation (NumPy's rules and errors, applied to the slots) ----

    def _moved(self, method, *args, **kwargs):
        try:
            return wrap(self.recorder, getattr(self.slots, method)(*args, **kwargs))
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, f"{method} of a traced array") from None

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self._moved("reshape", shape, order=order)

    def ravel(self, order="C"):
        return self._moved("ravel", order)

    def flatten(self, order="C"):
        return self._moved("flatten", order)

    def transpose(self, *axes):
        return self._moved("transpose", *axes)

    T = property(lambda self: self.transpose())

    def squeeze(self, axis=None):
        return self._moved("squeeze", axis)

    def copy(self):
        return TracedArray(self.recorder, self.slots.copy())

    def astype(self, dtype, copy=True):
        try:
            dtype = np.dtype(dtype)
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, "astype of a traced array") from None
        if dtype != np.float64:
            raise TracingError(f"a traced array cannot be converted to {dtype}: wengert "
                               "records float64 values only")
        return self.copy() if copy else self

    def item(self, *args):
        raise TracingError("a traced value cannot become a Python float: item() is "
                           "not available while recording")

    def tolist(self):
        return [x.tolist() if isinstance(x, TracedArray) else x for x in self]

    # -- reductions and products -------------------------------------------------

    def sum(self, axis=None, keepdims=False):
        return _numpy_api.reduce("add", self, axis, keepdims)

    def prod(self, axis=None, keepdims=False):
        return _numpy_api.reduce("mul", self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _numpy_api.mean(self, axis, keepdims)

    def var(self, axis=None, ddof=0, keepdims=False):
        return _numpy_api.var(self, axis, ddof, keepdims)

    def std(self, axis=None, ddof=0, keepdims=False):
        return _numpy_api.std(self, axis, ddof, keepdims)

    all = _truth_method("all")
    any = _truth_method("any")

    def max(self, axis=None, keepdims=False):
        return _numpy_api.reduce("maximum", self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _numpy_api.reduce("minimum", self, axis, keepdims)

    def dot(self, other):
        return _numpy_api.dot(self, other)

    def clip(self, a_min=None, a_max=None):
        return _numpy_api.clip(self, a_min, a_max)

    # -- operators --------------------------------------------------------------

    def __add__(self, other): return apply_binary("add", self, other)
    def __radd__(self, other): return apply_binary("add", other, self)
    def __sub__(self, other): return apply_binary("sub", self, other)
    def __rsub__(self, other): return apply_binary("sub", other, self)
    def __mul__(self, other): return apply_binary("mul", self, other)
    def __rmul__(self, other): return apply_binary("mul", other, self)
    def __truediv__(self, other): return apply_binary("div", self, other)
    def __rtruediv__(self, other): return apply_binary("div", other, self)
    def __pow__(self, other): return power(self, other)
    def __rpow__(self, other): return apply_binary("pow", other, self)
    def __matmul__(self, other): return _numpy_api.matmul(self, other)
    def __rmatmul__(self, other): return _numpy_api.matmul(other, self)
    def __neg__(self): return apply_unary("neg", self)
    def __pos__(self): return self.copy()
    def __abs__(self): return apply_unary("abs", self)

    def _inplace(self, result):
        self.slots[...] = _slots_of(self.recorder, _operand(self.recorder, result))
        return self

    def __iadd__(self, other): return self._inplace(self + other)
    def __isub__(self, other): return self._inplace(self - other)
    def __imul__(self, other): return self._inplace(self * other)
    def __itruediv__(self, other): return self._inplace(self / other)
    def __ipow__(self, other): return self._inplace(self ** other)

    def __lt__(self, other): return compare("lt", self, other)
    def __le__(self, other): return compare("le", self, other)
    def __gt__(self, other): return compare("gt", self, other)
    def __ge__(self, other): return compare("ge", self, other)
    def __eq__(self, other): return compare("eq", self, other)
    def __ne__(self, other): return compare("ne", self, other)
    __hash__ = None

    def __bool__(self):
        _check_single(self.size)
        return bool(compare("ne", self, 0.0))

    def __float__(self):
        raise TracingError(_FLOAT_MESSAGE.format(what="float", call="float(x) or math.*(x)"))

    __int__ = __float__
    __index__ = __float__
    __round__ = refuse_round
    __format__ = refuse_format
    __reduce__ = refuse_pickle

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _numpy_api._array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _numpy_api._array_function(func, types, args, kwargs)


def asarray(obj, rec=None):
    """A traced array (or scalar) from traced values, constants, nested lists
    and object arrays of them. Constants become constant tape entries."""
    if isinstance(obj, (TracedArray, Active)):
        if rec is not None:
            _same_recording(rec, obj)
        return obj
    if rec is None:
        rec = _recorder_of([obj])
    if rec is None:
        return np.asarray(obj, dtype=np.float64)
    if isinstance(obj, Comparison):
        return wrap(rec, obj.indicator_slots())
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0:
        return asarray(obj[()], rec)
    if isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.dtype == object):
        parts = [_slots_of(rec, _operand(rec, asarray(item, rec))) for item in obj]
        if not parts:
            return np.zeros(0)
        try:
            return wrap(rec, np.stack([np.asarray(p) for p in parts]))
        except ValueError as exc:
            raise ShapeError(f"a nested list of traced values must be a regular array, as "
                             f"np.array needs: {exc}") from None
    return wrap(rec, _slots_of(rec, _operand(rec, obj)))


# ---- helpers shared with the NumPy API ------------------------------------------

def _raw(x):
    if isinstance(x, TracedArray):
        return x.slots
    if isinstance(x, Active):
        return np.asarray(x.slot)
    return np.asarray(x)


def _fresh(x):
    """``x`` as a new array, for the identity shortcuts (``x ** 1``, ``+x``)
    where NumPy answers with a new array: an in-place update of the result
    must leave ``x`` alone, as it does in NumPy. Traced scalars and Python
    numbers are immutable and need no copy."""
    if isinstance(x, TracedArray):
        return x.copy()
    if isinstance(x, np.ndarray):
        return x.astype(np.float64, copy=True)
    return x


# What NumPy raises for bad arguments (RuntimeError: more dimensions than
# it supports; OverflowError: an axis or count beyond a C integer).
_NUMPY_ERRORS = (IndexError, ValueError, TypeError, OverflowError, RuntimeError, RecursionError)


def _library_error(exc, what):
    """The wengert exception for a NumPy error met on traced values (NumPy's
    class kept as a base, so ``except IndexError`` and the like still
    work); wengert's own errors pass through unchanged."""
    if isinstance(exc, WengertError):
        return exc
    if isinstance(exc, np.exceptions.AxisError):
        return AxisError(f"{what}: {exc}")
    if isinstance(exc, IndexError):
        return IndexingError(f"{what}: {exc}")
    if isinstance(exc, (ValueError, RuntimeError, RecursionError)):
        return ShapeError(f"{what}: {exc}")
    if isinstance(exc, OverflowError):
        return ArgumentError(f"{what}: {exc}")
    return ArgumentTypeError(f"{what}: {exc}")


# The NumPy API on traced values, imported last: it builds on everything
# above, and the traced types call it through this module reference (bound
# late, so importing either module first works). Importing it registers the
# hooks the compiled traced scalars call.
from wengert import _numpy_api  # noqa: E402
