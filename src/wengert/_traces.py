"""Derivative traces: the forward tangent trace and the reverse adjoint trace.

:func:`trace_text` prints them at one point, in the layout of tables 2 and 3
of Baydin et al., "Automatic differentiation in machine learning: a survey"
(JMLR 2018); ``Tape.trace`` and ``wengert.display.trace_text`` call it.

Every number in a trace comes from the compiled sweeps; the symbolic rules
printed beside them (``v̇[1] = v̇[-1] / v[-1]``) are text for the reader. A
test evaluates each printed rule and checks it against the sweeps.
"""
from __future__ import annotations

import numpy as np

from wengert import _opcodes as ops
from wengert._arguments import check_choice, real_array
from wengert._compact import compact
from wengert._errors import ShapeError
from wengert._opcodes import Role
from wengert.display import (_ASCII, _UNICODE, MAX_ROWS, _const_text, _first, _leading_values,
                             _left_out, _limit, _n_primal_rows, _number, _one_point,
                             _output_label, _pad, _primal_rows, _slot_namer, _Slots,
                             _sparse_vector, _unpack, _value, _vector, _width)
from wengert.tape import Tape


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
    if not entries:
        return {}
    state = tape._state()
    start, stop = entries[0].index, entries[-1].index + 1
    codes = state["opcodes"][start:stop]
    args = state["args"][start:stop].copy()
    roles = ops.ROLES[codes]
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
        if roles[i, 1] == Role.AUX:
            # select: the branches' fresh inputs go to the side table, and
            # the condition is one more fresh input.
            args[i] = (len(inputs), len(aux))
            inputs.append(e.cond)
            aux.extend(fresh)
        else:
            args[i, roles[i] == Role.SLOT] = fresh      # in operand order, as _unpack lists them
    n = len(inputs)       # the operations now read fresh inputs only; op i writes slot n + i
    k = stop - start
    edge = Tape(opcodes=codes, args=args, consts=state["consts"],
                aux=np.array(aux, dtype=np.int32), outputs=np.arange(n, n + k, dtype=np.int32),
                in_shape=(n,), out_shape=(k,))
    # Every result is an output, seeded with 1 and with its real adjoint.
    output_seeds = np.empty((k, 1, 2))
    output_seeds[:, 0, 0] = 1.0
    output_seeds[:, 0, 1] = seeds[_first(tape) + np.arange(start, stop)]
    X = val[np.array(inputs, dtype=np.intp)] if n else np.zeros(0)
    bar = edge._replay(X, np.zeros(0), output_seeds=output_seeds).adjoints
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
    tape = tape._scalar_form()
    check_choice(mode, "mode", ("forward", "reverse"))
    max_rows = _limit(max_rows, "max_rows")
    style = _ASCII if ascii else _UNICODE
    X = _one_point(tape, x, "trace")
    params = tape._params(tuple(args))
    c = compact(tape)
    point = c.point(X, params)
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
        run = c.tape._replay(*point, seeds=seed_at(c.inputs)[:, None, None])

        def lead_dot(s):
            out = np.zeros(s.shape)
            inp = s < tape.n_inputs
            out[inp] = seed_at(s[inp])
            return out
        return _forward_text(tape, X, seed_text, _Slots(c, run.values[:, 0], lead_values),
                             _Slots(c, run.tangents[:, 0, 0], lead_dot), style, max_rows)
    default = np.ones(1) if tape.n_outputs == 1 else None
    seed = _seed(tape, direction, tape.out_shape, "w", "the output shape", default)
    run = c.tape._replay(*point, output_seeds=seed[:, None, None])
    bar = run.adjoints[:, 0, 0]
    grad_text = _sparse_vector(tape.in_shape, c.inputs, bar[:c.n_inputs])
    return _reverse_text(tape, X, seed, _Slots(c, run.values[:, 0], lead_values),
                         _Slots(c, bar, np.zeros_like), style, max_rows, grad_text)


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
    n, first = tape.n_inputs, _first(tape)
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
    first, outputs = _first(tape), tape._state()["outputs"]
    primal, dotted, _ = _names(tape, style)
    d = style["dot"]
    total = _n_primal_rows(tape)
    shown = total if max_rows is None else min(total, max_rows)
    rows, slots = [], []
    for s in range(min(first, shown)):
        rows.append((dotted(s), f"x{d}[{s}]" if s < tape.n_inputs else "0"))
        slots.append(s)
    entries = _unpack(tape, 0, max(0, min(shown - first, tape.n_ops)))
    constant = range(tape.n_inputs, first)
    for e in entries:
        rows.append((dotted(e.slot), _tangent_rule(e, primal, dotted, val, constant)))
        slots.append(e.slot)
    k = max(0, shown - len(rows))
    for j, s in enumerate(outputs[:k].tolist()):
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
    jv = dot[outputs].reshape(tape.out_shape)
    lines += ["", f"directional derivative J @ x{d} = y{d} = {_vector(jv)}"]
    return "\n".join(lines)


_MAX_TERMS = 8      # terms shown in one adjoint row; a heavily used slot is summarised


def _reverse_text(tape, X, seed, val, bar, style, max_rows=None, grad_text=None):
    first = _first(tape)
    primal, _, barred = _names(tape, style)
    b = style["bar"]
    n_slots = first + tape.n_ops
    # Adjoint rows: every slot from the last back to the first, then every
    # input; the first `shown` of them, i.e. slots lowest .. n_slots-1.
    total = n_slots + tape.n_inputs
    shown = total if max_rows is None else min(total, max_rows)
    lowest = n_slots - min(shown, n_slots)
    # Consumers of the slots shown are operations after them: only those
    # operations are unpacked and sent through the edge tape.
    entries = _unpack(tape, max(0, lowest - first), None)
    edges = _edge_partials(tape, entries, val, bar)
    consumers = {}
    for e in entries:
        if not e.op.differentiable:
            continue
        partials = _partials_at(e, primal, val)
        for pos, s in e.operands:
            if partials[pos] != "0":
                consumers.setdefault(s, []).append((e, pos, partials[pos]))
    outputs = tape._state()["outputs"]
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
