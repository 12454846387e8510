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

Array entries (kind 0, bases 48 and up) cover many slots with one entry:
one NumPy call over an array records one of them. Their arg0 indexes a
descriptor in ``aux`` and arg1 is the number of slots they write, so an
entry's result slots follow from the entries before it; see ``ARRAY_LAYOUTS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Optional, Tuple

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


def _reciprocal(x):
    from wengert._arguments import real_array
    return 1.0 / real_array(x, "x")


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _erfc(x):
    from scipy.special import erfc
    return erfc(x)


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
    """One row of the operation table.

    Everything else about an operation is derived from its row: the C enum
    and the kernel dispatch (generated at build time by ``_generate.py``),
    the NumPy/SciPy bindings of the tracer, the public ``wg.<name>``
    function, the printed rules of traces and the sparsity classes.
    """

    name: str
    base: int
    arity: int                     # 1 or 2; 0 for const, 3 for select, ARRAY (special layouts)
    reference: Optional[Callable]  # NumPy function giving the value (the tests' reference)
    differentiable: bool = True    # False: every partial is exactly zero
    curvature: str = CURVED
    # The partial derivative of the result with respect to each operand as
    # printed in traces, in terms of {a}, {b} and the result {r}: "1", "-1",
    # "0", "/X" (1 / X), "-X" or a factor X, valid Python over NumPy's names
    # once filled in (the display tests evaluate them against the sweeps).
    partials: Tuple[str, ...] = ()
    # What the tracer binds to this row: NumPy ufuncs ("numpy.sin") and
    # SciPy special functions ("scipy.special.erf", matched by name so that
    # SciPy is imported only when the user calls it).
    bindings: Tuple[str, ...] = ()
    # A one-line description makes the row a public ``wg.<name>`` function.
    doc: Optional[str] = None
    symbol: Optional[str] = None   # infix operator in listings (a + b)
    # The libm functions a unary row's kernels call: (value,) or (value,
    # partial), the partial being the named function of {a}, negated if its
    # name starts with "-". Map entries evaluate them with glibc's vector
    # variants (see _vector_math.h), so each must be the whole of what its
    # kernel computes.
    vector: Tuple[str, ...] = ()

    def code(self, kind: Kind = Kind.UNARY) -> int:
        return (int(kind) << KIND_SHIFT) | self.base

    @property
    def kinds(self) -> Tuple[Kind, ...]:
        """The operand kinds this row is recorded with."""
        return (Kind.VV, Kind.VC, Kind.CV) if self.arity == 2 else (Kind.UNARY,)


# The arity of array entries: their operands are described in the side
# table (ARRAY_LAYOUTS), not held in arg0 and arg1.
ARRAY = 4

# The side-table descriptor of each array entry, as read from aux[arg0]:
ARRAY_LAYOUTS = {
    # out[o, j] = f(a[o, j], b[o, j]) over an (n_outer, n_inner) grid, for the
    # unary or binary full opcode `code` (its kind says which operands are
    # constants); operand x at (o, j) is slot (or constant) x_start + o *
    # x_outer + j * x_inner. Strides may be 0 (broadcast) or negative.
    "map": ("code", "n_outer", "n_inner", "a_start", "a_outer", "a_inner",
            "b_start", "b_outer", "b_inner"),
    # out[o] = sum_j a[o, j] over an (n_outer, n_inner) grid.
    "sum": ("n_outer", "n_inner", "a_start", "a_outer", "a_inner"),
    # out[e] = slot source[e]: slicing, fancy indexing, concatenation.
    "gather": ("source...",),
    # out (m, n), row-major, = A (m, k) @ B (k, n); `code` is mul's full
    # opcode whose kind says which of A and B is a constant matrix; element
    # (i, j) of X is X_start + i * X_rows + j * X_cols.
    "matmul": ("code", "m", "k", "n", "a_start", "a_rows", "a_cols",
               "b_start", "b_rows", "b_cols"),
    # out[o, j] = a[o, 0] + ... + a[o, j], a running sum along each row
    # (summed in order, as a chain of additions would).
    "cumsum": ("n_outer", "n_inner", "a_start", "a_outer", "a_inner"),
    # out[o, j] = c[o, j] != 0 ? a[o, j] : b[o, j], three slot grids as in map.
    "where": ("n_outer", "n_inner", "c_start", "c_outer", "c_inner", "a_start", "a_outer",
              "a_inner", "b_start", "b_outer", "b_inner"),
}


