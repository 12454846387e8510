"""The exceptions wengert raises. Every one derives from :class:`WengertError`."""
import numpy as np


class WengertError(Exception):
    """Base class of every error wengert raises on purpose."""


class TracingError(WengertError, TypeError):
    """A traced value was used where a concrete Python number is required.

    Raised by ``float(traced)``, ``int(traced)``, ``math.sin(traced)`` and by
    operations the recorder does not support. The message names the NumPy or
    ``wg.*`` function to use instead.
    """


class ShapeError(WengertError, ValueError):
    """An argument has the wrong shape; the message names the expected one."""


class ArgumentError(WengertError, ValueError):
    """An argument has a wrong value (for example a changed static argument)."""


class ArgumentTypeError(WengertError, TypeError):
    """An argument has a type wengert cannot use (for example an unhashable
    static argument of a ``wg.*`` transform, or a non-callable ``f``)."""


class BranchChangedError(WengertError):
    """A replay reached a point where a recorded branch goes the other way.

    The tape is only valid where every comparison that steered Python control
    flow (``if x > 0:``) has the outcome it had when recorded. Record again at
    the new point, or use :func:`wengert.where` to record both branches.
    """


class TapeFormatError(WengertError, ValueError):
    """A tape (from a file, a pickle or a constructor) is malformed."""


class AxisError(WengertError, np.exceptions.AxisError):
    """An ``axis=`` argument is out of range for the array's dimensions.

    Also NumPy's ``AxisError`` (so a ``ValueError`` and an ``IndexError``),
    as NumPy raises it for the same call on plain arrays.
    """


class IndexingError(WengertError, IndexError):
    """An index into a traced array is out of range (also an ``IndexError``,
    as NumPy raises for the same index on a plain array)."""


class RecordingWarning(UserWarning):
    """A recording pattern that works but costs more than it should, such
    as an integer extra argument that changes between calls of a ``wg.*``
    transform (each new value records a new tape)."""
