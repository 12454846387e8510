"""NumPy's functions and ufuncs on traced values.

Reductions (pairwise trees), ``matmul``/``dot``, ``where``, ``clip``, the
ufunc maps derived from the operation table's bindings, and the handlers
``__array_function__`` dispatches to (``_HANDLED``). Importing this module
registers the hooks through which the compiled traced scalars reach
:func:`_array_ufunc`, :func:`_array_function` and
:func:`wengert.tracing.compare`. The traced types themselves live in
:mod:`wengert.tracing`.
"""
from __future__ import annotations

import functools
import math
import sys

import numpy as np

from wengert import _array_recording
from wengert import _opcodes as ops
from wengert._arguments import real_array
from wengert._errors import (ArgumentError, ArgumentTypeError, AxisError, ShapeError,
                             TracingError)
from wengert._opcodes import Kind
from wengert._recorder import Active, hooks
from wengert.tracing import (_NUMPY_ERRORS, Comparison, TracedArray, _constant,
                             _constant_indices, _fresh,
                             _library_error, _Operand, _operand, _raw, _recorder_of,
                             _slots_of, apply_binary, apply_unary, asarray, compare, power,
                             wrap)


# ---- reductions ----------------------------------------------------------------

def reduce(name, x, axis=None, keepdims=False):
    """Reduce along ``axis`` by a pairwise tree of ``name`` operations.

    A tree has the same n-1 operations as a running sum, but rounding errors
    grow like log n (as in NumPy's pairwise summation) and the replay has no
    loop-carried dependency. A large sum is one sum entry; the levels of
    any other large tree (max, min, prod) are one map entry each.
    """
    rec = _recorder_of([x])
    if rec is None:
        return {"add": np.sum, "mul": np.prod, "maximum": np.max, "minimum": np.min}[name](
            x, axis=axis, keepdims=keepdims)
    slots = np.asarray(asarray(x, rec).slots_array() if not isinstance(x, Active) else x.slot)
    axes = normalize_axes(axis, slots.ndim)
    kept = [a for a in range(slots.ndim) if a not in axes]
    out_shape = tuple(slots.shape[a] for a in kept)
    length = int(np.prod([slots.shape[a] for a in axes])) if axes else 1
    rows = np.transpose(slots, kept + list(axes)).reshape(int(np.prod(out_shape)), length)
    if length == 0:
        if name not in ("add", "mul"):
            raise ShapeError(f"zero-size array to reduction operation {name} which has no identity")
        result = _slots_of(rec, _Operand(False, np.full(out_shape, 0.0 if name == "add" else 1.0)))
    elif name == "add" and length > 1 and _array_recording.enabled(rows.size):
        result = _array_recording.record_sum(rec, rows).reshape(out_shape)
    else:
        code = ops.code_of(name, Kind.VV)
        while rows.shape[1] > 1:
            half = rows.shape[1] // 2
            left = rows[:, 0:2 * half:2].reshape(-1)
            right = rows[:, 1:2 * half:2].reshape(-1)
            if _array_recording.enabled(left.size):
                # One map entry per level of the tree: log2(length) entries.
                paired = _array_recording.record_map(rec, code, [left, right], (left.size,))
            else:
                first = rec.push_many(code, left, right)
                paired = np.arange(first, first + left.size, dtype=np.intp)
            paired = paired.reshape(rows.shape[0], half)
            if rows.shape[1] % 2:
                paired = np.concatenate([paired, rows[:, -1:]], axis=1)
            rows = paired
        # A copy: where the reduced length is 1 the rows are a view of x.
        result = rows.reshape(out_shape).copy()
    if _flag(keepdims, "keepdims"):
        result = np.expand_dims(result, axes)
    return wrap(rec, result)


