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
from wengert.display import (_ASCII, _UNICODE, MAX_ROWS, _array_expression, _array_parts,
                             _const_text, _entry_rows, _first, _leading_rows, _leading_values,
                             _left_out, _limit, _n_primal_rows, _number, _one_point,
                             _output_label, _pad,
                             _part_slots, _part_text, _range_name, _slot_namer, _Slots,
                             _sparse_vector, _unpack, _value, _values_text, _vector, _width)
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


# ---- array entries: one rule over all their elements ---------------------------------
#
# An array entry is one row: its rule names the operand grids as the listing
# prints them (``v̇[-99:1] * cos(v[-99:1])``), applied element by element,
# or says in words what the entry does with whole arrays.

def _map_partials(e, primal, consts):
    """The partials of map entry ``e``'s elements with respect to each slot
    operand, ``{position: text}``, with operand grids for names."""
    inner = ops.split(e.array[0])[0]
    parts = _array_parts(e)
    text = {pos: _group(_part_text(primal, consts, role, grid)) for pos, role, grid in parts}
    slots = [pos for pos, role, _ in parts if role == Role.SLOT]
    if not inner.differentiable:
        return {pos: "0" for pos in slots}
    a, b = text[0], text.get(1)
    if inner.name in ("minimum", "maximum"):
        # The side taken, half each at a tie (Iverson brackets, elementwise).
        lt = "<" if inner.name == "minimum" else ">"
        tie = f"[{a} == {b}] / 2"
        both = (f"([{a} {lt} {b}] + {tie})", f"([{b} {lt} {a}] + {tie})")
        return {pos: both[pos] for pos in slots}
    fill = dict(r=_range_name(primal, e.slot, e.count), a=a)
    if b is not None:
        fill["b"] = b
    return {pos: _PARTIALS[inner.name][pos].format(**fill) for pos in slots}


def _elementwise(e):
    n_outer, n_inner = e.array[1], e.array[2]
    if e.op.name == "where":
        n_outer, n_inner = e.array[0], e.array[1]
    return f"   (elementwise{f', {n_outer}x{n_inner}' if n_outer > 1 else ''})"


def _group(text):
    """An operand grid's text, parenthesised where it has spaces (so that
    it reads as one operand inside a formula)."""
    plain = " " not in text or (text.startswith("[") and text.endswith("]"))
    return text if plain else f"({text})"


def _transposed(text, style):
    return _group(text) + style["T"]


def _array_tangent_rule(e, primal, dotted, consts, style):
    """The tangent rule of array entry ``e``, e.g. ``v̇[-99:1] * cos(v[-99:1])``
    for a map (elementwise), ``sum(v̇[1:101])``, ``v̇A @ B + A @ v̇B``."""
    name = e.op.name
    if name in ("sum", "cumsum", "gather"):       # linear: the same call on the tangents
        return _array_expression(e.op.code(), e.array, consts, dotted)
    parts = _array_parts(e)
    if name == "where":
        cond, a, b = (_part_text(n, consts, role, grid)
                      for n, (_, role, grid) in zip((primal, dotted, dotted), parts))
        return f"{a} if {cond} else {b}{_elementwise(e)}"
    if name == "matmul":
        (_, ra, ga), (_, rb, gb) = parts
        A, B, dA, dB = (_group(_part_text(n, consts, r, g))
                        for n, r, g in ((primal, ra, ga), (primal, rb, gb),
                                        (dotted, ra, ga), (dotted, rb, gb)))
        terms = [f"{dA} @ {B}"] if ra == Role.SLOT else []
        if rb == Role.SLOT:
            terms.append(f"{A} @ {dB}")
        m, k, n = e.array[1:4]
        return f"{_sum_text(terms)}   ({m}x{k} @ {k}x{n})"
    partials = _map_partials(e, primal, consts)
    terms = [_term(_part_text(dotted, consts, role, grid), partials[pos])
             for pos, role, grid in parts if role == Role.SLOT]
    return _sum_text([t for t in terms if t is not None]) + _elementwise(e)


def _array_adjoint_term(e, pos, grid, primal, barred, consts, style):
    """What array entry ``e`` adds to the adjoints of its operand ``pos``
    (whose grid is ``grid``) as text, e.g. ``v̄[1:101] * cos(v[-99:1])``;
    None if nothing."""
    bar = _range_name(barred, e.slot, e.count)
    name = e.op.name
    if name == "sum":
        return f"{bar} broadcast"
    if name == "cumsum":
        return f"reverse cumsum of {bar}"
    if name == "gather":
        return f"{bar} scattered back"
    parts = {p: (role, g) for p, role, g in _array_parts(e)}
    if name == "where":
        if pos == 0:
            return None                   # the condition: no derivative
        cond = _part_text(primal, consts, *parts[0])
        return f"{bar} where {'' if pos == 1 else 'not '}{cond}"
    if name == "matmul":
        if pos == 0:
            return f"{bar} @ {_transposed(_part_text(primal, consts, *parts[1]), style)}"
        return f"{_transposed(_part_text(primal, consts, *parts[0]), style)} @ {bar}"
    term = _term(bar, _map_partials(e, primal, consts)[pos])
    start, n_outer, outer, n_inner, inner = grid
    if term is not None and ((n_outer > 1 and outer == 0) or (n_inner > 1 and inner == 0)):
        term += " summed over the broadcast"
    return term


