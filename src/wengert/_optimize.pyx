# The passes of tape.optimize(), compiled.
#
# Constant propagation, trivial algebra, common-subexpression elimination and
# dead-code elimination all propagate facts along the tape's dependency
# graph, and value numbering needs a hash table filled in tape order. In
# NumPy that takes one vector step per dependency level, and a tape recorded
# from a scalar loop has about one level per operation (10^6 levels of
# ~30 us each would be 30 s); here each pass is one O(n) loop. optimize.py
# does the rest (guards, the constant pool, the report) with NumPy.
#
# Every fact is kept per *entry*, never per slot: an array entry writes many
# slots, and a Layout (built by optimize.py) says which entry writes a slot
# (a binary search over the runs of scalar entries and the array entries),
# and which slot grids each array entry reads. The passes cost the tape's
# entries and descriptors, not its elements or its inputs.
#
# simplify() walks the tape forwards. Each scalar entry's slot operands are
# first replaced by their representatives (rep), then the entry is
#   * folded, when every operand is constant: forward0 -- the replay's own
#     compiled code -- evaluates the original operation, so the folded value
#     is bit-identical to a replay's, and the operation becomes ``const``;
#   * aliased to an existing slot by a rule that is exact in IEEE arithmetic
#     (x*1, x/1, x-0, x+(-0), -(-x), a select whose branches agree or whose
#     condition is constant);
#   * otherwise rewritten canonically (a constant-slot operand becomes an
#     immediate: VV -> VC/CV; CV add/mul -> VC; VV add/mul operands sorted)
#     and looked up in a hash table keyed on (opcode, operands, constant
#     bits): a hit makes it a duplicate of the earlier operation.
# An array entry's grids are moved to their representatives where a grid
# lies inside one entry (a slot broadcast, or the results of one array entry
# merged into an earlier one); a grid over several entries stays, and those
# entries are *pinned*: they keep their own slots (not aliased, not merged),
# so the grid still reads consecutive slots. An array entry is then looked
# up by its opcode and descriptor: identical entries are merged.
# live_entries() then walks the rewritten tape backwards from the outputs
# and the guard operands (an entry is live if a live entry reads one of its
# slots, or lies inside a grid a live entry reads), and renumber() writes the
# entries that are left, moving each grid by the shift of its slots.
cimport cython
from libc.stdint cimport uint8_t, uint32_t, int64_t, uint64_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

from wengert._types cimport real_t, index_t, opcode_t, TapeView
from wengert._opcodes cimport *
from wengert._sweeps cimport forward0
from wengert._operands cimport operand_role
from wengert._dispatch cimport is_array_entry

cnp.import_array()

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define WG_PREFETCH(p) __builtin_prefetch(p)
    #else
    #define WG_PREFETCH(p) ((void)0)
    #endif
    """
    void WG_PREFETCH(const void* p) noexcept nogil

# Why an operation left the tape (or did not): the ``fate`` array.
cdef enum:
    KEPT = 0       # still its own slot (may yet be dead)
    MERGED = 1     # identical to an earlier operation
    ALIASED = 2    # equal to one of its operands by an exact identity

# ``flags`` bits of an operation.
cdef enum:
    EVALUATED = 1  # a non-const operation whose value was computed here
    INLINED = 2    # a slot operand became an immediate constant (VV -> VC/CV)

# How many operations ahead simplify() prefetches hash-table entries.
cdef enum:
    PREFETCH_AHEAD = 16

cdef enum:
    CODE_CONST = OP_CONST
    CODE_SELECT = OP_SELECT
    CODE_NEG = OP_NEG

# Bit patterns of the constants the identities test against.
cdef uint64_t NEG_ZERO_BITS = 0x8000000000000000ULL
cdef uint64_t POS_ZERO_BITS = 0


cdef inline uint64_t _bits(real_t x) noexcept nogil:
    cdef uint64_t b
    memcpy(&b, &x, sizeof(b))
    return b


cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    # The 64-bit finaliser of MurmurHash3: every input bit affects every output bit.
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t _hash(int code, uint64_t k1, uint64_t k2) noexcept nogil:
    return _mix(_mix(_mix(<uint64_t>code) ^ k1) ^ k2)


# ---- where slots come from --------------------------------------------------------

ctypedef struct Space:
    Py_ssize_t first           # slots below it are inputs and parameters
    Py_ssize_t n_seg           # segments: a run of scalar entries, or one array entry
    const int64_t* seg_slot    # first slot of each segment, ascending
    const int64_t* seg_entry   # its first entry
    const uint8_t* seg_array   # 1 for an array entry
    Py_ssize_t n_arrays        # 0: entry e writes slot first + e
    const int64_t* g_ptr       # (n_arrays + 1,) grids of the k-th array entry: g_ptr[k]..
    const int64_t* g_pos       # side-table position of each grid's start (a gather: its source)
    const int64_t* g_lo        # lowest and highest slot each grid reads
    const int64_t* g_hi
    const int64_t* d_len       # (n,) descriptor length of each array entry (0 for scalars)
    const uint8_t* pinned      # (n,) entries some grid over several entries reads


# Each pass and the lookups it makes are compiled twice: for tapes of scalar
# entries only, where entry e writes slot first + e (no lookups, no branches
# for array entries), and for any tape. The passes pick one by the layout.
cdef struct _scalar_only:
    char unused
cdef struct _any_entries:
    char unused
ctypedef fused entries_t:
    _scalar_only
    _any_entries

# For the lookups of the Layout's methods, which serve any tape.
cdef _any_entries any_entries
cdef _scalar_only scalar_only


cdef inline Py_ssize_t _entry_of(Space S, Py_ssize_t s, Py_ssize_t* offset) noexcept nogil:
    """The entry that writes slot s (s >= first); ``offset`` is s's place
    among an array entry's results, -1 for a scalar entry."""
    cdef Py_ssize_t low = 0, high = S.n_seg - 1, mid
    offset[0] = -1
    if S.n_arrays == 0:
        return s - S.first
    while low < high:
        mid = (low + high + 1) >> 1
        if S.seg_slot[mid] <= s:
            low = mid
        else:
            high = mid - 1
    if S.seg_array[low]:
        offset[0] = s - S.seg_slot[low]
        return S.seg_entry[low]
    return S.seg_entry[low] + (s - S.seg_slot[low])


