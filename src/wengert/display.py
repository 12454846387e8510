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

from wengert._arguments import check_choice, real_array
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


_INFIX = {op.name: op.symbol for op in ops.OPERATIONS if op.symbol}


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


_EDGE = 4          # elements shown at each end of a long axis (array2string's edgeitems)


def _sparse_vector(shape, index, values):
    """:func:`_vector` of the array of ``shape`` that is zero except at the
    flat positions ``index`` (``values``), without building it: only the
    elements a summarised print shows are ever made."""
    shape = tuple(int(s) for s in shape)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if size <= 12:                          # printed whole: as small as its text
        dense = np.zeros(size)
        dense[index] = values
        return _vector(dense.reshape(shape))
    # Each long axis shrinks to its first and last _EDGE entries around one
    # placeholder that the summarised print replaces by "...".
    keep = [n if n <= 2 * _EDGE else 2 * _EDGE + 1 for n in shape]
    small = np.zeros(keep)
    if index.size:
        hit = np.ones(index.size, dtype=bool)
        at = []
        for c, n in zip(np.unravel_index(index, shape), shape):
            if n > 2 * _EDGE:
                hit &= (c < _EDGE) | (c >= n - _EDGE)
                c = np.where(c < _EDGE, c, c - (n - 2 * _EDGE - 1))
            at.append(c)
        small[tuple(a[hit] for a in at)] = values[hit]
    return np.array2string(small, separator=", ", formatter={"float_kind": _number},
                           threshold=0, edgeitems=_EDGE)


def _const_text(c):
    """A constant inside a formula: short when exact, parenthesised when negative."""
    text = f"{c:g}" if float(f"{c:g}") == c else repr(float(c))
    return f"({text})" if text.startswith("-") else text


# ---- the Wengert list -----------------------------------------------------------------
#
# Every display reads only the rows it prints: the rows are made one by one
# up to the limit, and the numbers come from compiled sweeps over the tape
# without its unread inputs (wengert._compact), so neither time nor memory
# grows with the declared input count or with the rows left out.

MAX_ROWS = 200      # default row limit of listing and trace
MAX_NODES = 200     # default node limit of to_dot and render
_UNSET = object()


def _limit(value, name):
    """A row or node limit: None (no limit) or a non-negative integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ArgumentError(f"{name} must be a non-negative integer or None, not {value!r}")
    return int(value)


def _left_out(count, what, name, limit):
    """The line that says how much a limited display left out."""
    return f"... {count:,} more {what} not shown ({name}={limit})"


def _one_point(tape, x, what):
    """Flat inputs of one point, with a ShapeError naming the shape for a batch."""
    X, B = tape._inputs(x)
    if B is not None:
        raise ShapeError(
            f"{what} shows one point: x has shape {np.shape(x)}, a batch; pass one "
            f"point of shape {tape.in_shape}")
    return X


class _Slots:
    """One number per slot of the tape (values, tangents or adjoints at one
    point), read from a work column of the compact tape; ``lead(slots)``
    gives those of leading slots the compact tape dropped. Indexed by slot
    (an int gives a float, an array an array)."""

    __slots__ = ("_compact", "_work", "_lead")

    def __init__(self, compact, work, lead):
        self._compact, self._work, self._lead = compact, work, lead

    def __getitem__(self, slots):
        s = np.asarray(slots, dtype=np.int64)
        new = self._compact.to_new(s)
        out = np.empty(s.shape)
        kept = new >= 0
        out[kept] = self._work[new[kept]]
        if not kept.all():
            out[~kept] = self._lead(s[~kept])
        return float(out) if out.ndim == 0 else out


def _leading_values(tape, X, params):
    """Values of leading slots: ``X`` for inputs, ``params`` for parameters."""
    def lead(s):
        out = np.empty(s.shape)
        inp = s < tape.n_inputs
        out[inp] = X[s[inp]]
        out[~inp] = params[s[~inp] - tape.n_inputs]
        return out
    return lead


def _values(tape, X, args):
    """Every slot's value at one point as a dense array (for the tests; the
    displays use :func:`_point_values`, which builds nothing per slot)."""
    return _point_values(tape, X, args)[np.arange(tape._engine.n_slots)]


def _point_values(tape, X, args):
    """Every slot's value at one point (a :class:`_Slots`), from the
    engine's zero-order sweep over the compact tape."""
    from wengert._compact import compact
    c = compact(tape)
    params = tape._params(args)
    val = c.leading_work(X, params)
    c.engine.values(val, False)
    return _Slots(c, val[:, 0], _leading_values(tape, X, params))


