"""A tape without the inputs and parameters it never reads.

A tape may declare many more inputs than its operations read (``f(x) =
x[0]`` recorded at a point of 10**9 elements, or a forged file): the
compiled passes (sweeps, sparsity, optimisation) allocate per *slot*, and
inputs are slots, so they would cost memory in proportion to the declared
input count. The tools that must stay bounded by the size of the tape --
the displays, the sparsity patterns and colourings, ``optimize`` -- run those
passes on the *compact* tape built here instead: the same operations, with
only the leading slots (inputs, then parameters) that some operation,
select branch, guard or output refers to, renumbered in order. Renumbering
is monotone, so every pass gives the same results in the new numbering.

:func:`compact` builds it once per tape (cached on the tape) in time and
memory linear in the tape's arrays, never in the declared input count. When
every leading slot is read it is the tape's own engine.
"""
from __future__ import annotations

import numpy as np

from wengert import _opcodes as ops
from wengert._opcodes import Kind

_SHIFT = ops.KIND_SHIFT
_CONST = ops.code_of("const")
_SELECT = ops.code_of("select")
_CACHE_KEY = "_compact_cache"


def slot_mask(opcodes):
    """``(n_ops, 2)`` bools: which operand of each operation is a slot (the
    others index the constant pool or the side table, or are unused)."""
    opcodes = np.asarray(opcodes)
    kind = opcodes >> _SHIFT
    mask = np.zeros((opcodes.size, 2), dtype=bool)
    mask[:, 0] = (kind == Kind.VV) | (kind == Kind.VC) | ((kind == Kind.UNARY)
                                                         & (opcodes != _CONST))
    mask[:, 1] = (kind == Kind.VV) | (kind == Kind.CV)
    return mask


def select_positions(opcodes, args):
    """Positions in the side table of the branch slots of every select."""
    at = np.asarray(args)[np.asarray(opcodes) == _SELECT, 1].astype(np.int64)
    return np.concatenate([at, at + 1])


def guard_mask(guard_codes):
    """``(n_guards, 2)`` bools: which operand of each guard is a slot."""
    kind = np.asarray(guard_codes).astype(np.int64) >> _SHIFT
    return np.stack([kind != Kind.CV, kind != Kind.VC], axis=1).reshape(-1, 2)


def remap(opcodes, args, aux, outputs, guard_codes, guard_args, new_slot):
    """Copies of ``args``, ``aux``, ``outputs`` and ``guard_args`` with every
    slot operand ``s`` replaced by ``new_slot(s)`` (a vectorised function)."""
    args = np.array(args, dtype=np.int32).reshape(-1, 2)
    mask = slot_mask(opcodes)
    args[mask] = new_slot(args[mask])
    aux = np.array(aux, dtype=np.int32).reshape(-1)
    at = select_positions(opcodes, args)
    aux[at] = new_slot(aux[at])
    outputs = np.asarray(new_slot(np.asarray(outputs)), dtype=np.int32).reshape(-1)
    guard_args = np.array(guard_args, dtype=np.int32).reshape(-1, 2)
    gmask = guard_mask(guard_codes)
    guard_args[gmask] = new_slot(guard_args[gmask])
    return args, aux, outputs, guard_args


def referenced(engine):
    """The leading slots (inputs and parameters) the tape reads, sorted."""
    first = engine.first
    parts = [engine.args[slot_mask(engine.opcodes)],
             engine.aux[select_positions(engine.opcodes, engine.args)],
             engine.guard_args[guard_mask(engine.guard_codes)],
             engine.outputs]
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
    engine : wengert._engine.Engine
        The compact tape's engine (the tape's own when nothing is dropped).
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
        eng = tape._engine
        kept = referenced(eng)
        self.kept = kept
        self.first = int(kept.size)
        self.old_first = int(eng.first)
        self.shift = self.old_first - self.first
        self.n_inputs = int(np.searchsorted(kept, tape.n_inputs))
        self.inputs = kept[:self.n_inputs]
        self.params = kept[self.n_inputs:] - tape.n_inputs
        self.identity = self.shift == 0
        if self.identity:
            self.engine = eng
            return
        from wengert._engine import Engine
        from wengert.tape import _VALID_CODES
        args, aux, outputs, guard_args = remap(
            eng.opcodes, eng.args, eng.aux, eng.outputs, eng.guard_codes, eng.guard_args,
            self.to_new)
        self.engine = Engine(eng.opcodes, args, eng.consts, aux, outputs, self.n_inputs,
                             self.first - self.n_inputs, eng.guard_codes, guard_args,
                             eng.guard_expected, _VALID_CODES)
        self.engine.branch_error = eng.branch_error

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

    def leading_work(self, X, params):
        """A work array ``(n_slots, 1)`` for the compact engine at one point:
        the kept inputs of ``X`` (flat) and the kept ``params``."""
        val = np.empty((self.engine.n_slots, 1))
        val[:self.n_inputs, 0] = X[self.inputs]
        val[self.n_inputs:self.first, 0] = params[self.params]
        return val


def compact(tape):
    """The tape's :class:`Compact` (built once, cached on the tape)."""
    found = tape.__dict__.get(_CACHE_KEY)
    if found is None:
        found = tape.__dict__.setdefault(_CACHE_KEY, Compact(tape))
    return found


def map_state(state, new_slot):
    """A copy of a tape state (``Tape._state()``) with every slot operand
    of the operations, outputs and guards replaced by ``new_slot(s)``."""
    guards = state["guards"]
    codes = np.array([g.code for g in guards], dtype=np.int64)
    guard_args = np.array([(g.a0, g.a1) for g in guards], dtype=np.int64).reshape(-1, 2)
    args, aux, outputs, guard_args = remap(state["opcodes"], state["args"], state["aux"],
                                           state["outputs"], codes, guard_args, new_slot)
    new = dict(state)
    new.update(args=args, aux=aux, outputs=outputs,
               guards=[g._replace(a0=a0, a1=a1)
                       for g, (a0, a1) in zip(guards, guard_args.tolist())])
    return new
