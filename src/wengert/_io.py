"""Tape files: :meth:`Tape.save <wengert.Tape.save>` and :func:`wengert.load`.

A tape file holds exactly the arrays of a tape plus a small JSON header. It
is portable (fixed little-endian dtypes), versioned, readable with plain
NumPy (``np.load(path)``), and never contains or unpickles Python objects.

File format ``wengert-tape``, versions 1 and 2
----------------------------------------------
An uncompressed ZIP archive (every member ``ZIP_STORED``; ZIP64 extensions
for members over 2 GiB) of exactly ten ``.npy`` members, NumPy format 1.0,
C order, no object dtype. The writer adds them in this order with a fixed
timestamp (1980-01-01), so one tape always gives the same bytes:

* ``header.npy`` -- ``|u1 (h,)``: the UTF-8 JSON header described below.
* ``opcodes.npy`` -- ``|u1 (n_ops,)``: one opcode per operation,
  ``kind << 6 | base`` as listed in ``wengert._opcodes``.
* ``args.npy`` -- ``<i4 (n_ops, 2)``: the two operands of each operation,
  slot, constant-pool or side-table indices according to the opcode's kind.
* ``consts.npy`` -- ``<f8 (n_consts,)``: the constant pool.
* ``aux.npy`` -- ``<i4 (n_aux,)``: the side table (the two branch slots of
  each ``select``; the descriptor of each array entry).
* ``outputs.npy`` -- ``<i4 (n_outputs,)``: the output slots, C order.
* ``params.npy`` -- ``<f8 (n_params,)``: the recorded values of the dynamic
  parameters, flattened and concatenated in argument order.
* ``guard_codes.npy`` -- ``|u1 (n_guards,)``: each guard's comparison opcode.
* ``guard_args.npy`` -- ``<i4 (n_guards, 2)``: its two operands.
* ``guard_expected.npy`` -- ``|u1 (n_guards,)``: its recorded outcome, 0 or 1.

Slots are numbered inputs first (``0 .. n_inputs-1``), then the dynamic
parameters, then the results of each operation in order: one slot per
scalar entry, ``args[i, 1]`` slots for an array entry (version 2 only: one
NumPy call over many elements, whose ``args[i, 0]`` indexes its descriptor
in ``aux``; layouts in ``wengert._opcodes.ARRAY_LAYOUTS``). A tape without
array entries is written as version 1. The header is a JSON object with
exactly these keys (``wengert``, the writer's version, may be absent)::

    {"format": "wengert-tape", "version": 1, "wengert": "0.1.0",
     "in_shape": [2], "out_shape": [], "n_params": 3,
     "extra_args": [{"kind": "param", "shape": [3]},
                    {"kind": "static", "value": 2},
                    {"kind": "static", "repr": "<function norm at 0x7f...>"}],
     "guards": [["model.py:12", "x[0] > 0"]]}

* ``in_shape``, ``out_shape``: the shapes of ``x`` and ``f(x)``: lists of at
  most 32 non-negative integers (``[]`` for a scalar), fewer than 2**31
  elements.
* ``n_params``: the number of dynamic parameter values (``params.npy``).
  Inputs, parameters and operations together number at most 2**31 - 2
  slots (32-bit indices); ``outputs.npy`` holds exactly ``prod(out_shape)``
  slots. A tape may declare inputs it never reads (``f(x) = x[0]``): what
  wengert does with a loaded tape -- displays, sparsity, ``optimize`` --
  costs nothing per unread input, so a small file stays cheap whatever
  ``in_shape`` says.
* ``extra_args``: the extra arguments ``f`` was recorded with, in order. A
  dynamic parameter (a float or float array) is ``{"kind": "param",
  "shape": [...]}``; its values are the next ``prod(shape)`` entries of
  ``params.npy``. A static argument made of ``None``, ``bool``, ``int``,
  ``float``, ``str``, lists, tuples, dicts with string keys and integer or
  boolean NumPy arrays is stored by value (NumPy scalars become Python
  numbers) as ``{"kind": "static", "value": ...}``, in JSON with lists as
  arrays and the rest as one-key objects: ``{"tuple": [...]}``,
  ``{"dict": [[key, value], ...]}``, ``{"float": "nan" | "inf" | "-inf"}``
  and ``{"ndarray": {"dtype": "<i8", "shape": [...], "data": [...]}}`` (data
  flattened in C order). Any other static argument (a function, an object,
  a float array inside a tuple...) cannot be stored without pickle; it is
  stored as ``{"kind": "static", "repr": repr(value)}``.
* ``guards``: ``[location, comparison text]`` of each guard, for the
  :class:`~wengert.BranchChangedError` message.

Static arguments of a loaded tape behave as in the recorded one. Omitted,
they default to the recorded value; passed, they must equal it, or the tape
raises :class:`~wengert.ArgumentError` ("static argument changed"). For an
argument stored as its ``repr``, "equal" means the same ``repr()`` with
memory addresses (``at 0x...``) ignored: the same function or object passed
again, even in another process, is accepted, a different one refused. The
value itself is never needed: static arguments are baked into the
operations.

Reading validates everything before any sweep can touch the data; anything
that is not a well-formed tape file raises :class:`~wengert.TapeFormatError`
naming what is wrong. Checked, in order: the ZIP directory (exactly the ten
members, stored uncompressed and unencrypted, each lying inside the file);
each ``.npy`` header (parsed with ``ast.literal_eval``, at most 4 KiB, exact
dtype, C order, shape, and a declared size equal to the member's length, all
before any allocation, so memory use never exceeds the file size); the
CRC-32 of every member; the JSON header, key by key, with the cross-checks
between it and the arrays; and finally the tape's own validation (opcodes
known, every operand an earlier slot or an existing constant or side-table
entry, guards comparisons of existing slots, outputs in range).
"""
from __future__ import annotations

