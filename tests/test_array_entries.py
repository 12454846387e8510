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
from wengert import sparsity
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


def sum_of_sin_of_product(m, k, n, layout):
    """sum(sin(A @ B)) for A = x[:m*k] as (m, k) and B the rest of x, as
    (k, n) stored by rows or as the transpose of an (n, k) matrix."""
    b = Builder(m * k + k * n)
    b_desc = (m * k, n, 1) if layout == "rows" else (m * k, 1, k)
    C = b.matmul(code("mul", K.VV), m, k, n, (0, k, 1), b_desc)
    s = b.map(code("sin"), 1, m * n, (C, 0, 1))
    return b.tape([b.sum(1, m * n, (s, 0, 1))], ())


@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_matmul_of_two_traced_matrices(layout, rng):
    tape = sum_of_sin_of_product(2, 3, 2, layout)

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
    # A map's exp may be glibc's vector exp, accurate to 4 ulp.
    np.testing.assert_allclose(rec.values_of(np.arange(3, 6)), np.exp(np.ones(3)),
                               rtol=4 * np.finfo(float).eps)
    with pytest.raises(wg.WengertError, match="not an array entry"):
        rec.push_array(code("sin"), [0], 1)
    with pytest.raises(wg.WengertError, match="array entry"):
        rec.push_one(MAP, 0, 3)


@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_a_matrix_product_gives_the_same_bits_alone_and_in_a_batch(layout, rng):
    tape = sum_of_sin_of_product(3, 4, 3, layout)
    X = rng.standard_normal((5, 24))
    V = rng.standard_normal((24, 2))
    np.testing.assert_array_equal(tape.forward(X), [tape.forward(x) for x in X])
    np.testing.assert_array_equal(tape.gradient(X), [tape.gradient(x) for x in X])
    np.testing.assert_array_equal(tape.hvp(X, X), [tape.hvp(x, x) for x in X])
    for x in X[:2]:
        both = tape.hvp(x, V)
        for j in range(2):
            np.testing.assert_array_equal(both[:, j], tape.hvp(x, V[:, j]))
        np.testing.assert_array_equal(tape.jacobian(x), tape.jacobian(x, mode="reverse"))


def test_the_expansion_refuses_a_product_too_large_before_building_it():
    # A 2**11 x 2**11 by 2**11 x 2**11 product: 2**33 scalar operations.
    n = 2**11
    b = Builder(2 * n * n)
    C = b.matmul(code("mul", K.VV), n, n, n, (0, n, 1), (n * n, n, 1))
    tape = b.tape([C], ())
    with pytest.raises(wg.WengertError, match="too many"):
        tape._scalar_form()


def test_tools_read_an_array_tape(rng):
    n = 6
    b = Builder(n)
    sq = b.map(code("square"), 1, n, (0, 0, 1))
    g = b.gather([sq + 1, sq])
    prod = b.map(code("mul", K.VV), 1, 2, (g, 0, 1), (2, 0, 1))
    total = b.sum(1, 2, (prod, 0, 1))
    tape = b.tape([total], ())
    x = rng.uniform(0.2, 0.9, n)
    # f = x1**2 x2 + x0**2 x3
    J = sparsity.jacobian_sparsity(tape).toarray()
    assert J.tolist() == [[True, True, True, True, False, False]]
    H = sparsity.hessian_sparsity(tape).toarray()
    assert set(zip(*np.nonzero(H))) == {(0, 0), (0, 3), (3, 0), (1, 1), (1, 2), (2, 1)}
    np.testing.assert_allclose(sparsity.sparse_hessian(tape, x).toarray(),
                               tape.hessian(x), rtol=1e-14)
    np.testing.assert_allclose(sparsity.sparse_jacobian(tape, x).toarray()[0],
                               tape.gradient(x), rtol=1e-14)
    # The listing and the traces show the inputs and each array entry as one row.
    rows = tape.listing(x).splitlines()
    assert len(rows) == 1 + len(tape) + 1
    assert rows[0].startswith(f"v[{1 - n}:1]") and "= x " in rows[0]
    assert rows[1].startswith("v[1:7]") and "square(v[-5:1])" in rows[1]
    assert "sum(v[9:11])" in rows[-2]
    assert "gradient" in tape.trace(x, 1.0, mode="reverse")
    small = tape.optimize()
    assert len(small) == len(tape) and small.forward(x) == tape.forward(x)
    s = tape.stats()
    assert s["n_ops"] == 4 and s["by_kind"]["array"] == 4
    assert s["n_elementwise"] == n + 2 + 2 + 2


