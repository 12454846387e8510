"""A condition over a whole array records one guard: ``np.all(x > 0)``,
``np.any(x > 0)``, ``(x > 0).all()``, ``x.any()`` (truth as ``!= 0``)
count the comparison's 0/1 indicator (one map and one sum entry) and
compare the count, so ``bool()`` records one guard however many elements
the comparison has. Python's builtin ``all(x > 0)`` iterates and records
one guard per element."""
import builtins
import pickle
import re

import numpy as np
import pytest

import wengert as wg
from wengert.display import listing
from _helpers import assert_rel, central_jacobian, line_of, scalar_recording

N = 1000


def all_positive(x):
    if np.all(x > 0):
        return np.sum(np.log(x) * x)
    return np.sum(x ** 2)


def any_large(x):
    if (x > 2.0).any():
        return np.sum(np.sin(x) * x)
    return np.sum(x ** 3)


# name, function, the text its guard shows
SPELLINGS = [
    ("np.all", lambda x: np.all(x > 0), "all(x > 0)"),
    ("np.any", lambda x: np.any(x < 0), "any(x < 0)"),
    ("method all", lambda x: (x > 0).all(), "all(x > 0)"),
    ("method any", lambda x: (0 > x).any(), "any(x < 0)"),
    ("array all", lambda x: x.all(), "all(x != 0)"),
    ("array any", lambda x: np.any(x - 1.0), "any(v[1:1001] != 0)"),
]


