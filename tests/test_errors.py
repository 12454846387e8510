"""Every error of the contract: the exception type, its base classes
(everything derives from wg.WengertError), and a message that says what
was expected and what to do."""
import math

import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops
from wengert._opcodes import Kind


# ---- traced values cannot become Python numbers ---------------------------------------

CONVERSIONS = [
    ("float(x[0])", lambda x: float(x[0])),
    ("int(x[0])", lambda x: int(x[0])),
    ("math.sin(x[0])", lambda x: math.sin(x[0])),
    ("math.exp(x[0] * 2)", lambda x: math.exp(x[0] * 2.0)),
    ("math.sqrt(x[0])", lambda x: math.sqrt(x[0])),
    ("float(x) of an array", lambda x: float(x)),
    ("float(x[:1])", lambda x: float(x[:1])),
    ("int(x) of an array", lambda x: int(x)),
    ("math.log(sum)", lambda x: math.log(np.sum(x))),
    ("x[0].item()", lambda x: x[0].item()),
    ("range(x[0])", lambda x: range(x[0])),
    ("writing into a float array", lambda x: np.array([0.0, 1.0]).__setitem__(0, x[0])),
]


@pytest.mark.parametrize("label, f", CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
def test_traced_values_cannot_become_python_numbers(label, f):
    with pytest.raises(wg.TracingError) as info:
        wg.record(f, np.array([1.0, 2.0]))
    error = info.value
    assert isinstance(error, TypeError) and isinstance(error, wg.WengertError)
    message = str(error)
    assert "traced value" in message
    assert "np.sin" in message            # names the NumPy ufuncs to use
    assert "wg." in message               # and the wg.* functions


def test_float_of_a_traced_scalar_input():
    with pytest.raises(wg.TracingError, match="np.sin"):
        wg.record(lambda x: math.cos(x), 1.0)


def test_if_on_a_traced_array_is_ambiguous():
    def f(x):
        if x > 0.0:
            return x
        return -x

    with pytest.raises(ValueError, match="truth value of an array with more than one "
                                         "element is ambiguous"):
        wg.record(f, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        wg.record(lambda x: x if x else -x, np.array([1.0, 2.0]))


# ---- shapes -------------------------------------------------------------------------------

@pytest.fixture
def vector_tape():
    """f: (3,) -> (2,) with a dynamic parameter of shape (2,)."""
    return wg.record(lambda x, p: np.stack([np.sum(x * p[0]), np.prod(x) + p[1]]),
                     np.ones(3), np.array([1.0, 2.0]))


SHAPE_ERRORS = [
    # label, call on the vector tape, text the message must contain
    ("forward x", lambda t: t.forward(np.ones(4)), "(3,)"),
    ("forward x 2-d", lambda t: t.forward(np.ones((2, 4))), "(3,)"),
    ("forward x scalar", lambda t: t.forward(1.0), "(3,)"),
    ("jacobian x", lambda t: t.jacobian(np.ones((3, 3, 1))), "(3,)"),
    ("jvp x", lambda t: t.jvp(np.ones(2), np.ones(3)), "(3,)"),
    ("jvp v", lambda t: t.jvp(np.ones(3), np.ones(4)), "(3,)"),
    ("jvp v 2-d", lambda t: t.jvp(np.ones(3), np.ones((4, 2))), "(3,)"),
    ("vjp w", lambda t: t.vjp(np.ones(3), np.ones(3)), "(2,)"),
    ("vjp w in the jvp layout", lambda t: t.vjp(np.ones(3), np.ones((2, 3))), "(2,)"),
    ("vjp w 3-d", lambda t: t.vjp(np.ones(3), np.ones((3, 2, 1))), "(2,)"),
    ("batched jvp v", lambda t: t.jvp(np.ones((5, 3)), np.ones((4, 3))), "(3,)"),
    ("param shape", lambda t: t.forward(np.ones(3), np.ones(3)), "(2,)"),
    ("param scalar", lambda t: t.jacobian(np.ones(3), 1.0), "(2,)"),
]


@pytest.mark.parametrize("label, call, expected", SHAPE_ERRORS, ids=[s[0] for s in SHAPE_ERRORS])
def test_wrong_shapes_name_the_expected_shape(vector_tape, label, call, expected):
    with pytest.raises(ValueError) as info:
        call(vector_tape)
    assert isinstance(info.value, wg.WengertError)
    assert expected in str(info.value)


def test_scalar_output_vjp_accepts_k_weights_but_not_other_shapes():
    tape = wg.record(lambda x: np.sum(x ** 2), np.ones(3))
    # w of shape (k,) + () is k weights.
    np.testing.assert_array_equal(tape.vjp([1.0, 2.0, 3.0], [1.0, 0.5]),
                                  [[2.0, 4.0, 6.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError) as info:
        tape.vjp([1.0, 2.0, 3.0], np.ones((2, 2)))
    assert isinstance(info.value, wg.WengertError)


def test_gradient_of_a_non_scalar_output():
    tape = wg.record(lambda x: x * 2.0, np.ones(3))
    for call in (lambda: tape.gradient(np.ones(3)), lambda: tape.value_and_gradient(np.ones(3)),
                 lambda: tape.gradient(np.ones((2, 3)))):
        with pytest.raises(ValueError, match=r"scalar output.*\(3,\)") as info:
            call()
        assert isinstance(info.value, wg.WengertError)


def test_too_many_extra_arguments():
    tape = wg.record(lambda x, p: x * p, np.ones(2), 2.0)
    with pytest.raises(ValueError) as info:
        tape.forward(np.ones(2), 1.0, 2.0)
    assert isinstance(info.value, wg.WengertError)


def test_jacobian_mode_must_be_known():
    tape = wg.record(lambda x: x * 2.0, np.ones(2))
    with pytest.raises(ValueError, match="bogus") as info:
        tape.jacobian(np.ones(2), mode="bogus")
    assert isinstance(info.value, wg.WengertError)
    assert "forward" in str(info.value) and "reverse" in str(info.value)


def test_hessian_and_hvp_of_a_vector_output_need_a_weight(vector_tape):
    for call in (lambda: vector_tape.hessian(np.ones(3)),
                 lambda: vector_tape.hvp(np.ones(3), np.ones(3))):
        with pytest.raises(ValueError, match=r"\(2,\)") as info:
            call()
        assert isinstance(info.value, wg.WengertError)


def test_recorded_function_must_return_a_value():
    with pytest.raises(wg.WengertError, match="returned None"):
        wg.record(lambda x: None, np.ones(2))
    with pytest.raises(wg.TracingError, match="comparison"):
        wg.record(lambda x: x > 0.0, np.ones(2))


def test_unsupported_numpy_functions_are_tracing_errors():
    with pytest.raises(wg.TracingError, match=r"^numpy\.fft\.fft is not supported"):
        wg.record(lambda x: np.fft.fft(x), np.ones(4))
    with pytest.raises(wg.TracingError, match="floor"):
        wg.record(lambda x: np.floor(x), np.ones(4))


def test_traced_value_as_an_index():
    with pytest.raises(wg.TracingError, match="where"):
        wg.record(lambda x: x[x[0]], np.ones(3))


def test_values_of_two_recordings_cannot_mix():
    captured = []
    wg.record(lambda x: captured.append(x) or x * 1.0, np.ones(2))
    with pytest.raises(wg.TracingError, match="argument"):
        wg.record(lambda x: x * captured[0], np.ones(2))
    with pytest.raises(wg.TracingError):
        wg.record(lambda x: x[0] * captured[0][0], np.ones(2))


def test_errors_derive_from_wengert_error():
    for error in (wg.TracingError, wg.ShapeError, wg.ArgumentError, wg.BranchChangedError,
                  wg.TapeFormatError):
        assert issubclass(error, wg.WengertError)
    assert issubclass(wg.TracingError, TypeError)
    assert issubclass(wg.ShapeError, ValueError)
    assert issubclass(wg.TapeFormatError, ValueError)


# ---- corrupt tapes: a clear exception, never a crash ----------------------------------------

MUL_VV = ops.code_of("mul", Kind.VV)
MUL_VC = ops.code_of("mul", Kind.VC)
SIN = ops.code_of("sin")
GT_VV = ops.code_of("gt", Kind.VV)


def _valid_arrays():
    """f(x) = sin(x0 * x1) * 2 on x of shape (2,): ops at slots 2, 3, 4."""
    return dict(
        opcodes=np.array([MUL_VV, SIN, MUL_VC], dtype=np.uint8),
        args=np.array([[0, 1], [2, 0], [3, 0]], dtype=np.int32),
        consts=np.array([2.0]),
        aux=np.zeros(0, dtype=np.int32),
        outputs=np.array([4], dtype=np.int32),
        in_shape=(2,), out_shape=(),
    )


def test_hand_built_tape_replays():
    tape = wg.Tape(**_valid_arrays())
    assert tape.forward([2.0, 3.0]) == 2.0 * np.sin(6.0)
    np.testing.assert_allclose(tape.gradient([2.0, 3.0]), 2.0 * np.cos(6.0) * np.array([3.0, 2.0]),
                               rtol=1e-15)


CORRUPTIONS = [
    ("operand refers to a later slot", dict(args=np.array([[0, 3], [2, 0], [3, 0]]))),
    ("operand refers to itself", dict(args=np.array([[0, 2], [2, 0], [3, 0]]))),
    ("negative operand", dict(args=np.array([[0, -1], [2, 0], [3, 0]]))),
    ("huge operand", dict(args=np.array([[0, 2**31 - 1], [2, 0], [3, 0]]))),
    ("unary operand out of range", dict(args=np.array([[0, 1], [7, 0], [3, 0]]))),
    ("constant index out of range", dict(args=np.array([[0, 1], [2, 0], [3, 1]]))),
    ("negative constant index", dict(args=np.array([[0, 1], [2, 0], [3, -5]]))),
    ("unknown opcode 63", dict(opcodes=np.array([MUL_VV, 63, MUL_VC], dtype=np.uint8))),
    ("unknown opcode 255", dict(opcodes=np.array([MUL_VV, SIN, 255], dtype=np.uint8))),
    ("binary base with the unary kind", dict(opcodes=np.array([ops.code_of("mul"), SIN, MUL_VC],
                                                              dtype=np.uint8))),
    ("unary base with a binary kind", dict(opcodes=np.array([MUL_VV, SIN | (1 << 6), MUL_VC],
                                                            dtype=np.uint8))),
    ("const with bad pool index", dict(opcodes=np.array([MUL_VV, ops.code_of("const"), MUL_VC],
                                                        dtype=np.uint8))),
    ("select without side table", dict(opcodes=np.array([MUL_VV, ops.code_of("select"), MUL_VC],
                                                         dtype=np.uint8))),
    ("select side table points ahead", dict(
        opcodes=np.array([MUL_VV, ops.code_of("select"), MUL_VC], dtype=np.uint8),
        args=np.array([[0, 1], [2, 0], [3, 0]]), aux=np.array([0, 9], dtype=np.int32))),
    ("output slot out of range", dict(outputs=np.array([5]))),
    ("negative output slot", dict(outputs=np.array([-1]))),
    ("output count does not match shape", dict(outputs=np.array([4, 3]))),
    ("operand rows do not match opcodes", dict(args=np.array([[0, 1], [2, 0]]))),
    ("operand rows of wrong width", dict(args=np.array([0, 1, 2, 0, 3]))),
    ("opcode does not fit a byte", dict(opcodes=[MUL_VV, SIN, -1])),
    ("negative input count", dict(in_shape=(-2,))),
    ("guard on a missing slot", dict(guards=[(GT_VV, 0, 9, True, "f.py:1", "x[0] > v[9]")])),
    ("guard that is not a comparison", dict(guards=[(MUL_VV, 0, 1, True, "f.py:1", "x * y")])),
    ("guard with a bad outcome", dict(guards=[(GT_VV, 0, 1, 7, "f.py:1", "x[0] > x[1]")])),
]


@pytest.mark.parametrize("label, change", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_tape_is_a_format_error(label, change):
    with pytest.raises(wg.TapeFormatError) as info:
        wg.Tape(**{**_valid_arrays(), **change})
    assert isinstance(info.value, wg.WengertError) and isinstance(info.value, ValueError)
    assert "invalid tape" in str(info.value)


WRAPPING = [
    ("opcode 256 + mul", dict(opcodes=np.array([MUL_VV + 256, SIN, MUL_VC]))),
    ("float opcodes", dict(opcodes=np.array([MUL_VV + 0.5, SIN, MUL_VC]))),
    ("operand 2**32 + 1", dict(args=np.array([[0, 2**32 + 1], [2, 0], [3, 0]]))),
    ("output slot 2**32 + 4", dict(outputs=np.array([2**32 + 4]))),
]


@pytest.mark.parametrize("label, change", WRAPPING, ids=[c[0] for c in WRAPPING])
def test_values_that_do_not_fit_the_tape_dtypes_are_format_errors(label, change):
    with pytest.raises(wg.TapeFormatError):
        wg.Tape(**{**_valid_arrays(), **change})
