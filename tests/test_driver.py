"""The one driver of the engine: ``Tape._replay`` and the tools built on it.

``Tape._replay`` returns whole slot arrays (values, tangents, adjoints,
adjoint tangents) for a batch of points; the tape's own batch drivers and
the tools above it (display, traces, sparsity) get their numbers from it,
and the compact tape (``wengert._compact``) is itself a ``Tape``.
"""
import pathlib
import re
import threading

import numpy as np
import pytest

import wengert as wg
from wengert import _compact, display, sparsity
from wengert.tape import Replay, UnitSeeds

SRC = pathlib.Path(wg.__file__).parent




def shared_outputs(x):
    """Outputs that repeat a slot (and one that is an input)."""
    a = x[0] * np.sin(x[1])
    return np.stack([a, x[2] ** 2, a, x[0], a])


@pytest.fixture(scope="module")
def shared():
    return wg.record(shared_outputs, np.ones(3))


def points(rng, B):
    return np.array([1.0, 2.0]) + 0.1 * rng.standard_normal((B, 2))


# ---- the primitive agrees with the public drivers --------------------------------------

def test_replay_values_and_tangents_are_those_of_forward_and_jvp(rich, rng):
    X = points(rng, 5)
    V = rng.standard_normal((2, 3))
    params = rich._params((0.5,))
    run = rich._replay(X.T, params, seeds=V[:, None, :], batched=True)
    assert isinstance(run, Replay) and run.adjoints is None and run.adjoint_tangents is None
    outputs = rich._state()["outputs"]
    assert run.values.shape == (rich.n_inputs + rich.n_params + rich.n_ops, 5)
    np.testing.assert_array_equal(run.values[outputs].T, rich.forward(X, 0.5))
    np.testing.assert_array_equal(np.moveaxis(run.tangents[outputs], 1, 0), rich.jvp(X, V, 0.5))
    np.testing.assert_array_equal(run.values[:2], X.T)
    np.testing.assert_array_equal(run.values[2], 0.5)                    # the parameter


def test_replay_adjoints_are_those_of_vjp(rich, rng):
    X = points(rng, 4)
    W = rng.standard_normal((3, 2))                  # k = 3 weights of the 2 outputs
    run = rich._replay(X.T, rich._params(()), output_seeds=W.T[:, None, :])
    assert run.tangents is None and run.adjoints.shape[1:] == (4, 3)
    np.testing.assert_array_equal(np.moveaxis(run.adjoints[:2], 0, -1), rich.vjp(X, W))


def test_replay_second_order_is_hvp_with_the_first_order_adjoints(rich, rng):
    x = np.array([1.0, 2.0])
    w = np.array([0.7, -1.3])
    V = rng.standard_normal((2, 2))
    run = rich._replay(x, rich._params(()), seeds=V[:, None, :], weights=w[:, None])
    assert run.adjoints.shape == (run.values.shape[0], 1)
    np.testing.assert_array_equal(run.adjoint_tangents[:2, 0, :], rich.hvp(x, V, w=w))
    np.testing.assert_array_equal(run.adjoints[:2, 0], rich.vjp(x, w))


def test_unit_seeds_are_the_dense_seeds(rich, rng):
    x = np.array([1.0, 2.0])
    params = rich._params(())
    dense = rich._replay(x, params, seeds=np.eye(2)[:, None, :])
    unit = rich._replay(x, params, seeds=UnitSeeds.block(0, 2))
    np.testing.assert_array_equal(unit.tangents, dense.tangents)
    dense = rich._replay(x, params, output_seeds=np.eye(2)[:, None, ::-1])
    unit = rich._replay(x, params, output_seeds=UnitSeeds(np.arange(2), np.array([1, 0]), 2))
    np.testing.assert_array_equal(unit.adjoints, dense.adjoints)


def test_reused_values_give_the_same_numbers(rich, rng):
    X = points(rng, 3).T
    params = rich._params(())
    first = rich._replay(X, params)
    kept = first.values.copy()
    again = rich._replay(None, None, output_seeds=UnitSeeds.block(1, 1), values=first.values)
    fresh = rich._replay(X, params, output_seeds=UnitSeeds.block(1, 1))
    np.testing.assert_array_equal(again.adjoints, fresh.adjoints)
    forward = rich._replay(None, None, seeds=UnitSeeds.block(0, 2), values=first.values)
    assert forward.values is first.values
    np.testing.assert_array_equal(forward.values, kept)


