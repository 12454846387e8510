"""The operation table: the single list of every operation on a tape.

Each row names an operation, its base code, its arity, the NumPy function
that defines its value (used by the tests as the reference) and how it curves
(which second derivatives can be nonzero: the Hessian-sparsity rules follow
it, and tests/test_opcodes.py checks both against the kernels). The value,
partial-derivative and adjoint rules live in ``_kernels.pxd`` under the same
name (``sin_value``, ``sin_partial`` ...), and ``_opcodes.pxd`` mirrors the
codes as a C enum; ``tests/test_opcodes.py`` checks that all three agree.

A full opcode is one byte: ``kind << 6 | base``. The kind says where the
operands of a binary operation live, so constants never become tape
variables (as CppAD's ``AddpvOp``/``AddvvOp``):

* ``UNARY`` (0): unary operations and the two special entries ``const``
  (arg0 indexes the constant pool) and ``select`` (arg0 is the condition
  slot, arg1 indexes the ``aux`` side table holding the two branch slots);
* ``VV`` (1): both operands are slots;
* ``VC`` (2): arg0 is a slot, arg1 indexes the constant pool;
* ``CV`` (3): arg0 indexes the constant pool, arg1 is a slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Optional

import numpy as np


class Kind(IntEnum):
    UNARY = 0
    VV = 1
    VC = 2
    CV = 3


KIND_SHIFT = 6
BASE_MASK = (1 << KIND_SHIFT) - 1


def _sigmoid(x):
    # exp(-|x|) never overflows, and neither branch cancels.
    from wengert._arguments import real_array
    x = real_array(x, "x")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _select(c, a, b):
    return np.where(c != 0, a, b)


# How an operation curves, for second derivatives and Hessian sparsity:
LINEAR = "linear"          # second derivatives are zero everywhere
PIECEWISE = "piecewise"    # piecewise linear or constant: zero almost everywhere
BILINEAR = "bilinear"      # a * b: only the cross term
QUOTIENT = "quotient"      # a / b: cross term and d2/db2, none in a alone
CURVED = "curved"          # anything else: every second derivative may be nonzero


@dataclass(frozen=True)
class Operation:
    """One row of the operation table."""

    name: str
    base: int
    arity: int                # operands that are values (0 for const)
    reference: Optional[Callable]  # NumPy function giving the value
    differentiable: bool = True    # False: every partial is exactly zero
    curvature: str = CURVED

    def code(self, kind: Kind = Kind.UNARY) -> int:
        return (int(kind) << KIND_SHIFT) | self.base


# base code, name, arity, NumPy reference. Unary and special operations use
# base codes below 32, binary operations 32 and above.
OPERATIONS = [
    Operation("const", 0, 0, None, differentiable=False, curvature=LINEAR),
    Operation("select", 1, 3, _select, curvature=LINEAR),
    Operation("neg", 2, 1, np.negative, curvature=LINEAR),
    Operation("square", 3, 1, np.square),
    Operation("sqrt", 4, 1, np.sqrt),
    Operation("cbrt", 5, 1, np.cbrt),
    Operation("reciprocal", 6, 1, lambda x: 1.0 / x),
    Operation("exp", 7, 1, np.exp),
    Operation("expm1", 8, 1, np.expm1),
    Operation("log", 9, 1, np.log),
    Operation("log1p", 10, 1, np.log1p),
    Operation("log2", 11, 1, np.log2),
    Operation("log10", 12, 1, np.log10),
    Operation("sin", 13, 1, np.sin),
    Operation("cos", 14, 1, np.cos),
    Operation("tan", 15, 1, np.tan),
    Operation("arcsin", 16, 1, np.arcsin),
    Operation("arccos", 17, 1, np.arccos),
    Operation("arctan", 18, 1, np.arctan),
    Operation("sinh", 19, 1, np.sinh),
    Operation("cosh", 20, 1, np.cosh),
    Operation("tanh", 21, 1, np.tanh),
    Operation("arcsinh", 22, 1, np.arcsinh),
    Operation("arccosh", 23, 1, np.arccosh),
    Operation("arctanh", 24, 1, np.arctanh),
    Operation("abs", 25, 1, np.abs, curvature=PIECEWISE),
    Operation("sign", 26, 1, np.sign, differentiable=False, curvature=PIECEWISE),
    Operation("sigmoid", 27, 1, _sigmoid),
    Operation("erf", 28, 1, _erf),
    Operation("add", 32, 2, np.add, curvature=LINEAR),
    Operation("sub", 33, 2, np.subtract, curvature=LINEAR),
    Operation("mul", 34, 2, np.multiply, curvature=BILINEAR),
    Operation("div", 35, 2, np.divide, curvature=QUOTIENT),
    Operation("pow", 36, 2, np.power),
    Operation("arctan2", 37, 2, np.arctan2),
    Operation("hypot", 38, 2, np.hypot),
    Operation("minimum", 39, 2, np.minimum, curvature=PIECEWISE),
    Operation("maximum", 40, 2, np.maximum, curvature=PIECEWISE),
    Operation("logaddexp", 41, 2, np.logaddexp),
    Operation("lt", 42, 2, lambda a, b: np.less(a, b).astype(float), False, curvature=PIECEWISE),
    Operation("le", 43, 2, lambda a, b: np.less_equal(a, b).astype(float), False, curvature=PIECEWISE),
    Operation("gt", 44, 2, lambda a, b: np.greater(a, b).astype(float), False, curvature=PIECEWISE),
    Operation("ge", 45, 2, lambda a, b: np.greater_equal(a, b).astype(float), False, curvature=PIECEWISE),
    Operation("eq", 46, 2, lambda a, b: np.equal(a, b).astype(float), False, curvature=PIECEWISE),
    Operation("ne", 47, 2, lambda a, b: np.not_equal(a, b).astype(float), False, curvature=PIECEWISE),
]

BY_NAME = {op.name: op for op in OPERATIONS}
BY_BASE = {op.base: op for op in OPERATIONS}
BINARY_BASE = 32
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
# Python's operator for each comparison, for messages and listings.
COMPARISON_SYMBOL = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def is_binary(op: Operation) -> bool:
    return op.base >= BINARY_BASE


def valid_codes() -> np.ndarray:
    """Boolean table over all 256 byte values: which are valid opcodes."""
    ok = np.zeros(256, dtype=bool)
    for op in OPERATIONS:
        if is_binary(op):
            for kind in (Kind.VV, Kind.VC, Kind.CV):
                ok[op.code(kind)] = True
        else:
            ok[op.code()] = True
    return ok


def split(code: int):
    """``(Operation, Kind)`` of a full opcode."""
    return BY_BASE[code & BASE_MASK], Kind(code >> KIND_SHIFT)


def code_of(name: str, kind: Kind = Kind.UNARY) -> int:
    return BY_NAME[name].code(kind)
