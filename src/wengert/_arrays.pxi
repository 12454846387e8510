# Array entries: one tape entry over many slots (included by _sweeps.pyx).
#
# An array entry's arg0 indexes its descriptor in the side table and arg1 is
# the number of slots it writes, from its result slot s on. The layouts are
# listed once, in _opcodes.ARRAY_LAYOUTS:
#
#   map     [code, n_outer, n_inner, a_start, a_outer, a_inner,
#            b_start, b_outer, b_inner]
#   sum     [n_outer, n_inner, a_start, a_outer, a_inner]
#   gather  [source slot of each result ...]
#   matmul  [code, m, k, n, a_start, a_rows, a_cols, b_start, b_rows, b_cols]
#   where   [n_outer, n_inner, c_start, c_outer, c_inner, a_start, a_outer,
#            a_inner, b_start, b_outer, b_inner]
#   cumsum  [n_outer, n_inner, a_start, a_outer, a_inner]
#
# A map applies the scalar kernels of `code` element by element, through the
# same _unary/_binary bodies as scalar entries, so both kinds of entry give
# the same numbers. Matrix products go to BLAS (SciPy's cython_blas), always
# through the same call on matrices stored by rows (see _gemm); their values
# are IEEE products as NumPy's `@` gives, their derivatives follow the
# scalar entries' azmul (a zero factor wins over inf and NaN).

cdef extern from *:
    """
    #define WG_INDEX_END 2147483647LL
    """
    # One past the largest 32-bit index: slots, pool and side-table indices
    # and BLAS dimensions all stay below it.
    const Py_ssize_t WG_INDEX_END


cdef enum:
    MAP_LAYOUT = 9
    SUM_LAYOUT = 5
    MATMUL_LAYOUT = 10
    WHERE_LAYOUT = 11


# ---- validation ---------------------------------------------------------------

cdef inline bint _grid_inside(Py_ssize_t start, Py_ssize_t n_outer, Py_ssize_t outer,
                              Py_ssize_t n_inner, Py_ssize_t inner,
                              Py_ssize_t limit) noexcept nogil:
    """Whether start + o*outer + j*inner lies in [0, limit) for every o <
    n_outer and j < n_inner: its extremes are at the corners. Sizes are at
    most 2**31 and strides 32-bit, so nothing here overflows 64 bits."""
    cdef Py_ssize_t low = start, high = start
    cdef Py_ssize_t reach_outer = (n_outer - 1) * outer, reach_inner = (n_inner - 1) * inner
    if reach_outer < 0:
        low += reach_outer
    else:
        high += reach_outer
    if reach_inner < 0:
        low += reach_inner
    else:
        high += reach_inner
    return 0 <= low and high < limit


cdef inline Py_ssize_t _limit_of(int role, Py_ssize_t n_slots, Py_ssize_t n_consts) noexcept nogil:
    return n_consts if role == ROLE_CONST else n_slots