# ---- random NumPy programs, recorded both ways -------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _helpers import assert_rel, recorded_ops, scalar_recording  # noqa: E402

_UNARY = {"sin": np.sin, "tanh": np.tanh, "exp": lambda a: np.exp(0.3 * a),
          "square": np.square, "neg": np.negative, "log1p_abs": lambda a: np.log1p(a * a)}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply,
           "div": lambda a, b: a / (1.5 + b * b), "hypot": np.hypot, "maximum": np.maximum}
_CONSTANT = np.linspace(-0.7, 0.9, 12).reshape(3, 4)
_MATRIX = np.linspace(-1.0, 1.0, 20).reshape(4, 5)


@st.composite
def array_programs(draw):
    """Steps over arrays of shape (3, 4): each step applies one NumPy call
    to earlier arrays, views of them (a transposed copy, a reversed slice,
    a broadcast row or column) or constants."""
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["unary", "binary", "sum", "matmul", "view", "where"]))
        a = draw(st.integers(0, len(steps)))
        if kind == "unary":
            steps.append((kind, draw(st.sampled_from(sorted(_UNARY))), a))
        elif kind == "binary":
            other = draw(st.sampled_from(["array", "constant", "scalar", "row", "column"]))
            steps.append((kind, draw(st.sampled_from(sorted(_BINARY))), a, other,
                          draw(st.integers(0, len(steps))), draw(st.booleans())))
        elif kind == "sum":
            steps.append((kind, draw(st.sampled_from([0, 1, "cumsum0", "cumsum1"])), a))
        elif kind == "matmul":
            steps.append((kind, draw(st.booleans()), a))
        elif kind == "where":
            steps.append((kind, draw(st.floats(-0.5, 0.5)), a, draw(st.integers(0, len(steps)))))
        else:
            steps.append((kind, draw(st.sampled_from(["flip", "roll", "fancy"])), a))
    return steps


def run_program(steps, x):
    last = program_arrays(steps, x)
    return np.sum(last * np.linspace(0.5, 1.5, 12).reshape(3, 4)) + np.sum(last ** 2)


def program_arrays(steps, x):
    """The last array of the program ``steps`` on ``x``, shape (3, 4)."""
    arrays = [x.reshape(3, 4)]
    for step in steps:
        a = arrays[step[2]]
        if step[0] == "unary":
            out = _UNARY[step[1]](a)
        elif step[0] == "binary":
            other = {"array": lambda: arrays[step[4]], "constant": lambda: _CONSTANT,
                     "scalar": lambda: 0.75, "row": lambda: arrays[step[4]][1],
                     "column": lambda: arrays[step[4]][:, 2:3]}[step[3]]()
            out = _BINARY[step[1]](other, a) if step[5] else _BINARY[step[1]](a, other)
        elif step[0] == "sum" and isinstance(step[1], str):
            out = np.cumsum(a, axis=int(step[1][-1])) * 0.5
        elif step[0] == "sum":
            total = np.sum(a, axis=step[1], keepdims=True)
            out = a * 0.5 + total          # back to (3, 4) by broadcasting
        elif step[0] == "where":
            b = arrays[step[3]]
            out = wg.where(a > step[1], a * b, np.sin(b) + 0.0 * a)
        elif step[0] == "matmul":
            if step[1]:
                out = (a @ _MATRIX)[:, :4] + a        # traced @ constant
            else:
                out = a @ (a.T @ a) * 0.1              # traced @ traced
        else:
            out = {"flip": lambda: a[::-1, ::-1], "roll": lambda: np.roll(a, 1, axis=1),
                   "fancy": lambda: a[[2, 0, 1]][:, [3, 1, 0, 2]]}[step[1]]()
        arrays.append(out)
    return arrays[-1]


