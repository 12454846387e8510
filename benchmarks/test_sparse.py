"""Sparse Jacobian and Hessian benchmarks (problems in ``sparse_problems.py``).

Jacobians, one group ``sparse <problem> n=<size>`` each:

* ``bratu`` (tridiagonal, n = 10^3, 10^5) and CppAD's ``cppad_jac``
  speed problem (random pattern, ~3 pairs per row, n = 10^3, 10^4):
  ``test_vjp`` (one ``tape.vjp(x, w)`` of the same tape: the
  gradient-equivalent reverse sweep, the unit of ``over_vjp``),
  ``test_rosenbrock_gradient`` (one Rosenbrock ``tape.gradient`` at the
  same n, for scale: the unit of ``over_gradient``),
  ``test_sparse_jacobian`` (pattern and colouring cached),
  ``test_dense_jacobian`` (n = 10^3 only), ``test_jacobian_sparsity``
  and ``test_jacobian_colouring`` (on a fresh tape each round, as in
  ``test_second_order.py``). Bratu must take 3 colours; its target,
  judged by ``report.py``, is a sparse Jacobian <= 6 vjp sweeps and a
  pattern < 1 s at 10^5.

Hessians: CppAD's ``cppad_hes`` speed problem (random pattern, n = 10^3,
10^4): ``test_hessian_gradient`` (the unit of ``over_gradient``),
``test_sparse_hessian``, ``test_dense_hessian`` (n = 10^3 only),
``test_hessian_sparsity``, ``test_hessian_colouring``.

Every result is checked against the closed form (long double) to ``RTOL``
relative, sparse results also for their exact pattern, and at n = 10^3 the
sparse matrix against wengert's dense one.
"""
import numpy as np
import pytest

from benchmarks import problems as P
from benchmarks import sparse_problems as S
from benchmarks._support import (annotate, fresh_tape_setup, ratios, size_id, size_label,
                                 sparse_tape, tape)

JACOBIAN_SIZES = {"bratu": (10**3, 10**5), "cppad_jac": (10**3, 10**4)}
HESSIAN_SIZES = {"cppad_hes": (10**3, 10**4)}
DENSE_MAX = 10**3
#: Exact colour counts where the structure fixes them (banded patterns).
COLOURS = {"bratu": 3}

FRESH_ROUNDS = {10**3: 20, 10**4: 10, 10**5: 5}


def _cases(sizes, dense_only=False):
    return [pytest.param(name, n, id=f"{name}-{size_id(n)}")
            for name, ns in sizes.items() for n in ns if not dense_only or n <= DENSE_MAX]


JACOBIAN_CASES = _cases(JACOBIAN_SIZES)
JACOBIAN_DENSE_CASES = _cases(JACOBIAN_SIZES, dense_only=True)
HESSIAN_CASES = _cases(HESSIAN_SIZES)
HESSIAN_DENSE_CASES = _cases(HESSIAN_SIZES, dense_only=True)


def _group(benchmark, name, n):
    benchmark.group = f"sparse {name} n={size_label(n)}"


def _fresh(benchmark, fn, name, n, prepare=None):
    """Time ``fn(tape)`` on a newly recorded tape each round."""
    setup = fresh_tape_setup(S.function(name, n), S.point(name, n), prepare)
    return benchmark.pedantic(fn, setup=setup, rounds=FRESH_ROUNDS[n], warmup_rounds=1)


def _check_sparse(M, name, n, what):
    expected = S.matrix(name, n)
    assert S.same_pattern(M, expected), f"the sparse {what}'s pattern differs from the closed form"
    error = S.sparse_rel_error(M, expected)
    assert error <= P.RTOL, f"{what} off by {error:.2e} relative"
    return error


def _check_colours(name, colouring):
    expected = COLOURS.get(name)
    assert colouring.n_colours >= 1
    assert expected is None or colouring.n_colours == expected, (
        f"{colouring.n_colours} colours, expected {expected}")


# ---- Jacobians ----------------------------------------------------------------------

@pytest.mark.parametrize("name, n", JACOBIAN_CASES)
def test_vjp(benchmark, name, n):
    """One reverse sweep with one output weight: what a gradient costs here."""
    _group(benchmark, name, n)
    t = sparse_tape(name, n)
    v = benchmark(t.vjp, S.point(name, n), S.direction(n))
    error = P.rel_error(v, S.sweep_reference(name, n))
    assert error <= P.RTOL, f"vjp off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error)


@pytest.mark.parametrize("name, n", JACOBIAN_CASES)
def test_rosenbrock_gradient(benchmark, name, n):
    """For scale: Rosenbrock's gradient at the same n (another tape)."""
    _group(benchmark, name, n)
    t = tape("rosenbrock", n)
    grad = benchmark(t.gradient, P.point("rosenbrock", n))
    error = P.rel_error(grad, P.reference("rosenbrock", n)[1])
    assert error <= P.RTOL, f"gradient off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error)


_JACOBIAN_RATIOS = {"vjp": "test_vjp", "gradient": "test_rosenbrock_gradient"}