# ---- the edge tape: every local partial from one compiled sweep ---------------------

def _edge_partials(tape, entries, val, seeds):
    """Local partials and adjoint contributions of every edge, from the sweeps.

    Builds a tape in which every operand of every operation is a fresh input
    holding that operand's value, so the operations are independent; one
    reverse sweep seeded at each result with 1 (column 0) and with
    ``seeds[slot]`` (column 1) leaves in each fresh input the local partial
    d result / d operand and the contribution ``seed * partial`` the real
    reverse sweep adds to that operand's adjoint.

    ``entries`` is :func:`_unpack` of operations of the tape (the edge tape
    holds their scalar entries only); ``val`` holds every slot's value and
    ``seeds`` every slot's final adjoint (indexed by slot arrays). Returns
    ``{(op index, position): (partial, contribution)}``.
    """
    entries = [e for e in entries if e.array is None]
    if not entries:
        return {}
    state = tape._state()
    index = np.array([e.index for e in entries], dtype=np.int64)
    codes = state["opcodes"][index]
    args = state["args"][index].copy()
    roles = ops.ROLES[codes]
    aux = []
    inputs = []         # original slot of each fresh input
    where = {}          # (op index, position) -> fresh input
    for i, e in enumerate(entries):
        fresh = []
        for pos, s in e.operands:
            where[(e.index, pos)] = len(inputs)
            fresh.append(len(inputs))
            inputs.append(s)
        if roles[i, 1] == Role.AUX:
            # select: the branches' fresh inputs go to the side table, and
            # the condition is one more fresh input.
            args[i] = (len(inputs), len(aux))
            inputs.append(e.cond)
            aux.extend(fresh)
        else:
            args[i, roles[i] == Role.SLOT] = fresh      # in operand order, as _unpack lists them
    n = len(inputs)       # the operations now read fresh inputs only; op i writes slot n + i
    k = len(entries)
    edge = Tape(opcodes=codes, args=args, consts=state["consts"],
                aux=np.array(aux, dtype=np.int32), outputs=np.arange(n, n + k, dtype=np.int32),
                in_shape=(n,), out_shape=(k,))
    # Every result is an output, seeded with 1 and with its real adjoint.
    output_seeds = np.empty((k, 1, 2))
    output_seeds[:, 0, 0] = 1.0
    output_seeds[:, 0, 1] = seeds[np.array([e.slot for e in entries], dtype=np.int64)]
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

    An array entry (one NumPy call over many elements) is one row over its
    slots, ``v̇[1:101] = v̇[-99:1] * cos(v[-99:1])   (elementwise)``, with its
    first three numbers; its rule names whole operand grids: a map's
    elementwise partials, a sum's or gather's call on the tangents, a
    matrix product's ``Ȧ @ B + A @ Ḃ``; in reverse, what each consumer
    sends back (``v̄[101] broadcast`` for a sum, ``v̄[C] @ Bᵀ`` for a
    product, ``reverse cumsum``, ``scattered back``, ``where``).

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
    """The primal trace: the first ``stop`` rows of the listing, with values
    (an array entry's first three)."""
    rows = _entry_rows(tape, name, stop)
    if not rows:
        return []
    wl = max(len(r[0]) for r in rows)
    we = max(len(r[1]) for r in rows)
    return [f"{label:<{wl}} = {expr:<{we}} = {_values_text(val, slot, count)}"
            for label, expr, slot, count in rows]


def _align(rows):
    """Lines from ``(label, rule, value text)`` rows, columns aligned."""
    wl = max((_width(r[0]) for r in rows), default=0)
    wr = max((_width(r[1]) for r in rows), default=0)
    return [f"{_pad(label, wl)} = {_pad(rule, wr)} = {value}" for label, rule, value in rows]


def _forward_text(tape, X, seed_text, val, dot, style, max_rows=None):
    state = tape._state()
    first, outputs, consts = _first(tape), state["outputs"], state["consts"]
    primal, dotted, _ = _names(tape, style)
    d = style["dot"]
    total = _n_primal_rows(tape)
    shown = total if max_rows is None else min(total, max_rows)
    rows, spans = [], []        # (label, rule) and (first slot, slots) of each row
    for s, count, source in _leading_rows(tape, shown):
        rows.append((_range_name(dotted, s, count),
                     "0" if s >= tape.n_inputs else source.replace("x", "x" + d, 1)))
        spans.append((s, count))
    entries = _unpack(tape, 0, max(0, min(shown - len(rows), tape.n_ops)))
    constant = range(tape.n_inputs, first)
    for e in entries:
        rule = (_tangent_rule(e, primal, dotted, val, constant) if e.array is None else
                _array_tangent_rule(e, primal, dotted, consts, style))
        rows.append((_range_name(dotted, e.slot, e.count), rule))
        spans.append((e.slot, e.count))
    k = max(0, shown - len(rows))
    for j, s in enumerate(outputs[:k].tolist()):
        rows.append((_output_label(tape, j, "y" + d), dotted(s)))
        spans.append((s, 1))
    left = _primal_column(tape, primal, val, shown)
    right = _align([(a, b, _values_text(dot, *span)) for (a, b), span in zip(rows, spans)])
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


