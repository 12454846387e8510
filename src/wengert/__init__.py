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
from wengert.functions import (abs, arccos, arccosh, arcsin, arcsinh, arctan,
                               arctan2, arctanh, array, cbrt, clip, concatenate,
                               cos, cosh, dot, erf, exp, expm1, hypot, log,
                               log1p, log2, log10, logaddexp, maximum, minimum,
                               power, prod, reciprocal, sigmoid, sign, sin, sinh,
                               sqrt, square, stack, sum, tan, tanh, where)
from wengert.tape import Tape, record
from wengert._io import load
from wengert.transforms import (grad, hessian, hvp, jacobian, jvp,
                                value_and_grad, vjp)

__version__ = "0.1.0"

__all__ = [
    "record", "load", "Tape", "grad", "value_and_grad", "jacobian", "jvp", "vjp",
    "hessian", "hvp", "WengertError", "TracingError", "ShapeError", "ArgumentError", "ArgumentTypeError",
    "BranchChangedError", "TapeFormatError", "AxisError", "IndexingError", "RecordingWarning",
    "abs", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh",
    "array", "cbrt", "clip", "concatenate", "cos", "cosh", "dot", "erf", "exp",
    "expm1", "hypot", "log", "log1p", "log2", "log10", "logaddexp", "maximum",
    "minimum", "power", "prod", "reciprocal", "sigmoid", "sign", "sin", "sinh",
    "sqrt", "square", "stack", "sum", "tan", "tanh", "where",
]