def all_any(which, a, axis=None, out=None, keepdims=False, where=True):
    """``np.all`` (``which == "all"``) or ``np.any`` of a condition or of a
    traced array's truth (``!= 0``, so NaN is true), along ``axis``.

    A condition of the reduced shape, unrecorded until used: over each
    reduced row the 0/1 indicator of the condition (one map entry) is
    counted (one sum entry), and the result is ``count == n`` (all) or
    ``count > 0`` (any), so ``bool()`` of it records one guard, however
    many elements the row has. Counts of 0/1 values are exact in float64.
    Where a row is empty the answer is NumPy's (all True, any False), a
    constant with no guard.
    """
    if out is not None:
        raise TracingError(
            f"np.{which}(..., out=) is not supported on traced values: a condition "
            "cannot be stored in an array; use the condition it returns")
    if not (isinstance(where, (bool, np.bool_)) and where):
        raise TracingError(f"np.{which}(..., where=) is not supported on traced values")
    rec = _recorder_of([a])
    if rec is None:
        return getattr(np, which)(a, axis=axis, keepdims=keepdims)
    cond = a if isinstance(a, Comparison) else compare("ne", asarray(a, rec), 0.0)
    shown_cond = cond
    if not cond._zero_one:
        # (x > 0) & m with m = 2 holds 2 where true: count its truth, != 0.
        cond = compare("ne", cond._as_value(), 0.0)
    axes = normalize_axes(axis, cond.ndim)
    keep = _flag(keepdims, "keepdims")
    if cond.ndim == 0:
        return cond                 # all and any of one truth value are that value
    length = math.prod(cond.shape[d] for d in axes)
    out_shape = tuple(1 if d in axes else n for d, n in enumerate(cond.shape)
                      if keep or d not in axes)
    if length == 0 or math.prod(out_shape) == 0:
        result = np.full(out_shape, which == "all")
        return result[()] if result.ndim == 0 else result
    counts = _raw(reduce("add", wrap(rec, cond.indicator_slots()), axes, keep))
    name, bound = ("eq", float(length)) if which == "all" else ("gt", 0.0)
    shown = "" if axis is None else f", axis={axis!r}"
    label = f"{which}({shown_cond._text()}{shown})"
    return Comparison(rec, name, Kind.VC, counts, _constant_indices(rec, np.array(bound),
                                                                     counts.shape),
                      counts.shape, label=label)


def _flag(value, name):
    """A boolean keyword as NumPy takes it, refusing arrays (whose truth
    value NumPy deprecates or calls ambiguous)."""
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, not {type(value).__name__}")


def mean(x, axis=None, keepdims=False):
    rec = _recorder_of([x])
    if rec is None:
        return np.mean(x, axis=axis, keepdims=keepdims)
    x = asarray(x, rec)
    shape = np.shape(_raw(x))
    count = math.prod(shape[a] for a in normalize_axes(axis, len(shape)))
    return apply_binary("div", reduce("add", x, axis, keepdims), float(count))


def _refuse_out(name, out):
    if out is not None:
        raise TracingError(f"np.{name}(..., out=) is not supported on traced values: "
                           "use the array it returns")


def var(x, axis=None, ddof=0, keepdims=False):
    """``np.var``: the mean of the squared deviations from the mean (two
    passes, as NumPy), divided by ``n - ddof``."""
    rec = _recorder_of([x])
    if rec is None:
        return np.var(x, axis=axis, ddof=ddof, keepdims=keepdims)
    if isinstance(ddof, (bool, np.bool_)) or not isinstance(ddof, (int, float, np.integer,
                                                                   np.floating)):
        raise ArgumentTypeError(f"np.var: ddof must be a number, not {type(ddof).__name__}")
    x = asarray(x, rec)
    shape = np.shape(_raw(x))
    axes = normalize_axes(axis, len(shape))
    count = math.prod(shape[a] for a in axes)
    deviation = apply_binary("sub", x, mean(x, axes, keepdims=True))
    squares = reduce("add", apply_unary("square", deviation), axes, _flag(keepdims, "keepdims"))
    # As NumPy: no degrees of freedom left divides by 0 (inf or nan).
    return apply_binary("div", squares, float(max(count - ddof, 0)))


def std(x, axis=None, ddof=0, keepdims=False):
    """``np.std``: the square root of :func:`var` (its derivative is
    infinite where the variance is 0, as the square root's)."""
    if _recorder_of([x]) is None:
        return np.std(x, axis=axis, ddof=ddof, keepdims=keepdims)
    return apply_unary("sqrt", var(x, axis, ddof, keepdims))