cdef inline Py_ssize_t _rep_of(entries_t* entries, Space S, const index_t* rep,
                              Py_ssize_t s) noexcept nogil:
    """The representative of slot s: ``rep`` holds each entry's first
    result's representative (an array entry's results move together)."""
    cdef Py_ssize_t offset, e = s - S.first
    if entries_t is _scalar_only:
        # Without a branch on e: inputs and results alternate as operands,
        # and mispredicting which cost a third of simplify's time.
        offset = rep[e if e > 0 else 0]
        return offset if e >= 0 else s
    else:
        if s < S.first:
            return s
        e = _entry_of(S, s, &offset)
        return rep[e] + offset if offset >= 0 else rep[e]


cdef inline Py_ssize_t _scalar_entry(entries_t* entries, Space S, Py_ssize_t s) noexcept nogil:
    """The scalar entry that writes slot s, or -1 (an input, a parameter or
    an array entry's result)."""
    cdef Py_ssize_t offset, e
    if s < S.first:
        return -1
    if entries_t is _scalar_only:
        return s - S.first
    else:
        e = _entry_of(S, s, &offset)
        return e if offset < 0 else -1


cdef class Layout:
    """Which entry writes each slot of a tape, and the slot grids its array
    entries read (built by optimize.py, which knows the descriptor layouts).

    Parameters are NumPy arrays: ``start`` (n,) the first result slot of each
    entry; segments ``seg_slot``, ``seg_entry``, ``seg_array``; for the
    array entries in order, ``g_ptr`` into the grids ``g_pos``, ``g_lo``,
    ``g_hi``; ``d_len`` (n,) descriptor lengths (empty without array
    entries); ``pinned`` (n,) bools.
    """
    cdef Space S
    cdef readonly object arrays      # keeps the pointed-to arrays alive
    cdef readonly Py_ssize_t n_ops, n_grids, n_arrays

    def __init__(self, Py_ssize_t first, start, seg_slot, seg_entry, seg_array, g_ptr, g_pos,
                 g_lo, g_hi, d_len, pinned):
        held = [np.ascontiguousarray(a, dtype=np.int64) for a in
                (start, seg_slot, seg_entry, g_ptr, g_pos, g_lo, g_hi, d_len)]
        held += [np.ascontiguousarray(a, dtype=np.uint8) for a in (seg_array, pinned)]
        self.arrays = held
        start, seg_slot, seg_entry, g_ptr, g_pos, g_lo, g_hi, d_len, seg_array, pinned = held
        self.n_ops = start.size
        self.n_grids = g_pos.size
        self.n_arrays = g_ptr.size - 1
        if (seg_slot.size != seg_entry.size or seg_slot.size != seg_array.size
                or pinned.size != start.size or d_len.size not in (0, start.size)
                or (start.size and not seg_slot.size) or g_lo.size != g_pos.size
                or g_hi.size != g_pos.size or g_ptr.size < 1):
            raise ValueError("internal error: inconsistent layout arrays")
        self.S.first = first
        self.S.n_seg = seg_slot.size
        self.S.seg_slot = _int64_ptr(seg_slot)
        self.S.seg_entry = _int64_ptr(seg_entry)
        self.S.seg_array = _uint8_ptr(seg_array)
        self.S.n_arrays = g_ptr.size - 1
        self.S.g_ptr = _int64_ptr(g_ptr)
        self.S.g_pos = _int64_ptr(g_pos)
        self.S.g_lo = _int64_ptr(g_lo)
        self.S.g_hi = _int64_ptr(g_hi)
        self.S.d_len = _int64_ptr(d_len)
        self.S.pinned = _uint8_ptr(pinned)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def representatives(self, const index_t[::1] rep, const uint8_t[::1] constant,
                        const real_t[::1] values, slots):
        """For each of ``slots`` (negative ones are passed through): its
        representative, whether it is constant, and its value if so (0.0
        otherwise), as three arrays."""
        flat = np.ascontiguousarray(slots, dtype=np.int64).reshape(-1)
        out_arr = flat.copy()
        is_const_arr = np.zeros(flat.size, np.bool_)
        value_arr = np.zeros(flat.size, np.float64)
        cdef int64_t[::1] out = out_arr
        cdef uint8_t[::1] is_const = is_const_arr.view(np.uint8)
        cdef real_t[::1] value = value_arr
        cdef Py_ssize_t k, s, e
        if self.n_ops == 0:          # every slot is an input or a parameter
            return out_arr, is_const_arr, value_arr
        for k in range(out.shape[0]):
            if out[k] < 0:
                continue
            s = _rep_of(&any_entries, self.S, &rep[0], out[k])
            out[k] = s
            e = _scalar_entry(&any_entries, self.S, s)
            if e >= 0 and constant[e]:
                is_const[k] = 1
                value[k] = values[e]
        return out_arr, is_const_arr, value_arr

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def renumbered(self, const int64_t[::1] new_start, slots):
        """The new slot of each of ``slots`` (representatives of kept
        entries), given each entry's first new slot (-1 if dropped)."""
        flat = np.ascontiguousarray(slots, dtype=np.int64).reshape(-1)
        out_arr = flat.copy()
        cdef int64_t[::1] out = out_arr
        cdef Py_ssize_t k
        if self.n_ops == 0:
            return out_arr
        for k in range(out.shape[0]):
            out[k] = _new_slot_of(&any_entries, self.S, &new_start[0], out[k])
            if out[k] < 0:
                raise ValueError("internal error: a slot in use was removed")
        return out_arr


