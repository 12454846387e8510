"""Sample tapes, tape-file surgery and a crash-proof corpus runner.

Shared by ``tests/test_io.py``, ``tests/test_pickle.py`` and the fuzz tests.

* :func:`sample_tapes` records a few tapes that between them use every part
  of the format (parameters, static arguments, guards, selects, scalar and
  empty shapes, a tape without operations).
* The surgery helpers split a tape file into its members, re-encode or forge
  any of them and pack them again (with valid CRCs, so a mutation reaches the
  layer it targets), or patch the ZIP directory fields in place.
* The mutation families generate labelled corpora from real tape files.
* :func:`run_corpus` loads a corpus **in subprocesses**: run as a script,
  this module loads each file with ``wg.load``, replays every tape that
  loads, and prints one line per file. A crash (a signal), a hang (a
  timeout) or an enormous allocation (the worker runs under a 1 GiB address
  space limit) shows up in that process's exit status, and the last file it
  started names the culprit.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

import wengert as wg

STEMS = ["header", "opcodes", "args", "consts", "aux", "outputs", "params",
         "guard_codes", "guard_args", "guard_expected"]
ADDRESS_LIMIT = 1 << 30           # bytes of address space a corpus worker may use


# ---- sample tapes --------------------------------------------------------------------

def survey(x):
    """The running example of Baydin et al.: value 11.652 at (2, 5)."""
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def halve(v):
    """A static function argument: stored by its repr in a tape file."""
    return 0.5 * v


def guarded(x, w, power, mode, idx, fn, options):
    """Parameters, every kind of static argument, a guard and a select."""
    y = x[idx] * w
    if x[0] > 0.5:
        y = y * 2.0
    if mode == "tanh":
        y = np.tanh(y)
    z = wg.where(x[1] > 0, x[0], x[1])
    return np.stack([np.sum(y ** power) * options[0], fn(z) + options[1]["shift"]])


def cubic(x):
    return x * x * x - 2.0 * x + 1.0


def matrix(x, c):
    s = np.sum(np.tanh(x) * c, axis=0)
    return np.maximum(s, 0.1) ** 1.5 + np.hypot(x[0], x[1]) / (1.0 + np.exp(-x[1]))


def identity(x):
    return x


# name -> (function, recording point, extra arguments, other points to replay at)
SAMPLES = {
    "survey": (survey, np.array([2.0, 5.0]), (), [np.array([1.5, -0.3])]),
    "guarded": (guarded, np.array([1.0, 2.0, 3.0]),
                (np.array([1.5, -0.5, 2.0]), 2, "tanh", np.array([0, 2, 1]), halve,
                 (3, {"shift": 0.25})),
                [np.array([0.9, -1.0, 0.25])]),
    "scalar": (cubic, 1.5, (), [-0.25]),
    "matrix": (matrix, np.arange(6.0).reshape(2, 3) / 4.0 - 0.3, (0.7,),
               [np.linspace(-1.0, 1.0, 6).reshape(2, 3)]),
    "identity": (identity, np.array([1.0, -2.0]), (), [np.array([3.0, 4.0])]),
}


def sample_tapes():
    """``{name: (tape, x, args, other_points)}`` for every sample."""
    return {name: (wg.record(f, x, *args), x, args, points)
            for name, (f, x, args, points) in SAMPLES.items()}


def tape_bytes(tape):
    """The bytes ``tape.save`` writes (through the in-memory writer)."""
    from wengert import _io
    buf = io.BytesIO()
    _io._write(buf, tape._state())
    return buf.getvalue()


def sample_files():
    """``{name: bytes}`` of every sample tape's file."""
    return {name: tape_bytes(entry[0]) for name, entry in sample_tapes().items()}


# ---- file surgery ----------------------------------------------------------------------

def members(data):
    """``{stem: member bytes}`` of a tape file, in file order."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename[:-4]: zf.read(info) for info in zf.infolist()}


def pack(parts, compression=zipfile.ZIP_STORED, zip64=False):
    """A ZIP archive of ``{stem or name: bytes}`` (stems get ``.npy``), or of a
    list of ``(name, bytes)`` pairs (names used as given, duplicates allowed)."""
    items = parts.items() if isinstance(parts, dict) else parts
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=compression) as zf:
        warnings.simplefilter("ignore")         # "Duplicate name": wanted here
        for name, content in items:
            if isinstance(parts, dict):
                name = name + ".npy"
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if zip64:
                with zf.open(info, "w", force_zip64=True) as out:
                    out.write(content)
            else:
                zf.writestr(info, content)
    return buf.getvalue()


def npy(array, version=(1, 0)):
    """The .npy encoding of ``array`` (object arrays pickled, as NumPy does)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), version=version, allow_pickle=True)
    return buf.getvalue()


def npy_raw(header, data=b"", version=(1, 0), length=None):
    """A .npy file with an arbitrary header text and payload; ``length``
    forges the header length field."""
    text = header.encode("latin1") if isinstance(header, str) else header
    fmt = "<H" if version[0] == 1 else "<I"
    size = len(text) if length is None else length
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, size) + text + data


