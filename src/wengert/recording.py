"""Recording: run the user's function once on traced values.

:func:`trace` runs ``f`` on traced inputs and parameters and returns the
recorder's arrays; :func:`record` (``wg.record``) turns them into a
:class:`~wengert.Tape`. The traced types are in :mod:`wengert.tracing`.
"""
from __future__ import annotations

import numpy as np

from wengert._arguments import real_array
from wengert._errors import ArgumentTypeError, TracingError, WengertError
from wengert._records import Param, Static
from wengert._recorder import Active, Recorder
from wengert.tracing import (Comparison, TracedArray, _Operand, _raw, _same_recording,
                             _slots_of, asarray, wrap)


def _output_constant(value):
    """A recorded function's output that holds no traced value, as floats."""
    return real_array(value, "the value the recorded function returned")


def _is_dynamic(arg):
    """Floats and float arrays are dynamic parameters; the rest is static."""
    if isinstance(arg, bool):
        return False
    if isinstance(arg, (float, np.floating)):
        return True
    return isinstance(arg, np.ndarray) and arg.dtype.kind == "f"


def trace(f, x, extras):
    """Run ``f`` on traced values. Returns (recorder, output slots (flat),
    output shape, parameter specs, recorded parameter values (flat))."""
    x = np.asarray(x, dtype=np.float64)
    specs = []
    params = []
    offset = x.size
    for i, arg in enumerate(extras):
        if _is_dynamic(arg):
            # Checked as at replay: a dynamic parameter of more dimensions
            # than a tape holds is a ShapeError naming it, not a bad tape.
            value = real_array(arg, f"extra argument {i}")
            specs.append(Param(value.shape, offset, value.copy()))
            params.append(value.reshape(-1))
            offset += value.size
        else:
            specs.append(Static(arg))
    param_values = np.concatenate(params) if params else np.zeros(0)
    rec = Recorder(x.reshape(-1), param_values)
    traced_x = wrap(rec, np.arange(x.size, dtype=np.intp).reshape(x.shape))
    traced_args = []
    for spec in specs:
        if isinstance(spec, Param):
            traced_args.append(wrap(rec, np.arange(spec.first, spec.first + spec.values.size,
                                                   dtype=np.intp).reshape(spec.shape)))
        else:
            traced_args.append(spec.value)
    result = f(traced_x, *traced_args)
    if result is None:
        raise WengertError("the recorded function returned None; it must return "
                           "its output (a traced value, an array or a float)")
    if isinstance(result, Comparison):
        raise TracingError("the recorded function returned a comparison; return "
                           "wg.where(...) or an arithmetic value instead")
    out = asarray(result, rec)
    if isinstance(out, (TracedArray, Active)):
        _same_recording(rec, out)
    else:
        out = wrap(rec, _slots_of(rec, _Operand(False, _output_constant(out))))
    slots = np.asarray(_raw(out))
    return rec, slots.reshape(-1), slots.shape, specs, param_values


def record(f, x, *args):
    """Run ``f(x, *args)`` once on traced values and return its :class:`Tape`.

    Parameters
    ----------
    f : callable
        A function of NumPy code: arithmetic, ufuncs (``np.sin`` ...), common
        array functions, indexing. Python ``if`` on traced values records a
        guard; use :func:`wengert.where` for branch-free selects.
    x : float or array_like
        The point to record at; its shape is the tape's input shape.
    *args
        Extra arguments. Floats and float arrays become dynamic parameters
        (replaceable at replay: ``tape.gradient(x, new_value)``); anything
        else is static and baked into the tape.

    Returns
    -------
    Tape

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> def f(x):
    ...     return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])
    >>> tape = wg.record(f, np.array([2.0, 5.0]))
    >>> round(tape.forward([2.0, 5.0]), 4)
    11.6521
    """
    # Imported here: tape.py imports this module (it re-exports record).
    from wengert.tape import Tape
    if not callable(f):
        raise ArgumentTypeError(f"wg.record needs a callable to record, not a "
                                f"{type(f).__name__}")
    x_arr = real_array(x, "x")
    rec, out_slots, out_shape, specs, params = trace(f, x_arr, args)
    arrays = rec.arrays()
    return Tape(outputs=out_slots, in_shape=x_arr.shape, out_shape=out_shape,
                param_specs=specs, guards=rec.guards, n_params=params.size, **arrays)