@settings(max_examples=60)
@given(steps=array_programs(), seed=st.integers(0, 2**16))
def test_random_programs_agree_recorded_as_arrays_and_as_scalars(steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, 12)

    def f(v):
        return run_program(steps, v)
    arrays = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    assert len(arrays) <= len(scalars)
    for point in (x, rng.uniform(-1.0, 1.0, 12)):
        value = arrays.forward(point)
        assert value == pytest.approx(scalars.forward(point), rel=1e-12, abs=1e-12)
        assert value == pytest.approx(f(point), rel=1e-12, abs=1e-12)
        g = arrays.gradient(point)
        scale = 1.0 + np.max(np.abs(g))
        np.testing.assert_allclose(g, scalars.gradient(point), rtol=1e-11, atol=1e-11 * scale)
        H = arrays.hessian(point)
        np.testing.assert_allclose(H, scalars.hessian(point), rtol=1e-10,
                                   atol=1e-10 * (1.0 + np.max(np.abs(H))))
    np.testing.assert_allclose(arrays.gradient(x), fd_gradient(f, x), rtol=1e-5,
                               atol=1e-5 * (1 + np.max(np.abs(arrays.gradient(x)))))
    # Sparsity of the array tape is that of its scalar form: the same
    # entries the scalar recording makes, up to exact cancellations.
    assert (sparsity.jacobian_sparsity(arrays).toarray()
            == sparsity.jacobian_sparsity(scalars).toarray()).all()
    assert (sparsity.hessian_sparsity(arrays).toarray()
            == sparsity.hessian_sparsity(scalars).toarray()).all()


def test_a_tape_with_array_entries_saves_as_format_version_2(tmp_path, rng):
    import json
    import zipfile
    x = rng.uniform(0.2, 0.9, 50)
    arrays = wg.record(lambda v: np.sum(np.sin(v) * v), x)
    with scalar_recording():
        scalars = wg.record(lambda v: np.sum(np.sin(v) * v), x)
    for tape, version in ((arrays, 2), (scalars, 1)):
        path = tmp_path / f"v{version}.wgt"
        tape.save(path)
        with zipfile.ZipFile(path) as z:
            header = json.loads(np.load(z.open("header.npy")).tobytes())
        assert header["version"] == version
        loaded = wg.load(path)
        assert len(loaded) == len(tape)
        np.testing.assert_array_equal(loaded.gradient(x), tape.gradient(x))


def test_a_version_1_file_with_array_entries_is_refused(tmp_path, rng):
    import shutil
    import zipfile
    x = rng.uniform(0.2, 0.9, 50)
    path = tmp_path / "t.wgt"
    wg.record(lambda v: np.sum(np.sin(v)), x).save(path)
    forged = tmp_path / "forged.wgt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "header.npy":
                text = np.load(src.open(item)).tobytes().replace(b'"version":2', b'"version":1')
                import io
                buffer = io.BytesIO()
                np.save(buffer, np.frombuffer(text, dtype=np.uint8))
                data = buffer.getvalue()
            dst.writestr(item, data)
    with pytest.raises(wg.TapeFormatError, match="array entries"):
        wg.load(forged)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("f", [
    lambda x: np.sum(x[np.arange(4)[:, None] + np.arange(3)], axis=1),   # moving sums
    lambda x: np.sum(x[np.zeros(20, int)]),
    lambda x: np.sum(np.tile(x, (50, 1)), axis=0),
    lambda x: np.mean(np.broadcast_to(x, (50, 6)), axis=0),
    lambda x: np.sum(np.broadcast_to(x[0], (100,))),
], ids=["windows", "one slot repeated", "tile", "broadcast mean", "broadcast scalar"])
def test_sums_over_repeated_slots_record_and_agree(f, rng):
    x = rng.uniform(0.2, 0.9, 6)
    tape = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    np.testing.assert_allclose(tape.forward(x), f(x), rtol=1e-14)
    np.testing.assert_allclose(tape.jacobian(x), scalars.jacobian(x), rtol=1e-13, atol=1e-13)


