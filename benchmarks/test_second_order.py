"""Second-order benchmarks: the Hessian of extended Rosenbrock.

For n = 10^2, 10^4, 10^5 one group ``second order rosenbrock n=<size>``
holds, side by side on the same tape and point:

* ``test_gradient``: one ``tape.gradient(x)``, the unit of the ratios;
* ``test_hvp``: one Hessian-vector product ``tape.hvp(x, v)``
  (forward-over-reverse), target <= 4 gradients;
* ``test_hessian``: the dense ``tape.hessian(x)`` (n = 10^2 only: n
  directions);
* ``test_sparse_hessian``: ``tape.sparse_hessian(x)`` with the pattern and
  colouring cached (3 colours: one ``hvp`` with 3 directions and a gather),
  target <= 10 gradients at n = 10^5;
* ``test_hessian_sparsity``: computing the pattern on a fresh tape (a new
  recording before each round, untimed), target < 1 s at n = 10^5;
* ``test_hessian_colouring``: the star colouring on a fresh tape whose
  pattern is already computed (untimed).

Each checks its result against the closed-form tridiagonal Hessian
(``sparse_problems.rosenbrock_hessian``, long double) to ``RTOL`` relative,
and puts ``over_gradient`` (median / the group's gradient median) in
``extra_info``. The targets themselves are judged by ``report.py``.
"""
import numpy as np
import pytest

from benchmarks import problems as P
from benchmarks import sparse_problems as S
from benchmarks._support import annotate, fresh_tape_setup, ratios, size_id, size_label, tape

NAME = "rosenbrock"
SIZES = (10**2, 10**4, 10**5)
DENSE_SIZES = (10**2,)
MAX_COLOURS = 3

#: Rounds of the fresh-tape benchmarks (each round records a new tape first).
FRESH_ROUNDS = {10**2: 50, 10**4: 20, 10**5: 5}

CASES = [pytest.param(n, id=size_id(n)) for n in SIZES]
DENSE_CASES = [pytest.param(n, id=size_id(n)) for n in DENSE_SIZES]


def _group(benchmark, n):
    benchmark.group = f"second order {NAME} n={size_label(n)}"


def _fresh(benchmark, fn, n, prepare=None):
    """Time ``fn(tape)`` on a newly recorded tape each round."""
    setup = fresh_tape_setup(P.rosenbrock, P.point(NAME, n), prepare)
    return benchmark.pedantic(fn, setup=setup, rounds=FRESH_ROUNDS[n], warmup_rounds=1)


def _check_hessian(H, n):
    expected = S.rosenbrock_hessian(n)
    assert S.same_pattern(H, expected), "the sparse Hessian's pattern is not tridiagonal"
    error = S.sparse_rel_error(H, expected)
    assert error <= P.RTOL, f"Hessian off by {error:.2e} relative"
    return error


@pytest.mark.parametrize("n", CASES)
def test_gradient(benchmark, n):
    _group(benchmark, n)
    x = P.point(NAME, n)
    t = tape(NAME, n)
    grad = benchmark(t.gradient, x)
    error = P.rel_error(grad, P.reference(NAME, n)[1])
    assert error <= P.RTOL, f"gradient off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error)


@pytest.mark.parametrize("n", CASES)
def test_hvp(benchmark, n):
    _group(benchmark, n)
    x = P.point(NAME, n)
    t = tape(NAME, n)
    hv = benchmark(t.hvp, x, S.direction(n))
    error = P.rel_error(hv, S.rosenbrock_hvp(n))
    assert error <= P.RTOL, f"hvp off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error, **ratios(benchmark, gradient="test_gradient"))


@pytest.mark.parametrize("n", DENSE_CASES)
def test_hessian(benchmark, n):
    """The dense Hessian: n directions in one forward-over-reverse sweep."""
    _group(benchmark, n)
    x = P.point(NAME, n)
    t = tape(NAME, n)
    H = benchmark(t.hessian, x)
    expected = S.rosenbrock_hessian(n).toarray()
    error = P.rel_error(H, expected)
    assert H.shape == (n, n) and error <= P.RTOL, f"Hessian off by {error:.2e} relative"
    annotate(benchmark, n_ops=len(t), rel_error=error, **ratios(benchmark, gradient="test_gradient"))


@pytest.mark.parametrize("n", CASES)
def test_sparse_hessian(benchmark, n):
    _group(benchmark, n)
    x = P.point(NAME, n)
    t = tape(NAME, n)
    colours = t.hessian_colouring().n_colours     # pattern and colouring: cached
    assert colours <= MAX_COLOURS, f"{colours} colours for a tridiagonal Hessian"
    H = benchmark(t.sparse_hessian, x)
    error = _check_hessian(H, n)
    if n in DENSE_SIZES:
        assert P.rel_error(H.toarray(), t.hessian(x)) <= P.RTOL, "sparse and dense Hessians differ"
    annotate(benchmark, n_ops=len(t), nnz=H.nnz, n_colours=colours, rel_error=error,
             **ratios(benchmark, gradient="test_gradient"))


@pytest.mark.parametrize("n", CASES)
def test_hessian_sparsity(benchmark, n):
    """The pattern alone, on a fresh tape each round (nothing cached)."""
    _group(benchmark, n)
    pattern = _fresh(benchmark, lambda t: t.hessian_sparsity(), n)
    assert S.same_pattern(pattern, S.rosenbrock_hessian(n)), "pattern is not tridiagonal"
    assert pattern.dtype == np.bool_ and pattern.nnz == 3 * n - 2
    annotate(benchmark, n_ops=len(tape(NAME, n)), nnz=pattern.nnz,
             **ratios(benchmark, gradient="test_gradient"))


@pytest.mark.parametrize("n", CASES)
def test_hessian_colouring(benchmark, n):
    """The star colouring, on a fresh tape whose pattern is computed untimed."""
    _group(benchmark, n)
    colouring = _fresh(benchmark, lambda t: t.hessian_colouring(), n,
                       prepare=lambda t: t.hessian_sparsity())
    assert colouring.n_colours <= MAX_COLOURS and colouring.seed.shape == (n, colouring.n_colours)
    annotate(benchmark, n_ops=len(tape(NAME, n)), n_colours=colouring.n_colours,
             **ratios(benchmark, gradient="test_gradient"))
