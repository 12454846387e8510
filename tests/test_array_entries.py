"""Array entries, built by hand: one tape entry over many slots.

Each case is a small tape of map / sum / gather / matmul entries next to the
NumPy function it computes; values, gradients, Jacobians (both modes),
Hessian-vector products and Hessians must match NumPy and central finite
differences, at one point and in batches, along one and many directions.
Descriptors that refer to anything that does not exist are refused where
the tape enters.
"""
import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops

K = ops.Kind
MAP, SUM, GATHER, MATMUL = (ops.code_of(n) for n in ("map", "sum", "gather", "matmul"))


def code(name, kind=K.UNARY):
    return ops.code_of(name, kind)


class Builder:
    """Appends array entries to a tape under construction, tracking slots."""

    def __init__(self, n_inputs, consts=()):
        self.next_slot = n_inputs
        self.n_inputs = n_inputs
        self.opcodes, self.args, self.aux = [], [], []
        self.consts = list(consts)

    def entry(self, opcode, descriptor, n):
        self.opcodes.append(opcode)
        self.args.append((len(self.aux), n))
        self.aux.extend(descriptor)
        first = self.next_slot
        self.next_slot += n
        return first

    def map(self, inner, n_outer, n_inner, a, b=(0, 0, 0)):
        return self.entry(MAP, [inner, n_outer, n_inner, *a, *b], n_outer * n_inner)

    def sum(self, n_outer, n_inner, a):
        return self.entry(SUM, [n_outer, n_inner, *a], n_outer)

    def gather(self, sources):
        return self.entry(GATHER, list(sources), len(sources))

    def matmul(self, inner, m, k, n, a, b):
        return self.entry(MATMUL, [inner, m, k, n, *a, *b], m * n)

    def scalar(self, opcode, a0, a1=0):
        self.opcodes.append(opcode)
        self.args.append((a0, a1))
        self.next_slot += 1
        return self.next_slot - 1

    def tape(self, outputs, out_shape):
        return wg.Tape(opcodes=np.array(self.opcodes, np.uint8), args=self.args,
                       consts=np.array(self.consts, float), aux=np.array(self.aux, np.int32),
                       outputs=list(outputs), in_shape=(self.n_inputs,), out_shape=out_shape)


