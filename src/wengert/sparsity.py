"""Sparsity patterns, colouring and sparse derivatives of a tape.

A tape knows which operations touch which inputs, so the nonzero structure
of its Jacobian and Hessian follows from the operation list alone:

* :func:`jacobian_sparsity` propagates index sets forward over the tape
  (the inputs each slot depends on through differentiable operations);
* :func:`hessian_sparsity` adds, for every nonlinear operation that can
  reach an output, the products of its operands' index sets (the
  "nonlinear interactions" of Walther 2008).

Both patterns hold every entry that can be nonzero at *any* point where the
tape is valid: a select (``wg.where``) counts both branches.

Colouring groups columns that never share a row (:func:`jacobian_colouring`)
or, for the symmetric Hessian, colours the adjacency graph so that every
entry can still be read off directly (:func:`hessian_colouring`, a star
colouring). Then ``p`` directional derivatives, one per colour, give the
whole matrix: :func:`sparse_jacobian` makes one ``tape.jvp`` (or
``tape.vjp``) sweep with ``p`` directions and :func:`sparse_hessian` one
``tape.hvp``. Patterns, colourings, seed matrices and recovery plans are
computed once per tape and cached on it.

Everything runs on the tape without the inputs it never reads
(``wengert._compact``): a tape that declares 10**9 inputs and reads three
costs what a tape of three inputs costs, up to the results that have one
entry per input by definition (the row pointers of the Hessian pattern, a
colouring's ``colours`` and ``seed``, made on first use).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from wengert import _colouring
from wengert._arguments import check_choice, real_array
from wengert._compact import compact
from wengert._errors import ArgumentError, ShapeError
from wengert.tape import UnitSeeds, _Memo

# In mode="auto", a second colouring (of the other side of the Jacobian) is
# only tried when its work estimate stays below this many steps or a few
# times the first one's.
_AUTO_BUDGET = 10**7


class _Pattern:
    """A CSR pattern held as read-only arrays (int64 row pointers, sorted
    int32 column indices)."""

    __slots__ = ("shape", "indptr", "indices", "_transpose")

    def __init__(self, shape, indptr, indices):
        self.shape = (int(shape[0]), int(shape[1]))
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.indptr.setflags(write=False)
        self.indices.setflags(write=False)
        self._transpose = None

    @property
    def nnz(self):
        return int(self.indices.size)

    def rows(self):
        """Row index of every entry."""
        return np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr))

    def transpose(self):
        if self._transpose is None:
            t = self.csr().T.tocsr()
            t.sort_indices()
            self._transpose = _Pattern(t.shape, t.indptr, t.indices)
        return self._transpose

    def csr(self, data=None, dtype=bool):
        """A fresh ``csr_matrix`` with this pattern (indices copied, so the
        caller may modify it freely)."""
        if data is None:
            data = np.ones(self.nnz, dtype=dtype)
        index = np.int32 if self.nnz < 2**31 else np.int64
        m = sp.csr_matrix((data, self.indices.astype(index, copy=True),
                           self.indptr.astype(index, copy=True)), shape=self.shape)
        m.has_sorted_indices = True
        return m


class Colouring:
    """A colouring of a sparsity pattern, with its seed matrix and the plan
    that recovers the matrix from the compressed product.

    Obtained from :func:`jacobian_colouring` or :func:`hessian_colouring`
    (cached per tape; treat it as read-only).

    Attributes
    ----------
    kind : str
        ``"column"`` (Jacobian columns, forward mode: ``C = J @ seed``),
        ``"row"`` (Jacobian rows, reverse mode: ``C = seed.T @ J``),
        ``"star"`` or ``"distance2"`` (Hessian: ``C = H @ seed``).
    n_colours : int
        Number of colours, i.e. of directional derivatives needed.
    colours : ndarray of int32
        The colour of every column (of every row for ``kind == "row"``);
        inputs the tape never reads have empty columns and colour 0.
    seed : ndarray, shape (n, n_colours)
        ``seed[j, c] = 1`` where column (row) ``j`` has colour ``c``.
        ``colours`` and ``seed`` hold one row per input, so they are made on
        first use: :func:`sparse_jacobian` and :func:`sparse_hessian` never
        need them.
    shape : tuple
        Shape of the matrix the colouring compresses.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import jacobian_colouring
    >>> tape = wg.record(lambda x: x[1:] * x[:-1], np.ones(6))
    >>> c = jacobian_colouring(tape)
    >>> c.n_colours, c.colours.tolist()
    (2, [1, 0, 1, 0, 1, 0])
    """

    def __init__(self, kind, pattern, colours, source, expand=None):
        # pattern, colours and source are those of the pattern coloured: the
        # compact one when `expand` (an _Expand) maps its columns (rows and
        # columns of a Hessian) to the tape's inputs; `source` indexes the
        # compressed product in those compact coordinates.
        self.kind = kind
        self._compact = pattern
        self._expand = expand
        self._colours = np.ascontiguousarray(colours, dtype=np.int32)
        self.n_colours = _colour_count(self._colours, kind, expand)
        self._compact_source = np.asarray(source, dtype=np.int64)
        self._source = _full_source(self._compact_source, kind, pattern, expand,
                                    self.n_colours)
        self._full_colours = self._seed = None
        for a in (self._colours, self._compact_source, self._source):
            a.setflags(write=False)

    @property
    def colours(self):
        """The colour of every column (of every row for ``kind == "row"``)."""
        if self._full_colours is None:
            if self._expand is None or self.kind == "row":
                colours = self._colours
            else:
                colours = np.zeros(self._expand.n, dtype=np.int32)
                colours[self._expand.columns] = self._colours
                colours.setflags(write=False)
            self._full_colours = colours
        return self._full_colours

    @property
    def seed(self):
        """The seed matrix ``(n, n_colours)``: 1 where column (row) j has colour c."""
        if self._seed is None:
            colours = self.colours
            seed = np.zeros((colours.size, self.n_colours))
            seed[np.arange(colours.size), colours] = 1.0
            seed.setflags(write=False)
            self._seed = seed
        return self._seed

    def _pattern(self):
        """The full _Pattern of the matrix (the one coloured when they agree)."""
        return self._compact if self._expand is None else self._expand.full()

    @property
    def shape(self):
        return self._compact.shape if self._expand is None else self._expand.shape

    @property
    def pattern(self):
        """The boolean CSR pattern this colouring compresses."""
        return self._pattern().csr()

    def _compressed_shape(self):
        rows, cols = self.shape
        if self.kind == "row":
            return (self.n_colours, cols)
        return (rows, self.n_colours)

    def recover(self, compressed):
        """The sparse matrix from its compressed product.

        Parameters
        ----------
        compressed : array_like
            ``A @ seed`` of shape ``(rows, n_colours)`` (``seed.T @ A`` of
            shape ``(n_colours, cols)`` for ``kind == "row"``).

        Returns
        -------
        scipy.sparse.csr_matrix
            Entries outside the pattern are taken to be zero.

        Examples
        --------
        >>> import numpy as np, wengert as wg
        >>> from wengert.sparsity import jacobian_colouring
        >>> tape = wg.record(lambda x: x[1:] * x[:-1], np.ones(4))
        >>> c = jacobian_colouring(tape)
        >>> x = np.array([1.0, 2.0, 3.0, 4.0])
        >>> c.recover(tape.jvp(x, c.seed)).toarray().tolist()
        [[2.0, 1.0, 0.0, 0.0], [0.0, 3.0, 2.0, 0.0], [0.0, 0.0, 4.0, 3.0]]
        """
        compressed = real_array(compressed, "the compressed product")
        expected = self._compressed_shape()
        if compressed.size != expected[0] * expected[1]:
            raise ShapeError(
                f"the compressed product has shape {compressed.shape}; this {self.kind} "
                f"colouring expects {expected}")
        return self._pattern().csr(compressed.reshape(-1)[self._source])

    def _recover_compact(self, compressed):
        """:meth:`recover` from the compressed product of the compact tape,
        whose rows (columns for ``kind == "row"``) are the inputs it reads."""
        return self._pattern().csr(np.asarray(compressed).reshape(-1)[self._compact_source])

    def __repr__(self):
        return (f"<wengert Colouring: {self.kind}, {self.n_colours} colours for a "
                f"{self.shape[0]}x{self.shape[1]} pattern with {self._compact.nnz} entries>")


class _Expand:
    """How a colouring of a compact pattern maps to the tape's inputs:
    ``columns[j]`` is the input of compact column j (row and column j of a
    Hessian), ``n`` the number of inputs, ``shape`` the full matrix's shape
    and ``full()`` its _Pattern (made on first use)."""

    __slots__ = ("columns", "n", "shape", "full")

    def __init__(self, columns, n, shape, full):
        self.columns, self.n, self.shape, self.full = columns, n, shape, full


def _colour_count(colours, kind, expand):
    """Colours of a colouring. Inputs the tape never reads have empty
    columns, which take colour 0, as a greedy colouring of them all gives."""
    count = int(colours.max()) + 1 if colours.size else 0
    if expand is not None and kind != "row" and expand.n > colours.size:
        count = max(count, 1)
    return count


def _full_source(source, kind, pattern, expand, p):
    """Positions in the full compressed product from those in the compact
    one (the same entries in the same order)."""
    if expand is None or kind == "column" or source.size == 0:
        return source
    if kind == "row":                   # colour * n_columns + column
        colour, column = np.divmod(source, pattern.shape[1])
        return colour * expand.n + expand.columns[column]
    row, colour = np.divmod(source, p)  # Hessian: row * n_colours + colour
    return expand.columns[row] * p + colour


class _Cache(_Memo):
    """Everything sparsity computes for one tape: its two patterns
    (``"jacobian"``, ``"hessian"``) and its colourings (keyed by kind and
    mode), each computed once by ``get(key, make)``. (Re-entrant: the
    "auto" Jacobian colouring makes the other two under it.)"""

    @property
    def jacobian(self):
        """The Jacobian's _Pattern once computed, else None (for inspection)."""
        return self.peek("jacobian")