def _row(name, base, arity, reference, partials, bindings=(), doc=None, **more):
    return Operation(name, base, arity, reference, partials=partials,
                     bindings=tuple(bindings), doc=doc, **more)


def _unary(name, base, partial, doc=None, bindings=None, reference=None, **more):
    """A unary row bound to the NumPy ufunc of the same name unless told."""
    if bindings is None:
        bindings = (f"numpy.{name}",)
    if reference is None:
        reference = getattr(np, name)
    return _row(name, base, 1, reference, (partial,), bindings, doc, **more)


def _comparison(name, base, symbol, ufunc):
    return _row(name, base, 2, lambda a, b: ufunc(a, b).astype(float), ("0", "0"),
                (f"numpy.{ufunc.__name__}",), differentiable=False, curvature=PIECEWISE,
                symbol=symbol)


# Base codes are part of the file format: never renumber a row. A new row
# takes a base not used by a row of the same arity class (unary and special
# rows share one space, binary rows the other: the kind bits keep them apart).
OPERATIONS = [
    _row("const", 0, 0, None, (), differentiable=False, curvature=LINEAR),
    _row("select", 1, 3, _select, ("1", "1"), curvature=LINEAR),
    _unary("neg", 2, "-1", bindings=("numpy.negative",), reference=np.negative,
           curvature=LINEAR),
    _unary("square", 3, "2 * {a}", "x * x"),
    _unary("sqrt", 4, "/(2 * {r})", "Square root (derivative inf at 0)"),
    _unary("cbrt", 5, "/(3 * {r}**2)", "Cube root", vector=("cbrt",)),
    _unary("reciprocal", 6, "-{r}**2", "1 / x", reference=_reciprocal),
    _unary("exp", 7, "{r}", "Exponential", vector=("exp",)),
    _unary("expm1", 8, "({r} + 1)", "exp(x) - 1, accurate near 0", vector=("expm1",)),
    _unary("log", 9, "/{a}", "Natural logarithm", vector=("log",)),
    _unary("log1p", 10, "/(1 + {a})", "log(1 + x), accurate near 0", vector=("log1p",)),
    _unary("log2", 11, "/({a} * log(2))", "Base-2 logarithm", vector=("log2",)),
    _unary("log10", 12, "/({a} * log(10))", "Base-10 logarithm", vector=("log10",)),
    _unary("sin", 13, "cos({a})", "Sine", vector=("sin", "cos")),
    _unary("cos", 14, "-sin({a})", "Cosine", vector=("cos", "-sin")),
    _unary("tan", 15, "(1 + {r}**2)", "Tangent", vector=("tan",)),
    _unary("arcsin", 16, "/sqrt(1 - {a}**2)", "Inverse sine", vector=("asin",)),
    _unary("arccos", 17, "-/sqrt(1 - {a}**2)", "Inverse cosine", vector=("acos",)),
    _unary("arctan", 18, "/(1 + {a}**2)", "Inverse tangent", vector=("atan",)),
    _unary("sinh", 19, "cosh({a})", "Hyperbolic sine", vector=("sinh", "cosh")),
    _unary("cosh", 20, "sinh({a})", "Hyperbolic cosine", vector=("cosh", "sinh")),
    _unary("tanh", 21, "(1 - {r}**2)", "Hyperbolic tangent", vector=("tanh",)),
    _unary("arcsinh", 22, "/sqrt({a}**2 + 1)", "Inverse hyperbolic sine", vector=("asinh",)),
    _unary("arccosh", 23, "/sqrt({a}**2 - 1)", "Inverse hyperbolic cosine (x >= 1)",
           vector=("acosh",)),
    _unary("arctanh", 24, "/(1 - {a}**2)", "Inverse hyperbolic tangent", vector=("atanh",)),
    _unary("abs", 25, "sign({a})", "Absolute value (derivative 0 at 0)",
           bindings=("numpy.absolute", "numpy.fabs"), reference=np.abs, curvature=PIECEWISE),
    _unary("sign", 26, "0", "Sign (derivative 0)", differentiable=False, curvature=PIECEWISE),
    _unary("sigmoid", 27, "{r} * (1 - {r})", "Logistic sigmoid 1 / (1 + exp(-x))",
           bindings=("scipy.special.expit",), reference=_sigmoid),
    _unary("erf", 28, "2 / sqrt(pi) * exp(-{a}**2)", "Error function",
           bindings=("scipy.special.erf",), reference=_erf, vector=("erf",)),
    _unary("erfc", 29, "-2 / sqrt(pi) * exp(-{a}**2)",
           "Complementary error function 1 - erf(x), accurate where erf(x) is near 1",
           bindings=("scipy.special.erfc",), reference=_erfc, vector=("erfc",)),
    _row("add", 32, 2, np.add, ("1", "1"), ("numpy.add",), curvature=LINEAR, symbol="+"),
    _row("sub", 33, 2, np.subtract, ("1", "-1"), ("numpy.subtract",), curvature=LINEAR,
         symbol="-"),
    _row("mul", 34, 2, np.multiply, ("{b}", "{a}"), ("numpy.multiply",), curvature=BILINEAR,
         symbol="*"),
    _row("div", 35, 2, np.divide, ("/{b}", "-{r} / {b}"), ("numpy.divide",),
         curvature=QUOTIENT, symbol="/"),
    # numpy.power binds through tracing.power, which records cheaper rows
    # for the constant exponents 2, 1, -1 and 0.5.
    _row("pow", 36, 2, np.power, ("{b} * {a}**({b} - 1)", "log({a}) * {r}"), symbol="**"),
    _row("arctan2", 37, 2, np.arctan2, ("{b} / ({a}**2 + {b}**2)", "-{a} / ({a}**2 + {b}**2)"),
         ("numpy.arctan2",), "Four-quadrant inverse tangent of a / b"),
    _row("hypot", 38, 2, np.hypot, ("{a} / {r}", "{b} / {r}"), ("numpy.hypot",),
         "sqrt(a**2 + b**2) without overflow"),
    # The partials of minimum and maximum depend on which side is taken:
    # traces resolve them at the point (_traces._resolved_partials).
    _row("minimum", 39, 2, np.minimum, ("?", "?"), ("numpy.minimum",),
         "Minimum (at a tie each argument gets half the derivative)", curvature=PIECEWISE),
    _row("maximum", 40, 2, np.maximum, ("?", "?"), ("numpy.maximum",),
         "Maximum (at a tie each argument gets half the derivative)", curvature=PIECEWISE),
    _row("logaddexp", 41, 2, np.logaddexp, ("exp({a} - {r})", "exp({b} - {r})"),
         ("numpy.logaddexp",), "log(exp(a) + exp(b)) without overflow"),
    _comparison("lt", 42, "<", np.less),
    _comparison("le", 43, "<=", np.less_equal),
    _comparison("gt", 44, ">", np.greater),
    _comparison("ge", 45, ">=", np.greater_equal),
    _comparison("eq", 46, "==", np.equal),
    _comparison("ne", 47, "!=", np.not_equal),
    # Array entries: the derivative rules are those of the operations they
    # apply (map), sums and products; the sweeps hold their loops.
    _row("map", 48, ARRAY, None, (), curvature=CURVED),
    _row("sum", 49, ARRAY, None, (), curvature=LINEAR),
    _row("gather", 50, ARRAY, None, (), curvature=LINEAR),
    _row("matmul", 51, ARRAY, None, (), curvature=BILINEAR),
    _row("where", 52, ARRAY, None, (), curvature=LINEAR),
    _row("cumsum", 53, ARRAY, None, (), curvature=LINEAR),
]

