"""Guards: Python control flow on traced values (docs/architecture.md,
"Guards"). ``if x[0] > 0:`` records a guard; a replay where it
flips raises wg.BranchChangedError naming the comparison and the user's
file:line (and, in a batch, the first offending row). The same comparison
given to where() records a select and no guard."""
import numpy as np
import pytest

import wengert as wg
from _helpers import line_of


def branchy(x):
    if x[0] > 0.5:
        return x[0] * x[1]
    return -x[1]


def two_guards(x):
    y = x[1] * 2.0
    if x[0] <= 1.0:
        y = y + x[0]
    if y != 3.0:
        y = y * y
    return y


# label, comparison as a function of (a, b), a point where it holds, where it flips
GUARDED = [
    ("<", lambda a, b: a < b, (0.0, 1.0), (2.0, 1.0)),
    ("<=", lambda a, b: a <= b, (1.0, 1.0), (2.0, 1.0)),
    (">", lambda a, b: a > b, (2.0, 1.0), (1.0, 1.0)),
    (">=", lambda a, b: a >= b, (1.0, 1.0), (0.0, 1.0)),
    ("==", lambda a, b: a == b, (1.0, 1.0), (1.0, 2.0)),
    ("!=", lambda a, b: a != b, (1.0, 2.0), (3.0, 3.0)),
]


@pytest.mark.parametrize("symbol, compare, holds, flips", GUARDED, ids=[g[0] for g in GUARDED])
def test_every_comparison_records_a_guard_that_can_flip(symbol, compare, holds, flips):
    def f(x):
        if compare(x[0], x[1]):
            return x[0] + 2.0 * x[1]
        return x[0] - x[1]

    tape = wg.record(f, np.array(holds))
    assert tape.n_guards == 1
    assert tape.forward(holds) == holds[0] + 2.0 * holds[1]
    np.testing.assert_array_equal(tape.gradient(holds), [1.0, 2.0])
    with pytest.raises(wg.BranchChangedError) as info:
        tape.forward(flips)
    assert symbol in str(info.value)
    assert line_of(f, "if compare") in str(info.value)


def test_guard_holds_on_its_side_and_flips_on_the_other():
    tape = wg.record(branchy, np.array([1.0, 2.0]))
    assert tape.n_guards == 1
    assert tape.forward([3.0, 4.0]) == 12.0
    np.testing.assert_array_equal(tape.gradient([3.0, 4.0]), [4.0, 3.0])
    for call in (lambda x: tape.forward(x), lambda x: tape.gradient(x),
                 lambda x: tape.jvp(x, [1.0, 0.0]), lambda x: tape.vjp(x, 1.0),
                 lambda x: tape.jacobian(x, mode="forward"),
                 lambda x: tape.jacobian(x, mode="reverse"),
                 lambda x: tape.value_and_gradient(x)):
        with pytest.raises(wg.BranchChangedError) as info:
            call([0.0, 2.0])
        message = str(info.value)
        assert ">" in message and "0.5" in message
        assert line_of(branchy, "if x[0] > 0.5") in message
        assert "batch row" not in message
        assert isinstance(info.value, wg.WengertError)


def test_batch_names_the_first_offending_row():
    tape = wg.record(branchy, np.array([1.0, 2.0]))
    X = np.array([[1.0, 1.0], [2.0, 1.0], [0.0, 1.0], [-1.0, 1.0], [0.9, 1.0]])
    for call in (lambda: tape.forward(X), lambda: tape.gradient(X),
                 lambda: tape.jvp(X, [1.0, 0.0]), lambda: tape.vjp(X, 1.0),
                 lambda: tape.jacobian(X, mode="forward"),
                 lambda: tape.jacobian(X, mode="reverse")):
        with pytest.raises(wg.BranchChangedError, match="batch row 2") as info:
            call()
        assert line_of(branchy, "if x[0] > 0.5") in str(info.value)
    # A batch where every row keeps the branch replays.
    np.testing.assert_array_equal(tape.forward(X[[0, 1, 4]]), [1.0, 2.0, 0.9])