def average(a, axis=None, weights=None, returned=False, keepdims=False):
    """``np.average``: the mean, or ``sum(a * w) / sum(w)`` along ``axis``
    with weights of ``a``'s shape or, along one axis, of its length."""
    rec = _recorder_of([a, weights])
    if rec is None:
        return np.average(a, axis=axis, weights=weights, returned=returned, keepdims=keepdims)
    a = asarray(a, rec)
    shape = np.shape(_raw(a))
    keep = _flag(keepdims, "keepdims")
    axes = normalize_axes(axis, len(shape))
    if weights is None:
        result = mean(a, axes, keep)
        total = np.full(np.shape(_raw(result)), float(math.prod(shape[d] for d in axes)))
        return (result, total[()] if total.ndim == 0 else total) if returned else result
    w = weights if isinstance(weights, TracedArray) else real_array(weights, "np.average weights")
    w_shape = np.shape(_raw(w)) if isinstance(w, TracedArray) else w.shape
    if w_shape != shape:
        if axis is None or len(axes) != 1 or w_shape != (shape[axes[0]],):
            raise ShapeError("np.average: weights must have the shape of a, or be 1-d of the "
                             f"length of a along axis; got {w_shape} for a of {shape}")
        along = [-1 if d == axes[0] else 1 for d in range(len(shape))]
        w = np.broadcast_to(np.reshape(w, along), shape)
    total = np.sum(w, axis=axes, keepdims=keep)
    if not isinstance(total, (TracedArray, Active)) and np.any(total == 0.0):
        raise ArgumentError("np.average: weights sum to zero, can't be normalized")
    result = apply_binary("div", reduce("add", apply_binary("mul", a, w), axes, keep), total)
    return (result, total) if returned else result


def ptp(a, axis=None, keepdims=False):
    """``np.ptp``: max - min along ``axis``."""
    if _recorder_of([a]) is None:
        return np.ptp(a, axis=axis, keepdims=keepdims)
    keep = _flag(keepdims, "keepdims")
    return apply_binary("sub", reduce("maximum", a, axis, keep), reduce("minimum", a, axis, keep))


def normalize_axes(axis, ndim):
    """``axis`` (None, an int or a tuple of ints) as a tuple of axes in
    ``range(ndim)``, checked as NumPy checks it: an axis out of range raises
    :class:`wengert.AxisError` (NumPy's AxisError), never wraps around."""
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise ArgumentTypeError(f"axis must be an integer or a tuple of integers, "
                                    f"not {type(item).__name__}")
        if not -ndim <= item < ndim:
            raise AxisError(int(item), ndim)
        axes.append(int(item) % ndim)
    if len(set(axes)) != len(axes):
        raise ArgumentError(f"duplicate value in 'axis': {axis}")
    return tuple(axes)


# A longer stack of (small) matrices records its products and sums as a few
# vectorised entries instead of one Python-built entry per matrix.
_MAX_STACKED_PRODUCTS = 1000


def matmul(a, b):
    """Matrix product with NumPy's shape rules: one matmul entry per matrix
    of a (broadcast) stack, or for small products a tree sum per element."""
    rec = _recorder_of([a, b])
    # A constant operand stays constant: its products record as var-const.
    A = asarray(a, rec) if _recorder_of([a]) is not None else _constant(a)
    B = asarray(b, rec) if _recorder_of([b]) is not None else _constant(b)
    a_shape, b_shape = np.shape(_raw(A)), np.shape(_raw(B))
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise ShapeError("matmul: Input operand does not have enough dimensions")
    A2 = _expand(A, -2) if len(a_shape) == 1 else A
    B2 = _expand(B, -1) if len(b_shape) == 1 else B
    if np.shape(_raw(A2))[-1] != np.shape(_raw(B2))[-2]:
        raise ShapeError(f"matmul: shapes {a_shape} and {b_shape} are not aligned")
    a2, b2 = np.shape(_raw(A2)), np.shape(_raw(B2))
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError as exc:
        raise ShapeError(f"matmul: stacks of shapes {a_shape} and {b_shape} do not "
                         "broadcast") from exc
    if (_array_recording.enabled(a2[-2] * a2[-1] * b2[-1])
            and math.prod(batch) <= _MAX_STACKED_PRODUCTS):
        # One matrix-product entry per matrix of the stack (BLAS at replay).
        a_traced, b_traced = isinstance(A2, TracedArray), isinstance(B2, TracedArray)
        operands = [np.broadcast_to(X.slots if traced else np.asarray(X, dtype=np.float64),
                                    batch + shape[-2:])
                    for X, traced, shape in ((A2, a_traced, a2), (B2, b_traced, b2))]
        slots = np.empty(batch + (a2[-2], b2[-1]), dtype=np.intp)
        pooled = {}
        for index in np.ndindex(*batch):
            slots[index] = _array_recording.record_matmul(
                rec, operands[0][index], a_traced, operands[1][index], b_traced, pooled)
        result = wrap(rec, slots)
        if len(b_shape) == 1:
            result = _squeeze(result, -1)
        if len(a_shape) == 1:
            result = _squeeze(result, -2 if len(b_shape) > 1 else -1)
        return result
    products = apply_binary("mul", _expand(A2, -1), _expand(B2, -3))
    result = reduce("add", products, axis=-2)
    if len(b_shape) == 1:
        result = _squeeze(result, -1)
    if len(a_shape) == 1:
        result = _squeeze(result, -2 if len(b_shape) > 1 else -1)
    return result


