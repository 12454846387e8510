"""``wg.grad`` and friends: record on first use, replay afterwards.

Each transform keeps a small cache of tapes per function, keyed by the input
shape, the shapes of the dynamic parameters and the values of the static
arguments. A replay that reaches a flipped branch (``BranchChangedError``)
records again at that point and keeps the new tape beside the old ones, so a
function with a few branch regions settles on a few tapes.
"""
from __future__ import annotations

import functools
import threading
import warnings
from typing import NamedTuple

import numpy as np

from wengert._arguments import check_choice, real_array
from wengert._errors import (ArgumentTypeError, BranchChangedError,
                             RecordingWarning)
from wengert.recording import _is_dynamic, record
from wengert.tape import Tape

_PUBLIC_NAME = {"gradient": "grad", "value_and_gradient": "value_and_grad"}


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class _ParamKey(NamedTuple):
    """A dynamic parameter's part of a cache key: its shape."""
    shape: tuple


class _StaticKey(NamedTuple):
    """A static argument's part of a cache key: its type and value."""
    type: type
    value: object


# Tapes kept per transform (over all keys), and per key (branch regions).
CACHE_SIZE = 16
TAPES_PER_KEY = 4


class _Transform:
    """A cached, retaping caller of one tape method."""

    def __init__(self, f, method, **options):
        if not callable(f):
            raise ArgumentTypeError(f"expected a callable to differentiate, got {type(f).__name__}")
        self._f = f
        self._method = method
        self._tapes = {}            # key -> list of tapes, newest first
        self._lock = threading.Lock()
        self._warned = False
        self._method_name = _PUBLIC_NAME.get(method, method)
        self._n_operands = 1 if method in ("jvp", "vjp", "hvp") else 0
        unbound = getattr(Tape, method)
        self._call = functools.partial(unbound, **options) if options else unbound
        functools.update_wrapper(self, f, updated=())

    def __repr__(self):
        name = getattr(self._f, "__qualname__", None) or repr(self._f)
        return f"<wengert {self._method} of {name}: {len(self._tapes)} cached keys>"

    def _key(self, x, args):
        if not args:
            return x.shape
        parts = [x.shape]
        for i, arg in enumerate(args):
            if _is_dynamic(arg):
                parts.append(_ParamKey(np.shape(arg)))
            else:
                try:
                    hash(arg)
                except TypeError:
                    raise ArgumentTypeError(
                        f"static argument {i} of {type(arg).__name__} is unhashable: the wg.* "
                        "transforms cache tapes by their static arguments. Pass a tuple "
                        "instead of a list, or a float array to make it a dynamic "
                        "parameter") from None
                parts.append(_StaticKey(type(arg), arg))
        return tuple(parts)

    def _record(self, key, x, args):
        tape = record(self._f, x, *args)
        if args:
            self._warn_if_static_numbers_change(key)
        with self._lock:
            tapes = self._tapes.get(key)
            if tapes is None:
                if len(self._tapes) >= CACHE_SIZE:
                    # Forget the key recorded first: a small, bounded FIFO cache.
                    self._tapes.pop(next(iter(self._tapes)))
                self._tapes[key] = [tape]
            else:
                self._tapes[key] = [tape] + tapes[:TAPES_PER_KEY - 1]
        return tape

    def __call__(self, x, *args):
        x = real_array(x, "x")
        # The operand after x (v or w) is not part of f's signature.
        operands, extras = args[:self._n_operands], args[self._n_operands:]
        key = self._key(x, extras)
        for tape in self._tapes.get(key, ()):
            try:
                return self._call(tape, x, *operands, *extras)
            except BranchChangedError:
                continue
        # First call for this key, or every cached tape's branches flipped.
        return self._call(self._record(key, x, extras), x, *operands, *extras)

    def _warn_if_static_numbers_change(self, key):
        """Warn once when a new tape differs from a cached one only in static
        integer arguments: each new value records again (and the cache holds
        16 keys), which is slow and easy to miss."""
        if self._warned or not isinstance(key, tuple):
            return
        for other in list(self._tapes):
            if not isinstance(other, tuple) or len(other) != len(key) or other[0] != key[0]:
                continue
            changed = [i for i in range(1, len(key)) if key[i] != other[i]]
            if changed and all(isinstance(key[i], _StaticKey) and _is_integer(key[i].value)
                               for i in changed):
                self._warned = True
                position = changed[0] - 1
                warnings.warn(
                    f"wg.{self._method_name}: extra argument {position} is an integer, so it is "
                    "a static argument baked into the tape, and every new value records a "
                    "new tape. If it is a number that changes between calls, pass it as a "
                    f"float (float(n)) to make it a dynamic parameter.",
                    RecordingWarning, stacklevel=5)
                return

    def cached_tapes(self):
        """The tapes recorded so far (newest first per key), for inspection."""
        with self._lock:
            return [t for tapes in self._tapes.values() for t in tapes]