BY_NAME = {op.name: op for op in OPERATIONS}
# Every valid full opcode: (row, kind).
BY_CODE = {op.code(kind): (op, kind) for op in OPERATIONS for kind in op.kinds}
COMPARISONS = tuple(op.name for op in OPERATIONS if op.arity == 2 and not op.differentiable)
# Python's operator for each comparison, for messages and listings.
COMPARISON_SYMBOL = {name: BY_NAME[name].symbol for name in COMPARISONS}
PUBLIC = tuple(op for op in OPERATIONS if op.doc is not None)


def is_binary(op: Operation) -> bool:
    return op.arity == 2


def binding_names(op: Operation, module: str) -> Tuple[str, ...]:
    """The names ``op`` binds to in ``module`` ("numpy", "scipy.special")."""
    prefix = module + "."
    return tuple(b[len(prefix):] for b in op.bindings if b.startswith(prefix)
                 and "." not in b[len(prefix):])


# ---- sparsity classes -----------------------------------------------------------
#
# How the derivative of an entry depends on its operands, and which second
# derivatives it has, per full opcode: read by the compiled sparsity passes
# through the arrays _generate.py writes into _opcodes.pxd.

# Which operands carry a derivative.
OPERANDS_NONE, OPERANDS_FIRST, OPERANDS_SECOND, OPERANDS_BOTH, OPERANDS_BRANCHES = range(5)
# Which second-derivative pairs an entry couples (Hessian sparsity).
INTERACTION = ("none", "self", "cross", "div", "all")


