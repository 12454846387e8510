# The one decoder of an entry's operands; its Python twin is _opcodes.ROLES.
#
# An entry of the tape, like a guard, is an opcode and two operand indices.
# What each index refers to follows from the opcode alone: ROLE_SLOT (a
# slot: an input, a parameter or an earlier entry's result), ROLE_CONST (the
# constant pool), ROLE_AUX (the side table, where a select keeps its two
# branch slots) or ROLE_NONE (unused). WG_ROLES is generated from the
# operation table; every compiled pass decodes operands through these
# functions, and a constant opcode lets the compiler fold the lookup away.
from wengert._types cimport real_t, index_t
from wengert._opcodes cimport *


cdef inline int operand_role(int code, int which) noexcept nogil:
    """The ROLE_* of operand ``which`` (0 or 1) of full opcode ``code``."""
    return WG_ROLES[2 * code + which]


cdef inline bint operand_exists(int role, index_t a, Py_ssize_t n_slots,
                                Py_ssize_t n_consts, const index_t* aux,
                                Py_ssize_t n_aux) noexcept nogil:
    """Whether operand index ``a`` of the given role refers to something
    that exists: a slot below ``n_slots``, a constant of the pool, or two
    side-table entries that are both slots below ``n_slots``."""
    if role == ROLE_SLOT:
        return 0 <= a < n_slots
    if role == ROLE_CONST:
        return 0 <= a < n_consts
    if role == ROLE_AUX:
        return (0 <= a < n_aux - 1 and 0 <= aux[a] < n_slots
                and 0 <= aux[a + 1] < n_slots)
    return True


cdef inline real_t operand_value(int role, index_t a, const real_t* val,
                                 const real_t* consts, Py_ssize_t B,
                                 Py_ssize_t p) noexcept nogil:
    """The value at point ``p`` of a slot or constant operand (``val`` holds
    B points per slot)."""
    if role == ROLE_CONST:
        return consts[a]
    return val[<Py_ssize_t>a * B + p]