def _caller(f, method, **options):
    """A plain function around a _Transform with a lean path for the common
    call (no extra arguments): a closure call costs ~0.3 us less than the
    general path, which matters when the replay itself takes 0.5 us."""
    transform = _Transform(f, method, **options)
    tapes = transform._tapes
    # Point-only variants of gradient and value_and_gradient skip a second
    # argument conversion (~0.1 us).
    run = getattr(Tape, f"_{method}_of_point", transform._call)
    n_operands = transform._n_operands

    def call(x, *args):
        if len(args) == n_operands:
            x = real_array(x, "x")
            for tape in tapes.get(x.shape, ()):
                try:
                    return run(tape, x, *args)
                except BranchChangedError:
                    continue
        return transform(x, *args)

    functools.update_wrapper(call, f, updated=())
    call.cached_tapes = transform.cached_tapes
    return call


def grad(f):
    """The gradient of a scalar function, as a function.

    ``wg.grad(f)(x, *args)`` records ``f`` on first use and replays the tape
    afterwards; it records again on a new input shape, a new static argument,
    or when a recorded branch (``if`` on a traced value) would go the other
    way. Float arguments after ``x`` are dynamic parameters: new values
    replay the same tape. Safe to call from several threads.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> df = wg.grad(lambda x: np.sum(x ** 3))
    >>> df(np.array([1.0, 2.0])).tolist()
    [3.0, 12.0]
    """
    return _caller(f, "gradient")


def value_and_grad(f):
    """``(f(x), gradient)`` from one replay, as a function (see :func:`grad`).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> value, g = wg.value_and_grad(lambda x: x[0] * x[1])(np.array([2.0, 3.0]))
    >>> value, g.tolist()
    (6.0, [3.0, 2.0])
    """
    return _caller(f, "value_and_gradient")


def jacobian(f, mode="auto"):
    """The Jacobian ``out.shape + x.shape`` of ``f``, as a function.

    ``mode`` is "forward", "reverse" or "auto" (the side with fewer sweeps).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> J = wg.jacobian(lambda x: x ** 2)
    >>> J(np.array([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    check_choice(mode, "mode", ("auto", "forward", "reverse"))
    return _caller(f, "jacobian", mode=mode)


def jvp(f):
    """``wg.jvp(f)(x, v, *args)``: the Jacobian-vector product ``J(x) @ v``.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> wg.jvp(lambda x: x[0] * x[1])(np.array([2.0, 3.0]), np.array([1.0, 0.0]))
    3.0
    """
    return _caller(f, "jvp")


def vjp(f):
    """``wg.vjp(f)(x, w, *args)``: the vector-Jacobian product ``w @ J(x)``.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> wg.vjp(lambda x: x ** 2)(np.array([1.0, 2.0]), np.array([1.0, 1.0])).tolist()
    [2.0, 4.0]
    """
    return _caller(f, "vjp")


def hessian(f):
    """The Hessian ``x.shape + x.shape`` of a scalar function, as a function.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> H = wg.hessian(lambda x: x[0] ** 2 * x[1])
    >>> H(np.array([1.0, 2.0])).tolist()
    [[4.0, 2.0], [2.0, 0.0]]
    """
    return _caller(f, "hessian")


def hvp(f):
    """``wg.hvp(f)(x, v, *args)``: the Hessian-vector product ``H(x) @ v``.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> wg.hvp(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    array([4., 2.])
    """
    return _caller(f, "hvp")
