"""A stiff reaction-diffusion system solved with a sparse AD Jacobian.

The 1-D Brusselator (Hairer & Wanner, "Solving ODEs II", section IV.1):

    u' = A + u^2 v - (B + 1) u + alpha (u[i-1] - 2 u[i] + u[i+1]) / h^2
    v' = B u - u^2 v           + alpha (v[i-1] - 2 v[i] + v[i+1]) / h^2

on N grid points with u = 1, v = 3 at both ends: 2N unknowns, a banded
Jacobian. ``solve_ivp(method="BDF")`` gets ``jac=`` from
``tape.sparse_jacobian`` (a few compressed forward sweeps, one per colour)
and ``jac_sparsity=`` from ``tape.jacobian_sparsity()``; the comparison is
scipy's own finite-difference Jacobian with the same sparsity.

Run:  python examples/stiff_ode.py [N]
"""
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

import wengert as wg

A, B, ALPHA = 1.0, 3.0, 0.02


def brusselator(y, n):
    u, v = y[:n], y[n:]
    h = 1.0 / (n + 1)
    u_ext = np.concatenate([[1.0], u, [1.0]])
    v_ext = np.concatenate([[3.0], v, [3.0]])
    diffusion = ALPHA / h ** 2
    du = A + u * u * v - (B + 1.0) * u + diffusion * (u_ext[:-2] - 2.0 * u + u_ext[2:])
    dv = B * u - u * u * v + diffusion * (v_ext[:-2] - 2.0 * v + v_ext[2:])
    return np.concatenate([du, dv])


def main(n=500):
    grid = np.arange(1, n + 1) / (n + 1)
    y0 = np.concatenate([1.0 + np.sin(2 * np.pi * grid), np.full(n, 3.0)])
    tape = wg.record(brusselator, y0, n)        # n is static: part of the tape
    pattern = tape.jacobian_sparsity()
    colouring = tape.jacobian_colouring()
    print(f"Brusselator, N = {n}: {2 * n} unknowns, tape of {len(tape)} operations, "
          f"Jacobian {pattern.nnz} nonzeros, {colouring.n_colours} colours\n")

    rhs = lambda t, y: tape.forward(y)
    runs = {
        "wengert sparse Jacobian": dict(jac=lambda t, y: tape.sparse_jacobian(y)),
        "scipy finite differences": dict(jac_sparsity=pattern),
    }
    print(f"{'Jacobian':<26} {'steps':>6} {'f evals':>8} {'jac evals':>9} {'LU':>5} {'time':>10}")
    solutions = {}
    for label, options in runs.items():
        start = time.perf_counter()
        result = solve_ivp(rhs, (0.0, 10.0), y0, method="BDF", rtol=1e-6, atol=1e-8, **options)
        seconds = time.perf_counter() - start
        assert result.success, result.message
        solutions[label] = result.y[:, -1]
        print(f"{label:<26} {result.t.size - 1:>6} {result.nfev:>8} {result.njev:>9} "
              f"{result.nlu:>5} {seconds * 1e3:>7.0f} ms")

    exact = tape.jacobian(y0)
    sparse = tape.sparse_jacobian(y0).toarray()
    print(f"\nsparse vs dense AD Jacobian at y0: max difference {np.max(np.abs(sparse - exact)):.1e}")
    a, b = solutions.values()
    print(f"final states differ by {np.max(np.abs(a - b)):.1e} (solver tolerance 1e-6)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