def test_output_seeds_add_up_where_outputs_share_a_slot(shared, rng):
    # Bit for bit what np.add.at gives, -0.0 seeds included (0.0 + -0.0 = 0.0).
    x = rng.uniform(0.5, 1.5, 3)
    W = rng.standard_normal((5, 2, 3))
    W[0, 1, 2] = W[3, 0, 0] = -0.0
    run = shared._replay(np.stack([x, x], axis=1), shared._params(()), output_seeds=W)
    outputs = shared._state()["outputs"]
    assert len(set(outputs.tolist())) < outputs.size
    seeded = np.zeros_like(run.adjoints)
    np.add.at(seeded, outputs, W)
    reference = shared._replay(np.stack([x, x], axis=1), shared._params(()), seeds=None)
    shared._engine.adjoints(reference.values, seeded)
    assert run.adjoints.tobytes() == seeded.tobytes()
    np.testing.assert_array_equal(shared.jacobian(x, mode="reverse"),
                                  shared.jacobian(x, mode="forward"))


@pytest.mark.parametrize("batched, where", [(True, "at batch row 1"), (False, "at this point")])
def test_a_flipped_branch_raises_as_the_drivers_do(rich, batched, where):
    X = np.array([[1.0, 2.0], [0.1, 2.0]]).T         # x[0] > p flips at the second point
    with pytest.raises(wg.BranchChangedError, match=where):
        rich._replay(X, rich._params(()), batched=batched)
    with pytest.raises(wg.BranchChangedError, match="at batch row 1"):
        rich.jvp(X.T, np.ones(2))
    with pytest.raises(wg.BranchChangedError, match="at this point"):
        rich.jvp(X[:, 1], np.ones(2))


# ---- the compact tape and the caches ---------------------------------------------------

def test_the_compact_tape_is_a_tape_kept_in_the_tape_cache(rng):
    t = wg.record(lambda x, p: np.stack([x[3] * p[1], np.sin(x[7])]), np.ones(10), np.ones(3))
    c = _compact.compact(t)
    assert _compact.compact(t) is c and isinstance(c.tape, wg.Tape)
    assert c.tape.in_shape == (2,) and c.tape.n_params == 1
    assert c.inputs.tolist() == [3, 7] and c.params.tolist() == [1]
    x, p = rng.uniform(size=10), rng.uniform(size=3)
    small = c.tape._replay(*c.point(x, t._params((p,))), seeds=UnitSeeds.block(0, 2))
    np.testing.assert_array_equal(small.tangents[c.tape._state()["outputs"], 0, :],
                                  t.jacobian(x, p)[:, [3, 7]])
    whole = wg.record(lambda x: x * 2.0, np.ones(3))
    assert _compact.compact(whole).identity and _compact.compact(whole).tape is whole


def test_sparsity_keeps_its_cache_in_the_tape():
    t = wg.record(lambda x: x[1:] * x[:-1], np.ones(6))
    cache = sparsity._cache(t)
    assert cache is t._cached("sparsity", lambda: None) and cache.jacobian is None
    t.jacobian_colouring()
    assert cache.jacobian is not None
    assert "sparsity" not in vars(t) and "_sparsity_cache" not in vars(t)


def test_the_cache_computes_once_under_threads():
    t = wg.record(lambda x: x * 2.0, np.ones(3))
    calls, start = [], threading.Barrier(8)

    def make():
        calls.append(1)
        return object()

    def ask(found):
        start.wait()
        found.append(t._cached("once", make))

    found = []
    threads = [threading.Thread(target=ask, args=(found,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(v) for v in found}) == 1


# ---- the tools reach no further into the tape than its internal interface ----------------

@pytest.mark.parametrize("module", ["display.py", "_traces.py", "_compact.py", "sparsity.py"])
def test_tools_use_no_engine(module):
    text = (SRC / module).read_text()
    assert not re.findall(r"_engine|__dict__|Engine\(", text)


def test_displays_are_unchanged_by_the_driver(rich):
    # The listing's values come from a replay of the compact tape.
    x = np.array([1.0, 2.0])
    values = display._values(rich, x, ())
    run = rich._replay(x, rich._params(()))
    np.testing.assert_array_equal(values, run.values[:, 0])
