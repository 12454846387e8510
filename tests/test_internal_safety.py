"""Even the recorder's Python-visible internals refuse what a sweep could not
trust: a bad append raises instead of reading outside the tape."""
import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops
from wengert._opcodes import Kind
from wengert._recorder import make_active

ADD_VV = ops.code_of("add", Kind.VV)
GT_VC = ops.code_of("gt", Kind.VC)


def attempts(r):
    return {
        "unknown opcode": lambda: r.push_one(255, 0, 0),
        "operand beyond the tape": lambda: r.push_one(ADD_VV, 0, 10**6),
        "negative operand": lambda: r.push_one(ADD_VV, -1, 0),
        "one bad row of many": lambda: r.push_many(ADD_VV, np.array([0, 10**6]), np.array([0, 0])),
        "const beyond the pool": lambda: r.push_one(ops.code_of("const"), 10**6, 0),
        "select with a bad side table entry": lambda: r.push_many(
            ops.code_of("select"), np.array([0]), np.array([10**6])),
        "unrecorded slot": lambda: make_active(r, 10**7),
        "comparison of nothing": lambda: r.compare(GT_VC, 0, 10**6),
    }


@pytest.mark.parametrize("label", list(attempts(None)))
def test_bad_appends_raise_and_leave_the_tape_valid(label):
    def f(x):
        with pytest.raises((wg.WengertError, IndexError)):
            attempts(x.recorder)[label]()
        return np.sum(x * x)

    tape = wg.record(f, np.ones(3))
    assert np.array_equal(tape.gradient(np.arange(3.0)), 2 * np.arange(3.0))
    assert len(tape) == 5