import ast
import errno
import json
import math
import os
import re
import reprlib
import stat
import struct
import threading
import warnings
import zipfile

import numpy as np

from wengert._arguments import checked_path
from wengert._errors import ShapeError, TapeFormatError
from wengert._expand import has_array_entries
from wengert._records import Guard, Param, Static

FORMAT_NAME = "wengert-tape"
# Version 2 adds array entries; a tape without them is written as version 1,
# which wengert releases before array entries read too.
FORMAT_VERSION = 2

# member stem -> (dtype string, number of dimensions); 2-D members are (n, 2).
_MEMBERS = {
    "header": ("|u1", 1),
    "opcodes": ("|u1", 1),
    "args": ("<i4", 2),
    "consts": ("<f8", 1),
    "aux": ("<i4", 1),
    "outputs": ("<i4", 1),
    "params": ("<f8", 1),
    "guard_codes": ("|u1", 1),
    "guard_args": ("<i4", 2),
    "guard_expected": ("|u1", 1),
}
_STATE_KEYS = {"opcodes", "args", "consts", "aux", "outputs", "in_shape", "out_shape",
               "n_params", "param_specs", "guards"}
_HEADER_KEYS = {"format", "version", "in_shape", "out_shape", "n_params", "extra_args",
                "guards"}
_OPTIONAL_HEADER_KEYS = {"wengert"}
_EPOCH = (1980, 1, 1, 0, 0, 0)
# Slots are int32 indices, so no count or shape product can exceed this.
_MAX_COUNT = 2**31 - 2
# NumPy arrays have at most 64 axes and the drivers build (B,) + out + in
# shaped results, so each tape shape has at most 32.
_MAX_NDIM = 32
_MAX_HEADER_BYTES = 2**28
_MAX_NESTING = 64
_READ_CHUNK = 1 << 24
# The exact integer dtypes a static NumPy array may have in the header.
_STATIC_ARRAY_DTYPES = {"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8"}
# What the zip and npy parsers raise on malformed input (besides our own errors).
_PARSE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError,
                 TypeError, struct.error, NotImplementedError, RuntimeError,
                 SyntaxError, KeyError, IndexError, OverflowError)
# What ast.literal_eval raises on a malformed .npy header (warnings included:
# _npy_header turns the parser's warnings into errors).
_LITERAL_ERRORS = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, Warning)
# catch_warnings() swaps the process-wide filter list: two threads inside it
# at once could leave the "error" filter installed for good.
_WARNINGS_LOCK = threading.Lock()
# NumPy pads .npy headers to 128 bytes; more only for shapes of many axes.
_MAX_NPY_HEADER = 4096


# ---- static arguments ------------------------------------------------------------

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _normal_repr(text):
    return _ADDRESS.sub("", text)


def _safe_repr(value):
    try:
        return repr(value)
    except Exception:                       # a broken __repr__ must not stop a save
        return f"<{type(value).__name__} object>"