@cython.boundscheck(False)
@cython.wraparound(False)
def array_entry_count(const opcode_t[::1] code):
    """How many entries of ``code`` are array entries (a loop: NumPy's
    lookup-table version took ~1.4 ms of optimize's time at 8*10^5 entries)."""
    cdef Py_ssize_t i, count = 0
    with nogil:
        for i in range(code.shape[0]):
            count += is_array_entry(code[i])
    return count


cdef const int64_t* _int64_ptr(cnp.ndarray a):
    return <const int64_t*>cnp.PyArray_DATA(a) if a.size else NULL


cdef const uint8_t* _uint8_ptr(cnp.ndarray a):
    return <const uint8_t*>cnp.PyArray_DATA(a) if a.size else NULL


cdef inline Py_ssize_t _new_slot_of(entries_t* entries, Space S, const int64_t* new_start,
                                    Py_ssize_t s) noexcept nogil:
    """Slot s after renumbering (new_start: each entry's first new slot, -1
    if it is gone), -1 if its entry is gone."""
    cdef Py_ssize_t offset, e = s - S.first
    if entries_t is _scalar_only:
        offset = new_start[e if e > 0 else 0]      # without a branch, as in _rep_of
        return offset if e >= 0 else s
    else:
        if s < S.first:
            return s
        e = _entry_of(S, s, &offset)
        if new_start[e] < 0:
            return -1
        return new_start[e] + offset if offset >= 0 else new_start[e]


# ---- value numbering ------------------------------------------------------------------

ctypedef struct Pass:
    const opcode_t* code       # rewritten opcodes (n_ops)
    const index_t* args        # rewritten operands (n_ops, 2): slots are representatives
    const real_t* imm          # immediate constant of const / VC / CV operations
    const index_t* aux         # side table with branch slots and grids moved to representatives
    const int64_t* d_len       # descriptor length of each array entry (NULL: none)


cdef inline uint64_t _descriptor_hash(const Pass* p, Py_ssize_t i) noexcept nogil:
    cdef const index_t* D = p.aux + p.args[2 * i]
    cdef uint64_t h = <uint64_t>p.args[2 * i + 1]
    cdef Py_ssize_t t
    for t in range(p.d_len[i]):
        h = _mix(h ^ <uint64_t><uint32_t>D[t]) + <uint64_t>t
    return h


cdef inline void _key(entries_t* entries, const Pass* p, Py_ssize_t i, uint64_t* k1,
                      uint64_t* k2) noexcept nogil:
    """The operands that identify operation i beside its opcode: slots as
    themselves, an immediate constant by its bits, a select's branches as
    one pair; an array entry's descriptor by its hash, and its size."""
    cdef int code = p.code[i]
    if entries_t is _any_entries and is_array_entry(code):
        k1[0] = _descriptor_hash(p, i)
        k2[0] = <uint64_t>p.args[2 * i + 1]
        return
    cdef int role0 = operand_role(code, 0), role1 = operand_role(code, 1)
    cdef index_t a0 = p.args[2 * i], a1 = p.args[2 * i + 1]
    k1[0] = _bits(p.imm[i]) if role0 == ROLE_CONST else <uint64_t>a0
    if role1 == ROLE_SLOT:
        k2[0] = <uint64_t>a1
    elif role1 == ROLE_CONST:
        k2[0] = _bits(p.imm[i])
    elif role1 == ROLE_AUX:
        k2[0] = (<uint64_t><uint32_t>p.aux[a1] << 32) | <uint64_t><uint32_t>p.aux[a1 + 1]
    else:
        k2[0] = 0


