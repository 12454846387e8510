"""Making the tape visible: the Wengert list, derivative traces, the graph, statistics.

Everything here reads a recorded :class:`~wengert.Tape`; nothing changes it.

* :func:`listing` -- the Wengert list, one line per slot, optionally with values;
* :func:`trace_text` -- the forward tangent trace and the reverse adjoint
  trace at one point, in the layout of tables 2 and 3 of Baydin et al.,
  "Automatic differentiation in machine learning: a survey" (JMLR 2018);
* :func:`to_dot` and :func:`render` -- the computational graph as Graphviz
  text, and as an SVG/PNG/PDF file through Graphviz's ``dot`` program;
* :func:`stats` and :func:`summary` -- sizes, operation counts and memory.

Every number in a trace comes from the compiled sweeps; the symbolic rules
printed beside them (``v̇[1] = v̇[-1] / v[-1]``) are text for the reader. A
test evaluates each printed rule and checks it against the sweeps.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata

import numpy as np

from wengert import _opcodes as ops
from wengert._errors import ArgumentError, ShapeError, WengertError
from wengert._opcodes import Kind

__all__ = ["listing", "trace_text", "to_dot", "render", "stats", "summary",
           "GraphvizNotFoundError"]


class GraphvizNotFoundError(WengertError, RuntimeError):
    """Graphviz's ``dot`` program, which :func:`render` runs, is not installed."""


# ---- names and text helpers ---------------------------------------------------------

_UNICODE = dict(dot="\u0307", bar="\u0304", sep=" \u2502 ")
_ASCII = dict(dot="_dot", bar="_bar", sep=" | ")


def _slot_namer(n_inputs, first, v="v", p="p"):
    """Names of slots as in the survey: inputs ``v[1-n] .. v[0]``, dynamic
    parameters ``p[0] ..``, operations ``v[1] ..``."""
    def name(s):
        if s < n_inputs:
            return f"{v}[{s - n_inputs + 1}]"
        if s < first:
            return f"{p}[{s - n_inputs}]"
        return f"{v}[{s - first + 1}]"
    return name


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**",
          **ops.COMPARISON_SYMBOL}


def _expression(code, a0, a1, consts, aux, name):
    """The right-hand side of one tape entry, e.g. ``log(v[-1])``, ``v[1] * 2``."""
    op, kind = ops.split(code)
    if op.name == "const":
        return repr(float(consts[a0]))
    if op.name == "select":
        return f"{name(aux[a1])} if {name(a0)} else {name(aux[a1 + 1])}"
    if kind == Kind.UNARY:
        return f"-{name(a0)}" if op.name == "neg" else f"{op.name}({name(a0)})"
    left = f"{consts[a0]:g}" if kind == Kind.CV else name(a0)
    right = f"{consts[a1]:g}" if kind == Kind.VC else name(a1)
    if op.name in _INFIX:
        return f"{left} {_INFIX[op.name]} {right}"
    return f"{op.name}({left}, {right})"


def _width(text):
    """Columns ``text`` takes on a terminal (combining accents take none)."""
    return sum(1 for ch in text if not unicodedata.combining(ch))


def _pad(text, width):
    return text + " " * max(0, width - _width(text))


def _value(v):
    """A value column: 6 significant digits, a space where the sign would go."""
    return f"{v: .6g}"


def _number(v):
    return f"{v:.6g}"


