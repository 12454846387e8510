"""Problems of the second-order and sparsity benchmarks.

Like ``problems.py``: each function is plain NumPy code that runs on
float64, on ``np.longdouble`` and on wengert's traced arrays, and each has a
closed-form derivative (a Jacobian, a Hessian, a gradient) evaluated in
``np.longdouble`` and rounded to float64 once, so that the reference adds
nothing visible to a 1e-13 comparison.

* ``rosenbrock`` (from ``problems.py``): its Hessian is tridiagonal,
  ``H[i, i] = 1200 x_i^2 - 400 x_{i+1} + 2 + 200 [i > 0]`` (the first part
  for i < n - 1) and ``H[i, i+1] = -400 x_i``: a star colouring needs 3
  colours at any n.
* ``bratu``: the discretised Bratu problem
  ``F_i = x_{i-1} - 2 x_i + x_{i+1} + h^2 lambda exp(x_i)`` with
  ``x_0 = x_{n+1} = 0``, ``h = 1/(n+1)``, ``lambda = 1``: a tridiagonal
  (symmetric) Jacobian, 3 column colours at any n.
* ``cppad_jac``: CppAD's ``sparse_jac_fun`` speed problem,
  ``f[row[k]] += exp(x[col[k]]^2 / 2)`` over ``K = 3n`` random (row, col)
  pairs (m = n outputs); ``J[i, j] = x_j exp(x_j^2 / 2)`` times the number
  of pairs (i, j).
* ``cppad_hes``: CppAD's ``sparse_hes_fun`` speed problem,
  ``f = sum_k exp(x[row[k]] x[col[k]])`` over ``K = 3n`` random pairs.

The random pairs and points are seeded (NumPy's PCG64), so every run and
every machine records the same tapes. Writing ``f[row[k]] += ...`` without
``np.add.at`` (not available on traced arrays) is :func:`segment_sum`: one
addition per term beyond the first of each output, so the tape stays
O(K) long.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from benchmarks import problems as P

#: Random (row, col) pairs per input of the CppAD problems.
PAIRS_PER_INPUT = 3

#: The Bratu problem's lambda.
BRATU_LAMBDA = 1.0

_SEED = {"cppad_jac": 20240601, "cppad_hes": 20240602}


# ---- segment sums ----------------------------------------------------------------

def segment_sum(terms, rows, m):
    """``out[i] = sum(terms[k] for k with rows[k] == i)``, ``out`` of length ``m``.

    ``terms`` is a 1-D float64, long double or traced array; ``rows`` a
    constant integer array of the same length. Terms are gathered in row
    order (free on a traced array: indexing records nothing), and the rows
    with ``c`` terms are summed together as one ``(rows, c)`` block, one
    tree sum per row, so the tape gets ``len(terms) - (rows with a term)``
    additions and the Python loop runs once per distinct row length (about
    a dozen). Rows without terms are a constant 0.
    """
    rows = np.asarray(rows)
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=m)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gathered = terms[order]
    pieces = []
    position = np.full(m, -1, dtype=np.intp)     # row -> its sum in pieces
    filled = 0
    for c in np.unique(counts[counts > 0]):
        block_rows = np.flatnonzero(counts == c)
        block = gathered[starts[block_rows][:, None] + np.arange(c)]
        pieces.append(block.sum(axis=1))
        position[block_rows] = filled + np.arange(block_rows.size)
        filled += block_rows.size
    pieces.append(np.zeros(1))                   # the empty rows' 0
    position[position < 0] = filled
    return np.concatenate(pieces)[position]


# ---- helpers ------------------------------------------------------------------------

def _readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays if len(arrays) > 1 else arrays[0]


def _csr(rows, cols, values, n):
    """float64 CSR of long double entries (duplicates summed in long double
    first, then rounded once)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    key = rows * n + cols
    unique, inverse = np.unique(key, return_inverse=True)
    summed = np.zeros(unique.size, dtype=np.longdouble)
    np.add.at(summed, inverse, values)
    m = sp.csr_matrix((summed.astype(np.float64), (unique // n, unique % n)), shape=(n, n))
    m.sort_indices()
    return m


def _tridiagonal(diag, off):
    """Symmetric tridiagonal CSR from long double bands."""
    n = diag.size
    i = np.arange(n)
    rows = np.concatenate([i, i[:-1], i[1:]])
    cols = np.concatenate([i, i[1:], i[:-1]])
    values = np.concatenate([diag, off, off])
    return _csr(rows, cols, values, n)


def _tridiagonal_matvec(diag, off, v):
    out = diag * v
    out[:-1] += off * v[1:]
    out[1:] += off * v[:-1]
    return out


def sparse_rel_error(computed, expected):
    """Max-norm relative error of two sparse matrices (entries absent from
    one count as zeros)."""
    scale = abs(expected).max()
    difference = abs(sp.csr_matrix(computed, dtype=np.float64) - expected)
    return float(difference.max() / (scale if scale else 1.0))


def same_pattern(computed, expected):
    """Whether two CSR matrices hold exactly the same (sorted) entry positions."""
    a = sp.csr_matrix(computed)
    b = sp.csr_matrix(expected)
    a.sort_indices()
    b.sort_indices()
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices))


# ---- Rosenbrock's Hessian ------------------------------------------------------------

def rosenbrock_hessian_bands(x):
    """Diagonal and super-diagonal of the extended Rosenbrock Hessian."""
    a = x[:-1]
    b = x[1:]
    diag = np.zeros_like(x)
    diag[:-1] = 1200.0 * a**2 - 400.0 * b + 2.0
    diag[1:] += 200.0
    return diag, -400.0 * a


def direction(n):
    """A fixed direction for Hessian-vector products (and a fixed output
    weight for vector-Jacobian products): cos(i), entries in [-1, 1]."""
    return _readonly(np.cos(np.arange(n, dtype=np.float64)))


@lru_cache(maxsize=None)
def rosenbrock_hessian(n):
    """Closed-form Hessian of Rosenbrock at its starting point (float64 CSR)."""
    x = P.point("rosenbrock", n).astype(np.longdouble)
    return _tridiagonal(*rosenbrock_hessian_bands(x))


@lru_cache(maxsize=None)
def rosenbrock_hvp(n):
    """Closed-form ``H @ direction(n)`` at Rosenbrock's starting point."""
    x = P.point("rosenbrock", n).astype(np.longdouble)
    v = direction(n).astype(np.longdouble)
    return _readonly(_tridiagonal_matvec(*rosenbrock_hessian_bands(x), v).astype(np.float64))


# ---- the Bratu problem ---------------------------------------------------------------

def bratu(x, lam=BRATU_LAMBDA):
    """Residual of the discretised Bratu problem (zero boundary values)."""
    n = x.shape[0]
    h = 1.0 / (n + 1)
    padded = np.concatenate([np.zeros(1), x, np.zeros(1)])
    return padded[:-2] - 2.0 * x + padded[2:] + (h * h * lam) * np.exp(x)


def _bratu_bands(x, lam=BRATU_LAMBDA):
    n = x.shape[0]
    h = 1.0 / (n + 1)
    return -2.0 + (h * h * lam) * np.exp(x), np.ones(n - 1, dtype=x.dtype)


def _bratu_start(n):
    # Near the lower solution (about 0.14 sin(pi t) for lambda = 1), wiggled
    # so that the Jacobian's diagonal is not constant.
    t = np.arange(1, n + 1) / (n + 1)
    return 0.14 * np.sin(np.pi * t) + 0.01 * np.sin(np.arange(n))


# ---- CppAD's random-pattern problems ----------------------------------------------------

@lru_cache(maxsize=None)
def pairs(name, n):
    """The seeded random (row, col) pairs of problem ``name`` at size ``n``."""
    rng = np.random.default_rng(_SEED[name] + n)
    k = PAIRS_PER_INPUT * n
    return _readonly(rng.integers(0, n, k), rng.integers(0, n, k))


def _uniform_start(name):
    def start(n):
        # CppAD's speed tests draw x from uniform_01.
        return np.random.default_rng(_SEED[name] - n).uniform(0.0, 1.0, n)
    return start


def make_cppad_jac(n):
    row, col = pairs("cppad_jac", n)

    def cppad_jac(x):
        return segment_sum(np.exp(x[col] ** 2 / 2.0), row, n)
    return cppad_jac


def make_cppad_hes(n):
    row, col = pairs("cppad_hes", n)

    def cppad_hes(x):
        return np.sum(np.exp(x[row] * x[col]))
    return cppad_hes


# ---- the suite ---------------------------------------------------------------------------

_FUNCTIONS = {
    "rosenbrock": lambda n: P.rosenbrock,
    "bratu": lambda n: bratu,
    "cppad_jac": make_cppad_jac,
    "cppad_hes": make_cppad_hes,
}
_STARTS = {
    "rosenbrock": lambda n: P.point("rosenbrock", n),
    "bratu": _bratu_start,
    "cppad_jac": _uniform_start("cppad_jac"),
    "cppad_hes": _uniform_start("cppad_hes"),
}
#: "jacobian" problems have vector outputs; "hessian" problems scalar ones.
KIND = {"rosenbrock": "hessian", "bratu": "jacobian", "cppad_jac": "jacobian",
        "cppad_hes": "hessian"}


@lru_cache(maxsize=None)
def function(name, n):
    """The NumPy function of problem ``name`` at size ``n``."""
    return _FUNCTIONS[name](n)


@lru_cache(maxsize=None)
def point(name, n):
    """The (writable; do not modify) starting point."""
    return _STARTS[name](n)


@lru_cache(maxsize=None)
def matrix(name, n):
    """The closed-form Jacobian ("jacobian" problems) or Hessian ("hessian"
    problems) at the starting point, float64 CSR with sorted indices."""
    x = point(name, n).astype(np.longdouble)
    if name == "rosenbrock":
        return rosenbrock_hessian(n)
    if name == "bratu":
        return _tridiagonal(*_bratu_bands(x))
    row, col = pairs(name, n)
    if name == "cppad_jac":
        xc = x[col]
        return _csr(row, col, xc * np.exp(xc**2 / 2), n)
    # cppad_hes: d2/da2 exp(ab) = b^2 e, d2/db2 = a^2 e, d2/dadb = (1 + ab) e;
    # summing the four entries also gives (2 + 4a^2) e when row == col.
    a, b = x[row], x[col]
    e = np.exp(a * b)
    mixed = (1 + a * b) * e
    return _csr(np.concatenate([row, col, row, col]), np.concatenate([row, col, col, row]),
                np.concatenate([b * b * e, a * a * e, mixed, mixed]), n)


@lru_cache(maxsize=None)
def sweep_reference(name, n):
    """Closed form of the first-order sweep the benchmarks time beside the
    sparse derivative: ``J.T @ direction(n)`` for "jacobian" problems (one
    ``tape.vjp``), the gradient for "hessian" problems."""
    x = point(name, n).astype(np.longdouble)
    if name == "rosenbrock":
        return P.reference("rosenbrock", n)[1]
    if name == "bratu":
        # The Jacobian is symmetric: J.T w = J w.
        w = direction(n).astype(np.longdouble)
        return _readonly(_tridiagonal_matvec(*_bratu_bands(x), w).astype(np.float64))
    row, col = pairs(name, n)
    if name == "cppad_jac":
        w = direction(n).astype(np.longdouble)
        xc = x[col]
        out = np.zeros(n, dtype=np.longdouble)
        np.add.at(out, col, w[row] * xc * np.exp(xc**2 / 2))
        return _readonly(out.astype(np.float64))
    a, b = x[row], x[col]
    e = np.exp(a * b)
    out = np.zeros(n, dtype=np.longdouble)
    np.add.at(out, row, b * e)
    np.add.at(out, col, a * e)
    return _readonly(out.astype(np.float64))
