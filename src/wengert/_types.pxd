# Shared C types of the tape and the sweeps, defined once.
from libc.stdint cimport int32_t, uint8_t

ctypedef double real_t      # every value, tangent and adjoint
ctypedef int32_t index_t    # slot, constant-pool and side-table indices
ctypedef uint8_t opcode_t   # kind << 6 | base  (see _opcodes.py)


# A read-only view of a validated tape: plain pointers so sweeps need no GIL.
ctypedef struct TapeView:
    const opcode_t* opcodes   # (n_ops,)
    const index_t* args       # (n_ops, 2), row-major
    const real_t* consts      # constant pool
    const index_t* aux        # side table for entries with more operands
    Py_ssize_t n_ops
    Py_ssize_t first          # slot written by operation 0 (= inputs + parameters)
    Py_ssize_t n_slots        # every slot: inputs, parameters, every operation's results
    const index_t* arrays     # (n_arrays,) the operations that are array entries, ascending
    Py_ssize_t n_arrays
    const opcode_t* guard_codes   # (n_guards,) binary comparison opcodes
    const index_t* guard_args     # (n_guards, 2)
    const uint8_t* guard_expected # (n_guards,) recorded outcome, 0 or 1
    Py_ssize_t n_guards