def test_a_product_with_an_infinite_element_keeps_zero_derivatives_zero():
    # -inf lands only in a column of B that f never reads: its derivative
    # products must be zero (azmul), as on scalar entries, not NaN.
    def f(x):
        return (x[:8].reshape(2, 4) @ np.log(x[8:]).reshape(4, 2))[0, 0]
    x = np.arange(1.0, 17.0)
    x[9] = 0.0
    tape = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    expected = scalars.gradient(x)
    assert np.isfinite(expected[:8]).all()
    # To rounding (a map's log may be glibc's vector log); zeros exactly.
    assert_rel(tape.gradient(x)[:8], expected[:8], rtol=1e-15)
    assert_rel(tape.jacobian(x)[:8], scalars.jacobian(x)[:8], rtol=1e-15)


def test_a_forged_product_of_an_enormous_inner_dimension_is_refused():
    # 50 bytes of tape that would take 2**43 multiply-adds: A and B would
    # read more elements than exist.
    with pytest.raises(wg.TapeFormatError, match="operation 0"):
        wg.Tape(opcodes=np.array([MATMUL], np.uint8), args=[(0, 64 * 64)], consts=[],
                aux=np.array([code("mul", K.VV), 64, 2**31 - 100, 64, 0, 0, 0, 0, 0, 0],
                             np.int32), outputs=[1], in_shape=(1,), out_shape=())


def test_tools_refuse_a_huge_array_entry_before_allocating(rng):
    # One map entry writing 2**30 slots: the tools' expansion is refused up
    # front (a replay would need the 8 GB it declares, tools need nothing).
    n = 2**30
    t = wg.Tape(opcodes=np.array([MAP], np.uint8), args=[(0, n)], consts=[],
                aux=np.array([code("sin"), 1, n, 0, 0, 0, 0, 0, 0], np.int32),
                outputs=[1], in_shape=(1,), out_shape=())
    with pytest.raises(wg.WengertError, match="too many"):
        sparsity.jacobian_sparsity(t)
    assert "v[1:1073741825] = sin(v[0])" in str(t)     # the listing needs no expansion
    assert t.optimize().n_ops == 1


def test_where_over_arrays_is_one_entry_and_a_nan_branch_never_leaks(rng):
    x = rng.uniform(-1.0, 1.0, 40)

    def f(v):
        return np.sum(wg.where(v > 0, np.sqrt(v), np.sin(v)))
    tape = wg.record(f, x)
    assert [name for name, _ in recorded_ops(tape)] == ["map", "map", "map", "where", "sum"]
    grad = tape.gradient(x)
    expected = np.where(x > 0, 0.5 / np.sqrt(np.abs(x)), np.cos(x))
    np.testing.assert_allclose(grad, expected, rtol=1e-14)
    assert np.isfinite(grad).all()        # sqrt of a negative x is NaN, never read
    with scalar_recording():
        scalars = wg.record(f, x)
    assert_rel(tape.hessian(x), scalars.hessian(x), rtol=1e-15)   # zeros exactly
    np.testing.assert_array_equal(
        sparsity.hessian_sparsity(tape).toarray(), sparsity.hessian_sparsity(scalars).toarray())


@pytest.mark.parametrize("reduce", [np.max, np.min, np.prod, lambda v: np.max(v, axis=1)],
                         ids=["max", "min", "prod", "max axis=1"])
def test_other_reductions_record_a_map_entry_per_tree_level(reduce, rng):
    x = rng.uniform(0.5, 1.5, (4, 50))
    x[1, 7] = x[1, 30]           # a tie: each side takes half, as on scalar entries

    def f(v):
        return np.sum(reduce(v * 1.5))
    tape = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    assert len(tape) <= 20 and len(scalars) > 200
    assert tape.forward(x) == scalars.forward(x)
    np.testing.assert_array_equal(tape.gradient(x), scalars.gradient(x))


def test_the_compact_tape_of_an_array_tape_keeps_the_inputs_its_descriptors_read(rng):
    from wengert._compact import compact
    x = rng.uniform(0.2, 0.9, 100)
    tape = wg.record(lambda v: np.sum(np.sin(v[:10])), x)
    c = compact(tape)
    assert c.n_inputs == 10 and c.inputs.tolist() == list(range(10))
    assert compact(tape._scalar_form()).n_inputs == 10
    np.testing.assert_allclose(tape.sparse_jacobian(x).toarray()[0], tape.gradient(x))


