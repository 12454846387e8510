"""The fixed problem suite every wengert benchmark runs.

Each problem is written once as plain NumPy code. The same function runs on
float64 arrays (the NumPy control and the finite differences), on
``np.longdouble`` arrays (the accurate reference), and on wengert's traced
arrays (recording). Each has a closed-form gradient, also plain NumPy, and a
deterministic starting point.

Errors are measured against the closed forms evaluated in ``np.longdouble``
(80-bit extended precision on x86-64 Linux, 11 more bits than float64), so
the reference contributes nothing visible to a 1e-13 comparison. Where
``longdouble`` is only float64 (Windows, macOS on ARM) the reference is the
float64 closed form, still accurate to a few units in the last place.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

#: Problem sizes of the replay benchmarks.
SIZES = (10**2, 10**4, 10**6)

#: Sizes at which scipy's finite differences (n + 1 evaluations of f) finish.
FD_SIZES = (10**2, 10**4)

#: Tolerance for wengert's values and gradients (relative, max-norm).
RTOL = 1e-13


# ---- the functions --------------------------------------------------------------

def rosenbrock(x):
    """Extended Rosenbrock: sum of 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2."""
    a = x[:-1]
    b = x[1:]
    return np.sum(100.0 * (b - a**2)**2 + (1.0 - a)**2)


def rosenbrock_gradient(x):
    a = x[:-1]
    b = x[1:]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a**2)
    return g


def speelpenning(x):
    """Speelpenning's product: the product of all x[i]."""
    return np.prod(x)


def speelpenning_gradient(x):
    # d/dx_i prod(x) = prod(x) / x_i; the starting points keep every x_i near 1.
    return np.prod(x) / x


def transcendental(x):
    """Sum of sin(x[i]) exp(cos(x[i+1])) + log(1 + x[i]**2) + tanh(x[i] x[i+1])."""
    a = x[:-1]
    b = x[1:]
    return np.sum(np.sin(a) * np.exp(np.cos(b)) + np.log(1.0 + a**2) + np.tanh(a * b))


def transcendental_gradient(x):
    a = x[:-1]
    b = x[1:]
    e = np.exp(np.cos(b))
    sech2 = 1.0 / np.cosh(a * b)**2
    g = np.zeros_like(x)
    g[:-1] = np.cos(a) * e + 2.0 * a / (1.0 + a**2) + b * sech2
    g[1:] += -np.sin(a) * np.sin(b) * e + a * sech2
    return g


# ---- starting points --------------------------------------------------------------

def _rosenbrock_start(n):
    # Away from the minimum at all ones, so the gradient is far from zero.
    return 1.0 + 0.5 * np.sin(np.arange(n))


def _speelpenning_start(n):
    # x_i = exp(0.1 sin i): positive, near 1, and prod(x) = exp(0.1 sum sin i)
    # stays in [0.8, 1.3] for every n (|sum sin i| <= 1 / sin(1/2)), so
    # neither the product nor its gradient under- or overflows.
    return np.exp(0.1 * np.sin(np.arange(n)))


def _transcendental_start(n):
    return 0.5 + np.sin(np.arange(n))


# ---- the suite ----------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    name: str
    f: Callable
    gradient: Callable
    start: Callable          # n -> float64 starting point of length n

    def __repr__(self):
        return self.name


PROBLEMS = (
    Problem("rosenbrock", rosenbrock, rosenbrock_gradient, _rosenbrock_start),
    Problem("speelpenning", speelpenning, speelpenning_gradient, _speelpenning_start),
    Problem("transcendental", transcendental, transcendental_gradient, _transcendental_start),
)
BY_NAME = {p.name: p for p in PROBLEMS}


def survey(x):
    """The survey's running example (Baydin et al. 2018, tables 2 and 3)."""
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def survey_gradient(x):
    return np.array([1.0 / x[0] + x[1], x[0] - np.cos(x[1])])


SURVEY_POINT = np.array([2.0, 5.0])


def rosenbrock_loop(x):
    """Rosenbrock as a scalar Python loop: one traced scalar operation at a time."""
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100 * (x[i + 1] - x[i]**2)**2 + (1 - x[i])**2
    return s


