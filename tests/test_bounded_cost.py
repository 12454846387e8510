"""Cost is bounded by the bytes of the file and the size of the tape.

A small tape that declares a huge input shape (10**9 inputs, of which it
reads five) must not make the displays, the sparsity patterns and
colourings, ``optimize`` or ``python -m wengert show`` allocate per declared
input; and every display prints a bounded number of rows by default, saying
what it left out. The heavy cases run in subprocesses under an address-space
limit, so a huge allocation fails the test (MemoryError) instead of
swapping the machine; no assertion is timed.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops
from wengert import display
from wengert._opcodes import Kind

from _helpers import scalar_recording

HUGE = 10**9                    # declared inputs of the forged tapes
ADDRESS_LIMIT = 3 << 29         # 1.5 GiB of address space per worker
WORKER_TIMEOUT = 120            # seconds: a hang fails the test, it is no benchmark


# ---- forged tapes -------------------------------------------------------------------

def forged(n=HUGE):
    """A 5-operation tape of ``n`` declared inputs that reads x[0], x[3],
    x[5], x[7] and a parameter: a select, a comparison, constants, a guard
    and two outputs, so that every kind of operand is renumbered."""
    first = n + 1                                       # n inputs, 1 parameter
    code = ops.code_of
    return wg.Tape(
        opcodes=np.array([code("sin"), code("mul", Kind.VV), code("gt", Kind.VV),
                          code("select"), code("add", Kind.VC)], np.uint8),
        args=np.array([[0, 0], [first, 5], [7, n], [first + 2, 0], [first + 3, 0]], np.int32),
        consts=np.array([1.5, 0.0]), aux=np.array([first + 1, 3], np.int32),
        outputs=np.array([first + 4, first + 1], np.int32), in_shape=(n,), out_shape=(2,),
        n_params=1, guards=[(code("gt", Kind.VC), 0, 1, True, "forged.py:1", "x[0] > 0")])


def forged_reference(x, p=0.0):
    """What ``forged`` computes, in NumPy."""
    v1 = np.sin(x[0])
    v2 = v1 * x[5]
    v4 = v2 if x[7] > p else x[3]
    return np.array([v4 + 1.5, v2])


def test_forged_tape_is_what_it_claims():
    t = forged(10)
    x = np.linspace(0.5, 1.5, 10)
    assert t.n_inputs == 10 and t.n_params == 1 and t.n_guards == 1
    np.testing.assert_allclose(t.forward(x), forged_reference(x), rtol=1e-15)


# ---- the workers: each check runs under the address-space limit ---------------------

def _checks_huge_declared_inputs():
    """Displays, sparsity and optimize of a 5-operation tape of 10**9 inputs."""
    t = forged()
    first = HUGE + 1

    def text(s, limit=20_000):
        assert isinstance(s, str) and len(s) < limit, len(s)
        return s

    def show_str():
        s = text(str(t))
        assert "1000000000 inputs" in s and "5 operations" in s
        assert s.splitlines()[-1] == \
            f"... {first + 5 + 2 + 1 - 20:,} more rows not shown (max_rows=20)"

    def show_listing():
        lines = text(t.listing()).splitlines()
        assert len(lines) == 201 and lines[0].startswith("v[-999999999] = x[0]")
        assert lines[-1] == f"... {first + 5 + 2 + 1 - 200:,} more rows not shown (max_rows=200)"

    def show_dot():
        s = text(t.to_dot())
        nodes = set(re.findall(r"^  (\w+) \[", s, flags=re.M))
        edges = re.findall(r"^  (\w+) -> (\w+)", s, flags=re.M)
        assert {f"s{k}" for k in (0, 3, 5, 7, HUGE)} <= nodes          # inputs read, p[0]
        assert {"y0", "y1", "g0", "more"} <= nodes
        assert all(a in nodes and b in nodes for a, b in edges)
        # 5 leading slots read, 5 operations, 2 outputs and the guard are drawn.
        assert f"... {first + 5 + 2 + 1 - 13:,} more nodes not shown (max_nodes=200)" in s

    def jacobian_pattern():
        J = t.jacobian_sparsity()
        assert J.shape == (2, HUGE)
        assert [J.indices[J.indptr[i]:J.indptr[i + 1]].tolist() for i in range(2)] == \
            [[0, 3, 5], [0, 5]]

    def colourings():
        for mode in ("auto", "forward", "reverse"):
            c = t.jacobian_colouring(mode)
            assert c.shape == (2, HUGE) and 1 <= c.n_colours <= 3
            text(repr(c))
        for method in ("star", "distance2"):
            c = t.hessian_colouring(method)
            assert c.shape == (HUGE, HUGE) and c.n_colours == 2
            text(repr(c))

    def optimize():
        small = t.optimize()
        assert small.in_shape == (HUGE,) and small.n_params == 1 and small.n_guards == 1
        assert small.n_ops == 5 and small.optimize_report.ops_before == 5
        text(str(small))
        text(small.listing())

    def stats():
        s = t.stats()
        assert s["n_inputs"] == HUGE and s["n_slots"] == first + 5

    return dict(str=show_str, listing=show_listing, to_dot=show_dot, stats=stats,
                jacobian_sparsity=jacobian_pattern, colourings=colourings, optimize=optimize)


def _checks_values_at_a_point():
    """Listing with values, traces and sparse derivatives of a tape of
    2 * 10**7 inputs (x itself takes 160 MB) that reads four of them."""
    n = 2 * 10**7
    t = forged(n)
    x = np.full(n, 0.25)
    x[[0, 3, 5, 7]] = [0.5, 2.0, 3.0, -1.0]                  # x[7] < p: the select's false side
    y = forged_reference(x, 0.0)

    def values():
        lines = t.listing(x).splitlines()
        assert len(lines) == 201 and lines[-1].endswith("more rows not shown (max_rows=200)")
        assert lines[:2] == [f"v[{1 - n}] = x[0]   =  0.5", f"v[{2 - n}] = x[1]   =  0.25"]
        assert t.listing(x, max_rows=1) == \
            f"v[{1 - n}] = x[0] =  0.5\n... {n + 1 + 5 + 2 + 1 - 1:,} more rows not shown " \
            "(max_rows=1)"

    def forward_trace():
        s = t.trace(x)
        assert len(s.splitlines()) < 215 and "more rows not shown (max_rows=200)" in s
        assert "along x\u0307 = [1, 0, 0, 0, ..., 0, 0, 0, 0]" in s.splitlines()[0]
        jv = np.cos(0.5) * 3.0                                 # d y1 / d x0; y0 = x[3] + 1.5
        assert s.splitlines()[-1] == f"directional derivative J @ x\u0307 = y\u0307 = " \
            f"[0, {jv:.6g}]"

    def reverse_trace():
        s = t.trace(x, [1.0, 1.0], mode="reverse")
        assert len(s.splitlines()) < 420 and s.count("more rows not shown (max_rows=200)") == 2
        assert s.splitlines()[-1].startswith("y\u0304 @ J = x\u0304 = [")

    def sparse():
        J = t.sparse_jacobian(x)
        assert J.shape == (2, n) and J.nnz == 5
        np.testing.assert_allclose(J[1, 0], np.cos(0.5) * 3.0, rtol=1e-15)
        assert J[0, 3] == 1.0
        H = t.sparse_hessian(x, w=[0.0, 1.0])
        np.testing.assert_allclose(H[0, 0], -np.sin(0.5) * 3.0, rtol=1e-15)
        np.testing.assert_allclose(H[0, 5], np.cos(0.5), rtol=1e-15)
        return y

    return dict(listing=values, forward_trace=forward_trace, reverse_trace=reverse_trace,
                sparse=sparse)


def _checks_a_million_operations():
    """print, listing, traces and the graph of a recorded 900,000-operation
    tape: the output stays short (old code printed every row)."""
    x = np.linspace(0.0, 1.0, 300_000)
    t = wg.record(lambda x: np.sum(np.sin(x) * x), x)
    # Three array entries; the displays read their 900,000 scalar operations.
    assert t.stats()["n_elementwise"] > 800_000

    def bounded(s, lines, chars):
        assert len(s.splitlines()) <= lines and len(s) <= chars, (len(s.splitlines()), len(s))

    return {
        "str": lambda: bounded(str(t), 30, 3_000),
        "listing": lambda: bounded(t.listing(x), 201, 12_000),
        "forward_trace": lambda: bounded(t.trace(x), 210, 30_000),
        "reverse_trace": lambda: bounded(t.trace(x, 1.0, mode="reverse"), 420, 40_000),
        "to_dot": lambda: bounded(t.to_dot(), 420, 40_000),
    }


def forged_arrays(n=HUGE):
    """A tape of ``n`` declared inputs whose array entries read 100 of them
    as a grid (x[10:110]), x[n-1] and x[n-5:n-11:-2] backwards: a map, a
    sum per row, a gather and a product with a constant matrix."""
    code = ops.code_of
    MAP, SUM, GATHER, MATMUL = (code(k) for k in ("map", "sum", "gather", "matmul"))
    first = n
    aux = [code("sin"), 10, 10, 10, 10, 1, 0, 0, 0,              # v = sin(x[10:110]) (10x10)
           code("mul", Kind.VV), 1, 10, first, 0, 1, n - 1, 0, 0,  # w = v[0:10] * x[n-1]
           10, 10, first, 10, 1,                                  # r = row sums of v (10)
           n - 5, n - 7, n - 9, first + 100, first + 101, first + 102, first + 103,
           first + 104,                                           # g = gather (8)
           code("mul", Kind.VC), 1, 8, 2, first + 120, 0, 1, 0, 2, 1]   # g @ C (1x8 @ 8x2)
    return wg.Tape(
        opcodes=np.array([MAP, MAP, SUM, GATHER, MATMUL], np.uint8),
        args=np.array([[0, 100], [9, 10], [18, 10], [23, 8], [31, 2]], np.int32),
        consts=np.linspace(-1.0, 1.0, 16), aux=np.array(aux, np.int32),
        outputs=np.array([first + 128, first + 129, first + 110], np.int32), in_shape=(n,),
        out_shape=(3,))


def _checks_huge_declared_array_inputs():
    """Sparsity, displays and optimize of a tape of array entries that
    declares 10**9 inputs and reads 103."""
    t = forged_arrays()

    def patterns():
        J = t.jacobian_sparsity()
        assert J.shape == (3, HUGE)
        assert J.indices[J.indptr[2]:J.indptr[3]].tolist() == list(range(10, 20))
        assert J.indices[J.indptr[0]:J.indptr[1]].tolist() == \
            list(range(10, 15)) + [HUGE - 9, HUGE - 7, HUGE - 5, HUGE - 1]
        # (A Hessian pattern's CSR has a row pointer per input: not bounded.)
        c = t.hessian_colouring()           # sin(x[10:20]), and x[10:15] * x[n-1]
        assert c.shape == (HUGE, HUGE) and c._compact.nnz == 10 + 2 * 5
        assert t.jacobian_colouring().n_colours >= 1

    def displays():
        s = t.to_dot()
        assert len(s) < 20_000 and 'label="x[10:110]' in s and 'label="x[999999999]' in s
        assert len(t.listing()) < 20_000 and len(str(t)) < 20_000

    def optimize():
        assert t.optimize().n_ops == 5

    return dict(patterns=patterns, displays=displays, optimize=optimize)


def test_forged_array_tape_is_what_it_claims():
    n = 200
    t = forged_arrays(n)
    x = np.linspace(0.5, 1.5, n)
    v = np.sin(x[10:110])
    g = np.concatenate([x[[n - 5, n - 7, n - 9]], (v[:10] * x[-1])[:5]])
    C = np.linspace(-1.0, 1.0, 16).reshape(8, 2)
    np.testing.assert_allclose(t.forward(x), np.concatenate([g @ C, [v.reshape(10, 10)[0].sum()]]),
                               rtol=1e-14)
    H = t.hessian_sparsity().toarray()
    assert H.sum() == 20 and H[10:20, 10:20].trace() == 10 and H[10:15, n - 1].all()


_SCENARIOS = {"huge": _checks_huge_declared_inputs, "point": _checks_values_at_a_point,
              "million": _checks_a_million_operations,
              "huge-arrays": _checks_huge_declared_array_inputs}


def _limit_address_space():
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
    except (ImportError, ValueError, OSError):      # pragma: no cover - no limit here
        pass


def _worker(scenario):
    _limit_address_space()
    out = sys.stdout
    try:
        checks = _SCENARIOS[scenario]()
    except BaseException as exc:
        out.write(f"FAIL setup\t{type(exc).__name__}: {str(exc)[:500]}\n")
        return
    for name, check in checks.items():
        error = None
        try:
            check()
        except BaseException as exc:
            # Drop the frames (and whatever huge lists they hold) before
            # writing: after a MemoryError the report needs memory too.
            exc.__traceback__ = exc.__context__ = None
            error = exc
        if error is None:
            out.write(f"OK {name}\n")
        else:
            out.write(f"FAIL {name}\t{type(error).__name__}: {str(error)[:500]}\n")
        out.flush()


def _environment():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    package = str(pathlib.Path(wg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package, str(pathlib.Path(__file__).parent)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(_SCENARIOS))
def test_bounded_under_an_address_space_limit(scenario):
    done = subprocess.run([sys.executable, __file__, scenario], capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT, env=_environment(), check=False)
    report = done.stdout.splitlines()
    failed = [line for line in report if line.startswith("FAIL")]
    assert not failed, "\n".join(failed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report and all(line.startswith("OK ") for line in report), done.stdout


def _show_forged(tmp_path, extra):
    """``wengert show`` of a small file declaring 10**9 inputs, under the
    address-space limit."""
    path = tmp_path / "huge.wgt"
    forged().save(path)
    assert path.stat().st_size < 10_000
    header = json.loads(np.load(path)["header"].tobytes())
    assert header["in_shape"] == [HUGE]
    return subprocess.run([sys.executable, "-m", "wengert", "show", str(path)] + extra,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT,
                          env=_environment(), check=False,
                          preexec_fn=_limit_address_space if os.name == "posix" else None)


@pytest.mark.slow
def test_show_at_a_point_of_a_forged_file_is_refused(tmp_path):
    done = _show_forged(tmp_path, ["--at", "1,2"])  # two numbers for 10**9 inputs
    assert done.returncode == 1 and "1000000000 inputs" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--dot"]])
def test_show_of_a_forged_file_is_bounded(tmp_path, extra):
    done = _show_forged(tmp_path, extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "" and len(done.stdout) < 30_000
    if extra == ["--dot"]:
        assert "more nodes not shown (max_nodes=200)" in done.stdout
    else:
        assert "1000000000 inputs" in done.stdout
        assert done.stdout.rstrip().endswith(
            "more rows not shown (max_rows=100; --max-rows 0 shows all)")


# ---- limits and what they say -------------------------------------------------------

@pytest.fixture(scope="module")
def long():
    """A tape of 300 inputs and 599 operations: 900 rows with its output."""
    with scalar_recording():
        return wg.record(lambda x: np.sum(np.sin(x)), np.linspace(0.0, 1.0, 300))


def test_listing_shows_200_rows_by_default(long):
    total = long.n_inputs + long.n_ops + 1
    lines = long.listing().splitlines()
    assert len(lines) == 201
    assert lines[-1] == f"... {total - 200:,} more rows not shown (max_rows=200)"
    full = long.listing(max_rows=None).splitlines()
    assert len(full) == total and "more rows" not in full[-1]
    assert long.listing(max_rows=total) == long.listing(max_rows=None)
    assert long.listing(max_rows=0) == f"... {total:,} more rows not shown (max_rows=0)"
    assert display.listing(long, max_rows=7) == long.listing(max_rows=7)


def test_listing_with_values_shows_the_values_of_its_rows(long):
    x = np.linspace(0.0, 1.0, 300)
    full = long.listing(x, max_rows=None).splitlines()
    short = long.listing(x, max_rows=450).splitlines()
    assert len(short) == 451
    for a, b in zip(short[:450], full[:450]):
        assert a.split("=")[0].strip() == b.split("=")[0].strip()    # the same row
        assert a.split("=")[-1] == b.split("=")[-1]                  # the same value
    assert float(full[-1].split("=")[-1]) == pytest.approx(np.sum(np.sin(x)), rel=1e-5)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_limits_must_be_counts(long, bad):
    for call in (lambda: long.listing(max_rows=bad), lambda: long.to_dot(max_nodes=bad),
                 lambda: long.trace(np.ones(300), max_rows=bad)):
        with pytest.raises(wg.ArgumentError, match="non-negative integer or None"):
            call()


def test_traces_show_200_rows_per_table_by_default(long):
    x = np.linspace(0.0, 1.0, 300)
    forward = long.trace(x).splitlines()
    total = long.n_inputs + long.n_ops + 1
    assert forward[-3] == f"... {total - 200:,} more rows not shown (max_rows=200)"
    table = [k for k, line in enumerate(forward) if line.startswith("Forward primal trace")]
    assert len(forward) == table[0] + 1 + 200 + 3
    assert forward[-1] == long.trace(x, max_rows=None).splitlines()[-1]
    reverse = long.trace(x, 1.0, mode="reverse").splitlines()
    adjoint_rows = long._engine.n_slots + long.n_inputs
    assert f"... {total - 200:,} more rows not shown (max_rows=200)" in reverse
    assert f"... {adjoint_rows - 200:,} more rows not shown (max_rows=200)" in reverse
    whole = long.trace(x, 1.0, mode="reverse", max_rows=None).splitlines()
    gradient = "\n".join(reverse).rsplit("\n\n", 1)[1]
    assert gradient == "\n".join(whole).rsplit("\n\n", 1)[1]
    assert gradient.startswith("gradient x\u0304 = [")
    assert not any("more rows not shown" in line for line in whole)
    # The adjoint rows shown are the first rows of the whole table.
    start = whole.index("Reverse adjoint trace (from the output back to the inputs)")
    shown = reverse.index("Reverse adjoint trace (from the output back to the inputs)")
    for a, b in zip(reverse[shown + 1:shown + 201], whole[start + 1:start + 201]):
        assert a.split(" = ")[0].strip() == b.split(" = ")[0].strip()
        assert a.split(" = ")[-1] == b.split(" = ")[-1]


def test_to_dot_draws_200_nodes_by_default(long):
    text = long.to_dot()
    nodes = re.findall(r"^  (s\d+|y\d+|g\d+) \[", text, flags=re.M)
    assert len(nodes) <= 200
    total = long.n_inputs + long.n_ops + 1
    note = f"... {total - len(nodes):,} more nodes not shown (max_nodes=200)"
    assert f"  more [label=\"{note}\", shape=note];" in text and f"  // {note}" in text
    declared = set(re.findall(r"^  (\w+) \[", text, flags=re.M))
    for a, b in re.findall(r"^  (\w+) -> (\w+)", text, flags=re.M):
        assert a in declared and b in declared
    whole = long.to_dot(max_nodes=None)
    assert "more nodes" not in whole
    assert len(re.findall(r"^  (s\d+|y\d+|g\d+) \[", whole, flags=re.M)) == total
    assert long.to_dot(max_nodes=total) == whole


def test_show_options(tmp_path, capsys):
    from wengert.__main__ import main
    path = tmp_path / "long.wgt"
    with scalar_recording():
        wg.record(lambda x: np.sum(np.sin(x)), np.linspace(0.0, 1.0, 300)).save(path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("... 800 more rows not shown (max_rows=100; --max-rows 0 "
                                 "shows all)")
    assert main(["show", str(path), "--dot", "--max-nodes", "10"]) == 0
    out = capsys.readouterr().out
    assert "more nodes not shown (max_nodes=10)" in out
    assert main(["show", str(path), "--dot", "--max-nodes", "0"]) == 0
    assert "more nodes" not in capsys.readouterr().out


# ---- the compact tape gives the same numbers ----------------------------------------

def test_unread_inputs_change_no_result(rng):
    t = forged(12)
    x = rng.uniform(0.5, 1.5, 12)
    x[7] = rng.choice([-1.0, 1.0])
    np.testing.assert_array_equal(t.sparse_jacobian(x).toarray(), t.jacobian(x))
    w = np.array([0.7, -0.4])
    for method in ("star", "distance2"):
        np.testing.assert_array_equal(t.sparse_hessian(x, w=w, method=method).toarray(),
                                      t.hessian(x, w=w))
    small = t.optimize()
    assert small.forward(x).tobytes() == t.forward(x).tobytes()
    np.testing.assert_array_equal(small.jacobian(x), t.jacobian(x))
    # Every value in the listing is the slot's value (a full sweep, by hand).
    eng = t._engine
    val = np.empty((eng.n_slots, 1))
    val[:12, 0] = x
    val[12:eng.first, 0] = 0.0
    eng.values(val, False)
    np.testing.assert_array_equal(display._values(t, x, ()), val[:, 0])
    with pytest.raises(wg.BranchChangedError, match="x\\[0\\] > 0"):
        t.listing(-x)


def test_a_file_cannot_declare_more_slots_than_32_bit_indices(tmp_path):
    from wengert import _io
    t = wg.record(lambda x: x[0] * 2.0, np.ones(3))
    state = t._state()
    for in_shape, message in (([2**31 - 2], "slots are 32-bit indices"),
                              ([2**16, 2**16], "more than 2147483646 elements")):
        meta = _io._header(state)
        meta["in_shape"] = in_shape
        arrays = dict(_io._member_arrays(state))
        arrays["header"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        with pytest.raises(wg.TapeFormatError, match=message):
            _io._build_state(_io._parse_header(arrays.pop("header")), arrays)
    meta = _io._header(state)
    meta["out_shape"] = [4]
    arrays = dict(_io._member_arrays(state))
    arrays.pop("header")
    with pytest.raises(wg.TapeFormatError, match="out_shape \\[4\\] has 4 elements"):
        _io._build_state(_io._parse_header(
            np.frombuffer(json.dumps(meta).encode(), np.uint8)), arrays)


if __name__ == "__main__":
    _worker(sys.argv[1])