@pytest.mark.parametrize("kind", ["sum", "cumsum", "matmul"])
def test_a_tape_reading_one_input_many_times_has_sparsity_patterns(kind, rng):
    # Valid: 8 reads of input 1 (stride 0) in a tape of 12 inputs. Its
    # compact tape, input 1 alone, would read 8 elements of 1 slot, which a
    # tape refuses: the patterns raised TapeFormatError on this valid tape.
    b = Builder(12, consts=np.linspace(0.5, 1.5, 8))
    if kind == "sum":
        s = b.sum(1, 8, (1, 0, 0))
    elif kind == "cumsum":
        s = b.entry(ops.code_of("cumsum"), [1, 8, 1, 0, 0], 8) + 7
    else:
        s = b.matmul(code("mul", K.VC), 1, 8, 1, (1, 0, 0), (0, 1, 0))
    tape = b.tape([s], (1,))
    x = rng.uniform(0.2, 0.9, 12)
    scalars = tape._scalar_form()
    for pattern in ("jacobian_sparsity", "hessian_sparsity"):
        assert (getattr(tape, pattern)() != getattr(scalars, pattern)()).nnz == 0
    assert tape.jacobian_sparsity().nnz == 1
    np.testing.assert_allclose(tape.sparse_jacobian(x).toarray(), tape.jacobian(x))


