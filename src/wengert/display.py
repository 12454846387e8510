"""Making the tape visible: the Wengert list, derivative traces, the graph, statistics.

Everything here reads a recorded :class:`~wengert.Tape`; nothing changes it.

* :func:`listing` -- the Wengert list, one line per slot, optionally with values;
* :func:`trace_text` -- the forward tangent trace and the reverse adjoint
  trace at one point (implemented in :mod:`wengert._traces`, re-exported here);
* :func:`to_dot` and :func:`render` -- the computational graph as Graphviz
  text, and as an SVG/PNG/PDF file through Graphviz's ``dot`` program;
* :func:`stats` and :func:`summary` -- sizes, operation counts and memory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata

import numpy as np

from wengert import _opcodes as ops
from wengert._compact import (array_grids, array_parts, compact, descriptor, grid_runs,
                              guard_arrays, slot_mask)
from wengert._errors import ArgumentError, ShapeError, WengertError
from wengert._expand import _grid, elementwise_count, has_array_entries
from wengert._opcodes import Kind, Role

__all__ = ["listing", "trace_text", "to_dot", "render", "stats", "summary",
           "GraphvizNotFoundError"]


class GraphvizNotFoundError(WengertError, RuntimeError):
    """Graphviz's ``dot`` program, which :func:`render` runs, is not installed."""


# ---- names and text helpers ---------------------------------------------------------

_UNICODE = dict(dot="\u0307", bar="\u0304", sep=" \u2502 ", T="\u1d40")
_ASCII = dict(dot="_dot", bar="_bar", sep=" | ", T=".T")


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
# ops.ROLES as lists of ints, for decoding one entry at a time in Python loops.
_ROLE_ROWS = ops.ROLES.tolist()


def _first(tape):
    """The tape's first operation slot: its inputs and parameters come first."""
    return tape.n_inputs + tape.n_params


def _expression(code, a0, a1, consts, aux, name):
    """The right-hand side of one tape entry, e.g. ``log(v[-1])``, ``v[1] * 2``."""
    op = ops.split(code)[0]
    role0, role1 = _ROLE_ROWS[code]
    if role1 == Role.AUX:             # select: the branches are in the side table
        return f"{name(aux[a1])} if {name(a0)} else {name(aux[a1 + 1])}"
    if role1 == Role.NONE:
        if role0 == Role.CONST:       # a constant entry
            return repr(float(consts[a0]))
        return f"-{name(a0)}" if op.name == "neg" else f"{op.name}({name(a0)})"
    left, right = (f"{consts[a]:g}" if role == Role.CONST else name(a)
                   for role, a in ((role0, a0), (role1, a1)))
    if op.name in _INFIX:
        return f"{left} {_INFIX[op.name]} {right}"
    return f"{op.name}({left}, {right})"


def _range_name(name, start, count):
    """``v[3:103]`` for ``count`` consecutive slots from ``start`` (as a
    Python slice of the names), the name itself for one."""
    text = name(start)
    if count == 1:
        return text
    prefix, index = text[:-1].split("[", 1)
    return f"{prefix}[{index}:{int(index) + count}]"


def _grid_text(name, consts, role, start, n_outer, outer, n_inner, inner):
    """An array entry's operand grid, start + o * outer + j * inner, as
    text: a slot range, one slot broadcast, a strided run, or constants."""
    if role == Role.CONST:
        # The second constant read, along an axis of more than one element
        # (a stride along an axis of one reads nothing: it may point past the pool).
        step = (inner if n_inner > 1 else 0) or (outer if n_outer > 1 else 0)
        if step == 0:
            return f"{consts[start]:g}"
        return f"[{consts[start]:g}, {consts[start + step]:g}, ...]"
    if outer == inner == 0 or n_outer * n_inner == 1:
        return name(start)
    if inner == 1 and (n_outer == 1 or outer == n_inner):
        return _range_name(name, start, n_outer * n_inner)
    if n_outer == 1 or outer == 0:
        run = (_range_name(name, start, n_inner) if inner == 1 else
               f"{name(start)}..{name(start + (n_inner - 1) * inner)} step {inner}")
        return run if n_outer == 1 else f"{run} each row"
    if n_inner == 1 or inner == 0:
        run = f"{name(start)}..{name(start + (n_outer - 1) * outer)} step {outer}"
        return run if n_inner == 1 else f"{run} each column"
    return f"{name(start)} + ({n_outer}x{n_inner} grid by {outer}, {inner})"


