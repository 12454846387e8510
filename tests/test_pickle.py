"""Pickling tapes: exact round trips (values, derivatives, guards, parameters,
static arguments), re-validation on unpickling, and tapes sent to worker
processes."""
import concurrent.futures
import pickle

import numpy as np
import pytest

import wengert as wg
from wengert import tape as tape_module

from fuzz import tapefiles
from fuzz.tapefiles import SAMPLES

PROTOCOLS = list(range(2, pickle.HIGHEST_PROTOCOL + 1))


@pytest.fixture(scope="module")
def samples():
    return tapefiles.sample_tapes()


def assert_same_bits(actual, expected):
    assert type(actual) is type(expected), (type(actual), type(expected))
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


def results(tape, x, args):
    x = np.asarray(x, dtype=float)
    out = [tape.forward(x, *args), tape.forward(np.stack([x, x * 1.1]), *args),
           tape.jvp(x, np.ones(x.shape), *args), tape.vjp(x, np.ones(tape.out_shape), *args),
           tape.jacobian(x, *args, mode="forward"), tape.jacobian(x, *args, mode="reverse")]
    if tape.out_shape == ():
        out += [tape.gradient(x, *args), tape.hessian(x, *args)]
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(SAMPLES))
def test_pickle_round_trip_is_bit_for_bit(name, protocol, samples):
    tape, x, args, points = samples[name]
    copy = pickle.loads(pickle.dumps(tape, protocol=protocol))
    assert type(copy) is wg.Tape and copy is not tape
    assert (copy.in_shape, copy.out_shape, copy.n_inputs, copy.n_params, copy.n_outputs,
            copy.n_ops, copy.n_guards) == (tape.in_shape, tape.out_shape, tape.n_inputs,
                                           tape.n_params, tape.n_outputs, tape.n_ops, tape.n_guards)
    original, again = tape._state(), copy._state()
    for key in ("opcodes", "args", "consts", "aux", "outputs"):
        assert_same_bits(again[key], original[key])
    assert again["guards"] == original["guards"]
    for point in [x] + points:
        for actual, expected in zip(results(copy, point, args), results(tape, point, args)):
            assert_same_bits(actual, expected)


def test_guards_survive_pickling(samples):
    tape = samples["guarded"][0]
    copy = pickle.loads(pickle.dumps(tape))
    flipped = np.array([0.2, 2.0, 3.0])
    with pytest.raises(wg.BranchChangedError) as original:
        tape.forward(flipped)
    with pytest.raises(wg.BranchChangedError) as after:
        copy.forward(flipped)
    assert str(after.value) == str(original.value)
    assert "x[0] > 0.5" in str(after.value) and "tapefiles.py:" in str(after.value)


def test_parameters_and_static_arguments_survive_pickling(samples):
    tape, x, args, _ = samples["guarded"]
    copy = pickle.loads(pickle.dumps(tape))
    new_w = np.array([2.0, 0.5, -1.0])
    assert_same_bits(copy.jacobian(x, new_w), tape.jacobian(x, new_w))
    assert_same_bits(copy.forward(x), tape.forward(x))
    # Static arguments travel as the objects themselves (functions by reference).
    statics = [spec.value for spec in copy._param_specs if spec.kind == "static"]
    assert statics[0] == 2 and statics[1] == "tanh" and statics[3] is tapefiles.halve
    np.testing.assert_array_equal(statics[2], [0, 2, 1])
    assert statics[4] == (3, {"shift": 0.25})
    with pytest.raises(wg.ArgumentError, match="static argument changed"):
        copy.forward(x, new_w, 3)
    with pytest.raises(wg.ShapeError):
        copy.forward(x, np.ones(2))


def test_a_loaded_tape_pickles(samples, tmp_path):
    tape, x, args, _ = samples["guarded"]
    tape.save(tmp_path / "t")
    copy = pickle.loads(pickle.dumps(wg.load(tmp_path / "t")))
    assert_same_bits(copy.forward(x, *args), tape.forward(x, *args))
    with pytest.raises(wg.ArgumentError):
        copy.forward(x, *args[:4], np.cos)


class Forged:
    """Pickles as a tape whose state was tampered with."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (tape_module._tape_from_state, (self.state,))


def _tampered(state, key, fix):
    state = dict(state)
    state[key] = fix(state[key])
    return state


def _set(array, index, value):
    array = np.array(array)
    array[index] = value
    return array


TAMPERING = [
    ("operand out of range", "args", lambda a: _set(a, (0, 0), 10**6)),
    ("operand refers forward", "args", lambda a: _set(a, (0, 1), 2**31 - 1)),
    ("unknown opcode", "opcodes", lambda a: _set(a, 0, 63)),
    ("output out of range", "outputs", lambda a: _set(a, 0, -1)),
    ("ragged operands", "args", lambda a: a[:-1]),
    ("guard on a missing slot", "guards", lambda g: [(g[0][0], 10**6) + g[0][2:]]),
    ("guard that is no comparison", "guards", lambda g: [(2,) + g[0][1:]]),
]


@pytest.mark.parametrize("what, key, fix", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_unpickling_validates_again(what, key, fix, samples):
    state = _tampered(samples["guarded"][0]._state(), key, fix)
    with pytest.raises(wg.TapeFormatError):
        pickle.loads(pickle.dumps(Forged(state)))


def _gradients_in_worker(tape, points, args):
    return [tape.jacobian(x, *args) for x in points], tape.forward(points[0], *args)


def _replay_in_worker(tape, x):
    return tape.forward(x)


def test_tapes_travel_to_worker_processes(samples):
    guarded, x, args, points = samples["guarded"]
    survey = samples["survey"][0]
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_gradients_in_worker, guarded, [x] + points, args),
                pool.submit(_gradients_in_worker, survey, [np.array([2.0, 5.0])], ()),
                pool.submit(_replay_in_worker, guarded, np.array([0.2, 2.0, 3.0]))]
        jacobians, value = jobs[0].result(timeout=120)
        for actual, point in zip(jacobians, [x] + points):
            assert_same_bits(actual, guarded.jacobian(point, *args))
        assert_same_bits(value, guarded.forward(x, *args))
        (jac,), survey_value = jobs[1].result(timeout=120)
        assert round(survey_value, 3) == 11.652
        np.testing.assert_allclose(jac, [5.5, 1.716], atol=1e-3)
        # A guard that flips in a worker comes back as the same error.
        with pytest.raises(wg.BranchChangedError, match="x\\[0\\] > 0.5"):
            jobs[2].result(timeout=120)
