# The value and derivative rules of every operation, side by side.
#
# Each operation ``name`` in _opcodes.py has ``name_value`` and, when it is
# differentiable, ``name_partial(a, r)`` (unary: dr/da given the operand a
# and the result r, so e.g. exp reuses its result) or
# ``name_partials(a, b, r, &da, &db)`` (binary), and the second derivatives
# ``name_second(a, r)`` or ``name_seconds(a, b, r, &aa, &ab, &bb)`` used by
# the second-order (forward-over-reverse) sweep. The tangent rule of every
# operation is then rd = da*ad (+ db*bd), its adjoint rule ab += rb*da
# (bb += rb*db); the sweeps apply both generically through the dispatchers
# that _generate.py writes from the operation table into _dispatch.pxd.
# Conventions at kinks follow NumPy/JAX (docs/architecture.md, "Kinks"):
# abs'(0) = 0, sign' = 0, a tie of minimum/maximum gives each side half,
# sqrt'(0) = inf.
from libc.math cimport (
    sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, tanh, asinh, acosh,
    atanh, exp, expm1, log, log1p, log2, log10, sqrt, cbrt, pow, hypot, erf, erfc, fabs,
    INFINITY, NAN,
)

from wengert._types cimport real_t

cdef extern from *:
    """
    #define WG_LN2 0.693147180559945309417232121458176568
    #define WG_LN10 2.30258509299404568401799145468436421
    #define WG_2_SQRTPI 1.12837916709551257389615890312154517
    """
    const double WG_LN2
    const double WG_LN10
    const double WG_2_SQRTPI


cdef inline real_t azmul(real_t x, real_t y) noexcept nogil:
    # Absolute-zero multiply, every derivative product goes through it: a
    # zero factor wins over inf or NaN. So a zero adjoint or tangent (a
    # branch not taken, a direction not seeded) never becomes NaN, and a
    # zero partial stops an infinite one (sqrt(x)**3 at 0 has derivative 0
    # in forward and reverse mode alike).
    return 0.0 if (x == 0.0 or y == 0.0) else x * y


# ---- unary operations ------------------------------------------------------

cdef inline real_t neg_value(real_t a) noexcept nogil: return -a
cdef inline real_t neg_partial(real_t a, real_t r) noexcept nogil: return -1.0
cdef inline real_t neg_second(real_t a, real_t r) noexcept nogil: return 0.0

cdef inline real_t square_value(real_t a) noexcept nogil: return a * a
cdef inline real_t square_partial(real_t a, real_t r) noexcept nogil: return 2.0 * a
cdef inline real_t square_second(real_t a, real_t r) noexcept nogil: return 2.0

cdef inline real_t sqrt_value(real_t a) noexcept nogil: return sqrt(a)
cdef inline real_t sqrt_partial(real_t a, real_t r) noexcept nogil: return 0.5 / r
cdef inline real_t sqrt_second(real_t a, real_t r) noexcept nogil: return -0.25 / (r * r * r)

cdef inline real_t cbrt_value(real_t a) noexcept nogil: return cbrt(a)
cdef inline real_t cbrt_partial(real_t a, real_t r) noexcept nogil: return 1.0 / (3.0 * r * r)
cdef inline real_t cbrt_second(real_t a, real_t r) noexcept nogil: return -2.0 / (9.0 * r * r * r * r * r)

cdef inline real_t reciprocal_value(real_t a) noexcept nogil: return 1.0 / a
cdef inline real_t reciprocal_partial(real_t a, real_t r) noexcept nogil: return -(r * r)
cdef inline real_t reciprocal_second(real_t a, real_t r) noexcept nogil: return 2.0 * r * r * r

cdef inline real_t exp_value(real_t a) noexcept nogil: return exp(a)
cdef inline real_t exp_partial(real_t a, real_t r) noexcept nogil: return r
cdef inline real_t exp_second(real_t a, real_t r) noexcept nogil: return r

cdef inline real_t expm1_value(real_t a) noexcept nogil: return expm1(a)
# r + 1 cancels as r -> -1; exp(a) is exact there (and r + 1 is fine above).
cdef inline real_t expm1_partial(real_t a, real_t r) noexcept nogil:
    return r + 1.0 if r > -0.5 else exp(a)
cdef inline real_t expm1_second(real_t a, real_t r) noexcept nogil: return expm1_partial(a, r)

cdef inline real_t log_value(real_t a) noexcept nogil: return log(a)
cdef inline real_t log_partial(real_t a, real_t r) noexcept nogil: return 1.0 / a
cdef inline real_t log_second(real_t a, real_t r) noexcept nogil: return -1.0 / (a * a)