def _array_expression(code, descriptor, consts, name):
    """The right-hand side of an array entry, e.g. ``sin(v[-99:1])``,
    ``sum(v[1:100])``, ``v[1:7] @ [0.5, 1.5, ...]`` with its shape."""
    op = ops.split(code)[0]
    d = [int(v) for v in descriptor]
    if op.name == "gather":
        shown = ", ".join(name(s) for s in d[:3])
        return f"gather({shown}{', ...' if len(d) > 3 else ''})"
    if op.name in ("sum", "cumsum"):
        n_outer, n_inner = d[0], d[1]
        part = _grid_text(name, consts, Role.SLOT, d[2], 1, 0, n_inner, d[4])
        if n_outer == 1:
            return f"{op.name}({part})"
        rows = _grid_text(name, consts, Role.SLOT, d[2], n_outer, d[3], n_inner, d[4])
        return f"{op.name} of each row of {n_inner} in {rows}   ({n_outer}x{n_inner})"
    if op.name == "where":
        shape = d[0], d[1]
        cond, left, right = (_grid_text(name, consts, Role.SLOT, d[2 + 3 * e], shape[0],
                                        d[3 + 3 * e], shape[1], d[4 + 3 * e]) for e in range(3))
        return f"{left} if {cond} else {right}"
    if op.name == "matmul":
        roles = _ROLE_ROWS[d[0]]
        m, k, n = d[1], d[2], d[3]
        left = _grid_text(name, consts, roles[0], d[4], m, d[5], k, d[6])
        right = _grid_text(name, consts, roles[1], d[7], k, d[8], n, d[9])
        return f"{left} @ {right}   ({m}x{k} @ {k}x{n})"
    assert op.name == "map", f"the listing has no rule for the array entry {op.name}"
    inner_op = ops.split(d[0])[0]
    roles = _ROLE_ROWS[d[0]]
    n_outer, n_inner = d[1], d[2]
    left = _grid_text(name, consts, roles[0], d[3], n_outer, d[4], n_inner, d[5])
    shape = f"   ({n_outer}x{n_inner})" if n_outer > 1 else ""
    if roles[1] == Role.NONE:
        body = f"-{left}" if inner_op.name == "neg" else f"{inner_op.name}({left})"
        return body + shape
    right = _grid_text(name, consts, roles[1], d[6], n_outer, d[7], n_inner, d[8])
    if inner_op.name in _INFIX:
        return f"{left} {_INFIX[inner_op.name]} {right}{shape}"
    return f"{inner_op.name}({left}, {right}){shape}"


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


def _values_text(numbers, slot, count):
    """The value column of a row over ``count`` slots from ``slot`` (numbers
    indexed by slot): one value, or an array entry's first three."""
    if count == 1:
        return _value(numbers[slot])
    shown = numbers[np.arange(slot, slot + min(count, 3))]
    return "[" + ", ".join(_number(v) for v in shown) + ", ...]"


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
    return _point_values(tape, X, args)[np.arange(_first(tape) + tape.n_ops)]


def _point_values(tape, X, args):
    """Every slot's value at one point (a :class:`_Slots`), from a replay
    of the compact tape."""
    c = compact(tape)
    params = tape._params(args)
    values = c.tape._replay(*c.point(X, params)).values
    return _Slots(c, values[:, 0], _leading_values(tape, X, params))


def _has_array_entries(tape):
    return tape._cached("has_array_entries",
                        lambda: has_array_entries(tape._state()["opcodes"]))