def _n_primal_rows(tape):
    return tape._engine.first + tape.n_ops + tape.n_outputs


def _primal_rows(tape, name, stop=None):
    """``(label, expression, slot)`` for every slot and every output, in that
    order; only the first ``stop`` of them (None: all)."""
    eng = tape._engine
    first, n_ops = eng.first, tape.n_ops
    stop = _n_primal_rows(tape) if stop is None else min(stop, _n_primal_rows(tape))
    rows = []
    for s in range(min(first, stop)):
        source = f"x[{s}]" if s < tape.n_inputs else f"p[{s - tape.n_inputs}]"
        rows.append((name(s), source, s))
    k = max(0, min(stop - first, n_ops))
    consts, aux = eng.consts, eng.aux
    for i, (code, (a0, a1)) in enumerate(zip(eng.opcodes[:k].tolist(),
                                             eng.args[:k].tolist())):
        rows.append((name(first + i), _expression(code, a0, a1, consts, aux, name), first + i))
    k = max(0, min(stop - first - n_ops, tape.n_outputs))
    for j, s in enumerate(eng.outputs[:k].tolist()):
        rows.append((_output_label(tape, j), name(s), s))
    return rows


def _output_label(tape, j, y="y"):
    return y if tape.n_outputs == 1 else f"{y}[{j}]"


def _guard_rows(tape, name, stop=None):
    """``(expression, note)`` for every guard of the tape (the first ``stop``)."""
    eng = tape._engine
    stop = tape.n_guards if stop is None else min(stop, tape.n_guards)
    rows = []
    for code, (a0, a1), g in zip(eng.guard_codes[:stop].tolist(),
                                  eng.guard_args[:stop].tolist(), tape._guards[:stop]):
        expr = _expression(code, a0, a1, eng.consts, eng.aux, name)
        rows.append((expr, f"# must stay {g.expected}: `{g.text}` at {g.where}"))
    return rows


def listing(tape, x=None, *args, max_rows=MAX_ROWS, max_lines=_UNSET):
    """The Wengert list as text, one line per slot, with values at ``x``.

    Inputs are numbered ``v[1-n] .. v[0]``, dynamic parameters ``p[0] ..``
    and operations ``v[1] ..``, as in the survey by Baydin et al.; values are
    shown with 6 significant digits. Guards (comparisons that steered Python
    control flow while recording) follow the outputs.

    Time and memory are bounded by the rows shown (plus, with ``x``, one
    compiled sweep over the tape), never by the rows left out or by inputs
    the tape never reads.

    Parameters
    ----------
    tape : Tape
    x : array_like, optional
        One point of the recorded input shape; without it, no values.
    *args
        Dynamic parameters (omitted: the recorded values).
    max_rows : int or None
        Show at most this many rows (default 200), then one line saying how
        many were left out, e.g. ``... 999,800 more rows not shown
        (max_rows=200)``; None shows every row.
    max_lines : int or None
        The former name of ``max_rows``.

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
    >>> print(listing(tape, max_rows=2))        # doctest: +NORMALIZE_WHITESPACE
    v[-1] = x[0]
    v[0]  = x[1]
    ... 3 more rows not shown (max_rows=2)
    """
    if max_lines is not _UNSET:
        max_rows = max_lines
    max_rows = _limit(max_rows, "max_rows")
    values = None if x is None else _point_values(tape, _one_point(tape, x, "listing"), args)
    name = _slot_namer(tape.n_inputs, tape._engine.first)
    rows = _primal_rows(tape, name, max_rows)
    guards = _guard_rows(tape, name, None if max_rows is None else max_rows - len(rows))
    width_l = max([len(r[0]) for r in rows] + [len("guard") if guards else 0], default=0)
    width_e = max([len(r[1]) for r in rows] + [len(g[0]) for g in guards], default=0)
    if values is not None:
        values = values[np.array([r[2] for r in rows], dtype=np.int64)]
    lines = []
    for k, (label, expr, slot) in enumerate(rows):
        text = f"{label:<{width_l}} = {expr:<{width_e}}"
        if values is not None:
            text += f" = {_value(values[k])}"
        lines.append(text.rstrip())
    for expr, note in guards:
        lines.append(f"{'guard':<{width_l}} : {expr:<{width_e}}   {note}")
    left_out = _n_primal_rows(tape) + tape.n_guards - len(lines)
    if left_out:
        lines.append(_left_out(left_out, "rows", "max_rows", max_rows))
    return "\n".join(lines)