# ---- references and errors --------------------------------------------------------------

@lru_cache(maxsize=None)
def point(name, n):
    """The starting point of problem ``name`` at size ``n`` (cached: do not modify)."""
    # Not flagged read-only: wg.record rejects read-only inputs (Recorder
    # takes a writable memoryview).
    return BY_NAME[name].start(n)


@lru_cache(maxsize=None)
def reference(name, n):
    """``(f, gradient)`` at the starting point, in extended precision, as float64."""
    problem = BY_NAME[name]
    x = point(name, n).astype(np.longdouble)
    value = float(problem.f(x))
    grad = problem.gradient(x).astype(np.float64)
    grad.setflags(write=False)
    return value, grad


def rtol(name, n):
    """Relative tolerance for wengert's value and gradient of ``name`` at ``n``.

    ``RTOL`` (1e-13), except for Speelpenning's product at large n: every one
    of its n - 1 multiplications rounds, and each rounding error reaches the
    product in full (a tree order does not help, unlike for sums), so its
    error grows like sqrt(n) units in the last place: ~3e-14 at n = 10^6
    with ~1e-13 still typical. Allow 2 sqrt(n) eps there (4.4e-13 at 10^6).
    """
    if name == "speelpenning":
        return max(RTOL, 2.0 * np.sqrt(n) * np.finfo(np.float64).eps)
    return RTOL


def rel_error(computed, expected):
    """Max-norm relative error: max |computed - expected| / max |expected|."""
    computed = np.asarray(computed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected))
    return float(np.max(np.abs(computed - expected)) / (scale if scale else 1.0))


# ---- a two-layer perceptron -------------------------------------------------------
# 784 -> 128 -> 10, tanh, batch 256, squared error, differentiated with
# respect to all its weights (flattened into one vector).

MLP_LAYERS = ((784, 128), (128, 10))
MLP_BATCH = 256


def _mlp_data():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((MLP_BATCH, MLP_LAYERS[0][0]))
    targets = rng.standard_normal((MLP_BATCH, MLP_LAYERS[1][1]))
    weights = np.concatenate([rng.standard_normal(m * n) / np.sqrt(m) for m, n in MLP_LAYERS]
                             + [np.zeros(n) for _, n in MLP_LAYERS])
    return images, targets, weights


MLP_IMAGES, MLP_TARGETS, MLP_WEIGHTS = _mlp_data()


def _mlp_unpack(w):
    (m1, n1), (m2, n2) = MLP_LAYERS
    at = np.cumsum([0, m1 * n1, m2 * n2, n1, n2])
    return (w[at[0]:at[1]].reshape(m1, n1), w[at[1]:at[2]].reshape(m2, n2),
            w[at[2]:at[3]], w[at[3]:at[4]])


def mlp_loss(w):
    W1, W2, b1, b2 = _mlp_unpack(w)
    hidden = np.tanh(MLP_IMAGES @ W1 + b1)
    return np.mean((hidden @ W2 + b2 - MLP_TARGETS) ** 2)


def mlp_gradient(w):
    """The hand-written gradient: backpropagation in NumPy."""
    W1, W2, b1, b2 = _mlp_unpack(w)
    hidden = np.tanh(MLP_IMAGES @ W1 + b1)
    error = hidden @ W2 + b2 - MLP_TARGETS
    d_out = 2.0 * error / error.size
    d_hidden = (d_out @ W2.T) * (1.0 - hidden ** 2)
    return np.concatenate([(MLP_IMAGES.T @ d_hidden).ravel(), (hidden.T @ d_out).ravel(),
                           d_hidden.sum(axis=0), d_out.sum(axis=0)])


#: The array-entry cases: (f, hand-written NumPy gradient, point) by name,
#: each at the size of the issue's table (n = 10^6; the perceptron above).
ARRAY_CASES = {
    "rosenbrock": (rosenbrock, rosenbrock_gradient, lambda: point("rosenbrock", 10**6)),
    "transcendental": (transcendental, transcendental_gradient,
                       lambda: point("transcendental", 10**6)),
    "mlp": (mlp_loss, mlp_gradient, lambda: MLP_WEIGHTS),
}