@settings(max_examples=60)
@given(steps=array_programs(), offset=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_the_compact_tape_of_an_array_tape_gives_the_same_derivatives(steps, offset, seed):
    # The program reads 12 of 50 inputs (from `offset`, and one more at the
    # end): its compact tape keeps those 13, its grids moved with them.
    from wengert._compact import compact

    def f(v):
        return run_program(steps, v[offset:offset + 12]) * v[-1]
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, 50)
    tape = wg.record(f, x)
    c = compact(tape)
    assert c.inputs.tolist() == list(range(offset, offset + 12)) + [49]
    X = x[c.inputs]
    assert c.tape.forward(X) == tape.forward(x)
    np.testing.assert_array_equal(c.tape.gradient(X), tape.gradient(x)[c.inputs])
    np.testing.assert_array_equal(c.tape.hessian(X),
                                  tape.hessian(x)[np.ix_(c.inputs, c.inputs)])
    assert tape.jacobian_sparsity().nnz == c.tape.jacobian_sparsity().nnz
    assert (tape.hessian_sparsity()[c.inputs][:, c.inputs] != c.tape.hessian_sparsity()).nnz == 0


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_cumsum_is_one_entry(axis, rng):
    x = rng.uniform(-1.0, 1.0, (5, 40))

    def f(v):
        return np.sum(np.sin(np.cumsum(v, axis=axis)))
    tape = wg.record(f, x)
    assert [name for name, _ in recorded_ops(tape)] == ["cumsum", "map", "sum"]
    with scalar_recording():
        scalars = wg.record(f, x)
    y = rng.uniform(-1.0, 1.0, (5, 40))
    # (The running sums are the same bits; the final sums add in another order.)
    assert tape.forward(y) == pytest.approx(scalars.forward(y), rel=1e-14)
    np.testing.assert_allclose(tape.gradient(y), scalars.gradient(y), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(tape.hvp(y, x), scalars.hvp(y, x), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(tape.forward(np.stack([x, y])), [tape.forward(x), tape.forward(y)])
    assert (sparsity.jacobian_sparsity(tape).toarray()
            == sparsity.jacobian_sparsity(scalars).toarray()).all()


@pytest.mark.parametrize("f", [
    lambda v: np.sum(np.tanh(v.reshape(3, 4, 4) @ v.reshape(3, 4, 4))),
    lambda v: np.sum(v.reshape(3, 4, 4) @ _MATRIX),
    lambda v: np.sum(_MATRIX.T @ v.reshape(3, 4, 4)),
    lambda v: np.sum(v[:4] @ v.reshape(3, 4, 4)),
    lambda v: np.sum(v.reshape(3, 1, 4, 4) @ v.reshape(1, 3, 4, 4)),
], ids=["stack @ stack", "stack @ constant", "constant @ stack", "vector @ stack",
        "broadcast stacks"])
def test_a_stack_of_matrix_products_records_a_matmul_entry_per_matrix(f, rng):
    x = rng.uniform(-1.0, 1.0, 48)
    tape = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    assert len(tape) < 20 < len(scalars)
    assert tape.forward(x) == pytest.approx(f(x), rel=1e-13)
    np.testing.assert_allclose(tape.gradient(x), scalars.gradient(x), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tape.hessian(x), scalars.hessian(x), rtol=1e-12, atol=1e-13)
    # A constant matrix is pooled once for the whole stack.
    assert tape.stats()["n_consts"] <= _MATRIX.size + 1


def test_the_listing_describes_every_kind_of_array_entry(rng):
    """Each array row of ``_opcodes.ARRAY_LAYOUTS`` has a listing rule."""
    def f(v):
        A = v.reshape(3, 4)
        h = np.tanh(A @ _MATRIX)                          # matmul, map
        y = wg.where(h > 0, h, 0.5 * h)                   # where
        c = np.cumsum(A, axis=1) + np.cumsum(v)[:4]        # cumsum by rows and whole
        return np.sum(y) + np.sum(c) + np.sum(v[[0, 5, 2, 7, 1, 1, 3, 4]] * v[:8])  # gather
    x = rng.uniform(-1.0, 1.0, 12)
    tape = wg.record(f, x)
    names = {name for name, _ in recorded_ops(tape)}
    assert {op.name for op in ops.OPERATIONS if op.arity == ops.ARRAY} <= names
    text = tape.listing(x)
    for word in ("@", "tanh(", " if ", "cumsum of each row", "cumsum(", "gather(", "sum("):
        assert word in text, word


def test_threads_replaying_one_array_tape_get_the_bits_of_one_thread(rng):
    from concurrent.futures import ThreadPoolExecutor
    W = rng.standard_normal((30, 20))

    def f(v):
        h = np.tanh(v.reshape(10, 30) @ W)
        return np.sum(np.cumsum(h, axis=1) ** 2) + np.sum(wg.where(h > 0, h, -h))
    tape = wg.record(f, rng.standard_normal(300))
    points = [rng.standard_normal(300) for _ in range(16)]
    expected = [(tape.gradient(x), tape.hvp(x, x)) for x in points]

    def work(k):
        x = points[k % len(points)]
        return k, tape.gradient(x), tape.hvp(x, x)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for k, g, h in pool.map(work, range(64)):
            np.testing.assert_array_equal(g, expected[k % len(points)][0])
            np.testing.assert_array_equal(h, expected[k % len(points)][1])


def test_a_long_stack_of_small_products_records_few_entries(rng):
    x = rng.uniform(-1.0, 1.0, 4 * 3000)

    def f(v):
        A = v.reshape(3000, 2, 2)
        return np.sum(np.sin(A @ A))
    tape = wg.record(f, x)
    assert len(tape) < 10
    assert tape.forward(x) == pytest.approx(f(x), rel=1e-13)
    with scalar_recording():
        scalars = wg.record(f, x)
    np.testing.assert_allclose(tape.gradient(x), scalars.gradient(x), rtol=1e-12, atol=1e-13)


# ---- sparsity reads array entries natively ---------------------------------------------

def same_pattern(a, b):
    return a.shape == b.shape and (a != b).nnz == 0


@settings(max_examples=120)
@given(steps=array_programs(), vector=st.booleans(), seed=st.integers(0, 2**16))
def test_sparsity_of_array_entries_is_that_of_their_expansion(steps, vector, seed):
    # The native passes over array entries against the oracle, the same
    # passes over the tape's expansion into scalar entries, and against the
    # program recorded with scalar entries; the sparse derivatives against
    # the dense ones.
    def f(v):
        return program_arrays(steps, v) * 1.5 if vector else run_program(steps, v)
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, 12)
    tape = wg.record(f, x)
    expanded = tape._scalar_form()
    with scalar_recording():
        scalars = wg.record(f, x)
    for pattern in (sparsity.jacobian_sparsity, sparsity.hessian_sparsity):
        native = pattern(tape)
        assert same_pattern(native, pattern(expanded))
        assert same_pattern(native, pattern(scalars))
    np.testing.assert_allclose(sparsity.sparse_jacobian(tape, x).toarray(),
                               tape.jacobian(x).reshape(-1, 12), rtol=1e-12, atol=1e-12)
    w = np.linspace(-1.0, 1.0, tape.n_outputs).reshape(tape.out_shape) if vector else None
    H = tape.hessian(x) if not vector else sum(
        w.reshape(-1)[k] * wg.record(lambda v, k=k: f(v).reshape(-1)[k], x).hessian(x)
        for k in range(tape.n_outputs))
    np.testing.assert_allclose(sparsity.sparse_hessian(tape, x, w=w).toarray(), H,
                               rtol=1e-10, atol=1e-10 * (1 + np.abs(H).max()))


def test_sparsity_of_every_kind_of_array_entry(rng):
    # Kinds the random programs do not reach: a constant matrix times a
    # traced one, a quotient by a traced array (curved in its divisor
    # only), sums with rows, and a vector output read one element at a time.
    C = np.linspace(-1.0, 1.0, 15).reshape(5, 3)

    def f(v):
        a = v.reshape(3, 4)
        left = C @ np.tanh(a)                        # (5, 4): constant @ traced
        ratio = 2.0 / (1.5 + a * a)                  # constant / traced
        rows = np.sum(a * a[:, ::-1], axis=1)        # a sum per row
        running = np.cumsum(np.minimum(a, 0.2), axis=0)
        chosen = wg.where(a > 0, np.sin(a), a[::-1] ** 2)   # branches of other inputs
        gram = a @ a.T                               # traced @ traced: cross terms only
        return np.concatenate([left.ravel(), ratio.ravel(), rows, running[:, 1],
                               [a[1, 1] * a[2, 3]], chosen.ravel(), gram.ravel()])
    x = rng.uniform(-1.0, 1.0, 12)
    tape = wg.record(f, x)
    assert {"matmul", "map", "sum", "cumsum", "where"} <= {name for name, _ in recorded_ops(tape)}
    expanded = tape._scalar_form()
    for pattern in (sparsity.jacobian_sparsity, sparsity.hessian_sparsity):
        assert same_pattern(pattern(tape), pattern(expanded))
    J = sparsity.jacobian_sparsity(tape).toarray()
    assert not ((tape.jacobian(x) != 0) & ~J).any()             # every nonzero is in it
    assert J[20:32].sum() == 12 and J[36, 1] and J[36, 5] and J[36].sum() == 2   # ratio, cumsum
    assert [J[39 + k].nonzero()[0].tolist() for k in (0, 5)] == [[0, 8], [5]]  # where
    H = sparsity.hessian_sparsity(tape).toarray()
    assert H[5, 11] and H[11, 5] and not H[0, 1] and H[8, 8]
    assert H[0, 4] and H[4, 0] and not H[0, 5]               # a[0, 0] a[1, 0] in gram[0, 1]
    np.testing.assert_allclose(sparsity.sparse_jacobian(tape, x).toarray(), tape.jacobian(x),
                               rtol=1e-13)


def test_sparsity_of_a_product_too_large_to_expand():
    # 2**8 x 2**8 @ 2**8 x 2**8 summed: read natively, with each element of
    # the product left lazy (one consumer) as its expansion's sums would be.
    n = 2**8
    b = Builder(2 * n * n)
    C = b.matmul(code("mul", K.VV), n, n, n, (0, n, 1), (n * n, n, 1))
    total = b.sum(1, n * n, (C, 0, 1))
    out = b.map(code("mul", K.VV), 1, 16, (total, 0, 0), (0, 0, 1))
    tape = b.tape(list(range(out, out + 16)), (16,))
    J = sparsity.jacobian_sparsity(tape)
    assert J.shape == (16, 2 * n * n) and J.nnz == 16 * 2 * n * n
