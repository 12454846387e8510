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
# simplify() walks the tape forwards. Each operation's slot operands are
# first replaced by their representatives (rep), then the operation is
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
# live_slots() then walks the rewritten tape backwards from the outputs and
# the guard operands, and renumber() writes the operations that are left.
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


ctypedef struct Pass:
    const opcode_t* code       # rewritten opcodes (n_ops)
    const index_t* args        # rewritten operands (n_ops, 2): slots are representatives
    const real_t* imm          # immediate constant of const / VC / CV operations
    const index_t* aux         # side table with branch slots replaced by representatives


cdef inline void _key(const Pass* p, Py_ssize_t i, uint64_t* k1, uint64_t* k2) noexcept nogil:
    """The operands that identify operation i beside its opcode: slots as
    themselves, an immediate constant by its bits, a select's branches as
    one pair."""
    cdef int code = p.code[i]
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


cdef Py_ssize_t _find_or_insert(const Pass* p, uint64_t* table, uint64_t mask,
                                Py_ssize_t i) noexcept nogil:
    """Index of an earlier operation identical to i, or -1 after inserting i.

    Open addressing with linear probing, at most two thirds full. An entry
    holds ``fingerprint << 32 | (index + 1)``, 0 where empty: the 32-bit
    fingerprint (high hash bits) rejects almost every non-matching entry
    without reading that operation, which would be a cache miss (about
    half of optimize's time at 10^7 operations without it).
    """
    cdef uint64_t k1, k2, j1, j2, entry
    cdef int code = p.code[i]
    _key(p, i, &k1, &k2)
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
                _key(p, j, &j1, &j2)
                if j1 == k1 and j2 == k2:
                    return j
        at = (at + 1) & mask


cdef inline uint64_t _guess_hash(const opcode_t* opcodes, const index_t* args,
                                const real_t* consts, const index_t* aux,
                                const index_t* rep, Py_ssize_t i) noexcept nogil:
    """The hash operation i will have if no rule rewrites it (the common
    case), computed ahead of time to prefetch its hash-table entry: the key
    of _key over representatives, with the commutative rewrites of
    simplify (a + b ordered, c + x as x + c)."""
    cdef int code = opcodes[i], base = code & BASE_MASK
    cdef int role0 = operand_role(code, 0), role1 = operand_role(code, 1)
    cdef index_t a0 = args[2 * i], a1 = args[2 * i + 1]
    cdef uint64_t k1, k2, swap
    k1 = _bits(consts[a0]) if role0 == ROLE_CONST else <uint64_t>rep[a0]
    if role1 == ROLE_SLOT:
        k2 = <uint64_t>rep[a1]
    elif role1 == ROLE_CONST:
        k2 = _bits(consts[a1])
    elif role1 == ROLE_AUX:
        k2 = (<uint64_t><uint32_t>rep[aux[a1]] << 32) | <uint64_t><uint32_t>rep[aux[a1 + 1]]
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


