# C mirror of the operation table in _opcodes.py (tests/test_opcodes.py
# checks that the two agree). Kept as plain enum constants so that
# comparisons in the sweeps compile to a C switch.

cdef enum:
    KIND_SHIFT = 6
    BASE_MASK = 63
    KIND_UNARY = 0
    KIND_VV = 1
    KIND_VC = 2
    KIND_CV = 3

cdef enum:
    OP_CONST = 0
    OP_SELECT = 1
    OP_NEG = 2
    OP_SQUARE = 3
    OP_SQRT = 4
    OP_CBRT = 5
    OP_RECIPROCAL = 6
    OP_EXP = 7
    OP_EXPM1 = 8
    OP_LOG = 9
    OP_LOG1P = 10
    OP_LOG2 = 11
    OP_LOG10 = 12
    OP_SIN = 13
    OP_COS = 14
    OP_TAN = 15
    OP_ARCSIN = 16
    OP_ARCCOS = 17
    OP_ARCTAN = 18
    OP_SINH = 19
    OP_COSH = 20
    OP_TANH = 21
    OP_ARCSINH = 22
    OP_ARCCOSH = 23
    OP_ARCTANH = 24
    OP_ABS = 25
    OP_SIGN = 26
    OP_SIGMOID = 27
    OP_ERF = 28
    OP_ADD = 32
    OP_SUB = 33
    OP_MUL = 34
    OP_DIV = 35
    OP_POW = 36
    OP_ARCTAN2 = 37
    OP_HYPOT = 38
    OP_MINIMUM = 39
    OP_MAXIMUM = 40
    OP_LOGADDEXP = 41
    OP_LT = 42
    OP_LE = 43
    OP_GT = 44
    OP_GE = 45
    OP_EQ = 46
    OP_NE = 47
