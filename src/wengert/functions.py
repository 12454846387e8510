"""``wg.sin``, ``wg.where`` ...: functions that work on traced values and,
unchanged, on plain floats and arrays (where they are NumPy's)."""
import builtins
import collections.abc
import functools

import numpy as np

from wengert import _opcodes as ops
from wengert import _numpy_api, tracing
from wengert._arguments import real_array
from wengert._recorder import Active


def _traced(*values):
    return builtins.any(isinstance(v, (Active, tracing.TracedArray, tracing.Comparison))
                        or (isinstance(v, (list, tuple)) and _traced(*v)) for v in values)


def _materialised(values):
    """A generator or iterator as a list (NumPy deprecates reducing them)."""
    if isinstance(values, collections.abc.Iterator):
        return list(values)
    return values


def _library_errors(function):
    """NumPy's errors for bad arguments, raised as wengert's (which keep
    NumPy's class as a base: a TypeError stays a TypeError)."""
    @functools.wraps(function)
    def checked(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except tracing._NUMPY_ERRORS + (AttributeError,) as exc:
            # AttributeError: NumPy's object loops call x.arctan2() on junk.
            raise tracing._library_error(exc, f"wg.{function.__name__}") from None
    return checked


def _unary(name, numpy_function, doc):
    def function(x):
        if _traced(x):
            return tracing.apply_unary(name, x)
        return numpy_function(x)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return _library_errors(function)


def _binary(name, numpy_function, doc):
    def function(a, b):
        if _traced(a, b):
            return tracing.apply_binary(name, a, b)
        return numpy_function(a, b)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return _library_errors(function)


def _doc(name, what):
    return f"""{what}, elementwise; on a traced array records one entry for the
    whole array (one per element below 8 elements).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.{name}(x), np.array([0.5]))
    >>> tape.forward([0.5]).shape
    (1,)
    """


def _binary_doc(name, what):
    return f"""{what}, elementwise; on traced arrays records one entry for the
    whole (broadcast) result (one per element below 8 elements).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.{name}(x[0], x[1]), np.array([0.5, 2.0]))
    >>> tape.gradient([0.5, 2.0]).shape
    (2,)
    """


def _public(op):
    """``wg.<name>`` for a table row with a description."""
    if op.arity == 1:
        return _unary(op.name, op.reference, _doc(op.name, op.doc))
    return _binary(op.name, op.reference, _binary_doc(op.name, op.doc))


# One public function per table row that has a description: adding a row
# with `doc=` is all it takes for wg.<name> to exist.
_TABLE_FUNCTIONS = {op.name: _public(op) for op in ops.PUBLIC}
globals().update(_TABLE_FUNCTIONS)


@_library_errors
def power(a, b):
    """``a ** b`` elementwise (variable or constant base and exponent).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.power(x[0], x[1]), np.array([2.0, 3.0]))
    >>> tape.gradient([2.0, 3.0]).round(4).tolist()
    [12.0, 5.5452]
    """
    if _traced(a, b):
        return tracing.power(a, b)
    return np.power(a, b)


# The select itself, with its docstring; only the error translation is added.
where = _library_errors(_numpy_api.where)


@_library_errors
def sum(x, axis=None, keepdims=False):
    """Sum (a pairwise tree of additions on traced values).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.sum(x ** 2), np.ones(3))
    >>> tape.gradient([1.0, 2.0, 3.0]).tolist()
    [2.0, 4.0, 6.0]
    """
    x = _materialised(x)
    return np.sum(x, axis=axis, keepdims=keepdims) if not _traced(x) else _numpy_api.reduce("add", x, axis, keepdims)


@_library_errors
def prod(x, axis=None, keepdims=False):
    """Product (a pairwise tree of multiplications on traced values).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.prod(x), np.ones(3))
    >>> tape.gradient([1.0, 2.0, 3.0]).tolist()
    [6.0, 3.0, 2.0]
    """
    x = _materialised(x)
    return np.prod(x, axis=axis, keepdims=keepdims) if not _traced(x) else _numpy_api.reduce("mul", x, axis, keepdims)


@_library_errors
def dot(a, b):
    """``np.dot`` for traced or plain operands.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> tape = wg.record(lambda x: wg.dot(A, x), np.ones(2))
    >>> tape.jacobian([1.0, 1.0]).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    return _numpy_api.dot(a, b) if _traced(a, b) else np.dot(a, b)


@_library_errors
def clip(x, a_min=None, a_max=None):
    """``np.clip`` as maximum/minimum operations (no guards).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.clip(x, -1.0, 1.0), np.zeros(3))
    >>> tape.forward([-2.0, 0.5, 3.0]).tolist()
    [-1.0, 0.5, 1.0]
    """
    if _traced(x, a_min, a_max):
        return _numpy_api.clip(x, a_min, a_max)
    if a_min is None and a_max is None:
        return np.array(x, dtype=float)             # as NumPy >= 2.1 does
    return np.clip(x, a_min, a_max)


@_library_errors
def array(values):
    """An array from (nested lists of) traced values and numbers.

    ``np.array`` cannot hold traced values; use this (or ``np.stack``).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.array([x[0] * x[1], 1.0]), np.ones(2))
    >>> tape.forward([2.0, 3.0]).tolist()
    [6.0, 1.0]
    """
    if _traced(values) or (isinstance(values, np.ndarray) and values.dtype == object):
        # A new array, as np.array gives: writing into it leaves `values` alone.
        return tracing._fresh(tracing.asarray(values))
    return np.array(real_array(values, "values"))


@_library_errors
def stack(arrays, axis=0):
    """``np.stack`` for traced or plain arrays (it moves slot indices: only
    constants among the arrays add tape entries).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.stack([x[0] * x[1], x[0]]), np.ones(2))
    >>> tape.forward([2.0, 3.0]).tolist()
    [6.0, 2.0]
    """
    arrays = list(arrays)       # a generator would be spent by _traced
    if not _traced(*arrays):
        return np.stack(arrays, axis=axis)
    return _numpy_api._HANDLED[np.stack](arrays, axis=axis)


@_library_errors
def concatenate(arrays, axis=0):
    """``np.concatenate`` for traced or plain arrays (it moves slot indices:
    only constants among the arrays add tape entries).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: wg.concatenate([x, 2.0 * x]), np.ones(2))
    >>> tape.forward([1.0, 3.0]).tolist()
    [1.0, 3.0, 2.0, 6.0]
    """
    arrays = list(arrays)       # a generator would be spent by _traced
    if not _traced(*arrays):
        return np.concatenate(arrays, axis=axis)
    return _numpy_api._HANDLED[np.concatenate](arrays, axis=axis)


__all__ = sorted(list(_TABLE_FUNCTIONS) + [
    "array", "clip", "concatenate", "dot", "power", "prod", "stack", "sum", "where"])
