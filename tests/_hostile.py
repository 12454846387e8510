"""Hostile inputs for ``test_hostile_inputs.py``: the catalogue of malformed
values, the calls they are fed to, and the worker that runs the calls in a
subprocess.

A *case* is plain JSON (so that it can be written to a file, shown in a
report and replayed alone): ``{"id": ..., "area": ..., ...}`` naming a call
and the values of its arguments. A value is either ``"=good"`` (the valid
value for that argument), the name of an entry of :data:`VALUES`, or an
array specification ``["arr", dtype, shape, fill, layout]`` built by
:func:`make_array`. The worker builds every value fresh, in its own process,
right before the call.

Run as a script, this module is the worker::

    python tests/_hostile.py CASES.json SCRATCH_DIR

It runs every step of every case and writes, per step, one line
``MARK S <id> <step>`` before and one line ``MARK R <id> <step> <json>``
after to stdout (the same start marker also goes to stderr, so that whatever
the library prints, and a crash report from :mod:`faulthandler`, can be
attributed to the step that printed it). A step that runs longer than
``WENGERT_HOSTILE_STEP_TIMEOUT`` seconds gets SIGALRM, which faulthandler
turns into a dump of the stacks before the signal ends the process: the
parent sees a hang.
"""
from __future__ import annotations

import copy
import faulthandler
import io
import json
import math
import os
import pickle
import signal
import sys
import time
import traceback
import warnings
from decimal import Decimal
from fractions import Fraction

if __name__ == "__main__":
    # The worker: a 2 GB address space, so that a huge allocation is a
    # MemoryError (or a death) here instead of swapping the machine.
    import resource
    _LIMIT = int(os.environ.get("WENGERT_HOSTILE_ADDRESS_LIMIT", str(2 * 2**30)))
    try:
        resource.setrlimit(resource.RLIMIT_AS, (_LIMIT, _LIMIT))
    except (ValueError, OSError):
        pass

import numpy as np

MARK = "@@HOSTILE@@"
GOOD = "=good"
STEP_TIMEOUT = float(os.environ.get("WENGERT_HOSTILE_STEP_TIMEOUT", "5"))

# A tape is "small" (replayed every way after a hostile construction) below these.
SMALL_SLOTS = 10**5


class Boom(Exception):
    """Raised by the hostile objects' own special methods. The user's own
    exception passing through a public call is fine."""


# ---- hostile objects ---------------------------------------------------------------------------

class _Named:
    label = "?"

    def __repr__(self):
        return f"<{self.label}>"


class ArrayLike(_Named):
    """An object whose ``__array__`` returns a given array."""
    def __init__(self, label, result):
        self.label, self.result = label, result

    def __array__(self, dtype=None, copy=None):
        return self.result          # NumPy casts it to dtype (warning as it would)


class BoomArray(_Named):
    label = "__array__ raises"

    def __array__(self, dtype=None, copy=None):
        raise Boom("__array__")


class BoomFloat(_Named):
    label = "__float__ raises"

    def __float__(self):
        raise Boom("__float__")


class FloatLike(_Named):
    label = "__float__ gives 2.0"

    def __float__(self):
        return 2.0


class Index2(_Named):
    label = "__index__ gives 1"

    def __index__(self):
        return 1


class BoomIndex(_Named):
    label = "__index__ raises"

    def __index__(self):
        raise Boom("__index__")


class BoomEq(_Named):
    label = "__eq__ raises"

    def __eq__(self, other):
        raise Boom("__eq__")

    def __hash__(self):
        return 0


class ArrayEq(_Named):
    label = "__eq__ gives an array"

    def __eq__(self, other):
        return np.array([True, False])

    def __ne__(self, other):
        return np.array([True, False])

    def __hash__(self):
        return 0


class BoomHash(_Named):
    label = "__hash__ raises"

    def __hash__(self):
        raise Boom("__hash__")


class BoomSequence(_Named):
    label = "sequence whose __getitem__ raises"

    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise Boom("__getitem__")


class LyingSequence(_Named):
    label = "sequence whose __len__ lies"

    def __len__(self):
        return 3

    def __getitem__(self, i):
        if i >= 2:
            raise IndexError(i)
        return 2.0


class BoomPath(_Named):
    label = "__fspath__ raises"

    def __fspath__(self):
        raise Boom("__fspath__")


class IntPath(_Named):
    label = "__fspath__ gives an int"

    def __fspath__(self):
        return 5


class FloatSub(float):
    def __repr__(self):
        return f"FloatSub({float(self)!r})"


class IntSub(int):
    def __repr__(self):
        return f"IntSub({int(self)!r})"


class StrSub(str):
    pass


class NdSub(np.ndarray):
    """An ndarray subclass whose methods misbehave."""
    def reshape(self, *args, **kwargs):
        raise Boom("NdSub.reshape")

    def astype(self, *args, **kwargs):
        raise Boom("NdSub.astype")


def _deep_list(depth):
    value = [2.0, 5.0]
    for _ in range(depth):
        value = [value]
    return value


def _self_list():
    value = [2.0]
    value.append(value)
    return value


def _unaligned(a):
    a = np.asarray(a)
    if a.dtype.hasobject or a.dtype.itemsize < 2:
        return a
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
    out[...] = a
    return out


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _ndsub():
    return np.array([2.0, 5.0]).view(NdSub)


# ---- the catalogue -------------------------------------------------------------------------------
#
# name -> (factory(ctx), tags). Tags: "refuse" (not a real number: a point,
# direction, weight or dynamic parameter of this kind must be refused with
# an exception, never accepted), "core" (in the smaller set crossed with
# many operations).

def _v(factory, *tags):
    return factory, frozenset(tags)