def _cache(tape):
    """The tape's sparsity :class:`_Cache`, kept in the tape's cache."""
    return tape._cached("sparsity", _Cache)


# ---- patterns -------------------------------------------------------------------

def _compact_jacobian(tape):
    """The Jacobian pattern over the inputs the tape reads (compact columns)."""
    c = compact(tape)
    return _cache(tape).get("compact jacobian", lambda: _Pattern(
        (tape.n_outputs, c.n_inputs), *c.tape._pattern("jacobian")))


def _compact_hessian(tape):
    """The Hessian pattern over the inputs the tape reads."""
    c = compact(tape)
    return _cache(tape).get("compact hessian", lambda: _Pattern(
        (c.n_inputs, c.n_inputs), *c.tape._pattern("hessian")))


def _jacobian_pattern(tape):
    def make():
        pattern, c = _compact_jacobian(tape), compact(tape)
        if c.n_inputs == tape.n_inputs:
            return pattern
        return _Pattern((tape.n_outputs, tape.n_inputs), pattern.indptr,
                        c.inputs[pattern.indices])
    return _cache(tape).get("jacobian", make)


def _hessian_pattern(tape):
    def make():
        # One row pointer per input: a CSR (n_inputs, n_inputs) needs them.
        pattern, c = _compact_hessian(tape), compact(tape)
        n = tape.n_inputs
        if c.n_inputs == n:
            return pattern
        counts = np.zeros(n + 1, dtype=np.int64)
        counts[c.inputs + 1] = np.diff(pattern.indptr)
        return _Pattern((n, n), np.cumsum(counts), c.inputs[pattern.indices])
    return _cache(tape).get("hessian", make)