cdef inline bint _same_descriptor(const Pass* p, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """Whether array entries i and j (same opcode, same size) read the same."""
    cdef const index_t* a = p.aux + p.args[2 * i]
    cdef const index_t* b = p.aux + p.args[2 * j]
    cdef Py_ssize_t t
    if p.d_len[i] != p.d_len[j]:
        return False
    for t in range(p.d_len[i]):
        if a[t] != b[t]:
            return False
    return True


cdef Py_ssize_t _find_or_insert(entries_t* entries, const Pass* p, uint64_t* table,
                                uint64_t mask, Py_ssize_t i) noexcept nogil:
    """Index of an earlier operation identical to i, or -1 after inserting i.

    Open addressing with linear probing, at most two thirds full. An entry
    holds ``fingerprint << 32 | (index + 1)``, 0 where empty: the 32-bit
    fingerprint (high hash bits) rejects almost every non-matching entry
    without reading that operation, which would be a cache miss (about
    half of optimize's time at 10^7 operations without it).
    """
    cdef uint64_t k1, k2, j1, j2, entry
    cdef int code = p.code[i]
    _key(entries, p, i, &k1, &k2)
    cdef uint64_t h = _hash(code, k1, k2)
    cdef uint64_t finger = h >> 32
    cdef uint64_t at = h & mask
    cdef Py_ssize_t j
    while True:
        entry = table[at]
        if entry == 0:
            table[at] = (finger << 32) | <uint64_t>(i + 1)
            return -1
        if (entry >> 32) == finger:
            j = <Py_ssize_t>(entry & 0xffffffffULL) - 1
            if p.code[j] == code:
                _key(entries, p, j, &j1, &j2)
                if j1 == k1 and j2 == k2 and (entries_t is _scalar_only
                                              or not is_array_entry(code)
                                              or _same_descriptor(p, i, j)):
                    return j
        at = (at + 1) & mask


cdef inline uint64_t _guess_hash(entries_t* entries, const opcode_t* opcodes, const index_t* args,
                                const real_t* consts, const index_t* aux,
                                Space S, const index_t* rep, Py_ssize_t i) noexcept nogil:
    """The hash operation i will have if no rule rewrites it (the common
    case), computed ahead of time to prefetch its hash-table entry: the key
    of _key over representatives, with the commutative rewrites of
    simplify (a + b ordered, c + x as x + c). Operands not yet numbered
    read as themselves (rep starts as the identity)."""
    cdef int code = opcodes[i], base = code & BASE_MASK
    if entries_t is _any_entries and is_array_entry(code):
        return 0
    cdef int role0 = operand_role(code, 0), role1 = operand_role(code, 1)
    cdef index_t a0 = args[2 * i], a1 = args[2 * i + 1]
    cdef uint64_t k1, k2, swap
    k1 = _bits(consts[a0]) if role0 == ROLE_CONST else <uint64_t>_rep_of(entries, S, rep, a0)
    if role1 == ROLE_SLOT:
        k2 = <uint64_t>_rep_of(entries, S, rep, a1)
    elif role1 == ROLE_CONST:
        k2 = _bits(consts[a1])
    elif role1 == ROLE_AUX:
        k2 = ((<uint64_t><uint32_t>_rep_of(entries, S, rep, aux[a1]) << 32)
              | <uint64_t><uint32_t>_rep_of(entries, S, rep, aux[a1 + 1]))
    else:
        k2 = 0
    if base == OP_ADD or base == OP_MUL:
        if role0 == ROLE_SLOT and role1 == ROLE_SLOT and k1 > k2:
            swap = k1
            k1 = k2
            k2 = swap
        elif role0 == ROLE_CONST and role1 == ROLE_SLOT:
            return _hash((KIND_VC << KIND_SHIFT) | base, k2, k1)
    return _hash(code, k1, k2)


cdef real_t _fold(int code, index_t a0, index_t a1, real_t v0, real_t v1,
                  const real_t* consts) noexcept nogil:
    """The value of scalar operation ``code`` whose slot operands (the
    first, the second or both) have values v0 and v1, computed by forward0
    -- the replay's own compiled code -- on a one-operation tape."""
    cdef opcode_t op = <opcode_t>code
    cdef index_t local[2]
    cdef real_t slots[3]
    cdef TapeView view
    local[0] = 0 if operand_role(code, 0) == ROLE_SLOT else a0
    local[1] = 1 if operand_role(code, 1) == ROLE_SLOT else a1
    slots[0] = v0
    slots[1] = v1
    slots[2] = 0.0
    view.opcodes = &op
    view.args = local
    view.consts = consts
    view.aux = NULL
    view.n_ops = 1
    view.first = 2
    view.n_slots = 3
    view.arrays = NULL
    view.n_arrays = 0
    view.n_guards = 0
    view.guard_codes = NULL
    view.guard_args = NULL
    view.guard_expected = NULL
    forward0(&view, slots, 1, 0, 1, 2)
    return slots[2]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _simplify(entries_t* entries, Space S, const Pass* p, const opcode_t[::1] opcodes,
                    const index_t[:, ::1] args, const index_t[::1] aux, const real_t* pool,
                    const index_t* side, opcode_t[::1] new_code, index_t[:, ::1] new_args,
                    real_t[::1] imm, index_t[::1] aux2, index_t[::1] rep, uint8_t[::1] fate,
                    uint8_t[::1] flags, uint8_t[::1] constant, real_t[::1] val,
                    int64_t[::1] g_delta, uint64_t[::1] table, uint64_t mask) noexcept nogil:
    """simplify()'s loop, for tapes of scalar entries only or for any tape."""
    cdef Py_ssize_t n = opcodes.shape[0]
    cdef Py_ssize_t i, j, g, target, ai = 0, e
    cdef int code, base, kind, role0, role1
    cdef index_t a0, a1, x, y, b0, b1
    cdef real_t c = 0.0
    cdef index_t src = -1
    cdef uint64_t cb
    cdef bint fold, own = False
    for i in range(n):
        # The table is far larger than the caches: fetching the entry
        # of a later operation now overlaps its miss with this work
        # (simplify twice as fast at 10^7 operations: 0.43 s, not 0.91 s).
        if i + PREFETCH_AHEAD < n:
            WG_PREFETCH(&table[_guess_hash(entries, &opcodes[0], &args[0, 0], pool, side, S,
                                           &rep[0], i + PREFETCH_AHEAD) & mask])
        code = opcodes[i]
        # A pinned entry lies inside a grid that reads several entries:
        # it keeps its own slot, so no alias and no merge.
        if entries_t is _any_entries:
            own = S.pinned[i]
        if entries_t is _any_entries and is_array_entry(code):
            # Each grid moves with its slots' representatives: by 0 for a
            # grid over several (pinned) entries, to the representative
            # of the one slot or array entry it reads otherwise.
            for g in range(S.g_ptr[ai], S.g_ptr[ai + 1]):
                g_delta[g] = _rep_of(entries, S, &rep[0], S.g_lo[g]) - S.g_lo[g]
                aux2[S.g_pos[g]] = <index_t>(aux[S.g_pos[g]] + g_delta[g])
            ai += 1
            new_code[i] = code
            new_args[i, 0] = args[i, 0]
            new_args[i, 1] = args[i, 1]
            j = _find_or_insert(entries, p, &table[0], mask, i)
            if j >= 0 and not own:
                rep[i] = rep[j]
                fate[i] = MERGED
            continue
        base = code & BASE_MASK
        kind = code >> KIND_SHIFT      # rewritten below when an operand is inlined
        role0 = operand_role(code, 0)
        role1 = operand_role(code, 1)
        a0 = args[i, 0]
        a1 = args[i, 1]
        target = -1
        fold = False
        x = 0
        y = 0
        # -- 1. operands in representatives; fold, alias or rewrite ---------
        if role1 == ROLE_NONE and role0 == ROLE_CONST:      # const
            fold = True
        elif role1 == ROLE_AUX:                             # select
            x = <index_t>_rep_of(entries, S, &rep[0], a0)
            b0 = <index_t>_rep_of(entries, S, &rep[0], aux[a1])
            b1 = <index_t>_rep_of(entries, S, &rep[0], aux[a1 + 1])
            aux2[a1] = b0
            aux2[a1 + 1] = b1
            if not own and _constant(entries, S, &constant[0], x):
                # The same test as the sweep's select.
                target = b0 if _value(entries, S, &val[0], x) != 0.0 else b1
            elif not own and b0 == b1:
                target = b0
            else:
                new_code[i] = code
                new_args[i, 0] = x
                new_args[i, 1] = a1
        elif role1 == ROLE_NONE:                            # unary
            x = <index_t>_rep_of(entries, S, &rep[0], a0)
            e = _scalar_entry(entries, S, x) if base == OP_NEG else -1
            if _constant(entries, S, &constant[0], x):
                fold = True
            elif (not own and e >= 0 and fate[e] == KEPT
                  and new_code[e] == CODE_NEG):
                # -(-x) == x bit for bit (negation flips the sign bit only),
                # and the two -1 partials multiply to exactly 1.
                target = new_args[e, 0]
            else:
                new_code[i] = code
                new_args[i, 0] = x
                new_args[i, 1] = 0
        else:                                               # binary
            if role0 == ROLE_SLOT and role1 == ROLE_SLOT:
                x = <index_t>_rep_of(entries, S, &rep[0], a0)
                y = <index_t>_rep_of(entries, S, &rep[0], a1)
                if _constant(entries, S, &constant[0], x) and _constant(entries, S, &constant[0], y):
                    fold = True
                elif _constant(entries, S, &constant[0], x):
                    kind = KIND_CV
                    c = _value(entries, S, &val[0], x)
                    src = -1
                    flags[i] |= INLINED
                elif _constant(entries, S, &constant[0], y):
                    kind = KIND_VC
                    c = _value(entries, S, &val[0], y)
                    src = -1
                    flags[i] |= INLINED
                elif (base == OP_ADD or base == OP_MUL) and x > y:
                    # a+b and a*b are the same bits as b+a and b*a.
                    x, y = y, x
            elif role1 == ROLE_CONST:
                x = <index_t>_rep_of(entries, S, &rep[0], a0)
                y = 0
                c = pool[a1]
                src = a1
                fold = _constant(entries, S, &constant[0], x)
            else:
                x = 0
                y = <index_t>_rep_of(entries, S, &rep[0], a1)
                c = pool[a0]
                src = a0
                fold = _constant(entries, S, &constant[0], y)
            if not fold:
                if kind == KIND_CV and (base == OP_ADD or base == OP_MUL):
                    kind = KIND_VC
                    x = y
                    y = 0
                if kind == KIND_VC and not own:
                    cb = _bits(c)
                    # Exact identities only. x + (-0.0) == x for every x
                    # (also -0.0), but x + 0.0 is +0.0 at x = -0.0; x - 0.0
                    # == x, x * 1 == x and x / 1 == x, each with partial
                    # exactly 1. Not x * 0 -> 0 (inf * 0 and NaN * 0 are
                    # NaN), not x - x -> 0 (inf - inf is NaN), not
                    # x * -1 -> -x (the sign of a NaN result differs).
                    if ((base == OP_ADD and cb == NEG_ZERO_BITS)
                            or (base == OP_SUB and cb == POS_ZERO_BITS)
                            or ((base == OP_MUL or base == OP_DIV) and c == 1.0)):
                        target = x
                if target < 0:
                    new_code[i] = <opcode_t>((kind << KIND_SHIFT) | base)
                    # An immediate's column holds its index in the
                    # original pool, or -1 for a value computed here.
                    new_args[i, 0] = x if kind != KIND_CV else src
                    new_args[i, 1] = y if kind != KIND_VC else src
                    if kind != KIND_VV:
                        imm[i] = c
        if fold:
            # Every operand is constant: evaluate the original operation
            # with the replay's own compiled code.
            constant[i] = 1
            val[i] = _fold(code, a0, a1,
                           _value(entries, S, &val[0], x) if operand_role(code, 0) == ROLE_SLOT else 0.0,
                           _value(entries, S, &val[0], y) if operand_role(code, 1) == ROLE_SLOT else 0.0,
                           pool)
            new_code[i] = CODE_CONST
            new_args[i, 0] = a0 if code == CODE_CONST else -1
            new_args[i, 1] = 0
            imm[i] = val[i]
            if new_args[i, 0] < 0:
                flags[i] |= EVALUATED
        # -- 2. alias or merge ----------------------------------------------
        if target >= 0:
            rep[i] = <index_t>target
            fate[i] = ALIASED
            if _constant(entries, S, &constant[0], target):
                constant[i] = 1
                val[i] = _value(entries, S, &val[0], target)
            continue
        j = _find_or_insert(entries, p, &table[0], mask, i)
        if j >= 0 and not own:
            rep[i] = rep[j]
            fate[i] = MERGED


@cython.boundscheck(False)
@cython.wraparound(False)
def simplify(const opcode_t[::1] opcodes, const index_t[:, ::1] args,
             const real_t[::1] consts, const index_t[::1] aux, Layout layout):
    """One forward pass: fold, alias, canonicalise and merge.

    Returns a dict of arrays, one element per entry: ``code``, ``args``,
    ``imm`` (the rewritten entries, meaningful where ``fate`` is KEPT or
    MERGED: slot operands are representatives in the original numbering;
    an immediate's value is in ``imm`` and its ``args`` column holds its
    index in the original pool, -1 if computed here), ``aux`` (the side
    table with select branches and array grids rewritten), ``rep`` (the
    representative of each entry's first result slot), ``fate`` (KEPT,
    MERGED or ALIASED), ``flags`` (EVALUATED, INLINED), ``constant`` and
    ``values`` (the value of each constant scalar entry; the rest is
    uninitialised); and ``g_delta``, how far each array grid moved.
    """
    cdef Space S = layout.S
    cdef Py_ssize_t n = opcodes.shape[0], n_aux = aux.shape[0]

    if n != layout.n_ops or args.shape[0] != n:
        raise ValueError("internal error: the layout is not this tape's")
    new_code_arr = np.zeros(n, np.uint8)
    new_args_arr = np.zeros((n, 2), np.int32)
    imm_arr = np.zeros(n, np.float64)
    aux_arr = np.array(aux, dtype=np.int32, copy=True)
    # Every entry its own representative to begin with.
    if S.n_arrays == 0:
        rep_arr = np.arange(S.first, S.first + n, dtype=np.int32)
    else:
        rep_arr = np.array(layout.arrays[0], dtype=np.int32)
    fate_arr = np.zeros(n, np.uint8)
    flags_arr = np.zeros(n, np.uint8)
    constant_arr = np.zeros(n, np.uint8)
    # Only constant entries are ever written, so most pages stay untouched.
    values_arr = np.empty(n, np.float64)
    g_delta_arr = np.zeros(layout.n_grids, np.int64)
    cdef uint64_t capacity = 16
    # At most two thirds full, so linear probing stays short.
    while 2 * capacity < 3 * <uint64_t>n + 2:
        capacity *= 2
    table_arr = np.zeros(capacity, np.uint64)

    cdef opcode_t[::1] new_code = new_code_arr
    cdef index_t[:, ::1] new_args = new_args_arr
    cdef real_t[::1] imm = imm_arr
    cdef index_t[::1] aux2 = aux_arr
    cdef index_t[::1] rep = rep_arr
    cdef uint8_t[::1] fate = fate_arr
    cdef uint8_t[::1] flags = flags_arr
    cdef uint8_t[::1] constant = constant_arr
    cdef real_t[::1] val = values_arr
    cdef int64_t[::1] g_delta = g_delta_arr
    cdef uint64_t[::1] table = table_arr
    cdef uint64_t mask = capacity - 1
    cdef const real_t* pool = &consts[0] if consts.shape[0] else NULL
    cdef const index_t* side = &aux[0] if n_aux else NULL

    cdef Pass p
    p.code = &new_code[0] if n else NULL
    p.args = &new_args[0, 0] if n else NULL
    p.imm = &imm[0] if n else NULL
    p.aux = &aux2[0] if n_aux else NULL
    p.d_len = S.d_len

    with nogil:
        if S.n_arrays == 0:
            _simplify(&scalar_only, S, &p, opcodes, args, aux, pool, side, new_code, new_args,
                      imm, aux2, rep, fate, flags, constant, val, g_delta, table, mask)
        else:
            _simplify(&any_entries, S, &p, opcodes, args, aux, pool, side, new_code, new_args,
                      imm, aux2, rep, fate, flags, constant, val, g_delta, table, mask)
    return dict(code=new_code_arr, args=new_args_arr, imm=imm_arr, aux=aux_arr,
                rep=rep_arr, fate=fate_arr, flags=flags_arr,
                constant=constant_arr.view(bool), values=values_arr, g_delta=g_delta_arr)


cdef inline bint _constant(entries_t* entries, Space S, const uint8_t* constant,
                          Py_ssize_t s) noexcept nogil:
    """Whether slot s (a representative) holds a constant."""
    cdef Py_ssize_t e
    if entries_t is _scalar_only:
        e = s - S.first       # without a branch, as in _rep_of
        return (e >= 0) & constant[e if e > 0 else 0]
    else:
        e = _scalar_entry(entries, S, s)
        return e >= 0 and constant[e]


cdef inline real_t _value(entries_t* entries, Space S, const real_t* val, Py_ssize_t s) noexcept nogil:
    """The value of constant slot s."""
    return val[_scalar_entry(entries, S, s)]


cdef inline void _read(entries_t* entries, Space S, uint8_t* live, Py_ssize_t s) noexcept nogil:
    """Record that slot s is read: the entry that writes it is live."""
    cdef Py_ssize_t offset
    cdef Py_ssize_t e = s - S.first
    if entries_t is _scalar_only:
        # Without a branch, as in _rep_of: an input or a parameter marks
        # the spare byte before entry 0 (live[-1]).
        live[e if e >= 0 else -1] = 1
    elif s >= S.first:
        live[_entry_of(S, s, &offset)] = 1


cdef inline void _read_span(Space S, int64_t* low_at, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """Record that slots lo..hi are read: every entry that writes one of
    them is live (low_at[e] is the lowest entry of the spans ending at e)."""
    cdef Py_ssize_t offset
    if hi < S.first:
        return
    cdef Py_ssize_t top = _entry_of(S, hi, &offset)
    cdef Py_ssize_t bottom = 0 if lo < S.first else _entry_of(S, lo, &offset)
    if bottom < low_at[top]:
        low_at[top] = bottom


@cython.boundscheck(False)
@cython.wraparound(False)
def live_entries(const opcode_t[::1] code, const index_t[:, ::1] args,
                 const index_t[::1] aux, const uint8_t[::1] fate,
                 const int64_t[::1] g_delta, Layout layout, const int64_t[::1] roots):
    """Entries that reach a root slot (an output or guard operand), as bools.

    ``code``, ``args`` and ``aux`` are the rewritten entries from
    :func:`simplify`, whose slot operands are representatives; entries that
    were merged or aliased are skipped (nothing refers to them).
    """
    cdef Space S = layout.S      # a local copy: its fields stay in registers
    cdef Py_ssize_t n = code.shape[0]
    # Without array entries, a spare byte before entry 0 (see _read).
    cdef Py_ssize_t before = 1 if S.n_arrays == 0 else 0
    live_arr = np.zeros(before + n, np.uint8)
    # Spans over several slots come from array entries only.
    low_at_arr = np.full(n if S.n_arrays else 1, n, np.int64)
    cdef uint8_t[::1] live = live_arr
    cdef int64_t[::1] low_at = low_at_arr
    with nogil:
        if S.n_arrays == 0:
            _live(&scalar_only, S, code, args, aux, fate, g_delta, roots, &live[0] + before,
                  &low_at[0])
        else:
            _live(&any_entries, S, code, args, aux, fate, g_delta, roots, &live[0], &low_at[0])
    return live_arr[before:].view(bool)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _live(entries_t* entries, Space S, const opcode_t[::1] code,
                const index_t[:, ::1] args, const index_t[::1] aux, const uint8_t[::1] fate,
                const int64_t[::1] g_delta, const int64_t[::1] roots, uint8_t* live,
                int64_t* low_at) noexcept nogil:
    """live_entries()'s loop, for tapes of scalar entries only or for any tape."""
    cdef Py_ssize_t n = code.shape[0], i, g, lowest = n, ai = S.n_arrays
    cdef Py_ssize_t lo, hi
    cdef int c, k, role
    cdef index_t a
    for i in range(roots.shape[0]):
        _read(entries, S, live, roots[i])
    for i in range(n - 1, -1, -1):
        c = code[i]
        if entries_t is _any_entries:
            # The spans recorded so far end at i or later: i is live if one
            # of them reaches down to it.
            if low_at[i] < lowest:
                lowest = low_at[i]
            # (Every array entry keeps its opcode in ``code``, merged too.)
            if is_array_entry(c):
                ai -= 1
        if fate[i] != KEPT or not (live[i] or (entries_t is _any_entries and lowest <= i)):
            live[i] = 0
            continue
        live[i] = 1
        if entries_t is _any_entries and is_array_entry(c):
            for g in range(S.g_ptr[ai], S.g_ptr[ai + 1]):
                lo = S.g_lo[g] + g_delta[g]
                hi = S.g_hi[g] + g_delta[g]
                if lo == hi:
                    _read(entries, S, live, lo)
                else:
                    _read_span(S, low_at, lo, hi)
            continue
        for k in range(2):
            role = operand_role(c, k)
            a = args[i, k]
            if role == ROLE_SLOT:
                _read(entries, S, live, a)
            elif role == ROLE_AUX:
                _read(entries, S, live, aux[a])
                _read(entries, S, live, aux[a + 1])


@cython.boundscheck(False)
@cython.wraparound(False)
def renumber(const opcode_t[::1] code, const index_t[:, ::1] args, const real_t[::1] imm,
             const index_t[::1] aux, const uint8_t[::1] keep, const int64_t[::1] g_delta,
             Layout layout, Py_ssize_t n_consts):
    """The kept entries, renumbered: each writes its slots right after the
    kept entries before it; inputs and parameters keep theirs.

    Returns ``(code, args, aux, new_start, immediates, new_values)``:
    ``new_start`` is each entry's first new slot (meaningful where kept;
    see ``Layout.renumbered``); an immediate operand holds a *candidate*
    index -- its old pool index, or ``n_consts + m`` for ``new_values[m]``,
    a value computed while optimising -- and ``immediates`` lists where
    those sit in the flattened ``args``, for the caller to replace by
    indices into the new pool. The side table holds each select's branches
    and each array entry's descriptor, its grids moved with their slots.
    """
    cdef Space S = layout.S      # a local copy: its fields stay in registers
    cdef Py_ssize_t n = code.shape[0]
    cdef Py_ssize_t sizes[3]     # kept entries, immediates, side-table length
    new_start_arr = np.full(n, -1, np.int64)
    cdef int64_t[::1] new_start = new_start_arr
    cdef int64_t* starts = &new_start[0] if n else NULL
    if S.n_arrays == 0:
        _first_slots(&scalar_only, S, code, args, keep, starts, sizes)
    else:
        _first_slots(&any_entries, S, code, args, keep, starts, sizes)
    out_code_arr = np.empty(sizes[0], np.uint8)
    out_args_arr = np.zeros((sizes[0], 2), np.int32)
    out_aux_arr = np.empty(sizes[2], np.int32)
    where_arr = np.empty(sizes[1], np.int64)
    new_values_arr = np.empty(sizes[1], np.float64)
    cdef opcode_t[::1] out_code = out_code_arr
    cdef index_t[:, ::1] out_args = out_args_arr
    cdef index_t[::1] out_aux = out_aux_arr
    cdef int64_t[::1] where = where_arr
    cdef real_t[::1] new_values = new_values_arr
    cdef Py_ssize_t n_new
    with nogil:
        if S.n_arrays == 0:
            n_new = _renumber(&scalar_only, S, code, args, imm, aux, keep, g_delta, starts,
                              n_consts, out_code, out_args, out_aux, where, new_values)
        else:
            n_new = _renumber(&any_entries, S, code, args, imm, aux, keep, g_delta, starts,
                              n_consts, out_code, out_args, out_aux, where, new_values)
    return (out_code_arr, out_args_arr, out_aux_arr, new_start_arr, where_arr,
            new_values_arr[:n_new].copy())


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _first_slots(entries_t* entries, Space S, const opcode_t[::1] code,
                       const index_t[:, ::1] args, const uint8_t[::1] keep, int64_t* new_start,
                       Py_ssize_t* sizes) noexcept nogil:
    """Each kept entry's first new slot into ``new_start``; the number of
    kept entries, of immediate operands and the side table's new length
    into ``sizes``."""
    cdef Py_ssize_t n = code.shape[0], i, n_kept = 0, n_imm = 0, n_out_aux = 0
    cdef int64_t next_slot = S.first
    cdef int c, col, role
    for i in range(n):
        if entries_t is _any_entries and is_array_entry(code[i]):
            if keep[i]:
                n_out_aux += S.d_len[i]
            continue
        if keep[i]:
            c = code[i]
            for col in range(2):
                role = operand_role(c, col)
                if role == ROLE_AUX:
                    n_out_aux += 2
                elif role == ROLE_CONST:
                    n_imm += 1
    for i in range(n):
        if keep[i]:
            n_kept += 1
            new_start[i] = next_slot
            if entries_t is _any_entries and is_array_entry(code[i]):
                next_slot += args[i, 1]
            else:
                next_slot += 1
    sizes[0] = n_kept
    sizes[1] = n_imm
    sizes[2] = n_out_aux


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _renumber(entries_t* entries, Space S, const opcode_t[::1] code,
                          const index_t[:, ::1] args, const real_t[::1] imm,
                          const index_t[::1] aux, const uint8_t[::1] keep,
                          const int64_t[::1] g_delta, const int64_t* new_start,
                          Py_ssize_t n_consts, opcode_t[::1] out_code, index_t[:, ::1] out_args,
                          index_t[::1] out_aux, int64_t[::1] where,
                          real_t[::1] new_values) noexcept nogil:
    """renumber()'s loop, for tapes of scalar entries only or for any tape;
    returns the number of new values."""
    cdef Py_ssize_t n = code.shape[0], i, k = 0, g, t, n_imm = 0, n_new = 0
    cdef Py_ssize_t at = 0, ai = 0, d, lo
    cdef int c, col, role
    cdef index_t a
    for i in range(n):
        if entries_t is _any_entries and is_array_entry(code[i]):
            ai += 1
            if not keep[i]:
                continue
            # The descriptor, each grid moved by the shift of its slots
            # (the same for every slot of a grid: what it spans is kept).
            d = args[i, 0]
            for t in range(S.d_len[i]):
                out_aux[at + t] = aux[d + t]
            for g in range(S.g_ptr[ai - 1], S.g_ptr[ai]):
                lo = S.g_lo[g] + g_delta[g]
                out_aux[at + S.g_pos[g] - d] += <index_t>(
                    _new_slot_of(entries, S, new_start, lo) - lo)
            out_code[k] = code[i]
            out_args[k, 0] = <index_t>at
            out_args[k, 1] = args[i, 1]
            at += S.d_len[i]
            k += 1
            continue
        if not keep[i]:
            continue
        c = code[i]
        out_code[k] = <opcode_t>c
        for col in range(2):
            role = operand_role(c, col)
            a = args[i, col]
            if role == ROLE_SLOT:
                out_args[k, col] = <index_t>_new_slot_of(entries, S, new_start, a)
            elif role == ROLE_AUX:
                out_args[k, col] = <index_t>at
                out_aux[at] = <index_t>_new_slot_of(entries, S, new_start, aux[a])
                out_aux[at + 1] = <index_t>_new_slot_of(entries, S, new_start, aux[a + 1])
                at += 2
            elif role == ROLE_CONST:
                # a is the old pool index, or -1 for a value computed here.
                if a >= 0:
                    out_args[k, col] = a
                else:
                    new_values[n_new] = imm[i]
                    out_args[k, col] = <index_t>(n_consts + n_new)
                    n_new += 1
                where[n_imm] = 2 * k + col
                n_imm += 1
        k += 1
    return n_new