class StaticRepr:
    """A static argument restored from a tape file as its ``repr()`` only.

    It compares equal to any object with the same ``repr()`` (memory
    addresses ignored), so a loaded tape accepts the same argument again and
    refuses a different one with "static argument changed".
    """

    __array_ufunc__ = None                  # make NumPy arrays defer to __eq__ below

    def __init__(self, text):
        self.text = str(text)

    def __eq__(self, other):
        if isinstance(other, StaticRepr):
            return _normal_repr(self.text) == _normal_repr(other.text)
        return _normal_repr(self.text) == _normal_repr(_safe_repr(other))

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(_normal_repr(self.text))

    def __repr__(self):
        return self.text

    def __reduce__(self):
        return (StaticRepr, (self.text,))


class _NotJSON(Exception):
    """A static value that has no JSON form."""


def _encode_static(value, depth=0):
    """The JSON form of a static value, or _NotJSON."""
    if depth > _MAX_NESTING:
        raise _NotJSON
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (str, np.str_)):
        return str(value)
    if type(value) is list:
        return [_encode_static(v, depth + 1) for v in value]
    if type(value) is tuple:
        return {"tuple": [_encode_static(v, depth + 1) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": [[k, _encode_static(v, depth + 1)] for k, v in value.items()]}
    if type(value) is np.ndarray and value.dtype.kind in "biu" and value.dtype.itemsize <= 8:
        dtype = value.dtype.newbyteorder("<")
        return {"ndarray": {"dtype": dtype.str, "shape": list(value.shape),
                            "data": value.reshape(-1).tolist()}}
    raise _NotJSON


def _static_entry(value):
    try:
        encoded = _encode_static(value)
        # Make sure it reads back (json refuses ints of more than 4300 digits).
        _decode_static(json.loads(json.dumps(encoded, allow_nan=False)))
        return {"kind": "static", "value": encoded}
    except (_NotJSON, ValueError, TypeError, OverflowError, RecursionError, TapeFormatError):
        return {"kind": "static", "repr": _safe_repr(value)}


def _decode_static(obj, depth=0):
    """Inverse of _encode_static; TapeFormatError on anything it never writes."""
    if depth > _MAX_NESTING:
        raise TapeFormatError(f"a static argument is nested deeper than {_MAX_NESTING} levels")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [_decode_static(v, depth + 1) for v in obj]
    if isinstance(obj, dict) and len(obj) == 1:
        (tag, body), = obj.items()
        if tag == "tuple" and isinstance(body, list):
            return tuple(_decode_static(v, depth + 1) for v in body)
        if tag == "dict" and isinstance(body, list) and all(
                isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in body):
            return {k: _decode_static(v, depth + 1) for k, v in body}
        if tag == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "ndarray":
            return _decode_static_array(body)
    raise TapeFormatError(f"a static argument has an unknown encoding {_clip(obj)}")


def _decode_static_array(body):
    if not (isinstance(body, dict) and set(body) == {"dtype", "shape", "data"}
            and body["dtype"] in _STATIC_ARRAY_DTYPES and isinstance(body["data"], list)):
        raise TapeFormatError(f"a static array is malformed: {_clip(body)}")
    shape = _shape(body["shape"], "the shape of a static array")
    data = body["data"]
    want_bool = body["dtype"] == "|b1"
    if math.prod(shape) != len(data) or not all(
            (type(v) is bool) if want_bool else (type(v) is int) for v in data):
        raise TapeFormatError(
            f"a static array of shape {tuple(shape)} and dtype {body['dtype']} has "
            f"{len(data)} data entries or entries of the wrong type")
    try:
        return np.array(data, dtype=body["dtype"]).astype(body["dtype"][1:]).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise TapeFormatError(
            f"a static array has values out of range for {body['dtype']}") from exc


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 3


def _clip(obj, limit=80):
    """A short repr for messages, cheap even for a huge forged object."""
    try:
        text = _SHORT.repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


# ---- writing -----------------------------------------------------------------------

def _header(state):
    args = []
    for spec in state["param_specs"]:
        if isinstance(spec, Param):
            args.append({"kind": "param", "shape": [int(s) for s in spec.shape]})
        else:
            args.append(_static_entry(spec.value))
    from wengert import __version__
    return {
        "format": FORMAT_NAME,
        "version": 2 if has_array_entries(state["opcodes"]) else 1,
        "wengert": __version__,
        "in_shape": [int(s) for s in state["in_shape"]],
        "out_shape": [int(s) for s in state["out_shape"]],
        "n_params": int(state["n_params"]),
        "extra_args": args,
        "guards": [[str(g.where), str(g.text)] for g in state["guards"]],
    }


def _member_arrays(state):
    """The ten arrays to write, in file order, with their fixed dtypes."""
    unknown = set(state) - _STATE_KEYS
    if unknown:
        # A developer extended Tape._state(): the format must learn the new fields.
        raise NotImplementedError(
            f"the tape has fields the file format does not store: {sorted(unknown)}; "
            "extend wengert._io (and its format version) to save them")
    header = json.dumps(_header(state), ensure_ascii=False, allow_nan=False,
                        separators=(",", ":")).encode("utf-8")
    guards = state["guards"]
    params = [np.asarray(spec.values, dtype=np.float64).reshape(-1)
              for spec in state["param_specs"] if isinstance(spec, Param)]
    values = {
        "header": np.frombuffer(header, dtype=np.uint8),
        "opcodes": state["opcodes"],
        "args": state["args"],
        "consts": state["consts"],
        "aux": state["aux"],
        "outputs": state["outputs"],
        "params": np.concatenate(params) if params else np.zeros(0),
        "guard_codes": [g.code for g in guards],
        "guard_args": np.array([(g.a0, g.a1) for g in guards], dtype=np.int64).reshape(-1, 2),
        "guard_expected": [1 if g.expected else 0 for g in guards],
    }
    for name, (dtype, ndim) in _MEMBERS.items():
        array = np.ascontiguousarray(values[name], dtype=dtype)
        yield name, array.reshape((-1, 2) if ndim == 2 else -1)


def _write(fp, state):
    with zipfile.ZipFile(fp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in _member_arrays(state):
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            big = array.nbytes + 4096 > zipfile.ZIP64_LIMIT
            with zf.open(info, "w", force_zip64=big) as out:
                np.lib.format.write_array(out, array, version=(1, 0), allow_pickle=False)


def save_tape(tape, path):
    """Write ``tape`` to exactly ``path`` in wengert's tape file format.

    The file is written to a temporary name in the same directory and moved
    into place, so a reader never sees a half-written tape and a failed save
    leaves an existing file untouched. No extension is added. The format is
    described in the docstring of ``wengert._io``.

    Parameters
    ----------
    tape : Tape
        The tape to save.
    path : str or os.PathLike
        The file to write (replaced if it exists; through a symbolic link,
        the file it names).

    Raises
    ------
    ShapeError
        If the input or output shape has more than 32 dimensions.
    OSError
        If the file cannot be written (the directory is missing, ...).

    Notes
    -----
    Static extra arguments made of ``None``, bools, ints, floats, strings,
    lists, tuples, string-keyed dicts and integer arrays are stored by
    value; any other is stored as its ``repr()``, and the loaded tape then
    accepts, when that argument is passed, a value with the same ``repr()``
    (memory addresses ignored) and refuses any other with "static argument
    changed".

    Examples
    --------
    >>> import numpy as np, wengert as wg, tempfile, os
    >>> tape = wg.record(lambda x: np.sum(np.sin(x)), np.zeros(3))
    >>> path = os.path.join(tempfile.mkdtemp(), "sines.wgt")
    >>> tape.save(path)
    >>> sorted(os.listdir(os.path.dirname(path)))
    ['sines.wgt']
    """
    path = checked_path(path)
    state = tape._state()
    for what in ("in_shape", "out_shape"):
        if len(state[what]) > _MAX_NDIM:
            raise ShapeError(f"cannot save a tape whose {what} has {len(state[what])} "
                             f"dimensions: tape files hold at most {_MAX_NDIM}")
    if os.path.islink(path):
        path = os.path.realpath(path)           # replace the file the link names
    if os.path.exists(path) and not os.path.isfile(path):
        # A device, a pipe or a directory: write in place (or fail) without renaming.
        with open(path, "wb") as fp:
            _write(fp, state)
        return
    directory, base = os.path.split(path)
    suffix = f".{os.getpid()}.{os.urandom(4).hex()}.tmp"
    if isinstance(path, bytes):
        tmp = os.path.join(directory, b"." + base + os.fsencode(suffix))
    else:
        tmp = os.path.join(directory, "." + base + suffix)
    # os.open with 0o666 lets the umask choose the permissions, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fp:
            _write(fp, state)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- reading -----------------------------------------------------------------------

def load(path):
    """Read a tape written by :meth:`Tape.save <wengert.Tape.save>`.

    The file is validated completely before the tape is built: a damaged,
    truncated or forged file raises :class:`~wengert.TapeFormatError`
    naming what is wrong, and nothing in it is ever unpickled.

    Parameters
    ----------
    path : str or os.PathLike
        The tape file.

    Returns
    -------
    Tape

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    TapeFormatError
        If the file is not a valid tape file of a version this wengert reads,
        or ``path`` is not a regular file at all (a directory, a named pipe,
        a device such as ``/dev/zero``, a socket): those are refused before
        they are opened, so a load never blocks on a pipe or reads an
        endless device.
        A path that cannot be read (a symlink loop, permission denied, a
        disk error) raises it too, with the ``OSError`` as its cause.
    ArgumentTypeError
        If ``path`` is not a str, bytes or os.PathLike.
    ArgumentError
        If ``path`` is empty or contains a NUL character.

    Notes
    -----
    A static extra argument that could not be stored by value (a function,
    an arbitrary object) was stored as its ``repr()``: passing it to the
    loaded tape is accepted when the ``repr()`` matches (memory addresses
    ignored), refused with "static argument changed" otherwise; omitting it
    is always fine. Loading a tape of 10**7 operations (a 103 MB file) takes
    about 0.2-0.3 s, validation included.

    Examples
    --------
    >>> import numpy as np, wengert as wg, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "square.wgt")
    >>> wg.record(lambda x: x * x, 3.0).save(path)
    >>> tape = wg.load(path)
    >>> tape.gradient(5.0)
    10.0
    """
    path = checked_path(path)               # ArgumentTypeError, ArgumentError
    label = os.fsdecode(path)
    try:
        return _load_path(path, label)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # Not the file's content but the way to it (a symlink loop, a path
        # through a file, permissions, a disk error): still not a tape.
        raise TapeFormatError(f"{label!r} cannot be read as a wengert tape file: "
                              f"{exc.strerror or exc}") from exc


def _load_path(path, label):
    _check_regular(os.stat(path).st_mode, label)        # FileNotFoundError if missing
    # O_NONBLOCK: should a pipe replace the file after the check, opening it
    # returns at once instead of waiting for a writer; fstat then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        _check_regular(os.fstat(fd).st_mode, label)
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        fp = open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fp:
        return _read(fp, label)


_FILE_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket")]


def _check_regular(mode, label):
    """TapeFormatError unless ``mode`` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    raise TapeFormatError(f"{label!r} is not a valid wengert tape file: it is {kind}, "
                          "and wg.load reads only regular files")


def _load_bytes(data, label="<bytes>"):
    """``load`` from bytes in memory (for tests and fuzzing)."""
    import io
    return _read(io.BytesIO(data), label)


def _read(fp, label):
    def bad(reason):
        return TapeFormatError(f"{label!r} is not a valid wengert tape file: {reason}")

    try:
        size = fp.seek(0, os.SEEK_END)
        fp.seek(0)
    except OSError:
        raise bad("its size cannot be found by seeking (a file in /proc?)") from None
    head = fp.read(8)
    if not head:
        raise bad("the file is empty")
    if head[:4] != b"PK\x03\x04":
        raise bad(_what_instead(head))
    fp.seek(0)
    try:
        with zipfile.ZipFile(fp) as zf:
            infos = _check_directory(zf, size)
            header = _read_member(zf, infos["header"], "header")
            meta = _parse_header(header)
            arrays = {name: _read_member(zf, infos[name], name) for name in _MEMBERS
                      if name != "header"}
    except TapeFormatError as exc:
        raise bad(str(exc)) from None
    except _PARSE_ERRORS as exc:
        raise bad(f"damaged archive ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        # A forged offset makes zipfile seek before the start of the file:
        # io.BytesIO says ValueError, a real file EINVAL (Python 3.9's zipfile
        # does not check the central directory's offset). Other errors are the
        # disk's, not the content's: load reports them with the OSError as cause.
        if exc.errno != errno.EINVAL:
            raise
        raise bad("damaged archive (an offset in its ZIP directory points before the "
                  "start of the file)") from None
    try:
        state = _build_state(meta, arrays)
        from wengert.tape import Tape
        return Tape._from_state(state)
    except TapeFormatError as exc:
        raise bad(str(exc)) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise bad(f"invalid tape ({type(exc).__name__}: {exc})") from None


def _what_instead(head):
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("it is a Python pickle, and wengert never unpickles files (pickle is "
                "for sending tapes to worker processes; write files with tape.save)")
    if head[:4] == b"PK\x05\x06":
        return "it is an empty ZIP archive"
    if head[:6] == b"\x93NUMPY":
        return "it is a single NumPy .npy array, not a tape archive"
    return "it is not a ZIP archive (tape files start with the bytes PK\\x03\\x04)"


def _check_directory(zf, size):
    """The archive's members by stem, after checking names, methods and sizes."""
    infos = zf.infolist()
    names = [info.filename for info in infos]
    expected = {name + ".npy" for name in _MEMBERS}
    if len(names) != len(expected) or set(names) != expected:
        shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        raise TapeFormatError(
            f"it holds the members [{shown}], but a tape file holds exactly "
            f"{', '.join(sorted(expected))}")
    total = 0
    for info in infos:
        name = info.filename
        if info.flag_bits & 0x41:
            raise TapeFormatError(f"member {name} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise TapeFormatError(
                f"member {name} is compressed (method {info.compress_type}); tape files "
                "are written uncompressed and nothing else is read")
        if info.file_size != info.compress_size:
            raise TapeFormatError(
                f"member {name} declares {info.file_size} bytes uncompressed but "
                f"{info.compress_size} bytes stored")
        end = info.header_offset + 30 + len(name) + info.compress_size
        if info.header_offset < 0 or end > size:
            raise TapeFormatError(
                f"member {name} ({info.compress_size} bytes at offset {info.header_offset}) "
                f"extends past the end of the {size}-byte file")
        total += info.file_size
    if total > size:
        raise TapeFormatError(f"its members declare {total} bytes in a {size}-byte file")
    return {name[:-4]: info for name, info in zip(names, infos)}


def _npy_header(f, name):
    """``(descr, fortran_order, shape)`` from a .npy header, parsed with
    ``ast.literal_eval`` (no code runs, no pickle) and bounded in length.

    NumPy's own ``read_array_header_*`` would do, but on a header it cannot
    parse it retries with a Python 2 compatibility filter and warns; a tape
    file is never such a file, so it is refused instead.
    """
    try:
        version = np.lib.format.read_magic(f)
    except ValueError as exc:
        raise TapeFormatError(f"member {name} is not a .npy array ({exc})") from None
    if version not in ((1, 0), (2, 0)):
        raise TapeFormatError(f"member {name} has .npy format version {version}; "
                              "tape files use 1.0 (or 2.0)")
    field = "<H" if version == (1, 0) else "<I"
    raw = f.read(struct.calcsize(field))
    if len(raw) != struct.calcsize(field):
        raise TapeFormatError(f"member {name} ends inside its .npy header")
    length, = struct.unpack(field, raw)
    if length > _MAX_NPY_HEADER:
        raise TapeFormatError(f"member {name} has a {length}-byte .npy header "
                              f"(limit {_MAX_NPY_HEADER})")
    text = f.read(length)
    if len(text) != length:
        raise TapeFormatError(f"member {name} ends inside its .npy header")
    try:
        # The parser warns about some forged texts (an invalid escape such as
        # '\d': SyntaxWarning on 3.12+, DeprecationWarning before; '1if':
        # SyntaxWarning): as errors they refuse the header and print nothing.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error")
            header = ast.literal_eval(text.decode("latin1"))
    except _LITERAL_ERRORS as exc:
        raise TapeFormatError(f"member {name} has a malformed .npy header "
                              f"({type(exc).__name__})") from None
    if not (isinstance(header, dict) and set(header) == {"descr", "fortran_order", "shape"}):
        raise TapeFormatError(f"member {name} has a malformed .npy header {_clip(header)}")
    return header["descr"], header["fortran_order"], header["shape"]


def _read_member(zf, info, stem):
    """One member as an array of its exact dtype and shape, checked before
    any allocation."""
    dtype_str, ndim = _MEMBERS[stem]
    dtype = np.dtype(dtype_str)
    name = info.filename
    with zf.open(info) as f:
        descr, fortran, shape = _npy_header(f, name)
        if descr != dtype.str:
            raise TapeFormatError(f"member {name} has dtype {_clip(descr)}; expected {dtype.str!r}")
        if fortran is not False:
            raise TapeFormatError(f"member {name} is in Fortran order; expected C order")
        if (not isinstance(shape, tuple) or len(shape) != ndim
                or not all(type(s) is int and s >= 0 for s in shape)
                or (ndim == 2 and shape[1] != 2)):
            want = "(n, 2)" if ndim == 2 else "(n,)"
            raise TapeFormatError(f"member {name} has shape {_clip(shape)}; expected {want}")
        available = info.file_size - f.tell()
        declared = math.prod(shape) * dtype.itemsize
        if declared != available:
            raise TapeFormatError(
                f"member {name} declares shape {shape} ({declared} bytes of data) but "
                f"holds {available} bytes")
        if stem == "header" and declared > _MAX_HEADER_BYTES:
            raise TapeFormatError(
                f"the JSON header is {declared} bytes long (limit {_MAX_HEADER_BYTES})")
        array = np.empty(shape, dtype=dtype)
        buf = memoryview(array.reshape(-1).view(np.uint8))
        pos = 0
        while pos < declared:
            chunk = f.read(min(_READ_CHUNK, declared - pos))
            if not chunk:
                raise TapeFormatError(f"member {name} ends early")
            buf[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if f.read(1):                         # also makes zipfile check the CRC
            raise TapeFormatError(f"member {name} is longer than its header says")
    if dtype.byteorder == "<" and not np.little_endian:
        array = array.astype(dtype.newbyteorder("="))
    return array


# ---- the header ----------------------------------------------------------------------

def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise TapeFormatError(f"the JSON header repeats a key among {sorted(keys)[:10]}")
    return dict(pairs)


def _reject_constant(token):
    raise TapeFormatError(f"the JSON header contains {token}, which is not JSON")


def _shape(value, what):
    if not (isinstance(value, list) and len(value) <= _MAX_NDIM
            and all(type(s) is int and 0 <= s <= _MAX_COUNT for s in value)):
        raise TapeFormatError(f"{what} must be a list of at most {_MAX_NDIM} non-negative "
                              f"integers, not {_clip(value)}")
    if math.prod(value) > _MAX_COUNT:
        raise TapeFormatError(f"{what} {_clip(value)} has more than {_MAX_COUNT} elements")
    return tuple(value)


def _parse_header(array):
    try:
        text = array.tobytes().decode("utf-8")
        meta = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, TapeFormatError):
            raise
        raise TapeFormatError(f"the header is not valid UTF-8 JSON ({_clip(str(exc))})") from None
    if not isinstance(meta, dict):
        raise TapeFormatError("the JSON header is not an object")
    if meta.get("format") != FORMAT_NAME:
        raise TapeFormatError(f"the header names the format {_clip(meta.get('format'))}, "
                              f"not {FORMAT_NAME!r}")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise TapeFormatError(f"the format version {_clip(version)} is not a positive integer")
    if version > FORMAT_VERSION:
        raise TapeFormatError(
            f"it has format version {version}, written by a newer wengert; this wengert "
            f"reads version {FORMAT_VERSION}: upgrade wengert to load it")
    keys = set(meta)
    if not _HEADER_KEYS <= keys <= _HEADER_KEYS | _OPTIONAL_HEADER_KEYS:
        missing = sorted(_HEADER_KEYS - keys)
        extra = sorted(keys - _HEADER_KEYS - _OPTIONAL_HEADER_KEYS)
        raise TapeFormatError(f"the header lacks the keys {missing} or has unknown keys "
                              f"{_clip(extra)}")
    if "wengert" in meta and not isinstance(meta["wengert"], str):
        raise TapeFormatError("the header's 'wengert' entry is not a string")
    in_shape = _shape(meta["in_shape"], "in_shape")
    out_shape = _shape(meta["out_shape"], "out_shape")
    n_params = meta["n_params"]
    if type(n_params) is not int or not 0 <= n_params <= _MAX_COUNT:
        raise TapeFormatError(f"n_params {_clip(n_params)} is not a count")
    if not isinstance(meta["extra_args"], list):
        raise TapeFormatError("the header's 'extra_args' entry is not a list")
    specs = []
    for i, entry in enumerate(meta["extra_args"]):
        if not isinstance(entry, dict):
            raise TapeFormatError(f"extra argument {i} in the header is not an object")
        kind = entry.get("kind")
        if kind == "param" and set(entry) == {"kind", "shape"}:
            # Its first slot and values come from the arrays (_build_state).
            specs.append(Param(_shape(entry["shape"], f"the shape of extra argument {i}"),
                               None, None))
        elif kind == "static" and set(entry) == {"kind", "value"}:
            specs.append(Static(_decode_static(entry["value"])))
        elif kind == "static" and set(entry) == {"kind", "repr"} and isinstance(entry["repr"], str):
            specs.append(Static(StaticRepr(entry["repr"])))
        else:
            raise TapeFormatError(f"extra argument {i} in the header is malformed: {_clip(entry)}")
    guards = meta["guards"]
    if not (isinstance(guards, list) and all(
            isinstance(g, list) and len(g) == 2 and all(isinstance(s, str) for s in g)
            for g in guards)):
        raise TapeFormatError("the header's 'guards' entry is not a list of "
                              "[location, text] string pairs")
    return dict(version=version, in_shape=in_shape, out_shape=out_shape, n_params=n_params,
                specs=specs, guards=guards)


def _build_state(meta, arrays):
    """The dict ``Tape._from_state`` takes, after the cross-checks between
    header and arrays."""
    # Declared sizes against what the arrays hold and what 32-bit slot
    # indices can number, before anything is built from them. (Inputs may
    # outnumber what the operations read -- f(x) = x[0] -- so in_shape is
    # bounded by the slot range only; the tools never spend per unread input.)
    n_ops = arrays["opcodes"].shape[0]
    if meta["version"] < 2 and has_array_entries(arrays["opcodes"]):
        raise TapeFormatError("it has array entries (opcodes 48-51), which format version "
                              f"{meta['version']} does not have")
    # (A lower bound once array entries write many slots: the engine counts
    # them exactly when it validates the tape.)
    n_slots = math.prod(meta["in_shape"]) + meta["n_params"] + n_ops
    if n_slots > _MAX_COUNT:
        raise TapeFormatError(
            f"the header declares {math.prod(meta['in_shape'])} inputs and "
            f"{meta['n_params']} parameters, which with the {n_ops} operations make "
            f"{n_slots} slots; slots are 32-bit indices, at most {_MAX_COUNT}")
    n_outputs = math.prod(meta["out_shape"])
    if arrays["outputs"].shape[0] != n_outputs:
        raise TapeFormatError(
            f"outputs holds {arrays['outputs'].shape[0]} slots but the header's out_shape "
            f"{list(meta['out_shape'])} has {n_outputs} elements")
    n_guards = len(meta["guards"])
    for name in ("guard_codes", "guard_args", "guard_expected"):
        if arrays[name].shape[0] != n_guards:
            raise TapeFormatError(f"{name} has {arrays[name].shape[0]} entries for "
                                  f"{n_guards} guards in the header")
    params = arrays["params"]
    if params.size != meta["n_params"]:
        raise TapeFormatError(f"params holds {params.size} values but the header says "
                              f"n_params = {meta['n_params']}")
    n_inputs = math.prod(meta["in_shape"])
    specs, offset = [], 0
    for spec in meta["specs"]:
        if isinstance(spec, Param):
            n = math.prod(spec.shape)
            if offset + n > params.size:
                raise TapeFormatError(f"the parameter shapes in the header need more than "
                                      f"the {params.size} stored values")
            specs.append(spec._replace(first=n_inputs + offset,
                                       values=params[offset:offset + n].reshape(spec.shape).copy()))
            offset += n
        else:
            specs.append(spec)
    if offset != params.size:
        raise TapeFormatError(f"the parameter shapes in the header hold {offset} values "
                              f"but params holds {params.size}")
    if arrays["opcodes"].shape[0] != arrays["args"].shape[0]:
        raise TapeFormatError(f"{arrays['opcodes'].shape[0]} opcodes but "
                              f"{arrays['args'].shape[0]} operand rows")
    if arrays["guard_expected"].size and arrays["guard_expected"].max() > 1:
        raise TapeFormatError("a guard's recorded outcome is neither 0 nor 1")
    codes, gargs, expected = arrays["guard_codes"], arrays["guard_args"], arrays["guard_expected"]
    guards = [Guard(int(codes[g]), int(gargs[g, 0]), int(gargs[g, 1]), bool(expected[g]),
                    where, text) for g, (where, text) in enumerate(meta["guards"])]
    return dict(opcodes=arrays["opcodes"], args=arrays["args"], consts=arrays["consts"],
                aux=arrays["aux"], outputs=arrays["outputs"], in_shape=meta["in_shape"],
                out_shape=meta["out_shape"], n_params=meta["n_params"], param_specs=specs,
                guards=guards)