def _expand(tape, shape, full):
    """The _Expand of the tape's compact patterns (None when nothing is dropped)."""
    c = compact(tape)
    if c.n_inputs == tape.n_inputs:
        full(tape)              # the same _Pattern: cache it under its full name too
        return None
    return _Expand(c.inputs, tape.n_inputs, shape, lambda: full(tape))


def jacobian_sparsity(tape):
    """The Jacobian's sparsity pattern: a boolean CSR ``(out.size, x.size)``.

    Entry ``(i, j)`` is present when output ``i`` depends on input ``j``
    through differentiable operations at some point where the tape is
    valid; both branches of a select count, while comparisons, ``sign`` and
    a select's condition carry no derivative. Computed once per tape by
    propagating index sets forward over the operations, then cached.

    Parameters
    ----------
    tape : Tape

    Returns
    -------
    scipy.sparse.csr_matrix of bool
        A fresh matrix each call, with sorted indices.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import jacobian_sparsity
    >>> tape = wg.record(lambda x: np.stack([x[0] * x[1], np.sin(x[2])]), np.ones(3))
    >>> jacobian_sparsity(tape).toarray().astype(int).tolist()
    [[1, 1, 0], [0, 0, 1]]
    """
    return _jacobian_pattern(tape).csr()


def hessian_sparsity(tape):
    """The Hessian's sparsity pattern: a symmetric boolean CSR
    ``(x.size, x.size)``.

    For a vector output it is the pattern of the Hessian of ``w . f`` for
    every weight ``w`` (the union over outputs). Entry ``(i, j)`` is present
    when some nonlinear operation that can influence an output couples
    inputs ``i`` and ``j``: ``u * v`` couples the inputs of ``u`` with those
    of ``v``, ``sin(u)`` those of ``u`` with each other, and so on; sums,
    ``abs``, ``minimum``/``maximum`` and selects are (piecewise) linear and
    add nothing. Computed once per tape, then cached.

    Parameters
    ----------
    tape : Tape

    Returns
    -------
    scipy.sparse.csr_matrix of bool
        A fresh matrix each call, with sorted indices.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import hessian_sparsity
    >>> tape = wg.record(lambda x: x[0] * x[1] + np.exp(x[2]), np.ones(3))
    >>> hessian_sparsity(tape).toarray().astype(int).tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    """
    return _hessian_pattern(tape).csr()


