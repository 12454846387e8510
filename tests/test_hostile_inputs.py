"""Every public call on randomly malformed inputs, in subprocesses: no crash,
no hang, and no exception that is not the library's own.

The contract: no input of any kind crashes the interpreter, and every
exception a user can provoke through a public call derives from
``wg.WengertError`` (``FileNotFoundError`` from ``wg.load``/``tape.save`` of
a missing path is the one exception; ``tape.save`` may also raise a plain
``OSError`` for a path it cannot write, which is noted, not failed). A
user's own exception raised by the user's own object (a hostile
``__array__``, ``__eq__``...) may pass through, and so may the error Python
itself raises in the user's recorded function for an operation a traced
value does not define (``sorted(x)`` of a scalar, ``x << 1``): the same
``TypeError`` a NumPy float would give there.

The cases (``tests/_hostile.py`` holds the catalogue and the worker):

* a sweep: every argument of every public tape method on the survey tape
  with every value of the catalogue (None, strings, bytes, bools, complex
  numbers and arrays, NaN/inf, huge and negative ints, ragged lists, object
  and masked arrays, 0-d/empty/wrong-shape arrays, float32/int/bool/datetime
  arrays, non-contiguous, read-only and unaligned arrays, dicts, generators,
  callables, traced values escaped from an earlier recording...), the other
  tapes (vector output, dynamic parameter, guard, scalar input, no input,
  static arguments, matrix input) with the core values; ``wg.record`` with
  bad functions, points and extra arguments; operations and ``wg.*``
  functions on traced values with a hostile operand; the ``wg.*``
  transforms; ``wg.Tape(...)`` from hostile arrays, and changing the arrays
  after construction; pickles with a tampered state; ``wg.load`` and
  ``tape.save`` with bad paths;
* hypothesis (derandomised) draws combinations: several hostile arguments
  at once, parametric arrays (dtype x shape x fill x layout), several
  constructor fields at once. ``WENGERT_HOSTILE_CASES`` sets how many
  (default 300) for a soak run.

Each case runs in a worker subprocess under a 2 GB address-space limit (set
by the worker itself: ``preexec_fn`` is unsafe with the threads that drive
the workers in parallel), many
cases per process; a process that dies is restarted after the case that
killed it, and that case is run again alone to confirm. Every accepted
hostile tape is then replayed every way. Besides exceptions, the tests
check: no warning or stderr output (``RecordingWarning`` is documented),
arguments never modified, values that are not real numbers refused rather
than silently converted, and a tape unaffected by changes to the arrays it
was constructed from.

``WENGERT_HOSTILE_REPORT=path.json`` writes every finding to a file.
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import wengert as wg

import _hostile as H

# The whole sweep: thousands of cases in worker subprocesses (~10-20 s).
pytestmark = pytest.mark.slow

N_RANDOM = int(os.environ.get("WENGERT_HOSTILE_CASES", "300"))
# "full" crosses every tape with every value (about 30000 cases, a few minutes).
FULL_SWEEP = os.environ.get("WENGERT_HOSTILE_SWEEP", "") == "full"
WORKERS = max(1, min(4, os.cpu_count() or 1))
ADDRESS_LIMIT = 2 * 2**30
CHUNK_TIMEOUT = 900
MAX_CRASHES_PER_CHUNK = 300
MAX_CONFIRMATIONS = 60
PACKAGE_ROOT = Path(wg.__file__).resolve().parent.parent

VALID_MODES = {
    "mode": {"'reverse'", "np.str_ 'reverse'", "np.str_ 'auto'", "array('auto') 0-d",
             "str subclass"},
    "method": {"'star'", "'distance2'"},
}
# trace(mode=) takes "forward" | "reverse" only.
TRACE_MODES = {"'reverse'", "np.str_ 'reverse'"}

# Points for the tapes other than the survey tape (which gets every value).
SHAPE_VALUES = [
    "None", "str '2.5'", "True", "complex 2+1j", "nan", "10**30", "0-d array 2.0", "empty (0,)",
    "empty (0, 2)", "ones (3,)", "ones (2, 2)", "ones (3, 2)", "ones (2, 3)", "ones (1,)*64",
    "strided [2, 5]", "unaligned [2, 5]", "read-only [2, 5]", "broadcast [2, 5] to (4, 2)",
    "[nan, nan] array", "int64 array", "float32 array", "complex array", "masked array",
    "object array of junk", "[[2.0, 5.0], [1.0]] (ragged)", "escaped traced array",
    "escaped traced scalar", "list of 2 escaped traced scalars", "[]", "dict", "generator",
]

# wg.Tape(...) changes that make an invalid tape: the constructor must refuse them.
INVALID_CTOR = {
    ("opcodes", n) for n in ["code 255 first", "one fewer than operand rows",
                             "one more than operand rows", "int64 with -1", "int64 with 256",
                             "empty", "float", "object"]
} | {
    ("args", n) for n in ["operand 10**6", "operand 2**31-1", "operand -1", "operand -2**31",
                          "operand refers to itself", "operand refers forward",
                          "second operand 10**6 everywhere", "second operand -1 everywhere",
                          "shape (n, 3)", "int64 with 2**40", "uint32 with 2**32-1",
                          "float", "empty (0, 2)", "one row fewer",
                          "select's side-table index 10**6"]
} | {
    ("consts", n) for n in ["complex", "str"]
} | {
    ("aux", n) for n in ["entry 10**6", "entry -1", "entry refers forward", "empty", "odd length",
                         "float"]
} | {
    ("outputs", n) for n in ["slot 10**6", "slot -1", "slot 2**31-1", "empty", "float",
                             "one more"]
} | {
    ("in_shape", n) for n in ["(-1,)", "(2**31,)", "(2**16, 2**16)", "(2.0,)", "(True, True)",
                              "((2,),)", "str '2'", "None", "(1,)*65", "(10**30,)"]
} | {
    ("out_shape", n) for n in ["(-1,)", "(2**31,)", "(2,)", "(0,)", "str", "None", "(1.0,)",
                               "(1,)*65"]
} | {
    ("guards", n) for n in ["code 255", "code of an arithmetic operation", "code 0",
                            "operand 10**6", "operand -1", "constant index 10**6",
                            "operand 2**70", "outcome 2",
                            "outcome None", "3 fields", "str", "list of None", "dict",
                            "vv code with operand 10**6"]
} | {
    ("n_params", n) for n in ["-1", "2**31", "2**40", "10**9", "1.5", "str '1'", "True",
                              "np.int64(-1)", "nan"]
} | {
    ("param_specs", n) for n in ["str", "int", "unknown kind", "empty tuple entry",
                                 "param at the wrong slot", "param shape mismatch",
                                 "param complex values", "param object values",
                                 "param str values", "param negative shape", "param huge shape",
                                 "param slot 10**30", "param 3 fields", "static with 3 fields",
                                 "two params", "param with escaped traced value"]
}
# Aux changes only matter on a tape with selects; the no-input tape has no
# operations for the changes to break.
AUX_TAPES = {"rich"}
CHECKED_TAPES = {"rich", "survey", "vector", "param", "matrix"}


# ---- generating the cases ------------------------------------------------------------------------

def _tape_case(tape, method, args=None, extras=(), kwargs=None):
    positional = H.METHODS[method][0]
    return {"area": "tape", "tape": tape, "method": method,
            "args": list(args) if args is not None else [H.GOOD] * len(positional),
            "extras": list(extras), "kwargs": dict(kwargs or {})}


def _with_slot(tape, method, slot, value):
    positional, has_extras, keywords = H.METHODS[method]
    args = [H.GOOD] * len(positional)
    if slot in positional:
        args[positional.index(slot)] = value
        case = _tape_case(tape, method, args)
        if (slot == "x" and value in H.SAME_POINT and H.TAPES[tape][1] == [2.0, 5.0]
                and method not in ("save", "colouring.recover")):
            case["same_point"] = True
        return case
    if slot == "extra0":
        return _tape_case(tape, method, args, extras=[value])
    if slot == "extra1":
        return _tape_case(tape, method, args, extras=[H.GOOD, value])
    return _tape_case(tape, method, args, kwargs={slot: value})


def _slots(tape, method):
    positional, has_extras, keywords = H.METHODS[method]
    slots = list(positional) + list(keywords)
    if has_extras:
        slots.append("extra0")
        if len(H.TAPES[tape][2]) > 1:
            slots.append("extra1")
    return slots


def systematic_cases(full=FULL_SWEEP):
    cases = []
    everything = H.VALUE_NAMES
    core = H.CORE_VALUES + list(H.MODE_VALUES)
    # Every argument of every method of the survey tape, with every value.
    for method in H.METHODS:
        for slot in _slots("survey", method):
            values = core if slot == "extra0" else everything
            cases += [_with_slot("survey", method, slot, v) for v in values]
    # The other tapes: points of every shape, the core values elsewhere.
    for tape in H.TAPES:
        if tape == "survey":
            continue
        for method in H.METHODS:
            if method in ("save", "__call__", "value_and_gradient"):
                continue
            for slot in _slots(tape, method):
                if full or (tape == "param" and slot == "extra0"
                            and method in ("forward", "gradient")):
                    values = everything
                elif slot == "x":
                    values = SHAPE_VALUES
                elif slot in ("mode", "method"):
                    values = list(H.MODE_VALUES) + ["None", "__eq__ gives an array", "str array"]
                else:
                    values = H.CORE_VALUES
                cases += [_with_slot(tape, method, slot, v) for v in values]
    # wg.record with hostile functions, points and extra arguments.
    for f in H.BAD_F:
        for x in H.X_FOR_F:
            cases.append({"area": "record", "f": f, "x": x})
    for v in everything:
        cases.append({"area": "record-x", "f": "lambda x: np.sum(x ** 2)", "x": v})
        cases.append({"area": "record-x", "f": "lambda x, a: np.sum(x * a)", "x": H.GOOD,
                      "extras": [v]})
        # v static: the tape is saved, loaded, pickled and listed with it.
        cases.append({"area": "record-x", "f": "lambda x, a: np.sum(x)", "x": H.GOOD,
                      "extras": [v], "exercise": "full"})
    for op in H.OPS_WITH_H:
        cases += [{"area": "traced-op", "f": op, "h": v} for v in H.CORE_VALUES]
    for op in H.WG_WITH_H:
        cases += [{"area": "wg-func", "f": op, "h": v} for v in H.CORE_VALUES]
    for expr in H.WG_PLAIN:
        cases += [{"area": "wg-plain", "expr": expr, "h": v} for v in H.CORE_VALUES]
    cases += [{"area": "escaped", "expr": expr} for expr in H.ESCAPED]
    # The transforms.
    for name, (operands, _) in H.TRANSFORMS.items():
        for i, slot in enumerate(["x"] + operands):
            for v in core:
                for warm in (False, True):
                    args = [H.GOOD] * (1 + len(operands))
                    args[i] = v
                    cases.append({"area": "transform", "transform": name, "args": args,
                                  "warm": warm})
        cases += [{"area": "transform", "transform": name, "f": v,
                   "args": [H.GOOD] * (1 + len(operands))} for v in H.CORE_VALUES]
    cases += [{"area": "transform", "transform": "jacobian", "args": [H.GOOD],
               "make_kwargs": {"mode": v}} for v in everything]
    for name in ("grad", "jvp", "hessian"):
        operands = H.TRANSFORMS[name][0]
        cases += [{"area": "transform", "transform": name, "args": [H.GOOD] * (1 + len(operands)),
                   "extras": [v], "warm": True} for v in everything]
    # wg.Tape(...) and pickles.
    for tape in (("rich", "survey", "vector", "zero-in", "param", "matrix") if full else
                 ("rich", "vector", "zero-in")):
        for field, mutations in H.FIELD_MUTATIONS.items():
            for m in mutations:
                cases.append({"area": "ctor", "tape": tape, "changes": [[field, ["mut", m]]]})
    for field in H.CTOR_FIELDS:
        cases += [{"area": "ctor", "tape": "rich", "changes": [[field, v]]} for v in H.CORE_VALUES]
    for code in range(256):
        for where in ("first", "last", "select") if full else ("first", "select"):
            cases.append({"area": "ctor", "tape": "rich", "exercise": "light",
                          "changes": [["opcodes", ["code", code, where]]]})
    for field, mutations in H.FIELD_MUTATIONS.items():
        for m in mutations:
            cases.append({"area": "pickle", "tape": "rich", "changes": [[field, ["mut", m]]]})
    for key in ["opcodes", "args", "consts", "aux", "outputs", "in_shape", "out_shape",
                "n_params", "param_specs", "guards"]:
        cases.append({"area": "pickle", "tape": "rich", "changes": [], "tamper": ["del", key]})
    cases += [{"area": "pickle", "tape": "rich", "changes": [], "tamper": ["add", "bogus", v]}
              for v in ("None", "0")]
    cases += [{"area": "pickle", "tape": "rich", "changes": [], "tamper": ["state", v]}
              for v in H.CORE_VALUES + ["dict subclass"]]
    for tape in ("rich", "param", "survey", "guard", "vector"):
        cases += [{"area": "ctor-after", "tape": tape, "mutation": m} for m in H.AFTER_MUTATIONS]
    # Files.
    cases += [{"area": "load", "path": p} for p in H.PATH_NAMES]
    cases += [{"area": "save", "tape": "survey", "path": p} for p in H.PATH_NAMES]
    return cases


# -- hypothesis: combinations ------------------------------------------------------------------

arrays = st.builds(lambda d, s, f, l: ["arr", d, s, f, l], st.sampled_from(H.DTYPES),
                   st.sampled_from(H.SHAPES), st.sampled_from(H.FILLS),
                   st.sampled_from(H.LAYOUTS))
values = st.one_of(st.sampled_from(H.VALUE_NAMES), arrays)
maybe_hostile = st.one_of(st.just(H.GOOD), values)


@st.composite
def tape_cases(draw):
    tape = draw(st.sampled_from(list(H.TAPES)))
    method = draw(st.sampled_from([m for m in H.METHODS if m != "save"]))
    positional, has_extras, keywords = H.METHODS[method]
    args = [draw(maybe_hostile) for _ in positional]
    kwargs = {k: v for k in keywords if (v := draw(maybe_hostile)) != H.GOOD}
    extras = draw(st.lists(maybe_hostile, max_size=2)) if has_extras else []
    return _tape_case(tape, method, args, extras, kwargs)


@st.composite
def ctor_cases(draw):
    tape = draw(st.sampled_from(["rich", "survey", "vector", "zero-in", "param", "matrix"]))
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(H.CTOR_FIELDS))
        spec = draw(st.one_of(st.builds(lambda m: ["mut", m],
                                        st.sampled_from(list(H.FIELD_MUTATIONS[field]))),
                              st.sampled_from(H.CORE_VALUES), arrays))
        changes.append([field, spec])
    return {"area": draw(st.sampled_from(["ctor", "pickle"])), "tape": tape, "changes": changes}


@st.composite
def record_cases(draw):
    area, ops = draw(st.sampled_from([("traced-op", H.OPS_WITH_H), ("wg-func", H.WG_WITH_H)]))
    return {"area": area, "f": draw(st.sampled_from(ops)), "h": draw(values),
            "x": draw(st.sampled_from(list(H.X_FOR_F)))}


@st.composite
def transform_cases(draw):
    name = draw(st.sampled_from(list(H.TRANSFORMS)))
    operands = H.TRANSFORMS[name][0]
    case = {"area": "transform", "transform": name,
            "args": [draw(maybe_hostile) for _ in range(1 + len(operands))],
            "warm": draw(st.booleans())}
    if draw(st.booleans()):
        case["extras"] = [draw(values)]
    return case


any_case = st.one_of(tape_cases(), tape_cases(), ctor_cases(), record_cases(), transform_cases(),
                     st.builds(lambda v: {"area": "record-x", "f": "lambda x, a: np.sum(x * a)",
                                          "x": H.GOOD, "extras": [v]}, values),
                     st.builds(lambda v: {"area": "record-x", "f": "lambda x: np.sum(x ** 2)",
                                          "x": v}, values))


def random_cases(n):
    drawn = []
    if n <= 0:
        return drawn

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(any_case)
    def collect(case):
        drawn.append(case)

    collect()
    return drawn


def all_cases():
    cases, seen = [], set()
    for case in systematic_cases() + random_cases(N_RANDOM):
        key = json.dumps(case, sort_keys=True)
        if key not in seen:
            seen.add(key)
            cases.append(dict(case, id=len(cases)))
    return cases


# ---- running them ------------------------------------------------------------------------------

def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONIOENCODING="utf-8", PYTHONFAULTHANDLER="1",
               WENGERT_HOSTILE_ADDRESS_LIMIT=str(ADDRESS_LIMIT))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_ROOT), str(Path(__file__).parent)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYTHONWARNINGS", None)
    return env


def _split_stderr(text):
    """{(case id, step): text written while that step ran}."""
    parts = collections.defaultdict(str)
    key = (None, None)
    for line in text.splitlines(keepends=True):
        if line.startswith(H.MARK + " S "):
            _, _, cid, step = line.rstrip("\n").split(" ", 3)
            key = (int(cid), json.loads(step))
        else:
            parts[key] += line
    return parts


def run_batch(cases, scratch):
    """Run ``cases`` in one worker process. Returns (records, died): records
    are {"id", "step", "result"} dicts; died is None or a dict describing
    how the process ended in the middle of (id, step)."""
    scratch.mkdir(parents=True, exist_ok=True)
    batch = scratch / "cases.json"
    batch.write_text(json.dumps(cases))
    try:
        done = subprocess.run([sys.executable, H.__file__, str(batch), str(scratch)],
                              capture_output=True, timeout=CHUNK_TIMEOUT, env=_env(),
                              cwd=scratch, check=False)
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out, err, code = exc.stdout or b"", exc.stderr or b"", "timeout"
    out = out.decode("utf-8", "replace")
    err = err.decode("utf-8", "replace")
    stderr_by_step = _split_stderr(err)
    records, started, finished = [], None, False
    for line in out.splitlines():
        if not line.startswith(H.MARK + " "):
            if started is not None and line.strip():
                records.append({"id": started[0], "step": started[1],
                                "result": {"status": "stdout", "message": line[:300]}})
            continue
        body = line[len(H.MARK) + 1:]
        if body == "DONE":
            finished = True
            continue
        kind, cid, rest = body.split(" ", 2)
        if kind == "S":
            started = (int(cid), json.loads(rest))
        else:
            decoder = json.JSONDecoder()
            step, end = decoder.raw_decode(rest)
            result = json.loads(rest[end:])
            records.append({"id": int(cid), "step": step, "result": result})
            started = None
    for (cid, step), text in stderr_by_step.items():
        if cid is not None and text.strip() and not (started and (cid, step) == started):
            records.append({"id": cid, "step": step,
                            "result": {"status": "stderr", "message": text[-600:]}})
    died = None
    if not (finished and code == 0):
        where = started
        tail = stderr_by_step.get(where, "") if where else err[-1500:]
        hang = code == -signal.SIGALRM or code == "timeout"
        died = {"id": where[0] if where else None, "step": where[1] if where else None,
                "code": code, "hang": hang, "stderr": tail[-1500:]}
    return records, died


def run_chunk(cases, scratch):
    """All of ``cases`` in as many worker processes as crashes need."""
    records, deaths = [], []
    pending = list(cases)
    attempt = 0
    while pending:
        got, died = run_batch(pending, scratch / f"run{attempt}")
        attempt += 1
        records += got
        if died is None:
            break
        deaths.append(died)
        if died["id"] is None or len(deaths) >= MAX_CRASHES_PER_CHUNK:
            deaths[-1]["abandoned"] = len(pending)
            break
        ids = [c["id"] for c in pending]
        pending = pending[ids.index(died["id"]) + 1:]
    return records, deaths


def run_all(cases, scratch):
    chunks = [cases[k::WORKERS] for k in range(WORKERS)]
    results = [None] * WORKERS

    def go(k):
        results[k] = run_chunk(chunks[k], scratch / f"worker{k}")

    threads = [threading.Thread(target=go, args=(k,)) for k in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records, deaths = [], []
    for got, died in results:
        records += got
        deaths += died
    by_id = {c["id"]: c for c in cases}
    # Run every crasher again alone: does it crash without the cases before it?
    for n, death in enumerate(d for d in deaths if d["id"] is not None):
        if n >= MAX_CONFIRMATIONS or death["hang"]:
            death["alone"] = "not run again alone"
            continue
        _, again = run_batch([by_id[death["id"]]], scratch / f"alone{death['id']}")
        death["alone"] = "crashes alone too" if again else "does not crash alone"
    return records, deaths


# ---- judging the results ---------------------------------------------------------------------------

def case_text(case):
    """The call a case makes, as a readable line."""
    d = H.describe
    area = case["area"]
    if area == "tape":
        positional, _, _ = H.METHODS[case["method"]]
        parts = [f"{slot}={d(v)}" for slot, v in zip(positional, case["args"]) if v != H.GOOD]
        parts += [f"extra{i}={d(v)}" for i, v in enumerate(case["extras"]) if v != H.GOOD]
        parts += [f"{k}={d(v)}" for k, v in case["kwargs"].items()]
        method = "recover" if case["method"] == "colouring.recover" else case["method"]
        prefix = (f"{case['tape']}-tape.jacobian_colouring()" if method == "recover"
                  else f"{case['tape']}-tape")
        return f"{prefix}.{method}({', '.join(parts) or 'good arguments'})"
    if area in ("record", "traced-op", "wg-func"):
        h = f" with h={d(case['h'])}" if "h" in case else ""
        return f"wg.record({case['f']}, x={case.get('x', '[2, 5]')}){h}"
    if area == "record-x":
        extras = "".join(f", {d(e)}" for e in case.get("extras", []))
        return f"wg.record({case['f']}, x={d(case['x'])}{extras})"
    if area == "transform":
        make = ", ".join(f"{k}={d(v)}" for k, v in case.get("make_kwargs", {}).items())
        f = d(case["f"]) if "f" in case else "f"
        args = ", ".join(d(a) for a in case["args"] + case.get("extras", []))
        warm = " (after a good call)" if case.get("warm") else ""
        return f"wg.{case['transform']}({f}{', ' + make if make else ''})({args}){warm}"
    if area in ("ctor", "pickle"):
        changes = ", ".join(
            f"{field}={d(spec) if spec[0] != 'code' else f'<opcode {spec[1]} at the {spec[2]} op>'}"
            if isinstance(spec, list) else f"{field}={d(spec)}" for field, spec in case["changes"])
        if area == "ctor":
            return f"wg.Tape(**{case['tape']}-state with {changes})"
        tamper = case.get("tamper")
        what = changes or (" ".join(map(str, tamper)) if tamper else "")
        return f"pickle.loads(forged {case['tape']}-tape pickle: {what})"
    if area == "ctor-after":
        return f"t = wg.Tape(**{case['tape']}-state); then {case['mutation']}"
    if area == "load":
        return f"wg.load(<{case['path']}>)"
    if area == "save":
        return f"tape.save(<{case['path']}>)"
    if area in ("wg-plain", "escaped"):
        return case["expr"] + (f" with h={d(case['h'])}" if "h" in case else "")
    return json.dumps(case)


def _line_calling_f():
    """``recording.py:LINE trace``: where the recorder calls the user's f. An
    exception whose innermost frame is that line came from f itself (a
    builtin such as ``list`` passed as f has no frame of its own)."""
    import inspect

    from wengert import recording
    lines, first = inspect.getsourcelines(recording.trace)
    for offset, line in enumerate(lines):
        if "f(traced_x" in line:
            return f"recording.py:{first + offset} trace"
    raise AssertionError("recording.trace no longer calls f(traced_x, ...)")


_CALL_OF_F = _line_calling_f()


def _acceptable(case, step, result):
    """None if the exception is fine, "noted" if fine but worth a note, else
    the reason it breaks the contract."""
    if result["wengert"]:
        return None
    name = result["type"]
    if name == "Boom":
        return None                     # the user's own object raised
    if result.get("raised_in") == "user" or result.get("library_frame") == _CALL_OF_F:
        # Raised inside the user's function without passing through the
        # library: Python refusing an operation (`x % 2` on a traced scalar,
        # `len` of a scalar, the TypeError a float64 would give) or a call
        # the user made with bad arguments. It passes through unchanged.
        return None
    area = case["area"]
    saving = step == "tape.save" or (area == "tape" and case["method"] == "save")
    if name == "FileNotFoundError" and (step == "wg.load" or saving):
        return None
    if saving and "OSError" in result["mro"]:
        return "noted"
    return "not a wg.WengertError"


def _refusal_required(case):
    """Why this case must raise (a value that is not a real number, an
    invalid tape), or None."""
    area = case["area"]
    if area == "tape":
        tape, method = case["tape"], case["method"]
        positional, _, _ = H.METHODS[method]
        no_params = not H.TAPES[tape][2]
        for slot, spec in list(zip(positional, case["args"])) + list(case["kwargs"].items()):
            if spec == H.GOOD:
                continue
            if slot in ("mode", "method"):
                ok = TRACE_MODES if method == "trace" else VALID_MODES[slot]
                if spec not in ok:
                    return f"{slot}={H.describe(spec)} is not a valid {slot}"
            elif slot in ("x", "v", "w", "direction", "compressed") and _not_a_number(spec, tape):
                if spec == "None" and (slot == "direction" or (slot == "x" and method == "listing")
                                       or (slot == "w" and method != "vjp")):
                    continue                # None is the default there
                return f"{slot}={H.describe(spec)} is not real numbers"
        for i, spec in enumerate(case["extras"]):
            if spec == H.GOOD:
                continue
            if no_params:
                return "an extra argument for a tape recorded without extra arguments"
            if tape in ("param", "rich") and i == 0 and _not_a_number(spec, tape):
                return f"dynamic parameter {H.describe(spec)} is not real numbers"
        return None
    if area == "record-x" and _not_a_number(case["x"]):
        return f"x={H.describe(case['x'])} is not real numbers"
    if area == "transform":
        for spec in case["args"]:
            if spec != H.GOOD and _not_a_number(spec):
                return f"argument {H.describe(spec)} is not real numbers"
        mode = case.get("make_kwargs", {}).get("mode")
        if mode is not None and mode not in VALID_MODES["mode"]:
            return f"mode={H.describe(mode)} is not a valid mode"
        return None
    if area in ("ctor", "pickle") and case["tape"] in CHECKED_TAPES:
        final = dict((field, spec) for field, spec in case["changes"])     # the last one wins
        for field, spec in final.items():
            if (isinstance(spec, list) and spec[0] == "mut" and (field, spec[1]) in INVALID_CTOR
                    and (case["tape"] in AUX_TAPES or not (
                        field == "aux" or spec[1] == "select's side-table index 10**6"))):
                return f"{field}: {spec[1]} makes an invalid tape"
        return None
    return None


def _not_a_number(spec, tape=None):
    if isinstance(spec, list):
        # An empty object array holds no junk.
        empty = spec[1] == "object-junk" and (
            spec[2] in ("(0,)", "(0, 2)", "in+(0,)", "(0,)+in") or
            (tape in ("zero-in", "zero-in-scalar-out") and "in" in spec[2]) or
            (tape == "zero-in" and "out" in spec[2]))
        return spec[0] == "arr" and H.array_refused(spec) and not empty
    return spec in H.REFUSED


def _normal(message):
    message = re.sub(r"'[^']{0,80}'", "'…'", message)
    message = re.sub(r"<[^<>]{0,80}>", "<…>", message)
    message = re.sub(r"\(\d[\d, ]*\)", "(…)", message)
    message = re.sub(r"\d+", "#", message)
    return message[:90]


class Findings:
    def __init__(self, cases):
        self.by_id = {c["id"]: c for c in cases}
        self.items = collections.defaultdict(list)     # kind -> [finding]
        self.harness = []

    def add(self, kind, case, step, detail, group):
        self.items[kind].append({"call": case_text(case), "step": step, "detail": detail,
                                 "group": group, "area": case["area"], "id": case["id"]})

    def grouped(self, kind):
        groups = collections.OrderedDict()
        for item in self.items.get(kind, []):
            groups.setdefault(item["group"], []).append(item)
        lines = []
        for members in groups.values():
            best = min(members, key=lambda m: (len(m["call"]), m["id"]))
            more = f"  [{len(members)} cases]" if len(members) > 1 else ""
            step = "" if best["step"] in ("call", "record", "evaluate") else f" [{best['step']}]"
            lines.append(f"{best['call']}{step}\n      -> {best['detail']}{more}")
        return lines


def judge(cases, records, deaths):
    found = Findings(cases)
    by_id = found.by_id
    raised_somewhere = set()
    main_ok = collections.defaultdict(list)
    for rec in records:
        case, step, result = by_id[rec["id"]], rec["step"], rec["result"]
        status = result["status"]
        follow = isinstance(step, str) and step.startswith("then ")
        where = _group_where(case, step)
        if status == "harness":
            found.harness.append(f"{case_text(case)}: {result['message']}")
            continue
        if status == "raised":
            if not follow:
                raised_somewhere.add(case["id"])
            verdict = _acceptable(case, step, result)
            if verdict == "noted":
                found.add("noted", case, step, f"{result['type']}: {result['message'][:160]}",
                          (where, result["type"], _normal(result["message"])))
            elif verdict:
                at = result["where"][-1] if result["where"] else "?"
                lib = result.get("library_frame")
                via = f"; last library frame {lib}" if lib and lib != at else ""
                # One library line raising one type is one bug, whatever the value.
                # (An exception raised in the user's code only passed through
                # the library's call of it: group those by message.)
                group = ((_family(case), result["type"], lib)
                         if lib and result.get("raised_in") != "user" else
                         (_family(case), result["type"], _normal(result["message"])))
                found.add("exception", case, step,
                          f"{result['type']}: {result['message'][:200]}   (raised at {at}{via})",
                          group)
        elif status == "changed":
            found.add("changed", case, step, result["message"], (case["mutation"],))
        elif status == "wrong":
            found.add("wrong", case, step, f"a different result: {result['message']}",
                      (case["method"], case["args"][0]))
        elif status in ("stderr", "stdout"):
            found.add("output", case, step, f"{status}: {result['message'][-300:]}",
                      (where, status, _normal(result["message"][-120:])))
        elif status == "ok" and not follow:
            main_ok[case["id"]].append(step)
        for w in result.get("warnings", []):
            # wg.* on plain values are NumPy's, floating-point warnings included.
            numpy_fp = case["area"] == "wg-plain" and w["category"] == "RuntimeWarning"
            if not w["documented"] and not numpy_fp:
                found.add("warning", case, step,
                          f"{w['category']}: {w['message'][:200]} (at {w['where']})",
                          (w["category"], w["where"], _normal(w["message"])))
        for u in result.get("unraisable", []):
            found.add("output", case, step, f"unraisable exception: {u[:200]}",
                      (where, "unraisable", _normal(u)))
        for arg in result.get("changed_arguments", []):
            found.add("argument changed", case, step, f"{arg} was modified in place",
                      (where, arg))
    for death in deaths:
        if death["id"] is None:
            found.harness.append(f"a worker died outside any case: {death}")
            continue
        case = by_id[death["id"]]
        raised_somewhere.add(case["id"])
        code = death["code"]
        what = ("hang (over the step timeout)" if death["hang"] else
                f"crash: {_signal_name(code)}")
        text = _crash_summary(death["stderr"])
        found.add("crash", case, death["step"], f"{what}; {death.get('alone', '')}; {text}",
                  (_group_where(case, death["step"]), what, _normal(text)))
        if death.get("abandoned"):
            found.harness.append(f"stopped after {MAX_CRASHES_PER_CHUNK} crashes; "
                                 f"{death['abandoned']} cases left unrun")
    for cid, steps in main_ok.items():
        if cid in raised_somewhere:
            continue
        case = by_id[cid]
        why = _refusal_required(case)
        if why:
            found.add("accepted", case, steps[-1], f"accepted without an exception: {why}",
                      (_family(case), why.split(" ")[0].split("=")[0], _normal(why)))
    return found


def _family(case):
    area = case["area"]
    return {"record-x": "record", "traced-op": "record", "wg-func": "record",
            "pickle": "ctor", "ctor-after": "ctor"}.get(area, area)


def _group_where(case, step):
    """What findings are grouped by besides the exception: the call without
    the hostile value."""
    area = case["area"]
    if area == "tape":
        positional, _, _ = H.METHODS[case["method"]]
        slots = [s for s, v in zip(positional, case["args"]) if v != H.GOOD]
        slots += [f"extra{i}" for i, v in enumerate(case["extras"]) if v != H.GOOD]
        slots += list(case["kwargs"])
        return ("tape", case["method"], tuple(slots), step)
    if area in ("record", "traced-op", "wg-func"):
        return (area, case["f"] if area != "record" else "bad f", step)
    if area == "record-x":
        return (area, case["f"], "extras" if case.get("extras") else "x", step)
    if area == "transform":
        return (area, case["transform"], tuple(i for i, a in enumerate(case["args"]) if a != H.GOOD),
                "f" in case, bool(case.get("extras")), bool(case.get("make_kwargs")), step)
    if area in ("ctor", "pickle"):
        return (area, tuple(f for f, _ in case["changes"]), step)
    if area in ("wg-plain",):
        return (area, case["expr"].split("(")[0], step)
    return (area, step)


def _signal_name(code):
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _crash_summary(stderr):
    """The fatal error line and the innermost frames in wengert (the
    dump lists the innermost frame first)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("Fatal Python error", "Timeout"))]
    frames = [ln for ln in lines if ln.startswith("File ")]
    ours = [ln for ln in frames if "wengert" in ln and "_hostile.py" not in ln][:2]
    shown = fatal[:1] + frames[:1] + [f for f in ours if f not in frames[:1]]
    return " | ".join(shown or lines[-2:])[:500]