def _expand(x, axis):
    if isinstance(x, TracedArray):
        return TracedArray(x.recorder, np.expand_dims(x.slots, axis))
    return np.expand_dims(x, axis)


def _squeeze(x, axis):
    if isinstance(x, TracedArray):
        return wrap(x.recorder, np.squeeze(x.slots, axis))
    if isinstance(x, Active):
        return x
    return np.squeeze(x, axis)


def dot(a, b):
    """``np.dot`` semantics for 0-, 1- and 2-d operands."""
    sa, sb = np.shape(_raw(a)), np.shape(_raw(b))
    if len(sa) == 0 or len(sb) == 0:
        return apply_binary("mul", a, b)
    if len(sb) <= 2:
        return matmul(a, b)
    raise TracingError("np.dot of arrays with more than two dimensions is not "
                       "supported on traced values; use np.einsum-free matmul")


def where(condition, x=None, y=None):
    """Select elementwise: ``x`` where ``condition`` holds, else ``y``.

    Both branches are recorded, the condition is evaluated at every replay
    (no guard), and derivatives flow only through the branch taken: a NaN or
    inf in the other branch never reaches a gradient.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.where(x > 0, np.sqrt(x), 0.0), np.array([4.0, -1.0]))
    >>> tape.jacobian([4.0, -1.0]).tolist()
    [[0.25, 0.0], [0.0, 0.0]]
    """
    if x is None or y is None:
        raise TracingError(
            "np.where(condition) with one argument returns the indices where it holds, "
            "which depend on the values and cannot be recorded; use wg.where(condition, "
            "x, y) to select, or compute indices from concrete values before recording")
    rec = _recorder_of([condition, x, y])
    if rec is None:
        return np.where(condition, x, y)
    if isinstance(condition, Comparison):
        cond = condition.indicator_slots()
    elif isinstance(condition, (TracedArray, Active)):
        cond = _raw(compare("ne", condition, 0.0)._as_value())
    else:
        # A concrete condition is decided now, at record time.
        mask = np.asarray(condition, dtype=bool)
        xs = _slots_of(rec, _operand(rec, x))
        ys = _slots_of(rec, _operand(rec, y))
        return wrap(rec, np.where(mask, xs, ys))
    xs = _slots_of(rec, _operand(rec, x))
    ys = _slots_of(rec, _operand(rec, y))
    try:
        shape = np.broadcast_shapes(cond.shape, xs.shape, ys.shape)
    except ValueError as exc:
        raise ShapeError(f"where: shapes {cond.shape}, {xs.shape}, {ys.shape} do not broadcast") from exc
    if _array_recording.enabled(math.prod(shape)):
        return wrap(rec, _array_recording.record_where(rec, cond, xs, ys, shape))
    flat = [np.ascontiguousarray(np.broadcast_to(s, shape)).reshape(-1) for s in (cond, xs, ys)]
    first = rec.push_select_many(*flat)
    return wrap(rec, np.arange(first, first + flat[0].size, dtype=np.intp).reshape(shape))


