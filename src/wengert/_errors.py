"""The exceptions wengert raises. Every one derives from :class:`WengertError`."""


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