cdef inline real_t log1p_value(real_t a) noexcept nogil: return log1p(a)
cdef inline real_t log1p_partial(real_t a, real_t r) noexcept nogil: return 1.0 / (1.0 + a)
cdef inline real_t log1p_second(real_t a, real_t r) noexcept nogil: return -1.0 / ((1.0 + a) * (1.0 + a))

cdef inline real_t log2_value(real_t a) noexcept nogil: return log2(a)
cdef inline real_t log2_partial(real_t a, real_t r) noexcept nogil: return 1.0 / (a * WG_LN2)
cdef inline real_t log2_second(real_t a, real_t r) noexcept nogil: return -1.0 / (a * a * WG_LN2)

cdef inline real_t log10_value(real_t a) noexcept nogil: return log10(a)
cdef inline real_t log10_partial(real_t a, real_t r) noexcept nogil: return 1.0 / (a * WG_LN10)
cdef inline real_t log10_second(real_t a, real_t r) noexcept nogil: return -1.0 / (a * a * WG_LN10)

cdef inline real_t sin_value(real_t a) noexcept nogil: return sin(a)
cdef inline real_t sin_partial(real_t a, real_t r) noexcept nogil: return cos(a)
cdef inline real_t sin_second(real_t a, real_t r) noexcept nogil: return -r

cdef inline real_t cos_value(real_t a) noexcept nogil: return cos(a)
cdef inline real_t cos_partial(real_t a, real_t r) noexcept nogil: return -sin(a)
cdef inline real_t cos_second(real_t a, real_t r) noexcept nogil: return -r

cdef inline real_t tan_value(real_t a) noexcept nogil: return tan(a)
cdef inline real_t tan_partial(real_t a, real_t r) noexcept nogil: return 1.0 + r * r
cdef inline real_t tan_second(real_t a, real_t r) noexcept nogil: return 2.0 * r * (1.0 + r * r)

# (1 - a)(1 + a) rather than 1 - a*a keeps full precision near |a| = 1.
cdef inline real_t arcsin_value(real_t a) noexcept nogil: return asin(a)
cdef inline real_t arcsin_partial(real_t a, real_t r) noexcept nogil:
    return 1.0 / sqrt((1.0 - a) * (1.0 + a))
cdef inline real_t arcsin_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arcsin_partial(a, r)
    return a * d * d * d

cdef inline real_t arccos_value(real_t a) noexcept nogil: return acos(a)
cdef inline real_t arccos_partial(real_t a, real_t r) noexcept nogil:
    return -1.0 / sqrt((1.0 - a) * (1.0 + a))
cdef inline real_t arccos_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arcsin_partial(a, r)
    return -a * d * d * d

cdef inline real_t arctan_value(real_t a) noexcept nogil: return atan(a)
cdef inline real_t arctan_partial(real_t a, real_t r) noexcept nogil: return 1.0 / (1.0 + a * a)
cdef inline real_t arctan_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arctan_partial(a, r)
    return -2.0 * a * d * d

cdef inline real_t sinh_value(real_t a) noexcept nogil: return sinh(a)
cdef inline real_t sinh_partial(real_t a, real_t r) noexcept nogil: return cosh(a)
cdef inline real_t sinh_second(real_t a, real_t r) noexcept nogil: return r

cdef inline real_t cosh_value(real_t a) noexcept nogil: return cosh(a)
cdef inline real_t cosh_partial(real_t a, real_t r) noexcept nogil: return sinh(a)
cdef inline real_t cosh_second(real_t a, real_t r) noexcept nogil: return r

cdef inline real_t tanh_value(real_t a) noexcept nogil: return tanh(a)
# 1 - r*r cancels as |r| -> 1 (1e-8 relative error at |a| = 10, 0 beyond 19);
# there 4e/(1+e)^2 with e = exp(-2|a|) is exact to rounding.
cdef inline real_t tanh_partial(real_t a, real_t r) noexcept nogil:
    cdef real_t e
    if -0.5 < r < 0.5:
        return 1.0 - r * r
    e = exp(-2.0 * fabs(a))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))
cdef inline real_t tanh_second(real_t a, real_t r) noexcept nogil: return -2.0 * r * tanh_partial(a, r)

# hypot(a, 1) avoids the overflow of a*a + 1 for large |a|.
cdef inline real_t arcsinh_value(real_t a) noexcept nogil: return asinh(a)
cdef inline real_t arcsinh_partial(real_t a, real_t r) noexcept nogil: return 1.0 / hypot(a, 1.0)
cdef inline real_t arcsinh_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arcsinh_partial(a, r)
    return -a * d * d * d