def clip(x, a_min=None, a_max=None):
    if a_min is None and a_max is None:
        return _fresh(x)
    if a_min is not None:
        x = apply_binary("maximum", x, a_min)
    if a_max is not None:
        x = apply_binary("minimum", x, a_max)
    return x


# ---- NumPy protocols -----------------------------------------------------------

def _numpy_bindings(rows):
    return {getattr(np, name): op.name for op in rows for name in ops.binding_names(op, "numpy")}


# The table's bindings: NumPy ufuncs by object, SciPy's by name (so SciPy is
# imported only by the user's own call).
_UFUNC_UNARY = _numpy_bindings(op for op in ops.OPERATIONS if op.arity == 1)
_UFUNC_BINARY = _numpy_bindings(op for op in ops.OPERATIONS
                                if op.arity == 2 and op.name not in ops.COMPARISONS)
_UFUNC_COMPARE = _numpy_bindings(ops.BY_NAME[name] for name in ops.COMPARISONS)
_UFUNC_BY_NAME = {name: op.name for op in ops.OPERATIONS if op.arity == 1
                  for name in ops.binding_names(op, "scipy.special")}
_REDUCE = {np.add: "add", np.multiply: "mul", np.maximum: "maximum", np.minimum: "minimum"}


def _array_ufunc(ufunc, method, inputs, kwargs):
    try:
        return _ufunc_on_traced(ufunc, method, inputs, kwargs)
    except _NUMPY_ERRORS as exc:
        raise _library_error(exc, f"np.{ufunc.__name__} on traced values") from None


def _ufunc_on_traced(ufunc, method, inputs, kwargs):
    out = kwargs.pop("out", None)
    dtype = kwargs.get("dtype")
    if kwargs.get("where", True) is not True or not (
            dtype is None or dtype is float or (isinstance(dtype, (str, type, np.dtype))
                                                and np.dtype(dtype) == np.float64)):
        raise TracingError(f"np.{ufunc.__name__} with where= or dtype= is not supported on traced values")
    kwargs.pop("where", None)
    kwargs.pop("dtype", None)
    kwargs.pop("casting", None)
    if method == "reduce" and ufunc in _REDUCE:
        result = reduce(_REDUCE[ufunc], inputs[0], kwargs.pop("axis", 0), kwargs.pop("keepdims", False))
    elif method != "__call__":
        raise TracingError(f"np.{ufunc.__name__}.{method} is not supported on traced values")
    elif kwargs:
        raise TracingError(f"np.{ufunc.__name__} with {sorted(kwargs)} is not supported on traced values")
    elif ufunc in _UFUNC_UNARY:
        result = apply_unary(_UFUNC_UNARY[ufunc], inputs[0])
    elif ufunc in _UFUNC_BINARY:
        result = apply_binary(_UFUNC_BINARY[ufunc], *inputs)
    elif ufunc in _UFUNC_COMPARE:
        result = compare(_UFUNC_COMPARE[ufunc], *inputs)
    elif ufunc is np.power or ufunc is np.float_power:
        result = power(*inputs)
    elif ufunc is np.matmul:
        result = matmul(*inputs)
    elif ufunc is np.positive:
        result = _fresh(inputs[0])
    elif ufunc is np.exp2:
        result = apply_binary("pow", 2.0, inputs[0])
    elif ufunc.__name__ in _UFUNC_BY_NAME:
        result = apply_unary(_UFUNC_BY_NAME[ufunc.__name__], inputs[0])
    else:
        raise TracingError(
            f"{_public_path(ufunc)} is not supported on traced values yet: compose it "
            "from supported operations (the README's \"What you can write inside f\" "
            "lists them) or ask for it")
    if out is not None:
        target = out[0] if isinstance(out, tuple) else out
        if not isinstance(target, TracedArray):
            raise TracingError(
                f"np.{ufunc.__name__}(..., out=) needs a traced array as out; a float "
                "array cannot hold traced values")
        target[...] = result
        return target
    return result