def npy_header_text(descr, shape, fortran=False):
    return "{'descr': %r, 'fortran_order': %r, 'shape': %r, }\n" % (descr, fortran, shape)


def arrays(data):
    """``{stem: array}`` of a tape file (plain NumPy, no pickle)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {stem: z[stem] for stem in STEMS}


def replace(data, **new):
    """``data`` with some members replaced: arrays are encoded as .npy, bytes
    used as they are (every CRC valid)."""
    parts = members(data)
    for stem, value in new.items():
        parts[stem] = value if isinstance(value, bytes) else npy(value)
    return pack(parts)


def header_of(data):
    return json.loads(arrays(data)["header"].tobytes().decode("utf-8"))


def with_header(data, meta):
    """``data`` with the JSON header replaced by ``meta`` (a dict, or raw bytes)."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode("utf-8")
    return replace(data, header=np.frombuffer(raw, dtype=np.uint8))


class Detonator:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# ---- the ZIP directory -------------------------------------------------------------------

def zip_records(data):
    """Offsets of the end record, and of each member's central directory
    entry and local header: ``(eocd, [(name, cd_offset, local_offset)])``."""
    eocd = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HLL", data, eocd + 10)
    entries, pos = [], cd_offset
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        local = struct.unpack_from("<L", data, pos + 42)[0]
        name = data[pos + 46:pos + 46 + name_len].decode()
        entries.append((name, pos, local))
        pos += 46 + name_len + extra_len + comment_len
    return eocd, entries


def patch(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# field name -> (offset in the record, struct format)
CD_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<L"), "csize": (20, "<L"),
             "usize": (24, "<L"), "name_len": (28, "<H"), "extra_len": (30, "<H"),
             "comment_len": (32, "<H"), "local_offset": (42, "<L")}
LOCAL_FIELDS = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<L"), "csize": (18, "<L"),
                "usize": (22, "<L"), "name_len": (26, "<H"), "extra_len": (28, "<H")}
EOCD_FIELDS = {"disk": (4, "<H"), "entries_disk": (8, "<H"), "entries": (10, "<H"),
               "cd_size": (12, "<L"), "cd_offset": (16, "<L"), "comment_len": (20, "<H")}
HUGE_32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
HUGE_16 = [0, 1, 0x7FFF, 0xFFFF]


def forge_zip64_sizes(data, name, usize, csize, offset=None):
    """Rewrite ``name``'s central directory entry to take its sizes (and
    optionally its offset) from a ZIP64 extra field holding the given values."""
    eocd, entries = zip_records(data)
    (_, pos, local), = [e for e in entries if e[0] == name]
    name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
    end = pos + 46 + name_len + extra_len + comment_len
    fixed = bytearray(data[pos:pos + 46 + name_len])
    struct.pack_into("<LL", fixed, 20, 0xFFFFFFFF, 0xFFFFFFFF)
    values = [usize, csize]
    if offset is not None:
        struct.pack_into("<L", fixed, 42, 0xFFFFFFFF)
        values.append(offset)
    extra = struct.pack("<HH", 1, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)
    struct.pack_into("<HHH", fixed, 28, name_len, len(extra), 0)
    entry = bytes(fixed) + extra
    out = data[:pos] + entry + data[end:]
    grow = len(entry) - (end - pos)
    eocd += grow
    cd_size = struct.unpack_from("<L", out, eocd + 12)[0] + grow
    return patch(out, eocd + 12, "<L", cd_size)


# ---- mutation families: each yields (label, bytes, expect) -------------------------------
# expect: "reject" (must raise TapeFormatError) or "any" (load and replay, or reject).

def byte_flips(name, data, rng, offsets=None, patterns=(0xFF, 0x01, 0x80)):
    offsets = range(len(data)) if offsets is None else offsets
    for off in offsets:
        out = bytearray(data)
        mask = int(rng.choice(patterns))
        out[off] ^= mask
        yield f"{name}: byte {off} ^ {mask:#x}", bytes(out), "any"


def byte_sets(name, data, offsets, values=(0x00, 0x7F, 0xFF)):
    for off in offsets:
        for v in values:
            if data[off] != v:
                out = bytearray(data)
                out[off] = v
                yield f"{name}: byte {off} := {v:#x}", bytes(out), "any"


def truncations(name, data, lengths=None):
    lengths = range(len(data)) if lengths is None else lengths
    for n in lengths:
        if n < len(data):
            # Every proper prefix lacks the end record at least: never a tape.
            yield f"{name}: truncated to {n} bytes", data[:n], "reject"


def content_flips(name, data, rng, stride=1):
    """Flip bytes inside each member and repack with valid CRCs, so the
    mutation reaches the .npy and JSON layers."""
    parts = members(data)
    for stem, content in parts.items():
        for off in range(0, len(content), stride):
            out = bytearray(content)
            mask = int(rng.choice([0xFF, 0x01, 0x20, 0x80]))
            out[off] ^= mask
            yield (f"{name}: {stem}.npy byte {off} ^ {mask:#x} (CRC valid)",
                   pack({**parts, stem: bytes(out)}), "any")