cdef Py_ssize_t array_entry_slots(const TapeView* t, int code, Py_ssize_t d, Py_ssize_t n,
                                  Py_ssize_t s, Py_ssize_t n_consts,
                                  Py_ssize_t n_aux) noexcept nogil:
    """The number of slots the array entry (code, d, n) with result slot s
    writes, or 0 if its descriptor refers to anything that does not exist
    before it, or describes more reads than there are slots to read."""
    cdef const index_t* D
    cdef Py_ssize_t e, n_outer, n_inner, m, k, n_cols
    cdef int inner, role0, role1
    if n < 1 or d < 0 or s + n >= WG_INDEX_END:
        return 0
    if code == OP_GATHER:
        if d + n > n_aux:
            return 0
        D = t.aux + d
        for e in range(n):
            if not 0 <= D[e] < s:
                return 0
        return n
    if code == OP_SUM or code == OP_CUMSUM:
        if d + SUM_LAYOUT > n_aux:
            return 0
        D = t.aux + d
        n_outer, n_inner = D[0], D[1]
        # A sum writes a slot per row, a running sum one per element; both
        # read distinct slots, so no more than exist.
        if (n_outer < 1 or n_inner < 1 or n_outer * n_inner > s
                or (n_outer if code == OP_SUM else n_outer * n_inner) != n):
            return 0
        return n if _grid_inside(D[2], n_outer, D[3], n_inner, D[4], s) else 0
    if code == OP_WHERE:
        if d + WHERE_LAYOUT > n_aux:
            return 0
        D = t.aux + d
        n_outer, n_inner = D[0], D[1]
        if n_outer < 1 or n_inner < 1 or n_inner > n or n_outer * n_inner != n:
            return 0
        for e in range(3):
            if not _grid_inside(D[2 + 3 * e], n_outer, D[3 + 3 * e], n_inner, D[4 + 3 * e], s):
                return 0
        return n
    if code == OP_MAP:
        if d + MAP_LAYOUT > n_aux:
            return 0
        D = t.aux + d
        inner = D[0]
        if not 0 <= inner < 256:
            return 0
        role0, role1 = operand_role(inner, 0), operand_role(inner, 1)
        # A unary or binary operation (not const, select or an array entry),
        # with at least one slot operand.
        if not ((role0 == ROLE_SLOT and (role1 == ROLE_NONE or role1 == ROLE_SLOT
                                          or role1 == ROLE_CONST))
                or (role0 == ROLE_CONST and role1 == ROLE_SLOT)):
            return 0
        n_outer, n_inner = D[1], D[2]
        if n_outer < 1 or n_inner < 1 or n_inner > n or n_outer * n_inner != n:
            return 0
        if not _grid_inside(D[3], n_outer, D[4], n_inner, D[5], _limit_of(role0, s, n_consts)):
            return 0
        if role1 != ROLE_NONE and not _grid_inside(D[6], n_outer, D[7], n_inner, D[8],
                                                   _limit_of(role1, s, n_consts)):
            return 0
        return n
    if code == OP_MATMUL:
        if d + MATMUL_LAYOUT > n_aux:
            return 0
        D = t.aux + d
        inner = D[0]
        if not 0 <= inner < 256 or (inner & BASE_MASK) != OP_MUL or inner == OP_MUL:
            return 0
        role0, role1 = operand_role(inner, 0), operand_role(inner, 1)
        m, k, n_cols = D[1], D[2], D[3]      # 64-bit: their products must not wrap
        if m < 1 or k < 1 or n_cols < 1 or m > n or m * n_cols != n:
            return 0
        # Each operand reads no more elements than exist (the recorder
        # copies broadcast operands): this bounds the work, m * k * n, by
        # the tape's size, so a short forged entry cannot run for hours.
        if m * k > _limit_of(role0, s, n_consts) or k * n_cols > _limit_of(role1, s, n_consts):
            return 0
        if not _grid_inside(D[4], m, D[5], k, D[6], _limit_of(role0, s, n_consts)):
            return 0
        if not _grid_inside(D[7], k, D[8], n_cols, D[9], _limit_of(role1, s, n_consts)):
            return 0
        return n
    return 0


# ---- dispatch --------------------------------------------------------------------

cdef void _array_entry(sweep_t* sweep, Work w, int code, Py_ssize_t s, const index_t* D,
                       Py_ssize_t n) noexcept nogil:
    """The array entry ``code`` with descriptor D writing slots s..s+n-1."""
    if code == OP_MAP:
        _map(sweep, &w, s, D)
    elif code == OP_SUM:
        _sum(sweep, &w, s, D)
    elif code == OP_GATHER:
        _gather(sweep, &w, s, D, n)
    elif code == OP_MATMUL:
        _matmul(sweep, &w, s, D)
    elif code == OP_WHERE:
        _where(sweep, &w, s, D)
    elif code == OP_CUMSUM:
        _cumsum(sweep, &w, s, D)


