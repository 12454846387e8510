"""Newton's method on extended Rosenbrock with exact Hessian-vector products.

scipy's Newton-CG and trust-ncg need H(x) @ p. wengert replays a
forward-over-reverse sweep for it (about twice the cost of a gradient);
the usual fallback is a finite difference of the gradient,
(g(x + h p) - g(x)) / h, which is what Newton-CG does when no ``hessp`` is
given. Every run gets the exact gradient from the tape, so the comparison
isolates the Hessian.

Run:  python examples/newton_rosenbrock.py [n]
"""
import sys
import time

import numpy as np
from scipy.optimize import minimize

import wengert as wg


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def finite_difference_hessp(gradient):
    """H(x) @ p by a forward difference of the gradient along p."""
    def hessp(x, p):
        norm = np.linalg.norm(p)
        if norm == 0.0:
            return np.zeros_like(x)
        h = np.sqrt(np.finfo(float).eps) * max(1.0, np.linalg.norm(x)) / norm
        return (gradient(x + h * p) - gradient(x)) / h
    return hessp


def main(n=1000):
    x0 = np.full(n, 0.5)
    tape = wg.record(rosenbrock, x0)
    exact = tape.hvp
    approximate = finite_difference_hessp(tape.gradient)
    print(f"extended Rosenbrock, n = {n}, x0 = 0.5: tape of {len(tape)} operations\n")
    print(f"{'method':<11} {'H @ p':<21} {'iterations':>10} {'H @ p calls':>11} "
          f"{'time':>10} {'max |x - 1|':>11}")
    for method, options in (("Newton-CG", {"xtol": 1e-12}), ("trust-ncg", {"gtol": 1e-10})):
        for label, hessp in (("wengert hvp (exact)", exact), ("finite differences", approximate)):
            start = time.perf_counter()
            result = minimize(tape.forward, x0, method=method, jac=tape.gradient,
                              hessp=hessp, options={"maxiter": 5000, **options})
            seconds = time.perf_counter() - start
            print(f"{method:<11} {label:<21} {result.nit:>10} {result.nhev:>11} "
                  f"{seconds * 1e3:>7.1f} ms {np.max(np.abs(result.x - 1.0)):>11.1e}")
    x = np.linspace(0.0, 1.0, n)
    p = np.cos(np.arange(n))
    error = np.max(np.abs(approximate(x, p) - exact(x, p))) / np.max(np.abs(exact(x, p)))
    print(f"\nrelative error of the finite-difference H @ p at a sample point: {error:.1e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
