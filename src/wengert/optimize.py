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

Array entries (one NumPy call over many slots) take part: an array entry
is dead when no live entry, output or guard reads any slot it writes, and
merges with an earlier one of the same opcode and descriptor (after its
operands' own merges; a constant array pooled twice counts as one). Their
descriptors read slot *grids*, so a grid over the results of several
entries pins them: each keeps its own slot (it may still be folded into a
``const`` entry), and stays while the grid's reader does, so that the grid
still reads consecutive slots; every grid moves with its slots when the
tape is renumbered. The constant pool keeps the old constants in place
(grids read them by position) and appends the values computed here. The
passes cost the entries and descriptors, never the elements: no array is
allocated per slot.

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
from wengert._expand import _IS_ARRAY
from wengert.tape import Tape

# The compiled passes; "_optimize" is built by setup.py with the sweeps.
from wengert._optimize import Layout, array_entry_count, live_entries, renumber, simplify

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
    Usually called as ``tape.optimize()``. Linear time in the entries and
    descriptors, never in the elements of array entries: about 1 ms for a
    Rosenbrock tape of 8 array entries over 10^6 elements.

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
    state = tape._state()
    opcodes, consts = state["opcodes"], state["consts"]
    n = opcodes.size
    layout, args, aux = _layout(opcodes, state["args"], state["aux"], consts,
                                tape.n_inputs + tape.n_params)
    done = simplify(opcodes, args, consts, aux, layout)
    fate, flags, constant = done["fate"], done["flags"], done["constant"]

    def representatives(slots):
        return layout.representatives(done["rep"], constant, done["values"], slots)

    guards = state["guards"]
    g_slots, g_source, g_values = _guard_operands(guards, consts, representatives)
    outputs = representatives(state["outputs"])[0]
    roots = np.concatenate([outputs, g_slots[g_slots >= 0]])
    live = live_entries(done["code"], done["args"], done["aux"], fate, done["g_delta"], layout,
                        roots)

    own = fate == _KEPT
    keep = (own & live).view(np.uint8)
    code, new_args, new_aux, new_start, at, new_values = renumber(
        done["code"], done["args"], done["imm"], done["aux"], keep, done["g_delta"], layout,
        consts.size)

    # The constant pool: candidates are the old pool, then values computed
    # here for operations, then for guards; keep each used bit pattern once
    # (and the whole old pool, in place, for the grids of array entries).
    g_imm = g_slots < 0
    g_new = g_imm & (g_source < 0)
    g_ids = g_source.copy()
    g_ids[g_new] = consts.size + new_values.size + np.arange(np.count_nonzero(g_new))
    flat = new_args.reshape(-1)
    pool, position = _pool(np.concatenate([consts, new_values, g_values[g_new]]),
                           np.concatenate([flat[at], g_ids[g_imm]]),
                           kept=consts.size if layout.n_arrays else 0)
    flat[at] = position[:at.size]

    g_args = np.zeros(g_slots.shape, dtype=np.int64)
    g_args[~g_imm] = layout.renumbered(new_start, g_slots[~g_imm])
    g_args[g_imm] = position[at.size:]
    g_kind = np.where(g_imm[:, 0], int(Kind.CV), np.where(g_imm[:, 1], int(Kind.VC), int(Kind.VV)))
    new_guards = [g._replace(code=(kd << _SHIFT) | (g.code & ops.BASE_MASK), a0=a0, a1=a1)
                  for g, kd, (a0, a1) in zip(guards, g_kind.tolist(), g_args.tolist())]

    new_state = dict(state)
    new_state.update(opcodes=code, args=new_args, consts=pool, aux=new_aux,
                     outputs=layout.renumbered(new_start, outputs).astype(np.int32),
                     guards=new_guards)
    result = Tape._from_state(new_state)

    constant_ops = constant.view(bool)
    gone = own & ~live
    report = OptimizeReport(
        ops_before=n, ops_after=code.size,
        dead=int(np.count_nonzero(gone & ~constant_ops)),
        folded=int(np.count_nonzero(gone & constant_ops)),
        merged=int(np.count_nonzero(fate == _MERGED)),
        simplified=int(np.count_nonzero(fate == _ALIASED)),
        evaluated=int(np.count_nonzero(flags & _EVALUATED)),
        inlined=int(np.count_nonzero(flags[keep.view(bool)] & _INLINED)),
        consts_before=int(consts.size), consts_after=int(pool.size),
        guards=len(guards), seconds=time.perf_counter() - start)
    assert report.dead + report.folded + report.merged + report.simplified == report.removed
    result.optimize_report = report
    return result


def _guard_operands(guards, consts, representatives):
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
    slots, constant, values = (a.reshape(-1, 2) for a in
                               representatives(np.where(imm, -1, g_args)))
    both_constant = (imm | constant).all(axis=1, keepdims=True)
    inline = ~imm & constant & ~both_constant
    g_values = np.where(imm, pool_values, values)
    source = np.where(imm, g_args, -1)
    slots = np.where(imm | inline, -1, slots)
    return slots, source, g_values


# The slot grids of each array entry's descriptor (``_opcodes.ARRAY_LAYOUTS``)
# as positions of (start, rows, row stride, columns, column stride), with the
# operand of the entry's inner opcode that says whether it reads slots (None:
# always slots); a gather reads its sources one by one instead.
_DIMENSIONS = {"a": ("m", "k"), "b": ("k", "n")}      # of a matrix product's operands


def _grid_fields(fields):
    at = {name: k for k, name in enumerate(fields)}
    grids = []
    for p in "cab":
        if f"{p}_start" not in at:
            continue
        if f"{p}_outer" in at:
            dims = (at["n_outer"], at[f"{p}_outer"], at["n_inner"], at[f"{p}_inner"])
        else:
            rows, cols = _DIMENSIONS[p]
            dims = (at[rows], at[f"{p}_rows"], at[cols], at[f"{p}_cols"])
        grids.append(("ab".index(p) if "code" in at else None, at[f"{p}_start"]) + dims)
    return len(fields), at.get("code"), grids


_GRIDS = {ops.code_of(name): _grid_fields(fields)
          for name, fields in ops.ARRAY_LAYOUTS.items() if name != "gather"}
_GATHER = ops.code_of("gather")


def _layout(opcodes, args, aux, consts, first):
    """``(Layout, args, aux)``: where each slot of a tape is written and the
    slot grids its array entries read, for the compiled passes; with array
    entries, the side table is rewritten so that every select and every
    descriptor has its own copy (the passes rewrite them in place), and
    every constant grid reads the first copy of its constants in the pool.

    Linear in the entries and the descriptors, never in the elements."""
    n = opcodes.size
    args = np.asarray(args, dtype=np.int32).reshape(-1, 2)
    nothing = np.zeros(0, np.int64)
    if not array_entry_count(opcodes):
        start = np.arange(first, first + n, dtype=np.int64)
        one = np.zeros(min(n, 1), np.int64)
        return (Layout(first, start, start[:1], one, one, np.zeros(1, np.int64), nothing,
                       nothing, nothing, nothing, np.zeros(n, np.uint8)), args, aux)
    is_array = _IS_ARRAY[opcodes]
    count = np.where(is_array, args[:, 1], 1).astype(np.int64)
    start = first + np.concatenate([[0], np.cumsum(count[:-1])])
    d_len = np.zeros(n, np.int64)
    for code, (size, _, _) in _GRIDS.items():
        d_len[opcodes == code] = size
    d_len[opcodes == _GATHER] = count[opcodes == _GATHER]
    # Each select's branch pair and each descriptor copied to its own place.
    is_select = ops.ROLES[opcodes, 1] == ops.Role.AUX
    column = np.where(is_select, 1, 0)
    length = np.where(is_select, 2, d_len)
    old_at = args[np.arange(n), column].astype(np.int64)
    new_at = np.concatenate([[0], np.cumsum(length)[:-1]])
    aux = np.asarray(aux)[np.repeat(old_at - new_at, length) + np.arange(length.sum())]
    args = args.copy()
    moved = is_select | is_array
    args[moved, column[moved]] = new_at[moved]

    entry, pos, lo, hi, shared = [], [], [], [], [(nothing, nothing, nothing)]
    for code, (_, inner, grids) in _GRIDS.items():
        which = np.flatnonzero(opcodes == code)
        d = new_at[which]
        for operand, at, n_o, o, n_i, i in grids:
            # What the grid reads: slots, constants, or nothing (the second
            # operand of a unary map).
            role = (np.full(which.size, ops.Role.SLOT) if operand is None
                    else ops.ROLES[aux[d + inner], operand])
            reads_slots, reads_consts = role == ops.Role.SLOT, role == ops.Role.CONST
            s = aux[d + at].astype(np.int64)
            reach_o = (aux[d + n_o].astype(np.int64) - 1) * aux[d + o]
            reach_i = (aux[d + n_i].astype(np.int64) - 1) * aux[d + i]
            low = s + np.minimum(reach_o, 0) + np.minimum(reach_i, 0)
            high = s + np.maximum(reach_o, 0) + np.maximum(reach_i, 0)
            shared.append(((d + at)[reads_consts], low[reads_consts], high[reads_consts]))
            entry.append(which[reads_slots])
            pos.append((d + at)[reads_slots])
            lo.append(low[reads_slots])
            hi.append(high[reads_slots])
    _share_constants(aux, consts, *(np.concatenate(parts) for parts in zip(*shared)))
    gathers = np.flatnonzero(opcodes == _GATHER)
    sizes = count[gathers]
    entry.append(np.repeat(gathers, sizes))
    pos.append(np.repeat(new_at[gathers] - np.cumsum(sizes) + sizes, sizes)
               + np.arange(sizes.sum()))
    lo.append(aux[pos[-1]].astype(np.int64))
    hi.append(lo[-1])
    entry, pos, lo, hi = (np.concatenate(parts).astype(np.int64) for parts in (entry, pos, lo, hi))
    order = np.argsort(entry, kind="stable")
    entry, pos, lo, hi = entry[order], pos[order], lo[order], hi[order]
    array_number = np.cumsum(is_array) - 1
    g_ptr = np.searchsorted(array_number[entry], np.arange(np.count_nonzero(is_array) + 1))

    # A grid over several entries (or inputs and entries) can only move if
    # all of them move alike: they are pinned to their own slots.
    read = hi >= first
    top = np.searchsorted(start, hi[read], side="right") - 1
    bottom = np.where(lo[read] >= first, np.searchsorted(start, lo[read], side="right") - 1, -1)
    across = bottom != top
    change = np.zeros(n + 1, np.int64)
    np.add.at(change, np.maximum(bottom[across], 0), 1)
    np.add.at(change, top[across] + 1, -1)
    pinned = np.cumsum(change[:n]) > 0

    segment = np.flatnonzero(is_array | np.concatenate([[True], is_array[:-1]]))
    return (Layout(first, start, start[segment], segment, is_array[segment], g_ptr, pos, lo, hi,
                   d_len, pinned), args, aux)


def _share_constants(aux, consts, pos, lo, hi):
    """Move each constant grid (its start at ``aux[pos]``, reading pool
    ``lo..hi``) to the first run of the pool with the same bits: a constant
    array used twice is pooled twice, and identical entries should have
    identical descriptors. Costs the constants of the runs as long as
    another, once each."""
    bits = np.ascontiguousarray(consts).view(np.uint64)
    # Only runs as long as another can have the same bits.
    size = hi - lo
    sizes, repeats = np.unique(size, return_counts=True)
    alike = np.isin(size, sizes[repeats > 1])
    seen = {}
    for p, a, b in zip(pos[alike].tolist(), lo[alike].tolist(), hi[alike].tolist()):
        aux[p] += seen.setdefault(bits[a:b + 1].tobytes(), a) - a


def _pool(candidates, ids, kept=0):
    """The new constant pool: the first ``kept`` candidates where they are
    (array entries read the old pool by position, through grids), then each
    other bit pattern among ``candidates[ids]`` once, in candidate order;
    and each id's index into it. Costs the ids, the candidates after the
    kept (a flag each: no sort of the ids) and a copy of the kept."""
    ids = np.asarray(ids, dtype=np.int64)
    # Without kept candidates (a tape without array entries) every id is new.
    new = ids >= kept if kept else slice(None)
    fresh = ids[new] - kept if kept else ids
    used = np.zeros(candidates.size - kept, dtype=bool)
    used[fresh] = True
    used_at = np.flatnonzero(used)
    bits = np.ascontiguousarray(candidates[kept:][used_at]).view(np.uint64)
    unique, first_seen, inverse = np.unique(bits, return_index=True, return_inverse=True)
    order = np.argsort(first_seen, kind="stable")
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(kept, kept + order.size, dtype=np.int32)
    at = np.empty(used.size, dtype=np.int32)
    at[used_at] = rank[inverse.reshape(-1)]
    position = ids.astype(np.int32)
    position[new] = at[fresh]
    return np.concatenate([candidates[:kept], unique[order].view(np.float64)]), position