cdef inline void _cumsum(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* D) noexcept nogil:
    """out[o, j] = a[o, 0] + ... + a[o, j], in order; its partials are all 1,
    so tangents run the same sums and adjoints the sums from the end."""
    cdef Py_ssize_t n_outer = D[0], n_inner = D[1], start = D[2], outer = D[3], inner = D[4]
    cdef Py_ssize_t B = w.B, K = w.K, BK = w.B * w.K, o, j, p, q, x, r
    cdef real_t acc
    for o in range(n_outer):
        x = start + o * outer
        r = s + o * n_inner
        if sweep_t is _values or sweep_t is _tangents:
            for p in range(B):
                acc = w.val[x * B + p]
                w.val[r * B + p] = acc
                for j in range(1, n_inner):
                    acc = acc + w.val[(x + j * inner) * B + p]
                    w.val[(r + j) * B + p] = acc
        if sweep_t is _tangents:
            for q in range(BK):
                acc = w.deriv[x * BK + q]
                w.deriv[r * BK + q] = acc
                for j in range(1, n_inner):
                    acc = acc + w.deriv[(x + j * inner) * BK + q]
                    w.deriv[(r + j) * BK + q] = acc
        if sweep_t is _adjoints or sweep_t is _seconds:
            for q in range(BK):
                acc = 0.0
                for j in range(n_inner - 1, -1, -1):
                    acc = acc + w.deriv[(r + j) * BK + q]
                    w.deriv[(x + j * inner) * BK + q] += acc
        if sweep_t is _seconds:
            for p in range(B):
                acc = 0.0
                for j in range(n_inner - 1, -1, -1):
                    acc = acc + w.bar[(r + j) * B + p]
                    w.bar[(x + j * inner) * B + p] += acc


cdef inline void _where(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* D) noexcept nogil:
    """The select of scalar entries, element by element over three grids."""
    cdef Py_ssize_t n_outer = D[0], n_inner = D[1], o, j, c, a, b
    cdef bint one = w.B == 1 and w.K == 1
    for o in range(n_outer):
        c = D[2] + o * D[3]
        a = D[5] + o * D[6]
        b = D[8] + o * D[9]
        for j in range(n_inner):
            if one:
                _select(sweep, <_one*>NULL, w, s, c, a, b)
            else:
                _select(sweep, <_many*>NULL, w, s, c, a, b)
            c += D[4]
            a += D[7]
            b += D[10]
            s += 1


cdef inline void _cleared(sweep_t* sweep, Work* w, Py_ssize_t s) noexcept nogil:
    """A clearing adjoint sweep zeroes each result's adjoint once used; a
    map does it element by element, in the pass that reads it."""
    if sweep_t is _adjoints:
        if w.clear:
            w.deriv[s] = 0.0


cdef enum:
    VECTOR_CHUNK = 256     # elements evaluated per vector call: stays in L1


