"""The Tape: a recorded Wengert list and the drivers that replay it."""
from __future__ import annotations

import math
import threading
import warnings
from typing import NamedTuple, Optional

import numpy as np

from wengert import _opcodes as ops
from wengert._arguments import MAX_DIMS, check_choice, real_array
from wengert._errors import (ArgumentError, BranchChangedError, ShapeError, TapeFormatError,
                             WengertError)
from wengert._records import Guard, Param, Static
from wengert._engine import Engine
# wg.record lives beside the tracer it runs; wengert.tape.record stays.
from wengert.recording import record  # noqa: F401

_VALID_CODES = ops.valid_codes()
# Parameters a constructed tape may declare without giving their values.
_MAX_UNSPECIFIED_PARAMS = 2**24
# Bytes of tangent or adjoint storage one jacobian chunk may use.
_CHUNK_BYTES = 64 * 2**20
_MAX_CHUNK = 64


def _shape_text(shape):
    return str(tuple(shape))


def _chunk(n_dirs, bytes_per_dir):
    """Directions per sweep: at most _MAX_CHUNK and _CHUNK_BYTES of storage."""
    return int(max(1, min(n_dirs, _MAX_CHUNK, _CHUNK_BYTES // max(1, bytes_per_dir))))


def _unstack(stacked, B, shape):
    """Per-point results ``(B or 1, ...)`` as ``shape`` for one point (a
    float when 0-d, as the contract asks) or ``(B,) + shape`` for a batch."""
    try:
        if B is None:
            out = stacked[0].reshape(shape)
            return float(out) if out.ndim == 0 else out
        return stacked.reshape((B,) + shape)
    except ValueError as exc:           # more dimensions than NumPy allows
        raise ShapeError(f"the result of shape {(B,) + tuple(shape) if B is not None else shape} "
                         f"cannot be a NumPy array: {exc}") from None


class UnitSeeds(NamedTuple):
    """Seeds for :meth:`Tape._replay` in K directions that are 1 at
    ``(rows[i], directions[i])`` and 0 elsewhere, at every point: unit
    directions (a Jacobian or Hessian in chunks) and a colouring's seed
    matrix. Rows are inputs for ``seeds`` (each pair at most once) and
    outputs for ``output_seeds`` (outputs sharing a slot add up). They are
    written straight into the work array, so they cost one write per 1, not
    a dense ``(rows, B, K)`` array (which for a chunk of Jacobian rows would
    rival the sweep it seeds)."""
    rows: np.ndarray
    directions: np.ndarray
    K: int

    @classmethod
    def block(cls, start, K):
        """The unit vectors of rows ``start .. start + K - 1``, one per direction."""
        return cls(start + np.arange(K), np.arange(K), K)


class Replay(NamedTuple):
    """Whole slot arrays of one :meth:`Tape._replay`: rows are slots (the
    inputs, the parameters, then one per operation), columns the B points;
    None where the replay was not asked for them.

    Attributes
    ----------
    values : ndarray, shape (n_slots, B)
        Every slot's value.
    tangents : ndarray, shape (n_slots, B, K) or None
        Every slot's tangent along the K input seeds (forward mode).
    adjoints : ndarray or None
        Every slot's adjoint: ``(n_slots, B, K)`` for K output seeds
        (reverse mode), or ``(n_slots, B)`` for the output weights of a
        second-order replay (the first-order adjoints of ``w·f``).
    adjoint_tangents : ndarray, shape (n_slots, B, K) or None
        Second order: the tangents of the adjoints along the K input seeds;
        the input rows hold ``H(w·f) @ V``.
    """
    values: np.ndarray
    tangents: Optional[np.ndarray] = None
    adjoints: Optional[np.ndarray] = None
    adjoint_tangents: Optional[np.ndarray] = None


class _Memo:
    """Values computed once, on first use, by key. Threads that ask for the
    same entry at once wait for one computation; the lock is re-entrant, so
    a computation may ask for other entries."""

    def __init__(self):
        self._lock = threading.RLock()
        self._entries = {}

    def get(self, key, make):
        """The entry ``key``, computed by ``make()`` on first use."""
        value = self._entries.get(key)
        if value is None:
            with self._lock:
                value = self._entries.get(key)
                if value is None:
                    value = self._entries[key] = make()
        return value

    def peek(self, key):
        """The entry ``key`` if it was computed, else None (computes nothing)."""
        return self._entries.get(key)


class Tape:
    """A recorded function ``f(x, *params)``, replayable at any point.

    Create one with :func:`wengert.record`. The tape holds the operations as
    flat arrays; compiled sweeps replay them for values, directional
    derivatives (``jvp``), adjoints (``vjp``, ``gradient``) and Jacobians.

    Attributes
    ----------
    n_inputs, n_params, n_outputs, n_ops : int
        Elements of ``x``, of the dynamic parameters, of the output, and the
        number of recorded operations (``len(tape)``).
    in_shape, out_shape : tuple
        Shapes of ``x`` and of ``f(x)``.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> tape = wg.record(lambda x: np.log(x[0]) + x[0] * x[1] - np.sin(x[1]), [2.0, 5.0])
    >>> round(tape.forward([2.0, 5.0]), 3)
    11.652
    >>> tape.gradient([2.0, 5.0]).round(3).tolist()
    [5.5, 1.716]
    """

    def __init__(self, *, opcodes, args, consts, aux, outputs, in_shape, out_shape,
                 param_specs=(), guards=(), n_params=None):
        in_shape = _checked_shape(in_shape, "input shape")
        out_shape = _checked_shape(out_shape, "output shape")
        self.in_shape = in_shape
        self.out_shape = out_shape
        n_inputs = math.prod(in_shape)
        self._param_specs = _checked_param_specs(param_specs, n_inputs)
        param_parts = [spec.values.reshape(-1) for spec in self._param_specs
                       if isinstance(spec, Param)]
        self._recorded_params = _read_only(np.concatenate(param_parts) if param_parts
                                           else np.zeros(0))
        if n_params is None:
            n_params = self._recorded_params.size
        elif not isinstance(n_params, (int, np.integer)) or isinstance(n_params, bool) or n_params < 0:
            raise TapeFormatError(f"invalid tape: n_params must be a non-negative integer, "
                                  f"not {n_params!r:.40}")
        elif not self._param_specs and n_params:
            # Arrays without recorded parameter values: one flat parameter,
            # zero by default; a count that could not be a real tape's is
            # refused before anything is allocated for it.
            if n_params > _MAX_UNSPECIFIED_PARAMS:
                raise TapeFormatError(
                    f"invalid tape: {n_params} parameters without param_specs; give their "
                    f"recorded values in param_specs (at most {_MAX_UNSPECIFIED_PARAMS} "
                    "default to zero)")
            zeros = _read_only(np.zeros(int(n_params)))
            self._param_specs = [Param((int(n_params),), n_inputs, zeros)]
            self._recorded_params = zeros
        if n_params != self._recorded_params.size:
            raise TapeFormatError(
                f"invalid tape: {n_params} parameter slots but the parameter "
                f"specifications hold {self._recorded_params.size} values")
        guards = _checked_guards(guards)
        self._guards = guards
        opcodes = _exact(opcodes, np.uint8, "opcodes")
        args = _exact(args, np.int32, "operands")
        if opcodes.ndim != 1:
            raise TapeFormatError(f"invalid tape: opcodes have shape {opcodes.shape}; "
                                  "expected one per operation, (n_ops,)")
        if args.shape != (opcodes.size, 2) and not (args.size == 0 == opcodes.size):
            # Two operands per operation, as given: reshaping other arrays
            # could make a valid-looking tape of other operands.
            raise TapeFormatError(f"invalid tape: operands have shape {args.shape}; "
                                  f"expected one pair per operation, ({opcodes.size}, 2)")
        aux = _exact(aux, np.int32, "side table")
        outputs = _exact(outputs, np.int32, "outputs")
        try:
            consts = np.asarray(consts)
        except (ValueError, TypeError, RuntimeError):
            raise TapeFormatError("invalid tape: constants are not a regular array") from None
        if consts.dtype.kind not in "fiu":
            raise TapeFormatError(f"invalid tape: constants must be numbers, not {consts.dtype}")
        try:
            self._engine = Engine(
                opcodes, args, consts, aux, outputs, n_inputs, n_params,
                np.array([g.code for g in guards], dtype=np.uint8),
                np.array([(g.a0, g.a1) for g in guards], dtype=np.int32).reshape(-1, 2),
                np.array([g.expected for g in guards], dtype=np.uint8),
                _VALID_CODES)
        except (ValueError, TypeError, OverflowError) as exc:
            raise TapeFormatError(f"invalid tape: {exc}") from exc
        if self._engine.outputs.size != int(np.prod(out_shape)):
            raise TapeFormatError(
                f"invalid tape: {self._engine.outputs.size} output slots for output shape {out_shape}")
        self._engine.branch_error = self._branch_error
        self.n_inputs = n_inputs
        self.n_params = int(n_params)
        self.n_outputs = int(self._engine.outputs.size)
        self.n_ops = int(self._engine.opcodes.size)
        self._scalar_out = out_shape == ()
        self._memo = _Memo()

    # -- state: everything that defines the tape, as plain data -----------------

    def _state(self):
        """The tape as a dict of arrays, plain values and records (``Param``,
        ``Static``, ``Guard``); ``Tape._from_state`` rebuilds it (validating
        again). Save/load and pickling use this."""
        e = self._engine
        return dict(
            opcodes=e.opcodes, args=e.args, consts=e.consts, aux=e.aux, outputs=e.outputs,
            in_shape=self.in_shape, out_shape=self.out_shape, n_params=self.n_params,
            param_specs=list(self._param_specs), guards=list(self._guards),
        )

    @classmethod
    def _from_state(cls, state):
        return cls(**state)

    def __reduce__(self):
        # Records as the plain tuples they replace: the pickle's format is
        # unchanged, and loads in releases without wengert._records.
        state = self._state()
        state["param_specs"] = [spec.as_tuple() for spec in state["param_specs"]]
        state["guards"] = [g.as_tuple() for g in state["guards"]]
        return (_tape_from_state, (state,))

    # -- description -----------------------------------------------------------

    def __len__(self):
        return self.n_ops

    def __str__(self):
        from wengert.display import summary
        return summary(self)

    @property
    def n_guards(self):
        return len(self._guards)

    def __repr__(self):
        return (f"<wengert.Tape: {self.n_ops} operations, inputs {self.in_shape}, "
                f"outputs {self.out_shape}, {self.n_params} parameters, "
                f"{self.n_guards} guards>")

    def _branch_error(self, guard, point):
        g = self._guards[guard]
        at = f"at batch row {point}" if point >= 0 else "at this point"
        return BranchChangedError(
            f"the comparison `{g.text}` recorded at {g.where} was {g.expected} when the tape "
            f"was recorded but is {not g.expected} {at}: the tape is only "
            "valid where every branch goes the same way. Record again at this point "
            "(wg.grad and the other wg.* transforms do that for you), or use wg.where "
            "to record both branches.")

    # -- arguments --------------------------------------------------------------

    def _inputs(self, x):
        """(flat single point, None) or (points as (n_inputs, B), B)."""
        x = real_array(x, "x")
        if x.shape == self.in_shape:
            return x.reshape(-1), None
        if x.ndim == len(self.in_shape) + 1 and x.shape[1:] == self.in_shape:
            # A view: _replay copies it into the work array.
            return x.reshape(x.shape[0], self.n_inputs).T, x.shape[0]
        raise ShapeError(
            f"x has shape {_shape_text(x.shape)}, but this tape was recorded for inputs of "
            f"shape {_shape_text(self.in_shape)} (or a batch of shape "
            f"(B,) + {_shape_text(self.in_shape)})")

    def _params(self, extras):
        if not extras:
            return self._recorded_params
        if len(extras) > len(self._param_specs):
            raise ArgumentError(
                f"{len(extras)} extra arguments given, but the function was recorded "
                f"with {len(self._param_specs)}")
        values = []
        for i, spec in enumerate(self._param_specs):
            if isinstance(spec, Param):
                if i < len(extras):
                    value = real_array(extras[i], f"extra argument {i}")
                    if value.shape != spec.shape:
                        raise ShapeError(
                            f"extra argument {i} (a dynamic parameter) has shape "
                            f"{_shape_text(value.shape)}; it was recorded with shape "
                            f"{_shape_text(spec.shape)}")
                    values.append(value.reshape(-1))
                else:
                    values.append(spec.values.reshape(-1))
            elif i < len(extras) and not _same_static(extras[i], spec.value):
                raise ArgumentError(
                    f"static argument changed: extra argument {i} was recorded as "
                    f"{spec.value!r} and is now {extras[i]!r}; record again (static "
                    "arguments are baked into the tape; pass floats or float arrays "
                    "to make them replaceable parameters)")
        return np.concatenate(values) if values else self._recorded_params

    # -- the driver: every replay of a batch or of many directions ----------------
    #
    # The tools above the tape (display, traces, sparsity) use these, with
    # _state(), the argument parsers above and the compact form
    # (wengert._compact), and nothing else of the tape's insides.

    def _replay(self, X, params, *, seeds=None, output_seeds=None, weights=None,
                batched=False, values=None):
        """Replay the tape at B points; return whole slot arrays.

        The one driver of the sweeps for batches and many directions: every
        batch driver of the tape and every tool goes through it. (The
        one-point fast paths of ``forward``, ``gradient`` and ``hvp`` call
        the engine's work-block entry points instead.)

        Parameters
        ----------
        X : ndarray, shape (n_inputs, B) or (n_inputs,)
            The points, one per column; a flat vector is one point (B = 1).
            Not read when ``values`` is given.
        params : ndarray, shape (n_params,)
            The flat parameter vector (as :meth:`_params` gives it), the same
            at every point. Not read when ``values`` is given.
        seeds : array_like, shape (n_inputs, B or 1, K), or UnitSeeds, optional
            Input tangents: forward mode along K directions.
        output_seeds : array_like, shape (n_outputs, B or 1, K), or UnitSeeds, optional
            Output adjoints: reverse mode for K output weights. Outputs that
            share a slot add up (as ``np.add.at``).
        weights : array_like, shape (n_outputs, B or 1), optional
            With ``seeds``: second order, forward over reverse, for the
            Hessian of ``weights · f`` along the seeds.
        batched : bool
            A flipped branch raises ``BranchChangedError`` naming the batch
            row (True) or saying "at this point" (False).
        values : ndarray, shape (n_slots, B), optional
            The ``values`` of an earlier replay at the same points, reused:
            a reverse replay skips its forward sweep, a forward replay
            recomputes them in place (the same numbers). Lets a Jacobian in
            chunks of directions sweep the values once.

        Returns
        -------
        Replay
            ``values``; ``tangents`` with ``seeds``; ``adjoints`` with
            ``output_seeds`` ``(n_slots, B, K)`` or with ``weights``
            ``(n_slots, B)``; ``adjoint_tangents`` with ``weights``. Index
            the rows with the output slots (``_state()["outputs"]``) for the
            outputs, with ``:n_inputs`` for the inputs.

        Raises
        ------
        BranchChangedError
            A guard flips at one of the points.
        """
        eng = self._engine
        if values is None:
            if X.ndim == 1:
                X = X[:, None]
            values = np.empty((eng.n_slots, X.shape[1]))
            values[:self.n_inputs] = X
            values[self.n_inputs:eng.first] = params[:, None]
            swept = False
        else:
            swept = True
        B = values.shape[1]
        tangents = adjoints = adjoint_tangents = None
        if seeds is not None:
            if isinstance(seeds, UnitSeeds):
                tangents = np.zeros((eng.n_slots, B, seeds.K))
                tangents[seeds.rows, :, seeds.directions] = 1.0
            else:
                tangents = np.zeros((eng.n_slots, B, seeds.shape[-1]))
                tangents[:self.n_inputs] = seeds
            eng.tangents(values, tangents, batched)
        elif not swept:
            eng.values(values, batched)
        if weights is not None:
            adjoints = self._at_outputs((eng.n_slots, B), weights)
            adjoint_tangents = np.zeros(tangents.shape)
            eng.seconds(values, tangents, adjoints, adjoint_tangents)
        elif isinstance(output_seeds, UnitSeeds):
            adjoints = np.zeros((eng.n_slots, B, output_seeds.K))
            np.add.at(adjoints, (eng.outputs[output_seeds.rows], slice(None),
                                 output_seeds.directions), 1.0)
            eng.adjoints(values, adjoints)
        elif output_seeds is not None:
            adjoints = self._at_outputs((eng.n_slots, B, output_seeds.shape[-1]), output_seeds)
            eng.adjoints(values, adjoints)
        return Replay(values, tangents, adjoints, adjoint_tangents)

    def _at_outputs(self, shape, seeds):
        """Zeros of ``shape`` with ``seeds`` (one row per output, broadcast
        over the other axes) accumulated at the output slots.

        The result is ``np.add.at(zeros, outputs, seeds)``'s, bit for bit: a
        slot several outputs share gets their sum in output order, and each
        seed lands as ``0.0 + seed``. But ``np.add.at`` costs per element
        what a whole reverse sweep does, so only repeated slots go through
        it; the others are assigned.
        """
        outputs = self._engine.outputs
        first, repeats = self._cached("output repeats", self._output_repeats)
        target = np.zeros(shape)
        if repeats is None:
            target[outputs] = seeds + 0.0
        else:
            target[outputs[first]] = seeds[first] + 0.0
            np.add.at(target, outputs[repeats], seeds[repeats])
        return target

    def _output_repeats(self):
        """``(first, repeats)``: the positions of the outputs whose slot no
        earlier output has, and of the others; ``(None, None)`` when every
        output has a slot of its own."""
        outputs = self._engine.outputs
        order = np.argsort(outputs, kind="stable")      # a slot's first output first
        repeated = np.zeros(outputs.size, dtype=bool)
        repeated[order[1:][outputs[order[1:]] == outputs[order[:-1]]]] = True
        if not repeated.any():
            return None, None
        return np.flatnonzero(~repeated), np.flatnonzero(repeated)

    def _cached(self, key, make):
        """What the tools keep per tape (its compact form, sparsity patterns
        and colourings): the entry ``key``, computed by ``make()`` on first
        use; threads asking at once wait for one computation."""
        return self._memo.get(key, make)

    def _scalar_form(self):
        """This tape, or when it holds array entries an equivalent tape of
        scalar entries only (built once, ``wengert._expand``): the oracle
        the tests hold the tools' native reading of array entries to."""
        if not self._engine.array_entries.size:
            return self

        def make():
            from wengert._expand import expand
            return Tape._from_state(expand(self._state())[0])
        return self._cached("scalar form", make)

    @property
    def _n_slots(self):
        """Values per point: inputs, parameters and every entry's results."""
        return self._engine.n_slots

    def _pattern(self, kind):
        """CSR arrays ``(indptr, indices)`` of the tape's Jacobian
        (``"jacobian"``: outputs by inputs) or Hessian (``"hessian"``)
        sparsity pattern, from the compiled index-set passes over the
        tape's arrays (wengert.sparsity builds on these)."""
        from wengert import _sparsity
        passes = {"jacobian": _sparsity.jacobian_pattern, "hessian": _sparsity.hessian_pattern}
        return passes[kind](self._engine)

    # -- values -------------------------------------------------------------------

    def forward(self, x, *args):
        """Values of ``f`` at ``x`` (or at each point of a batch).

        Parameters
        ----------
        x : float or array_like
            A point of the recorded shape, or a batch ``(B,) + x.shape``.
        *args
            New values of the dynamic parameters (omitted: the recorded ones).

        Returns
        -------
        float or ndarray
            ``f(x)``; a Python float for a scalar output at one point.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: x ** 2, np.zeros(2))
        >>> tape.forward([1.0, 3.0]).tolist()
        [1.0, 9.0]
        """
        x = real_array(x, "x")
        params = self._params(args) if args else self._recorded_params
        if x.shape == self.in_shape:
            if self._scalar_out:
                return self._engine.value_point(x, params, True)
            return self._engine.value_point(x, params, False).reshape(self.out_shape)
        X, B = self._inputs(x)
        values = self._replay(X, params, batched=True).values
        return _unstack(values[self._engine.outputs].T.copy(), B, self.out_shape)

    __call__ = forward

    # -- gradient --------------------------------------------------------------

    def gradient(self, x, *args):
        """Gradient of a scalar output: an array of ``x.shape``.

        Reverse mode: one sweep forward for values, one backward for adjoints,
        whatever the number of inputs. A batch ``(B,) + x.shape`` gives
        ``(B,) + x.shape``.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: np.sum(x ** 3), np.ones(3))
        >>> tape.gradient([1.0, 2.0, 3.0]).tolist()
        [3.0, 12.0, 27.0]
        """
        x = real_array(x, "x")
        if x.shape == self.in_shape and self._scalar_out:
            params = self._params(args) if args else self._recorded_params
            grad = self._engine.gradient_point(x, params)[1]
            return grad if self.in_shape else float(grad)
        return self._value_and_gradient(x, args)[1]

    def _gradient_of_point(self, x):
        """gradient(x) for x already a float64 array (the wg.grad
        fast path: skips the argument conversion)."""
        if x.shape == self.in_shape and self._scalar_out:
            grad = self._engine.gradient_point(x, self._recorded_params)[1]
            return grad if self.in_shape else float(grad)
        return self.gradient(x)

    def _value_and_gradient_of_point(self, x):
        if x.shape == self.in_shape and self._scalar_out:
            value, grad = self._engine.gradient_point(x, self._recorded_params)
            return value, (grad if self.in_shape else float(grad))
        return self.value_and_gradient(x)

    def value_and_gradient(self, x, *args):
        """``(f(x), gradient)`` of a scalar output from one pair of sweeps.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: x[0] * x[1], np.ones(2))
        >>> value, grad = tape.value_and_gradient([2.0, 3.0])
        >>> value, grad.tolist()
        (6.0, [3.0, 2.0])
        """
        return self._value_and_gradient(x, args)

    def _value_and_gradient(self, x, args):
        if not self._scalar_out:
            raise ShapeError(
                f"gradient needs a scalar output, but this tape's output has shape "
                f"{_shape_text(self.out_shape)}; use vjp(x, w) or jacobian(x)")
        x = real_array(x, "x")
        params = self._params(args) if args else self._recorded_params
        if x.shape == self.in_shape:
            value, grad = self._engine.gradient_point(x, params)
            return value, (grad if self.in_shape else float(grad))
        X, B = self._inputs(x)
        run = self._replay(X, params, output_seeds=np.ones((1, 1, 1)), batched=True)
        grad = run.adjoints[:self.n_inputs, :, 0].T.reshape((B,) + self.in_shape)
        return run.values[self._engine.outputs[0]].copy(), grad

    # -- directional derivatives ---------------------------------------------------

    def _directions(self, v, B, lead_shape, name, what):
        """Arrange seeds as (n, B or 1, K) (1: the same at every point of a
        batch); returns (seeds, k or None)."""
        v = real_array(v, name)
        n = int(np.prod(lead_shape))
        batch = () if B is None else (B,)
        if B is not None and v.shape == batch + lead_shape:
            return v.reshape(B, n).T[:, :, None], None
        if B is not None and v.ndim == len(lead_shape) + 2 and v.shape[:-1] == batch + lead_shape:
            return np.moveaxis(v.reshape(B, n, v.shape[-1]), 0, 1), v.shape[-1]
        if v.shape == lead_shape:
            return v.reshape(n, 1, 1), None
        if v.ndim == len(lead_shape) + 1 and v.shape[:-1] == lead_shape:
            k = v.shape[-1]
            return v.reshape(n, 1, k), k
        raise ShapeError(
            f"{name} has shape {_shape_text(v.shape)}; expected {what} "
            f"{_shape_text(lead_shape)} or {_shape_text(lead_shape)} + (k,)"
            + ("" if B is None else f", optionally with the batch axis ({B},) in front"))

    def _weights(self, w, B):
        """Arrange output weights as (n_outputs, B or 1, K) (1: the same at
        every point of a batch); returns (seeds, k or None). Accepted:
        out.shape, (k,) + out.shape, and with a batch (B,) + out.shape or
        (B, k) + out.shape."""
        w = real_array(w, "w")
        lead, m = self.out_shape, self.n_outputs
        if B is not None and w.shape == (B,) + lead:
            return w.reshape(B, m).T[:, :, None], None
        if B is not None and w.ndim == len(lead) + 2 and w.shape[0] == B and w.shape[2:] == lead:
            return np.moveaxis(w.reshape(B, w.shape[1], m), 2, 0), w.shape[1]
        if w.shape == lead:
            return w.reshape(m, 1, 1), None
        if w.ndim == len(lead) + 1 and w.shape[1:] == lead:
            k = w.shape[0]
            return w.reshape(k, m).T[:, None, :], k
        raise ShapeError(
            f"w has shape {_shape_text(w.shape)}; expected the output shape "
            f"{_shape_text(lead)} or (k,) + {_shape_text(lead)}"
            + ("" if B is None else f", optionally with the batch axis ({B},) in front"))

    def jvp(self, x, v, *args):
        """Jacobian-vector product ``J(x) @ v`` by forward mode.

        Parameters
        ----------
        x : array_like
            A point (or a batch of points).
        v : array_like
            A direction of ``x.shape``, or ``x.shape + (k,)`` for k directions
            propagated in one sweep.

        Returns
        -------
        ndarray or float
            ``out.shape`` (``+ (k,)``), with a leading batch axis for a batch.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: x[0] * x[1], np.ones(2))
        >>> tape.jvp([2.0, 3.0], [1.0, 0.0])
        3.0
        """
        X, B = self._inputs(x)
        params = self._params(args)
        seeds, k = self._directions(v, B, self.in_shape, "v", "the input shape")
        run = self._replay(X, params, seeds=seeds, batched=B is not None)
        result = np.moveaxis(run.tangents[self._engine.outputs], 1, 0)     # (B, n_out, K)
        if k is None:
            return _unstack(result[:, :, 0], B, self.out_shape)
        return _unstack(result, B, self.out_shape + (k,))

    def vjp(self, x, w, *args):
        """Vector-Jacobian product ``w @ J(x)`` by reverse mode.

        Parameters
        ----------
        x : array_like
            A point (or a batch of points).
        w : array_like
            An output weight of ``out.shape``, or ``(k,) + out.shape`` for k
            weights propagated in one sweep.

        Returns
        -------
        ndarray or float
            ``x.shape`` (``(k,) + x.shape``), with a leading batch axis for a batch.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: np.stack([x[0] * x[1], x[1]]), np.ones(2))
        >>> tape.vjp([2.0, 3.0], [1.0, 1.0]).tolist()
        [3.0, 3.0]
        """
        X, B = self._inputs(x)
        params = self._params(args)
        seeds, k = self._weights(w, B)
        run = self._replay(X, params, output_seeds=seeds, batched=B is not None)
        grad = run.adjoints[:self.n_inputs]             # (n_in, B, K)
        grad = np.moveaxis(grad, 0, -1)                 # (B, K, n_in)
        if k is None:
            grad = grad[:, 0, :]
        return _unstack(grad, B, ((k,) if k is not None else ()) + self.in_shape)

    # -- Jacobian -------------------------------------------------------------------

    def jacobian(self, x, *args, mode="auto"):
        """The Jacobian ``df/dx`` of shape ``out.shape + x.shape``.

        Parameters
        ----------
        mode : {"auto", "forward", "reverse"}
            Forward mode costs one tangent per input, reverse mode one adjoint
            per output; "auto" picks the side with fewer. Directions go in
            chunks so that memory stays bounded.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: np.stack([x[0] * x[1], np.sin(x[0])]), np.ones(2))
        >>> tape.jacobian([0.0, 2.0]).tolist()
        [[2.0, 0.0], [1.0, 0.0]]
        """
        check_choice(mode, "mode", ("auto", "forward", "reverse"))
        if mode == "auto":
            mode = "forward" if self.n_inputs <= self.n_outputs else "reverse"
        X, B = self._inputs(x)
        params = self._params(args)
        Bw = (1 if B is None else B)
        n_in, n_out = self.n_inputs, self.n_outputs
        J = np.zeros((Bw, n_out, n_in))
        n_dirs = n_in if mode == "forward" else n_out
        chunk = _chunk(n_dirs, 8 * self._engine.n_slots * Bw)
        outputs = self._engine.outputs
        values = None                   # swept once, reused by every chunk
        if mode == "reverse":
            values = self._replay(X, params, batched=B is not None).values
        for start in range(0, n_dirs, chunk):
            K = min(chunk, n_dirs - start)
            if mode == "forward":
                run = self._replay(X, params, seeds=UnitSeeds.block(start, K),
                                   batched=B is not None, values=values)
                values = run.values
                J[:, :, start:start + K] = np.moveaxis(run.tangents[outputs], 1, 0)
            else:
                run = self._replay(X, params, output_seeds=UnitSeeds.block(start, K),
                                   values=values)
                J[:, start:start + K, :] = np.moveaxis(run.adjoints[:n_in], 0, -1)
        return _unstack(J, B, self.out_shape + self.in_shape)

    # -- second order -------------------------------------------------------------------

    def _output_weights(self, w, B, name):
        """Output adjoint seeds (n_outputs, B) for second-order drivers."""
        if w is None:
            if not self._scalar_out:
                raise ShapeError(
                    f"{name} of a tape with output shape {_shape_text(self.out_shape)} needs "
                    f"an output weight w (the Hessian of w·f): pass w= of shape "
                    f"{_shape_text(self.out_shape)}")
            return np.ones((1, (1 if B is None else B)))
        w = real_array(w, "w")
        if w.shape == self.out_shape:
            return np.broadcast_to(w.reshape(-1, 1), (self.n_outputs, (1 if B is None else B)))
        if B is not None and w.shape == (B,) + self.out_shape:
            return w.reshape(B, self.n_outputs).T
        raise ShapeError(
            f"w has shape {_shape_text(w.shape)}; expected the output shape "
            f"{_shape_text(self.out_shape)}"
            + ("" if B is None else f" or a batch ({B},) + {_shape_text(self.out_shape)}"))

    def _second_order(self, X, B, params, seeds, weights):
        """H(w·f) @ V for seeds (n_inputs, B or 1, K) or UnitSeeds: returns
        (n_inputs, B, K)."""
        run = self._replay(X, params, seeds=seeds, weights=weights, batched=B is not None)
        return run.adjoint_tangents[:self.n_inputs]

    def hvp(self, x, v, *args, w=None):
        """Hessian-vector product ``H(x) @ v`` by forward-over-reverse sweeps.

        Parameters
        ----------
        x : array_like
            A point (or a batch ``(B,) + x.shape``).
        v : array_like
            A direction of ``x.shape``, or ``x.shape + (k,)`` for k directions
            in one pair of sweeps.
        w : array_like, optional
            Output weight for a vector-valued tape: the Hessian is that of
            ``w·f`` (the Lagrangian case). Required unless the output is scalar.

        Returns
        -------
        ndarray or float
            The same shape as ``v`` (with the batch axis in front for a batch).

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: x[0] ** 2 * x[1], np.ones(2))
        >>> tape.hvp([1.0, 2.0], [1.0, 0.0]).tolist()
        [4.0, 2.0]
        """
        x = real_array(x, "x")
        params = self._params(args) if args else self._recorded_params
        if x.shape == self.in_shape:
            v = real_array(v, "v")
            if v.shape == self.in_shape:
                weights = np.ascontiguousarray(self._output_weights(w, None, "hvp")[:, 0])
                out = self._engine.hvp_point(x, params, v, weights)
                return out if self.in_shape else float(out)
        X, B = self._inputs(x)
        weights = self._output_weights(w, B, "hvp")
        seeds, k = self._directions(v, B, self.in_shape, "v", "the input shape")
        result = np.moveaxis(self._second_order(X, B, params, seeds, weights), 0, 1)  # (B, n, K)
        if k is None:
            return _unstack(result[:, :, 0], B, self.in_shape)
        return _unstack(result, B, self.in_shape + (k,))

    def hessian(self, x, *args, w=None):
        """The Hessian ``x.shape + x.shape`` of a scalar output (or of
        ``w·f`` for a vector output), by blocks of Hessian-vector products.

        Parameters
        ----------
        x : array_like
            A point (or a batch ``(B,) + x.shape``; the result gains the
            leading ``B``).
        w : array_like, optional
            Output weight for a vector-valued tape, as for :meth:`hvp`.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: x[0] ** 2 * x[1], np.ones(2))
        >>> tape.hessian([1.0, 2.0]).tolist()
        [[4.0, 2.0], [2.0, 0.0]]
        """
        X, B = self._inputs(x)
        params = self._params(args)
        weights = self._output_weights(w, B, "hessian")
        n, Bw = self.n_inputs, (1 if B is None else B)
        chunk = _chunk(n, 16 * self._engine.n_slots * Bw)
        H = np.empty((Bw, n, n))
        for start in range(0, n, chunk):
            K = min(chunk, n - start)
            H[:, :, start:start + K] = np.moveaxis(
                self._second_order(X, B, params, UnitSeeds.block(start, K), weights), 1, 0)
        return _unstack(H, B, self.in_shape + self.in_shape)

    # -- sparsity (wengert.sparsity) -------------------------------------------------

    def jacobian_sparsity(self):
        """Boolean CSR pattern ``(out.size, x.size)`` of the Jacobian (cached);
        see :func:`wengert.sparsity.jacobian_sparsity`."""
        from wengert.sparsity import jacobian_sparsity
        return jacobian_sparsity(self)

    def hessian_sparsity(self):
        """Boolean CSR pattern ``(x.size, x.size)`` of the Hessian (cached);
        see :func:`wengert.sparsity.hessian_sparsity`."""
        from wengert.sparsity import hessian_sparsity
        return hessian_sparsity(self)

    def jacobian_colouring(self, mode="auto"):
        """The cached column (or row) colouring behind :meth:`sparse_jacobian`:
        ``n_colours``, ``colours`` and the ``seed`` matrix."""
        from wengert.sparsity import jacobian_colouring
        return jacobian_colouring(self, mode=mode)

    def hessian_colouring(self, method="star"):
        """The cached symmetric colouring behind :meth:`sparse_hessian`."""
        from wengert.sparsity import hessian_colouring
        return hessian_colouring(self, method=method)

    def sparse_jacobian(self, x, *args, mode="auto"):
        """The Jacobian at one point as ``scipy.sparse.csr_matrix``
        ``(out.size, x.size)``, from compressed sweeps (one per colour); see
        :func:`wengert.sparsity.sparse_jacobian`."""
        from wengert.sparsity import sparse_jacobian
        return sparse_jacobian(self, x, *args, mode=mode)

    def sparse_hessian(self, x, *args, w=None, method="star"):
        """The Hessian at one point as ``scipy.sparse.csr_matrix``
        ``(x.size, x.size)``, from compressed Hessian-vector products; see
        :func:`wengert.sparsity.sparse_hessian`."""
        from wengert.sparsity import sparse_hessian
        return sparse_hessian(self, x, *args, w=w, method=method)

    # -- persistence, optimisation, display (implemented in their own modules) ---------

    def save(self, path):
        """Write the tape to ``path`` (exactly that name) in wengert's portable
        format; read it back with :func:`wengert.load`.

        Examples
        --------
        >>> import numpy as np, wengert as wg, tempfile, os
        >>> tape = wg.record(lambda x: np.sum(x ** 2), np.ones(3))
        >>> path = os.path.join(tempfile.mkdtemp(), "f.wgt")
        >>> tape.save(path)
        >>> wg.load(path).gradient([1.0, 2.0, 3.0]).tolist()
        [2.0, 4.0, 6.0]
        """
        from wengert._io import save_tape
        save_tape(self, path)

    def optimize(self):
        """An equivalent, smaller tape (see :func:`wengert.optimize.optimize_tape`)."""
        from wengert.optimize import optimize_tape
        return optimize_tape(self)

    def trace(self, x, direction=None, *args, mode="forward", max_rows=200):
        """The forward tangent trace (``mode="forward"``, ``direction`` = v) or
        the reverse adjoint trace (``mode="reverse"``, ``direction`` = w) at
        ``x``, as text in the layout of the survey's tables 2 and 3.

        Each table shows at most ``max_rows`` rows (None: all), then a line
        saying how many it left out. See :func:`wengert.display.trace_text`."""
        from wengert._traces import trace_text
        return trace_text(self, x, direction, args, mode, max_rows=max_rows)

    def to_dot(self, *, max_nodes=200):
        """The computational graph as Graphviz text (``digraph ... { a -> b }``).

        At most ``max_nodes`` nodes (None: all); a cut graph ends with a note
        saying how many nodes it left out. See :func:`wengert.display.to_dot`."""
        from wengert.display import to_dot
        return to_dot(self, max_nodes=max_nodes)

    def stats(self):
        """Size, operation counts by kind and memory, as a dict."""
        from wengert.display import stats
        return stats(self)

    # -- the Wengert list ---------------------------------------------------------------

    def listing(self, x=None, *args, max_rows=200):
        """The Wengert list as text, one line per slot, with values at ``x``.

        Inputs are numbered ``v[1-n] .. v[0]`` and operations ``v[1] ..``, as
        in the survey by Baydin et al.; values are shown with 6 significant
        digits. At most ``max_rows`` rows are shown (None: all), then a line
        saying how many were left out, e.g. ``... 999,800 more rows not shown
        (max_rows=200)``. (Implemented in :func:`wengert.display.listing`.)

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> tape = wg.record(lambda x: np.sin(x[0]) * x[1], np.ones(2))
        >>> print(tape.listing([0.0, 2.0]))          # doctest: +NORMALIZE_WHITESPACE
        v[-1] = x[0]                =  0
        v[0]  = x[1]                =  2
        v[1]  = sin(v[-1])          =  0
        v[2]  = v[1] * v[0]         =  0
        y     = v[2]                =  0
        """
        from wengert.display import listing
        return listing(self, x, *args, max_rows=max_rows)


def _exact(values, dtype, what):
    """``values`` as ``dtype`` if every entry converts exactly, else a
    TapeFormatError: a silent wrap-around would give a valid-looking tape
    with another meaning."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, RuntimeError):
        raise TapeFormatError(f"invalid tape: {what} are not a regular array") from None
    if array.dtype == dtype:
        return array
    if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and array.size == 0):
        raise TapeFormatError(f"invalid tape: {what} must be integers, not {array.dtype}")
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise TapeFormatError(
            f"invalid tape: {what} hold values outside the range of {np.dtype(dtype).name}")
    return array.astype(dtype)


def _checked_shape(shape, what):
    """A shape as a tuple of non-negative Python ints, or TapeFormatError."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise TapeFormatError(f"invalid tape: the {what} must be a tuple of sizes, "
                              f"not {shape!r:.60}") from None
    # np.timedelta64 is an np.integer to NumPy, but no size.
    if len(dims) > MAX_DIMS or not all(isinstance(d, (int, np.integer))
                                       and not isinstance(d, (bool, np.timedelta64))
                                       and 0 <= d < 2**31 for d in dims):
        raise TapeFormatError(f"invalid tape: the {what} {dims!r:.60} is not a tuple of "
                              f"at most {MAX_DIMS} sizes between 0 and 2**31 - 1")
    dims = tuple(int(d) for d in dims)
    if math.prod(dims) >= 2**31:
        raise TapeFormatError(f"invalid tape: the {what} {dims} has more elements than "
                              "32-bit slot indices can address")
    return dims


def _read_only(array):
    """A float64 copy nobody else holds, marked read-only."""
    array = np.array(array, dtype=np.float64)
    array.flags.writeable = False
    return array


def _checked_param_specs(specs, n_inputs):
    """Parameter specifications checked, as ``Param`` records with private
    read-only value copies and ``Static`` records. Each may be such a record
    or a plain tuple ``("param", shape, first slot, values)`` or
    ``("static", value)`` (older pickles hold those)."""
    try:
        specs = list(specs)
    except TypeError:
        raise TapeFormatError("invalid tape: parameter specifications must be a "
                              "list") from None
    checked, offset = [], n_inputs
    for i, spec in enumerate(specs):
        if isinstance(spec, (Param, Static)):
            spec = spec.as_tuple()
        kind, *fields = spec if isinstance(spec, (tuple, list)) and spec else (None,)
        if not (isinstance(kind, str) and kind in ("param", "static")):
            raise TapeFormatError(f"invalid tape: parameter specification {i} is not "
                                  "('param', shape, slot, values) or ('static', value)")
        if kind == "static":
            if len(fields) != 1:
                raise TapeFormatError(f"invalid tape: static specification {i} is not "
                                      "('static', value)")
            checked.append(Static(fields[0]))
            continue
        if len(fields) != 3:
            raise TapeFormatError(f"invalid tape: parameter specification {i} is not "
                                  "('param', shape, slot, values)")
        shape, first, values = fields
        shape = _checked_shape(shape, f"shape of parameter {i}")
        try:
            values = np.asarray(values)
        except (TypeError, ValueError):
            values = None
        if (values is None or values.dtype.kind not in "fiu" or values.shape != shape
                or first != offset):
            raise TapeFormatError(
                f"invalid tape: parameter specification {i} needs real values of shape "
                f"{shape} starting at slot {offset}")
        checked.append(Param(shape, offset, _read_only(values)))
        offset += values.size
    return checked


def _checked_guards(guards):
    """Guards as ``Guard`` records with plain types, from records or plain
    tuples ``(code, a0, a1, expected, where, text)`` (the engine validates
    codes and operands)."""
    try:
        records = [tuple(g) for g in guards]
        if any(len(g) != 6 for g in records):
            raise ValueError("a guard record does not have six fields")
        records = [Guard(*g) for g in records]
        if any(g.expected not in (0, 1) for g in records):
            raise ValueError("a guard record does not have a 0/1 outcome")
        return [Guard(int(g.code), int(g.a0), int(g.a1), bool(g.expected), str(g.where),
                      str(g.text)) for g in records]
    except (TypeError, ValueError, OverflowError):
        raise TapeFormatError("invalid tape: guards must be (opcode, operand, operand, "
                              "outcome, location, text) records") from None


def _tape_from_state(state):
    if not isinstance(state, dict):
        raise TapeFormatError(f"invalid tape state: a dict was expected, not "
                              f"{type(state).__name__}")
    try:
        return Tape._from_state(state)
    except TypeError as exc:
        if isinstance(exc, WengertError):
            raise
        raise TapeFormatError(f"invalid tape state: {exc}") from None


def _same_static(new, old):
    if new is old:
        return True
    try:
        # Only the answer matters: NumPy's warnings about comparing odd
        # types (timedelta units, elementwise failures) are not the user's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = new == old
            if isinstance(same, np.ndarray):
                return bool(np.array_equal(new, old))
            return bool(same)
    except Exception:
        return False

