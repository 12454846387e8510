"""Map entries evaluate libm functions four at a time (glibc's libmvec).

Where the CPU has AVX2 and glibc ships libmvec, a map entry of exp, sin,
tanh... calls the vector variants for every element of every sweep; scalar
entries keep scalar libm. These tests pin what that promises: the values
are within 4 ulps of the exact result (libmvec's documented bound), an
element has the same bits on every path (alone, in a batch, along any
number of directions, in every sweep), the derivatives agree with the
scalar entries to rounding, and WENGERT_VECTOR_MATH=0 gives back scalar
libm's bits exactly.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops
from wengert import _sweeps

from _helpers import assert_rel, recorded_ops, scalar_recording, ulps_apart

VECTORISED = [op for op in ops.OPERATIONS if op.vector]

# Inputs spanning each function's domain (log-uniform magnitudes where the
# domain is wide), including where libm switches algorithms.
DOMAINS = {
    "cbrt": ("signed-wide", 1e-300, 1e300), "exp": ("uniform", -700.0, 700.0),
    "expm1": ("uniform", -40.0, 700.0), "log": ("wide", 1e-300, 1e300),
    "log1p": ("uniform", -0.999, 1e6), "log2": ("wide", 1e-300, 1e300),
    "log10": ("wide", 1e-300, 1e300), "sin": ("signed-wide", 1e-8, 1e5),
    "cos": ("signed-wide", 1e-8, 1e5), "tan": ("signed-wide", 1e-8, 1e5),
    "arcsin": ("uniform", -1.0, 1.0), "arccos": ("uniform", -1.0, 1.0),
    "arctan": ("signed-wide", 1e-10, 1e10), "sinh": ("uniform", -700.0, 700.0),
    "cosh": ("uniform", -700.0, 700.0), "tanh": ("uniform", -20.0, 20.0),
    "arcsinh": ("signed-wide", 1e-10, 1e10), "arccosh": ("wide", 1.0, 1e10),
    "arctanh": ("uniform", -0.999999, 0.999999), "erf": ("uniform", -6.0, 6.0),
    "erfc": ("uniform", -6.0, 27.0),
}
# The long double function that gives an exact-enough reference (x87 long
# double carries 11 more bits than double).
LONG_DOUBLE = {name: getattr(np, name) for name in DOMAINS if name not in ("erf", "erfc")}
MAX_ULPS = 4


def sample(name, n, rng):
    kind, low, high = DOMAINS[name]
    if kind == "uniform":
        return rng.uniform(low, high, n)
    magnitudes = np.exp(rng.uniform(np.log(low), np.log(high), n))
    return magnitudes * (rng.choice([-1.0, 1.0], n) if kind == "signed-wide" else 1.0)


def reference(name, x):
    if name in LONG_DOUBLE:
        with np.errstate(all="ignore"):
            return LONG_DOUBLE[name](x.astype(np.longdouble)).astype(np.float64)
    return np.array([getattr(math, name)(v) for v in x])


def map_entry(name, n):
    """A tape of one map entry: op(x) over n elements."""
    tape = wg.record(lambda v: getattr(wg, name)(v), np.full(n, 0.5 if name != "arccosh" else 2.0))
    assert [kind for kind, _ in recorded_ops(tape)] == ["map"]
    return tape


def test_the_table_names_only_functions_its_kernels_call():
    """`vector` names each row's value function and, where the partial is
    a libm call of {a}, that call: the printed partial says which."""
    for op in VECTORISED:
        assert op.arity == 1
        if len(op.vector) > 1:
            name = op.vector[1].lstrip("-")
            assert op.partials[0].lstrip("-") == f"{name}({{a}})", op.name


def test_the_backend_is_reported():
    assert _sweeps.vector_math in ("avx2", "none")


@pytest.mark.parametrize("op", VECTORISED, ids=[op.name for op in VECTORISED])
def test_values_are_within_four_ulps_of_exact(op, rng):
    x = sample(op.name, 20_001, rng)       # not a multiple of 4: the tail too
    tape = map_entry(op.name, x.size)
    with np.errstate(all="ignore"):
        values = tape.forward(x)
    distance = ulps_apart(values, reference(op.name, x))
    worst = int(np.argmax(distance))
    assert distance[worst] <= MAX_ULPS, (
        f"{op.name}({x[worst]!r}) = {values[worst]!r}, {distance[worst]:.3g} ulps from "
        f"{reference(op.name, x[worst:worst + 1])[0]!r} ({_sweeps.vector_math})")


@pytest.mark.parametrize("op", VECTORISED, ids=[op.name for op in VECTORISED])
def test_an_element_has_the_same_bits_on_every_path(op, rng):
    kind, low, high = DOMAINS[op.name]
    x = sample(op.name, 13, rng) if kind == "uniform" else rng.uniform(1.1, 3.0, 13)
    weights = rng.uniform(0.5, 1.5, 13)
    # Squared, so that tangents and second order read the sweeps' values.
    tape = wg.record(lambda v: np.sum(getattr(wg, op.name)(v) ** 2 * weights), x)
    batch = np.stack([x, x[::-1], x])
    value, gradient = tape.forward(x), tape.gradient(x)
    np.testing.assert_array_equal(tape.forward(batch), [value, tape.forward(x[::-1]), value])
    np.testing.assert_array_equal(tape.gradient(batch)[2], gradient)
    directions = rng.standard_normal((3, 13))
    tangents = tape.jvp(x, directions.T)
    for k in range(3):
        np.testing.assert_array_equal(tangents[k], tape.jvp(x, directions[k]))
    np.testing.assert_array_equal(tape.jvp(batch, np.stack([directions[0]] * 3))[2], tangents[0])
    # Forward mode recomputes values: on a wide sample, the tangents of
    # op(x)**2 (2 r r') equal its reverse-mode adjoints only if the forward
    # sweep's r has the values sweep's bits.
    wide = sample(op.name, 4001, rng)
    squared = wg.record(lambda v: getattr(wg, op.name)(v) ** 2, wide)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(squared.jvp(wide, np.ones(wide.size)),
                                      squared.vjp(wide, np.ones(wide.size)))
    hessian = tape.hessian(x)
    for k in (0, 12):
        np.testing.assert_array_equal(tape.hvp(x, np.eye(13)[k]), hessian[:, k])


@pytest.mark.parametrize("op", VECTORISED, ids=[op.name for op in VECTORISED])
def test_derivatives_agree_with_scalar_entries(op, rng):
    kind, low, high = DOMAINS[op.name]
    x = (sample(op.name, 11, rng) if kind == "uniform" and high - low < 50
         else rng.uniform(1.1, 3.0, 11))
    def f(v):
        return np.sum(getattr(wg, op.name)(v) * v[::-1])
    tape = wg.record(f, x)
    with scalar_recording():
        scalars = wg.record(f, x)
    assert len(tape) < len(scalars)
    assert_rel(tape.forward(x), scalars.forward(x), rtol=1e-14)
    assert_rel(tape.gradient(x), scalars.gradient(x), rtol=1e-13)
    assert_rel(tape.hessian(x), scalars.hessian(x), rtol=1e-13, atol=1e-300)


def test_turning_vector_math_off_gives_scalar_libms_bits():
    script = """
import numpy as np, wengert as wg
from wengert import _sweeps, _opcodes as ops
from wengert._array_recording import scalar_entries
assert _sweeps.vector_math == "none", _sweeps.vector_math
for op in ops.OPERATIONS:
    if op.vector:
        x = np.linspace(0.1, 0.9, 21) + (1.0 if op.name == "arccosh" else 0.0)
        f = getattr(wg, op.name)
        tape = wg.record(f, x)
        with scalar_entries():
            scalars = wg.record(f, x)
        assert len(tape) == 1 and len(scalars) == 21, op.name
        assert (tape.forward(x) == scalars.forward(x)).all(), op.name
        assert (tape.jacobian(x) == scalars.jacobian(x)).all(), op.name
print("ok")
"""
    env = dict(os.environ, WENGERT_VECTOR_MATH="0")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
