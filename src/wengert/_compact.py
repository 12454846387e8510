"""A tape without the inputs and parameters it never reads.

A tape may declare many more inputs than its operations read (``f(x) =
x[0]`` recorded at a point of 10**9 elements, or a forged file): the
compiled passes (sweeps, sparsity) allocate per *slot*, and inputs are
slots, so they would cost memory in proportion to the declared input count.
The tools that must stay bounded by the size of the tape -- the displays,
the sparsity patterns and colourings -- run those passes on the *compact*
tape built here instead (``optimize`` keeps its facts per entry and needs
none): the same operations, with
only the leading slots (inputs, then parameters) that some operation,
select branch, guard or output refers to, renumbered in order. Renumbering
is monotone, so every pass gives the same results in the new numbering.

The compact tape is itself a :class:`~wengert.Tape` (``Compact.tape``), so
the tools replay it with ``Tape._replay`` like any other. :func:`compact`
builds it once per tape (kept in the tape's cache, ``Tape._cached``) in time
and memory linear in the tape's arrays, never in the declared input count.
When every leading slot is read it is the tape itself.

The operands are decoded by :data:`wengert._opcodes.ROLES`, the table of
what each operand of every opcode refers to. An array entry reads grids of
slots through its descriptor: every leading slot between a grid's lowest
and highest counts as read, so that no slot inside a grid is dropped and
the grid keeps its strides, moved by one shift.
"""
from __future__ import annotations

import numpy as np

from wengert import _opcodes as ops
from wengert._errors import TapeFormatError
from wengert._opcodes import ROLES, Role
from wengert._records import Param
from wengert.tape import Tape


def slot_mask(opcodes):
    """``(n, 2)`` bools: which operand of each entry is a slot; the others
    index the constant pool or the side table, or are unused. Entries are
    operations or guards (binary comparisons, decoded by the same table)."""
    return ROLES[np.asarray(opcodes, dtype=np.intp).reshape(-1)] == Role.SLOT


def select_positions(opcodes, args):
    """Positions in the side table of the branch slots of every select (the
    entries whose second operand indexes the side table)."""
    codes = np.asarray(opcodes, dtype=np.intp).reshape(-1)
    at = np.asarray(args).reshape(-1, 2)[ROLES[codes, 1] == Role.AUX, 1].astype(np.int64)
    return np.concatenate([at, at + 1])


def guard_arrays(guards):
    """The opcodes ``(n_guards,)`` and operands ``(n_guards, 2)`` of a
    tape's ``Guard`` records, as arrays."""
    codes = np.array([g.code for g in guards], dtype=np.uint8)
    args = np.array([(g.a0, g.a1) for g in guards], dtype=np.int64).reshape(-1, 2)
    return codes, args


# Descriptor lengths of the array entries (a gather's is its slot count).
_LAYOUT_SIZE = {op.code(): len(ops.ARRAY_LAYOUTS[op.name]) for op in ops.OPERATIONS
                if op.arity == ops.ARRAY and op.name != "gather"}


def descriptor(aux, code, a0, a1):
    """The descriptor of the array entry ``(code, a0, a1)`` as a list of ints."""
    return [int(v) for v in aux[a0:a0 + _LAYOUT_SIZE.get(code, a1)]]


def array_parts(code, d):
    """The operands of the array entry of opcode ``code`` and descriptor
    ``d`` (see ``_opcodes.ARRAY_LAYOUTS``) as ``(position, role, grid, at)``:
    ``grid`` is ``(start, n_outer, outer, n_inner, inner)`` and ``at`` the
    index of its start in ``d``, or a gather's list of source slots (``at``
    None). A where's positions are 0 (the condition), 1 and 2 (the branches)."""
    name = ops.split(code)[0].name
    if name == "gather":
        return [(0, Role.SLOT, d, None)]
    if name in ("sum", "cumsum"):
        return [(0, Role.SLOT, (d[2], d[0], d[3], d[1], d[4]), 2)]
    if name == "where":
        return [(p, Role.SLOT, (d[2 + 3 * p], d[0], d[3 + 3 * p], d[1], d[4 + 3 * p]), 2 + 3 * p)
                for p in range(3)]
    roles = ROLES[d[0]]
    if name == "matmul":
        m, k, n = d[1:4]
        return [(0, roles[0], (d[4], m, d[5], k, d[6]), 4),
                (1, roles[1], (d[7], k, d[8], n, d[9]), 7)]
    return [(p, roles[p], (d[3 + 3 * p], d[1], d[4 + 3 * p], d[2], d[5 + 3 * p]), 3 + 3 * p)
            for p in range(2) if roles[p] != Role.NONE]