def fd_gradient(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


def check(tape, f, x, rng, tol=1e-6):
    """tape against the NumPy function f (scalar output) at x."""
    assert tape.forward(x) == pytest.approx(f(x), rel=1e-12, abs=1e-12)
    g = tape.gradient(x)
    np.testing.assert_allclose(g, fd_gradient(f, x), rtol=tol, atol=tol)
    np.testing.assert_allclose(tape.jacobian(x), g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tape.jacobian(x, mode="reverse"), g, rtol=1e-12, atol=1e-12)
    H = tape.hessian(x)
    H_fd = np.array([(tape.gradient(x + 1e-6 * e) - tape.gradient(x - 1e-6 * e)) / 2e-6
                     for e in np.eye(x.size)])
    np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-5)
    V = rng.standard_normal((x.size, 3))
    np.testing.assert_allclose(tape.hvp(x, V), H @ V, rtol=1e-10, atol=1e-10)
    X = rng.uniform(0.2, 0.9, (4, x.size))
    np.testing.assert_allclose(tape.forward(X), [f(p) for p in X], rtol=1e-12)
    np.testing.assert_allclose(tape.gradient(X), [tape.gradient(p) for p in X], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(tape.hvp(X, X), [tape.hvp(p, p) for p in X], rtol=1e-10,
                               atol=1e-12)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_map_of_unary_and_binary_operations_with_constants(rng):
    n = 6
    c = rng.uniform(0.5, 1.5, n)
    b = Builder(n, consts=c)
    s = b.map(code("sin"), 1, n, (0, 0, 1))                       # sin(x)
    p = b.map(code("mul", K.VC), 1, n, (s, 0, 1), (0, 0, 1))       # sin(x) * c
    q = b.map(code("div", K.CV), 1, n, (0, 0, 1), (0, 0, 1))       # c / x
    r = b.map(code("mul", K.VV), 1, n, (p, 0, 1), (q, 0, 1))       # product
    total = b.sum(1, n, (r, 0, 1))
    tape = b.tape([total], ())
    check(tape, lambda x: np.sum(np.sin(x) * c * (c / x)), rng.uniform(0.2, 0.9, n), rng)


def test_map_broadcasts_with_zero_strides_over_two_levels(rng):
    # x as (2, 3) plus a row x[0:3] broadcast down and a column x[3:5] across.
    b = Builder(6)
    m = b.map(code("add", K.VV), 2, 3, (0, 3, 1), (0, 0, 1))       # X + x[0:3]
    h = b.map(code("mul", K.VV), 2, 3, (m, 3, 1), (3, 1, 0))       # * x[3:5][:, None]
    t = b.map(code("tanh"), 2, 3, (h, 3, 1))
    total = b.sum(1, 6, (t, 0, 1))
    tape = b.tape([total], ())

    def f(x):
        X = x.reshape(2, 3)
        return np.sum(np.tanh((X + x[0:3]) * x[3:5][:, None]))
    check(tape, f, rng.uniform(0.2, 0.9, 6), rng)


def test_negative_strides_and_axis_sums(rng):
    b = Builder(6)
    rev = b.map(code("square"), 1, 6, (5, 0, -1))                 # x[::-1] ** 2
    rows = b.sum(2, 3, (rev, 3, 1))                               # sum over axis 1
    cols = b.sum(3, 2, (rev, 1, 3))                               # sum over axis 0
    logs = b.map(code("log"), 1, 2, (rows, 0, 1))
    e = b.map(code("exp"), 1, 3, (cols, 0, 1))
    a = b.sum(1, 2, (logs, 0, 1))
    c = b.sum(1, 3, (e, 0, 1))
    total = b.scalar(code("add", K.VV), a, c)
    tape = b.tape([total], ())

    def f(x):
        R = (x[::-1] ** 2).reshape(2, 3)
        return np.sum(np.log(R.sum(axis=1))) + np.sum(np.exp(R.sum(axis=0)))
    check(tape, f, rng.uniform(0.2, 0.9, 6), rng)


def test_gather_copies_forward_and_scatter_adds_backward(rng):
    b = Builder(5)
    g = b.gather([4, 0, 0, 2, 4, 4])
    w = b.map(code("mul", K.VV), 1, 6, (g, 0, 1), (g, 0, 1))
    total = b.sum(1, 6, (w, 0, 1))
    tape = b.tape([total], ())
    check(tape, lambda x: np.sum(x[[4, 0, 0, 2, 4, 4]] ** 2), rng.uniform(0.2, 0.9, 5), rng)


@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_matmul_of_two_traced_matrices(layout, rng):
    # A = x[0:6] as (2, 3), B = x[6:12] as (3, 2) or as the transpose of a (2, 3).
    b = Builder(12)
    b_desc = (6, 2, 1) if layout == "rows" else (6, 1, 3)
    C = b.matmul(code("mul", K.VV), 2, 3, 2, (0, 3, 1), b_desc)
    s = b.map(code("sin"), 1, 4, (C, 0, 1))
    total = b.sum(1, 4, (s, 0, 1))
    tape = b.tape([total], ())

    def f(x):
        B = x[6:12].reshape(3, 2) if layout == "rows" else x[6:12].reshape(2, 3).T
        return np.sum(np.sin(x[0:6].reshape(2, 3) @ B))
    check(tape, f, rng.uniform(0.2, 0.9, 12), rng)


@pytest.mark.parametrize("constant", ["left", "right"])
def test_matmul_with_a_constant_matrix(constant, rng):
    W = rng.standard_normal((3, 4))
    b = Builder(6, consts=W.ravel())
    if constant == "right":     # X (2, 3) @ W (3, 4)
        C = b.matmul(code("mul", K.VC), 2, 3, 4, (0, 3, 1), (0, 4, 1))
        n_out = 8
    else:                       # W^T (4, 3) @ X^T (3, 2)
        C = b.matmul(code("mul", K.CV), 4, 3, 2, (0, 1, 4), (0, 1, 3))
        n_out = 8
    s = b.map(code("tanh"), 1, n_out, (C, 0, 1))
    total = b.sum(1, n_out, (s, 0, 1))
    tape = b.tape([total], ())

    def f(x):
        X = x.reshape(2, 3)
        return np.sum(np.tanh(X @ W if constant == "right" else W.T @ X.T))
    check(tape, f, rng.uniform(0.2, 0.9, 6), rng)


def test_a_vector_output_mixes_scalar_and_array_entries(rng):
    b = Builder(4)
    e = b.map(code("exp"), 1, 4, (0, 0, 1))
    y0 = b.scalar(code("mul", K.VV), e, e + 3)
    y = b.map(code("add", K.VV), 1, 3, (e + 1, 0, 1), (y0, 0, 0))
    tape = b.tape([y0, y, y + 1, y + 2], (4,))
    x = rng.uniform(0.2, 0.9, 4)

    def f(x):
        e = np.exp(x)
        return np.concatenate([[e[0] * e[3]], e[1:] + e[0] * e[3]])
    np.testing.assert_allclose(tape.forward(x), f(x), rtol=1e-14)
    J = np.array([(f(x + 1e-6 * d) - f(x - 1e-6 * d)) / 2e-6 for d in np.eye(4)]).T
    np.testing.assert_allclose(tape.jacobian(x), J, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tape.jacobian(x, mode="reverse"), J, rtol=1e-6, atol=1e-8)
    assert len(tape) == 3 and tape.n_ops == 3


BAD_DESCRIPTORS = [
    ("map reads a slot written later", MAP, [code("sin"), 1, 3, 2, 0, 1, 0, 0, 0], 3),
    ("map's grid runs past the slots", MAP, [code("sin"), 1, 3, 1, 0, 1, 0, 0, 0], 3),
    ("map of a negative stride below 0", MAP, [code("sin"), 1, 3, 1, 0, -1, 0, 0, 0], 3),
    ("map's grid does not match its slot count", MAP, [code("sin"), 2, 2, 0, 1, 0, 0, 0, 0], 3),
    ("map of a select", MAP, [code("select"), 1, 3, 0, 0, 1, 0, 0, 0], 3),
    ("map of a const", MAP, [code("const"), 1, 3, 0, 0, 1, 0, 0, 0], 3),
    ("map of an array entry", MAP, [MAP, 1, 3, 0, 0, 1, 0, 0, 0], 3),
    ("map of an invalid opcode", MAP, [255, 1, 3, 0, 0, 1, 0, 0, 0], 3),
    ("map reads a constant that does not exist", MAP,
     [code("mul", K.VC), 1, 3, 0, 0, 1, 5, 0, 1], 3),
    ("short map descriptor", MAP, [code("sin"), 1, 3], 3),
    ("sum reads more than exists", SUM, [1, 5, 0, 0, 1], 1),
    ("sum of nothing", SUM, [1, 0, 0, 0, 1], 1),
    ("sum of more reads than slots, by a zero stride", SUM, [1, 4, 0, 0, 0], 1),
    ("sum with more outputs than its count", SUM, [2, 1, 0, 1, 0], 1),
    ("gather of a later slot", GATHER, [0, 1, 3], 3),
    ("gather past the side table", GATHER, [0, 1], 3),
    ("matmul of an add", MATMUL, [code("add", K.VV), 1, 1, 1, 0, 1, 1, 1, 1, 1], 1),
    ("matmul of an unkinded mul", MATMUL, [code("mul"), 1, 1, 1, 0, 1, 1, 1, 1, 1], 1),
    ("matmul past its operands", MATMUL, [code("mul", K.VV), 2, 2, 1, 0, 2, 1, 0, 1, 1], 2),
    ("zero slots", MAP, [code("sin"), 1, 0, 0, 0, 1, 0, 0, 0], 0),
    ("negative slots", MAP, [code("sin"), 1, 3, 0, 0, 1, 0, 0, 0], -3),
]


@pytest.mark.parametrize("why, opcode, descriptor, n", BAD_DESCRIPTORS,
                         ids=[b[0] for b in BAD_DESCRIPTORS])
def test_a_descriptor_that_refers_to_nothing_is_refused(why, opcode, descriptor, n):
    with pytest.raises(wg.TapeFormatError, match="operation 0"):
        wg.Tape(opcodes=np.array([opcode], np.uint8), args=[(0, n)], consts=[1.0],
                aux=np.array(descriptor, np.int32), outputs=[3], in_shape=(3,), out_shape=())


def test_the_recorder_refuses_a_bad_array_entry_before_evaluating_it():
    from wengert._recorder import Recorder
    rec = Recorder(np.ones(3), np.zeros(0))
    with pytest.raises(wg.WengertError, match="refer to nothing"):
        rec.push_array(MAP, [code("sin"), 1, 3, 1, 0, 1, 0, 0, 0], 3)
    slot = rec.push_array(MAP, [code("exp"), 1, 3, 0, 0, 1, 0, 0, 0], 3)
    assert slot == 3
    np.testing.assert_array_equal(rec.values_of(np.arange(3, 6)), np.exp(np.ones(3)))
    with pytest.raises(wg.WengertError, match="not an array entry"):
        rec.push_array(code("sin"), [0], 1)
    with pytest.raises(wg.WengertError, match="array entry"):
        rec.push_one(MAP, 0, 3)