# ---- the tests ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    cases = all_cases()
    records, deaths = run_all(cases, tmp_path_factory.mktemp("hostile"))
    found = judge(cases, records, deaths)
    report = os.environ.get("WENGERT_HOSTILE_REPORT")
    if report:
        Path(report).write_text(json.dumps(
            {"cases": len(cases), "harness": found.harness,
             "findings": {kind: found.grouped(kind) for kind in found.items}}, indent=1))
    return cases, found


def _fail_with(found, kind, title):
    lines = found.grouped(kind)
    if lines:
        pytest.fail(f"{title}: {len(lines)} distinct findings "
                    f"({len(found.items[kind])} cases)\n" + "\n".join(
                        f"  {n + 1}. {line}" for n, line in enumerate(lines)), pytrace=False)


def test_the_harness_ran_every_case(outcome):
    cases, found = outcome
    assert len(cases) > 1000
    assert not found.harness, "\n".join(found.harness[:50])


def test_no_crash_and_no_hang(outcome):
    _fail_with(outcome[1], "crash", "calls that crashed or hung the interpreter")


def test_every_exception_is_a_wengert_error(outcome):
    _fail_with(outcome[1], "exception", "calls that raised an exception that is not a "
               "wg.WengertError")


def test_values_that_are_not_numbers_are_refused(outcome):
    _fail_with(outcome[1], "accepted", "calls that accepted a value they must refuse")


def test_no_warnings_and_no_output(outcome):
    found = outcome[1]
    lines = found.grouped("warning") + found.grouped("output")
    if lines:
        pytest.fail(f"calls that warned or printed: {len(lines)} distinct findings\n"
                    + "\n".join(f"  {n + 1}. {line}" for n, line in enumerate(lines)),
                    pytrace=False)


def test_the_same_point_in_another_form_gives_the_same_result(outcome):
    _fail_with(outcome[1], "wrong", "calls that gave another result for the point [2, 5] "
               "passed as a list, a strided, unaligned, read-only, integer... array")


def test_arguments_are_never_modified(outcome):
    _fail_with(outcome[1], "argument changed", "calls that modified their arguments")


def test_a_tape_does_not_depend_on_the_arrays_it_was_built_from(outcome):
    _fail_with(outcome[1], "changed", "tapes whose results changed when the objects passed "
               "to wg.Tape(...) were changed afterwards")


@settings(max_examples=20)
@given(case=any_case)
def test_cases_are_json_and_describable(case):
    """Every drawn case survives the trip to the worker and reads as a call."""
    again = json.loads(json.dumps(dict(case, id=0)))
    assert case_text(again)