def operand_mutations(name, data):
    """Out-of-range and self-referencing operands, unknown and misused
    opcodes, bad guards and outputs: the tape validation layer."""
    a = arrays(data)
    meta = header_of(data)
    n_in = int(np.prod(meta["in_shape"]))
    first = n_in + meta["n_params"]
    n_ops = a["opcodes"].size
    n_slots = first + n_ops
    sizes = {"consts": a["consts"].size, "aux": a["aux"].size}
    bad = [-1, -2**31, 2**31 - 1, n_slots, n_slots + 1, sizes["consts"], sizes["aux"],
           sizes["aux"] - 1]
    for i in range(n_ops):
        for j in (0, 1):
            for v in bad + [first + i, first + i + 1]:
                args = a["args"].copy()
                args[i, j] = v
                yield f"{name}: args[{i}, {j}] = {v}", replace(data, args=args), "any"
    positions = sorted({0, n_ops // 2, n_ops - 1}) if n_ops else []
    for i in positions:
        for code in range(256):
            ops = a["opcodes"].copy()
            ops[i] = code
            yield f"{name}: opcodes[{i}] = {code}", replace(data, opcodes=ops), "any"
    for k in range(a["outputs"].size):
        for v in [-1, n_slots, 2**31 - 1, -2**31, 0, n_slots - 1]:
            outs = a["outputs"].copy()
            outs[k] = v
            expect = "any" if 0 <= v < n_slots else "reject"
            yield f"{name}: outputs[{k}] = {v}", replace(data, outputs=outs), expect
    for k in range(a["aux"].size):
        for v in [-1, n_slots, 2**31 - 1, 0]:
            aux = a["aux"].copy()
            aux[k] = v
            yield f"{name}: aux[{k}] = {v}", replace(data, aux=aux), "any"
    for g in range(a["guard_codes"].size):
        for code in range(256):
            codes = a["guard_codes"].copy()
            codes[g] = code
            yield f"{name}: guard_codes[{g}] = {code}", replace(data, guard_codes=codes), "any"
        for j in (0, 1):
            for v in bad:
                gargs = a["guard_args"].copy()
                gargs[g, j] = v
                yield f"{name}: guard_args[{g}, {j}] = {v}", replace(data, guard_args=gargs), "any"
        for v in (2, 7, 255):
            exp = a["guard_expected"].copy()
            exp[g] = v
            yield f"{name}: guard_expected[{g}] = {v}", replace(data, guard_expected=exp), "reject"
    # Arrays of other lengths than the header and each other imply.
    for stem in STEMS[1:]:
        arr = a[stem]
        shorter = arr[:-1] if arr.shape[0] else None
        one = arr[:1] if arr.shape[0] else np.zeros((1,) + arr.shape[1:], arr.dtype)
        longer = np.concatenate([arr, one])
        for label, value in (("one entry fewer", shorter), ("one entry more", longer),
                             ("empty", arr[:0])):
            if value is not None and value.shape != arr.shape:
                yield f"{name}: {stem} {label}", replace(data, **{stem: value}), "any"
    # Non-finite constants and parameters are valid data.
    if a["consts"].size:
        for v in (np.nan, np.inf, -np.inf, 5e-324, -0.0):
            consts = a["consts"].copy()
            consts[:] = v
            yield f"{name}: consts all {v}", replace(data, consts=consts), "any"


DTYPES = ["|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", ">i4", ">i8", "<f4", "<f8",
          ">f8", "<f2", "|b1", "<c16", "|S4", "<U2", "<M8[s]", "<m8[s]", "|V8"]


def dtype_mutations(name, data, marker):
    """Every member in every other dtype, object arrays with a pickle payload,
    structured dtypes, other shapes and Fortran order: the .npy layer."""
    a = arrays(data)
    for stem in STEMS:
        arr = a[stem]
        for dt in DTYPES:
            if np.dtype(dt) == arr.dtype and np.dtype(dt).str == arr.dtype.str:
                continue
            try:
                value = arr.astype(dt)
            except (TypeError, ValueError):
                value = np.zeros(arr.shape, dt)
            yield f"{name}: {stem} as {dt}", replace(data, **{stem: value}), "reject"
        objects = np.empty(max(arr.shape[0], 1), dtype=object)
        objects[:] = [Detonator(marker)] * objects.size
        yield f"{name}: {stem} as a pickled object array", replace(data, **{stem: npy(objects)}), "reject"
        structured = np.zeros(arr.shape[:1], dtype=[("a", arr.dtype)])
        yield f"{name}: {stem} structured", replace(data, **{stem: structured}), "reject"
        n = arr.shape[0]
        for shape in [(), (n, 1), (1, n), (n, 2, 1), (n, 3), (2, n)]:
            if shape == arr.shape or (arr.ndim == 2 and shape == (n, 2)):
                continue
            if n * (2 if arr.ndim == 2 else 1) != int(np.prod(shape)):
                value = np.zeros(shape, arr.dtype)
            else:
                value = arr.reshape(shape)
            yield f"{name}: {stem} of shape {shape}", replace(data, **{stem: value}), "reject"
        if arr.ndim == 2 and arr.shape[0] > 1:
            fortran = np.asfortranarray(arr)
            yield f"{name}: {stem} in Fortran order", replace(data, **{stem: npy(fortran)}), "reject"
            text = npy_header_text(arr.dtype.str, arr.shape, fortran=True)
            yield (f"{name}: {stem} flagged Fortran", replace(data, **{stem: npy_raw(text, arr.tobytes())}),
                   "reject")
        yield f"{name}: {stem} as npy 2.0", replace(data, **{stem: npy(arr, (2, 0))}), "any"
        yield f"{name}: {stem} as npy 3.0", replace(data, **{stem: npy(arr, (3, 0))}), "reject"


def npy_header_forgeries(name, data):
    """Declared sizes that do not match the data: huge, negative, overflowing,
    non-integer; header lengths and versions forged: nothing may allocate
    what the header claims."""
    a = arrays(data)
    for stem in STEMS:
        arr = a[stem]
        descr = arr.dtype.str
        payload = arr.tobytes()
        n = arr.shape[0]
        tail = arr.shape[1:]
        shapes = [(2**62,) + tail, (2**31,) + tail, (2**31 - 1,) + tail, (2**40, 2), (2**32, 2**32),
                  (10**30,) + tail, (-1,) + tail, (-(2**62),) + tail, (n + 1,) + tail,
                  (max(n - 1, 0),) + tail, (2**64 + n,) + tail]
        for shape in shapes:
            if shape == arr.shape:
                continue
            text = npy_header_text(descr, shape)
            yield (f"{name}: {stem} declares shape {shape}",
                   replace(data, **{stem: npy_raw(text, payload)}), "reject")
        for text in ["{'descr': '%s', 'fortran_order': False, 'shape': (1.5,), }" % descr,
                     "{'descr': '%s', 'fortran_order': False, 'shape': ('a',), }" % descr,
                     "{'descr': '%s', 'fortran_order': False, 'shape': None, }" % descr,
                     "{'descr': '%s', 'fortran_order': 0, 'shape': (%d,), }" % (descr, n),
                     "{'descr': '%s', 'shape': (%d,), }" % (descr, n),
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), 'x': 1}" % (descr, n),
                     "{'descr': 'O', 'fortran_order': False, 'shape': (%d,), }" % n,
                     "{'descr': [('a', 'O')], 'fortran_order': False, 'shape': (%d,), }" % n,
                     "{'descr': '<q', 'fortran_order': False, 'shape': (%d,), }" % n,
                     "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, "(" * 150 + ")" * 150),
                     "__import__('os').mkdir('x')",
                     "[" * 5000 + "]" * 5000,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (descr, n) + " " * 20000,
                     "\xff\xfe garbage",
                     # The parser warns about these (the runner fails on any stderr output).
                     "{'descr': '%s\\d', 'fortran_order': False, 'shape': (%d,), }" % (descr, n),
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%dif 1 else 0,), }" % (descr, n)]:
            yield f"{name}: {stem} header {text[:50]!r}", replace(data, **{stem: npy_raw(text, payload)}), "reject"
        good = npy_header_text(descr, arr.shape)
        for version, length in [((1, 0), 0xFFFF), ((2, 0), 0xFFFFFFFF), ((2, 0), 2**31), ((1, 0), 0)]:
            raw = npy_raw(good, payload, version, length)
            yield (f"{name}: {stem} header length {length:#x} (v{version[0]})",
                   replace(data, **{stem: raw}), "reject")
        for version in [(0, 0), (3, 0), (1, 1), (255, 255)]:
            raw = npy_raw(good, payload, version)
            yield f"{name}: {stem} npy version {version}", replace(data, **{stem: raw}), "reject"
        yield f"{name}: {stem} bad magic", replace(data, **{stem: b"\x93NUMPX" + npy(arr)[6:]}), "reject"
        yield f"{name}: {stem} empty member", replace(data, **{stem: b""}), "reject"
        yield f"{name}: {stem} header only", replace(data, **{stem: npy(arr)[:-len(payload) or None]}), "any"
        yield f"{name}: {stem} extra byte", replace(data, **{stem: npy(arr) + b"\0"}), "reject"