# Functions whose first argument is a sequence of arrays, and whose first
# two arguments are arrays; for the rest only the first is. The other
# arguments (axes, shapes, indices, counts) are passed through unchanged.
_SEQUENCE_FIRST = {np.concatenate, np.stack, np.hstack, np.vstack, np.column_stack}
_TWO_ARRAYS = {np.append}
_ARRAY_KEYWORDS = {"a": False, "arr": False, "m": False, "ary": False, "values": False,
                   "arrays": True, "tup": True}


def _structural(func):
    """Wrap a NumPy function that only moves elements: apply it to slots.

    Only the array arguments become slot indices (constants among them
    become constant entries); axes, shapes and index arrays stay as given.
    """
    def run(*args, **kwargs):
        rec = _recorder_of(list(args) + list(kwargs.values()))

        def to_slots(v, sequence):
            if sequence:
                return [_slots_of(rec, _operand(rec, item)) for item in v]
            return _slots_of(rec, _operand(rec, v))

        args = list(args)
        for i in range(min(len(args), 2 if func in _TWO_ARRAYS else 1)):
            args[i] = to_slots(args[i], i == 0 and func in _SEQUENCE_FIRST)
        for key, sequence in _ARRAY_KEYWORDS.items():
            if key in kwargs:
                kwargs[key] = to_slots(kwargs[key], sequence)
        try:
            result = func(*args, **kwargs)
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, f"np.{func.__name__} on traced values") from None
        if isinstance(result, (list, tuple)):
            return type(result)(wrap(rec, r) for r in result)
        return wrap(rec, result)
    return run


def _zero_filling(func):
    """Wrap a NumPy function that moves elements and fills the rest with 0
    (np.triu, np.tril, np.diag of a vector). As a slot index 0 would mean
    slot 0, indices are shifted by one and the fill becomes a constant 0."""
    def run(a, *args, **kwargs):
        rec = _recorder_of([a])
        try:
            moved = func(_slots_of(rec, _operand(rec, a)) + 1, *args, **kwargs)
        except _NUMPY_ERRORS as exc:
            raise _library_error(exc, f"np.{func.__name__} on traced values") from None
        filled = moved == 0
        if filled.any():
            zero = int(_slots_of(rec, _Operand(False, np.zeros(1)))[0])
            moved = np.where(filled, zero + 1, moved)
        return wrap(rec, moved - 1)
    return run


def _like(fill):
    def run(a, *args, **kwargs):
        return np.full(np.shape(_raw(a)), fill, dtype=np.float64)
    return run


def _sum(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return reduce("add", a, axis, keepdims)


def _prod(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return reduce("mul", a, axis, keepdims)


def _max(a, axis=None, out=None, keepdims=False, **kw):
    return reduce("maximum", a, axis, keepdims)


def _min(a, axis=None, out=None, keepdims=False, **kw):
    return reduce("minimum", a, axis, keepdims)


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return mean(a, axis, keepdims)


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, correction=None, **kw):
    _refuse_out("var", out)
    return var(a, axis, ddof if correction is None else correction, keepdims)


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, correction=None, **kw):
    _refuse_out("std", out)
    return std(a, axis, ddof if correction is None else correction, keepdims)


def _ptp(a, axis=None, out=None, keepdims=False):
    _refuse_out("ptp", out)
    return ptp(a, axis, keepdims)


def _norm(x, ord=None, axis=None, keepdims=False):
    two_norm = ord is None or (isinstance(ord, (int, float, np.number)) and ord == 2)
    if not (two_norm or (isinstance(ord, str) and ord == "fro" and axis is None)):
        raise TracingError("np.linalg.norm on traced values supports only the 2-norm")
    return apply_unary("sqrt", reduce("add", apply_unary("square", x), axis, keepdims))


def _diff(a, n=1, axis=-1):
    rec = _recorder_of([a])
    a = asarray(a, rec)
    (axis,) = normalize_axes(axis, len(_shape(a)))
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise ArgumentTypeError(f"np.diff: n must be an integer, not {type(n).__name__}")
    if n < 0:
        raise ArgumentError(f"np.diff: order must be non-negative but got {n}")
    # Past the axis length every further difference is of an empty array.
    for _ in range(min(int(n), _shape(a)[axis] + 1)):
        slots = _raw(a)
        upper = np.take(slots, np.arange(1, slots.shape[axis]), axis=axis)
        lower = np.take(slots, np.arange(0, slots.shape[axis] - 1), axis=axis)
        a = apply_binary("sub", wrap(rec, upper), wrap(rec, lower))
    return a