@cython.boundscheck(False)
@cython.wraparound(False)
def simplify(const opcode_t[::1] opcodes, const index_t[:, ::1] args,
             const real_t[::1] consts, const index_t[::1] aux, Py_ssize_t first):
    """One forward pass: fold, alias, canonicalise and merge.

    Returns a dict of arrays: ``code``, ``args``, ``imm``, ``aux`` (the
    rewritten operations, meaningful where ``fate`` is KEPT or MERGED: slot
    operands are representatives in the original numbering; an immediate's
    value is in ``imm`` and its ``args`` column holds its index in the
    original pool, -1 if computed here), ``rep`` (each slot's
    representative), ``fate`` (KEPT, MERGED or ALIASED per operation),
    ``flags`` (EVALUATED, INLINED), ``constant`` (per slot) and ``values``
    (the value of every constant slot; the rest is uninitialised).
    """
    cdef Py_ssize_t n = opcodes.shape[0], n_slots = first + n
    cdef Py_ssize_t i, s, j, target, n_aux = aux.shape[0]
    cdef int code, base, kind, role0, role1
    cdef index_t a0, a1, x, y, b0, b1
    cdef real_t c = 0.0
    cdef index_t src = -1
    cdef uint64_t cb
    cdef bint fold

    for i in range(n):
        if is_array_entry(opcodes[i]):
            raise ValueError("simplify takes scalar entries only: expand array entries first")
    new_code_arr = np.zeros(n, np.uint8)
    new_args_arr = np.zeros((n, 2), np.int32)
    imm_arr = np.zeros(n, np.float64)
    aux_arr = np.array(aux, dtype=np.int32, copy=True)
    rep_arr = np.arange(n_slots, dtype=np.int32)
    fate_arr = np.zeros(n, np.uint8)
    flags_arr = np.zeros(n, np.uint8)
    constant_arr = np.zeros(n_slots, np.uint8)
    # Only constant slots are ever written, so most pages stay untouched.
    values_arr = np.empty(n_slots, np.float64)
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
    cdef uint64_t[::1] table = table_arr
    cdef uint64_t mask = capacity - 1

    # The original tape, for forward0.
    cdef TapeView view
    view.opcodes = &opcodes[0] if n else NULL
    view.args = &args[0, 0] if n else NULL
    view.consts = &consts[0] if consts.shape[0] else NULL
    view.aux = &aux[0] if n_aux else NULL
    view.n_ops = n
    view.first = first
    view.n_slots = n_slots
    view.arrays = NULL      # scalar tapes only (optimize expands array entries)
    view.n_arrays = 0
    view.n_guards = 0
    view.guard_codes = NULL
    view.guard_args = NULL
    view.guard_expected = NULL

    cdef Pass p
    p.code = &new_code[0] if n else NULL
    p.args = &new_args[0, 0] if n else NULL
    p.imm = &imm[0] if n else NULL
    p.aux = &aux2[0] if n_aux else NULL

    with nogil:
        for i in range(n):
            # The table is far larger than the caches: fetching the entry
            # of a later operation now overlaps its miss with this work
            # (simplify twice as fast at 10^7 operations: 0.43 s, not 0.91 s).
            if i + PREFETCH_AHEAD < n:
                WG_PREFETCH(&table[_guess_hash(&opcodes[0], &args[0, 0], view.consts, view.aux,
                                               &rep[0], i + PREFETCH_AHEAD) & mask])
            s = first + i
            code = opcodes[i]
            base = code & BASE_MASK
            kind = code >> KIND_SHIFT      # rewritten below when an operand is inlined
            role0 = operand_role(code, 0)
            role1 = operand_role(code, 1)
            a0 = args[i, 0]
            a1 = args[i, 1]
            target = -1
            fold = False
            # -- 1. operands in representatives; fold, alias or rewrite ---------
            if role1 == ROLE_NONE and role0 == ROLE_CONST:      # const
                fold = True
            elif role1 == ROLE_AUX:                             # select
                x = rep[a0]
                b0 = rep[aux[a1]]
                b1 = rep[aux[a1 + 1]]
                aux2[a1] = b0
                aux2[a1 + 1] = b1
                if constant[x]:
                    # The same test as the sweep's select.
                    target = b0 if val[x] != 0.0 else b1
                elif b0 == b1:
                    target = b0
                else:
                    new_code[i] = code
                    new_args[i, 0] = x
                    new_args[i, 1] = a1
            elif role1 == ROLE_NONE:                            # unary
                x = rep[a0]
                if constant[x]:
                    fold = True
                elif (base == OP_NEG and x >= first and fate[x - first] == KEPT
                      and new_code[x - first] == CODE_NEG):
                    # -(-x) == x bit for bit (negation flips the sign bit only),
                    # and the two -1 partials multiply to exactly 1.
                    target = new_args[x - first, 0]
                else:
                    new_code[i] = code
                    new_args[i, 0] = x
                    new_args[i, 1] = 0
            else:                                               # binary
                if role0 == ROLE_SLOT and role1 == ROLE_SLOT:
                    x = rep[a0]
                    y = rep[a1]
                    if constant[x] and constant[y]:
                        fold = True
                    elif constant[x]:
                        kind = KIND_CV
                        c = val[x]
                        src = -1
                        flags[i] |= INLINED
                    elif constant[y]:
                        kind = KIND_VC
                        c = val[y]
                        src = -1
                        flags[i] |= INLINED
                    elif (base == OP_ADD or base == OP_MUL) and x > y:
                        # a+b and a*b are the same bits as b+a and b*a.
                        x, y = y, x
                elif role1 == ROLE_CONST:
                    x = rep[a0]
                    y = 0
                    c = consts[a1]
                    src = a1
                    fold = constant[x]
                else:
                    x = 0
                    y = rep[a1]
                    c = consts[a0]
                    src = a0
                    fold = constant[y]
                if not fold:
                    if kind == KIND_CV and (base == OP_ADD or base == OP_MUL):
                        kind = KIND_VC
                        x = y
                        y = 0
                    if kind == KIND_VC:
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
                # with the replay's own compiled code. Its operand slots hold
                # their values, since every constant slot is filled below.
                forward0(&view, &val[0], 1, i, i + 1, s)
                constant[s] = 1
                new_code[i] = CODE_CONST
                new_args[i, 0] = a0 if code == CODE_CONST else -1
                new_args[i, 1] = 0
                imm[i] = val[s]
                if new_args[i, 0] < 0:
                    flags[i] |= EVALUATED
            # -- 2. alias or merge ----------------------------------------------
            if target >= 0:
                rep[s] = <index_t>target
                fate[i] = ALIASED
                if constant[target]:
                    constant[s] = 1
                    val[s] = val[target]
                continue
            j = _find_or_insert(&p, &table[0], mask, i)
            if j >= 0:
                rep[s] = <index_t>(first + j)
                fate[i] = MERGED
    return dict(code=new_code_arr, args=new_args_arr, imm=imm_arr, aux=aux_arr,
                rep=rep_arr, fate=fate_arr, flags=flags_arr,
                constant=constant_arr.view(bool), values=values_arr)