def zip_forgeries(name, data):
    """Central directory, local header and end record fields forged: sizes,
    offsets, methods, flags, counts; ZIP64 sizes; member sets."""
    eocd, entries = zip_records(data)
    for member, cd, local in entries:
        for field, (off, fmt) in CD_FIELDS.items():
            values = HUGE_16 if fmt == "<H" else HUGE_32
            if field == "method":
                values = [8, 12, 14, 93, 98, 99, 0x1234]
            elif field == "flags":
                values = [1, 8, 0x40, 0x800, 0x2000, 0xFFFF]
            original = struct.unpack_from(fmt, data, cd + off)[0]
            for v in values:
                if v == original:
                    continue
                expect = "reject" if field in ("csize", "usize", "method", "local_offset") else "any"
                if field == "flags" and v in (8, 0x800):
                    expect = "any"
                elif field == "flags" and v & 0x41:
                    expect = "reject"
                yield (f"{name}: {member} central {field} = {v:#x}", patch(data, cd + off, fmt, v),
                       expect)
        for field, (off, fmt) in LOCAL_FIELDS.items():
            values = HUGE_16 if fmt == "<H" else HUGE_32
            if field == "method":
                values = [8, 12, 14, 99]
            elif field == "flags":
                values = [1, 8, 0x40, 0x800, 0xFFFF]
            for v in values:
                yield (f"{name}: {member} local {field} = {v:#x}", patch(data, local + off, fmt, v),
                       "any")
        size = struct.unpack_from("<L", data, cd + 24)[0]
        for usize, csize in [(2**63, 2**63), (2**64 - 1, 2**64 - 1), (2**40, size), (size, 2**40),
                             (size + 1, size + 1), (2**33, 2**33)]:
            yield (f"{name}: {member} ZIP64 sizes {usize}, {csize}",
                   forge_zip64_sizes(data, member, usize, csize), "reject")
        for offset in [2**63, 2**64 - 1, len(data), 2**40]:
            yield (f"{name}: {member} ZIP64 offset {offset}",
                   forge_zip64_sizes(data, member, size, size, offset), "reject")
    for field, (off, fmt) in EOCD_FIELDS.items():
        for v in (HUGE_16 if fmt == "<H" else HUGE_32) + [9, 11]:
            yield f"{name}: end record {field} = {v:#x}", patch(data, eocd + off, fmt, v), "any"
    junk = bytes(range(7, 71))
    yield f"{name}: trailing garbage", data + junk, "any"
    yield f"{name}: leading garbage", junk + data, "reject"
    yield f"{name}: doubled", data + data, "any"
    parts = members(data)
    yield f"{name}: deflated (np.savez_compressed style)", pack(parts, zipfile.ZIP_DEFLATED), "reject"
    yield f"{name}: bzip2", pack(parts, zipfile.ZIP_BZIP2), "reject"
    yield f"{name}: lzma", pack(parts, zipfile.ZIP_LZMA), "reject"
    yield f"{name}: ZIP64 members", pack(parts, zip64=True), "any"
    items = [(s + ".npy", b) for s, b in parts.items()]
    yield f"{name}: a member missing", pack(items[:-1]), "reject"
    yield f"{name}: a member twice", pack(items + items[-1:]), "reject"
    yield f"{name}: an extra member", pack(items + [("extra.npy", items[1][1])]), "reject"
    yield f"{name}: a member renamed", pack(items[:-1] + [("../guard_expected.npy", items[-1][1])]), "reject"
    yield f"{name}: members without .npy", pack([(n[:-4], b) for n, b in items]), "reject"
    yield f"{name}: reversed member order", pack(items[::-1]), "any"
    yield f"{name}: a directory entry", pack(items[:-1] + [("guard_expected.npy/", b"")]), "reject"


