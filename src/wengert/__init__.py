"""wengert: record NumPy code once on a flat tape, replay values and
derivatives in compiled loops.

Examples
--------
>>> import numpy as np, wengert as wg
>>> def f(x):
...     return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])
>>> tape = wg.record(f, np.array([2.0, 5.0]))
>>> tape.gradient([2.0, 5.0]).round(3).tolist()
[5.5, 1.716]
"""
from wengert._errors import (ArgumentError, ArgumentTypeError, AxisError, BranchChangedError,
                             IndexingError, RecordingWarning, ShapeError, TapeFormatError,
                             TracingError, WengertError)
from wengert import functions as _functions
from wengert.functions import *  # noqa: F401,F403 - wg.sin ..., one per table row
from wengert.recording import record
from wengert.tape import Tape
from wengert._io import load
from wengert.transforms import (grad, hessian, hvp, jacobian, jvp,
                                value_and_grad, vjp)

__version__ = "0.1.0"

__all__ = [
    "record", "load", "Tape", "grad", "value_and_grad", "jacobian", "jvp", "vjp",
    "hessian", "hvp", "WengertError", "TracingError", "ShapeError", "ArgumentError",
    "ArgumentTypeError", "BranchChangedError", "TapeFormatError", "AxisError",
    "IndexingError", "RecordingWarning",
] + _functions.__all__