# ---- local partial derivatives: the rules printed in traces --------------------------
#
# One template per operand, from the operation table's `partials` column
# (its forms are described there). Sums are parenthesised so that "d * X"
# and "d / X" parse as meant.

_PARTIALS = {op.name: op.partials for op in ops.OPERATIONS}


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


def _unpack(tape, start=0, stop=None):
    """The operations ``start .. stop-1`` of the tape (default: all) as
    :class:`_Op`, in tape order."""
    eng = tape._engine
    consts, aux = eng.consts, eng.aux
    result = []
    codes, args = eng.opcodes[start:stop].tolist(), eng.args[start:stop].tolist()
    for i, (code, (a0, a1)) in enumerate(zip(codes, args), start):
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

    ``entries`` is :func:`_unpack` of consecutive operations of the tape
    (the edge tape holds those only); ``val`` holds every slot's value and
    ``seeds`` every slot's final adjoint (indexed by slot arrays). Returns
    ``{(op index, position): (partial, contribution)}``.
    """
    from wengert._sweeps import Engine
    from wengert.tape import _VALID_CODES
    eng = tape._engine
    if not entries:
        return {}
    start, stop = entries[0].index, entries[-1].index + 1
    codes = eng.opcodes[start:stop]
    args = eng.args[start:stop].copy()
    aux = []
    inputs = []         # original slot of each fresh input
    where = {}          # (op index, position) -> fresh input
    for e in entries:
        fresh = []
        for pos, s in e.operands:
            where[(e.index, pos)] = len(inputs)
            fresh.append(len(inputs))
            inputs.append(s)
        i = e.index - start
        if e.op.name == "select":
            args[i] = (len(inputs), len(aux))
            inputs.append(e.cond)
            aux.extend(fresh)
        elif e.kind in (Kind.UNARY, Kind.VV) and e.op.name != "const":
            args[i] = (fresh[0], fresh[1] if len(fresh) > 1 else 0)
        elif e.kind == Kind.VC:
            args[i, 0] = fresh[0]
        elif e.kind == Kind.CV:
            args[i, 1] = fresh[0]
    n = len(inputs)       # the operations now read fresh inputs only; op i writes slot n + i
    edge = Engine(codes, args, eng.consts, np.array(aux, dtype=np.int32),
                  np.zeros(0, dtype=np.int32), n, 0, np.zeros(0, np.uint8),
                  np.zeros((0, 2), np.int32), np.zeros(0, np.uint8), _VALID_CODES)
    work = np.empty((edge.n_slots, 1))
    work[:n, 0] = val[np.array(inputs, dtype=np.intp)] if n else 0.0
    edge.values(work, False)
    bar = np.zeros((edge.n_slots, 1, 2))
    bar[n:, 0, 0] = 1.0
    bar[n:, 0, 1] = seeds[np.arange(eng.first + start, eng.first + stop)]
    edge.adjoints(work, bar)
    return {key: (float(bar[i, 0, 0]), float(bar[i, 0, 1])) for key, i in where.items()}


# ---- traces ----------------------------------------------------------------------------

def trace_text(tape, x, direction=None, args=(), mode="forward", *, ascii=False,
               max_rows=MAX_ROWS):
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
    printed for the reader. Values have 6 significant digits. Each table
    shows at most ``max_rows`` rows; time and memory are bounded by the rows
    shown plus the compiled sweeps over the tape, never by the rows left
    out or by inputs the tape never reads.

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
    max_rows : int or None
        Rows shown per table (default 200), then a line saying how many were
        left out (``... 999,800 more rows not shown (max_rows=200)``); None
        shows every row.

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
    from wengert._compact import compact
    check_choice(mode, "mode", ("forward", "reverse"))
    max_rows = _limit(max_rows, "max_rows")
    style = _ASCII if ascii else _UNICODE
    X = _one_point(tape, x, "trace")
    params = tape._params(tuple(args))
    c = compact(tape)
    eng = c.engine
    val = c.leading_work(X, params)
    lead_values = _leading_values(tape, X, params)
    if mode == "forward":
        if direction is None:
            # The first unit vector, never built: n_inputs may be huge.
            def seed_at(s):
                return (s == 0).astype(np.float64)
            first_unit = ([0], [1.0]) if tape.n_inputs else ([], [])
            seed_text = _sparse_vector(tape.in_shape, *first_unit)
        else:
            seed = _seed(tape, direction, tape.in_shape, "v", "the input shape", None)
            seed_text = _vector(seed.reshape(tape.in_shape))

            def seed_at(s):
                return seed[s]
        dot = np.zeros((eng.n_slots, 1, 1))
        dot[:c.n_inputs, 0, 0] = seed_at(c.inputs)
        eng.tangents(val, dot, False)

        def lead_dot(s):
            out = np.zeros(s.shape)
            inp = s < tape.n_inputs
            out[inp] = seed_at(s[inp])
            return out
        return _forward_text(tape, X, seed_text, _Slots(c, val[:, 0], lead_values),
                             _Slots(c, dot[:, 0, 0], lead_dot), style, max_rows)
    default = np.ones(1) if tape.n_outputs == 1 else None
    seed = _seed(tape, direction, tape.out_shape, "w", "the output shape", default)
    eng.values(val, False)
    bar = np.zeros((eng.n_slots, 1, 1))
    np.add.at(bar[:, 0, 0], c.to_new(tape._engine.outputs), seed)
    eng.adjoints(val, bar)
    grad_text = _sparse_vector(tape.in_shape, c.inputs, bar[:c.n_inputs, 0, 0])
    return _reverse_text(tape, X, seed, _Slots(c, val[:, 0], lead_values),
                         _Slots(c, bar[:, 0, 0], np.zeros_like), style, max_rows, grad_text)


def _seed(tape, direction, shape, name, what, default):
    if direction is None:
        if default is None:
            raise ShapeError(
                f"the reverse trace needs an output weight w of shape {shape} for this "
                "tape's vector output")
        return default
    d = real_array(direction, name)
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


def _primal_column(tape, name, val, stop=None):
    """The primal trace: the first ``stop`` rows of the listing, with values."""
    rows = _primal_rows(tape, name, stop)
    if not rows:
        return []
    values = val[np.array([r[2] for r in rows], dtype=np.int64)]
    wl = max(len(r[0]) for r in rows)
    we = max(len(r[1]) for r in rows)
    return [f"{label:<{wl}} = {expr:<{we}} = {_value(v)}"
            for (label, expr, _), v in zip(rows, values)]


def _align(rows):
    """Lines from ``(label, rule, value text)`` rows, columns aligned."""
    wl = max((_width(r[0]) for r in rows), default=0)
    wr = max((_width(r[1]) for r in rows), default=0)
    return [f"{_pad(label, wl)} = {_pad(rule, wr)} = {value}" for label, rule, value in rows]


def _forward_text(tape, X, seed_text, val, dot, style, max_rows=None):
    eng = tape._engine
    primal, dotted, _ = _names(tape, style)
    d = style["dot"]
    total = _n_primal_rows(tape)
    shown = total if max_rows is None else min(total, max_rows)
    rows, slots = [], []
    for s in range(min(eng.first, shown)):
        rows.append((dotted(s), f"x{d}[{s}]" if s < tape.n_inputs else "0"))
        slots.append(s)
    entries = _unpack(tape, 0, max(0, min(shown - eng.first, tape.n_ops)))
    constant = range(tape.n_inputs, eng.first)
    for e in entries:
        rows.append((dotted(e.slot), _tangent_rule(e, primal, dotted, val, constant)))
        slots.append(e.slot)
    k = max(0, shown - len(rows))
    for j, s in enumerate(eng.outputs[:k].tolist()):
        rows.append((_output_label(tape, j, "y" + d), dotted(s)))
        slots.append(s)
    numbers = dot[np.array(slots, dtype=np.int64)]
    left = _primal_column(tape, primal, val, shown)
    right = _align([(a, b, _value(v)) for (a, b), v in zip(rows, numbers)])
    wl = max((_width(t) for t in left), default=0)
    lines = [f"Forward mode at x = {_vector(X.reshape(tape.in_shape))} along "
             f"x{d} = {seed_text}", ""]
    lines.append(f"{_pad('Forward primal trace', wl)}{style['sep']}Forward tangent trace")
    lines += [f"{_pad(a, wl)}{style['sep']}{b}".rstrip() for a, b in zip(left, right)]
    if shown < total:
        lines.append(_left_out(total - shown, "rows", "max_rows", max_rows))
    jv = dot[eng.outputs].reshape(tape.out_shape)
    lines += ["", f"directional derivative J @ x{d} = y{d} = {_vector(jv)}"]
    return "\n".join(lines)


_MAX_TERMS = 8      # terms shown in one adjoint row; a heavily used slot is summarised


def _reverse_text(tape, X, seed, val, bar, style, max_rows=None, grad_text=None):
    eng = tape._engine
    primal, _, barred = _names(tape, style)
    b = style["bar"]
    n_slots = eng.n_slots
    # Adjoint rows: every slot from the last back to the first, then every
    # input; the first `shown` of them, i.e. slots lowest .. n_slots-1.
    total = n_slots + tape.n_inputs
    shown = total if max_rows is None else min(total, max_rows)
    lowest = n_slots - min(shown, n_slots)
    # Consumers of the slots shown are operations after them: only those
    # operations are unpacked and sent through the edge tape.
    entries = _unpack(tape, max(0, lowest - eng.first), None)
    edges = _edge_partials(tape, entries, val, bar)
    consumers = {}
    for e in entries:
        if not e.op.differentiable:
            continue
        partials = _partials_at(e, primal, val)
        for pos, s in e.operands:
            if partials[pos] != "0":
                consumers.setdefault(s, []).append((e, pos, partials[pos]))
    outputs = eng.outputs
    seeds = {}
    for j in np.flatnonzero(outputs >= lowest).tolist():
        seeds.setdefault(int(outputs[j]), []).append(j)
    bars = bar[np.arange(n_slots - 1, lowest - 1, -1)]
    rows = []
    for s, bar_s in zip(range(n_slots - 1, lowest - 1, -1), bars.tolist()):
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
        value = _value(bar_s)
        if 1 < len(numbers) and len(uses) <= _MAX_TERMS:
            value = f"{_sum_text([_number(v) for v in numbers])} = {_number(bar_s)}"
            value = value if bar_s < 0 or np.isnan(bar_s) else " " + value
        rows.append((barred(s), rule, value))
    k = shown - len(rows)
    if k > 0:
        for i, bar_i in enumerate(bar[np.arange(k)].tolist()):
            rows.append((f"x{b}[{i}]", barred(i), _value(bar_i)))
    n_primal = _n_primal_rows(tape)
    primal_shown = n_primal if max_rows is None else min(n_primal, max_rows)
    left = _primal_column(tape, primal, val, primal_shown)
    if grad_text is None:
        grad_text = _vector(bar[np.arange(tape.n_inputs)].reshape(tape.in_shape))
    weight = _vector(seed.reshape(tape.out_shape))
    lines = [f"Reverse mode at x = {_vector(X.reshape(tape.in_shape))} with output weight "
             f"y{b} = {weight}", "", "Forward primal trace"]
    lines += left
    if primal_shown < n_primal:
        lines.append(_left_out(n_primal - primal_shown, "rows", "max_rows", max_rows))
    lines += ["", "Reverse adjoint trace (from the output back to the inputs)"]
    lines += [line.rstrip() for line in _align(rows)]
    if shown < total:
        lines.append(_left_out(total - shown, "rows", "max_rows", max_rows))
    what = "gradient" if tape.n_outputs == 1 and seed[0] == 1.0 else f"y{b} @ J ="
    lines += ["", f"{what} x{b} = {grad_text}"]
    return "\n".join(lines)


# ---- the graph ---------------------------------------------------------------------------

_COMMUTATIVE = {"add", "mul", "hypot", "minimum", "maximum", "logaddexp", "eq", "ne"}


def _dot_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_leading(tape, s, slot_name):
    """The node of an input or parameter slot."""
    if s < tape.n_inputs:
        label, fill = f"x[{s}]\n{slot_name(s)}", "#cfe2f3"
    else:
        label, fill = f"p[{s - tape.n_inputs}]", "#fff2cc"
    return (f"  s{s} [label={_dot_string(label)}, shape=box, "
            f'style="rounded,filled", fillcolor="{fill}"];')


def _dot_operation(tape, e, slot_name, out, edges):
    """The node of operation ``e`` (an :class:`_Op`) and its edges."""
    eng = tape._engine
    consts, aux = eng.consts, eng.aux
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
        return
    ordered = ops.is_binary(e.op) and opname not in _COMMUTATIVE
    sources = sorted([(pos, f"s{s}") for pos, s in e.operands]
                     + [(pos, f"c{e.index}_{pos}") for pos in e.consts])
    for pos, c in e.consts.items():
        out.append(f"  c{e.index}_{pos} [label={_dot_string(f'{c:g}')}, shape=plaintext];")
    for pos, src in sources:
        label = f' [label="{pos + 1}"]' if ordered else ""
        edges.append(f"  {src} -> s{e.slot}{label};")


def _dot_output(tape, j, s, out, edges):
    label = _output_label(tape, j)
    out.append(f"  y{j} [label={_dot_string(label)}, shape=box, "
               'style="rounded,filled,bold", fillcolor="#d9ead3"];')
    edges.append(f"  s{s} -> y{j};")


def _dot_guard(tape, g, out, edges):
    eng = tape._engine
    code, (a0, a1) = int(eng.guard_codes[g]), eng.guard_args[g].tolist()
    guard = tape._guards[g]
    op, kind = ops.split(code)
    label = f"guard: {guard.text}\nmust stay {guard.expected}\n{guard.where}"
    out.append(f"  g{g} [label={_dot_string(label)}, shape=octagon, style=dashed];")
    for pos, (arg, is_const) in enumerate(((a0, kind == Kind.CV), (a1, kind == Kind.VC))):
        if is_const:
            out.append(f"  g{g}_c{pos} [label={_dot_string(f'{eng.consts[arg]:g}')}, "
                       "shape=plaintext];")
            edges.append(f"  g{g}_c{pos} -> g{g} [style=dashed];")
        else:
            edges.append(f"  s{arg} -> g{g} [style=dashed];")


def _operand_slots(e):
    """Every slot operation ``e`` reads (a select's condition included)."""
    slots = [s for _, s in e.operands]
    return slots if e.cond is None else slots + [e.cond]


def to_dot(tape, *, name="wengert", max_nodes=MAX_NODES):
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

    A graph of more than ``max_nodes`` slot, output and guard nodes is cut:
    the operations in tape order with the inputs and parameters they read,
    as many as fit, then the outputs and guards among those; a note node
    (and a comment) says how many nodes were left out. Time and memory are
    bounded by the nodes shown, never by those left out.

    Parameters
    ----------
    tape : Tape
    name : str
        The graph's name.
    max_nodes : int or None
        Draw at most this many nodes (default 200; the constant operands
        drawn beside an operation come with it); None draws them all.

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
    >>> tape.to_dot(max_nodes=3).splitlines()[-2]
    '  // ... 3 more nodes not shown (max_nodes=3)'
    """
    max_nodes = _limit(max_nodes, "max_nodes")
    eng = tape._engine
    first = eng.first
    slot_name = _slot_namer(tape.n_inputs, first)
    out = [f"digraph {_dot_string(name) if not name.isidentifier() else name} {{",
           '  graph [rankdir=LR, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=11];',
           '  edge [arrowsize=0.7, fontname="Helvetica", fontsize=10];']
    edges = []
    total = first + tape.n_ops + tape.n_outputs + tape.n_guards
    if max_nodes is None or total <= max_nodes:
        for s in range(first):
            out.append(_dot_leading(tape, s, slot_name))
        for e in _unpack(tape):
            _dot_operation(tape, e, slot_name, out, edges)
        for j, s in enumerate(eng.outputs.tolist()):
            _dot_output(tape, j, s, out, edges)
        for g in range(tape.n_guards):
            _dot_guard(tape, g, out, edges)
        return "\n".join(out + edges + ["}"]) + "\n"
    # Cut: operations in order, each with the leading slots it reads, while
    # they fit; then the outputs and guards whose operands are all drawn.
    shown = set()                    # leading slots drawn
    used = k = 0                     # nodes drawn, operations drawn
    for e in _unpack(tape, 0, min(tape.n_ops, max_nodes)):
        new = sorted({s for s in _operand_slots(e) if s < first and s not in shown})
        if used + len(new) + 1 > max_nodes:
            break
        for s in new:
            out.append(_dot_leading(tape, s, slot_name))
        shown.update(new)
        _dot_operation(tape, e, slot_name, out, edges)
        used += len(new) + 1
        k += 1

    def drawable(slots):
        """Slots drawn or drawable on demand: operations drawn, leading slots."""
        slots = np.asarray(slots, dtype=np.int64)
        return slots < first + k

    def fits(slots):
        """Draw the leading ``slots`` not drawn yet if they and one more node fit."""
        nonlocal used
        new = sorted({s for s in slots if s < first and s not in shown})
        if used + len(new) + 1 > max_nodes:
            return False
        for s in new:
            out.append(_dot_leading(tape, s, slot_name))
        shown.update(new)
        used += len(new) + 1
        return True

    outputs = eng.outputs
    for j in np.flatnonzero(drawable(outputs)).tolist():
        if used >= max_nodes or not fits([int(outputs[j])]):
            break
        _dot_output(tape, j, int(outputs[j]), out, edges)
    if tape.n_guards:
        from wengert._compact import guard_mask
        gmask = guard_mask(eng.guard_codes)
        for g in np.flatnonzero((drawable(eng.guard_args) | ~gmask).all(axis=1)).tolist():
            if used >= max_nodes or not fits(eng.guard_args[g][gmask[g]].tolist()):
                break
            _dot_guard(tape, g, out, edges)
    note = _left_out(total - used, "nodes", "max_nodes", max_nodes)
    out.append(f"  more [label={_dot_string(note)}, shape=note];")
    return "\n".join(out + edges + [f"  // {note}", "}"]) + "\n"


_INSTALL_HINT = (
    "install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
    "`dnf install graphviz` (Fedora), `brew install graphviz` (macOS), "
    "`conda install graphviz`, or https://graphviz.org/download/; "
    "or write tape.to_dot() to a file and render it elsewhere")


def render(tape, path, format=None, *, program="dot", max_nodes=MAX_NODES):
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
    max_nodes : int or None
        Draw at most this many nodes (default 200), as :func:`to_dot`.

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
    done = subprocess.run([exe, f"-T{format}", "-o", str(path)],
                          input=to_dot(tape, max_nodes=max_nodes),
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


def summary(tape, max_rows=20):
    """A description of the tape for ``print(tape)``: shapes, sizes,
    operation counts, memory, and the first ``max_rows`` rows of its
    Wengert list. Takes milliseconds whatever the size of the tape.

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
    return "\n".join([head, stats_text(tape), "", listing(tape, max_rows=max_rows)])
