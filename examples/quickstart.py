"""The survey example: record f once, show its Wengert list, replay derivatives.

f(x1, x2) = ln(x1) + x1*x2 - sin(x2) at (2, 5), the running example of
Baydin et al., "Automatic differentiation in machine learning: a survey"
(JMLR 2018), tables 2 and 3.

Run:  python examples/quickstart.py
"""
import numpy as np
from scipy.optimize import approx_fprime

import wengert as wg


def f(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def exact_gradient(x):
    return np.array([1.0 / x[0] + x[1], x[0] - np.cos(x[1])])


def main():
    x = np.array([2.0, 5.0])
    tape = wg.record(f, x)
    print(tape)
    print("\nThe Wengert list at x = (2, 5), with values:")
    print(tape.listing(x))

    value = tape.forward(x)
    grad = tape.gradient(x)
    fd = approx_fprime(x, f, 1.4901161193847656e-08)   # sqrt(machine eps)
    exact = exact_gradient(x)
    print(f"\nf(x)                 = {value:.15g}")
    print(f"gradient (reverse)   = {grad}")
    print(f"gradient (closed)    = {exact}")
    print(f"finite differences   = {fd}")
    print(f"error, wengert       = {np.max(np.abs(grad - exact)):.2e}")
    print(f"error, finite diff.  = {np.max(np.abs(fd - exact)):.2e}")

    # The same tape at a new point, and a batch of points in one call.
    print(f"\ngradient at (1, 1)   = {tape.gradient([1.0, 1.0])}")
    points = np.array([[2.0, 5.0], [1.0, 1.0], [3.0, 0.5]])
    print("gradients of a batch =")
    print(tape.gradient(points))
    print("jacobian, forward mode =", tape.jacobian(x, mode="forward"))


if __name__ == "__main__":
    main()