def json_forgeries(name, data):
    """The JSON header forged key by key, plus hostile JSON texts."""
    meta = header_of(data)
    odd_values = [None, -1, 0, 2**31, 2**63, 1.5, "1", [], {}, [[1]], [-1], [2**40], [2**20] * 4,
                  [1.0], [True], True, "x" * 1000, [0] * 100]
    for key in list(meta):
        trimmed = dict(meta)
        del trimmed[key]
        expect = "any" if key == "wengert" else "reject"
        yield f"{name}: header without {key!r}", with_header(data, trimmed), expect
        for v in odd_values:
            yield f"{name}: header {key} = {str(v)[:30]}", with_header(data, {**meta, key: v}), "any"
    for v in [0, 3, 99, -1, True, "1", 1.0, 10**30]:
        yield f"{name}: version {v!r}", with_header(data, {**meta, "version": v}), "reject"
    # Version 2 adds array entries to version 1: a version 1 tape is one too.
    yield f"{name}: version 2", with_header(data, {**meta, "version": 2}), "any"
    for v in ["wengert-tap", "", "WENGERT-TAPE", None]:
        yield f"{name}: format {v!r}", with_header(data, {**meta, "format": v}), "reject"
    yield f"{name}: an unknown key", with_header(data, {**meta, "extra": 1}), "reject"
    for shape in [[2**31], [2**16, 2**16], [2**30], [3], [1, 2], [0], [2**62, 0], [1] * 33, [1] * 32]:
        for key in ("in_shape", "out_shape"):
            yield f"{name}: {key} = {str(shape)[:30]}", with_header(data, {**meta, key: shape}), "any"
    for n in [meta["n_params"] + 1, max(meta["n_params"] - 1, 0), 2**31, 2**40]:
        if n != meta["n_params"]:
            yield f"{name}: n_params = {n}", with_header(data, {**meta, "n_params": n}), "reject"
    bad_args = [[{"kind": "param"}], [{"kind": "param", "shape": [2**40]}],
                [{"kind": "param", "shape": [-1]}], [{"kind": "static"}],
                [{"kind": "static", "value": 1, "repr": "1"}], [{"kind": "static", "repr": 5}],
                [{"kind": "bogus", "value": 1}], ["param"], [None],
                [{"kind": "static", "value": {"tuple": 5}}],
                [{"kind": "static", "value": {"set": [1]}}], [{"kind": "static", "value": {"float": "NaN"}}],
                [{"kind": "static", "value": {"dict": [[1, 2]]}}],
                [{"kind": "static", "value": {"dict": [["a"]]}}],
                [{"kind": "static", "value": {"tuple": [1], "dict": []}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "|O", "shape": [1], "data": [1]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "<i8", "shape": [2**40], "data": [1]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "|u1", "shape": [1], "data": [300]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "|u1", "shape": [1], "data": [-1]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "<i8", "shape": [1], "data": [1.5]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "<i8", "shape": [1], "data": [2**70]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "|b1", "shape": [1], "data": [1]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "<i8", "shape": [2], "data": [1]}}}],
                [{"kind": "static", "value": {"ndarray": {"dtype": "<i8", "shape": [1]}}}],
                [{"kind": "static", "value": {"ndarray": [1, 2]}}]]
    for bad in bad_args:
        args = meta["extra_args"] + bad
        yield (f"{name}: extra_args + {json.dumps(bad)[:60]}",
               with_header(data, {**meta, "extra_args": args}), "reject")
    good_statics = [None, True, -3, 2**100, 1.5, "text", [1, [2, "3"]], {"tuple": [{"tuple": []}]},
                    {"dict": [["k", {"float": "-inf"}]]},
                    {"ndarray": {"dtype": "|b1", "shape": [2, 1], "data": [True, False]}},
                    {"ndarray": {"dtype": "<u8", "shape": [0], "data": []}}]
    for value in good_statics:
        args = meta["extra_args"] + [{"kind": "static", "value": value}]
        yield (f"{name}: extra static {json.dumps(value)[:50]}",
               with_header(data, {**meta, "extra_args": args}), "any")
    args = meta["extra_args"] + [{"kind": "static", "repr": "<object at 0xdeadbeef>" * 1000}]
    yield f"{name}: a long static repr", with_header(data, {**meta, "extra_args": args}), "any"
    for guards in [None, [["a"]], [[1, 2]], [["a", "b", "c"]], [["a", "b"]] * 3, "g", [None]]:
        yield f"{name}: guards = {str(guards)[:40]}", with_header(data, {**meta, "guards": guards}), "reject"
    raw = json.dumps(meta).encode()
    texts = [b"", b"{", b"null", b"[]", b"1", b'"wengert-tape"', b"\xff\xfe{}", b"\xef\xbb\xbf" + raw,
             raw.replace(b'"version": 1', b'"version": NaN'),
             raw.replace(b'"version": 1', b'"version": Infinity'),
             raw.replace(b'"version": 1', b'"version": 1, "version": 1'),
             raw.replace(b'"version": 1', b'"version": 1' + b"0" * 5000),
             raw.replace(b'"version": 1', b'"version": 1, "deep": ' + b"[" * 100000 + b"]" * 100000),
             raw[:-1] + b', "deep": ' + b"{\"a\": " * 50000 + b"1" + b"}" * 50001,
             raw.replace(b'"in_shape": [', b'"in_shape": [' + b"1" * 5000 + b", "),
             raw + b"garbage", raw + b" " * 1000, raw.replace(b'"', b"'"), raw.replace(b"e", b"\xc3")]
    for text in texts:
        yield f"{name}: header text {text[:40]!r}...", with_header(data, text), "any"