VALUES = {
    # -- scalars and plain objects
    "None": _v(lambda c: None, "refuse", "core"),
    "str '2.5'": _v(lambda c: "2.5", "refuse", "core"),
    "str ''": _v(lambda c: "", "refuse"),
    "str subclass": _v(lambda c: StrSub("auto"), "refuse"),
    "bytes": _v(lambda c: b"2.5", "refuse", "core"),
    "bytearray": _v(lambda c: bytearray(b"\x00\x01"), "refuse"),
    "memoryview": _v(lambda c: memoryview(b"\x00" * 16), "refuse"),
    "True": _v(lambda c: True, "refuse", "core"),
    "False": _v(lambda c: False, "refuse"),
    "np.bool_": _v(lambda c: np.bool_(True), "refuse"),
    "complex 2+1j": _v(lambda c: 2 + 1j, "refuse", "core"),
    "complex 2+0j": _v(lambda c: 2 + 0j, "refuse"),
    "np.complex128": _v(lambda c: np.complex128(2 + 1j), "refuse"),
    "nan": _v(lambda c: float("nan"), "core"),
    "inf": _v(lambda c: float("inf")),
    "-inf": _v(lambda c: float("-inf")),
    "0.0": _v(lambda c: 0.0),
    "-0.0": _v(lambda c: -0.0),
    "1e308": _v(lambda c: 1e308),
    "5e-324": _v(lambda c: 5e-324),
    "0": _v(lambda c: 0, "core"),
    "-1": _v(lambda c: -1, "core"),
    "10**30": _v(lambda c: 10**30, "core"),
    "-10**30": _v(lambda c: -10**30),
    "2**63": _v(lambda c: 2**63),
    "2**31": _v(lambda c: 2**31),
    "np.int64 max": _v(lambda c: np.int64(2**63 - 1)),
    "np.uint64 max": _v(lambda c: np.uint64(2**64 - 1)),
    "np.float32": _v(lambda c: np.float32(2.5)),
    "np.float16": _v(lambda c: np.float16(2.5)),
    "np.longdouble": _v(lambda c: np.longdouble(2.5)),
    "np.str_ 'auto'": _v(lambda c: np.str_("auto"), "refuse"),
    "float subclass": _v(lambda c: FloatSub(2.5)),
    "int subclass": _v(lambda c: IntSub(2)),
    "Fraction": _v(lambda c: Fraction(1, 3)),
    "Decimal": _v(lambda c: Decimal("2.5")),
    "__float__ raises": _v(lambda c: BoomFloat()),
    "__float__ gives 2.0": _v(lambda c: FloatLike()),
    "__index__ gives 1": _v(lambda c: Index2()),
    "__index__ raises": _v(lambda c: BoomIndex()),
    "__eq__ raises": _v(lambda c: BoomEq()),
    "__eq__ gives an array": _v(lambda c: ArrayEq(), "core"),
    "__hash__ raises": _v(lambda c: BoomHash()),
    "dict": _v(lambda c: {"x": 2.0}, "refuse", "core"),
    "empty dict": _v(lambda c: {}, "refuse"),
    "set": _v(lambda c: {2.0, 5.0}, "refuse"),
    "frozenset": _v(lambda c: frozenset([2.0]), "refuse"),
    "generator": _v(lambda c: (v for v in [2.0, 5.0]), "refuse", "core"),
    "iterator": _v(lambda c: iter([2.0, 5.0]), "refuse"),
    "range(2)": _v(lambda c: range(2)),
    "lambda": _v(lambda c: (lambda *a: 1.0), "refuse", "core"),
    "np.sin": _v(lambda c: np.sin, "refuse"),
    "type float": _v(lambda c: float, "refuse"),
    "module numpy": _v(lambda c: np, "refuse"),
    "object()": _v(lambda c: object(), "refuse", "core"),
    "Ellipsis": _v(lambda c: Ellipsis, "refuse"),
    "slice": _v(lambda c: slice(None, None, -1), "refuse"),
    "exception instance": _v(lambda c: ValueError("x"), "refuse"),
    "a Tape": _v(lambda c: c.tape("survey"), "refuse", "core"),
    "sequence whose __getitem__ raises": _v(lambda c: BoomSequence()),
    "sequence whose __len__ lies": _v(lambda c: LyingSequence()),
    # -- lists and tuples
    "[]": _v(lambda c: [], "core"),
    "()": _v(lambda c: ()),
    "[2.0, 5.0]": _v(lambda c: [2.0, 5.0]),
    "(2.0, 5.0)": _v(lambda c: (2.0, 5.0)),
    "[None, None]": _v(lambda c: [None, None], "refuse", "core"),
    "[2.0, 'a']": _v(lambda c: [2.0, "a"], "refuse"),
    "[2.0, 1j]": _v(lambda c: [2.0, 1j], "refuse"),
    "[True, False]": _v(lambda c: [True, False], "refuse"),
    "[[2.0, 5.0], [1.0]] (ragged)": _v(lambda c: [[2.0, 5.0], [1.0]], "core"),
    "[2.0, [5.0]] (ragged)": _v(lambda c: [2.0, [5.0]]),
    "[ones(2), ones(3)] (ragged)": _v(lambda c: [np.ones(2), np.ones(3)]),
    "list nested 100 deep": _v(lambda c: _deep_list(100)),
    "list nested 30 deep": _v(lambda c: _deep_list(30)),
    "self-referencing list": _v(lambda c: _self_list(), "refuse"),
    "[array(2.0), array(5.0)]": _v(lambda c: [np.array(2.0), np.array(5.0)]),
    "[10**30, 2]": _v(lambda c: [10**30, 2]),
    "[2**64, 2]": _v(lambda c: [2**64, 2]),
    "[nan, nan]": _v(lambda c: [float("nan")] * 2),
    "[np.ma.masked, 1.0]": _v(lambda c: [np.ma.masked, 1.0], "refuse"),
    "[dict, dict]": _v(lambda c: [{}, {}], "refuse"),
    "[Fraction, Fraction]": _v(lambda c: [Fraction(1, 2), Fraction(1, 3)]),
    "[Decimal, Decimal]": _v(lambda c: [Decimal(1), Decimal(2)]),
    "float subclass list": _v(lambda c: [FloatSub(2.0), IntSub(5)]),
    "Fortran [2, 5] column": _v(lambda c: np.asfortranarray(np.array([[2.0], [5.0]]))[:, 0]),
    "list of 2 escaped traced scalars": _v(lambda c: [c.escaped["scalar"]] * 2, "refuse"),
    # -- special arrays
    "object array of junk": _v(lambda c: np.array([None, "a"], dtype=object), "refuse", "core"),
    "object array of floats": _v(lambda c: np.array([2.0, 5.0], dtype=object)),
    "object array of arrays": _v(lambda c: _object_of_arrays()),
    "object array of complex": _v(lambda c: np.array([1j, 2.0], dtype=object), "refuse"),
    "object array of bools": _v(lambda c: np.array([True, False], dtype=object), "refuse"),
    "object array, 0-d None": _v(lambda c: np.array(None, dtype=object), "refuse"),
    "object array, empty": _v(lambda c: np.array([], dtype=object)),
    "object array of escaped traced": _v(
        lambda c: np.array([c.escaped["scalar"]] * 2, dtype=object), "refuse"),
    "masked array": _v(lambda c: np.ma.array([2.0, 5.0], mask=[0, 1]), "refuse", "core"),
    "masked array, nothing masked": _v(lambda c: np.ma.array([2.0, 5.0]), "refuse"),
    "np.matrix": _v(lambda c: np.matrix([[2.0, 5.0]])),
    "ndarray subclass with raising methods": _v(lambda c: _ndsub()),
    "structured array": _v(lambda c: np.zeros(2, dtype=[("a", "f8")]), "refuse"),
    "structured array, 2 fields": _v(lambda c: np.zeros(2, dtype=[("a", "f8"), ("b", "f8")]), "refuse"),
    "record array": _v(lambda c: np.rec.array([(2.0,), (5.0,)], dtype=[("a", "f8")]), "refuse"),
    "datetime64 array": _v(lambda c: np.array(["2020-01-01", "2020-01-02"], dtype="M8[D]"), "refuse", "core"),
    "timedelta64 array": _v(lambda c: np.array([2, 5], dtype="m8[s]"), "refuse"),
    "np.datetime64 scalar": _v(lambda c: np.datetime64("2020-01-01"), "refuse"),
    "str array": _v(lambda c: np.array(["2", "5"]), "refuse", "core"),
    "bytes array": _v(lambda c: np.array([b"2", b"5"]), "refuse"),
    "void array": _v(lambda c: np.zeros(2, dtype="V8"), "refuse"),
    "bool array": _v(lambda c: np.array([True, False]), "refuse", "core"),
    "complex array": _v(lambda c: np.array([2 + 0j, 5 + 1j]), "refuse", "core"),
    "complex64 array": _v(lambda c: np.array([2, 5], dtype=np.complex64), "refuse"),
    "complex 0-d array": _v(lambda c: np.array(2 + 1j), "refuse"),
    "float16 array": _v(lambda c: np.array([2.0, 5.0], dtype=np.float16)),
    "float32 array": _v(lambda c: np.array([2.0, 5.0], dtype=np.float32), "core"),
    "longdouble array": _v(lambda c: np.array([2.0, 5.0], dtype=np.longdouble)),
    "big-endian float64 array": _v(lambda c: np.array([2.0, 5.0], dtype=">f8")),
    "int8 array": _v(lambda c: np.array([2, 5], dtype=np.int8)),
    "int64 array": _v(lambda c: np.array([2, 5])),
    "int64 max array": _v(lambda c: np.array([2**63 - 1, -2**63], dtype=np.int64)),
    "uint64 max array": _v(lambda c: np.array([2**64 - 1, 5], dtype=np.uint64)),
    "0-d array 2.0": _v(lambda c: np.array(2.0), "core"),
    "empty (0,)": _v(lambda c: np.zeros(0), "core"),
    "empty (0, 2)": _v(lambda c: np.zeros((0, 2))),
    "empty (2, 0)": _v(lambda c: np.zeros((2, 0))),
    "ones (3,)": _v(lambda c: np.ones(3), "core"),
    "ones (2, 2)": _v(lambda c: np.ones((2, 2))),
    "ones (1, 2)": _v(lambda c: np.ones((1, 2))),
    "ones (3, 2)": _v(lambda c: np.ones((3, 2))),
    "ones (2, 2, 2)": _v(lambda c: np.ones((2, 2, 2))),
    "ones (2, 3)": _v(lambda c: np.ones((2, 3))),
    "ones (1,)*32": _v(lambda c: np.ones((1,) * 32)),
    "ones (1,)*64": _v(lambda c: np.ones((1,) * 64)),
    "ones (5000, 2) batch": _v(lambda c: np.ones((5000, 2))),
    "strided [2, 5]": _v(lambda c: np.array([2.0, 0.0, 5.0, 0.0])[::2]),
    "reversed [5, 2]": _v(lambda c: np.array([5.0, 2.0])[::-1]),
    "Fortran (3, 2)": _v(lambda c: np.asfortranarray(np.arange(6.0).reshape(3, 2) + 1)),
    "transposed (3, 2)": _v(lambda c: (np.arange(6.0).reshape(2, 3) + 1).T),
    "read-only [2, 5]": _v(lambda c: _readonly([2.0, 5.0]), "core"),
    "broadcast 2.0 to (2,)": _v(lambda c: np.broadcast_to(2.0, (2,))),
    "broadcast [2, 5] to (4, 2)": _v(lambda c: np.broadcast_to(np.array([2.0, 5.0]), (4, 2))),
    "unaligned [2, 5]": _v(lambda c: _unaligned([2.0, 5.0]), "core"),
    "[nan, nan] array": _v(lambda c: np.full(2, np.nan), "core"),
    "[inf, -inf] array": _v(lambda c: np.array([np.inf, -np.inf])),
    "[1e308, 1e308] array": _v(lambda c: np.full(2, 1e308)),
    "[-2, -5] array": _v(lambda c: np.array([-2.0, -5.0])),
    "[0, 0] array": _v(lambda c: np.zeros(2)),
    "__array__ gives [2, 5]": _v(lambda c: ArrayLike("__array__ gives [2, 5]", np.array([2.0, 5.0]))),
    "__array__ gives complex": _v(
        lambda c: ArrayLike("__array__ gives complex", np.array([2.0 + 1j, 5.0])), "refuse"),
    "__array__ gives object junk": _v(
        lambda c: ArrayLike("__array__ gives object junk", np.array([None, None], dtype=object)),
        "refuse"),
    "__array__ raises": _v(lambda c: BoomArray()),
    # -- traced values that escaped an earlier recording
    "escaped traced array": _v(lambda c: c.escaped["array"], "refuse", "core"),
    "escaped traced scalar": _v(lambda c: c.escaped["scalar"], "refuse", "core"),
    "escaped comparison": _v(lambda c: c.escaped["comparison"], "refuse", "core"),
    "escaped array comparison": _v(lambda c: c.escaped["array_comparison"], "refuse"),
}


def _object_of_arrays():
    a = np.empty(2, dtype=object)
    a[0], a[1] = np.ones(2), np.ones(3)
    return a


VALUE_NAMES = list(VALUES)
CORE_VALUES = [name for name, (_, tags) in VALUES.items() if "core" in tags]
REFUSED = {name for name, (_, tags) in VALUES.items() if "refuse" in tags}
# Values that are the point [2.0, 5.0] in another form: a tape must give
# exactly what it gives at np.array([2.0, 5.0]).
SAME_POINT = ["[2.0, 5.0]", "(2.0, 5.0)", "strided [2, 5]", "read-only [2, 5]", "unaligned [2, 5]",
              "big-endian float64 array", "float32 array", "float16 array", "longdouble array",
              "int64 array", "int8 array", "object array of floats", "[array(2.0), array(5.0)]",
              "__array__ gives [2, 5]", "ndarray subclass with raising methods",
              "float subclass list", "Fortran [2, 5] column"]

# Strings for mode= and method= arguments, beside the catalogue.
MODE_VALUES = {
    "'FORWARD'": _v(lambda c: "FORWARD"),
    "'forward '": _v(lambda c: "forward "),
    "b'forward'": _v(lambda c: b"forward"),
    "np.str_ 'reverse'": _v(lambda c: np.str_("reverse")),
    "array(['auto', 'forward'])": _v(lambda c: np.array(["auto", "forward"])),
    "array('auto') 0-d": _v(lambda c: np.array("auto")),
    "['auto']": _v(lambda c: ["auto"]),
    "'distance2'": _v(lambda c: "distance2"),
    "'star'": _v(lambda c: "star"),
    "'reverse'": _v(lambda c: "reverse"),
}
VALUES.update(MODE_VALUES)
VALUE_NAMES = list(VALUES)

# ---- parametric arrays ---------------------------------------------------------------------------

DTYPES = ["float64", "float32", "float16", "longdouble", ">f8", "int64", "int8", "uint64",
          "bool", "complex128", "complex64", "object", "object-junk", "M8[s]", "m8[s]",
          "U3", "S3"]
FILLS = ["point", "ones", "nan", "inf", "-inf", "huge", "neg", "zero", "tiny", "mixed"]
LAYOUTS = ["C", "F", "strided", "reversed", "read-only", "broadcast", "unaligned", "masked",
           "ndarray subclass"]
# Shapes relative to the tape: "in" = x.shape, "out" = f(x).shape, "B" a batch of 3.
SHAPES = ["in", "out", "B+in", "1+in", "in+k", "k+out", "B+out", "B+k+out", "B+in+k",
          "()", "(0,)", "(1,)", "(7,)", "(2, 2)", "(0, 2)", "in+(0,)", "(0,)+in", "(1,)*40"]


def _fill_value(fill, point):
    return {"point": point, "ones": 1.0, "nan": np.nan, "inf": np.inf, "-inf": -np.inf,
            "huge": 1e308, "neg": -3.0, "zero": 0.0, "tiny": 5e-324}.get(fill)


