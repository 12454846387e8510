"""Never a wrong answer, never a crash: the classes of fault an adversarial
review found, each tested at its root (see also test_hostile_inputs.py for
random malformed inputs in subprocesses, test_bounded_cost.py for files that
declare huge sizes, and test_io.py for damaged files)."""
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import wengert as wg


def survey(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


X0 = np.array([2.0, 5.0])


# ---- 1. a validated tape stays validated -------------------------------------------

def _tape_arrays():
    state = wg.record(survey, X0)._state()
    return {key: np.array(state[key]) for key in ("opcodes", "args", "consts", "aux", "outputs")}


def test_changing_arrays_given_to_the_constructor_changes_nothing():
    arrays = _tape_arrays()
    tape = wg.Tape(in_shape=(2,), out_shape=(), **arrays)
    expected = tape.gradient(X0)
    # Operands far outside the tape: read as slots they would crash a sweep.
    arrays["args"][:] = 10**8
    arrays["opcodes"][:] = 255
    arrays["outputs"][:] = 10**8
    np.testing.assert_array_equal(tape.gradient(X0), expected)
    assert tape.forward(X0) == pytest.approx(11.652071455223084)


@pytest.mark.parametrize("field", ["opcodes", "args", "consts", "aux", "outputs"])
def test_arrays_a_tape_hands_out_cannot_be_written(field):
    state = wg.record(survey, X0)._state()
    array = state[field]
    with pytest.raises(ValueError):
        array[...] = 0
    with pytest.raises(ValueError):
        array.flags.writeable = True
    base = array.base
    while isinstance(base, np.ndarray):
        with pytest.raises(ValueError):
            base.flags.writeable = True
        base = base.base


def test_recorded_parameters_are_the_tapes_own():
    data = np.array([1.0, 2.0])
    tape = wg.record(lambda x, p: np.sum(p * x ** 2), np.ones(2), data)
    data[:] = 100.0
    assert tape.forward([1.0, 1.0]) == 3.0


@pytest.mark.slow
def test_mutating_the_constructor_arrays_in_a_subprocess_does_not_crash():
    # The original report: a segfault. Run it where a crash cannot take pytest down.
    code = textwrap.dedent("""
        import numpy as np, wengert as wg
        state = wg.record(lambda x: np.sum(np.sin(x) * x), np.ones(1000))._state()
        arrays = {k: np.array(state[k]) for k in ("opcodes", "args", "consts", "aux", "outputs")}
        tape = wg.Tape(in_shape=(1000,), out_shape=(), **arrays)
        arrays["args"][:] = 2**31 - 1
        for _ in range(3):
            tape.gradient(np.ones(1000))
        print("survived")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "survived" in done.stdout


# ---- 2. recording never aliases where NumPy copies ------------------------------------

IDENTITY_SHORTCUTS = {
    "x ** 1": lambda x: x ** 1,
    "+x": lambda x: +x,
    "np.positive": lambda x: np.positive(x),
    "np.power(x, 1)": lambda x: np.power(x, 1),
    "np.float_power(x, 1)": lambda x: np.power(x, 1.0),
    "np.clip(x, None, None)": lambda x: wg.clip(x, None, None),
    "wg.array(x)": lambda x: wg.array(x),
    "x.copy()": lambda x: x.copy(),
    "x.astype(float)": lambda x: x.astype(float),
    "sum over a length-1 axis": lambda x: x.reshape(2, 1).sum(axis=1),
    "max over a length-1 axis": lambda x: np.max(x.reshape(2, 1), axis=1),
    "prod over a length-1 axis": lambda x: np.prod(x.reshape(2, 1), axis=-1),
}


@pytest.mark.parametrize("name", sorted(IDENTITY_SHORTCUTS))
def test_an_identity_shortcut_gives_a_new_array(name):
    make = IDENTITY_SHORTCUTS[name]

    def f(x):
        y = make(x)
        y[0] = 100.0        # must leave x alone, as it does in NumPy
        return x * 1.0

    plain = np.array([1.0, 2.0])
    expected = f(plain.copy())
    np.testing.assert_array_equal(expected, [1.0, 2.0])
    np.testing.assert_array_equal(wg.record(f, plain).forward(plain), expected)


def test_views_stay_views_as_in_numpy():
    def f(x):
        y = x.reshape(2, 1)
        y[0, 0] = 100.0     # a view in NumPy too: x changes
        return x * 1.0

    plain = np.array([1.0, 2.0])
    np.testing.assert_array_equal(wg.record(f, plain).forward(plain), f(plain.copy()))


# ---- 3. a traced value from another recording is an error -------------------------------

def _escaped():
    kept = []
    wg.record(lambda x: kept.append(x) or x[0], np.ones(2))
    return kept[0]


ESCAPED_USES = {
    "returned": lambda old: (lambda x: old),
    "returned element": lambda old: (lambda x: old[0]),
    "in a returned list": lambda old: (lambda x: [x[0], old[1]]),
    "in a returned object array": lambda old: (lambda x: np.array([x[0], old[1]], dtype=object)),
    "mixed with x": lambda old: (lambda x: x + old),
    "alone in arithmetic": lambda old: (lambda x: old * 2.0),
    "scalar arithmetic": lambda old: (lambda x: old[0] * 2.0),
    "assigned into x": lambda old: (lambda x: _assign(x, old[0])),
    "in wg.where": lambda old: (lambda x: wg.where(np.array([True, False]), old, x)),
    "in a comparison": lambda old: (lambda x: x[0] * 2.0 if old[0] > 0 else x[0]),
    "in np.stack": lambda old: (lambda x: np.stack([x[0], old[0]])),
}


def _assign(x, value):
    x[0] = value
    return x


@pytest.mark.parametrize("use", sorted(ESCAPED_USES))
def test_a_value_escaped_from_another_recording_raises(use):
    f = ESCAPED_USES[use](_escaped())
    with pytest.raises(wg.TracingError, match="another recording|recording is finished|two different"):
        wg.record(f, np.ones(2))


def test_an_outer_recordings_value_returned_by_a_nested_recording_raises():
    def outer(x):
        with pytest.raises(wg.TracingError, match="another recording"):
            wg.record(lambda y: x[0], np.ones(1))
        with pytest.raises(wg.TracingError, match="another recording"):
            wg.record(lambda y: [y[0], x[1]], np.ones(1))
        return x[0]

    assert wg.record(outer, X0).forward(X0) == 2.0


# ---- 4. a comparison behaves like the bool it stands for ---------------------------------

BOOL_IDIOMS = [
    "(x[0] > 0) == True",
    "(x[0] > 0) != False",
    "True == (x[0] > 0)",
    "(x[0] > 0) in (True,)",
    "bool(x[0] > 0) is True",
    "(x[0] > 0) == np.True_",
    "not ((x[0] > 0) == False)",
    "(x[0] > 0) == (x[1] > 0)",
    "(x[0] > 0) ^ (x[1] < 0)",
    "~(x[0] <= 0) == 1",
    "sum(c for c in (x > 0)) == 2",
    "list(x > 0)[0]",
    "(x > 0)[0]",
]


@pytest.mark.parametrize("idiom", BOOL_IDIOMS)
def test_a_comparison_used_as_a_bool_records_its_guard(idiom):
    f = eval(f"lambda x: x[0] * 2.0 if ({idiom}) else x[0] * 3.0", {"np": np})
    here, there = np.array([1.0, 1.0]), np.array([-1.0, 1.0])
    tape = wg.record(f, here)
    assert tape.forward(here) == f(here) == 2.0      # the branch Python takes on floats
    assert tape.n_guards >= 1
    with pytest.raises(wg.BranchChangedError):
        tape.forward(there)
    assert wg.grad(f)(there)[0] == 3.0               # the wg.* transforms record again


def test_a_comparison_in_arithmetic_counts_without_a_guard():
    tape = wg.record(lambda x: sum(c for c in (x > 0)) + (x[0] > 1) - 0.5, np.array([2.0, -1.0, 3.0]))
    assert tape.n_guards == 0
    assert tape.forward([2.0, -1.0, 3.0]) == 2.5
    assert tape.forward([-1.0, -1.0, -1.0]) == -0.5


@pytest.mark.parametrize("convert", [float, int, lambda c: [1, 2][c]])
def test_a_comparison_cannot_become_a_number(convert):
    with pytest.raises(wg.TracingError):
        wg.record(lambda x: x[0] * convert(x[0] > 0), X0)


# ---- 5. axis arguments are checked as NumPy checks them ---------------------------------

REDUCTIONS = {
    "np.sum": np.sum, "np.prod": np.prod, "np.max": np.max, "np.min": np.min,
    "np.amax": np.amax, "np.amin": np.amin, "np.mean": np.mean, "np.cumsum": np.cumsum,
    "np.diff": lambda a, axis: np.diff(a, axis=axis),
    "np.add.reduce": lambda a, axis: np.add.reduce(a, axis=axis),
    "x.sum": lambda a, axis: a.sum(axis=axis), "x.max": lambda a, axis: a.max(axis=axis),
    "x.mean": lambda a, axis: a.mean(axis=axis),
    "np.linalg.norm": lambda a, axis: np.linalg.norm(a, axis=axis),
    "np.concatenate": lambda a, axis: np.concatenate([a, a], axis=axis),
    "np.stack": lambda a, axis: np.stack([a, a], axis=axis + 2 if axis >= 0 else axis - 1),
    "np.squeeze": lambda a, axis: np.squeeze(a, axis=axis),
}


SINGLE_AXIS = {"np.cumsum", "np.diff", "np.concatenate", "np.stack", "np.linalg.norm"}
BAD_AXES = [(name, axis) for name in sorted(REDUCTIONS) for axis in (2, -3, 7, (0, 2))
            if not (isinstance(axis, tuple) and name in SINGLE_AXIS)]


@pytest.mark.parametrize("name, axis", BAD_AXES)
def test_an_out_of_range_axis_raises_numpys_axis_error(name, axis):
    reduction = REDUCTIONS[name]
    with pytest.raises(np.exceptions.AxisError):
        reduction(np.ones((2, 3)), axis)            # the NumPy behaviour we mirror
    with pytest.raises(np.exceptions.AxisError) as info:
        wg.record(lambda x: reduction(x, axis), np.ones((2, 3)))
    assert isinstance(info.value, wg.WengertError)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IndexError)


def test_negative_axes_in_range_still_work():
    x = np.arange(6.0).reshape(2, 3) + 1
    tape = wg.record(lambda x: np.sum(np.prod(x, axis=-1) * np.mean(x, axis=-2).sum()), x)
    assert tape.forward(x) == pytest.approx(np.sum(np.prod(x, axis=-1) * np.mean(x, axis=-2).sum()))


def test_mean_of_a_list_of_traced_values_divides_by_its_length():
    tape = wg.record(lambda x: np.mean([x[0], x[1], x[0]]), X0)
    assert tape.forward(X0) == pytest.approx(3.0)


# ---- 6. inputs that are not numbers are refused --------------------------------------------

NOT_NUMBERS = {
    "None": None,
    "str": "2.0",
    "bytes": b"2.0",
    "complex": 2.0 + 1j,
    "complex array": np.array([2.0 + 0j, 5.0]),
    "bool": True,
    "bool array": np.array([True, False]),
    "object array of None": np.array([None, 1.0]),
    "object array of str": np.array(["a", 1.0], dtype=object),
    "str array": np.array(["2", "5"]),
    "datetime array": np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"),
    "dict": {"a": 1.0},
    "masked array": np.ma.array([2.0, 5.0], mask=[False, True]),
    "huge int": 10**400,
}
RAGGED = [[2.0], [5.0, 1.0]]


def _methods(tape):
    return {
        "forward": lambda bad: tape.forward(bad),
        "gradient": lambda bad: tape.gradient(bad),
        "value_and_gradient": lambda bad: tape.value_and_gradient(bad),
        "jacobian": lambda bad: tape.jacobian(bad),
        "hessian": lambda bad: tape.hessian(bad),
        "jvp x": lambda bad: tape.jvp(bad, X0),
        "jvp v": lambda bad: tape.jvp(X0, bad),
        "vjp w": lambda bad: tape.vjp(X0, bad),
        "hvp x": lambda bad: tape.hvp(bad, X0),
        "hvp v": lambda bad: tape.hvp(X0, bad),
        "hvp w": lambda bad: tape.hvp(X0, X0, w=bad),
        "sparse_jacobian": lambda bad: tape.sparse_jacobian(bad),
        "sparse_hessian": lambda bad: tape.sparse_hessian(bad),
        "listing": lambda bad: tape.listing(bad),
        "wg.record": lambda bad: wg.record(survey, bad),
        "wg.grad": lambda bad: wg.grad(survey)(bad),
        "wg.hvp v": lambda bad: wg.hvp(survey)(X0, bad),
    }


@pytest.mark.parametrize("kind", sorted(NOT_NUMBERS))
def test_a_value_that_is_not_a_number_is_refused(kind):
    bad = NOT_NUMBERS[kind]
    tape = wg.record(survey, X0)
    for name, call in _methods(tape).items():
        if bad is None and name in ("hvp w", "listing"):
            continue                    # w=None: no weight; listing(None): no values
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # no ComplexWarning, no silent cast
            with pytest.raises(wg.WengertError) as info:
                call(bad)
        assert isinstance(info.value, (TypeError, ValueError)), name
        if kind not in ("dict",) and name != "hvp w":
            assert "x" in str(info.value) or "v" in str(info.value) or "w" in str(info.value)


def test_a_ragged_list_is_a_shape_error():
    tape = wg.record(survey, X0)
    for name, call in _methods(tape).items():
        with pytest.raises(wg.ShapeError):
            call(RAGGED)


def test_the_message_names_the_argument():
    tape = wg.record(lambda x, p: np.sum(p * x), np.ones(2), np.ones(2))
    with pytest.raises(wg.ArgumentTypeError, match="^x is None"):
        tape.forward(None)
    with pytest.raises(wg.ArgumentTypeError, match="^v is complex"):
        tape.jvp(np.ones(2), np.ones(2) * 1j)
    with pytest.raises(wg.ArgumentTypeError, match="^extra argument 0 is a str"):
        tape.forward(np.ones(2), "1.0")


def test_numbers_of_every_real_kind_are_accepted():
    tape = wg.record(survey, X0)
    expected = tape.gradient(X0)
    for x in ([2, 5], (2.0, 5.0), np.array([2, 5], dtype=np.int32), X0.astype(np.float32),
              np.array([2.0, 5.0], dtype=object), [np.float32(2), np.int64(5)],
              np.array([[2.0, 0.0], [5.0, 0.0]])[:, 0]):
        np.testing.assert_allclose(tape.gradient(x), expected)


def test_operands_inside_the_function_are_checked_too():
    for bad in (1j, "a", None, np.array(["a"])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(wg.TracingError):
                wg.record(lambda x: x * bad, np.ones(2))
    # A boolean mask is an ordinary operand, as in NumPy.
    tape = wg.record(lambda x: np.sum(x * (np.arange(3) > 0)), np.ones(3))
    assert tape.forward([1.0, 2.0, 3.0]) == 5.0


def test_unpickling_a_tampered_state_raises_a_format_error():
    tape = wg.record(survey, X0)

    class Tampered:
        def __init__(self, state):
            self.state = state

        def __reduce__(self):
            return tape.__reduce__()[0], (self.state,)

    state = tape.__reduce__()[1][0]
    for bad in ({**state, "surprise": 1}, {k: v for k, v in state.items() if k != "args"},
                {**state, "outputs": np.array([10**6])}, {**state, "guards": [(1, 2)]},
                {**state, "in_shape": "ab"}, {**state, "in_shape": (-1,)},
                {**state, "in_shape": (2**40,)}, {**state, "param_specs": [("param", (2,))]},
                {**state, "param_specs": [("weird", 1)]}, {**state, "n_params": "x"},
                {**state, "consts": np.array(["a"])}, "state", None, [1, 2]):
        with pytest.raises(wg.TapeFormatError):
            pickle.loads(pickle.dumps(Tampered(bad)))


# ---- 9. footguns get a clear signal -----------------------------------------------------

def test_a_changing_integer_argument_warns_once():
    def f(x, n):
        return np.sum(x ** 2) * n

    df = wg.grad(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(4):
            assert df(np.ones(2), n)[0] == 2.0 * n
    recorded = [w for w in caught if issubclass(w.category, wg.RecordingWarning)]
    assert len(recorded) == 1
    assert "float" in str(recorded[0].message) and "extra argument 0" in str(recorded[0].message)
    assert recorded[0].filename == __file__


def test_a_float_argument_is_dynamic_and_does_not_warn():
    df = wg.grad(lambda x, s: np.sum(x ** 2) * s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in range(4):
            df(np.ones(2), float(s))
    assert len(df.cached_tapes()) == 1


def test_value_docs_say_branching_on_it_records_no_guard():
    from wengert.tracing import Active, TracedArray
    for cls in (Active, TracedArray):
        assert "no guard" in cls.value.__doc__


def test_recording_something_that_is_not_callable_is_a_type_error():
    for f in (None, 3, "f"):
        with pytest.raises(wg.ArgumentTypeError, match="callable"):
            wg.record(f, X0)


def test_a_ragged_output_is_a_shape_error():
    with pytest.raises(wg.ShapeError, match="regular array"):
        wg.record(lambda x: [x, x[0]], X0)


def test_an_index_out_of_range_is_numpys_index_error():
    with pytest.raises(IndexError) as info:
        wg.record(lambda x: x[5], X0)
    assert isinstance(info.value, wg.IndexingError)
    with pytest.raises(wg.IndexingError):
        wg.record(lambda x: (x > 0)[7], X0)
    with pytest.raises(wg.ShapeError):
        wg.record(lambda x: x.reshape(3, 3), X0)


def test_timedelta_values_are_refused_without_warnings():
    # np.timedelta64 is an np.integer to NumPy: neither a size nor a number here.
    tape = wg.record(lambda x, n: x * n, np.ones(2), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(wg.ArgumentError, match="static argument changed"):
            tape.jvp(np.ones(2), np.ones(2), np.array([1, 2], dtype="m8[s]"))
        with pytest.raises(wg.TapeFormatError, match="input shape"):
            wg.Tape(**{**tape._state(), "in_shape": np.array([2], dtype="m8[s]")})
        with pytest.raises(wg.ArgumentTypeError):
            tape.forward(np.array([1, 2], dtype="m8[s]"))


UNSUPPORTED = {
    "numpy.linalg.solve": lambda x: np.linalg.solve(np.eye(2), x),
    "numpy.linalg.eig": lambda x: np.linalg.eig(np.outer(x, x)),
    "numpy.sort": lambda x: np.sort(x),
    "numpy.fmod": lambda x: np.fmod(x, 2.0),
    "scipy.special.struve": lambda x: __import__("scipy.special").special.struve(1.0, x),
}


@pytest.mark.parametrize("path", sorted(UNSUPPORTED))
def test_an_unsupported_function_is_named_by_its_public_path(path):
    with pytest.raises(wg.TracingError) as info:
        wg.record(UNSUPPORTED[path], X0)
    message = str(info.value)
    assert message.startswith(f"{path} is not supported on traced values")
    assert "_HANDLED" not in message and "_numpy_api" not in message


def test_a_dynamic_parameter_with_too_many_dimensions_is_a_shape_error():
    with pytest.raises(wg.ShapeError, match="extra argument 0 has 17 dimensions"):
        wg.record(lambda x, p: x * np.sum(p), X0, np.ones((1,) * 17))


def test_operands_of_another_shape_are_refused_not_reshaped():
    # Found by the hostile sweep: six zeros given as (2, 3) made a valid
    # (3, 2) operand table of a three-operation tape.
    import wengert as wg
    tape = wg.record(lambda x: np.stack([x[0] * x[1], np.sin(x[0]), x[1] ** 2]),
                     np.array([2.0, 5.0]))
    state = tape._state()
    for bad in (np.zeros((2, 3), np.int32), np.zeros(6, np.int32), np.zeros((3, 2, 1), np.int32)):
        with pytest.raises(wg.TapeFormatError, match="operands have shape"):
            wg.Tape(**{**state, "args": bad})
    with pytest.raises(wg.TapeFormatError, match="opcodes have shape"):
        wg.Tape(**{**state, "opcodes": state["opcodes"].reshape(3, 1)})
    assert len(wg.Tape(**state)) == 3