@pytest.mark.parametrize("name, condition, text", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_one_guard_for_a_1000_element_comparison(name, condition, text):
    def f(x):
        if condition(x):
            return x * 2.0
        return x * 3.0

    x = np.linspace(0.5, 2.0, N)
    tape = wg.record(f, x)
    expected_factor = 2.0 if condition(x) else 3.0
    assert tape.n_guards == 1
    assert len(tape) <= 5                  # the map, the sum, the body
    np.testing.assert_array_equal(tape.forward(x), expected_factor * x)
    assert tape._guards[0].text == text
    assert tape._guards[0].where == line_of(f, "if condition(x)")


def test_flipping_one_element_raises_and_names_the_condition():
    x = np.linspace(0.5, 2.0, N)
    tape = wg.record(all_positive, x)
    assert tape.n_guards == 1
    for k in (0, 517, N - 1):
        flipped = x.copy()
        flipped[k] = -1.0
        for call in (tape.forward, tape.gradient, lambda z: tape.hvp(z, np.ones(N))):
            with pytest.raises(wg.BranchChangedError) as info:
                call(flipped)
            message = str(info.value)
            assert "`all(x > 0)`" in message
            assert line_of(all_positive, "if np.all(x > 0)") in message
            assert "was True" in message and "is False" in message
    # A batch names the first row where it flips.
    X = np.stack([x, x, x])
    X[2, 3] = 0.0
    with pytest.raises(wg.BranchChangedError, match="batch row 2"):
        tape.gradient(X)


def test_any_flips_only_when_no_element_is_left():
    x = np.full(N, 1.0)
    x[[10, 700]] = 3.0
    tape = wg.record(any_large, x)
    assert tape.n_guards == 1
    one_left = x.copy()
    one_left[10] = 0.0
    assert tape.forward(one_left) == pytest.approx(np.sum(np.sin(one_left) * one_left))
    none_left = one_left.copy()
    none_left[700] = 2.0                           # 2.0 > 2.0 is False
    with pytest.raises(wg.BranchChangedError, match=r"`any\(x > 2\)`"):
        tape.forward(none_left)


@pytest.mark.parametrize("f", [all_positive, any_large], ids=["all", "any"])
def test_values_and_derivatives_agree_with_differences_and_scalar_entries(f, rng):
    n = 40
    x = rng.uniform(0.5, 3.0, n)
    tape = wg.record(f, x)
    with scalar_recording():
        scalar = wg.record(f, x)
    assert tape.n_guards == scalar.n_guards == 1
    for _ in range(3):
        z = rng.uniform(0.5, 3.0, n)
        z[0] = 2.5                                 # any_large keeps its branch
        value = tape.forward(z)
        grad = tape.gradient(z)
        assert value == pytest.approx(f(z), rel=1e-13)
        assert_rel(value, scalar.forward(z), 1e-13)
        assert_rel(grad, scalar.gradient(z), 1e-13)
        assert_rel(grad, central_jacobian(f, z), 1e-7, atol=1e-7)
        v = rng.standard_normal(n)
        assert_rel(tape.hvp(z, v), scalar.hvp(z, v), 1e-12, atol=1e-14)


AXES = [None, 0, 1, -1, (0, 2), (), (2, 1, 0), -3]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("which", ["all", "any"])
def test_axis_and_keepdims_match_numpy_at_every_point(which, axis, keepdims, rng):
    """The reduced condition has NumPy's shape, and (selected with where,
    which records no guard) NumPy's outcome at replayed points."""
    shape = (2, 3, 4)

    def f(x):
        c = getattr(np, which)(x > 0, axis=axis, keepdims=keepdims)
        return wg.where(c, 1.0, 0.0) + 0.0 * np.sum(x)

    x = rng.standard_normal(shape)
    expected = getattr(np, which)(x > 0, axis=axis, keepdims=keepdims)
    tape = wg.record(f, x)
    assert tape.out_shape == expected.shape
    assert tape.n_guards == 0
    for z in (x, np.abs(x), -np.abs(x), rng.standard_normal(shape),
              np.where(rng.random(shape) < 0.9, 1.0, -1.0)):
        np.testing.assert_array_equal(
            tape.forward(z), getattr(np, which)(z > 0, axis=axis, keepdims=keepdims))


def test_a_guard_on_one_element_of_a_reduced_condition():
    def f(x):
        rows = np.all(x > 0, axis=1)
        if rows[1]:
            return np.sum(x[1])
        return np.sum(x[0])

    x = np.ones((3, 10))
    x[0, 0] = -1.0
    tape = wg.record(f, x)
    assert tape.n_guards == 1
    assert tape._guards[0].text == "all(x > 0, axis=1)[1]"
    flipped = x.copy()
    flipped[1, 4] = -2.0
    with pytest.raises(wg.BranchChangedError, match=r"`all\(x > 0, axis=1\)\[1\]`"):
        tape.forward(flipped)
    changed_elsewhere = x.copy()
    changed_elsewhere[2, 4] = -2.0            # another row: the guard holds
    assert tape.forward(changed_elsewhere) == 10.0
    with pytest.raises(wg.ShapeError, match="ambiguous"):
        wg.record(lambda x: 1.0 if np.all(x > 0, axis=1) else 0.0, x)


def test_nan_follows_numpy():
    def f(x):
        return np.stack([wg.where(np.all(x > 0), 1.0, 0.0), wg.where(np.any(x != 0), 1.0, 0.0),
                         wg.where(np.all(x), 1.0, 0.0), wg.where(np.any(x > 0), 1.0, 0.0)])

    x = np.ones(12)
    tape = wg.record(f, x)
    for z in (x, np.full(12, np.nan), np.where(np.arange(12) == 5, np.nan, 0.0),
              np.where(np.arange(12) == 5, np.nan, 1.0)):
        expected = [np.all(z > 0), np.any(z != 0), np.all(z), np.any(z > 0)]
        np.testing.assert_array_equal(tape.forward(z), np.array(expected, dtype=float))
    # A guard on all(x > 0) flips at a NaN; one on any(x != 0) holds.
    guarded = wg.record(all_positive, np.ones(12))
    with pytest.raises(wg.BranchChangedError):
        guarded.forward(np.where(np.arange(12) == 3, np.nan, 1.0))

    def g(x):
        if np.any(x != 0):
            return x * 2.0
        return x

    nonzero = wg.record(g, np.zeros(12) + np.arange(12))
    assert np.isnan(nonzero.forward(np.full(12, np.nan))).all()


@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), 0), ((0, 3), None),
                                         ((3, 0), 1), ((3, 0), 0), ((0, 3), 1)])
def test_empty_rows_are_constants_as_in_numpy(shape, axis):
    def f(x):
        c_all = np.all(x > 0, axis=axis)
        c_any = (x > 0).any(axis=axis)
        assert not isinstance(c_all, wg.tracing.Comparison)
        np.testing.assert_array_equal(c_all, np.all(np.ones(shape) > 0, axis=axis))
        np.testing.assert_array_equal(c_any, np.any(np.ones(shape) > 0, axis=axis))
        if np.all(x > 0):
            return np.sum(x) + 1.0
        return np.sum(x)

    tape = wg.record(f, np.ones(shape))
    assert tape.n_guards == 0
    assert tape.forward(np.ones(shape)) == 1.0