def _vector(a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return _number(float(a))
    return np.array2string(a, separator=", ", formatter={"float_kind": _number},
                           threshold=12, edgeitems=4)


def _const_text(c):
    """A constant inside a formula: short when exact, parenthesised when negative."""
    text = f"{c:g}" if float(f"{c:g}") == c else repr(float(c))
    return f"({text})" if text.startswith("-") else text


# ---- the Wengert list -----------------------------------------------------------------

def _one_point(tape, x, what):
    """Flat inputs of one point, with a ShapeError naming the shape for a batch."""
    X, B = tape._inputs(x)
    if B is not None:
        raise ShapeError(
            f"{what} shows one point: x has shape {np.shape(x)}, a batch; pass one "
            f"point of shape {tape.in_shape}")
    return X


def _values(tape, X, args):
    """Every slot's value at one point, as a flat array (engine's zero-order sweep)."""
    val = tape._work_values(X.reshape(tape.n_inputs, 1), 1, tape._params(args))
    tape._engine.values(val, False)
    return val[:, 0]


def _primal_rows(tape, name):
    """``(label, expression, slot)`` for every slot and every output."""
    eng = tape._engine
    rows = []
    for s in range(eng.first):
        source = f"x[{s}]" if s < tape.n_inputs else f"p[{s - tape.n_inputs}]"
        rows.append((name(s), source, s))
    consts, aux = eng.consts, eng.aux
    for i, (code, (a0, a1)) in enumerate(zip(eng.opcodes.tolist(), eng.args.tolist())):
        rows.append((name(eng.first + i), _expression(code, a0, a1, consts, aux, name),
                     eng.first + i))
    for j, s in enumerate(eng.outputs.tolist()):
        rows.append((_output_label(tape, j), name(s), s))
    return rows


def _output_label(tape, j, y="y"):
    return y if tape.n_outputs == 1 else f"{y}[{j}]"


def _guard_rows(tape, name):
    """``(expression, note)`` for every guard of the tape."""
    eng = tape._engine
    rows = []
    for code, (a0, a1), (where, text, expected) in zip(
            eng.guard_codes.tolist(), eng.guard_args.tolist(), tape._guard_info):
        expr = _expression(code, a0, a1, eng.consts, eng.aux, name)
        rows.append((expr, f"# must stay {expected}: `{text}` at {where}"))
    return rows


def listing(tape, x=None, *args, max_lines=None):
    """The Wengert list as text, one line per slot, with values at ``x``.

    Inputs are numbered ``v[1-n] .. v[0]``, dynamic parameters ``p[0] ..``
    and operations ``v[1] ..``, as in the survey by Baydin et al.; values are
    shown with 6 significant digits. Guards (comparisons that steered Python
    control flow while recording) follow the outputs.

    Parameters
    ----------
    tape : Tape
    x : array_like, optional
        One point of the recorded input shape; without it, no values.
    *args
        Dynamic parameters (omitted: the recorded values).
    max_lines : int, optional
        Show at most this many lines, then one line saying how many were left out.

    Returns
    -------
    str

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.display import listing
    >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1], np.ones(2))
    >>> print(listing(tape, [0.0, 2.0]))        # doctest: +NORMALIZE_WHITESPACE
    v[-1] = x[0]                =  0
    v[0]  = x[1]                =  2
    v[1]  = sin(v[-1])          =  0
    v[2]  = v[1] * v[0]         =  0
    y     = v[2]                =  0
    """
    values = None if x is None else _values(tape, _one_point(tape, x, "listing"), args)
    name = _slot_namer(tape.n_inputs, tape._engine.first)
    rows = _primal_rows(tape, name)
    guards = _guard_rows(tape, name)
    width_l = max([len(r[0]) for r in rows] + [len("guard") if guards else 0])
    width_e = max([len(r[1]) for r in rows] + [len(g[0]) for g in guards])
    lines = []
    for label, expr, slot in rows:
        if max_lines is not None and len(lines) >= max_lines:
            break
        text = f"{label:<{width_l}} = {expr:<{width_e}}"
        if values is not None:
            text += f" = {_value(values[slot])}"
        lines.append(text.rstrip())
    for expr, note in guards:
        if max_lines is not None and len(lines) >= max_lines:
            break
        lines.append(f"{'guard':<{width_l}} : {expr:<{width_e}}   {note}")
    left_out = len(rows) + len(guards) - len(lines)
    if left_out:
        lines.append(f"... {left_out} more lines")
    return "\n".join(lines)


# ---- local partial derivatives: the rules printed in traces --------------------------
#
# One template per operand: the partial derivative of the result with
# respect to that operand, in terms of the operands {a}, {b} and the result
# {r}. Forms: "1", "-1", "0" (no contribution), "/X" (1 / X), a leading "-"
# (negate), or a factor X. Templates must be valid Python with `cos`, `sqrt`,
# `log`, `pi` ... from NumPy once names are replaced by numbers: the tests
# evaluate them against the compiled sweeps. Sums are parenthesised so that
# "d * X" and "d / X" parse as meant.

_PARTIALS = {
    "neg": ("-1",),
    "square": ("2 * {a}",),
    "sqrt": ("/(2 * {r})",),
    "cbrt": ("/(3 * {r}**2)",),
    "reciprocal": ("-{r}**2",),
    "exp": ("{r}",),
    "expm1": ("({r} + 1)",),
    "log": ("/{a}",),
    "log1p": ("/(1 + {a})",),
    "log2": ("/({a} * log(2))",),
    "log10": ("/({a} * log(10))",),
    "sin": ("cos({a})",),
    "cos": ("-sin({a})",),
    "tan": ("(1 + {r}**2)",),
    "arcsin": ("/sqrt(1 - {a}**2)",),
    "arccos": ("-/sqrt(1 - {a}**2)",),
    "arctan": ("/(1 + {a}**2)",),
    "sinh": ("cosh({a})",),
    "cosh": ("sinh({a})",),
    "tanh": ("(1 - {r}**2)",),
    "arcsinh": ("/sqrt({a}**2 + 1)",),
    "arccosh": ("/sqrt({a}**2 - 1)",),
    "arctanh": ("/(1 - {a}**2)",),
    "abs": ("sign({a})",),
    "sign": ("0",),
    "sigmoid": ("{r} * (1 - {r})",),
    "erf": ("2 / sqrt(pi) * exp(-{a}**2)",),
    "add": ("1", "1"),
    "sub": ("1", "-1"),
    "mul": ("{b}", "{a}"),
    "div": ("/{b}", "-{r} / {b}"),
    "pow": ("{b} * {a}**({b} - 1)", "log({a}) * {r}"),
    "arctan2": ("{b} / ({a}**2 + {b}**2)", "-{a} / ({a}**2 + {b}**2)"),
    "hypot": ("{a} / {r}", "{b} / {r}"),
    "logaddexp": ("exp({a} - {r})", "exp({b} - {r})"),
    **{name: ("0", "0") for name in ops.COMPARISONS},
}


def _resolved_partials(name, a, b):
    """minimum/maximum: the partials at the operand values ``a``, ``b``
    (which side is taken; half each at a tie)."""
    if a == b:
        return ("0.5", "0.5")
    if np.isnan(a) or np.isnan(b):
        return ("nan", "nan")
    first = (a < b) if name == "minimum" else (a > b)
    return ("1", "0") if first else ("0", "1")


def _term(d, partial):
    """``d`` times the partial whose template (already filled in) is ``partial``;
    None for a zero partial."""
    if partial == "0":
        return None
    if partial.startswith("-"):
        inner = _term(d, partial[1:] or "1")
        return inner[1:] if inner.startswith("-") else "-" + inner
    if partial == "1":
        return d
    if partial.startswith("/"):
        return f"{d} / {partial[1:]}"
    return f"{d} * {partial}"


def _sum_text(terms):
    if not terms:
        return "0"
    text = terms[0]
    for t in terms[1:]:
        text += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
    return text


class _Op:
    """One tape entry, unpacked: name, kind, operand slots and constants."""

    __slots__ = ("index", "slot", "op", "kind", "operands", "consts", "cond")

    def __init__(self, index, slot, op, kind, operands, consts, cond):
        self.index, self.slot, self.op, self.kind = index, slot, op, kind
        self.operands = operands      # [(position, slot)]: the slot operands
        self.consts = consts          # {position: value}: the constant operands
        self.cond = cond              # select: the condition slot


def _unpack(tape):
    """Every operation of the tape as an :class:`_Op`, in tape order."""
    eng = tape._engine
    consts, aux = eng.consts, eng.aux
    result = []
    for i, (code, (a0, a1)) in enumerate(zip(eng.opcodes.tolist(), eng.args.tolist())):
        op, kind = ops.split(code)
        cond = None
        if op.name == "const":
            operands, cs = [], {}
        elif op.name == "select":
            operands, cs, cond = [(0, int(aux[a1])), (1, int(aux[a1 + 1]))], {}, a0
        elif kind == Kind.UNARY:
            operands, cs = [(0, a0)], {}
        elif kind == Kind.VV:
            operands, cs = [(0, a0), (1, a1)], {}
        elif kind == Kind.VC:
            operands, cs = [(0, a0)], {1: float(consts[a1])}
        else:
            operands, cs = [(1, a1)], {0: float(consts[a0])}
        result.append(_Op(i, eng.first + i, op, kind, operands, cs, cond))
    return result


def _partial_templates(entry, primal):
    """The partial of ``entry``'s result with respect to each of its slot
    operands, as ``{position: text}`` from the table, with operand and result
    names from ``primal`` (a function of a slot)."""
    slots = dict(entry.operands)

    def operand(pos):
        return _const_text(entry.consts[pos]) if pos in entry.consts else primal(slots[pos])

    fill = dict(r=primal(entry.slot), a=operand(0))
    if ops.is_binary(entry.op):
        fill["b"] = operand(1)
    templates = _PARTIALS[entry.op.name]
    return {pos: templates[pos].format(**fill) for pos in slots}


def _partials_at(entry, primal, val):
    """Partials as text with names from ``primal`` (a function of a slot),
    resolving select/minimum/maximum with the numeric values ``val``."""
    name = entry.op.name
    if name == "select":
        taken = 0 if val[entry.cond] != 0 else 1
        return {pos: ("1" if pos == taken else "0") for pos, _ in entry.operands}
    if name in ("minimum", "maximum"):
        values = {pos: val[s] for pos, s in entry.operands}
        values.update(entry.consts)
        both = _resolved_partials(name, values[0], values[1])
        return {pos: both[pos] for pos, _ in entry.operands}
    return _partial_templates(entry, primal)


def _tangent_rule(entry, primal, dotted, val, constant=()):
    """The tangent rule of ``entry`` as text, e.g. ``v̇[-1] * v[0] + v̇[0] * v[-1]``;
    terms of the slots in ``constant`` (the parameters: tangent 0) are left out."""
    if entry.op.name == "const":
        return "0"
    if entry.op.name == "select":
        (_, a), (_, b) = entry.operands
        return f"{dotted(a)} if {primal(entry.cond)} else {dotted(b)}"
    partials = _partials_at(entry, primal, val)
    terms = [_term(dotted(s), partials[pos]) for pos, s in entry.operands if s not in constant]
    return _sum_text([t for t in terms if t is not None])


# ---- the edge tape: every local partial from one compiled sweep ---------------------

def _edge_partials(tape, entries, val, seeds):
    """Local partials and adjoint contributions of every edge, from the sweeps.

    Builds a tape in which every operand of every operation is a fresh input
    holding that operand's value, so the operations are independent; one
    reverse sweep seeded at each result with 1 (column 0) and with
    ``seeds[slot]`` (column 1) leaves in each fresh input the local partial
    d result / d operand and the contribution ``seed * partial`` the real
    reverse sweep adds to that operand's adjoint.

    ``entries`` is :func:`_unpack` of the whole tape; ``val`` holds every
    slot's value and ``seeds`` every slot's final adjoint. Returns
    ``{(op index, position): (partial, contribution)}``.
    """
    from wengert._sweeps import Engine
    from wengert.tape import _VALID_CODES
    eng = tape._engine
    codes = eng.opcodes
    args = eng.args.copy()
    aux = []
    inputs = []         # original slot of each fresh input
    where = {}          # (op index, position) -> fresh input
    for e in entries:
        fresh = []
        for pos, s in e.operands:
            where[(e.index, pos)] = len(inputs)
            fresh.append(len(inputs))
            inputs.append(s)
        if e.op.name == "select":
            args[e.index] = (len(inputs), len(aux))
            inputs.append(e.cond)
            aux.extend(fresh)
        elif e.kind in (Kind.UNARY, Kind.VV) and e.op.name != "const":
            args[e.index] = (fresh[0], fresh[1] if len(fresh) > 1 else 0)
        elif e.kind == Kind.VC:
            args[e.index, 0] = fresh[0]
        elif e.kind == Kind.CV:
            args[e.index, 1] = fresh[0]
    n = len(inputs)       # the operations now read fresh inputs only; op i writes slot n + i
    edge = Engine(codes, args, eng.consts, np.array(aux, dtype=np.int32),
                  np.zeros(0, dtype=np.int32), n, 0, np.zeros(0, np.uint8),
                  np.zeros((0, 2), np.int32), np.zeros(0, np.uint8), _VALID_CODES)
    work = np.empty((edge.n_slots, 1))
    work[:n, 0] = val[np.array(inputs, dtype=np.intp)] if n else 0.0
    edge.values(work, False)
    bar = np.zeros((edge.n_slots, 1, 2))
    bar[n:, 0, 0] = 1.0
    bar[n:, 0, 1] = seeds[eng.first:]
    edge.adjoints(work, bar)
    return {key: (float(bar[i, 0, 0]), float(bar[i, 0, 1])) for key, i in where.items()}


# ---- traces ----------------------------------------------------------------------------

def trace_text(tape, x, direction=None, args=(), mode="forward", *, ascii=False):
    """The forward tangent trace or the reverse adjoint trace at one point.

    ``mode="forward"``: the layout of table 2 of Baydin et al. (2018) -- the
    primal trace (every slot's value) beside the tangent trace (every slot's
    derivative along ``direction``, with the rule that computes it), then
    the output's directional derivative ``J @ v``.

    ``mode="reverse"``: the layout of table 3 -- the primal trace, then every
    slot's adjoint from the output back to the inputs (each the sum of its
    consumers' adjoints times the local partials), ending with ``w @ J``
    (the gradient for a scalar output and ``w = 1``).

    All numbers come from the compiled sweeps (one direction); the rules are
    printed for the reader. Values have 6 significant digits.

    Parameters
    ----------
    tape : Tape
    x : array_like
        One point of the recorded input shape (a batch raises ``ValueError``).
    direction : array_like, optional
        Forward: the tangent seed ``v`` of ``x.shape`` (default: the first
        unit vector). Reverse: the output weight ``w`` of the output's shape
        (default 1 for a scalar output).
    args : tuple
        Dynamic parameters (empty: the recorded values).
    mode : {"forward", "reverse"}
    ascii : bool
        Write ``v_dot``/``v_bar`` instead of the accented ``v̇``/``v̄``.

    Returns
    -------
    str

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1]), [2.0, 5.0])
    >>> text = tape.trace([2.0, 5.0], [1.0, 0.0])
    >>> print(text.splitlines()[5])             # doctest: +NORMALIZE_WHITESPACE
    v[1]  = log(v[-1])   =  0.693147 │ v̇[1]  = v̇[-1] / v[-1]               =  0.5
    >>> print(tape.trace([2.0, 5.0], 1.0, mode="reverse").splitlines()[-1])
    gradient x̄ = [5.5, 1.71634]
    """
    if mode not in ("forward", "reverse"):
        raise ArgumentError(f"mode must be 'forward' or 'reverse', not {mode!r}")
    style = _ASCII if ascii else _UNICODE
    X = _one_point(tape, x, "trace")
    params = tape._params(tuple(args))
    eng = tape._engine
    if mode == "forward":
        seed = _seed(tape, direction, tape.in_shape, "v", "the input shape",
                     default=_unit(tape.n_inputs))
        val = tape._work_values(X.reshape(tape.n_inputs, 1), 1, params)
        dot = np.zeros((eng.n_slots, 1, 1))
        dot[:tape.n_inputs, 0, 0] = seed
        eng.tangents(val, dot, False)
        return _forward_text(tape, X, seed, val[:, 0], dot[:, 0, 0], style)
    default = np.ones(1) if tape.n_outputs == 1 else None
    seed = _seed(tape, direction, tape.out_shape, "w", "the output shape", default)
    val = tape._work_values(X.reshape(tape.n_inputs, 1), 1, params)
    eng.values(val, False)
    bar = np.zeros((eng.n_slots, 1, 1))
    np.add.at(bar[:, 0, 0], eng.outputs, seed)
    eng.adjoints(val, bar)
    return _reverse_text(tape, X, seed, val[:, 0], bar[:, 0, 0], style)


def _unit(n):
    e = np.zeros(n)
    if n:
        e[0] = 1.0
    return e


def _seed(tape, direction, shape, name, what, default):
    if direction is None:
        if default is None:
            raise ShapeError(
                f"the reverse trace needs an output weight w of shape {shape} for this "
                "tape's vector output")
        return default
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != tuple(shape) and not (d.size == 1 and int(np.prod(shape)) == 1):
        raise ShapeError(
            f"{name} has shape {d.shape}; a trace follows one direction, so {name} must "
            f"have {what} {tuple(shape)}")
    return d.reshape(-1)


def _names(tape, style):
    n, first = tape.n_inputs, tape._engine.first
    return (_slot_namer(n, first),
            _slot_namer(n, first, "v" + style["dot"], "p" + style["dot"]),
            _slot_namer(n, first, "v" + style["bar"], "p" + style["bar"]))


def _primal_column(tape, name, val):
    rows = _primal_rows(tape, name)
    wl = max(len(r[0]) for r in rows)
    we = max(len(r[1]) for r in rows)
    return [f"{label:<{wl}} = {expr:<{we}} = {_value(val[slot])}" for label, expr, slot in rows]


def _align(rows):
    """Lines from ``(label, rule, value text)`` rows, columns aligned."""
    wl = max((_width(r[0]) for r in rows), default=0)
    wr = max((_width(r[1]) for r in rows), default=0)
    return [f"{_pad(label, wl)} = {_pad(rule, wr)} = {value}" for label, rule, value in rows]


def _forward_text(tape, X, seed, val, dot, style):
    eng = tape._engine
    primal, dotted, _ = _names(tape, style)
    d = style["dot"]
    rows = []
    for s in range(eng.first):
        if s < tape.n_inputs:
            rows.append((dotted(s), f"x{d}[{s}]", _value(dot[s])))
        else:
            rows.append((dotted(s), "0", _value(dot[s])))
    for e in _unpack(tape):
        rule = _tangent_rule(e, primal, dotted, val, range(tape.n_inputs, eng.first))
        rows.append((dotted(e.slot), rule, _value(dot[e.slot])))
    outputs = eng.outputs.tolist()
    for j, s in enumerate(outputs):
        rows.append((_output_label(tape, j, "y" + d), dotted(s), _value(dot[s])))
    left = _primal_column(tape, primal, val)
    right = _align(rows)
    wl = max(_width(t) for t in left)
    lines = [f"Forward mode at x = {_vector(X.reshape(tape.in_shape))} along "
             f"x{d} = {_vector(seed.reshape(tape.in_shape))}", ""]
    lines.append(f"{_pad('Forward primal trace', wl)}{style['sep']}Forward tangent trace")
    lines += [f"{_pad(a, wl)}{style['sep']}{b}".rstrip() for a, b in zip(left, right)]
    jv = dot[np.array(outputs, dtype=np.intp)].reshape(tape.out_shape)
    lines += ["", f"directional derivative J @ x{d} = y{d} = {_vector(jv)}"]
    return "\n".join(lines)


_MAX_TERMS = 8      # terms shown in one adjoint row; a heavily used slot is summarised


def _reverse_text(tape, X, seed, val, bar, style):
    eng = tape._engine
    primal, _, barred = _names(tape, style)
    b = style["bar"]
    entries = _unpack(tape)
    edges = _edge_partials(tape, entries, val, bar)
    # Consumers of every slot, for the adjoint as a sum over them.
    consumers = {}
    for e in entries:
        if not e.op.differentiable:
            continue
        partials = _partials_at(e, primal, val)
        for pos, s in e.operands:
            if partials[pos] != "0":
                consumers.setdefault(s, []).append((e, pos, partials[pos]))
    seeds = {}
    for j, s in enumerate(eng.outputs.tolist()):
        seeds.setdefault(s, []).append(j)
    rows = []
    for s in range(eng.n_slots - 1, -1, -1):
        terms, numbers = [], []
        for j in seeds.get(s, ()):
            terms.append(_output_label(tape, j, "y" + b))
            numbers.append(float(seed[j]))
        uses = consumers.get(s, [])
        for e, pos, partial in uses[:_MAX_TERMS]:
            terms.append(_term(barred(e.slot), partial))
            numbers.append(edges[(e.index, pos)][1])
        rule = _sum_text(terms)
        if len(uses) > _MAX_TERMS:
            rule += f" + ... ({len(uses) - _MAX_TERMS} more)"
        value = _value(bar[s])
        if 1 < len(numbers) and len(uses) <= _MAX_TERMS:
            value = f"{_sum_text([_number(v) for v in numbers])} = {_number(bar[s])}"
            value = value if bar[s] < 0 or np.isnan(bar[s]) else " " + value
        rows.append((barred(s), rule, value))
    for i in range(tape.n_inputs):
        rows.append((f"x{b}[{i}]", barred(i), _value(bar[i])))
    left = _primal_column(tape, primal, val)
    grad = bar[:tape.n_inputs].reshape(tape.in_shape)
    weight = _vector(seed.reshape(tape.out_shape))
    lines = [f"Reverse mode at x = {_vector(X.reshape(tape.in_shape))} with output weight "
             f"y{b} = {weight}", "", "Forward primal trace"]
    lines += left
    lines += ["", "Reverse adjoint trace (from the output back to the inputs)"]
    lines += [line.rstrip() for line in _align(rows)]
    what = "gradient" if tape.n_outputs == 1 and seed[0] == 1.0 else f"y{b} @ J ="
    lines += ["", f"{what} x{b} = {_vector(grad)}"]
    return "\n".join(lines)


# ---- the graph ---------------------------------------------------------------------------

_COMMUTATIVE = {"add", "mul", "hypot", "minimum", "maximum", "logaddexp", "eq", "ne"}


def _dot_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(tape, *, name="wengert"):
    """The computational graph as Graphviz text.

    One node per slot: inputs ``x[i]`` (blue boxes), dynamic parameters
    ``p[i]`` (yellow boxes), constants (plain boxes) and operations (ellipses
    labelled with the operation's name and the slot, the full expression as
    tooltip); a small plain node for each constant operand of a
    slot-and-constant operation; one node per output element (green) and per
    guard (dashed octagon). Edges run from operand to result, one per
    operand; an operation whose operand order matters labels its edges
    ``1`` and ``2``, and a select labels its condition (dashed), ``true``
    and ``false`` branches.

    Parameters
    ----------
    tape : Tape
    name : str
        The graph's name.

    Returns
    -------
    str
        ``digraph name { ... }``, ready for ``dot -Tsvg``; see :func:`render`.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1], np.ones(2))
    >>> text = tape.to_dot()
    >>> text.splitlines()[0], text.count("->")
    ('digraph wengert {', 4)
    """
    eng = tape._engine
    slot_name = _slot_namer(tape.n_inputs, eng.first)
    out = [f"digraph {_dot_string(name) if not name.isidentifier() else name} {{",
           '  graph [rankdir=LR, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=11];',
           '  edge [arrowsize=0.7, fontname="Helvetica", fontsize=10];']
    for s in range(eng.first):
        if s < tape.n_inputs:
            label, fill = f"x[{s}]\n{slot_name(s)}", "#cfe2f3"
        else:
            label, fill = f"p[{s - tape.n_inputs}]", "#fff2cc"
        out.append(f"  s{s} [label={_dot_string(label)}, shape=box, "
                   f'style="rounded,filled", fillcolor="{fill}"];')
    edges = []
    consts, aux = eng.consts, eng.aux
    for e in _unpack(tape):
        code, (a0, a1) = int(eng.opcodes[e.index]), eng.args[e.index].tolist()
        expr = f"{slot_name(e.slot)} = {_expression(code, a0, a1, consts, aux, slot_name)}"
        opname = e.op.name
        if opname == "const":
            attrs = f"label={_dot_string(repr(float(consts[a0])))}, shape=box"
        else:
            shape = "diamond" if opname == "select" else "ellipse"
            label = opname + "\n" + slot_name(e.slot)
            attrs = f"label={_dot_string(label)}, shape={shape}"
        out.append(f"  s{e.slot} [{attrs}, tooltip={_dot_string(expr)}];")
        if opname == "select":
            edges.append(f'  s{e.cond} -> s{e.slot} [label="cond", style=dashed];')
            (_, t), (_, f) = e.operands
            edges.append(f'  s{t} -> s{e.slot} [label="true"];')
            edges.append(f'  s{f} -> s{e.slot} [label="false"];')
            continue
        ordered = ops.is_binary(e.op) and opname not in _COMMUTATIVE
        sources = sorted([(pos, f"s{s}") for pos, s in e.operands]
                         + [(pos, f"c{e.index}_{pos}") for pos in e.consts])
        for pos, c in e.consts.items():
            out.append(f"  c{e.index}_{pos} [label={_dot_string(f'{c:g}')}, shape=plaintext];")
        for pos, src in sources:
            label = f' [label="{pos + 1}"]' if ordered else ""
            edges.append(f"  {src} -> s{e.slot}{label};")
    for j, s in enumerate(eng.outputs.tolist()):
        label = _output_label(tape, j)
        out.append(f"  y{j} [label={_dot_string(label)}, shape=box, "
                   'style="rounded,filled,bold", fillcolor="#d9ead3"];')
        edges.append(f"  s{s} -> y{j};")
    for g, (code, (a0, a1), (where, text, expected)) in enumerate(zip(
            eng.guard_codes.tolist(), eng.guard_args.tolist(), tape._guard_info)):
        op, kind = ops.split(code)
        label = f"guard: {text}\nmust stay {expected}\n{where}"
        out.append(f"  g{g} [label={_dot_string(label)}, shape=octagon, style=dashed];")
        for pos, (arg, is_const) in enumerate(((a0, kind == Kind.CV), (a1, kind == Kind.VC))):
            if is_const:
                out.append(f"  g{g}_c{pos} [label={_dot_string(f'{consts[arg]:g}')}, "
                           "shape=plaintext];")
                edges.append(f"  g{g}_c{pos} -> g{g} [style=dashed];")
            else:
                edges.append(f"  s{arg} -> g{g} [style=dashed];")
    return "\n".join(out + edges + ["}"]) + "\n"


_INSTALL_HINT = (
    "install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
    "`dnf install graphviz` (Fedora), `brew install graphviz` (macOS), "
    "`conda install graphviz`, or https://graphviz.org/download/; "
    "or write tape.to_dot() to a file and render it elsewhere")


def render(tape, path, format=None, *, program="dot"):
    """Draw the tape's graph to an image file with Graphviz's ``dot`` program.

    Parameters
    ----------
    tape : Tape
    path : str or os.PathLike
        The file to write (exactly that name).
    format : str, optional
        ``"svg"``, ``"png"``, ``"pdf"`` or any other ``dot -T`` format;
        default: the extension of ``path``, else ``"svg"``.
    program : str
        The Graphviz layout program to run (``dot``, ``neato`` ...).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    GraphvizNotFoundError
        ``program`` is not on the PATH; the message says how to install Graphviz.
    WengertError
        Graphviz failed (its message is included).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.display import render
    >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1], np.ones(2))
    >>> render(tape, "graph.svg")                # doctest: +SKIP
    PosixPath('graph.svg')
    """
    import pathlib
    path = pathlib.Path(os.fspath(path))
    if format is None:
        format = path.suffix[1:].lower() or "svg"
    exe = shutil.which(program)
    if exe is None:
        raise GraphvizNotFoundError(
            f"rendering the graph needs Graphviz's `{program}` program, which is not on "
            f"the PATH; {_INSTALL_HINT}")
    done = subprocess.run([exe, f"-T{format}", "-o", str(path)], input=to_dot(tape),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise WengertError(f"`{program} -T{format}` failed: {message}")
    return path


# ---- statistics ------------------------------------------------------------------------

_KIND_NAMES = {Kind.UNARY: "unary", Kind.VV: "vv", Kind.VC: "vc", Kind.CV: "cv"}


def stats(tape):
    """Size, operation counts and memory of a tape, as a dict.

    Keys
    ----
    n_ops, n_inputs, n_params, n_outputs, n_guards, n_consts, n_slots : int
        Counts; ``n_slots = n_inputs + n_params + n_ops`` (one value per slot).
    by_operation : dict
        Operations per name (``{"mul": 3, "sin": 1, ...}``), in table order.
    by_kind : dict
        Operations by where their operands live: ``const`` (a constant
        entry), ``select``, ``unary``, ``vv`` (two slots), ``vc`` (slot and
        constant), ``cv`` (constant and slot); they sum to ``n_ops``.
    tape_bytes : dict
        Bytes of each tape array (``opcodes``, ``args``, ``consts``, ``aux``,
        ``outputs``, ``guards``) and their ``total``.
    work_bytes : int
        Bytes of one work array of slot values (``n_slots * 8``): a replay
        at one point needs one for ``forward``, two for ``gradient``, and
        ``1 + k`` for ``jvp`` in k directions; a batch of B points B times that.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1] + 1.0, np.ones(2))
    >>> s = tape.stats()
    >>> s["n_ops"], s["by_operation"], s["by_kind"]["vc"], s["work_bytes"]
    (3, {'sin': 1, 'add': 1, 'mul': 1}, 1, 40)
    """
    eng = tape._engine
    counts = np.bincount(eng.opcodes, minlength=256)
    by_operation = {}
    by_kind = dict(const=0, select=0, unary=0, vv=0, vc=0, cv=0)
    for code in np.flatnonzero(counts).tolist():
        op, kind = ops.split(code)
        n = int(counts[code])
        by_operation[op.name] = by_operation.get(op.name, 0) + n
        key = op.name if op.name in ("const", "select") else _KIND_NAMES[kind]
        by_kind[key] += n
    by_operation = {op.name: by_operation[op.name] for op in ops.OPERATIONS
                    if op.name in by_operation}
    tape_bytes = dict(
        opcodes=eng.opcodes.nbytes, args=eng.args.nbytes, consts=eng.consts.nbytes,
        aux=eng.aux.nbytes, outputs=eng.outputs.nbytes,
        guards=eng.guard_codes.nbytes + eng.guard_args.nbytes + eng.guard_expected.nbytes)
    tape_bytes = {k: int(v) for k, v in tape_bytes.items()}
    tape_bytes["total"] = sum(tape_bytes.values())
    return dict(
        n_ops=tape.n_ops, n_inputs=tape.n_inputs, n_params=tape.n_params,
        n_outputs=tape.n_outputs, n_guards=tape.n_guards, n_consts=int(eng.consts.size),
        n_slots=int(eng.n_slots), by_operation=by_operation, by_kind=by_kind,
        tape_bytes=tape_bytes, work_bytes=int(eng.n_slots) * 8)


def _bytes(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0


def _count(n, what):
    return f"{n} {what}" + ("" if n == 1 else "s")


def stats_text(tape):
    """:func:`stats` as a few lines of text (what ``python -m wengert show`` prints)."""
    s = stats(tape)
    ops_text = ", ".join(f"{k} {v}" for k, v in sorted(
        s["by_operation"].items(), key=lambda kv: -kv[1])) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in s["by_kind"].items() if v) or "none"
    return "\n".join([
        "size        " + ", ".join(_count(s[key], what) for key, what in (
            ("n_ops", "operation"), ("n_inputs", "input"), ("n_params", "parameter"),
            ("n_outputs", "output"), ("n_guards", "guard"), ("n_consts", "constant")))
        + f" ({_count(s['n_slots'], 'slot')})",
        f"operations  {ops_text}",
        f"operands    {kinds}",
        f"memory      tape {_bytes(s['tape_bytes']['total'])}; one work array "
        f"{_bytes(s['work_bytes'])} (n_slots x 8 B: forward needs 1, gradient 2 per point)",
    ])


def summary(tape, max_lines=20):
    """A description of the tape for ``print(tape)``: shapes, sizes,
    operation counts, memory, and the start of its Wengert list.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.display import summary
    >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1], np.ones(2))
    >>> print(summary(tape).splitlines()[0])
    wengert.Tape: inputs (2,) -> output (), 2 operations
    """
    head = (f"wengert.Tape: inputs {tape.in_shape} -> output {tape.out_shape}, "
            f"{tape.n_ops} operations")
    return "\n".join([head, stats_text(tape), "", listing(tape, max_lines=max_lines)])
