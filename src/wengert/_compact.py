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

The compact tape is itself a :class:`~wengert.Tape` (``Compact.tape``), so
the tools replay it with ``Tape._replay`` like any other. :func:`compact`
builds it once per tape (kept in the tape's cache, ``Tape._cached``) in time
and memory linear in the tape's arrays, never in the declared input count.
When every leading slot is read it is the tape itself.

The operands are decoded by :data:`wengert._opcodes.ROLES`, the table of
what each operand of every opcode refers to.
"""
from __future__ import annotations

import numpy as np

from wengert._expand import has_array_entries
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
        if has_array_entries(state["opcodes"]):
            # Array entries read slots through descriptors this renumbering
            # does not rewrite: keep every leading slot. (Sparsity reads an
            # array tape's scalar form, whose compact tape drops them; the
            # listing and the traces replay the array tape as it is.)
            kept = np.arange(self.old_first, dtype=np.int64)
        else:
            kept = referenced(state, self.old_first)
        self.kept = kept
        self.first = int(kept.size)
        self.shift = self.old_first - self.first
        self.n_inputs = int(np.searchsorted(kept, tape.n_inputs))
        self.inputs = kept[:self.n_inputs]
        self.params = kept[self.n_inputs:] - tape.n_inputs
        self.identity = self.shift == 0
        if self.identity:
            self.tape = tape
            return
        small = map_state(state, self.to_new)
        n_params = self.first - self.n_inputs
        small.update(in_shape=(self.n_inputs,), n_params=n_params,
                     param_specs=[Param((n_params,), self.n_inputs, np.zeros(n_params))]
                     if n_params else [])
        self.tape = Tape._from_state(small)

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