def foreign_files(marker):
    """Files that are no tape at all."""
    rng = np.random.default_rng(7)
    yield "empty file", b"", "reject"
    yield "a pickle", pickle.dumps(Detonator(marker)), "reject"
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        yield f"a pickle, protocol {proto}", pickle.dumps([Detonator(marker), 1.0], protocol=proto), "reject"
    yield "a pickled tape", pickle.dumps(wg.record(survey, np.array([2.0, 5.0]))), "reject"
    yield "a .npy file", npy(np.arange(5.0)), "reject"
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3), b=np.ones((2, 2)))
    yield "an .npz of other arrays", buf.getvalue(), "reject"
    buf = io.BytesIO()
    np.savez(buf, **{stem: np.zeros(1) for stem in STEMS})
    yield "an .npz with the member names but other arrays", buf.getvalue(), "reject"
    yield "a zip of text", pack([("readme.txt", b"hello")]), "reject"
    yield "an empty zip", pack([]), "reject"
    for n in [1, 3, 4, 21, 22, 100, 4096]:
        yield f"{n} random bytes", rng.bytes(n), "reject"
        yield f"PK header and {n} random bytes", b"PK\x03\x04" + rng.bytes(n), "reject"
    yield "JSON text", b'{"format": "wengert-tape", "version": 1}', "reject"
    yield "zeros", bytes(1000), "reject"


# ---- random mutation (the pure-Python fuzzer) --------------------------------------------