def operands_class(op: Operation, kind: Kind) -> int:
    # Array entries: the sparsity passes read their elements (element_operands).
    if op.arity == ARRAY:
        return OPERANDS_NONE
    if op.arity == 3:
        return OPERANDS_BRANCHES
    if op.arity == 0 or not op.differentiable:
        return OPERANDS_NONE
    return {Kind.UNARY: OPERANDS_FIRST, Kind.VC: OPERANDS_FIRST, Kind.CV: OPERANDS_SECOND,
            Kind.VV: OPERANDS_BOTH}[kind]


def interaction(op: Operation, kind: Kind) -> str:
    """The second-derivative pairs of ``op`` recorded with ``kind``."""
    if op.curvature in (LINEAR, PIECEWISE) or op.arity == ARRAY:
        return "none"
    if kind == Kind.UNARY:
        return "self"
    if op.curvature == BILINEAR:
        return "cross" if kind == Kind.VV else "none"
    if op.curvature == QUOTIENT:
        return {Kind.VV: "div", Kind.VC: "none", Kind.CV: "self"}[kind]
    return "all" if kind == Kind.VV else "self"


# ---- the operand decoder -----------------------------------------------------------
#
# What each of an entry's two operand indices refers to, by full opcode: the
# one place the layout of operands is decoded. _generate.py writes it into
# _opcodes.pxd (WG_ROLES) for the compiled passes, whose inline twin is
# _operands.pxd's operand_role; the Python tools read ROLES.

class Role(IntEnum):
    NONE = 0    # unused
    SLOT = 1    # a slot (an input, a parameter or an earlier entry's result)
    CONST = 2   # an index into the constant pool
    AUX = 3     # an index into the side table (select: its two branch slots there)
    ARRAY = 4   # an index into the side table: an array entry's descriptor
    COUNT = 5   # the number of slots an array entry writes


def operand_roles(op: Operation, kind: Kind) -> Tuple[Role, Role]:
    """The roles of operands 0 and 1 of ``op`` recorded with ``kind``."""
    if op.arity == 0:
        return Role.CONST, Role.NONE
    if op.arity == ARRAY:
        return Role.ARRAY, Role.COUNT
    if op.arity == 3:
        return Role.SLOT, Role.AUX
    if op.arity == 1:
        return Role.SLOT, Role.NONE
    return {Kind.VV: (Role.SLOT, Role.SLOT), Kind.VC: (Role.SLOT, Role.CONST),
            Kind.CV: (Role.CONST, Role.SLOT)}[kind]


def _roles_table() -> np.ndarray:
    table = np.zeros((256, 2), dtype=np.uint8)
    for code, (op, kind) in BY_CODE.items():
        table[code] = operand_roles(op, kind)
    table.flags.writeable = False
    return table


# (256, 2): the roles of both operands of every full opcode (NONE, NONE for
# invalid codes); index it with an array of opcodes to decode a whole tape.
ROLES = _roles_table()


def valid_codes() -> np.ndarray:
    """Boolean table over all 256 byte values: which are valid opcodes."""
    ok = np.zeros(256, dtype=bool)
    ok[list(BY_CODE)] = True
    return ok


def split(code: int):
    """``(Operation, Kind)`` of a full opcode."""
    return BY_CODE[code]


def code_of(name: str, kind: Kind = Kind.UNARY) -> int:
    return BY_NAME[name].code(kind)