@pytest.mark.parametrize("name, n", JACOBIAN_CASES)
def test_sparse_jacobian(benchmark, name, n):
    _group(benchmark, name, n)
    x = S.point(name, n)
    t = sparse_tape(name, n)
    colouring = t.jacobian_colouring()              # pattern and colouring: cached
    _check_colours(name, colouring)
    J = benchmark(t.sparse_jacobian, x)
    error = _check_sparse(J, name, n, "Jacobian")
    if n <= DENSE_MAX:
        assert P.rel_error(J.toarray(), t.jacobian(x)) <= P.RTOL, "sparse and dense Jacobians differ"
    annotate(benchmark, n_ops=len(t), nnz=J.nnz, n_colours=colouring.n_colours, rel_error=error,
             **ratios(benchmark, **_JACOBIAN_RATIOS))


@pytest.mark.parametrize("name, n", JACOBIAN_DENSE_CASES)
def test_dense_jacobian(benchmark, name, n):
    _group(benchmark, name, n)
    t = sparse_tape(name, n)
    J = benchmark(t.jacobian, S.point(name, n))
    error = P.rel_error(J, S.matrix(name, n).toarray())
    assert J.shape == (n, n) and error <= P.RTOL, f"Jacobian off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error, **ratios(benchmark, **_JACOBIAN_RATIOS))


@pytest.mark.parametrize("name, n", JACOBIAN_CASES)
def test_jacobian_sparsity(benchmark, name, n):
    """The pattern alone, on a fresh tape each round (nothing cached)."""
    _group(benchmark, name, n)
    pattern = _fresh(benchmark, lambda t: t.jacobian_sparsity(), name, n)
    assert pattern.dtype == np.bool_ and S.same_pattern(pattern, S.matrix(name, n))
    annotate(benchmark, n_ops=len(sparse_tape(name, n)), nnz=pattern.nnz,
             **ratios(benchmark, **_JACOBIAN_RATIOS))


@pytest.mark.parametrize("name, n", JACOBIAN_CASES)
def test_jacobian_colouring(benchmark, name, n):
    """The colouring (mode "auto"), on a fresh tape whose pattern is computed untimed."""
    _group(benchmark, name, n)
    colouring = _fresh(benchmark, lambda t: t.jacobian_colouring(), name, n,
                       prepare=lambda t: t.jacobian_sparsity())
    _check_colours(name, colouring)
    assert colouring.n_colours == sparse_tape(name, n).jacobian_colouring().n_colours
    annotate(benchmark, n_ops=len(sparse_tape(name, n)), n_colours=colouring.n_colours,
             **ratios(benchmark, **_JACOBIAN_RATIOS))


# ---- Hessians -----------------------------------------------------------------------

@pytest.mark.parametrize("name, n", HESSIAN_CASES)
def test_hessian_gradient(benchmark, name, n):
    _group(benchmark, name, n)
    t = sparse_tape(name, n)
    grad = benchmark(t.gradient, S.point(name, n))
    error = P.rel_error(grad, S.sweep_reference(name, n))
    assert error <= P.RTOL, f"gradient off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error)


_HESSIAN_RATIOS = {"gradient": "test_hessian_gradient"}


@pytest.mark.parametrize("name, n", HESSIAN_CASES)
def test_sparse_hessian(benchmark, name, n):
    _group(benchmark, name, n)
    x = S.point(name, n)
    t = sparse_tape(name, n)
    colouring = t.hessian_colouring()               # pattern and colouring: cached
    _check_colours(name, colouring)
    H = benchmark(t.sparse_hessian, x)
    error = _check_sparse(H, name, n, "Hessian")
    if n <= DENSE_MAX:
        assert P.rel_error(H.toarray(), t.hessian(x)) <= P.RTOL, "sparse and dense Hessians differ"
    annotate(benchmark, n_ops=len(t), nnz=H.nnz, n_colours=colouring.n_colours, rel_error=error,
             **ratios(benchmark, **_HESSIAN_RATIOS))


@pytest.mark.parametrize("name, n", HESSIAN_DENSE_CASES)
def test_dense_hessian(benchmark, name, n):
    _group(benchmark, name, n)
    t = sparse_tape(name, n)
    H = benchmark(t.hessian, S.point(name, n))
    error = P.rel_error(H, S.matrix(name, n).toarray())
    assert H.shape == (n, n) and error <= P.RTOL, f"Hessian off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error, **ratios(benchmark, **_HESSIAN_RATIOS))


@pytest.mark.parametrize("name, n", HESSIAN_CASES)
def test_hessian_sparsity(benchmark, name, n):
    """The pattern alone, on a fresh tape each round (nothing cached)."""
    _group(benchmark, name, n)
    pattern = _fresh(benchmark, lambda t: t.hessian_sparsity(), name, n)
    assert pattern.dtype == np.bool_ and S.same_pattern(pattern, S.matrix(name, n))
    annotate(benchmark, n_ops=len(sparse_tape(name, n)), nnz=pattern.nnz,
             **ratios(benchmark, **_HESSIAN_RATIOS))


@pytest.mark.parametrize("name, n", HESSIAN_CASES)
def test_hessian_colouring(benchmark, name, n):
    """The star colouring, on a fresh tape whose pattern is computed untimed."""
    _group(benchmark, name, n)
    colouring = _fresh(benchmark, lambda t: t.hessian_colouring(), name, n,
                       prepare=lambda t: t.hessian_sparsity())
    _check_colours(name, colouring)
    assert colouring.n_colours == sparse_tape(name, n).hessian_colouring().n_colours
    annotate(benchmark, n_ops=len(sparse_tape(name, n)), n_colours=colouring.n_colours,
             **ratios(benchmark, **_HESSIAN_RATIOS))
