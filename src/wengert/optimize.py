"""``tape.optimize()``: an equivalent, smaller tape.

Four rewrites, made by one forward pass, one backward pass and a
renumbering pass over the tape (compiled, in ``_optimize.pyx``; guards,
the constant pool and the report are NumPy here):

* **Constant folding.** An operation whose operands are all constants is
  evaluated once, by the replay's own compiled code, and becomes a ``const``
  entry; an operation with one constant-slot operand reads it as an
  immediate instead (``VV`` becomes ``VC``/``CV``).
* **Trivial algebra**, only where IEEE 754 makes the result the same bits
  and the derivative the same: ``x*1``, ``x/1``, ``x-0``, ``x+(-0.0)``,
  ``-(-x)`` become ``x``; a select whose branches are the same slot, or whose
  condition is constant, becomes that branch.
* **Common subexpressions.** Operations with the same opcode and the same
  operands (after the rewrites above; add and mul with sorted operands) are
  computed once; ``const`` entries merge when their values have the same
  bits.
* **Dead code.** Operations that reach no output and no guard are dropped.

Inputs, parameters and guards are unchanged (guards read the new slots);
the original tape is untouched.

What is preserved, exactly:

* values: every output is bit-for-bit the original's at every point,
  -0.0 included; where the original is NaN the optimised tape is NaN (the
  payload or sign of a NaN may differ when sorted add/mul operands are both
  NaN, which IEEE 754 leaves unspecified);
* forward-mode derivatives (``jvp``, forward ``jacobian``): equal (==) to
  the original's, NaN where it is NaN;
* reverse-mode derivatives (``vjp``, ``gradient``, reverse ``jacobian``):
  equal (==) unless operations were merged or removed by an identity. A
  merged operation receives the sum of its duplicates' adjoints before
  passing it on (``(a + b) * d`` replaces ``a*d + b*d``), and the users of
  an aliased ``x*1`` add into ``x``'s adjoint directly, so the sums are
  associated differently: results agree to rounding (a few units in the
  last place relative to the sum of the magnitudes of the contributions).
  Where the original is inf or NaN the optimised tape may differ: merging
  two ``sqrt(0)`` whose adjoints cancel gives ``0 * inf = 0`` (the exact
  derivative) where the original added ``inf - inf = NaN``;
* guards: the same comparisons with the same recorded outcomes and
  messages, so :class:`~wengert.BranchChangedError` is raised at exactly the
  same points.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from wengert import _opcodes as ops
from wengert._opcodes import Kind, Role
from wengert._compact import compact, map_state
from wengert._expand import has_array_entries
from wengert.tape import Tape

# The compiled passes; "_optimize" is built by setup.py with the sweeps.
from wengert._optimize import live_slots, renumber, simplify

# Fates of an operation in ``_optimize.simplify`` (its enum, mirrored).
_KEPT, _MERGED, _ALIASED = 0, 1, 2
_EVALUATED, _INLINED = 1, 2

_SHIFT = ops.KIND_SHIFT


@dataclass(frozen=True)
class OptimizeReport:
    """What :func:`optimize_tape` removed, and why.

    Every removed operation is counted under exactly one reason, so
    ``dead + folded + merged + simplified == ops_before - ops_after``.
    ``print(report)`` shows a short table.

    Attributes
    ----------
    ops_before, ops_after : int
        Operations on the tape before and after.
    dead : int
        Removed because no output or guard depends on them.
    folded : int
        Constant-valued operations removed because their users now read the
        value as an immediate operand (or nothing reads it).
    merged : int
        Removed as duplicates of an earlier identical operation (common
        subexpressions, including ``const`` entries with the same bits).
    simplified : int
        Removed by an exact identity (``x*1``, ``x/1``, ``x-0``,
        ``x+(-0.0)``, ``-(-x)``, a select with equal branches or a constant
        condition).
    evaluated : int
        Operations (other than ``const`` entries) whose value was computed
        while optimising because all their operands were constants.
    inlined : int
        Remaining operations that now read a constant as an immediate
        operand instead of from a ``const`` slot.
    consts_before, consts_after : int
        Size of the constant pool before and after.
    guards : int
        Guards, all kept.
    seconds : float
        Time the optimisation took.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: np.sum(np.sin(x) * np.sin(x)), np.ones(3))
    >>> report = tape.optimize().optimize_report
    >>> report.ops_before, report.ops_after, report.merged
    (11, 8, 3)
    """

    ops_before: int
    ops_after: int
    dead: int
    folded: int
    merged: int
    simplified: int
    evaluated: int
    inlined: int
    consts_before: int
    consts_after: int
    guards: int
    seconds: float

    @property
    def removed(self) -> int:
        """Operations removed in total."""
        return self.ops_before - self.ops_after

    def __str__(self):
        share = 100.0 * self.removed / self.ops_before if self.ops_before else 0.0
        rows = [
            ("dead code", self.dead, "needed by no output or guard"),
            ("constant folding", self.folded,
             f"constants inlined into their users ({self.evaluated} operations evaluated)"),
            ("common subexpressions", self.merged, "duplicates of earlier operations"),
            ("trivial algebra", self.simplified, "x*1, x/1, x-0, x+(-0.0), -(-x), selects"),
        ]
        width = len(str(max(self.dead, self.folded, self.merged, self.simplified,
                            self.inlined, self.guards)))
        lines = [f"tape.optimize(): {self.ops_before} -> {self.ops_after} operations "
                 f"(-{self.removed}, {share:.1f}%) in {self.seconds:.3g} s"]
        lines += [f"  {name:<22} {count:>{width}}  {what}" for name, count, what in rows]
        lines.append(f"  {'constant operands':<22} {self.inlined:>{width}}  "
                     "operations now reading a constant directly")
        lines.append(f"  {'constant pool':<22} {self.consts_before} -> {self.consts_after}")
        lines.append(f"  {'guards':<22} {self.guards:>{width}}  all kept")
        return "\n".join(lines)


def optimize_tape(tape):
    """An equivalent, smaller copy of ``tape``; the original is unchanged.

    Removes dead code, folds constants, merges common subexpressions and
    applies exact algebraic identities (see the module docstring for what
    is preserved bit for bit). Guards survive with their messages. The new
    tape carries an :class:`OptimizeReport` as ``optimize_report``.
    Usually called as ``tape.optimize()``. Linear time: about 0.5 s for
    10^7 operations.

    Parameters
    ----------
    tape : wengert.Tape

    Returns
    -------
    wengert.Tape
        A new, validated tape with the same inputs, parameters, outputs and
        guards.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> def f(x):
    ...     unused = np.exp(x)
    ...     return np.sin(x) * np.sin(x) * 1.0
    >>> tape = wg.record(f, np.ones(2))
    >>> small = tape.optimize()
    >>> len(tape), len(small)
    (10, 4)
    >>> print(small.optimize_report)          # doctest: +ELLIPSIS
    tape.optimize(): 10 -> 4 operations (-6, 60.0%) in ... s
      dead code              2  needed by no output or guard
      constant folding       0  constants inlined into their users (0 operations evaluated)
      common subexpressions  2  duplicates of earlier operations
      trivial algebra        2  x*1, x/1, x-0, x+(-0.0), -(-x), selects
      constant operands      0  operations now reading a constant directly
      constant pool          1 -> 0
      guards                 0  all kept
    >>> bool(np.array_equal(small.forward([0.5, 2.0]), tape.forward([0.5, 2.0])))
    True
    """
    start = time.perf_counter()
    if has_array_entries(tape._state()["opcodes"]):
        # Array entries are one per NumPy call already: rewriting the tape's
        # scalar form would trade them for one entry per element, a slower
        # replay. Such a tape is returned as it is (a copy), for now.
        state = tape._state()
        n, n_consts = tape.n_ops, int(state["consts"].size)
        result = Tape._from_state(state)
        result.optimize_report = OptimizeReport(
            ops_before=n, ops_after=n, dead=0, folded=0, merged=0, simplified=0, evaluated=0,
            inlined=0, consts_before=n_consts, consts_after=n_consts, guards=tape.n_guards,
            seconds=time.perf_counter() - start)
        return result
    # The passes allocate per slot: run them on the tape without the inputs
    # and parameters it never reads (renumbered in order, so every rewrite
    # is the same), and number the slots back at the end.
    c = compact(tape)
    state = tape._state()
    if not c.identity:
        state = map_state(state, c.to_new)
    opcodes, args, consts, aux = state["opcodes"], state["args"], state["consts"], state["aux"]
    n = opcodes.size
    first = c.first
    done = simplify(opcodes, args, consts, aux, first)
    rep, constant, values = done["rep"], done["constant"], done["values"]
    fate, flags = done["fate"], done["flags"]

    guards = state["guards"]
    g_slots, g_source, g_values = _guard_operands(guards, consts, rep, constant, values)

    roots = np.concatenate([rep[state["outputs"]], g_slots[g_slots >= 0]]).astype(np.int32)
    live = live_slots(done["code"], done["args"], done["aux"], fate, first, roots)

    own = fate == _KEPT
    keep = own & live[first:]
    code, new_args, new_aux, new_slot, at, new_values = renumber(
        done["code"], done["args"], done["imm"], done["aux"], keep.view(np.uint8), first,
        consts.size)

    # The constant pool: candidates are the old pool, then values computed
    # here for operations, then for guards; keep each used bit pattern once.
    g_imm = g_slots < 0
    g_new = g_imm & (g_source < 0)
    g_ids = g_source.copy()
    g_ids[g_new] = consts.size + new_values.size + np.arange(np.count_nonzero(g_new))
    flat = new_args.reshape(-1)
    pool, position = _pool(np.concatenate([consts, new_values, g_values[g_new]]),
                           np.concatenate([flat[at], g_ids[g_imm]]))
    flat[at] = position[:at.size]

    g_args = np.where(g_imm, 0, new_slot[np.maximum(g_slots, 0)])
    g_args[g_imm] = position[at.size:]
    g_kind = np.where(g_imm[:, 0], int(Kind.CV), np.where(g_imm[:, 1], int(Kind.VC), int(Kind.VV)))
    new_guards = [g._replace(code=(kd << _SHIFT) | (g.code & ops.BASE_MASK), a0=a0, a1=a1)
                  for g, kd, (a0, a1) in zip(guards, g_kind.tolist(), g_args.tolist())]

    new_state = dict(state)
    new_state.update(opcodes=code, args=new_args, consts=pool, aux=new_aux,
                     outputs=new_slot[rep[state["outputs"]]], guards=new_guards)
    if not c.identity:
        new_state = map_state(new_state, c.to_old)
    result = Tape._from_state(new_state)

    constant_ops = constant[first:]
    gone = own & ~keep
    report = OptimizeReport(
        ops_before=n, ops_after=code.size,
        dead=int(np.count_nonzero(gone & ~constant_ops)),
        folded=int(np.count_nonzero(gone & constant_ops)),
        merged=int(np.count_nonzero(fate == _MERGED)),
        simplified=int(np.count_nonzero(fate == _ALIASED)),
        evaluated=int(np.count_nonzero(flags & _EVALUATED)),
        inlined=int(np.count_nonzero(flags[keep] & _INLINED)),
        consts_before=int(consts.size), consts_after=int(pool.size),
        guards=len(guards), seconds=time.perf_counter() - start)
    assert report.dead + report.folded + report.merged + report.simplified == report.removed
    result.optimize_report = report
    return result


def _guard_operands(guards, consts, rep, constant, values):
    """Each guard's two operands: representative slots ``(g, 2)``, -1 for an
    immediate constant, whose original pool index (-1 if new) and value are
    in the other two arrays returned.

    A slot operand whose value is constant becomes an immediate, so its
    ``const`` entry can go, unless the other operand is constant too (a
    guard compares at least one slot).
    """
    g_code = np.array([g.code for g in guards], dtype=np.int64)
    g_args = np.array([(g.a0, g.a1) for g in guards], dtype=np.int64).reshape(-1, 2)
    imm = (ops.ROLES[g_code] == Role.CONST).reshape(-1, 2)
    pool_values = consts[np.where(imm, g_args, 0)] if consts.size else np.zeros(g_args.shape)
    slots = rep[np.where(imm, 0, g_args)]
    both_constant = (imm | constant[slots]).all(axis=1, keepdims=True)
    inline = ~imm & constant[slots] & ~both_constant
    g_values = np.where(imm, pool_values, values[slots])
    source = np.where(imm, g_args, -1)
    slots = np.where(imm | inline, -1, slots)
    return slots, source, g_values


def _pool(candidates, ids):
    """The new constant pool: each bit pattern among ``candidates[ids]``
    once, in candidate order; and each id's index into it."""
    used = np.zeros(candidates.size, dtype=bool)
    used[ids] = True
    used_at = np.flatnonzero(used)
    bits = np.ascontiguousarray(candidates[used_at]).view(np.uint64)
    unique, first_seen, inverse = np.unique(bits, return_index=True, return_inverse=True)
    order = np.argsort(first_seen, kind="stable")
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    position = np.zeros(candidates.size, dtype=np.int32)
    position[used_at] = rank[inverse.reshape(-1)]
    return unique[order].view(np.float64), position[ids]