cdef inline real_t arccosh_value(real_t a) noexcept nogil: return acosh(a)
cdef inline real_t arccosh_partial(real_t a, real_t r) noexcept nogil:
    return 1.0 / (sqrt(a - 1.0) * sqrt(a + 1.0))
cdef inline real_t arccosh_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arccosh_partial(a, r)
    return -a * d * d * d

cdef inline real_t arctanh_value(real_t a) noexcept nogil: return atanh(a)
cdef inline real_t arctanh_partial(real_t a, real_t r) noexcept nogil:
    return 1.0 / ((1.0 - a) * (1.0 + a))
cdef inline real_t arctanh_second(real_t a, real_t r) noexcept nogil:
    cdef real_t d = arctanh_partial(a, r)
    return 2.0 * a * d * d

cdef inline real_t abs_value(real_t a) noexcept nogil: return fabs(a)
cdef inline real_t abs_partial(real_t a, real_t r) noexcept nogil:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return -1.0
    return 0.0 if a == 0.0 else a  # NaN stays NaN

cdef inline real_t sign_value(real_t a) noexcept nogil:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return -1.0
    return 0.0 if a == 0.0 else a

# Split at 0 so exp never overflows: 1/(1+e^-a) for a >= 0, e^a/(1+e^a) else.
cdef inline real_t sigmoid_value(real_t a) noexcept nogil:
    cdef real_t e
    if a >= 0.0:
        return 1.0 / (1.0 + exp(-a))
    e = exp(a)
    return e / (1.0 + e)
# sigma(a) sigma(-a) with the smaller factor computed directly: r * (1 - r)
# would cancel as r -> 1. The second derivative uses 1 - 2 sigma = -tanh(a/2).
cdef inline real_t sigmoid_partial(real_t a, real_t r) noexcept nogil:
    cdef real_t e
    if a < 0.0:
        return r * (1.0 - r)
    e = exp(-a)
    return r * (e / (1.0 + e))
cdef inline real_t sigmoid_second(real_t a, real_t r) noexcept nogil:
    return -sigmoid_partial(a, r) * tanh(0.5 * a)

cdef inline real_t erf_value(real_t a) noexcept nogil: return erf(a)
cdef inline real_t erf_partial(real_t a, real_t r) noexcept nogil: return WG_2_SQRTPI * exp(-a * a)
cdef inline real_t erf_second(real_t a, real_t r) noexcept nogil: return -2.0 * a * erf_partial(a, r)

cdef inline real_t erfc_value(real_t a) noexcept nogil: return erfc(a)
cdef inline real_t erfc_partial(real_t a, real_t r) noexcept nogil: return -WG_2_SQRTPI * exp(-a * a)
cdef inline real_t erfc_second(real_t a, real_t r) noexcept nogil: return -2.0 * a * erfc_partial(a, r)


# ---- binary operations -----------------------------------------------------

cdef inline real_t add_value(real_t a, real_t b) noexcept nogil: return a + b
cdef inline void add_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    da[0] = 1.0
    db[0] = 1.0
cdef inline void add_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    aa[0] = 0.0
    ab[0] = 0.0
    bb[0] = 0.0

cdef inline real_t sub_value(real_t a, real_t b) noexcept nogil: return a - b
cdef inline void sub_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    da[0] = 1.0
    db[0] = -1.0
cdef inline void sub_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    aa[0] = 0.0
    ab[0] = 0.0
    bb[0] = 0.0

cdef inline real_t mul_value(real_t a, real_t b) noexcept nogil: return a * b
cdef inline void mul_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    da[0] = b
    db[0] = a
cdef inline void mul_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    aa[0] = 0.0
    ab[0] = 1.0
    bb[0] = 0.0

cdef inline real_t div_value(real_t a, real_t b) noexcept nogil: return a / b
cdef inline void div_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    da[0] = 1.0 / b
    db[0] = -r / b
cdef inline void div_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    aa[0] = 0.0
    ab[0] = -1.0 / (b * b)
    bb[0] = 2.0 * r / (b * b)

# As JAX: d/da is 0 where b == 0 and d/db is 0 where a == 0 (not 0 * inf).
cdef inline real_t pow_value(real_t a, real_t b) noexcept nogil: return pow(a, b)
cdef inline void pow_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    da[0] = 0.0 if b == 0.0 else b * pow(a, b - 1.0)
    db[0] = 0.0 if a == 0.0 else log(a) * r