@cython.boundscheck(False)
@cython.wraparound(False)
def live_slots(const opcode_t[::1] code, const index_t[:, ::1] args,
               const index_t[::1] aux, const uint8_t[::1] fate, Py_ssize_t first,
               const index_t[::1] roots):
    """Slots that reach a root (an output or guard operand), as a bool array.

    ``code``/``args``/``aux`` are the rewritten operations from
    :func:`simplify`, whose slot operands are representatives; operations
    that were merged or aliased are skipped (nothing refers to them).
    """
    cdef Py_ssize_t n = code.shape[0], i, s
    live_arr = np.zeros(first + n, np.uint8)
    cdef uint8_t[::1] live = live_arr
    cdef int c, k, role
    cdef index_t a
    with nogil:
        for i in range(roots.shape[0]):
            live[roots[i]] = 1
        for i in range(n - 1, -1, -1):
            s = first + i
            if not live[s] or fate[i] != KEPT:
                continue
            c = code[i]
            for k in range(2):
                role = operand_role(c, k)
                a = args[i, k]
                if role == ROLE_SLOT:
                    live[a] = 1
                elif role == ROLE_AUX:
                    live[aux[a]] = 1
                    live[aux[a + 1]] = 1
    return live_arr.view(bool)


@cython.boundscheck(False)
@cython.wraparound(False)
def renumber(const opcode_t[::1] code, const index_t[:, ::1] args, const real_t[::1] imm,
             const index_t[::1] aux, const uint8_t[::1] keep, Py_ssize_t first,
             Py_ssize_t n_consts):
    """The kept operations, renumbered: a new operation k writes slot
    first + k, inputs and parameters keep theirs.

    Returns ``(code, args, aux, new_slot, immediates, new_values)``:
    ``new_slot`` maps every representative slot to its new slot (-1 if
    dropped); an immediate operand holds a *candidate* index -- its old pool
    index, or ``n_consts + m`` for ``new_values[m]``, a value computed while
    optimising -- and ``immediates`` lists where those sit in the flattened
    ``args``, for the caller to replace by indices into the new pool.
    """
    cdef Py_ssize_t n = code.shape[0], i, k, n_kept = 0, n_sel = 0, n_imm = 0, n_new = 0
    cdef int c, col, role
    cdef index_t a
    for i in range(n):
        if keep[i]:
            n_kept += 1
            c = code[i]
            for col in range(2):
                role = operand_role(c, col)
                if role == ROLE_AUX:
                    n_sel += 1
                elif role == ROLE_CONST:
                    n_imm += 1
    out_code_arr = np.empty(n_kept, np.uint8)
    out_args_arr = np.zeros((n_kept, 2), np.int32)
    out_aux_arr = np.empty(2 * n_sel, np.int32)
    new_slot_arr = np.full(first + n, -1, np.int32)
    where_arr = np.empty(n_imm, np.int64)
    new_values_arr = np.empty(n_imm, np.float64)
    cdef opcode_t[::1] out_code = out_code_arr
    cdef index_t[:, ::1] out_args = out_args_arr
    cdef index_t[::1] out_aux = out_aux_arr
    cdef index_t[::1] new_slot = new_slot_arr
    cdef int64_t[::1] where = where_arr
    cdef real_t[::1] new_values = new_values_arr
    with nogil:
        for i in range(first):
            new_slot[i] = <index_t>i
        k = 0
        for i in range(n):
            if keep[i]:
                new_slot[first + i] = <index_t>(first + k)
                k += 1
        k = 0
        n_sel = 0
        n_imm = 0
        for i in range(n):
            if not keep[i]:
                continue
            c = code[i]
            out_code[k] = <opcode_t>c
            for col in range(2):
                role = operand_role(c, col)
                a = args[i, col]
                if role == ROLE_SLOT:
                    out_args[k, col] = new_slot[a]
                elif role == ROLE_AUX:
                    out_args[k, col] = <index_t>(2 * n_sel)
                    out_aux[2 * n_sel] = new_slot[aux[a]]
                    out_aux[2 * n_sel + 1] = new_slot[aux[a + 1]]
                    n_sel += 1
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
    return (out_code_arr, out_args_arr, out_aux_arr, new_slot_arr, where_arr,
            new_values_arr[:n_new].copy())