def array_grids(opcodes, args, aux):
    """``(positions, lows, highs)``: where in ``aux`` the start of every slot
    grid (and every gather source) that the array entries read stands, and
    the lowest and highest slot of each, as int64 arrays."""
    codes = np.asarray(opcodes, dtype=np.intp).reshape(-1)
    args = np.asarray(args).reshape(-1, 2)
    aux = np.asarray(aux)
    at, lows, highs = [], [], []
    for i in np.flatnonzero(ROLES[codes, 0] == Role.ARRAY).tolist():
        a0, a1 = int(args[i, 0]), int(args[i, 1])
        for _, role, grid, start in array_parts(int(codes[i]), descriptor(aux, codes[i], a0, a1)):
            if role != Role.SLOT:
                continue
            if start is None:           # a gather: each source on its own
                at.append(np.arange(a0, a0 + a1, dtype=np.int64))
                lows.append(np.asarray(grid, dtype=np.int64))
                highs.append(lows[-1])
                continue
            first_slot, n_outer, outer, n_inner, inner = grid
            steps = ((n_outer - 1) * outer, (n_inner - 1) * inner)
            at.append(np.array([a0 + start], dtype=np.int64))
            lows.append(np.array([first_slot + sum(min(0, v) for v in steps)], dtype=np.int64))
            highs.append(np.array([first_slot + sum(max(0, v) for v in steps)], dtype=np.int64))
    if not at:
        return (np.zeros(0, np.int64),) * 3
    return np.concatenate(at), np.concatenate(lows), np.concatenate(highs)


def grid_runs(lows, highs, first):
    """``(starts, ends)``: the leading slots (below ``first``) that the
    ranges ``lows[i] .. highs[i]`` (inclusive) cover, as sorted disjoint
    half-open runs."""
    keep = lows < first
    lows, highs = lows[keep], np.minimum(highs[keep] + 1, first)
    if not lows.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(lows)
    lows, highs = lows[order], highs[order]
    reach = np.maximum.accumulate(highs)
    new = np.ones(lows.size, dtype=bool)
    new[1:] = lows[1:] >= reach[:-1]
    return lows[new], np.append(reach[np.flatnonzero(new)[1:] - 1], reach[-1])


def remap(opcodes, args, aux, outputs, guard_codes, guard_args, new_slot):
    """Copies of ``args``, ``aux``, ``outputs`` and ``guard_args`` with every
    slot operand ``s`` replaced by ``new_slot(s)`` (a vectorised function;
    array entries' grids move by the shift of their start)."""
    args = np.array(args, dtype=np.int32).reshape(-1, 2)
    mask = slot_mask(opcodes)
    aux = np.array(aux, dtype=np.int32).reshape(-1)
    at = array_grids(opcodes, args, aux)[0]
    aux[at] = new_slot(aux[at].astype(np.int64))
    args[mask] = new_slot(args[mask])
    at = select_positions(opcodes, args)
    aux[at] = new_slot(aux[at])
    outputs = np.asarray(new_slot(np.asarray(outputs)), dtype=np.int32).reshape(-1)
    guard_args = np.array(guard_args, dtype=np.int32).reshape(-1, 2)
    gmask = slot_mask(guard_codes)
    guard_args[gmask] = new_slot(guard_args[gmask])
    return args, aux, outputs, guard_args


def referenced(state, first):
    """The leading slots (inputs and parameters, the slots below ``first``)
    that a tape state (``Tape._state()``) reads, sorted."""
    opcodes, args = state["opcodes"], state["args"]
    guard_codes, guard_args = guard_arrays(state["guards"])
    parts = [args[slot_mask(opcodes)],
             state["aux"][select_positions(opcodes, args)],
             guard_args[slot_mask(guard_codes)],
             state["outputs"]]
    # Every leading slot an array entry's grid spans.
    starts, ends = grid_runs(*array_grids(opcodes, args, state["aux"])[1:], first)
    parts += [np.arange(a, b, dtype=np.int64) for a, b in zip(starts.tolist(), ends.tolist())]
    lead = np.concatenate([p[p < first].astype(np.int64) for p in parts])
    if first <= 4 * lead.size + 4096:
        # Few leading slots for the references: a mask is cheaper than a sort.
        seen = np.zeros(first, dtype=bool)
        seen[lead] = True
        return np.flatnonzero(seen).astype(np.int64)
    return np.unique(lead)


