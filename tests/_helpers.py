"""Assertions and small tools shared by the test modules."""
import inspect
import os

import numpy as np

from wengert import _array_recording
from wengert import _opcodes as ops


# Record NumPy calls as one scalar entry per element, not as array entries
# (for tests about tools that read a tape entry by entry).
scalar_recording = _array_recording.scalar_entries


def recorded_ops(tape):
    """The tape's operations as ``(name, Kind)`` pairs, in recording order."""
    # The one place the tests read the tape's private arrays.
    return [(op.name, kind) for op, kind in map(ops.split, tape._engine.opcodes.tolist())]


def elementwise_ops(tape):
    """``recorded_ops`` with each map entry (one entry over n elements)
    spelled out as its operation n times, and each where entry as n selects."""
    engine = tape._engine
    result = []
    for (op, kind), (d, n) in zip(map(ops.split, engine.opcodes.tolist()), engine.args.tolist()):
        if op.name == "map":
            inner, inner_kind = ops.split(int(engine.aux[d]))
            result += [(inner.name, inner_kind)] * n
        elif op.name == "where":
            result += [("select", ops.Kind.UNARY)] * n
        else:
            result.append((op.name, kind))
    return result


def line_of(function, text):
    """``file:line`` of the first source line of ``function`` containing
    ``text``, as guard messages name the place a guard was recorded."""
    lines, start = inspect.getsourcelines(function)
    for offset, line in enumerate(lines):
        if text in line:
            return f"{os.path.abspath(inspect.getsourcefile(function))}:{start + offset}"
    raise AssertionError(f"{text!r} not in the source of {function.__name__}")


def ulps_apart(actual, expected):
    """Elementwise distance in units of the expected value's last place;
    0 where both are the same NaN or infinity."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.abs(actual - expected) / np.spacing(np.abs(expected))
    return np.where(same, 0.0, np.nan_to_num(distance, nan=np.inf))


def assert_ulps(actual, expected, maxulp):
    distance = ulps_apart(actual, expected)
    assert distance.max(initial=0.0) <= maxulp, (
        f"{distance.max():.3g} ulps apart (allowed {maxulp}):\n"
        f"actual   {np.asarray(actual)!r}\nexpected {np.asarray(expected)!r}")


def assert_rel(actual, expected, rtol, atol=0.0):
    """|actual - expected| <= atol + rtol * |expected|, exact where expected is
    0 (with atol=0) and equal for matching infinities/NaNs."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        ok = same | (np.abs(actual - expected) <= atol + rtol * np.abs(expected))
    if not ok.all():
        rel = np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)
        raise AssertionError(
            f"{int((~ok).sum())} of {ok.size} entries differ by more than rtol={rtol:g}, "
            f"atol={atol:g} (worst relative error {np.nanmax(np.where(ok, 0, rel)):.3g}):\n"
            f"actual   {actual!r}\nexpected {expected!r}")


def central_jacobian(f, x, *args, eps=1e-6):
    """Central-difference Jacobian of ``f`` (on plain arrays): out.shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    point = (lambda z: float(z)) if x.ndim == 0 else (lambda z: z)
    out_shape = np.shape(f(point(x), *args))
    J = np.empty((int(np.prod(out_shape)), x.size))
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = eps
        step = step.reshape(x.shape)
        up = np.asarray(f(point(x + step), *args), dtype=np.float64)
        down = np.asarray(f(point(x - step), *args), dtype=np.float64)
        J[:, j] = ((up - down) / (2 * eps)).reshape(-1)
    return J.reshape(out_shape + x.shape)


def derivatives_every_way(tape, x, *args):
    """The Jacobian at ``x`` (out.shape + x.shape) computed every way the
    tape offers: jvp with unit directions, vjp with unit weights, jacobian
    forward and reverse, gradient (scalar outputs), and a batch of two
    copies of the point. Returns {way: Jacobian}."""
    x = np.asarray(x, dtype=np.float64)
    in_shape, out_shape = tape.in_shape, tape.out_shape
    n_in, n_out = tape.n_inputs, tape.n_outputs
    point = float(x) if x.ndim == 0 else x
    shape = out_shape + in_shape
    ways = {
        "jvp": np.asarray(tape.jvp(point, np.eye(n_in).reshape(in_shape + (n_in,)), *args)),
        "vjp": np.asarray(tape.vjp(point, np.eye(n_out).reshape((n_out,) + out_shape), *args)),
        "jacobian-forward": np.asarray(tape.jacobian(point, *args, mode="forward")),
        "jacobian-reverse": np.asarray(tape.jacobian(point, *args, mode="reverse")),
    }
    ways["jvp"] = ways["jvp"].reshape(out_shape + (n_in,)).reshape(shape)
    ways["vjp"] = ways["vjp"].reshape((n_out,) + in_shape).reshape(shape)
    if out_shape == ():
        ways["gradient"] = np.asarray(tape.gradient(point, *args))
    batch = np.stack([x, x])
    for mode in ("forward", "reverse"):
        both = tape.jacobian(batch, *args, mode=mode)
        ways[f"batch-{mode}"] = both[1]
        np.testing.assert_array_equal(both[0], both[1])
    return ways


def assert_all_ways_equal(tape, x, expected, *args):
    """Every way of computing the Jacobian gives exactly ``expected``."""
    expected = np.broadcast_to(np.asarray(expected, dtype=np.float64),
                               tape.out_shape + tape.in_shape)
    for way, got in derivatives_every_way(tape, x, *args).items():
        np.testing.assert_array_equal(got, expected, err_msg=f"derivative by {way}")
