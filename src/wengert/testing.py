"""Check a recorded function's derivatives against finite differences.

Use :func:`check_grads` in your own tests, as autograd's and JAX's
``check_grads``: it records ``f``, replays the tape, and compares values and
both derivative modes with ``f`` evaluated on plain NumPy arrays.
"""
from __future__ import annotations

import numpy as np

from wengert._errors import ArgumentError

__all__ = ["check_grads"]

_MODES = ("forward", "reverse")


def check_grads(f, x, *args, modes=("forward", "reverse"), atol=1e-6, rtol=1e-6,
                eps=1e-6, seed=0):
    """Check the tape of ``f`` at ``x`` against ``f`` itself.

    Records ``f(x, *args)`` with :func:`wengert.record`, then checks

    * values: ``tape.forward(x, *args)`` equals ``f`` evaluated on plain
      NumPy arrays;
    * ``"forward"``: ``tape.jvp(x, v)`` along a random direction ``v`` equals
      the central difference ``(f(x + eps*v) - f(x - eps*v)) / (2*eps)``,
      computed with ``f`` on plain NumPy arrays (never with the tape);
    * ``"reverse"``: ``u = tape.vjp(x, w)`` for a random output weight ``w``
      satisfies the inner-product identity ``<w, J v> == <u, v>``, with
      ``J v`` from the central difference and, when ``"forward"`` is also
      checked, from ``tape.jvp``.

    The random ``v`` and ``w`` come from a local
    ``numpy.random.default_rng(seed)``, so a check is reproducible and does
    not touch global random state.

    Parameters
    ----------
    f : callable
        ``f(x, *args)``, written with NumPy operations (it is called both on
        traced values and on plain arrays).
    x : float or array_like
        The point to check at.
    *args
        Extra arguments of ``f`` (dynamic parameters or static arguments),
        passed unchanged to ``f`` and to the tape.
    modes : sequence of {"forward", "reverse"}
        Which derivative modes to check.
    atol, rtol : float
        Absolute and relative tolerance: ``|actual - expected| <= atol +
        rtol * |expected|`` elementwise (for inner products, on the two
        scalars). They must cover the central difference's error, about
        ``eps**2 * |f'''| + 1e-16 * |f| / eps``.
    eps : float
        Step of the central differences.
    seed : int
        Seed of the random direction and weight.

    Returns
    -------
    Tape
        The recorded tape (for further checks).

    Raises
    ------
    AssertionError
        When a check fails; the message shows the tape's numbers and the
        reference numbers side by side.

    Examples
    --------
    >>> import numpy as np
    >>> from wengert.testing import check_grads
    >>> def f(x):
    ...     return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])
    >>> tape = check_grads(f, np.array([2.0, 5.0]))
    >>> len(tape)
    5
    """
    from wengert.recording import record

    modes = tuple(modes)
    unknown = [m for m in modes if m not in _MODES]
    if unknown:
        raise ArgumentError(f"unknown mode(s) {unknown}; use 'forward' and/or 'reverse'")
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    tape = record(f, _point(x), *args)

    def plain(point):
        return np.asarray(f(_point(point), *args), dtype=np.float64)

    # Values: the tape against f on plain arrays.
    expected = plain(x)
    _assert_close(np.asarray(tape.forward(_point(x), *args)), expected, atol, rtol,
                  "tape.forward(x)", "f(x) on NumPy arrays")

    v = rng.standard_normal(x.shape)
    w = rng.standard_normal(expected.shape)
    fd_jv = (plain(x + eps * v) - plain(x - eps * v)) / (2.0 * eps)

    jv = None
    if "forward" in modes:
        jv = np.asarray(tape.jvp(_point(x), v, *args))
        _assert_close(jv, fd_jv, atol, rtol, "tape.jvp(x, v)",
                      f"central difference of f along v (eps={eps:g})")
    if "reverse" in modes:
        u = np.asarray(tape.vjp(_point(x), w, *args))
        if u.shape != x.shape:
            raise AssertionError(f"tape.vjp(x, w) has shape {u.shape}, expected x.shape {x.shape}")
        lhs = float(np.sum(u * v))
        if jv is not None:
            _assert_close(np.asarray(lhs), np.asarray(float(np.sum(w * jv))), atol, rtol,
                          "<tape.vjp(x, w), v>", "<w, tape.jvp(x, v)>")
        _assert_close(np.asarray(lhs), np.asarray(float(np.sum(w * fd_jv))), atol, rtol,
                      "<tape.vjp(x, w), v>", f"<w, central difference along v (eps={eps:g})>")
    return tape


def _point(x):
    """A 0-d point as a Python float (so ``f`` sees what a user passes)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _assert_close(actual, expected, atol, rtol, actual_name, expected_name):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{actual_name} has shape {actual.shape} but {expected_name} has shape "
            f"{expected.shape}")
    error = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    # NaN where both are NaN (or equal infinities) counts as agreement.
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = ~same & ~(error <= bound)
    if np.any(bad):
        worst = int(np.argmax(np.where(bad, np.nan_to_num(error, nan=np.inf), -1.0)))
        with np.printoptions(precision=17):
            raise AssertionError(
                f"{actual_name} and {expected_name} differ "
                f"(atol={atol:g}, rtol={rtol:g}; {int(np.sum(bad))} of {bad.size} "
                f"entries out of tolerance, worst at flat index {worst}: "
                f"{float(actual.reshape(-1)[worst])!r} vs {float(expected.reshape(-1)[worst])!r})\n"
                f"  {actual_name}:\n    {actual}\n  {expected_name}:\n    {expected}")