cdef inline void _vector_map(sweep_t* sweep, width_t* width, Work* w, Py_ssize_t s,
                             const index_t* D, int value_fn, int partial_fn) noexcept nogil:
    """A map of a unary operation whose libm calls (its value, and its
    partial where the row names one) run through the vector functions of
    _vector_math.h, for every sweep, B and K alike, so an element's value
    and partial have the same bits on every path. The rest of each rule is
    the scalar kernel's."""
    cdef int code = D[0]
    cdef Py_ssize_t B = w.B, K = w.K, n_inner = D[2], a_inner = D[5]
    if width_t is _one:
        B = 1
        K = 1
    cdef Py_ssize_t total = n_inner * B, o, a, first, m, e, j, q, x_at, r_at
    cdef bint negate = partial_fn < -1
    cdef real_t xs[VECTOR_CHUNK]     # the chunk's inputs
    cdef real_t ds[VECTOR_CHUNK]     # their partials, where vectorised
    cdef real_t d, dd, seed
    cdef real_t* r
    if negate:
        partial_fn = -2 - partial_fn
    for o in range(D[1]):
        a = D[3] + o * D[4]
        first = 0        # element-points (j, p) of this row, flat: j * B + p
        while first < total:
            m = min(<Py_ssize_t>VECTOR_CHUNK, total - first)
            if B == 1:
                for e in range(m):
                    xs[e] = w.val[a + (first + e) * a_inner]
            else:
                for e in range(m):
                    j = (first + e) // B
                    xs[e] = w.val[(a + j * a_inner) * B + (first + e - j * B)]
            r = w.val + s * B + first
            if sweep_t is _values or sweep_t is _tangents:
                wg_vector_apply(&WG_VECTOR_FNS[value_fn], xs, r, m)
            if not sweep_t is _values:
                if partial_fn >= 0:
                    wg_vector_apply(&WG_VECTOR_FNS[partial_fn], xs, ds, m)
                for e in range(m):
                    if partial_fn < 0:
                        d = unary_partial(code, xs[e], r[e])
                    elif negate:
                        d = -ds[e]
                    else:
                        d = ds[e]
                    j = (first + e) // B
                    x_at = (a + j * a_inner) * B + (first + e - j * B)   # input (j, p)
                    r_at = s * B + first + e              # result (j, p) in val
                    if sweep_t is _tangents:
                        for q in range(K):
                            w.deriv[r_at * K + q] = azmul(w.deriv[x_at * K + q], d)
                    elif sweep_t is _adjoints:
                        for q in range(K):
                            w.deriv[x_at * K + q] += azmul(w.deriv[r_at * K + q], d)
                        if w.clear:
                            w.deriv[r_at] = 0.0
                    else:
                        # (x̄, x̄̇) += (r̄ φ', r̄̇ φ' + r̄ φ'' ẋ), as _unary
                        seed = w.bar[r_at]
                        w.bar[x_at] += azmul(seed, d)
                        dd = azmul(seed, unary_second(code, xs[e], r[e]))
                        for q in range(K):
                            w.deriv[x_at * K + q] += (azmul(w.deriv[r_at * K + q], d)
                                                      + azmul(dd, w.dot[x_at * K + q]))
            first += m
        s += n_inner


cdef inline void _map(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* D) noexcept nogil:
    cdef int code = D[0]
    cdef Py_ssize_t n_outer = D[1], n_inner = D[2], o, j
    cdef Py_ssize_t a, b, a_inner = D[5], b_inner = D[8]
    cdef bint unary = operand_role(code, 1) == ROLE_NONE
    cdef bint one = w.B == 1 and w.K == 1
    cdef int value_fn = vector_value_fn(code) if unary and _vector_on else -1
    if value_fn >= 0 and one:
        _vector_map(sweep, <_one*>NULL, w, s, D, value_fn, vector_partial_fn(code))
        return
    if value_fn >= 0:
        _vector_map(sweep, <_many*>NULL, w, s, D, value_fn, vector_partial_fn(code))
        return
    # One point along one direction: the generated loop of this operation.
    for o in range(n_outer):
        a = D[3] + o * D[4]
        b = D[6] + o * D[7]
        if one and _map_one(sweep, w, code, s, a, a_inner, b, b_inner, n_inner):
            s += n_inner
            continue
        # Any B and K (every valid code has a one-point loop above, and a
        # clearing sweep runs only at one point along one direction).
        if unary:
            for j in range(n_inner):
                _unary(sweep, <_many*>NULL, w, code, s, a)
                a += a_inner
                s += 1
        else:
            for j in range(n_inner):
                _binary(sweep, <_many*>NULL, w, code, s, a, b)
                a += a_inner
                b += b_inner
                s += 1


# ---- sums ------------------------------------------------------------------------

cdef enum:
    PAIRWISE_BLOCK = 128