def havoc(seeds, rng, count):
    """``count`` files, each from a random seed file by 1-8 stacked random
    mutations (flips, sets, inserts, deletes, splices, interesting integers),
    half of them applied inside a member and repacked with valid CRCs."""
    interesting = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**31]
    names = list(seeds)

    def mutate(buf, depth):
        buf = bytearray(buf)
        for _ in range(depth):
            kind = rng.integers(7)
            pos = int(rng.integers(len(buf) + 1)) if buf else 0
            if kind == 0 and buf:
                buf[min(pos, len(buf) - 1)] ^= 1 << int(rng.integers(8))
            elif kind == 1 and buf:
                buf[min(pos, len(buf) - 1)] = int(rng.integers(256))
            elif kind == 2:
                buf[pos:pos] = rng.bytes(int(rng.integers(1, 16)))
            elif kind == 3 and buf:
                del buf[pos:pos + int(rng.integers(1, 32))]
            elif kind == 4 and len(buf) >= 4:
                pos = min(pos, len(buf) - 4)
                buf[pos:pos + 4] = struct.pack("<L", int(rng.choice(interesting)) & 0xFFFFFFFF)
            elif kind == 5:
                other = seeds[names[int(rng.integers(len(names)))]]
                start = int(rng.integers(len(other)))
                buf[pos:pos] = other[start:start + int(rng.integers(1, 64))]
            elif kind == 6 and len(buf) >= 2:
                pos = min(pos, len(buf) - 2)
                buf[pos:pos + 2] = struct.pack("<H", int(rng.choice(interesting)) & 0xFFFF)
        return bytes(buf)

    for k in range(count):
        name = names[int(rng.integers(len(names)))]
        data = seeds[name]
        depth = int(rng.integers(1, 9))
        if rng.random() < 0.5:
            parts = members(data)
            stem = STEMS[int(rng.integers(len(STEMS)))]
            parts[stem] = mutate(parts[stem], depth)
            yield f"havoc {k}: {name} {stem}.npy x{depth} (CRC valid)", pack(parts), "any"
        else:
            yield f"havoc {k}: {name} x{depth}", mutate(data, depth), "any"


def build_file(meta, **arrays_):
    """A tape file from a header dict and arrays (cast to the format's dtypes;
    missing arrays empty)."""
    dtypes = {"opcodes": "|u1", "args": "<i4", "consts": "<f8", "aux": "<i4", "outputs": "<i4",
              "params": "<f8", "guard_codes": "|u1", "guard_args": "<i4", "guard_expected": "|u1"}
    parts = {"header": npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))}
    for stem, dtype in dtypes.items():
        value = np.asarray(arrays_.get(stem, []), dtype=dtype)
        if stem in ("args", "guard_args"):
            value = value.reshape(-1, 2)
        parts[stem] = npy(value)
    return pack(parts)


def random_tapes(rng, count):
    """``count`` structurally valid files holding random tapes: opcodes mostly
    valid, operands mostly in range, so that the tape validation is probed at
    its edges (about a fifth of them load)."""
    from wengert import _opcodes as ops
    valid = np.flatnonzero(ops.valid_codes())
    comparisons = [c for c in valid
                   if ops.split(int(c))[0].name in ops.COMPARISONS and c >> ops.KIND_SHIFT]

    def draw(bound, n, good=0.9):
        """n indices, each below ``bound`` with probability ``good``."""
        near = rng.integers(-2, bound + 3, n)
        inside = rng.integers(0, max(bound, 1), n)
        return np.where((rng.random(n) < good) & (bound > 0), inside, near)

    for k in range(count):
        n_in, n_par = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        n_ops, n_consts, n_aux = int(rng.integers(0, 16)), int(rng.integers(0, 4)), int(rng.integers(0, 5))
        first = n_in + n_par
        n_slots = first + n_ops
        opcodes = rng.choice(valid, n_ops) if rng.random() < 0.9 else rng.integers(0, 256, n_ops)
        args = np.zeros((n_ops, 2), dtype=np.int64)
        for i, code in enumerate(opcodes):
            kind, base = int(code) >> 6, int(code) & 63
            uses_const = [kind == 3 or (kind == 0 and base == 0), kind == 2]
            for j in (0, 1):
                bound = n_consts if uses_const[j] else (n_aux - 1 if kind == 0 and base == 1 and j == 1
                                                        else first + i)
                args[i, j] = draw(bound, 1)[0]
        n_out = int(rng.integers(0, 4))
        n_guards = int(rng.integers(0, 3))
        guard_codes = (rng.choice(comparisons, n_guards) if rng.random() < 0.9
                       else rng.integers(0, 256, n_guards))
        meta = {"format": "wengert-tape", "version": 1,
                "in_shape": [n_in] if n_in != 1 or rng.random() < 0.5 else [],
                "out_shape": [n_out] if n_out != 1 or rng.random() < 0.5 else [],
                "n_params": n_par,
                "extra_args": [{"kind": "param", "shape": [n_par]}] if n_par else [],
                "guards": [["random.py:1", f"guard {g}"] for g in range(n_guards)]}
        data = build_file(
            meta, opcodes=opcodes, args=args, consts=rng.normal(size=n_consts) * 3,
            aux=draw(n_slots, n_aux), outputs=draw(n_slots, n_out, 0.95),
            params=rng.normal(size=n_par), guard_codes=guard_codes,
            guard_args=draw(n_slots, 2 * n_guards).reshape(-1, 2),
            guard_expected=rng.integers(0, 2, n_guards) if rng.random() < 0.95
            else rng.integers(0, 256, n_guards))
        yield f"random tape {k}", data, "any"