def _n_leading_rows(tape):
    if _has_array_entries(tape):
        return (tape.n_inputs > 0) + (tape.n_params > 0)
    return _first(tape)


def _leading_rows(tape, stop=None):
    """``(first slot, slots, source)`` of the rows before the entries (the
    first ``stop``): one per input and parameter slot, as in the survey's
    tables, or, on a tape of array entries (whose inputs are arrays), one
    for all the inputs and one for all the parameters."""
    n_in, n_par = tape.n_inputs, tape.n_params
    stop = _n_leading_rows(tape) if stop is None else min(stop, _n_leading_rows(tape))
    if _has_array_entries(tape):
        return [row for row in ((0, n_in, "x"), (n_in, n_par, "p")) if row[1]][:stop]
    return [(s, 1, f"x[{s}]" if s < n_in else f"p[{s - n_in}]") for s in range(stop)]


def _n_primal_rows(tape):
    return _n_leading_rows(tape) + tape.n_ops + tape.n_outputs


def _entry_rows(tape, name, stop=None):
    """``(label, expression, first slot, slots)`` for every input and
    parameter slot, every entry (an array entry is one row over its slots)
    and every output, in that order; only the first ``stop`` rows (None: all)."""
    state = tape._state()
    first, n_ops = _first(tape), tape.n_ops
    stop = _n_primal_rows(tape) if stop is None else min(stop, _n_primal_rows(tape))
    rows = [(_range_name(name, s, count), source, s, count)
            for s, count, source in _leading_rows(tape, stop)]
    n_lead = _n_leading_rows(tape)
    k = max(0, min(stop - n_lead, n_ops))
    consts, aux = state["consts"], state["aux"]
    slot = first
    for code, (a0, a1) in zip(state["opcodes"][:k].tolist(), state["args"][:k].tolist()):
        if _ROLE_ROWS[code][0] == Role.ARRAY:
            rows.append((_range_name(name, slot, a1),
                         _array_expression(code, descriptor(aux, code, a0, a1), consts, name),
                         slot, a1))
            slot += a1
        else:
            rows.append((name(slot), _expression(code, a0, a1, consts, aux, name), slot, 1))
            slot += 1
    k = max(0, min(stop - n_lead - n_ops, tape.n_outputs))
    for j, s in enumerate(state["outputs"][:k].tolist()):
        rows.append((_output_label(tape, j), name(s), s, 1))
    return rows


def _output_label(tape, j, y="y"):
    return y if tape.n_outputs == 1 else f"{y}[{j}]"


def _guard_rows(tape, name, stop=None):
    """``(expression, note)`` for every guard of the tape (the first ``stop``)."""
    state = tape._state()
    stop = tape.n_guards if stop is None else min(stop, tape.n_guards)
    rows = []
    for g in state["guards"][:stop]:
        expr = _expression(g.code, g.a0, g.a1, state["consts"], state["aux"], name)
        rows.append((expr, f"# must stay {g.expected}: `{g.text}` at {g.where}"))
    return rows