def test_a_0d_condition_is_its_own_all_and_any():
    def f(x):
        c = x[0] > 0.5
        assert np.all(c) is c and np.any(c) is c and c.all() is c
        if np.any(x[1]):
            return x[0] * x[1]
        return x[0]

    tape = wg.record(f, np.array([1.0, 2.0]))
    assert tape.n_guards == 1 and tape._guards[0].text == "x[1] != 0"
    with pytest.raises(wg.BranchChangedError):
        tape.forward([1.0, 0.0])


def test_where_with_a_reduced_condition_broadcasts():
    def f(x):
        return wg.where(np.all(x > 0), np.sqrt(x), -x)

    x = np.linspace(1.0, 2.0, 10)
    tape = wg.record(f, x)
    assert tape.n_guards == 0 and tape.out_shape == (10,)
    some_negative = x.copy()
    some_negative[3] = -1.0
    np.testing.assert_array_equal(tape.forward(x), np.sqrt(x))
    np.testing.assert_array_equal(tape.forward(some_negative), -some_negative)
    np.testing.assert_array_equal(tape.jacobian(x), np.diag(0.5 / np.sqrt(x)))
    np.testing.assert_array_equal(tape.jacobian(some_negative), -np.eye(10))

    def g(x):                          # a (3, 1) condition against (3, 4) branches
        return np.where(np.any(x < 0, axis=1, keepdims=True), 0.0, x)

    y = np.arange(1.0, 13.0).reshape(3, 4)
    y[1, 2] = -1.0
    np.testing.assert_array_equal(wg.record(g, np.ones((3, 4))).forward(y),
                                  np.where(np.any(y < 0, axis=1, keepdims=True), 0.0, y))


def test_builtin_all_records_one_guard_per_element():
    def f(x):
        if all(x > 0):
            return np.sum(x)
        return -np.sum(x)

    tape = wg.record(f, np.ones(20))
    assert tape.n_guards == 20


@pytest.mark.parametrize("call, error", [
    (lambda x: np.all(x > 0, axis=2), wg.AxisError),
    (lambda x: (x > 0).any(axis=-3), wg.AxisError),
    (lambda x: x.all(axis=(0, 0)), wg.ArgumentError),
    (lambda x: np.any(x > 0, axis=1.0), wg.ArgumentTypeError),
    (lambda x: np.all(x > 0, out=np.zeros(3, dtype=bool)), wg.TracingError),
    (lambda x: (x > 0).all(out=np.zeros(())), wg.TracingError),
    (lambda x: np.any(x, where=np.ones((3, 4), dtype=bool)), wg.TracingError),
    (lambda x: np.all(x > 0, keepdims=np.ones(2)), wg.ArgumentTypeError),
    (lambda x: np.all(x[0, 0] > 0, axis=0), wg.AxisError),
])
def test_bad_arguments_raise_clear_errors(call, error):
    with pytest.raises(error):
        wg.record(call, np.ones((3, 4)))


def test_out_error_says_what_to_do():
    with pytest.raises(wg.TracingError, match=r"np.all\(..., out=\).*condition it returns"):
        wg.record(lambda x: np.all(x > 0, out=np.zeros((), dtype=bool)), np.ones(3))


def test_optimize_save_load_and_pickle_keep_the_guard(tmp_path):
    x = np.linspace(0.5, 2.0, 50)
    flipped = x.copy()
    flipped[20] = -0.5
    tape = wg.record(all_positive, x)
    path = tmp_path / "guarded.wgt"
    tape.save(path)
    for copy in (tape.optimize(), wg.load(path), pickle.loads(pickle.dumps(tape)),
                 wg.load(path).optimize()):
        assert copy.n_guards == 1
        assert copy.forward(x) == tape.forward(x)
        np.testing.assert_array_equal(copy.gradient(x), tape.gradient(x))
        with pytest.raises(wg.BranchChangedError, match=r"`all\(x > 0\)`"):
            copy.forward(flipped)


def test_transforms_record_again_where_the_condition_flips():
    grad = wg.value_and_grad(all_positive)
    x = np.linspace(0.5, 2.0, 30)
    value, g = grad(x)
    assert value == pytest.approx(all_positive(x))
    np.testing.assert_allclose(g, np.log(x) + 1.0)
    flipped = x.copy()
    flipped[7] = -1.0
    value, g = grad(flipped)
    assert value == pytest.approx(np.sum(flipped ** 2))
    np.testing.assert_allclose(g, 2.0 * flipped)