def _cumsum(a, axis=None, dtype=None, out=None):
    rec = _recorder_of([a])
    slots = _raw(asarray(a, rec))
    if axis is None:
        slots, axis = slots.reshape(-1), 0
    (axis,) = normalize_axes(axis, slots.ndim)
    moved = np.moveaxis(slots, axis, -1).copy()
    if moved.size and _array_recording.enabled(moved.size):
        rows = moved.reshape(-1, moved.shape[-1])
        result = _array_recording.record_cumsum(rec, rows).reshape(moved.shape)
        return wrap(rec, np.moveaxis(result, -1, axis))
    code = ops.code_of("add", Kind.VV)
    for k in range(1, moved.shape[-1]):
        left = moved[..., k - 1].reshape(-1)
        right = moved[..., k].reshape(-1)
        first = rec.push_many(code, left, right)
        moved[..., k] = np.arange(first, first + left.size).reshape(moved.shape[:-1])
    return wrap(rec, np.moveaxis(moved, -1, axis))


def _cumprod(a, axis=None, dtype=None, out=None):
    """``np.cumprod``: a chain of products along ``axis``, one multiply per
    element (an array entry per step where a step covers 8 elements)."""
    _refuse_out("cumprod", out)
    rec = _recorder_of([a])
    slots = _raw(asarray(a, rec))
    if axis is None:
        slots, axis = slots.reshape(-1), 0
    (axis,) = normalize_axes(axis, slots.ndim)
    if slots.shape[axis] == 0:
        return wrap(rec, slots.copy())
    moved = np.moveaxis(wrap(rec, slots), axis, 0)
    steps = [_fresh(moved[0])]
    for k in range(1, moved.shape[0]):
        steps.append(apply_binary("mul", steps[-1], moved[k]))
    return np.moveaxis(np.stack(steps), 0, axis)


def _trapezoid(y, x=None, dx=1.0, axis=-1):
    """``np.trapezoid``: sum((y[1:] + y[:-1]) / 2 * diff(x)) along ``axis``."""
    rec = _recorder_of([y, x, dx])
    y = asarray(y, rec)
    (axis,) = normalize_axes(axis, y.ndim)
    n = y.shape[axis]
    upper = np.take(y, np.arange(1, n), axis=axis)
    lower = np.take(y, np.arange(0, max(n - 1, 0)), axis=axis)
    if x is None:
        width = dx
    else:
        x = asarray(x, rec) if _recorder_of([x]) is not None else np.asarray(_constant(x))
        if x.ndim == 1:
            if x.shape[0] != n:
                raise ShapeError(f"np.trapezoid: x has {x.shape[0]} points, y has {n} "
                                 "along the axis")
            x = x.reshape([-1 if d == axis else 1 for d in range(y.ndim)])
        width = np.diff(x, axis=axis)
    return np.sum((upper + lower) * width, axis=axis) / 2.0


def _kron(a, b):
    """``np.kron``: every product a[i] * b[j], blocks laid out as NumPy's."""
    rec = _recorder_of([a, b])
    nd = max(len(_shape(a)), len(_shape(b)))
    if nd == 0:
        return apply_binary("mul", a, b)

    def padded(v):
        # Reshaped as slot arrays: a 0-d traced value is a scalar with no reshape.
        shape = _shape(v)
        shape = (1,) * (nd - len(shape)) + tuple(shape)
        if _recorder_of([v]) is None:
            return np.reshape(_constant(v), shape)
        return wrap(rec, _raw(asarray(v, rec)).reshape(shape))
    a, b = padded(a), padded(b)
    spread_a = a.reshape(sum(((n, 1) for n in a.shape), ()))
    spread_b = b.reshape(sum(((1, n) for n in b.shape), ()))
    return (spread_a * spread_b).reshape(tuple(m * n for m, n in zip(a.shape, b.shape)))