def listing(tape, x=None, *args, max_rows=MAX_ROWS, max_lines=_UNSET):
    """The Wengert list as text, one line per slot, with values at ``x``.

    Inputs are numbered ``v[1-n] .. v[0]``, dynamic parameters ``p[0] ..``
    and operations ``v[1] ..``, as in the survey by Baydin et al.; values are
    shown with 6 significant digits. An array entry (one NumPy call over many
    elements) is one row over its slots, ``v[1:101] = sin(v[-99:1])``, with
    its first values; on such a tape the inputs are one row too,
    ``v[-99:1] = x`` (and the parameters ``p[0:k] = p``). Guards (comparisons that steered Python control flow
    while recording) follow the outputs.

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
    name = _slot_namer(tape.n_inputs, _first(tape))
    rows = _entry_rows(tape, name, max_rows)
    guards = _guard_rows(tape, name, None if max_rows is None else max_rows - len(rows))
    width_l = max([len(r[0]) for r in rows] + [len("guard") if guards else 0], default=0)
    width_e = max([len(r[1]) for r in rows] + [len(g[0]) for g in guards], default=0)
    lines = []
    for label, expr, slot, count in rows:
        text = f"{label:<{width_l}} = {expr:<{width_e}}"
        if values is not None:
            text += f" = {_values_text(values, slot, count)}"
        lines.append(text.rstrip())
    for expr, note in guards:
        lines.append(f"{'guard':<{width_l}} : {expr:<{width_e}}   {note}")
    left_out = _n_primal_rows(tape) + tape.n_guards - len(lines)
    if left_out:
        lines.append(_left_out(left_out, "rows", "max_rows", max_rows))
    return "\n".join(lines)


# ---- tape entries, unpacked (read by the graph and by the traces) -------------------

class _Op:
    """One tape entry, unpacked: its operation, operand slots and constants.
    An array entry has no scalar operands: ``count`` slots from ``slot`` and
    its descriptor ``array`` (a list of ints, see ``_opcodes.ARRAY_LAYOUTS``)."""

    __slots__ = ("index", "slot", "op", "operands", "consts", "cond", "count", "array")

    def __init__(self, index, slot, op, operands, consts, cond, count=1, array=None):
        self.index, self.slot, self.op = index, slot, op
        self.operands = operands      # [(position, slot)]: the slot operands
        self.consts = consts          # {position: value}: the constant operands
        self.cond = cond              # select: the condition slot
        self.count, self.array = count, array


def _slots_written(state):
    """Slots each entry writes: 1, or an array entry's count (its arg1)."""
    codes = state["opcodes"]
    return np.where(ops.ROLES[codes][:, 0] == Role.ARRAY, state["args"][:, 1], 1)


def _unpack(tape, start=0, stop=None):
    """The entries ``start .. stop-1`` of the tape (default: all) as
    :class:`_Op`, in tape order."""
    state = tape._state()
    consts, aux, first = state["consts"], state["aux"], _first(tape)
    codes = state["opcodes"][start:stop]
    slot = first + int(_slots_written(state)[:start].sum())
    result = []
    for i, (code, (a0, a1), (role0, role1)) in enumerate(
            zip(codes.tolist(), state["args"][start:stop].tolist(), ops.ROLES[codes].tolist()),
            start):
        op = ops.split(code)[0]
        cond = None
        if role0 == Role.ARRAY:
            result.append(_Op(i, slot, op, [], {}, None, a1, descriptor(aux, code, a0, a1)))
            slot += a1
            continue
        if role1 == Role.AUX:         # select: condition a0, branches in the side table
            operands, cs, cond = [(0, int(aux[a1])), (1, int(aux[a1 + 1]))], {}, a0
        elif role1 == Role.NONE and role0 == Role.CONST:
            operands, cs = [], {}     # a constant entry: its operand is its value
        else:
            pairs = ((0, role0, a0), (1, role1, a1))
            operands = [(pos, a) for pos, role, a in pairs if role == Role.SLOT]
            cs = {pos: float(consts[a]) for pos, role, a in pairs if role == Role.CONST}
        result.append(_Op(i, slot, op, operands, cs, cond))
        slot += 1
    return result


def _array_parts(e):
    """The operands of array entry ``e`` (an :class:`_Op`) as ``(position,
    role, grid)`` (see ``_compact.array_parts``)."""
    return [part[:3] for part in array_parts(e.op.code(), e.array)]


def _part_text(name, consts, role, grid):
    """An operand of an array entry (from :func:`_array_parts`) as text."""
    if isinstance(grid, list):
        shown = ", ".join(name(s) for s in grid[:3])
        return shown + (", ..." if len(grid) > 3 else "")
    return _grid_text(name, consts, role, *grid)


def _part_slots(grid):
    """The slots an operand of an array entry reads, in element order."""
    return np.asarray(grid, dtype=np.int64) if isinstance(grid, list) else _grid(*grid)