def test_listing_shows_the_count_and_the_condition():
    def f(x, p):
        if np.all(x > p):
            return np.sum(x)
        return -np.sum(x)

    tape = wg.record(f, np.ones(10), 0.5)
    text = listing(tape)
    assert re.search(r"^v\[1:11\] += v\[-9:1\] > p\[0\]$", text, re.M)
    assert re.search(r"^v\[11\] += sum\(v\[1:11\]\)$", text, re.M)
    guard = text.splitlines()[-1]
    assert guard.startswith("guard") and "v[11] == 10" in guard
    assert f"# must stay True: `all(x > p[0])` at {line_of(f, 'if np.all')}" in guard


# A condition, its guard's text when recorded at X0 (10 inputs)
CONDITIONS = [
    (lambda x: np.all((x > 0) & (x < 3)), "all((x > 0) & (x < 3))"),
    (lambda x: np.any(~(x > 0)), "any(~(x > 0))"),
    (lambda x: ((x > 0) | (x < -5))[3], "((x > 0) | (x < -5))[3]"),
    (lambda x: np.all((x[:5] > 1) ^ (x[5:] > 1)), "all((x[0:5] > 1) ^ (x[5:10] > 1))"),
    (lambda x: (~(x > 1))[2], "(~(x > 1))[2]"),
    (lambda x: np.all(x.reshape(2, 5) > 0.5, axis=1)[1], "all(x > 0.5, axis=1)[1]"),
    (lambda x: np.any(x.reshape(2, 5) > 1.5, axis=-1, keepdims=True)[0],
     "any(x > 1.5, axis=-1)[0, 0]"),
    (lambda x: np.all(np.any(x.reshape(2, 5) > 1, axis=-1)), "all(any(x > 1, axis=-1))"),
    (lambda x: np.all(x[::2] > 0.5), "all([x[0], x[2], x[4], ...] > 0.5)"),
    (lambda x: np.any(x > np.arange(10.0)), "any(x > [0, 1, 2, ...])"),
    (lambda x: np.all(x[1:4] <= x[7]), "all(x[1:4] <= x[7])"),
    (lambda x: x[2] > x[7], "x[2] > x[7]"),
    (lambda x: np.all(x[3] > 0), "x[3] > 0"),
]
X0 = np.linspace(0.2, 2.0, 10)


@pytest.mark.parametrize("condition, text", CONDITIONS, ids=[c[1] for c in CONDITIONS])
def test_guard_texts_and_outcomes_follow_numpy(condition, text, rng):
    """The guard reads as the condition was written, and a replay raises
    exactly where NumPy's answer differs from the recorded one."""
    def f(x):
        if condition(x):
            return x * 2.0
        return x * 3.0

    tape = wg.record(f, X0)
    assert tape.n_guards == 1
    assert tape._guards[0].text == text
    recorded = bool(condition(X0))
    outcomes = set()
    for _ in range(40):
        z = X0 + rng.choice([0.0, 1.0, -1.0, 5.0, -10.0], size=10, p=[0.6, 0.1, 0.1, 0.1, 0.1])
        outcomes.add(bool(condition(z)))
        if bool(condition(z)) == recorded:
            np.testing.assert_array_equal(tape.forward(z), f(z))
        else:
            with pytest.raises(wg.BranchChangedError):
                tape.forward(z)
    assert outcomes == {True, False}


@pytest.mark.parametrize("combine, x0", [
    # & with an int array multiplies: 2 where true, so a count of 2s can
    # reach n with half the elements false (all was True here, NumPy False).
    (lambda c, x: c & np.full(4, 2), [1.0, 1.0, -1.0, -1.0]),
    (lambda c, x: c & x, [1.0, -1.0, 2.0, 3.0]),              # a traced operand
    (lambda c, x: c | (x - 1.0), [0.5, 1.0, -3.0, 0.25]),      # maximum: any value
    (lambda c, x: ~(c & (2.0 * x)), [0.25, 1.0, 0.5, 2.0]),
    (lambda c, x: c | x, [np.nan, -1.0, -2.0, -3.0]),         # NaN: true, as != 0
])
@pytest.mark.parametrize("which", ["all", "any"])
def test_all_and_any_of_a_condition_with_a_non_condition_operand_use_its_truth(
        combine, x0, which):
    """Such a condition is true where its value is != 0, element by element
    (bool() of an element); all and any must agree with those elements."""
    x0 = np.array(x0)
    seen = []

    def f(x):
        c = combine(x > 0, x)
        seen.append([bool(c[i]) for i in range(4)])
        return x[1] + (1.0 if getattr(np, which)(c) else -1.0)
    tape = wg.record(f, x0)
    expected = getattr(builtins, which)(seen[-1])
    assert tape.forward(x0) == x0[1] + (1.0 if expected else -1.0)