def test_message_names_the_guard_that_flipped():
    tape = wg.record(two_guards, np.array([0.5, 1.0]))     # y = 2.5: both ifs taken
    assert tape.n_guards == 2
    assert tape.forward([0.0, 1.0]) == 4.0                   # (2 + 0) ** 2
    with pytest.raises(wg.BranchChangedError) as info:
        tape.forward([2.0, 1.0])                              # first guard flips
    assert line_of(two_guards, "if x[0] <= 1.0") in str(info.value)
    assert "<=" in str(info.value)
    with pytest.raises(wg.BranchChangedError) as info:
        tape.forward([1.0, 1.0])                              # y == 3: second guard flips
    assert line_of(two_guards, "if y != 3.0") in str(info.value)
    assert "!=" in str(info.value)


def test_where_records_no_guard():
    def with_where(x):
        return wg.where(x[0] > 0.5, x[0] * x[1], -x[1])

    def with_np_where(x):
        return np.where(x[0] > 0.5, x[0] * x[1], -x[1])

    for f in (with_where, with_np_where):
        tape = wg.record(f, np.array([1.0, 2.0]))
        assert tape.n_guards == 0
        assert tape.forward([0.0, 2.0]) == -2.0
        np.testing.assert_array_equal(tape.gradient([0.0, 2.0]), [0.0, -1.0])
        np.testing.assert_array_equal(tape.gradient([3.0, 2.0]), [2.0, 3.0])
        X = np.array([[1.0, 1.0], [0.0, 1.0]])
        np.testing.assert_array_equal(tape.forward(X), [1.0, -1.0])


def test_comparisons_that_are_not_used_record_nothing():
    def f(x):
        unused = x[0] > x[1]            # noqa: F841  (never converted to bool)
        return x[0] + x[1]

    tape = wg.record(f, np.array([1.0, 2.0]))
    assert tape.n_guards == 0 and len(tape) == 1
    assert tape.forward([5.0, 1.0]) == 6.0


def test_maximum_minimum_abs_clip_record_no_guards():
    def f(x):
        return np.sum(np.maximum(x, 0.0) + np.minimum(x, 1.0) + np.abs(x) + np.clip(x, -1, 1))

    tape = wg.record(f, np.array([-2.0, 0.5, 3.0]))
    assert tape.n_guards == 0
    assert tape.forward([3.0, -2.0, 0.5]) == f(np.array([3.0, -2.0, 0.5]))


@pytest.mark.parametrize("symbol, compare, nan_outcome", [
    ("<", lambda a: a < 1.0, False), (">", lambda a: a > 1.0, False),
    ("<=", lambda a: a <= 1.0, False), (">=", lambda a: a >= 1.0, False),
    ("==", lambda a: a == 1.0, False), ("!=", lambda a: a != 1.0, True),
])
def test_nan_flips_ordered_comparisons(symbol, compare, nan_outcome):
    """NaN makes every ordered comparison (and ==) false, != true, as IEEE."""
    def f(x):
        if compare(x):
            return x * 2.0
        return x * 3.0

    for start in (0.0, 2.0, 1.0):
        if bool(compare(start)) == nan_outcome:
            tape = wg.record(f, start)
            value = tape.forward(np.nan)               # the guard holds: NaN flows through
            assert np.isnan(value)
        else:
            tape = wg.record(f, start)
            with pytest.raises(wg.BranchChangedError):
                tape.forward(np.nan)


def test_while_loop_and_boolean_operators_record_guards():
    def f(x):
        y = x
        while y < 10.0:
            y = y * 2.0
        if y > 0 and x > 1.0:
            return y
        return -y

    tape = wg.record(f, 3.0)            # 3 -> 6 -> 12; three while tests, two ifs
    assert tape.n_guards == 5
    assert tape.forward(4.0) == 16.0
    assert tape.gradient(4.0) == 4.0
    with pytest.raises(wg.BranchChangedError):
        tape.forward(6.0)               # one doubling fewer
    with pytest.raises(wg.BranchChangedError):
        tape.forward(1.5)


def test_guard_on_a_parameter_flips_at_replay():
    def f(x, threshold):
        if x[0] > threshold:
            return x[0] * 2.0
        return x[0]

    tape = wg.record(f, np.array([1.0]), 0.5)
    np.testing.assert_array_equal(tape.forward([1.0], 0.5), [2.0])
    with pytest.raises(wg.BranchChangedError):
        tape.forward([1.0], 1.5)


def test_if_on_a_one_element_array_records_a_guard():
    def f(x):
        if x > 0.0:                     # x of shape (1,): one element, allowed
            return x * 2.0
        return x

    tape = wg.record(f, np.array([1.0]))
    assert tape.n_guards == 1
    with pytest.raises(wg.BranchChangedError):
        tape.forward([-1.0])