# ---- the graph ---------------------------------------------------------------------------

_COMMUTATIVE = {"add", "mul", "hypot", "minimum", "maximum", "logaddexp", "eq", "ne"}


def _dot_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Nodes:
    """The graph's nodes over the slots: one per scalar entry, one per array
    entry (over its slots) and one per leading slot -- except that leading
    slots an array entry reads as a grid are one node per run between the
    ends of such grids and the slots read one at a time (``x[1:3]``), so
    that an array entry over many inputs has a few edges, not one per
    input. A node is named ``s`` and its first slot. Nothing here grows
    with the leading slots no entry reads."""

    def __init__(self, tape):
        state = tape._state()
        first = self.first = _first(tape)
        codes = state["opcodes"]
        is_array = ops.ROLES[codes][:, 0] == Role.ARRAY
        self.identity = not is_array.any()
        self.n_leading = first
        if self.identity:
            return
        counts = _slots_written(state)
        self.entry_starts = first + np.concatenate([[0], np.cumsum(counts[:-1])])
        # The runs of leading slots that array operands read as grids.
        _, lows, highs = array_grids(codes, state["args"], state["aux"])
        self.union_lo, self.union_hi = grid_runs(lows, highs, first)
        aux = state["aux"]
        # Cuts: the extents' ends, the inputs' end, and around every leading
        # slot read one at a time (by a scalar entry, an output or a guard).
        single = [state["outputs"]]
        roles = ops.ROLES[codes]
        for k in range(2):
            single.append(state["args"][roles[:, k] == Role.SLOT, k])
            at = state["args"][roles[:, k] == Role.AUX, k]
            single += [aux[at], aux[at + 1]]        # select branches
        if tape.n_guards:
            guard_codes, guard_args = guard_arrays(state["guards"])
            single.append(guard_args[slot_mask(guard_codes)])
        single = np.concatenate(single).astype(np.int64)
        single = single[single < first]
        cuts = np.unique(np.concatenate([lows, highs + 1, single, single + 1, [tape.n_inputs]]))
        self.cuts = cuts[self._in_union(cuts)]
        covered = int((self.union_hi - self.union_lo).sum())
        self.n_leading = self.cuts.size + first - covered

    def _in_union(self, slots):
        """Whether each of ``slots`` lies in a run of leading slots read as a grid."""
        if not self.union_lo.size:
            return np.zeros(np.shape(slots), dtype=bool)
        at = np.searchsorted(self.union_lo, slots, side="right") - 1
        return (at >= 0) & (slots < self.union_hi[np.maximum(at, 0)])

    def of(self, slots):
        """The node (its first slot) of each of ``slots``."""
        slots = np.asarray(slots, dtype=np.int64)
        if self.identity:
            return slots
        out = self.entry_starts[np.maximum(
            np.searchsorted(self.entry_starts, slots, side="right") - 1, 0)]
        lead = slots < self.first
        grouped = lead & self._in_union(slots)
        out = np.where(lead, slots, out)
        return np.where(grouped, self.cuts[np.searchsorted(self.cuts, slots, side="right") - 1],
                        out)

    def name(self, slot):
        return f"s{slot}" if self.identity else f"s{int(self.of(slot))}"

    def count(self, start):
        """Slots of the leading node that starts at ``start``."""
        if self.identity or not self._in_union(np.array([start]))[0]:
            return 1
        # Up to the next cut or the end of the run of grids, whichever is first.
        end = self.union_hi[np.searchsorted(self.union_lo, start, side="right") - 1]
        at = np.searchsorted(self.cuts, start, side="right")
        if at < self.cuts.size:
            end = min(end, self.cuts[at])
        return int(end - start)

    def leading_nodes(self):
        """``(start, count)`` of every leading node, in order."""
        s = 0
        while s < self.first:
            count = self.count(s)
            yield s, count
            s += count