# ---- the corpus runner -------------------------------------------------------------------

def write_corpus(path, entries):
    with open(path, "wb") as out:
        for label, data, _ in entries:
            raw = label.encode("utf-8", "replace")
            out.write(struct.pack("<LQ", len(raw), len(data)))
            out.write(raw)
            out.write(data)


def read_corpus(path):
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            n_label, n_data = struct.unpack("<LQ", head)
            yield f.read(n_label).decode("utf-8"), f.read(n_data)


def run_corpus(entries, workdir, workers=2, timeout=300):
    """Load every ``(label, bytes, expect)`` entry with ``wg.load`` in
    ``workers`` subprocesses. Returns ``(problems, outcomes)``: a list of
    messages (empty when every file was either rejected with TapeFormatError
    or loaded and replayed, as expected) and ``{label: outcome}``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    entries = [(f"[{k}] {label}", data, expect) for k, (label, data, expect) in enumerate(entries)]
    expected = {label: expect for label, _, expect in entries}
    chunks = [entries[k::workers] for k in range(workers)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(wg.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    procs = []
    for k, chunk in enumerate(chunks):
        if not chunk:
            continue
        corpus = workdir / f"corpus{k}.bin"
        write_corpus(corpus, chunk)
        scratch = workdir / f"scratch{k}"
        scratch.mkdir(exist_ok=True)
        procs.append((k, subprocess.Popen(
            [sys.executable, __file__, str(corpus), str(scratch)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    problems, outcomes = [], {}
    for k, proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            problems.append(f"worker {k} hung (over {timeout} s)")
        started = None
        for line in out.decode("utf-8", "replace").splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "BEGIN":
                started = rest
            elif tag in ("LOADED", "REJECTED", "FAIL"):
                label, _, detail = rest.partition("\t")
                outcomes[label] = tag
                started = None
                if tag == "FAIL":
                    problems.append(f"{label}: {detail}")
                elif tag == "LOADED" and expected.get(label) == "reject":
                    problems.append(f"{label}: loaded, but it should have been rejected")
        if proc.returncode != 0:
            problems.append(f"worker {k} exited with status {proc.returncode}"
                            + (f" while loading {started!r}" if started else "")
                            + f"; stderr: {err.decode('utf-8', 'replace')[-2000:]}")
        elif err.strip():
            problems.append(f"worker {k} wrote to stderr: {err.decode('utf-8', 'replace')[-2000:]}")
    missing = [label for label in expected if label not in outcomes]
    if missing and not problems:
        problems.append(f"{len(missing)} files were never loaded, e.g. {missing[0]!r}")
    return problems, outcomes


def exercise(tape):
    """Replay a loaded tape every way at an arbitrary point; a guard that
    flips there is fine. Then save and load it again."""
    from wengert import _io
    if tape.n_inputs <= 10**4 and tape.n_ops <= 10**6 and tape.n_outputs <= 10**4:
        for fill in (0.75, np.nan):
            x = np.full(tape.in_shape, fill)
            try:
                tape.forward(x)
                tape.forward(np.stack([x, -x]))
                tape.jvp(x, np.ones(tape.in_shape))
                tape.vjp(x, np.ones(tape.out_shape))
                if tape.out_shape == ():
                    tape.gradient(x)
                if tape.n_inputs * tape.n_outputs <= 10**4:
                    tape.jacobian(x, mode="forward")
                    tape.jacobian(x, mode="reverse")
            except wg.BranchChangedError:
                pass
    again = _io._load_bytes(tape_bytes(tape))
    assert again.n_ops == tape.n_ops and again.in_shape == tape.in_shape


def _worker(corpus, scratch):
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
    except (ImportError, ValueError, OSError):
        pass                                    # no address space limit here
    target = os.path.join(scratch, "tape.wgt")
    out = sys.stdout
    for label, data in read_corpus(corpus):
        out.write(f"BEGIN {label}\n")
        out.flush()
        with open(target, "wb") as f:
            f.write(data)
        try:
            tape = wg.load(target)
        except wg.TapeFormatError:
            out.write(f"REJECTED {label}\n")
            continue
        except BaseException as exc:            # anything else breaks the contract
            out.write(f"FAIL {label}\twg.load raised {type(exc).__name__}: {str(exc)[:300]}\n")
            continue
        try:
            exercise(tape)
        except BaseException as exc:
            out.write(f"FAIL {label}\tloaded, then replaying raised {type(exc).__name__}: "
                      f"{str(exc)[:300]}\n")
            continue
        out.write(f"LOADED {label}\n")
    out.flush()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