class Compact:
    """The compact tape of a tape (see the module docstring).

    Attributes
    ----------
    tape : Tape
        The compact tape (the tape itself when nothing is dropped): inputs of
        shape ``(n_inputs,)``, the kept parameters as one flat parameter
        (recorded as zeros: callers pass them, see :meth:`point`), the same
        operations, outputs and guards.
    kept : ndarray of int64
        The original leading slots kept, sorted: inputs first, then parameters.
    n_inputs, first : int
        Inputs kept, and leading slots kept (``kept.size``).
    inputs : ndarray of int64
        The flat indices of the inputs kept (``kept[:n_inputs]``).
    params : ndarray of int64
        The indices of the parameters kept, into the tape's parameters.
    old_first, shift : int
        The tape's first operation slot, and how far operation slots move
        (``old_first - first``).
    identity : bool
        Nothing was dropped: slots keep their numbers.
    """

    def __init__(self, tape):
        state = tape._state()
        self.old_first = tape.n_inputs + tape.n_params
        kept = referenced(state, self.old_first)
        self.kept = kept
        self.first = int(kept.size)
        self.shift = self.old_first - self.first
        self.n_inputs = int(np.searchsorted(kept, tape.n_inputs))
        self.inputs = kept[:self.n_inputs]
        self.params = kept[self.n_inputs:] - tape.n_inputs
        self.identity = self.shift == 0
        if not self.identity:
            small = map_state(state, self.to_new)
            n_params = self.first - self.n_inputs
            small.update(in_shape=(self.n_inputs,), n_params=n_params,
                         param_specs=[Param((n_params,), self.n_inputs, np.zeros(n_params))]
                         if n_params else [])
            try:
                self.tape = Tape._from_state(small)
                return
            except TapeFormatError:
                # A (forged) sum or product that reads a slot many times
                # (stride 0) may read more elements than the compact tape
                # has slots, which a tape refuses: keep every leading slot.
                pass
        self._keep_all(tape)

    def _keep_all(self, tape):
        self.kept = np.arange(self.old_first, dtype=np.int64)
        self.first = self.old_first
        self.shift = 0
        self.n_inputs = tape.n_inputs
        self.inputs = self.kept[:self.n_inputs]
        self.params = self.kept[self.n_inputs:] - tape.n_inputs
        self.identity = True
        self.tape = tape

    def to_new(self, slots):
        """The compact slots of original slots (-1 for a leading slot dropped)."""
        s = np.asarray(slots, dtype=np.int64)
        if self.identity:
            return s.copy()
        shape, s = s.shape, s.reshape(-1)
        out = s - self.shift
        lead = s < self.old_first
        if lead.any():
            sl = s[lead]
            pos = np.searchsorted(self.kept, sl)
            hit = pos < self.first
            hit[hit] = self.kept[pos[hit]] == sl[hit]
            out[lead] = np.where(hit, pos, -1)
        return out.reshape(shape)

    def to_old(self, slots):
        """The original slots of compact slots."""
        s = np.asarray(slots, dtype=np.int64)
        if self.identity:
            return s.copy()
        shape, s = s.shape, s.reshape(-1)
        out = s + self.shift
        lead = s < self.first
        out[lead] = self.kept[s[lead]]
        return out.reshape(shape)

    def point(self, X, params):
        """The compact tape's ``(X, params)`` for ``_replay`` at one point of
        the tape: the kept inputs of the flat ``X`` and the kept ``params``."""
        if self.identity:
            return X, params
        return X[self.inputs], params[self.params]


def compact(tape):
    """The tape's :class:`Compact` (built once, kept in the tape's cache)."""
    return tape._cached("compact", lambda: Compact(tape))


def map_state(state, new_slot):
    """A copy of a tape state (``Tape._state()``) with every slot operand
    of the operations, outputs and guards replaced by ``new_slot(s)``."""
    guards = state["guards"]
    codes, guard_args = guard_arrays(guards)
    args, aux, outputs, guard_args = remap(state["opcodes"], state["args"], state["aux"],
                                           state["outputs"], codes, guard_args, new_slot)
    new = dict(state)
    new.update(args=args, aux=aux, outputs=outputs,
               guards=[g._replace(a0=a0, a1=a1)
                       for g, (a0, a1) in zip(guards, guard_args.tolist())])
    return new