def _dot_leading(tape, s, slot_name, count=1):
    """The node of an input or parameter slot (of ``count`` of them from ``s``)."""
    if s < tape.n_inputs:
        label, fill = f"{_range_name(lambda i: f'x[{i}]', s, count)}\n" \
                      f"{_range_name(slot_name, s, count)}", "#cfe2f3"
    else:
        label, fill = _range_name(lambda i: f"p[{i - tape.n_inputs}]", s, count), "#fff2cc"
    return (f"  s{s} [label={_dot_string(label)}, shape=box, "
            f'style="rounded,filled", fillcolor="{fill}"];')


def _dot_operation(state, e, slot_name, out, edges, nodes):
    """The node of operation ``e`` (an :class:`_Op`) of the tape whose
    ``_state()`` is ``state``, and its edges (from the :class:`_Nodes`)."""
    if e.array is not None:
        return _dot_array(state, e, slot_name, out, edges, nodes)
    node = nodes.name
    consts, aux = state["consts"], state["aux"]
    code, (a0, a1) = int(state["opcodes"][e.index]), state["args"][e.index].tolist()
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
        edges.append(f'  {node(e.cond)} -> s{e.slot} [label="cond", style=dashed];')
        (_, t), (_, f) = e.operands
        edges.append(f'  {node(t)} -> s{e.slot} [label="true"];')
        edges.append(f'  {node(f)} -> s{e.slot} [label="false"];')
        return
    ordered = ops.is_binary(e.op) and opname not in _COMMUTATIVE
    sources = sorted([(pos, node(s)) for pos, s in e.operands]
                     + [(pos, f"c{e.index}_{pos}") for pos in e.consts])
    for pos, c in e.consts.items():
        out.append(f"  c{e.index}_{pos} [label={_dot_string(f'{c:g}')}, shape=plaintext];")
    for pos, src in sources:
        label = f' [label="{pos + 1}"]' if ordered else ""
        edges.append(f"  {src} -> s{e.slot}{label};")


def _array_shape(e):
    """An array entry's shape as text: ``3x4``, ``3x4 -> 3``, ``3x4 @ 4x5``."""
    d, name = e.array, e.op.name
    if name == "gather":
        return str(e.count)
    if name == "matmul":
        return f"{d[1]}x{d[2]} @ {d[2]}x{d[3]}"
    n_outer, n_inner = (d[1], d[2]) if name == "map" else (d[0], d[1])
    shape = f"{n_outer}x{n_inner}" if n_outer > 1 else str(n_inner)
    return f"{shape} -> {n_outer}" if name == "sum" else shape


# Edge labels of the operands of array entries whose operand order matters.
_ARRAY_EDGE_LABELS = {"where": ("cond", "true", "false"), "matmul": ("A", "B")}


def _dot_array(state, e, slot_name, out, edges, nodes):
    """The node of array entry ``e`` (one for all its slots) and its edges:
    one from each node any of its operands reads."""
    consts = state["consts"]
    name = e.op.name
    opname = ops.split(e.array[0])[0].name if name == "map" else name
    expr = (f"{_range_name(slot_name, e.slot, e.count)} = "
            f"{_array_expression(e.op.code(), e.array, consts, slot_name)}")
    label = f"{opname}\n{_range_name(slot_name, e.slot, e.count)}\n{_array_shape(e)}"
    out.append(f"  s{e.slot} [label={_dot_string(label)}, shape=ellipse, peripheries=2, "
               f"tooltip={_dot_string(expr)}];")
    parts = _array_parts(e)
    labels = _ARRAY_EDGE_LABELS.get(name)
    if name == "map" and ops.is_binary(ops.split(e.array[0])[0]) and opname not in _COMMUTATIVE:
        labels = ("1", "2")
    for pos, role, grid in parts:
        attrs = []
        if labels:
            attrs.append(f'label="{labels[pos]}"')
        if name == "where" and pos == 0:
            attrs.append("style=dashed")
        attrs = f" [{', '.join(attrs)}]" if attrs else ""
        if role == Role.CONST:
            text = _part_text(slot_name, consts, role, grid)
            out.append(f"  c{e.index}_{pos} [label={_dot_string(text)}, shape=plaintext];")
            edges.append(f"  c{e.index}_{pos} -> s{e.slot}{attrs};")
            continue
        for source in np.unique(nodes.of(_part_slots(grid))).tolist():
            edges.append(f"  s{source} -> s{e.slot}{attrs};")