# The same zero conventions as pow_partials, so no 0 * inf appears.
cdef inline void pow_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    aa[0] = 0.0 if (b == 0.0 or b == 1.0) else b * (b - 1.0) * pow(a, b - 2.0)
    if a == 0.0:
        ab[0] = 0.0
        bb[0] = 0.0
    else:
        ab[0] = pow(a, b - 1.0) * (1.0 + b * log(a))
        bb[0] = log(a) * log(a) * r

# Divide by the hypotenuse twice so large operands do not overflow.
cdef inline real_t arctan2_value(real_t a, real_t b) noexcept nogil: return atan2(a, b)
cdef inline void arctan2_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    cdef real_t h = hypot(a, b)
    da[0] = (b / h) / h
    db[0] = -(a / h) / h
cdef inline void arctan2_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    cdef real_t h = hypot(a, b)
    cdef real_t u = a / h, v = b / h
    aa[0] = -2.0 * u * v / (h * h)
    ab[0] = (u * u - v * v) / (h * h)
    bb[0] = 2.0 * u * v / (h * h)

cdef inline real_t hypot_value(real_t a, real_t b) noexcept nogil: return hypot(a, b)
cdef inline void hypot_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    if r == 0.0:
        da[0] = 0.0
        db[0] = 0.0
    else:
        da[0] = a / r
        db[0] = b / r
cdef inline void hypot_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    cdef real_t u, v
    if r == 0.0:
        aa[0] = 0.0
        ab[0] = 0.0
        bb[0] = 0.0
    else:
        u = a / r
        v = b / r
        aa[0] = v * v / r
        ab[0] = -u * v / r
        bb[0] = u * u / r

# NaN in either operand gives NaN, as np.minimum / np.maximum.
cdef inline real_t minimum_value(real_t a, real_t b) noexcept nogil:
    if a <= b:
        return a
    if b < a:
        return b
    return a + b

cdef inline void minimum_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    if a < b:
        da[0] = 1.0
        db[0] = 0.0
    elif b < a:
        da[0] = 0.0
        db[0] = 1.0
    elif a == b:
        da[0] = 0.5
        db[0] = 0.5
    else:
        da[0] = NAN
        db[0] = NAN

cdef inline real_t maximum_value(real_t a, real_t b) noexcept nogil:
    if a >= b:
        return a
    if b > a:
        return b
    return a + b

cdef inline void maximum_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    minimum_partials(a, b, r, db, da)

# Stable: max(a, b) + log1p(exp(-|a - b|)); equal operands (also equal
# infinities) give a + log 2 and half the derivative to each.
cdef inline real_t logaddexp_value(real_t a, real_t b) noexcept nogil:
    cdef real_t d
    if a == b:
        return a + WG_LN2
    d = a - b
    if d > 0.0:
        return a + log1p(exp(-d))
    if d <= 0.0:
        return b + log1p(exp(d))
    return d

cdef inline void logaddexp_partials(real_t a, real_t b, real_t r, real_t* da, real_t* db) noexcept nogil:
    cdef real_t e
    if a == b:
        da[0] = 0.5
        db[0] = 0.5
    elif a > b:
        e = exp(b - a)
        da[0] = 1.0 / (1.0 + e)
        db[0] = e * da[0]
    elif b > a:
        e = exp(a - b)
        db[0] = 1.0 / (1.0 + e)
        da[0] = e * db[0]
    else:
        da[0] = NAN
        db[0] = NAN
cdef inline void logaddexp_seconds(real_t a, real_t b, real_t r, real_t* aa, real_t* ab, real_t* bb) noexcept nogil:
    cdef real_t da, db
    logaddexp_partials(a, b, r, &da, &db)
    aa[0] = da * db
    ab[0] = -da * db
    bb[0] = da * db

# Comparisons give 1.0 or 0.0 and have zero derivatives; a NaN makes every
# ordered comparison false, as in IEEE arithmetic.
cdef inline real_t lt_value(real_t a, real_t b) noexcept nogil: return 1.0 if a < b else 0.0
cdef inline real_t le_value(real_t a, real_t b) noexcept nogil: return 1.0 if a <= b else 0.0
cdef inline real_t gt_value(real_t a, real_t b) noexcept nogil: return 1.0 if a > b else 0.0
cdef inline real_t ge_value(real_t a, real_t b) noexcept nogil: return 1.0 if a >= b else 0.0
cdef inline real_t eq_value(real_t a, real_t b) noexcept nogil: return 1.0 if a == b else 0.0
cdef inline real_t ne_value(real_t a, real_t b) noexcept nogil: return 1.0 if a != b else 0.0
