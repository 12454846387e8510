"""Named records for a tape's guards and extra-argument specifications.

They are NamedTuples, so they compare equal to plain tuples with the same
fields. Pickles and ``Tape(...)`` also take the older plain tuples
``(code, a0, a1, expected, where, text)``, ``("param", shape, first, values)``
and ``("static", value)``: ``Tape.__init__`` checks them and converts them to
these records, and ``as_tuple()`` gives that plain form back (what a pickle
holds, so pickles stay readable by releases without this module).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Guard(NamedTuple):
    """A comparison that steered Python control flow while recording: a
    replay where ``code`` applied to operands ``a0``, ``a1`` no longer gives
    ``expected`` raises ``BranchChangedError``, naming ``text`` at ``where``."""
    code: int
    a0: int
    a1: int
    expected: bool
    where: str
    text: str

    def as_tuple(self):
        return tuple(self)


class Param(NamedTuple):
    """A dynamic parameter (a float or float array extra argument): its
    ``shape``, the slot of its first element, and its recorded ``values``."""
    shape: tuple
    first: int
    values: np.ndarray

    kind = "param"

    def as_tuple(self):
        return ("param", self.shape, self.first, self.values)


class Static(NamedTuple):
    """A static extra argument, baked into the tape: its recorded ``value``."""
    value: object

    kind = "static"

    def as_tuple(self):
        return ("static", self.value)