def _dot_output(tape, j, s, out, edges, nodes):
    label = _output_label(tape, j)
    out.append(f"  y{j} [label={_dot_string(label)}, shape=box, "
               'style="rounded,filled,bold", fillcolor="#d9ead3"];')
    edges.append(f"  {nodes.name(s)} -> y{j};")


def _dot_guard(state, g, out, edges, nodes):
    """The node of guard ``g`` of the tape whose ``_state()`` is ``state``,
    and its edges."""
    guard, consts = state["guards"][g], state["consts"]
    label = f"guard: {guard.text}\nmust stay {guard.expected}\n{guard.where}"
    out.append(f"  g{g} [label={_dot_string(label)}, shape=octagon, style=dashed];")
    for pos, (arg, role) in enumerate(zip((guard.a0, guard.a1), _ROLE_ROWS[guard.code])):
        if role == Role.CONST:
            out.append(f"  g{g}_c{pos} [label={_dot_string(f'{consts[arg]:g}')}, "
                       "shape=plaintext];")
            edges.append(f"  g{g}_c{pos} -> g{g} [style=dashed];")
        else:
            edges.append(f"  {nodes.name(arg)} -> g{g} [style=dashed];")


def _operand_slots(e):
    """Every slot operation ``e`` reads (a select's condition included; an
    array entry's every operand slot)."""
    if e.array is not None:
        return np.concatenate([_part_slots(grid) for _, role, grid in _array_parts(e)
                               if role == Role.SLOT] or [np.zeros(0, np.int64)])
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

    An array entry (one NumPy call over many elements) is one node for all
    its slots (a double ellipse labelled with its operation, slot range and
    shape, e.g. ``sin``, ``v[1:101]``, ``100``) with one edge from each node
    it reads; inputs it reads as a grid are one node per run
    (``x[0:100]``). A where labels its edges ``cond``, ``true`` and
    ``false``, a matrix product ``A`` and ``B``.

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
    state = tape._state()
    first = _first(tape)
    slot_name = _slot_namer(tape.n_inputs, first)
    nodes = _Nodes(tape)
    out = [f"digraph {_dot_string(name) if not name.isidentifier() else name} {{",
           '  graph [rankdir=LR, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=11];',
           '  edge [arrowsize=0.7, fontname="Helvetica", fontsize=10];']
    edges = []
    total = nodes.n_leading + tape.n_ops + tape.n_outputs + tape.n_guards
    if max_nodes is None or total <= max_nodes:
        for s, count in nodes.leading_nodes():
            out.append(_dot_leading(tape, s, slot_name, count))
        for e in _unpack(tape):
            _dot_operation(state, e, slot_name, out, edges, nodes)
        for j, s in enumerate(state["outputs"].tolist()):
            _dot_output(tape, j, s, out, edges, nodes)
        for g in range(tape.n_guards):
            _dot_guard(state, g, out, edges, nodes)
        return "\n".join(out + edges + ["}"]) + "\n"
    # Cut: operations in order, each with the leading nodes it reads, while
    # they fit; then the outputs and guards whose operands are all drawn.
    shown = set()                    # leading nodes drawn
    used = k = 0                     # nodes drawn, operations drawn
    end = first                      # the slots below `end` are drawn or leading

    def new_leading(slots):
        slots = np.asarray(slots, dtype=np.int64)
        return sorted(set(nodes.of(slots[slots < first]).tolist()) - shown)

    def draw_leading(new):
        for s in new:
            out.append(_dot_leading(tape, s, slot_name, nodes.count(s)))
        shown.update(new)

    for e in _unpack(tape, 0, min(tape.n_ops, max_nodes)):
        new = new_leading(_operand_slots(e))
        if used + len(new) + 1 > max_nodes:
            break
        draw_leading(new)
        _dot_operation(state, e, slot_name, out, edges, nodes)
        used += len(new) + 1
        k += 1
        end = e.slot + e.count

    def fits(slots):
        """Draw the leading nodes of ``slots`` not drawn yet if they and one
        more node fit."""
        nonlocal used
        new = new_leading(slots)
        if used + len(new) + 1 > max_nodes:
            return False
        draw_leading(new)
        used += len(new) + 1
        return True

    outputs = state["outputs"]
    for j in np.flatnonzero(outputs < end).tolist():
        if used >= max_nodes or not fits([int(outputs[j])]):
            break
        _dot_output(tape, j, int(outputs[j]), out, edges, nodes)
    if tape.n_guards:
        guard_codes, guard_args = guard_arrays(state["guards"])
        gmask = slot_mask(guard_codes)
        for g in np.flatnonzero(((guard_args < end) | ~gmask).all(axis=1)).tolist():
            if used >= max_nodes or not fits(guard_args[g][gmask[g]].tolist()):
                break
            _dot_guard(state, g, out, edges, nodes)
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
# A guard as the engine holds it: an opcode byte, two int32 operands, an outcome byte.
_GUARD_BYTES = 1 + 2 * 4 + 1