def _outer(a, b, out=None):
    rec = _recorder_of([a, b])
    flat = [wrap(rec, _raw(asarray(v, rec)).reshape(-1)) if _recorder_of([v]) is not None
            else np.ravel(_constant(v)) for v in (a, b)]
    return apply_binary("mul", _expand(flat[0], -1), flat[1])


def _inner(a, b):
    return reduce("add", apply_binary("mul", a, b), axis=-1)


def _vdot(a, b):
    return reduce("add", apply_binary("mul", _flat(a), _flat(b)))


def _flat(x):
    return x.reshape(-1) if hasattr(x, "reshape") else np.ravel(x)


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    return reduce("add", _structural(np.diagonal)(a, offset, axis1, axis2), axis=-1)


def _shape(a):
    return np.shape(_raw(a))


_HANDLED = {
    np.sum: _sum, np.prod: _prod, np.mean: _mean, np.max: _max, np.min: _min,
    np.var: _var, np.std: _std, np.average: average, np.ptp: _ptp,
    np.amax: _max, np.amin: _min, np.all: functools.partial(all_any, "all"),
    np.any: functools.partial(all_any, "any"),
    np.dot: lambda a, b, out=None: dot(a, b), np.matmul: lambda a, b, **kw: matmul(a, b),
    np.inner: _inner, np.outer: _outer, np.vdot: _vdot, np.trace: _trace,
    np.where: where, np.clip: lambda a, a_min=None, a_max=None, out=None, **kw: clip(a, a_min, a_max),
    np.linalg.norm: _norm, np.diff: _diff, np.cumsum: _cumsum, np.cumprod: _cumprod,
    np.kron: _kron,
    np.shape: _shape, np.ndim: lambda a: len(_shape(a)),
    np.size: lambda a, axis=None: int(np.prod(_shape(a))) if axis is None else _shape(a)[axis],
    np.zeros_like: _like(0.0), np.ones_like: _like(1.0),
    np.full_like: lambda a, fill_value, *args, **kw: np.full(_shape(a), fill_value, dtype=float),
    np.empty_like: _like(0.0),
}
# np.trapezoid from NumPy 2.0; np.trapz before it (and, deprecated, beside it).
for _name in ("trapezoid", "trapz"):
    if hasattr(np, _name):
        _HANDLED[getattr(np, _name)] = _trapezoid
for _f in (np.concatenate, np.stack, np.hstack, np.vstack, np.column_stack,
           np.reshape, np.transpose, np.ravel, np.squeeze, np.expand_dims,
           np.atleast_1d, np.atleast_2d, np.flip, np.roll, np.broadcast_to,
           np.moveaxis, np.swapaxes, np.take, np.tile, np.repeat, np.diagonal,
           np.copy, np.append, np.split, np.array_split, np.fliplr, np.flipud):
    _HANDLED[_f] = _structural(_f)
for _f in (np.triu, np.tril, np.diag):
    _HANDLED[_f] = _zero_filling(_f)


def _public_path(func):
    """How a user names ``func``: ``numpy.linalg.solve``, ``scipy.special.struve``."""
    name = getattr(func, "__name__", repr(func))
    if isinstance(func, np.ufunc):            # ufuncs carry no __module__
        if getattr(np, name, None) is func:
            return f"numpy.{name}"
        special = sys.modules.get("scipy.special")
        if special is not None and getattr(special, name, None) is func:
            return f"scipy.special.{name}"
        return name
    module = getattr(func, "__module__", None) or "numpy"
    if module.startswith("numpy.") and module.split(".")[1].startswith("_"):
        module = "numpy"          # numpy._core.fromnumeric.sum is numpy.sum to users
    return f"{module}.{name}"


def _array_function(func, types, args, kwargs):
    handler = _HANDLED.get(func)
    if handler is None:
        raise TracingError(
            f"{_public_path(func)} is not supported on traced values yet: compose it "
            "from supported operations (the README's \"What you can write inside f\" "
            "lists them) or ask for it")
    try:
        return handler(*args, **kwargs)
    except _NUMPY_ERRORS as exc:
        raise _library_error(exc, f"np.{func.__name__} on traced values") from None


hooks["compare"] = compare
hooks["ufunc"] = _array_ufunc
hooks["function"] = _array_function