# ---- colouring ------------------------------------------------------------------

def _largest_first(degrees):
    # Stable, so that equal degrees keep their natural order (a banded
    # matrix then gets the optimal cyclic colouring).
    return np.argsort(-np.asarray(degrees), kind="stable").astype(np.int64)


def _colour_columns(pattern):
    """Column colouring of ``pattern`` (structurally orthogonal groups)."""
    t = pattern.transpose()
    degrees = _colouring.distance2_degrees(t.indptr, t.indices, pattern.indptr, pattern.indices)
    return _colouring.partial_distance2_colouring(
        t.indptr, t.indices, pattern.indptr, pattern.indices, _largest_first(degrees))


def _square_sum(counts):
    counts = np.asarray(counts, dtype=np.int64)
    return int(np.sum(counts * counts))


def _column_colouring(pattern, expand=None):
    colours = _colour_columns(pattern)
    p = _colour_count(colours, "column", expand)
    source = _colouring.direct_recovery(pattern.indptr, pattern.indices, colours, p, False)
    _check_source(source, "column")
    return Colouring("column", pattern, colours, source, expand)


def _row_colouring(pattern, expand=None):
    t = pattern.transpose()
    colours = _colour_columns(t)
    rows = pattern.rows()
    source = colours[rows].astype(np.int64) * pattern.shape[1] + pattern.indices
    return Colouring("row", pattern, colours, source, expand)


def _check_source(source, kind):
    if isinstance(source, (int, np.integer)):
        raise RuntimeError(f"internal error: the {kind} colouring does not isolate "
                           f"pattern entry {-1 - int(source)}")


def jacobian_colouring(tape, mode="auto"):
    """The colouring :func:`sparse_jacobian` uses, with its seed matrix.

    Parameters
    ----------
    tape : Tape
    mode : {"auto", "forward", "reverse"}
        ``"forward"`` colours columns (structurally orthogonal columns share
        a colour; a greedy distance-1 colouring of the column intersection
        graph in largest-first order) for ``J @ seed`` by forward mode;
        ``"reverse"`` colours rows the same way for ``seed.T @ J``;
        ``"auto"`` takes whichever needs fewer colours (forward on a tie),
        trying the second only when its colouring is affordable.

    Returns
    -------
    Colouring
        Cached per tape and mode.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import jacobian_colouring
    >>> def f(x):        # tridiagonal Jacobian
    ...     return x[:-2] - 2 * x[1:-1] + x[2:] + np.exp(x[1:-1])
    >>> jacobian_colouring(wg.record(f, np.ones(10))).n_colours
    3
    """
    check_choice(mode, "mode", ("auto", "forward", "reverse"))
    return _cache(tape).get(("jacobian", mode), lambda: _make_jacobian_colouring(tape, mode))