def stats(tape):
    """Size, operation counts and memory of a tape, as a dict.

    Keys
    ----
    n_ops, n_inputs, n_params, n_outputs, n_guards, n_consts, n_slots : int
        Counts: ``n_ops`` entries (``len(tape)``; an array entry, one NumPy
        call over many elements, counts once) and ``n_slots`` values per
        point (inputs, parameters and every entry's results).
    n_elementwise : int
        The scalar operations one replay performs: one per scalar entry,
        one per element of an array entry (a matrix product counts its
        multiply-adds).
    by_operation : dict
        Operations per name (``{"mul": 3, "sin": 1, ...}``), in table order.
    by_kind : dict
        Operations by where their operands live: ``const`` (a constant
        entry), ``select``, ``unary``, ``vv`` (two slots), ``vc`` (slot and
        constant), ``cv`` (constant and slot), ``array`` (array entries);
        they sum to ``n_ops``.
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
    state = tape._state()
    counts = np.bincount(state["opcodes"], minlength=256)
    by_operation = {}
    by_kind = dict(const=0, select=0, unary=0, vv=0, vc=0, cv=0, array=0)
    for code in np.flatnonzero(counts).tolist():
        op, kind = ops.split(code)
        n = int(counts[code])
        by_operation[op.name] = by_operation.get(op.name, 0) + n
        key = (op.name if op.name in ("const", "select") else
               "array" if op.arity == ops.ARRAY else _KIND_NAMES[kind])
        by_kind[key] += n
    by_operation = {op.name: by_operation[op.name] for op in ops.OPERATIONS
                    if op.name in by_operation}
    tape_bytes = {key: int(state[key].nbytes)
                  for key in ("opcodes", "args", "consts", "aux", "outputs")}
    tape_bytes["guards"] = tape.n_guards * _GUARD_BYTES
    tape_bytes["total"] = sum(tape_bytes.values())
    n_slots = tape._n_slots
    return dict(
        n_ops=tape.n_ops, n_inputs=tape.n_inputs, n_params=tape.n_params,
        n_outputs=tape.n_outputs, n_guards=tape.n_guards, n_consts=int(state["consts"].size),
        n_slots=n_slots, n_elementwise=elementwise_count(state), by_operation=by_operation,
        by_kind=by_kind, tape_bytes=tape_bytes, work_bytes=n_slots * 8)


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


def __getattr__(name):
    # trace_text lives in wengert._traces, which builds on the helpers here;
    # resolved on first use so that either module may be imported first.
    if name == "trace_text":
        from wengert._traces import trace_text
        return trace_text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
