from libc.stdint cimport uint8_t
from wengert._types cimport real_t, index_t, opcode_t, TapeView


cdef void forward0(const TapeView* t, real_t* val, Py_ssize_t B,
                   Py_ssize_t start, Py_ssize_t end, Py_ssize_t slot) noexcept nogil
cdef void forward1(const TapeView* t, real_t* val, real_t* dot,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil
cdef void reverse1_clearing(const TapeView* t, const real_t* val, real_t* bar) noexcept nogil
cdef void reverse1(const TapeView* t, const real_t* val, real_t* bar,
                   Py_ssize_t B, Py_ssize_t K) noexcept nogil
cdef void reverse2(const TapeView* t, const real_t* val, const real_t* dot,
                   real_t* bar, real_t* bardot, Py_ssize_t B, Py_ssize_t K) noexcept nogil
cdef Py_ssize_t first_bad_operation(const TapeView* t, const uint8_t* valid,
                                    Py_ssize_t n_consts, Py_ssize_t n_aux,
                                    Py_ssize_t start, Py_ssize_t end,
                                    Py_ssize_t* slot) noexcept nogil
cdef Py_ssize_t first_failed_guard(const TapeView* t, const real_t* val,
                                   Py_ssize_t B, Py_ssize_t* point) noexcept nogil
cdef Py_ssize_t first_bad_guard(const TapeView* t, Py_ssize_t n_slots,
                                Py_ssize_t n_consts) noexcept nogil