def _make_jacobian_colouring(tape, mode):
    # The pattern over the inputs the tape reads; the others have empty columns.
    pattern = _compact_jacobian(tape)
    if mode == "forward":
        return _column_colouring(pattern, _expand(
            tape, (tape.n_outputs, tape.n_inputs), _jacobian_pattern))
    if mode == "reverse":
        return _row_colouring(pattern, _expand(
            tape, (tape.n_outputs, tape.n_inputs), _jacobian_pattern))
    # auto: colour the side whose lower bound (the longest row for columns,
    # the longest column for rows) is smaller, then the other side if it
    # could need fewer colours and its colouring is affordable.
    row_counts = np.diff(pattern.indptr)
    col_counts = np.bincount(pattern.indices, minlength=pattern.shape[1])
    bound_fwd = int(row_counts.max(initial=0))
    bound_rev = int(col_counts.max(initial=0))
    work_fwd = _square_sum(row_counts)      # steps of the column colouring
    work_rev = _square_sum(col_counts)
    first = "forward" if bound_fwd <= bound_rev else "reverse"
    best = jacobian_colouring(tape, first)
    other, bound, work = (("reverse", bound_rev, work_rev) if first == "forward"
                          else ("forward", bound_fwd, work_fwd))
    first_work = work_fwd if first == "forward" else work_rev
    if bound < best.n_colours and work <= max(_AUTO_BUDGET, 4 * first_work):
        second = jacobian_colouring(tape, other)
        if (second.n_colours, second.kind != "column") < (best.n_colours, best.kind != "column"):
            best = second
    return best


def hessian_colouring(tape, method="star"):
    """The symmetric colouring :func:`sparse_hessian` uses, with its seed matrix.

    Parameters
    ----------
    tape : Tape
    method : {"star", "distance2"}
        ``"star"``: a star colouring of the Hessian's adjacency graph
        (every path on four vertices uses three colours), whose symmetric
        recovery reads each entry ``H[i, j]`` either from row ``i`` or from
        row ``j`` of ``H @ seed``; it exploits symmetry (an arrowhead needs 2
        colours). ``"distance2"``: columns coloured as for a Jacobian, so no
        two columns sharing a row share a colour (a distance-2 colouring of
        the adjacency graph), recovered row by row.

    Returns
    -------
    Colouring
        Cached per tape and method.

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import hessian_colouring
    >>> def rosenbrock(x):
    ...     return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> hessian_colouring(wg.record(rosenbrock, np.ones(10))).n_colours
    3
    """
    check_choice(method, "method", ("star", "distance2"))
    return _cache(tape).get(("hessian", method), lambda: _make_hessian_colouring(
        _compact_hessian(tape), method,
        _expand(tape, (tape.n_inputs, tape.n_inputs), _hessian_pattern)))


def _make_hessian_colouring(pattern, method, expand=None):
    if method == "distance2":
        colours = _colour_columns(pattern)
        symmetric = False
    else:
        rows = pattern.rows()
        off = rows != pattern.indices
        counts = np.bincount(rows[off], minlength=pattern.shape[0])
        adjacency = _Pattern(pattern.shape, np.concatenate([[0], np.cumsum(counts)]),
                             pattern.indices[off])
        mate = _colouring.mirror_positions(adjacency.indptr, adjacency.indices)
        colours = _colouring.star_colouring(adjacency.indptr, adjacency.indices, mate,
                                           _largest_first(counts))
        symmetric = True
    p = _colour_count(colours, method, expand)
    source = _colouring.direct_recovery(pattern.indptr, pattern.indices, colours, p, symmetric)
    _check_source(source, method)
    return Colouring(method, pattern, colours, source, expand)


# ---- sparse derivatives ---------------------------------------------------------

def _colour_seeds(colours, p):
    """The seed matrix of a colouring, as ``_replay`` takes it: 1 where row
    ``j`` (a compact input, or an output for a row colouring) has colour
    ``c``, in ``p`` directions."""
    return UnitSeeds(np.arange(colours.size), colours, p)


def _one_point(tape, x, name):
    x = real_array(x, "x")
    if x.shape != tape.in_shape:
        raise ShapeError(
            f"{name} takes one point of shape {tuple(tape.in_shape)}, but x has shape "
            f"{x.shape}; batches are not supported (call it once per point)")
    return x