def shape_of(token, in_shape, out_shape):
    k, B = 2, 3
    table = {"in": in_shape, "out": out_shape, "B+in": (B,) + in_shape, "1+in": (1,) + in_shape,
             "in+k": in_shape + (k,), "k+out": (k,) + out_shape, "B+out": (B,) + out_shape,
             "B+k+out": (B, k) + out_shape, "B+in+k": (B,) + in_shape + (k,), "()": (),
             "(0,)": (0,), "(1,)": (1,), "(7,)": (7,), "(2, 2)": (2, 2), "(0, 2)": (0, 2),
             "in+(0,)": in_shape + (0,), "(0,)+in": (0,) + in_shape, "(1,)*40": (1,) * 40}
    if isinstance(token, list):
        return tuple(token)
    return tuple(table[token])


def make_array(dtype, shape, fill, layout, point=2.0):
    """An array of ``dtype`` and ``shape`` filled per ``fill`` and laid out
    per ``layout`` (see the module constants)."""
    value = _fill_value(fill, point)
    if fill == "mixed":
        base = np.resize(np.array([2.0, np.nan, -np.inf, 5.0, 0.0]), shape)
    else:
        base = np.full(shape, value, dtype=np.float64)
    if dtype == "object-junk":
        a = np.full(shape, None, dtype=object)
        if a.size:
            a.reshape(-1)[0] = "junk"
    elif dtype == "object":
        a = base.astype(object)
    elif dtype in ("M8[s]", "m8[s]"):
        a = np.nan_to_num(base, nan=0, posinf=0, neginf=0).astype(np.int64).astype(dtype)
    elif dtype in ("U3", "S3"):
        a = base.astype(dtype)
    else:
        with np.errstate(all="ignore"):
            if np.dtype(dtype).kind in "iub":
                base = np.nan_to_num(base, nan=0.0, posinf=1e9, neginf=-1e9).clip(-1e9, 1e9)
            a = base.astype(dtype)
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        a = big[..., ::2]
    elif layout == "reversed" and a.ndim:
        a = a[..., ::-1]
    elif layout == "read-only":
        a = np.array(a)
        a.flags.writeable = False
    elif layout == "broadcast":
        a = np.broadcast_to(a.reshape(-1)[:1].reshape(()) if a.size else a, shape)
    elif layout == "unaligned":
        a = _unaligned(a)
    elif layout == "masked":
        a = np.ma.array(a, mask=np.zeros(shape, dtype=bool))
    elif layout == "ndarray subclass":
        a = a.view(NdSub)
    return a


def array_refused(spec):
    """Whether an array spec is not real numbers (must be refused)."""
    _, dtype, _, _, layout = spec
    return (dtype in ("bool", "complex128", "complex64", "object-junk", "M8[s]", "m8[s]",
                      "U3", "S3") or layout == "masked")


# ---- tapes -------------------------------------------------------------------------------------

def _survey(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def _vector(x):
    return np.stack([x[0] * x[1], np.sin(x[0]), x[1] ** 2])


def _param(x, p):
    return np.sum(p * x ** 2)


def _guard(x):
    if x[0] > 0:
        return x[0] * x[1]
    return -x[1]


def _scalar_in(x):
    return np.sin(x) * x


def _zero_in(x):
    return x * 2.0


def _zero_in_scalar(x):
    return np.sum(x ** 2)


def _static(x, n, s):
    return np.sum(x ** n)


def _matrix(x):
    return np.sum(x ** 2, axis=0)


def _rich(x, p):
    import wengert as wg
    y = wg.where(x > 1.0, np.sqrt(x) * p, x ** 2)
    if x[0] > 0:
        y = y + 3.0
    return np.sum(y * np.array([1.5, 2.5]))


def _arrays(x):
    # Array entries of every kind: a product with a constant, maps, where,
    # cumsum, sums and a max tree.
    import wengert as wg
    h = np.tanh(x.reshape(3, 4) @ np.linspace(-1.0, 1.0, 20).reshape(4, 5))
    return np.sum(wg.where(h > 0, h, 0.1 * h)) + np.sum(np.cumsum(x) * x) + np.max(x)


# name -> (f, x, extras)
TAPES = {
    "survey": (_survey, [2.0, 5.0], ()),
    "vector": (_vector, [2.0, 5.0], ()),
    "param": (_param, [1.0, 2.0, 3.0], ("ones(3)",)),
    "guard": (_guard, [2.0, 5.0], ()),
    "scalar-in": (_scalar_in, 2.0, ()),
    "zero-in": (_zero_in, [], ()),
    "zero-in-scalar-out": (_zero_in_scalar, [], ()),
    "static": (_static, [2.0, 5.0], ("int 2", "str 'tag'")),
    "matrix": (_matrix, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], ()),
    "rich": (_rich, [2.0, 5.0], ("float 1.5",)),
    "arrays": (_arrays, [0.1 * k - 0.5 for k in range(12)], ()),
}
_EXTRAS = {"ones(3)": lambda: np.ones(3), "int 2": lambda: 2, "str 'tag'": lambda: "tag",
           "float 1.5": lambda: 1.5}
SCALAR_OUT = {"survey", "param", "guard", "scalar-in", "zero-in-scalar-out", "static", "rich",
              "arrays"}

# Tape methods: name -> (positional slots, takes extra arguments, keyword slots).
METHODS = {
    "forward": (["x"], True, []),
    "__call__": (["x"], True, []),
    "gradient": (["x"], True, []),
    "value_and_gradient": (["x"], True, []),
    "jvp": (["x", "v"], True, []),
    "vjp": (["x", "w"], True, []),
    "jacobian": (["x"], True, ["mode"]),
    "hessian": (["x"], True, ["w"]),
    "hvp": (["x", "v"], True, ["w"]),
    "sparse_jacobian": (["x"], True, ["mode"]),
    "sparse_hessian": (["x"], True, ["w", "method"]),
    "jacobian_colouring": ([], False, ["mode"]),
    "hessian_colouring": ([], False, ["method"]),
    "listing": (["x"], True, []),
    "trace": (["x", "direction"], True, ["mode"]),
    "save": (["path"], False, []),
    "colouring.recover": (["compressed"], False, []),
}


class Context:
    """What the values are built from: the tapes, escaped traced values,
    scratch files."""

    def __init__(self, scratch):
        import wengert as wg
        self.wg = wg
        self.scratch = scratch
        self._tapes = {}
        self.escaped = _escape(wg)
        self.paths = _paths(self, scratch)

    def tape(self, name):
        if name not in self._tapes:
            f, x, extras = TAPES[name]
            self._tapes[name] = self.wg.record(f, np.array(x, dtype=float),
                                               *[_EXTRAS[e]() for e in extras])
        return self._tapes[name]

    def fresh_tape(self, name):
        f, x, extras = TAPES[name]
        return self.wg.record(f, np.array(x, dtype=float), *[_EXTRAS[e]() for e in extras])


def _escape(wg):
    box = {}

    def f(x):
        box["array"] = x
        box["scalar"] = x[0]
        box["comparison"] = x[0] > 0
        box["array_comparison"] = x > 0
        return np.sum(x * x)

    wg.record(f, np.array([2.0, 5.0]))
    return box


def good_value(ctx, tape_name, slot, method=None):
    f, x, extras = TAPES[tape_name]
    tape = ctx.tape(tape_name)
    if slot == "x":
        return np.array(x, dtype=float)
    if slot == "v":
        return np.ones(tape.in_shape)
    if slot == "w":
        if method in ("hessian", "hvp", "sparse_hessian") and tape_name in SCALAR_OUT:
            return None
        return np.ones(tape.out_shape)
    if slot == "direction":
        return None
    if slot == "mode":
        return "forward" if method == "trace" else "auto"
    if slot == "method":
        return "star"
    if slot == "path":
        return os.path.join(ctx.scratch, "good.wgt")
    if slot == "compressed":
        colouring, p = tape.jacobian_colouring(), tape.jacobian_colouring().n_colours
        point = np.array(x, dtype=float)
        if colouring.kind == "row":
            return tape.vjp(point, colouring.seed.T.reshape((p,) + tape.out_shape))
        return tape.jvp(point, colouring.seed.reshape(tape.in_shape + (p,)))
    if slot.startswith("extra"):
        i = int(slot[5:])
        return _EXTRAS[extras[i]]() if i < len(extras) else 1.5
    raise KeyError(slot)


def build(ctx, spec, good=None, in_shape=(2,), out_shape=(), point=2.0):
    """The value a spec names (``good`` is a thunk for ``"=good"``)."""
    if spec == GOOD:
        return good()
    if isinstance(spec, str):
        return VALUES[spec][0](ctx)
    if isinstance(spec, list) and spec and spec[0] == "arr":
        _, dtype, shape, fill, layout = spec
        return make_array(dtype, shape_of(shape, tuple(in_shape), tuple(out_shape)), fill,
                          layout, point)
    if isinstance(spec, list) and spec and spec[0] == "path":
        return ctx.paths[spec[1]]()
    raise ValueError(f"unknown value spec {spec!r}")


def describe(spec):
    if spec == GOOD:
        return "good"
    if isinstance(spec, str):
        return f"<{spec}>"
    if spec[0] == "arr":
        _, dtype, shape, fill, layout = spec
        shape = shape if isinstance(shape, str) else tuple(shape)
        return f"<{dtype} array {shape} {fill} {layout}>"
    if spec[0] == "path":
        return f"<path: {spec[1]}>"
    if spec[0] == "mut":
        return f"<{spec[1]}>"
    return repr(spec)


# ---- paths -------------------------------------------------------------------------------------