cdef real_t _strided_sum(const real_t* x, Py_ssize_t stride, Py_ssize_t n) noexcept nogil:
    """x[0] + x[stride] + ... (n terms), pairwise as NumPy sums: the
    rounding error grows with log n, not n, and eight running sums in a
    block keep the loop busy."""
    cdef real_t acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, total
    cdef Py_ssize_t i, half
    if n < 8:
        total = 0.0
        for i in range(n):
            total += x[i * stride]
        return total
    if n <= PAIRWISE_BLOCK:
        acc0 = x[0]
        acc1 = x[stride]
        acc2 = x[2 * stride]
        acc3 = x[3 * stride]
        acc4 = x[4 * stride]
        acc5 = x[5 * stride]
        acc6 = x[6 * stride]
        acc7 = x[7 * stride]
        i = 8
        while i + 8 <= n:
            acc0 += x[i * stride]
            acc1 += x[(i + 1) * stride]
            acc2 += x[(i + 2) * stride]
            acc3 += x[(i + 3) * stride]
            acc4 += x[(i + 4) * stride]
            acc5 += x[(i + 5) * stride]
            acc6 += x[(i + 6) * stride]
            acc7 += x[(i + 7) * stride]
            i += 8
        total = ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7))
        while i < n:
            total += x[i * stride]
            i += 1
        return total
    half = (n // 2) - (n // 2) % 8
    return _strided_sum(x, stride, half) + _strided_sum(x + half * stride, stride, n - half)


cdef inline void _sum(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* D) noexcept nogil:
    """out[o] = sum_j a[o, j]; its partials are all 1, so tangents sum and
    adjoints spread unchanged."""
    cdef Py_ssize_t n_outer = D[0], n_inner = D[1], start = D[2], outer = D[3], inner = D[4]
    cdef Py_ssize_t B = w.B, K = w.K, BK = w.B * w.K, o, j, p, q, x, r
    for o in range(n_outer):
        x = start + o * outer
        r = s + o
        if sweep_t is _values or sweep_t is _tangents:
            for p in range(B):
                w.val[r * B + p] = _strided_sum(w.val + x * B + p, inner * B, n_inner)
        if sweep_t is _tangents:
            for q in range(BK):
                w.deriv[r * BK + q] = _strided_sum(w.deriv + x * BK + q, inner * BK, n_inner)
        if sweep_t is _adjoints or sweep_t is _seconds:
            for j in range(n_inner):
                for q in range(BK):
                    w.deriv[x * BK + q] += w.deriv[r * BK + q]
                if sweep_t is _seconds:
                    for p in range(B):
                        w.bar[x * B + p] += w.bar[r * B + p]
                x += inner


# ---- gathers ---------------------------------------------------------------------

cdef inline void _gather(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* source,
                         Py_ssize_t n) noexcept nogil:
    """out[e] = slot source[e]: copies forward, scatter-adds backward."""
    cdef Py_ssize_t B = w.B, BK = w.B * w.K, e, p, q, x, r
    for e in range(n):
        x = source[e]
        r = s + e
        if sweep_t is _values or sweep_t is _tangents:
            for p in range(B):
                w.val[r * B + p] = w.val[x * B + p]
        if sweep_t is _tangents:
            for q in range(BK):
                w.deriv[r * BK + q] = w.deriv[x * BK + q]
        if sweep_t is _adjoints or sweep_t is _seconds:
            for q in range(BK):
                w.deriv[x * BK + q] += w.deriv[r * BK + q]
        if sweep_t is _seconds:
            for p in range(B):
                w.bar[x * B + p] += w.bar[r * B + p]


# ---- matrix products -----------------------------------------------------------

ctypedef struct Mat:
    real_t* data          # element (i, j) at data[i * rows + j * cols]
    Py_ssize_t n_rows
    Py_ssize_t n_cols
    Py_ssize_t rows       # stride between rows
    Py_ssize_t cols       # stride between columns


cdef inline Mat _mat(const real_t* data, Py_ssize_t n_rows, Py_ssize_t n_cols,
                     Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Mat m
    m.data = <real_t*>data
    m.n_rows = n_rows
    m.n_cols = n_cols
    m.rows = rows
    m.cols = cols
    return m


cdef inline Mat _transposed(Mat m) noexcept nogil:
    cdef Mat t = m
    t.n_rows, t.n_cols = m.n_cols, m.n_rows
    t.rows, t.cols = m.cols, m.rows
    return t


cdef inline bint _by_rows(Mat m) noexcept nogil:
    """Whether m is stored by rows with no gaps: element (i, j) at i * n_cols + j."""
    return (m.n_rows == 1 or m.rows == m.n_cols) and (m.n_cols == 1 or m.cols == 1)


cdef inline void _copy_by_rows(Mat m, real_t* out) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(m.n_rows):
        for j in range(m.n_cols):
            out[i * m.n_cols + j] = m.data[i * m.rows + j * m.cols]


cdef inline bint _all_finite(Mat m) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef real_t v
    for i in range(m.n_rows):
        for j in range(m.n_cols):
            v = m.data[i * m.rows + j * m.cols]
            if v - v != 0.0:        # inf or NaN
                return False
    return True


cdef void _gemm(Mat a, Mat b, bint accumulate, Mat c, bint derivative) noexcept nogil:
    """c = a @ b, or c += a @ b when ``accumulate`` (a: m x k, b: k x n).

    Every product is one and the same BLAS call on matrices stored by rows
    (operands stored otherwise are copied first, results added afterwards),
    so a point gives the same bits alone, in a batch or along any number of
    directions. Without memory for the copies, plain loops do it.

    A ``derivative`` product follows the scalar entries' rule that a zero
    factor wins (azmul): where an operand holds an inf or a NaN, BLAS would
    make 0 * inf a NaN, so plain loops with azmul do those products."""
    cdef Py_ssize_t m = a.n_rows, k = a.n_cols, n = b.n_cols, i, j, l, need = 0
    cdef bint copy_a = not _by_rows(a), copy_b = not _by_rows(b)
    cdef bint direct_c = not accumulate and _by_rows(c)
    cdef real_t* scratch = NULL
    cdef real_t* ap = a.data
    cdef real_t* bp = b.data
    cdef real_t* cp = c.data
    cdef real_t one = 1.0, zero = 0.0, acc
    cdef int mi, ni, ki
    cdef char no_trans = b'N'
    cdef bint zero_wins = derivative and not (_all_finite(a) and _all_finite(b))
    if not zero_wins and m < WG_INDEX_END and n < WG_INDEX_END and k < WG_INDEX_END:
        need = (m * k if copy_a else 0) + (k * n if copy_b else 0) + (0 if direct_c else m * n)
        if need:
            scratch = <real_t*>malloc(need * sizeof(real_t))
        if scratch != NULL or not need:
            if copy_a:
                ap = scratch
                _copy_by_rows(a, ap)
            if copy_b:
                bp = scratch + (m * k if copy_a else 0)
                _copy_by_rows(b, bp)
            if not direct_c:
                cp = scratch + need - m * n
            # c by rows is c^T by columns: c^T = b^T @ a^T, all 'N'.
            mi, ni, ki = <int>n, <int>m, <int>k
            dgemm(&no_trans, &no_trans, &mi, &ni, &ki, &one, bp, &mi, ap, &ki, &zero, cp, &mi)
            if not direct_c:
                for i in range(m):
                    for j in range(n):
                        if accumulate:
                            c.data[i * c.rows + j * c.cols] += cp[i * n + j]
                        else:
                            c.data[i * c.rows + j * c.cols] = cp[i * n + j]
            free(scratch)
            return
    for i in range(m):
        for j in range(n):
            acc = 0.0
            for l in range(k):
                if zero_wins:
                    acc += azmul(a.data[i * a.rows + l * a.cols], b.data[l * b.rows + j * b.cols])
                else:
                    acc += a.data[i * a.rows + l * a.cols] * b.data[l * b.rows + j * b.cols]
            if accumulate:
                c.data[i * c.rows + j * c.cols] += acc
            else:
                c.data[i * c.rows + j * c.cols] = acc


cdef inline void _matmul(sweep_t* sweep, Work* w, Py_ssize_t s, const index_t* D) noexcept nogil:
    """C (m x n, rows from slot s) = A (m x k) @ B (k x n); a constant A or B
    (kind CV or VC of D[0]) lives in the pool and has no derivatives.

    Forward: C' = A' B + A B'. Reverse: A_bar += C_bar B^T, B_bar += A^T C_bar;
    second order adds A_bar' += C_bar' B^T + C_bar B'^T and B_bar' +=
    A^T C_bar' + A'^T C_bar. One product per point and direction; strides
    scale by the points B and directions K of the storage."""
    cdef int code = D[0]
    cdef bint a_const = operand_role(code, 0) == ROLE_CONST
    cdef bint b_const = operand_role(code, 1) == ROLE_CONST
    cdef Py_ssize_t m = D[1], k = D[2], n = D[3]
    cdef Py_ssize_t a0 = D[4], ar = D[5], ac = D[6], b0 = D[7], br = D[8], bc = D[9]
    cdef Py_ssize_t B = w.B, K = w.K, BK = w.B * w.K, p, j
    cdef Mat A, Bm, C, Ad, Bd, Cd, Abar, Bbar, Cbar
    for p in range(B):
        # Values (or first-order adjoints' points) at point p.
        if a_const:
            A = _mat(w.t.consts + a0, m, k, ar, ac)
        else:
            A = _mat(w.val + a0 * B + p, m, k, ar * B, ac * B)
        if b_const:
            Bm = _mat(w.t.consts + b0, k, n, br, bc)
        else:
            Bm = _mat(w.val + b0 * B + p, k, n, br * B, bc * B)
        C = _mat(w.val + s * B + p, m, n, n * B, B)
        if sweep_t is _values or sweep_t is _tangents:
            _gemm(A, Bm, False, C, False)
        if sweep_t is _seconds:
            Cbar = _mat(w.bar + s * B + p, m, n, n * B, B)
            if not a_const:
                _gemm(Cbar, _transposed(Bm), True, _mat(w.bar + a0 * B + p, m, k, ar * B, ac * B),
                      True)
            if not b_const:
                _gemm(_transposed(A), Cbar, True, _mat(w.bar + b0 * B + p, k, n, br * B, bc * B),
                      True)
        if sweep_t is _values:
            K = 0       # values only: no directions
        for j in range(K):
            Cd = _mat(w.deriv + (s * B + p) * K + j, m, n, n * BK, BK)
            if not a_const:
                Ad = _mat(w.deriv + (a0 * B + p) * K + j, m, k, ar * BK, ac * BK)
            if not b_const:
                Bd = _mat(w.deriv + (b0 * B + p) * K + j, k, n, br * BK, bc * BK)
            if sweep_t is _tangents:
                if a_const:
                    _gemm(A, Bd, False, Cd, True)
                else:
                    _gemm(Ad, Bm, False, Cd, True)
                    if not b_const:
                        _gemm(A, Bd, True, Cd, True)
            else:
                # Adjoints (of the second-order sweep, its adjoint tangents).
                if not a_const:
                    _gemm(Cd, _transposed(Bm), True, Ad, True)
                if not b_const:
                    _gemm(_transposed(A), Cd, True, Bd, True)
            if sweep_t is _seconds:
                Cbar = _mat(w.bar + s * B + p, m, n, n * B, B)
                if not a_const and not b_const:
                    _gemm(Cbar, _transposed(_mat(w.dot + (b0 * B + p) * K + j, k, n,
                                                 br * BK, bc * BK)), True, Ad, True)
                    _gemm(_transposed(_mat(w.dot + (a0 * B + p) * K + j, m, k,
                                           ar * BK, ac * BK)), Cbar, True, Bd, True)