def _outputs_term(tape, js, outputs, primal, y):
    """The output weights ``js`` (an increasing array) that land in one row
    over an array entry's slots, as one term."""
    j0 = int(js[0])
    if js.size == 1:
        return f"{_output_label(tape, j0, y)} at {primal(int(outputs[j0]))}"
    if js[-1] - j0 == js.size - 1:
        return f"{y}[{j0}:{int(js[-1]) + 1}]"
    return f"{y}[{j0}], ... ({js.size} outputs)"


def _reverse_text(tape, X, seed, val, bar, style, max_rows=None, grad_text=None):
    state = tape._state()
    first, n_ops, consts = _first(tape), tape.n_ops, state["consts"]
    primal, _, barred = _names(tape, style)
    b = style["bar"]
    # Adjoint rows: every entry from the last back to the first (an array
    # entry is one row over its slots), then every leading slot, then every
    # input; the first `shown` of them.
    total = n_ops + first + tape.n_inputs
    shown = total if max_rows is None else min(total, max_rows)
    n_entry_rows = min(shown, n_ops)
    n_lead_rows = min(shown - n_entry_rows, first)
    # Consumers of the slots shown are entries after them: only those
    # entries are unpacked, and their scalar ones sent through the edge tape.
    entries = _unpack(tape, n_ops - n_entry_rows, None)
    spans = ([(e.slot, e.count) for e in reversed(entries)]
             + [(s, 1) for s in range(first - 1, first - 1 - n_lead_rows, -1)])
    starts = np.array([s for s, _ in reversed(spans)], dtype=np.int64)
    lowest = int(starts[0]) if spans else tape._n_slots

    def rows_of(slots):
        """The row (index into spans) of each slot, all >= lowest."""
        return len(spans) - np.searchsorted(starts, slots, side="right")

    edges = _edge_partials(tape, entries, val, bar)
    uses = [[] for _ in spans]      # per row: (term, number or None, slot read, array consumer)
    for e in entries:
        if e.array is None:
            if not e.op.differentiable:
                continue
            partials = _partials_at(e, primal, val)
            for pos, s in e.operands:
                if partials[pos] != "0" and s >= lowest:
                    uses[int(rows_of(s))].append((_term(barred(e.slot), partials[pos]),
                                                  edges[(e.index, pos)][1], s, False))
            continue
        for pos, role, grid in _array_parts(e):
            if role != Role.SLOT:
                continue
            term = _array_adjoint_term(e, pos, grid, primal, barred, consts, style)
            read = _part_slots(grid)
            read = read[read >= lowest]
            if term is None or not read.size:
                continue
            hit, at = np.unique(rows_of(read), return_index=True)
            for r, i in zip(hit.tolist(), at.tolist()):
                uses[r].append((term, None, int(read[i]), True))
    outputs = state["outputs"]
    landing = np.flatnonzero(outputs >= lowest)
    seeds = {}
    if landing.size:
        for r, j in zip(rows_of(outputs[landing]).tolist(), landing.tolist()):
            seeds.setdefault(r, []).append(j)
    rows = []
    for r, (s, count) in enumerate(spans):
        terms, numbers = [], []
        js = seeds.get(r, [])
        if count == 1:
            for j in js:
                terms.append(_output_label(tape, j, "y" + b))
                numbers.append(float(seed[j]))
        elif js:
            terms.append(_outputs_term(tape, np.array(js), outputs, primal, "y" + b))
            numbers.append(None)
        for term, number, read, array in uses[r][:_MAX_TERMS]:
            # A term that reaches only part of the row says which element.
            terms.append(f"{term} at {primal(read)}" if array == (count == 1) else term)
            numbers.append(number)
        rule = _sum_text(terms)
        if len(uses[r]) > _MAX_TERMS:
            rule += f" + ... ({len(uses[r]) - _MAX_TERMS} more)"
        value = _values_text(bar, s, count)
        if (count == 1 and 1 < len(numbers) and len(uses[r]) <= _MAX_TERMS
                and None not in numbers):
            bar_s = bar[s]
            value = f"{_sum_text([_number(v) for v in numbers])} = {_number(bar_s)}"
            value = value if bar_s < 0 or np.isnan(bar_s) else " " + value
        rows.append((_range_name(barred, s, count), rule, value))
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