def _paths(ctx, scratch):
    valid = os.path.join(scratch, "valid.wgt")
    if not os.path.exists(valid):
        ctx.tape("survey").save(valid)
    with open(valid, "rb") as fp:
        data = fp.read()

    def file_with(name, content):
        def make():
            path = os.path.join(scratch, name)
            with open(path, "wb") as fp:
                fp.write(content)
            return path
        return make

    def link(name, target):
        def make():
            path = os.path.join(scratch, name)
            if not os.path.lexists(path):
                os.symlink(target, path)
            return path
        return make

    def opened():
        return open(valid, "rb")

    import pathlib
    rng = np.random.default_rng(7)
    return {
        "valid file": lambda: valid,
        "valid file as bytes": lambda: os.fsencode(valid),
        "valid file as pathlib.Path": lambda: pathlib.Path(valid),
        "valid file as str subclass": lambda: StrSub(valid),
        "missing file": lambda: os.path.join(scratch, "missing.wgt"),
        "missing file as bytes": lambda: os.fsencode(os.path.join(scratch, "missing.wgt")),
        "file in a missing directory": lambda: os.path.join(scratch, "no-such-dir", "t.wgt"),
        "a directory": lambda: scratch,
        "a directory as pathlib.Path": lambda: pathlib.Path(scratch),
        "a directory with trailing slash": lambda: scratch + os.sep,
        "a file with trailing slash": lambda: valid + os.sep,
        "a path through a file": lambda: os.path.join(valid, "t.wgt"),
        "empty string": lambda: "",
        "'.'": lambda: ".",
        "string with NUL": lambda: os.path.join(scratch, "a\0b.wgt"),
        "bytes with NUL": lambda: os.fsencode(os.path.join(scratch, "a\0b.wgt")),
        "name of 300 characters": lambda: os.path.join(scratch, "x" * 300 + ".wgt"),
        "path of 5000 characters": lambda: os.path.join(scratch, *(["d" * 50] * 100)),
        "undecodable bytes name": lambda: os.path.join(os.fsencode(scratch), b"\xff\xfe.wgt"),
        "surrogate-escaped str name": lambda: os.path.join(scratch, "\udcff.wgt"),
        "empty file": file_with("empty.wgt", b""),
        "random bytes file": file_with("random.wgt", rng.bytes(4096)),
        "truncated tape file": file_with("truncated.wgt", data[: len(data) // 2]),
        "pickle file": file_with("pickle.wgt", pickle.dumps(ctx.tape("survey"))),
        "text file": file_with("text.wgt", b"not a tape\n"),
        "symlink loop": link("loop.wgt", os.path.join(scratch, "loop.wgt")),
        "dangling symlink": link("dangling.wgt", os.path.join(scratch, "nowhere.wgt")),
        "symlink to a directory": link("dirlink", scratch),
        "/dev/null": lambda: "/dev/null",
        "/dev/zero": lambda: "/dev/zero",
        "/proc/self/status": lambda: "/proc/self/status",
        "/proc/hostile.wgt (unwritable)": lambda: "/proc/hostile.wgt",
        "None": lambda: None,
        "int 0": lambda: 0,
        "int -1": lambda: -1,
        "int 10**30": lambda: 10**30,
        "float": lambda: 1.5,
        "list of the path": lambda: [valid],
        "io.BytesIO of a tape": lambda: io.BytesIO(data),
        "open file object": opened,
        "__fspath__ raises": lambda: BoomPath(),
        "__fspath__ gives an int": lambda: IntPath(),
    }


PATH_NAMES = [
    "valid file", "valid file as bytes", "valid file as pathlib.Path", "valid file as str subclass",
    "missing file", "missing file as bytes", "file in a missing directory", "a directory",
    "a directory as pathlib.Path", "a directory with trailing slash", "a file with trailing slash",
    "a path through a file", "empty string", "'.'", "string with NUL", "bytes with NUL",
    "name of 300 characters", "path of 5000 characters", "undecodable bytes name",
    "surrogate-escaped str name", "empty file", "random bytes file", "truncated tape file",
    "pickle file", "text file", "symlink loop", "dangling symlink", "symlink to a directory",
    "/dev/null", "/dev/zero", "/proc/self/status", "/proc/hostile.wgt (unwritable)", "None",
    "int 0", "int -1", "int 10**30", "float", "list of the path", "io.BytesIO of a tape",
    "open file object", "__fspath__ raises", "__fspath__ gives an int",
]
# Paths save() may refuse with a plain OSError (noted, not a failure).
MISSING_PATHS = {"missing file", "missing file as bytes", "file in a missing directory",
                 "dangling symlink", "empty string"}


# ---- the Tape constructor and pickles: field mutations ------------------------------------------

def _set(array, index, value, dtype=None):
    array = np.array(array, dtype=dtype)
    if array.size:
        array[index] = value
    return array


def _select_row(state):
    codes = np.asarray(state["opcodes"])
    rows = np.flatnonzero((codes >> 6) == 0)
    return int(rows[-1]) if rows.size else 0


FIELD_MUTATIONS = {
    "opcodes": {
        "code 255 first": lambda s: _set(s["opcodes"], 0, 255),
        "code 63 (base mask) first": lambda s: _set(s["opcodes"], 0, 63),
        "code 0 everywhere": lambda s: np.zeros_like(s["opcodes"]),
        "one fewer than operand rows": lambda s: s["opcodes"][:-1].copy(),
        "one more than operand rows": lambda s: np.append(s["opcodes"], s["opcodes"][-1:]),
        "2-D": lambda s: s["opcodes"].reshape(-1, 1).copy(),
        "float": lambda s: s["opcodes"].astype(float),
        "int64 with -1": lambda s: _set(s["opcodes"], 0, -1, np.int64),
        "int64 with 256": lambda s: _set(s["opcodes"], 0, 256, np.int64),
        "int64 copy": lambda s: s["opcodes"].astype(np.int64),
        "empty": lambda s: np.zeros(0, np.uint8),
        "bool": lambda s: s["opcodes"].astype(bool),
        "non-contiguous": lambda s: np.repeat(s["opcodes"], 2)[::2],
        "read-only": lambda s: _readonly(s["opcodes"]),
        "list": lambda s: s["opcodes"].tolist(),
        "object": lambda s: s["opcodes"].astype(object),
    },
    "args": {
        "operand 10**6": lambda s: _set(s["args"], (-1, 0), 10**6),
        "operand 2**31-1": lambda s: _set(s["args"], (-1, 0), 2**31 - 1),
        "operand -1": lambda s: _set(s["args"], (-1, 0), -1),
        "operand -2**31": lambda s: _set(s["args"], (0, 0), -2**31),
        "operand refers to itself": lambda s: _set(
            s["args"], (-1, 0), len(s["args"]) - 1 + _first_slot(s)),
        "operand refers forward": lambda s: _set(s["args"], (0, 0), len(s["args"]) - 1 + _first_slot(s)),
        "second operand 10**6 everywhere": lambda s: _set(s["args"], (slice(None), 1), 10**6),
        "second operand -1 everywhere": lambda s: _set(s["args"], (slice(None), 1), -1),
        "shape (n, 3)": lambda s: np.zeros((len(s["args"]), 3), np.int32),
        "flat": lambda s: s["args"].reshape(-1).copy(),
        "transposed (2, n)": lambda s: s["args"].T.copy(),
        "Fortran order": lambda s: np.asfortranarray(s["args"]),
        "non-contiguous": lambda s: np.repeat(s["args"], 2, axis=0)[::2],
        "int64 with 2**40": lambda s: _set(s["args"], (0, 0), 2**40, np.int64),
        "uint32 with 2**32-1": lambda s: _set(s["args"], (0, 0), 2**32 - 1, np.uint32),
        "float": lambda s: s["args"].astype(float),
        "empty (0, 2)": lambda s: np.zeros((0, 2), np.int32),
        "one row fewer": lambda s: s["args"][:-1].copy(),
        "read-only": lambda s: _readonly(s["args"]),
        "select's side-table index 10**6": lambda s: _set(s["args"], (_select_row(s), 1), 10**6),
    },
    "consts": {
        "nan": lambda s: np.full_like(s["consts"], np.nan),
        "inf": lambda s: np.full_like(s["consts"], np.inf),
        "complex": lambda s: s["consts"].astype(complex) + 1j,
        "object": lambda s: s["consts"].astype(object),
        "2-D": lambda s: s["consts"].reshape(-1, 1).copy(),
        "int": lambda s: s["consts"].astype(np.int64),
        "empty": lambda s: np.zeros(0),
        "str": lambda s: s["consts"].astype(str),
        "float32": lambda s: s["consts"].astype(np.float32),
        "big-endian": lambda s: s["consts"].astype(">f8"),
        "non-contiguous": lambda s: np.repeat(s["consts"], 2)[::2],
    },
    "aux": {
        "entry 10**6": lambda s: _set(s["aux"], 0, 10**6) if len(s["aux"]) else np.array([10**6], np.int32),
        "entry -1": lambda s: _set(s["aux"], 0, -1) if len(s["aux"]) else np.array([-1], np.int32),
        "entry refers forward": lambda s: (_set(s["aux"], 0, len(s["args"]) - 1 + _first_slot(s))
                                           if len(s["aux"]) else s["aux"]),
        "empty": lambda s: np.zeros(0, np.int32),
        "odd length": lambda s: s["aux"][:-1].copy(),
        "2-D": lambda s: s["aux"].reshape(-1, 1).copy(),
        "float": lambda s: s["aux"].astype(float),
    },
    "outputs": {
        "slot 10**6": lambda s: np.full_like(s["outputs"], 10**6),
        "slot -1": lambda s: np.full_like(s["outputs"], -1),
        "slot 2**31-1": lambda s: np.full_like(s["outputs"], 2**31 - 1),
        "empty": lambda s: np.zeros(0, np.int32),
        "2-D": lambda s: s["outputs"].reshape(-1, 1).copy(),
        "an input slot": lambda s: np.zeros_like(s["outputs"]),
        "a parameter slot": lambda s: np.full_like(s["outputs"], _n_inputs(s)),
        "float": lambda s: s["outputs"].astype(float),
        "one more": lambda s: np.append(s["outputs"], s["outputs"][:1]),
    },
    "in_shape": {
        "(-1,)": lambda s: (-1,),
        "(2**31,)": lambda s: (2**31,),
        "(2**16, 2**16)": lambda s: (2**16, 2**16),
        "(2**30,)": lambda s: (2**30,),
        "(2.0,)": lambda s: (2.0,),
        "(True, True)": lambda s: (True, True),
        "((2,),)": lambda s: ((2,),),
        "int 2": lambda s: 2,
        "str '2'": lambda s: "2",
        "None": lambda s: None,
        "array([2])": lambda s: np.array([2]),
        "()": lambda s: (),
        "(0,)": lambda s: (0,),
        "(1,)*65": lambda s: (1,) * 65,
        "list": lambda s: list(s["in_shape"]),
        "(np.int64(2),)": lambda s: tuple(np.int64(d) for d in s["in_shape"]),
        "(1, 2)": lambda s: (1, 2),
        "one more input": lambda s: (_n_inputs(s) + 1,),
        "one fewer input": lambda s: (max(_n_inputs(s) - 1, 0),),
        "(10**30,)": lambda s: (10**30,),
    },
    "out_shape": {
        "(-1,)": lambda s: (-1,),
        "(2**31,)": lambda s: (2**31,),
        "(2,)": lambda s: (2,),
        "(0,)": lambda s: (0,),
        "str": lambda s: "x",
        "None": lambda s: None,
        "(1.0,)": lambda s: (1.0,),
        "(1,)*65": lambda s: (1,) * 65,
        "(1,)": lambda s: (1,),
    },
    "param_specs": {
        "None": lambda s: None,
        "str": lambda s: "param",
        "int": lambda s: 3,
        "dict": lambda s: {"param": 1},
        "generator": lambda s: (p for p in s["param_specs"]),
        "unknown kind": lambda s: [("bogus", 1)],
        "empty tuple entry": lambda s: [()],
        "param at the wrong slot": lambda s: [("param", (), 99, np.array(1.5))],
        "param shape mismatch": lambda s: [("param", (3,), _n_inputs(s), np.array(1.5))],
        "param complex values": lambda s: [("param", (), _n_inputs(s), np.array(1.5 + 1j))],
        "param object values": lambda s: [("param", (), _n_inputs(s), np.array(None, dtype=object))],
        "param str values": lambda s: [("param", (), _n_inputs(s), "1.5")],
        "param negative shape": lambda s: [("param", (-1,), _n_inputs(s), np.array(1.5))],
        "param huge shape": lambda s: [("param", (2**30,), _n_inputs(s), np.array(1.5))],
        "param slot 10**30": lambda s: [("param", (), 10**30, np.array(1.5))],
        "param slot as float": lambda s: [("param", (), float(_n_inputs(s)), np.array(1.5))],
        "param slot as array": lambda s: [("param", (), np.array([_n_inputs(s)]), np.array(1.5))],
        "param 3 fields": lambda s: [("param", (), _n_inputs(s))],
        "extra static": lambda s: list(s["param_specs"]) + [("static", 1)],
        "static with 3 fields": lambda s: [("static", 1, 2)],
        "two params": lambda s: [("param", (), _n_inputs(s), np.array(1.5))] * 2,
        "param with escaped traced value": lambda s: [("param", (), _n_inputs(s), None)],
    },
    "guards": {
        "code 255": lambda s: [(255, 0, 1, True, "here", "x > 0")],
        "code of an arithmetic operation": lambda s: [(65, 0, 1, True, "here", "x > 0")],
        "code 0": lambda s: [(0, 0, 0, True, "here", "x > 0")],
        "operand 10**6": lambda s: [(172, 10**6, 0, True, "here", "x > 0")],
        "operand -1": lambda s: [(172, -1, 0, True, "here", "x > 0")],
        "constant index 10**6": lambda s: [(172, 0, 10**6, True, "here", "x > 0")],
        "operand 2**70": lambda s: [(172, 2**70, 0, True, "here", "x > 0")],
        "operand float": lambda s: [(172, 0.5, 0, True, "here", "x > 0")],
        "operand str": lambda s: [(172, "0", 0, True, "here", "x > 0")],
        "outcome 2": lambda s: [(172, 0, 0, 2, "here", "x > 0")],
        "outcome None": lambda s: [(172, 0, 0, None, "here", "x > 0")],
        "location object": lambda s: [(172, 0, 0, True, object(), "x > 0")],
        "text raising str": lambda s: [(172, 0, 0, True, "here", BoomStr())],
        "3 fields": lambda s: [(172, 0, 0)],
        "None": lambda s: None,
        "str": lambda s: "guard",
        "list of None": lambda s: [None],
        "dict": lambda s: {"a": 1},
        "10**5 guards": lambda s: [(172, 0, 0, True, "here", "x > 0")] * 10**5,
        "vv code with operand 10**6": lambda s: [(0b01 << 6 | 44, 0, 10**6, True, "here", "x > y")],
    },
    "n_params": {
        "-1": lambda s: -1,
        "2**31": lambda s: 2**31,
        "2**40": lambda s: 2**40,
        "10**9": lambda s: 10**9,
        "1.5": lambda s: 1.5,
        "str '1'": lambda s: "1",
        "True": lambda s: True,
        "np.int64(-1)": lambda s: np.int64(-1),
        "None": lambda s: None,
        "one more": lambda s: s["n_params"] + 1,
        "nan": lambda s: float("nan"),
    },
}


class BoomStr(_Named):
    label = "__str__ raises"

    def __str__(self):
        raise Boom("__str__")


def _n_inputs(state):
    return int(np.prod(state["in_shape"]))


def _first_slot(state):
    return _n_inputs(state) + int(state["n_params"])


CTOR_FIELDS = list(FIELD_MUTATIONS)


def fresh_state(ctx, tape_name):
    """The state dict of a fresh recording of ``tape_name`` (arrays copied)."""
    state = ctx.fresh_tape(tape_name)._state()
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            out[key] = value.copy()
        elif key == "param_specs":
            out[key] = [type(spec)(*(v.copy() if isinstance(v, np.ndarray) else v for v in spec))
                         for spec in value]
        else:
            out[key] = copy.deepcopy(value)
    return out


def mutated(ctx, state, field, spec):
    """``state[field]`` replaced per ``spec`` (a mutation name, or a catalogue value)."""
    state = dict(state)
    if isinstance(spec, list) and spec[0] == "mut":
        try:
            state[field] = FIELD_MUTATIONS[field][spec[1]](state)
        except Exception:   # an earlier change left nothing this one applies to
            pass
    elif isinstance(spec, list) and spec[0] == "code":
        codes = np.array(state["opcodes"])
        row = {"first": 0, "last": -1, "select": _select_row(state)}[spec[2]]
        codes[row] = spec[1]
        state["opcodes"] = codes
    else:
        state[field] = build(ctx, spec)
    return state


# Changes made to the objects passed to wg.Tape(...) after it returned.
AFTER_MUTATIONS = {
    "opcodes[:] = 255": ("opcodes", lambda s: s["opcodes"].__setitem__(slice(None), 255)),
    "opcodes[:] = 0": ("opcodes", lambda s: s["opcodes"].__setitem__(slice(None), 0)),
    "args[:] = 2**31-1": ("args", lambda s: s["args"].__setitem__(slice(None), 2**31 - 1)),
    "args[:] = -1": ("args", lambda s: s["args"].__setitem__(slice(None), -1)),
    "consts[:] = nan": ("consts", lambda s: s["consts"].__setitem__(slice(None), np.nan)),
    "aux[:] = 10**6": ("aux", lambda s: s["aux"].__setitem__(slice(None), 10**6)),
    "outputs[:] = 10**6": ("outputs", lambda s: s["outputs"].__setitem__(slice(None), 10**6)),
    "parameter values[...] = 99": ("param_specs", lambda s: [
        spec[3].__setitem__(Ellipsis, 99.0) for spec in s["param_specs"] if spec[0] == "param"]),
    "param_specs.clear()": ("param_specs", lambda s: s["param_specs"].clear()),
    "param_specs.append(junk)": ("param_specs", lambda s: s["param_specs"].append(("bogus",))),
    "guards[:] = junk": ("guards", lambda s: s["guards"].__setitem__(
        slice(None), [(255, 10**6, 10**6, True, "x", "y")] * len(s["guards"]))),
    "guards.clear()": ("guards", lambda s: s["guards"].clear()),
    "in_shape list .append(7)": ("in_shape", lambda s: s["in_shape"].append(7)),
    "out_shape list .append(7)": ("out_shape", lambda s: s["out_shape"].append(7)),
}


# ---- recorded functions -------------------------------------------------------------------------
#
# Source text of functions f(x) (x traced) that use a hostile value ``h``;
# ``record`` cases evaluate them with numpy as np, wengert as wg, math,
# scipy, and the escaped traced values in ``esc``.

OPS_WITH_H = [
    "lambda x: x + h", "lambda x: h + x", "lambda x: x * h", "lambda x: h - x",
    "lambda x: x / h", "lambda x: h / x", "lambda x: x ** h", "lambda x: h ** x",
    "lambda x: x[0] + h", "lambda x: h * x[0]", "lambda x: x[0] ** h", "lambda x: h ** x[0]",
    "lambda x: x @ h", "lambda x: h @ x", "lambda x: x > h", "lambda x: wg.where(x > h, x, 0.0)",
    "lambda x: x[0] if x[0] > h else -x[0]", "lambda x: x[0] if h < x[0] else -x[0]",
    "lambda x: x == h", "lambda x: x[h]", "lambda x: x[0, h]", "lambda x: x.reshape(h)",
    "lambda x: x.transpose(h)", "lambda x: x.squeeze(axis=h)", "lambda x: x.astype(h)",
    "lambda x: _setitem(x, 0, h)", "lambda x: _setitem(x, h, 1.0)",
    "lambda x: _setitem(x, slice(None), h)",
    "lambda x: np.sum(x, axis=h)", "lambda x: np.sum(x, keepdims=h)", "lambda x: np.mean(x, axis=h)",
    "lambda x: np.prod(x, axis=h)", "lambda x: x.max(axis=h)", "lambda x: np.cumsum(x, axis=h)",
    "lambda x: np.diff(x, n=h)", "lambda x: np.linalg.norm(x, ord=h)",
    "lambda x: np.linalg.norm(x, axis=h)", "lambda x: np.where(x > 0, x, h)",
    "lambda x: np.where(h, x, x)", "lambda x: np.maximum(x, h)", "lambda x: np.minimum(h, x)",
    "lambda x: np.arctan2(x, h)", "lambda x: np.hypot(h, x)", "lambda x: np.logaddexp(x, h)",
    "lambda x: np.clip(x, h, None)", "lambda x: np.clip(x, None, h)", "lambda x: np.dot(x, h)",
    "lambda x: np.dot(h, x)", "lambda x: np.outer(x, h)", "lambda x: np.stack([x, h])",
    "lambda x: np.stack([x, x], axis=h)", "lambda x: np.concatenate([x, h])",
    "lambda x: np.concatenate([x, x], axis=h)", "lambda x: np.sin(x, out=h)",
    "lambda x: np.add(x, x, where=h)", "lambda x: np.sin(x, dtype=h)", "lambda x: h",
    "lambda x: (x, h)", "lambda x: [x[0], h]", "lambda x: x * 0.0 + h",
]

WG_WITH_H = [
    "lambda x: wg.where(x > 0, x, h)", "lambda x: wg.where(x > 0, h, x)",
    "lambda x: wg.where(h, x, x)", "lambda x: wg.where(x > h, x, x)",
    "lambda x: wg.sum(x, axis=h)", "lambda x: wg.sum(x, keepdims=h)",
    "lambda x: wg.prod(x, axis=h)", "lambda x: wg.arctan2(x, h)", "lambda x: wg.arctan2(h, x)",
    "lambda x: wg.hypot(x, h)", "lambda x: wg.maximum(x, h)", "lambda x: wg.minimum(h, x)",
    "lambda x: wg.logaddexp(x, h)", "lambda x: wg.power(x, h)", "lambda x: wg.power(h, x)",
    "lambda x: wg.clip(x, h, None)", "lambda x: wg.clip(x, None, h)", "lambda x: wg.dot(x, h)",
    "lambda x: wg.dot(h, x)", "lambda x: wg.array([x[0], h])", "lambda x: wg.array([x, h])",
    "lambda x: wg.stack([x, h])", "lambda x: wg.stack([x, x], axis=h)",
    "lambda x: wg.concatenate([x, h])", "lambda x: wg.concatenate([x, x], axis=h)",
    "lambda x: wg.sin([x[0], h])", "lambda x: wg.exp((x[0], h))", "lambda x: wg.sigmoid(h) * x",
    "lambda x: wg.erf(x) + h",
]

# Plain (untraced) calls of the wg.* functions with a hostile argument.
WG_PLAIN = [
    "wg.sin(h)", "wg.exp(h)", "wg.sqrt(h)", "wg.reciprocal(h)", "wg.sigmoid(h)", "wg.erf(h)",
    "wg.abs(h)", "wg.sign(h)", "wg.arctan2(h, 1.0)", "wg.maximum(h, 1.0)", "wg.power(h, 2.0)",
    "wg.where(h, 1.0, 0.0)", "wg.where(True, h, 0.0)", "wg.sum(h)",
    "wg.sum(np.ones(3), axis=h)", "wg.prod(np.ones(3), axis=h)", "wg.dot(h, np.ones(2))",
    "wg.clip(h, 0.0, 1.0)", "wg.array(h)", "wg.stack(h)", "wg.concatenate(h)",
]

# Functions that are hostile on their own (no h).
BAD_F = [
    "None", "1.0", "'f'", "np.ndarray", "float", "int", "complex", "str", "list", "dict",
    "np.asarray", "np.array", "np.linalg.eig", "np.linalg.inv", "np.fft.fft", "np.sort",
    "np.argmax", "np.isnan", "np.floor", "np.round", "np.cumprod", "np.median", "np.var",
    "math.sin", "math.exp", "lambda: 1.0", "lambda x, y: x", "lambda *, x: x",
    "lambda x: None", "lambda x: 'a'", "lambda x: 1.0", "lambda x: 1 + 2j", "lambda x: x * (1 + 2j)",
    "lambda x: True", "lambda x: np.ones(2)", "lambda x: np.array([x[0], 1.0])",
    "lambda x: np.array(['a'])", "lambda x: [x[0], x[1]]", "lambda x: (x[0], x[1])",
    "lambda x: {'a': x}", "lambda x: (v for v in x)", "lambda x: x > 0", "lambda x: x[0] > 0",
    "lambda x: [x, x[:1]]", "lambda x: x.astype(complex)", "lambda x: x.astype(int)",
    "lambda x: x.astype(np.float32)", "lambda x: x.astype(object)", "lambda x: x.tolist()",
    "lambda x: x.item()", "lambda x: float(x[0])", "lambda x: int(x[0])",
    "lambda x: complex(x[0])", "lambda x: round(x[0])", "lambda x: range(x[0])",
    "lambda x: len(x[0])", "lambda x: hash(x)", "lambda x: [v for v in x[0]]",
    "lambda x: x % 2.0", "lambda x: x // 2.0", "lambda x: divmod(x, 2.0)", "lambda x: x << 1",
    "lambda x: ~x", "lambda x: x & x", "lambda x: x | 1", "lambda x: f'{x[0]:.3f}'",
    "lambda x: np.sum(x) if x else 0.0", "lambda x: x[0] if x[0] else x[1]",
    "lambda x: x[0] and x[1]", "lambda x: not x[0]", "lambda x: max(x[0], x[1])",
    "lambda x: sorted(x)", "lambda x: np.asarray(x, dtype=float)",
    "lambda x: np.array(x, dtype=float)", "lambda x: np.array(x)", "lambda x: np.asarray(x)",
    "lambda x: np.float64(x[0])", "lambda x: np.exp(x, out=np.empty(2))",
    "lambda x: np.add(x, x, where=np.array([True, False]))",
    "lambda x: np.sin(x, dtype=np.float32)", "lambda x: np.add.reduce(x)",
    "lambda x: np.add.accumulate(x)", "lambda x: np.add.outer(x, x)",
    "lambda x: np.multiply.at(x, 0, 2.0)", "lambda x: np.maximum.reduce(x)",
    "lambda x: np.einsum('i,i', x, x)", "lambda x: np.linalg.norm(x, ord=3)",
    "lambda x: np.linalg.norm(x, ord=np.inf)", "lambda x: np.linalg.norm(x, ord='fro')",
    "lambda x: np.trace(x)", "lambda x: np.diff(x, n=-1)", "lambda x: np.diff(x, n=5)",
    "lambda x: np.cumsum(x, axis=3)", "lambda x: np.mean(x[:0])", "lambda x: np.sum(x[:0])",
    "lambda x: np.prod(x[:0])", "lambda x: np.max(x[:0])", "lambda x: x.max(axis=1)",
    "lambda x: x[5]", "lambda x: x[-3]", "lambda x: x[1.5]", "lambda x: x['a']",
    "lambda x: x[None]", "lambda x: x[::0]", "lambda x: x[[0, 5]]",
    "lambda x: x[np.array([True])]", "lambda x: x[np.array([0.5])]", "lambda x: x[0, 0]",
    "lambda x: x[..., ...]", "lambda x: x[x > 0]", "lambda x: x[x[0]]", "lambda x: x.reshape(3)",
    "lambda x: x.reshape(-1, -1)", "lambda x: x.reshape(2**40)", "lambda x: x.transpose(1, 0)",
    "lambda x: x.squeeze(axis=0)", "lambda x: np.stack([x, x], axis=5)",
    "lambda x: np.concatenate([x, x[None]])", "lambda x: np.concatenate([x, x], axis=1)",
    "lambda x: np.stack([]) + x", "lambda x: x @ x[None]", "lambda x: x @ np.ones(3)",
    "lambda x: np.dot(x, np.ones((3, 3)))", "lambda x: np.dot(x[None, None], x[None, None])",
    "lambda x: np.where(x > 0)", "lambda x: np.where(x > 0, x)", "lambda x: np.nonzero(x)",
    "lambda x: np.broadcast_to(x, (3, 3))", "lambda x: np.tile(x, 2)", "lambda x: np.repeat(x, 2)",
    "lambda x: np.pad(x, 1)", "lambda x: np.flip(x)", "lambda x: np.roll(x, 1)",
    "lambda x: np.sum(x, axis=(0, 0))", "lambda x: np.sum(x, axis=1.5)",
    "lambda x: np.sum(x, axis='a')", "lambda x: np.sum(x, dtype=np.float32)",
    "lambda x: np.sum(x, out=np.empty(()))", "lambda x: np.sum(x, where=x > 0)",
    "lambda x: np.sum(x, initial=1.0)", "lambda x: np.clip(x)", "lambda x: np.clip(x, 'a', 1)",
    "lambda x: np.all(x > 0, axis=3)", "lambda x: np.any(x, out=np.empty((), dtype=bool))",
    "lambda x: (x > 0).all(where=x > 0)", "lambda x: x.any(keepdims='a')",
    "lambda x: x * 2.0 if np.all(x > 0) else x", "lambda x: x if (x > 3).any(axis=0) else -x",
    "lambda x: wg.where(np.any(x < 3, axis=-1, keepdims=True), x, -x)",
    "lambda x: _setitem(x, 0, 1 + 2j)", "lambda x: _setitem(x, 5, 1.0)",
    "lambda x: _setitem(x, slice(None), np.ones(3))", "lambda x: _setitem(x, 0, 'a')",
    "lambda x: _setitem(x, 0, None)", "lambda x: np.copyto(x, 1.0)", "lambda x: np.put(x, 0, 1.0)",
    "lambda x: x.fill(1.0)", "lambda x: x.sort()", "lambda x: x.resize(3)",
    "lambda x: x.view(np.int64)", "lambda x: np.frompyfunc(lambda a: a, 1, 1)(x)",
    "lambda x: np.vectorize(lambda a: a * 2)(x)", "lambda x: np.apply_along_axis(np.sum, 0, x)",
    "lambda x: np.piecewise(x, [x > 0], [1.0])", "lambda x: np.select([x > 0], [x])",
    "lambda x: np.interp(x, [0, 1], [0, 1])", "lambda x: np.polyval([1.0, 2.0], x)",
    "lambda x: scipy.special.gamma(x)", "lambda x: scipy.special.logsumexp(x)",
    "lambda x: x.real", "lambda x: x.imag", "lambda x: np.real(x)", "lambda x: np.conj(x)",
    "lambda x: np.angle(x)", "lambda x: x.dtype", "lambda x: x.ndim", "lambda x: x.nbytes",
    "lambda x: x.ctypes", "lambda x: x.data", "lambda x: memoryview(x)", "lambda x: bytes(x)",
    "lambda x: pickle.dumps(x)", "lambda x: copy.deepcopy(x)", "lambda x: copy.copy(x)",
    "lambda x: np.save(io.BytesIO(), x)", "lambda x: x.__array__()",
    "lambda x: x.__array_interface__", "lambda x: np.from_dlpack(x)",
    "lambda x: wg.record(lambda y: y * x, np.ones(2))",
    "lambda x: wg.record(lambda y: np.sum(y), x)",
    "lambda x: wg.grad(lambda y: np.sum(y ** 2))(x)",
    "lambda x: wg.grad(lambda y: np.sum(y ** 2) * x[0])(np.ones(2))",
    "lambda x: _tape.forward(x)", "lambda x: _tape.gradient(x)",
    "lambda x: (_ for _ in ()).throw(Boom('user'))",
    # Accepted oddities, replayed every way afterwards.
    "lambda x: x", "lambda x: x[::-1]", "lambda x: x[0]", "lambda x: 0 * x", "lambda x: x - x",
    "lambda x: np.zeros(2)", "lambda x: 2.0 + 0 * x[0]", "lambda x: x[:0]",
    "lambda x: np.stack([x, x])[:, :0]", "lambda x: x[None, :, None]",
    "lambda x: wg.where(x > 0, x / 0.0, np.nan)", "lambda x: x ** 1e308",
    "lambda x: np.sum(np.exp(x * 1e300))", "lambda x: wg.where(x[0] > x[1], x, x[::-1])",
]

X_FOR_F = {
    "[2, 5]": lambda: np.array([2.0, 5.0]),
    "2.0": lambda: np.array(2.0),
    "2x3": lambda: np.arange(1.0, 7.0).reshape(2, 3),
}

# Expressions on traced values that escaped a finished recording (``esc``),
# outside any recording or inside a new one.
ESCAPED = [
    "esc['array'] + 1.0", "np.sin(esc['scalar'])", "wg.sin(esc['array'])",
    "bool(esc['comparison'])", "esc['array'][0]", "esc['array'][5]",
    "esc['array'].reshape(1, 2)", "esc['array'].T", "len(esc['array'])", "list(esc['array'])",
    "float(esc['scalar'])", "repr(esc['array'])", "str(esc['scalar'])", "repr(esc['comparison'])",
    "esc['array'] == esc['array']", "hash(esc['scalar'])", "esc['array'].copy()",
    "np.stack([esc['array'], esc['array']])", "wg.array([esc['scalar'], 1.0])",
    "wg.where(esc['array_comparison'], 1.0, 0.0)", "np.where(esc['comparison'], 1.0, 0.0)",
    "_setitem(esc['array'], 0, 3.0)", "pickle.dumps(esc['array'])", "pickle.dumps(esc['scalar'])",
    "copy.deepcopy(esc['array'])", "copy.copy(esc['scalar'])", "np.asarray(esc['array'])",
    "np.array(esc['scalar'])", "np.asarray(esc['array'], dtype=float)", "esc['array'].tolist()",
    "esc['array'].sum()", "esc['array'] @ esc['array']", "-esc['scalar']", "esc['scalar'] ** 2",
    "abs(esc['scalar'])", "esc['comparison'] & esc['comparison']", "~esc['comparison']",
    "esc['comparison'] * 2.0", "esc['array_comparison'].any()", "len(esc['array_comparison'])",
    "wg.record(lambda x: x + esc['array'], np.ones(2))",
    "wg.record(lambda x: esc['array'], np.ones(2))",
    "wg.record(lambda x: esc['scalar'] * x, np.ones(2))",
    "wg.record(lambda x: wg.where(esc['array_comparison'], x, x), np.ones(2))",
    "wg.record(lambda x: x if esc['comparison'] else -x, np.ones(2))",
    "wg.record(lambda x: np.stack([x[0], esc['scalar']]), np.ones(2))",
    "wg.record(lambda x: wg.array([x[0], esc['scalar']]), np.ones(2))",
    "wg.record(lambda x: x[esc['scalar']], np.ones(2))",
    "wg.record(lambda x, e: x * e, np.ones(2), esc['array'])",
    "wg.record(lambda x, e: x * 2.0, np.ones(2), esc['comparison'])",
    "wg.record(lambda x: np.sum(x), esc['array'])",
    "wg.grad(lambda x: np.sum(x))(esc['array'])",
    "wg.grad(lambda x, e: np.sum(x))(np.ones(2), esc['array'])",
    "wg.jvp(lambda x: x * 2.0)(np.ones(2), esc['array'])",
    "_tape.forward(esc['array'])", "_tape.gradient([esc['scalar'], 1.0])",
    "_tape.jvp([2.0, 5.0], esc['array'])", "_tape.hvp([2.0, 5.0], esc['array'])",
    "wg.record(lambda x: _store_and_sum(x), np.ones(2)).forward(np.ones(2))",
]


def _setitem(target, index, value):
    target[index] = value
    return target


_STORE = []


def _store_and_sum(x):
    _STORE.append(x)
    return np.sum(x)


TRANSFORMS = {
    # name -> (operands after x, default f source)
    "grad": ([], "lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1])"),
    "value_and_grad": ([], "lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1])"),
    "hessian": ([], "lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1])"),
    "hvp": (["v"], "lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1])"),
    "jacobian": ([], "lambda x: np.stack([x[0] * x[1], np.sin(x[0]), x[1] ** 2])"),
    "jvp": (["v"], "lambda x: np.stack([x[0] * x[1], np.sin(x[0]), x[1] ** 2])"),
    "vjp": (["w"], "lambda x: np.stack([x[0] * x[1], np.sin(x[0]), x[1] ** 2])"),
}
TRANSFORM_WITH_EXTRA = "lambda x, p: np.sum(p * x ** 2) + 0.0 * x[0]"


# ---- the worker ---------------------------------------------------------------------------------

def _namespace(ctx, h=None):
    import scipy.special  # noqa: F401  (scipy.special.* in the sources)
    import scipy
    return {"np": np, "wg": ctx.wg, "math": math, "scipy": scipy, "pickle": pickle, "copy": copy,
            "io": io, "Boom": Boom, "h": h, "esc": ctx.escaped, "_setitem": _setitem,
            "_tape": ctx.tape("survey"), "_store_and_sum": _store_and_sum}


def _exercise_steps(ctx, tape, x, extras, level="full"):
    """Steps replaying an accepted tape every way at ``x`` (a point of its
    shape) as [(label, thunk)]; bounded so that a huge declared size does
    not make legitimately huge work."""
    wg = ctx.wg
    steps = [("repr", lambda: repr(tape)), ("len", lambda: len(tape))]
    n_in, n_out = tape.n_inputs, tape.n_outputs
    small = (n_in <= 10**4 and n_out <= 10**4 and tape.n_ops <= SMALL_SLOTS
             and tape.n_params <= SMALL_SLOTS)
    if not small:
        steps.append(("forward at a wrong shape", lambda: tape.forward(np.ones(3))))
        steps.append(("stats", tape.stats))
        return steps
    if not (type(x) is np.ndarray and x.dtype == np.float64 and x.shape == tape.in_shape):
        x = np.full(tape.in_shape, 0.75)
    batchable = len(tape.in_shape) < 63
    scalar = tape.out_shape == ()
    w = None if scalar else np.ones(tape.out_shape)
    steps += [
        ("forward", lambda: tape.forward(x, *extras)),
        ("forward batch", lambda: tape.forward(np.stack([x, x]) if batchable else x, *extras)),
        ("jvp", lambda: tape.jvp(x, np.ones(tape.in_shape), *extras)),
        ("vjp", lambda: tape.vjp(x, np.ones(tape.out_shape), *extras)),
    ]
    if scalar:
        steps.append(("gradient", lambda: tape.gradient(x, *extras)))
    if n_in * n_out <= 10**4:
        steps.append(("jacobian forward", lambda: tape.jacobian(x, *extras, mode="forward")))
        steps.append(("jacobian reverse", lambda: tape.jacobian(x, *extras, mode="reverse")))
    if n_in <= 64:
        steps.append(("hessian", lambda: tape.hessian(x, *extras, w=w)))
        steps.append(("hvp", lambda: tape.hvp(x, np.ones(tape.in_shape), *extras, w=w)))
    if level == "light":
        return steps
    steps += [
        ("sparse_jacobian", lambda: tape.sparse_jacobian(x, *extras)),
        ("sparse_hessian", lambda: tape.sparse_hessian(x, *extras, w=w)),
        ("listing", lambda: tape.listing(x, *extras)),
        ("trace forward", lambda: tape.trace(x)),
        ("trace reverse", lambda: tape.trace(x, None if scalar else np.ones(tape.out_shape),
                                              mode="reverse")),
        ("to_dot", tape.to_dot),
        ("stats", tape.stats),
        ("str", lambda: str(tape)),
        ("optimize then forward", lambda: tape.optimize().forward(x, *extras)),
        ("pickle round trip then forward",
         lambda: _pickle_round_trip(tape, extras).forward(x, *extras)),
        ("save, load, forward", lambda: _save_load(ctx, tape).forward(x, *extras)),
    ]
    return steps


def _pickle_round_trip(tape, extras):
    try:
        data = pickle.dumps(tape)
    except (TypeError, AttributeError, pickle.PicklingError) as exc:
        if any(not isinstance(e, (float, np.ndarray)) for e in extras):
            # A static argument of the user's that does not pickle.
            raise _Skip(f"a static argument does not pickle: {exc}") from None
        raise
    return pickle.loads(data)


def _save_load(ctx, tape):
    path = os.path.join(ctx.scratch, "exercise.wgt")
    tape.save(path)
    return ctx.wg.load(path)


def case_steps(ctx, case):
    """The steps of a case: [(label, thunk, argument arrays to check for changes)]."""
    area = case["area"]
    if area == "tape":
        return _tape_steps(ctx, case)
    if area in ("record", "traced-op", "wg-func"):
        return _record_steps(ctx, case)
    if area == "record-x":
        return _record_x_steps(ctx, case)
    if area == "transform":
        return _transform_steps(ctx, case)
    if area in ("ctor", "pickle"):
        return _ctor_steps(ctx, case)
    if area == "ctor-after":
        return _ctor_after_steps(ctx, case)
    if area == "load":
        return _load_steps(ctx, case)
    if area == "save":
        return _save_steps(ctx, case)
    if area in ("wg-plain", "escaped"):
        return _expression_steps(ctx, case)
    raise ValueError(f"unknown area {area!r}")


def _tape_steps(ctx, case):
    name, method = case["tape"], case["method"]
    tape = ctx.tape(name)
    positional, _, _ = METHODS[method]
    f, x0, _ = TAPES[name]
    shapes = dict(in_shape=tape.in_shape, out_shape=tape.out_shape)

    def value(slot, spec):
        return build(ctx, spec, lambda: good_value(ctx, name, slot, method), **shapes)

    args = [value(slot, spec) for slot, spec in zip(positional, case["args"])]
    extras = [value(f"extra{i}", spec) for i, spec in enumerate(case.get("extras", []))]
    kwargs = {key: value(key, spec) for key, spec in case.get("kwargs", {}).items()}
    if method == "colouring.recover":
        fn = tape.jacobian_colouring().recover
    elif method == "__call__":
        fn = tape
    else:
        fn = getattr(tape, method)
    watched = args + extras + list(kwargs.values())
    if not case.get("same_point"):
        return [("call", lambda: fn(*args, *extras, **kwargs), watched)]
    good_args = [good_value(ctx, name, slot, method) for slot in positional]

    def compare():
        got = fn(*args, *extras, **kwargs)
        want = fn(*good_args, *extras, **kwargs)
        if _plain([got]) != _plain([want]):
            raise _Wrong(f"{got!r:.200} instead of {want!r:.200}")
    return [("call", compare, watched)]


class _Wrong(Exception):
    """A call gave another result than the same call at the same point."""


def _record_steps(ctx, case):
    x_maker = X_FOR_F[case.get("x", "[2, 5]")]
    h = build(ctx, case["h"]) if "h" in case else None
    ns = _namespace(ctx, h)
    f = eval(case["f"], ns)  # noqa: S307 -- the sources are this module's own
    x = x_maker()
    box = {}

    def rec():
        box["tape"] = ctx.wg.record(f, x)
        return box["tape"]

    steps = [("record", rec, [x] + ([h] if isinstance(h, np.ndarray) else []))]
    return steps, ("exercise", box, x, (), "light" if case["area"] != "record" else "full")


def _record_x_steps(ctx, case):
    """wg.record(f, x, *extras) with hostile x or extras."""
    ns = _namespace(ctx)
    f = eval(case["f"], ns)  # noqa: S307
    x = build(ctx, case["x"], lambda: np.array([2.0, 5.0]))
    extras = [build(ctx, e, lambda: 1.5) for e in case.get("extras", [])]
    box = {}

    def rec():
        box["tape"] = ctx.wg.record(f, x, *extras)
        return box["tape"]

    return [("record", rec, [x] + extras)], ("exercise", box, x, extras,
                                             case.get("exercise", "light"))


def _transform_steps(ctx, case):
    wg = ctx.wg
    name = case["transform"]
    operands, f_source = TRANSFORMS[name]
    extras_specs = case.get("extras", [])
    if extras_specs:
        f_source = TRANSFORM_WITH_EXTRA
        good_x = np.ones(3)
    else:
        good_x = np.array([2.0, 5.0])
    f_spec = case.get("f", GOOD)
    ns = _namespace(ctx)
    f = eval(f_source, ns) if f_spec == GOOD else build(ctx, f_spec)  # noqa: S307
    make_kwargs = {key: build(ctx, spec) for key, spec in case.get("make_kwargs", {}).items()}
    n_out = 3 if name in ("jacobian", "jvp", "vjp") else 0
    goods = {"x": lambda: good_x, "v": lambda: np.ones_like(good_x),
             "w": lambda: np.ones(n_out)}
    slots = ["x"] + operands
    args = [build(ctx, spec, goods[slot], in_shape=good_x.shape,
                  out_shape=(n_out,) if n_out else ()) for slot, spec in zip(slots, case["args"])]
    extras = [build(ctx, e, lambda: np.ones(3), in_shape=(3,)) for e in extras_specs]
    good_args = [goods[slot]() for slot in slots] + [np.ones(3) for _ in extras_specs]
    box = {}

    def make():
        box["fn"] = getattr(wg, name)(f, **make_kwargs)
        return box["fn"]

    steps = [("make", make, [])]
    if case.get("warm"):
        steps.append(("warm call with good arguments", lambda: box["fn"](*good_args), []))
    steps.append(("call", lambda: box["fn"](*args, *extras), args + extras))
    steps.append(("call again", lambda: box["fn"](*args, *extras), args + extras))
    return steps


def _ctor_steps(ctx, case):
    wg = ctx.wg
    state = fresh_state(ctx, case["tape"])
    for field, spec in case["changes"]:
        state = mutated(ctx, state, field, spec)
    box = {}
    x0 = np.array(TAPES[case["tape"]][1], dtype=float)
    if case["area"] == "ctor":
        def construct():
            box["tape"] = wg.Tape(**state)
            return box["tape"]
        return [("wg.Tape(...)", construct, [])], ("exercise", box, x0, (),
                                                   case.get("exercise", "full"))
    tamper = case.get("tamper")
    if tamper:
        kind = tamper[0]
        if kind == "del":
            state.pop(tamper[1], None)
        elif kind == "add":
            state[tamper[1]] = build(ctx, tamper[2])
        elif kind == "state":
            state = build(ctx, tamper[1]) if tamper[1] != "dict subclass" else _DictSub(state)
    rebuild = ctx.tape(case["tape"]).__reduce__()[0]
    forged = _Forged(rebuild, state)
    try:
        data = pickle.dumps(forged)
    except Exception as exc:          # the value itself does not pickle: nothing to load
        why = f"state does not pickle: {type(exc).__name__}"
        return [("pickle.dumps of the forged state", lambda: _unpicklable(why), [])]

    def load():
        box["tape"] = pickle.loads(data)
        return box["tape"]
    return [("pickle.loads", load, [])], ("exercise", box, x0, (), "full")


def _unpicklable(why):
    raise _Skip(why)


class _Skip(Exception):
    """The case cannot be built as asked (not a finding)."""


class _DictSub(dict):
    def __getitem__(self, key):
        raise Boom("dict subclass __getitem__")

    def keys(self):
        raise Boom("dict subclass keys")


class _Forged:
    def __init__(self, function, state):
        self.function, self.state = function, state

    def __reduce__(self):
        return (self.function, (self.state,))


def _ctor_after_steps(ctx, case):
    """wg.Tape(**state) from fresh objects, then change those objects: the
    tape's results must not change and nothing may crash."""
    wg = ctx.wg
    name = case["tape"]
    state = fresh_state(ctx, name)
    state["in_shape"] = list(state["in_shape"])
    state["out_shape"] = list(state["out_shape"])
    # As the plain lists ("param", shape, first, values) Tape also accepts.
    state["param_specs"] = [list(spec.as_tuple()) for spec in state["param_specs"]]
    state["guards"] = list(state["guards"])
    x0 = np.array(TAPES[name][1], dtype=float)
    box = {}

    def results():
        tape = box["tape"]
        w = None if tape.out_shape == () else np.ones(tape.out_shape)
        return [tape.forward(x0), tape.jacobian(x0), tape.hessian(x0, w=w),
                tape.forward(x0 + 0.5) if TAPES[name][1] != [] else 0.0,
                tape.listing(x0), repr(tape)]

    def construct():
        box["tape"] = wg.Tape(**state)
        box["before"] = _plain(results())

    def change():
        AFTER_MUTATIONS[case["mutation"]][1](state)

    def compare():
        after = _plain(results())
        if after != box["before"]:
            raise _Changed(f"results changed after the change: {box['before']!r:.300} -> "
                           f"{after!r:.300}")

    steps = [("wg.Tape(...)", construct, []), ("change the passed objects", change, []),
             ("replay and compare", compare, [])]
    return steps, ("exercise", box, x0, (), "full")


class _Changed(Exception):
    """The tape's results depend on objects changed after construction."""


def _plain(results):
    out = []
    for r in results:
        if isinstance(r, tuple):
            out.append(tuple(_plain(list(r))))
        elif hasattr(r, "tocsr") and hasattr(r, "toarray"):      # scipy.sparse
            csr = r.tocsr()
            out.append(("sparse", csr.shape, csr.indptr.tobytes(), csr.indices.tobytes(),
                        csr.data.tobytes()))
        elif isinstance(r, np.ndarray):
            out.append(("array", r.dtype.str, r.shape, r.tobytes()))
        elif isinstance(r, float):
            out.append(("float", np.float64(r).tobytes()))
        else:
            out.append(r)
    return out


def _load_steps(ctx, case):
    path = build(ctx, ["path", case["path"]])
    box = {}

    def load():
        box["tape"] = ctx.wg.load(path)
        return box["tape"]
    return [("wg.load", load, [])], ("exercise", box, None, (), "light")


def _save_steps(ctx, case):
    tape = ctx.tape(case["tape"])
    path = build(ctx, ["path", case["path"]])
    if case["path"] in ("valid file", "valid file as bytes", "valid file as pathlib.Path",
                        "valid file as str subclass"):
        path = build(ctx, ["path", "missing file"])     # never overwrite the shared valid file
    return [("tape.save", lambda: tape.save(path), [])]


def _expression_steps(ctx, case):
    h = build(ctx, case["h"]) if "h" in case else None
    ns = _namespace(ctx, h)
    return [("evaluate", lambda: eval(case["expr"], ns), [h] if isinstance(h, np.ndarray) else [])]  # noqa: S307


def _exc_info(exc):
    import wengert as wg
    tb = [_Frame(frame.f_code.co_filename, lineno, frame.f_code.co_name)
          for frame, lineno in traceback.walk_tb(exc.__traceback__)]
    frames = [f"{os.path.basename(fr.filename)}:{fr.lineno} {fr.name}" for fr in tb[-4:]]
    package = os.path.dirname(wg.__file__)
    library = [f"{os.path.basename(fr.filename)}:{fr.lineno} {fr.name}" for fr in tb
               if _origin(fr.filename, package) == "library"]
    return {
        "status": "raised",
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "wengert": isinstance(exc, wg.WengertError),
        "mro": [c.__name__ for c in type(exc).__mro__],
        "message": _text(exc)[:400],
        "where": frames,
        "library_frame": library[-1] if library else None,
        "raised_in": _origin(tb[-1].filename if tb else "", package),
    }


class _Frame:
    __slots__ = ("filename", "lineno", "name")

    def __init__(self, filename, lineno, name):
        self.filename, self.lineno, self.name = filename, lineno, name


def _origin(filename, package):
    """Where the innermost frame is: "library", "user" (the recorded
    function or the harness) or "other" (NumPy, the standard library)."""
    if filename.startswith(package) or filename.endswith((".pyx", ".pxd")) or filename.startswith("View."):
        return "library"
    if filename.startswith("<") or os.path.basename(filename) == "_hostile.py":
        return "user"
    return "other"


def _text(obj):
    try:
        return str(obj)
    except BaseException as exc:  # noqa: BLE001
        return f"<str() raised {type(exc).__name__}>"


def _snapshot(values):
    out = []
    for v in values:
        if type(v) is np.ndarray and not v.dtype.hasobject:
            out.append((v, v.tobytes(), v.shape))
    return out


def run_step(label, thunk, watched):
    """Run one step; returns the result record."""
    import wengert as wg
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(
        f"{type(info.exc_value).__name__}: {_text(info.exc_value)} (in {_text(info.object)[:80]})")
    before = _snapshot(watched)
    result = {"status": "ok"}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signal.setitimer(signal.ITIMER_REAL, STEP_TIMEOUT)
        try:
            thunk()
        except _Skip as exc:
            result = {"status": "skipped", "message": str(exc)}
        except _Changed as exc:
            result = {"status": "changed", "message": str(exc)}
        except _Wrong as exc:
            result = {"status": "wrong", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 -- everything is reported
            result = _exc_info(exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    sys.unraisablehook = old_hook
    result["seconds"] = round(time.perf_counter() - start, 6)
    result["warnings"] = [
        {"category": w.category.__name__, "message": str(w.message)[:300],
         "where": f"{os.path.basename(w.filename)}:{w.lineno}",
         "documented": issubclass(w.category, wg.RecordingWarning)}
        for w in caught]
    result["unraisable"] = unraisable
    changed = [f"argument {i} (shape {shape})" for i, (v, data, shape) in enumerate(before)
               if v.shape != shape or v.tobytes() != data]
    if changed:
        result["changed_arguments"] = changed
    return result


def worker(cases_path, scratch):
    faulthandler.enable()
    # A step over the time limit: dump every stack, then die of SIGALRM.
    faulthandler.register(signal.SIGALRM, all_threads=True, chain=True)
    os.chdir(scratch)
    with open(cases_path) as fp:
        cases = json.load(fp)
    ctx = Context(scratch)
    out = sys.stdout
    err = sys.stderr

    def emit(kind, cid, step, payload=None):
        line = f"{MARK} {kind} {cid} {json.dumps(step)}"
        if payload is not None:
            line += " " + json.dumps(payload)
        out.write(line + "\n")
        out.flush()
        if kind == "S":
            err.write(f"{MARK} S {cid} {json.dumps(step)}\n")
            err.flush()

    for case in cases:
        cid = case["id"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # building hostile values may warn
                made = case_steps(ctx, case)
        except BaseException as exc:  # noqa: BLE001
            emit("S", cid, "build")
            tb = traceback.extract_tb(exc.__traceback__)[-3:]
            at = "; ".join(f"{os.path.basename(fr.filename)}:{fr.lineno} {fr.name}" for fr in tb)
            emit("R", cid, "build", {"status": "harness", "message":
                                     f"{type(exc).__name__}: {_text(exc)} (at {at})"[:600]})
            continue
        follow = None
        if isinstance(made, tuple):
            made, follow = made
        steps = list(made)
        index = 0
        while index < len(steps):
            label, thunk, watched = steps[index]
            emit("S", cid, label)
            result = run_step(label, thunk, watched)
            emit("R", cid, label, result)
            if result["status"] != "ok":
                break
            index += 1
            if index == len(steps) and follow is not None:
                _, box, x, extras, level = follow
                follow = None
                tape = box.get("tape")
                if isinstance(tape, ctx.wg.Tape):
                    try:
                        extra_steps = _exercise_steps(ctx, tape, x, extras, level)
                    except BaseException as exc:  # noqa: BLE001
                        emit("S", cid, "exercise setup")
                        emit("R", cid, "exercise setup", _exc_info(exc) | {"warnings": [],
                                                                            "unraisable": []})
                        break
                    for label2, thunk2 in extra_steps:
                        steps.append((f"then {label2}", thunk2, []))
                # after the main steps, run every follow-up even if one raises
                while index < len(steps):
                    label, thunk, watched = steps[index]
                    emit("S", cid, label)
                    emit("R", cid, label, run_step(label, thunk, watched))
                    index += 1
    out.write(f"{MARK} DONE\n")
    out.flush()


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