def sparse_jacobian(tape, x, *args, mode="auto"):
    """The Jacobian at one point as a ``scipy.sparse.csr_matrix``.

    Uses the cached pattern and colouring (:func:`jacobian_colouring`):
    one forward sweep with one direction per colour (``tape.jvp(x, seed)``),
    or one reverse sweep with one weight per colour when row colouring needs
    fewer, then a gather of the entries. A banded Jacobian costs a few
    directional derivatives whatever its size.

    Parameters
    ----------
    tape : Tape
    x : array_like
        One point of the recorded input shape (a batch raises ``ValueError``
        naming the expected shape).
    *args
        New values of the dynamic parameters, as for ``tape.jvp``.
    mode : {"auto", "forward", "reverse"}
        Which side to colour (see :func:`jacobian_colouring`).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(out.size, x.size)`` over the flattened output and input;
        the entries of :func:`jacobian_sparsity` (some may be zero at ``x``).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import sparse_jacobian
    >>> tape = wg.record(lambda x: x[1:] * x[:-1], np.ones(4))
    >>> sparse_jacobian(tape, [1.0, 2.0, 3.0, 4.0]).toarray().tolist()
    [[2.0, 1.0, 0.0, 0.0], [0.0, 3.0, 2.0, 0.0], [0.0, 0.0, 4.0, 3.0]]
    """
    x = _one_point(tape, x, "sparse_jacobian")
    colouring = jacobian_colouring(tape, mode)
    p = colouring.n_colours
    if p == 0:
        tape.forward(x, *args)          # checks the parameters and the guards
        return colouring._pattern().csr(np.zeros(0))
    # tape.jvp(x, seed) or tape.vjp(x, seed.T), on the tape without the
    # inputs it never reads: the same operations on the same values.
    c = compact(tape)
    point = c.point(x.reshape(-1), tape._params(args))
    seeds = _colour_seeds(colouring._colours, p)
    if colouring.kind == "column":
        run = c.tape._replay(*point, seeds=seeds)
        compressed = run.tangents[c.tape._state()["outputs"], 0, :]     # (n_outputs, p)
    else:
        run = c.tape._replay(*point, output_seeds=seeds)
        compressed = run.adjoints[:c.n_inputs, 0, :].T                  # (p, inputs read)
    return colouring._recover_compact(compressed)


def sparse_hessian(tape, x, *args, w=None, method="star"):
    """The Hessian at one point as a symmetric ``scipy.sparse.csr_matrix``.

    Uses the cached pattern and colouring (:func:`hessian_colouring`): one
    forward-over-reverse sweep with one direction per colour
    (``tape.hvp(x, seed)``), then a gather of the entries. The tridiagonal
    Hessian of the extended Rosenbrock function takes 3 directions at any n.

    Parameters
    ----------
    tape : Tape
    x : array_like
        One point of the recorded input shape (a batch raises ``ValueError``
        naming the expected shape).
    *args
        New values of the dynamic parameters, as for ``tape.hvp``.
    w : array_like, optional
        Output weight for a vector-valued tape: the Hessian of ``w . f``
        (required unless the output is scalar, as for ``tape.hvp``).
    method : {"star", "distance2"}
        The colouring (see :func:`hessian_colouring`).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(x.size, x.size)`` over the flattened input; the entries of
        :func:`hessian_sparsity` (some may be zero at ``x``).

    Examples
    --------
    >>> import numpy as np, wengert as wg
    >>> from wengert.sparsity import sparse_hessian
    >>> tape = wg.record(lambda x: np.sum(x[1:] * x[:-1] ** 2), np.ones(3))
    >>> sparse_hessian(tape, [1.0, 2.0, 3.0]).toarray().tolist()
    [[4.0, 2.0, 0.0], [2.0, 6.0, 4.0], [0.0, 4.0, 0.0]]
    """
    x = _one_point(tape, x, "sparse_hessian")
    colouring = hessian_colouring(tape, method)
    p = colouring.n_colours
    weights = tape._output_weights(w, None, "hvp")         # (n_outputs, 1)
    if p == 0:                          # no inputs
        tape.forward(x, *args)
        return colouring._pattern().csr(np.zeros(0))
    # tape.hvp(x, seed, w=w), on the tape without the inputs it never reads.
    c = compact(tape)
    run = c.tape._replay(*c.point(x.reshape(-1), tape._params(args)),
                         seeds=_colour_seeds(colouring._colours, p), weights=weights)
    return colouring._recover_compact(run.adjoint_tangents[:c.n_inputs, 0, :])


__all__ = ["jacobian_sparsity", "hessian_sparsity", "jacobian_colouring",
           "hessian_colouring", "sparse_jacobian", "sparse_hessian", "Colouring"]
