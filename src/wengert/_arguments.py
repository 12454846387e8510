"""Turning what a caller passes into float64 arrays, or a clear refusal.

``np.asarray(value, dtype=np.float64)`` is too forgiving at a public
boundary: ``None`` becomes NaN, ``"1.5"`` becomes 1.5, a complex value loses
its imaginary part with only a warning, and a masked array loses its mask.
Every point, direction, weight and parameter a caller hands to a tape goes
through :func:`real_array` instead.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from wengert._errors import ArgumentError, ArgumentTypeError, ShapeError, TracingError

_F64 = np.dtype(np.float64)
# Dimensions of a point, direction or parameter (a Hessian doubles them, and
# NumPy 1.x arrays have at most 32).
MAX_DIMS = 16
_NDARRAY = np.ndarray


def real_array(value, name, *, allow_bool=False):
    """``value`` as a float64 ndarray, refusing anything that is not real numbers.

    Accepted: Python and NumPy floats and integers, nested lists and tuples
    of them, and numeric NumPy arrays (integer or floating; converted to
    float64). ndarray subclasses other than masked arrays are read as plain
    arrays. Booleans are refused unless ``allow_bool`` (operands inside a
    recorded function may be masks, as in NumPy arithmetic).

    Raises
    ------
    ArgumentTypeError
        For ``None``, strings, bytes, booleans, complex numbers, masked
        arrays, object arrays of non-numbers and other non-numeric values;
        the message names the argument (``name``).
    ShapeError
        For ragged nested sequences.
    """
    # The common case: two identity checks (builtin dtypes are singletons;
    # an equal but distinct float64 dtype takes the general path, correctly).
    if type(value) is _NDARRAY and value.dtype is _F64 and value.ndim <= MAX_DIMS:
        return value
    if type(value) is float:
        return np.array(value)
    return _convert(value, name, allow_bool)


def checked_path(path, name="path"):
    """``os.fspath(path)``, refusing what no file system accepts with the
    library's errors instead of a bare TypeError or ValueError."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be a str, bytes or os.PathLike, not "
                                f"{type(path).__name__}") from None
    if not path:
        raise ArgumentError(f"{name} is empty; name a file")
    if ("\0" if isinstance(path, str) else b"\0") in path:
        raise ArgumentError(f"{name} contains a NUL character, which no file name can hold")
    return path


def check_choice(value, name, choices):
    """Refuse a keyword (``mode=``, ``method=``) that is not one of ``choices``
    (strings), whatever its type: ``value in choices`` alone would compare an
    array elementwise."""
    if not (isinstance(value, str) and value in choices):
        options = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"{name} must be one of {options}, not {value!r:.60}")
    return value


def _convert(value, name, allow_bool):
    if not isinstance(value, (list, tuple)):      # lists go straight to NumPy
        _refuse_non_numbers(value, name, allow_bool)
    try:
        with warnings.catch_warnings():
            # NumPy turns np.ma.masked inside a list into NaN with only a warning.
            warnings.simplefilter("error", UserWarning)
            array = np.asarray(value)
    except UserWarning as exc:
        raise ArgumentTypeError(f"{name} holds a value NumPy cannot convert without "
                                f"loss ({exc}); pass floats") from None
    except (ValueError, RuntimeError, RecursionError) as exc:
        raise ShapeError(
            f"{name} is not a regular array (a ragged nested list?): {exc}") from None
    if array.ndim > MAX_DIMS:
        raise ShapeError(f"{name} has {array.ndim} dimensions; wengert handles at most "
                         f"{MAX_DIMS} (NumPy's iterators stop there)")
    kind = array.dtype.kind
    if kind == "f" or kind in "iu" or (kind == "b" and allow_bool):
        return array.astype(np.float64, copy=False)
    if kind == "c":
        raise ArgumentTypeError(
            f"{name} is complex ({array.dtype}); wengert differentiates real float64 "
            "functions only: pass the real part explicitly (np.real) if that is what you mean")
    if kind == "b":
        raise ArgumentTypeError(
            f"{name} has boolean dtype; pass floats (array.astype(float) if 0/1 is meant)")
    if kind == "O":
        return _from_objects(array, name, allow_bool)
    raise ArgumentTypeError(
        f"{name} has dtype {array.dtype}, not a real number type; pass floats")


def _from_objects(array, name, allow_bool):
    """An object array (a list mixing ints, floats, NumPy scalars...) whose
    every element is a real number; anything else is refused."""
    for item in array.flat:
        is_bool = isinstance(item, (bool, np.bool_))
        is_number = isinstance(item, (int, float, np.integer, np.floating))
        if (is_bool and not allow_bool) or not (is_number or is_bool):
            if hasattr(item, "recorder"):
                raise TracingError(
                    f"{name} holds traced values; a tape replays at concrete points "
                    "(float arrays), so it cannot be called on traced values while recording")
            raise ArgumentTypeError(
                f"{name} holds a {type(item).__name__} ({item!r:.40}), not a real number; "
                "pass floats")
    try:
        return array.astype(np.float64)
    except OverflowError:
        raise ArgumentTypeError(f"{name} holds an integer too large for a float64") from None
    except (ValueError, RuntimeError) as exc:
        raise ShapeError(f"{name} is not a regular array: {exc}") from None


def _refuse_non_numbers(value, name, allow_bool):
    """Refuse what np.asarray would turn into NaN, a silently parsed string
    or a mask-less array."""
    if value is None:
        raise ArgumentTypeError(
            f"{name} is None; pass a float or an array of floats")
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise ArgumentTypeError(
            f"{name} is a {type(value).__name__}, not a number; pass a float or an "
            "array of floats (convert text with float() or np.asarray(..., dtype=float) "
            "first if that is what you mean)")
    if isinstance(value, np.ma.MaskedArray):
        raise ArgumentTypeError(
            f"{name} is a masked array; its mask would be dropped silently. Pass "
            f"{name}.filled(fill_value) or the data you mean as a plain array")
    if isinstance(value, (bool, np.bool_)) and not allow_bool:
        raise ArgumentTypeError(
            f"{name} is a boolean; pass a float (for a condition inside the recorded "
            "function, use wg.where)")
