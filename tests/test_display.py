"""Making the tape visible: listing, traces, the Graphviz graph, statistics.

The survey example of Baydin et al. (JMLR 2018) runs through the file: its
tables 2 and 3 give every value, tangent and adjoint of
f(x1, x2) = ln(x1) + x1*x2 - sin(x2) at (2, 5). A spec table then checks,
for every operation and operand kind, that the derivative rule the traces
print agrees with the compiled sweeps.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import wengert as wg
from wengert import _opcodes as ops
from wengert import _traces, display, sparsity
from wengert._opcodes import Kind

X0 = np.array([2.0, 5.0])
DOT = "\u0307"      # combining dot: v̇
BAR = "\u0304"      # combining macron: v̄


def survey(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


@pytest.fixture(scope="module")
def tape():
    return wg.record(survey, X0)




def row_value(text, label):
    """The last number of the line of ``text`` whose column starts with ``label``."""
    for line in text.splitlines():
        for column in line.split("\u2502"):
            if column.strip().startswith(label + " ") or column.strip().startswith(label + "="):
                return float(column.rsplit("=", 1)[1])
    raise AssertionError(f"no row {label!r} in\n{text}")


# ---- listing -----------------------------------------------------------------------------

def test_listing_shows_the_survey_values(tape):
    text = tape.listing(X0)
    assert text.splitlines() == [
        "v[-1] = x[0]         =  2",
        "v[0]  = x[1]         =  5",
        "v[1]  = log(v[-1])   =  0.693147",
        "v[2]  = v[-1] * v[0] =  10",
        "v[3]  = v[1] + v[2]  =  10.6931",
        "v[4]  = sin(v[0])    = -0.958924",
        "v[5]  = v[3] - v[4]  =  11.6521",
        "y     = v[5]         =  11.6521",
    ]


def test_listing_is_the_display_function(tape):
    assert tape.listing() == display.listing(tape)
    assert tape.listing(X0) == display.listing(tape, X0)
    assert "=  0.693147" not in tape.listing()


def test_listing_of_one_point_only(tape):
    with pytest.raises(ValueError, match=r"\(2,\)") as info:
        tape.listing(np.ones((3, 2)))
    assert isinstance(info.value, wg.WengertError)


def test_listing_truncates(rich):
    full = display.listing(rich, max_rows=None)
    short = display.listing(rich, max_rows=4)
    assert short.splitlines()[:4] == full.splitlines()[:4]
    left = len(full.splitlines()) - 4
    assert short.splitlines()[-1] == f"... {left} more rows not shown (max_rows=4)"
    assert display.listing(rich, max_lines=4) == short          # the former name
    assert display.listing(rich) == full                         # 19 rows: under the default


def test_listing_shows_guards_and_parameters(rich):
    text = rich.listing([1.0, 2.0])
    assert "p[0]" in text and "=  0.5" in text
    guard = [line for line in text.splitlines() if line.startswith("guard")]
    assert len(guard) == 1 and "v[-1] > p[0]" in guard[0] and "must stay True" in guard[0]
    assert "v[1] if v[3] else v[2]" in text
    # New parameter values replace the recorded ones.
    assert "=  0.25" in rich.listing([1.0, 2.0], 0.25)


# ---- forward trace (table 2) --------------------------------------------------------------

def test_forward_trace_reproduces_table_2(tape):
    text = tape.trace(X0, [1.0, 0.0])
    lines = text.splitlines()
    assert lines[0] == f"Forward mode at x = [2, 5] along x{DOT} = [1, 0]"
    # The primal column beside the tangent column, one row per slot.
    row = next(line for line in lines if line.startswith("v[1] "))
    primal, tangent = row.split("\u2502")
    assert "log(v[-1])" in primal and "0.693147" in primal
    assert re.match(rf"\s*v{DOT}\[1\]\s+= v{DOT}\[-1\] / v\[-1\]\s+=\s+0\.5$", tangent)
    expected = {f"v{DOT}[-1]": 1.0, f"v{DOT}[0]": 0.0, f"v{DOT}[1]": 0.5, f"v{DOT}[2]": 5.0,
                f"v{DOT}[3]": 5.5, f"v{DOT}[4]": 0.0, f"v{DOT}[5]": 5.5, f"y{DOT}": 5.5}
    for label, value in expected.items():
        assert row_value(text, label) == pytest.approx(value, abs=1e-12), label
    assert f"v{DOT}[-1] * v[0] + v{DOT}[0] * v[-1]" in text       # the product rule
    assert lines[-1] == f"directional derivative J @ x{DOT} = y{DOT} = 5.5"


def test_forward_trace_along_e2_gives_df_dx2(tape):
    text = tape.trace(X0, [0.0, 1.0])
    assert row_value(text, f"y{DOT}") == pytest.approx(2.0 - np.cos(5.0), rel=1e-5)
    assert "1.71634" in text
    assert row_value(text, f"v{DOT}[4]") == pytest.approx(np.cos(5.0), rel=1e-5)


def test_forward_trace_defaults_to_the_first_unit_vector(tape):
    assert tape.trace(X0, None) == tape.trace(X0, [1.0, 0.0])


def test_trace_values_have_at_least_four_significant_digits(tape):
    text = tape.trace([2.0, 5.0], [0.3, 0.7])
    expected = tape.jvp([2.0, 5.0], [0.3, 0.7])
    got = float(text.splitlines()[-1].rsplit("=", 1)[1])
    assert got == pytest.approx(expected, rel=1e-5)


# ---- reverse trace (table 3) ---------------------------------------------------------------

def test_reverse_trace_reproduces_table_3(tape):
    text = tape.trace(X0, 1.0, mode="reverse")
    lines = text.splitlines()
    assert lines[0] == f"Reverse mode at x = [2, 5] with output weight y{BAR} = 1"
    # The primal trace first, then adjoints from the output back to the inputs.
    assert text.index("log(v[-1])") < text.index(f"v{BAR}[5]")
    order = [line.split("=")[0].strip() for line in lines if line.startswith(f"v{BAR}[")]
    assert order == [f"v{BAR}[{i}]" for i in (5, 4, 3, 2, 1, 0, -1)]
    expected = {f"v{BAR}[5]": 1.0, f"v{BAR}[4]": -1.0, f"v{BAR}[3]": 1.0, f"v{BAR}[2]": 1.0,
                f"v{BAR}[1]": 1.0, f"v{BAR}[0]": 2.0 - np.cos(5.0), f"v{BAR}[-1]": 5.5,
                f"x{BAR}[0]": 5.5, f"x{BAR}[1]": 2.0 - np.cos(5.0)}
    for label, value in expected.items():
        assert row_value(text, label) == pytest.approx(value, rel=1e-5), label
    # Contributions: v̄[0] collects from the product and from sin.
    row = next(line for line in lines if line.startswith(f"v{BAR}[0] "))
    assert f"v{BAR}[2] * v[-1] + v{BAR}[4] * cos(v[0])" in row
    assert "2 - 0.283662 = 1.71634" in row
    assert lines[-1] == f"gradient x{BAR} = [5.5, 1.71634]"


def test_reverse_trace_of_a_vector_output(rich):
    x, w = np.array([1.0, 2.0]), np.array([1.0, -2.0])
    text = rich.trace(x, w, mode="reverse")
    assert f"y{BAR} = [1, -2]" in text.splitlines()[0]
    expected = rich.vjp(x, w)
    for i in range(2):
        assert row_value(text, f"x{BAR}[{i}]") == pytest.approx(expected[i], rel=1e-5)
    assert f"p{BAR}[0]" in text                      # the parameter's adjoint too
    with pytest.raises(ValueError, match=r"\(2,\)"):
        rich.trace(x, None, mode="reverse")      # no default weight for a vector output


def test_trace_numbers_come_from_the_sweeps(rich, rng):
    # Every adjoint row equals the sum of its printed contributions, and the
    # contributions (from the edge tape) add up to the real reverse sweep.
    x = np.array([1.0, 2.0]) + 0.1 * rng.standard_normal(2)
    eng = rich._engine
    val = display._values(rich, x, ())
    bar = np.zeros((eng.n_slots, 1, 1))
    bar[eng.outputs, 0, 0] = [0.7, -1.3]
    work = val[:, None].copy()
    eng.adjoints(work, bar)
    bar = bar[:, 0, 0]
    entries = display._unpack(rich)
    edges = _traces._edge_partials(rich, entries, val, bar)
    total = np.zeros(eng.n_slots)
    total[eng.outputs] += [0.7, -1.3]
    for (index, pos), (_, contribution) in edges.items():
        total[dict(entries[index].operands)[pos]] += contribution
    np.testing.assert_allclose(total, bar, rtol=1e-14, atol=1e-300)


def test_trace_rejects_a_batch_and_wrong_directions(tape):
    with pytest.raises(ValueError, match=r"one point of shape \(2,\)") as info:
        tape.trace(np.ones((4, 2)), [1.0, 0.0])
    assert isinstance(info.value, wg.WengertError)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        tape.trace(X0, np.ones((2, 3)))            # k directions: not in a trace
    with pytest.raises(ValueError, match=r"\(\)"):
        tape.trace(X0, [1.0, 2.0], mode="reverse")
    with pytest.raises(ValueError, match="mode"):
        tape.trace(X0, [1.0, 0.0], mode="sideways")


def test_trace_in_ascii(tape):
    for mode, d in (("forward", [1.0, 0.0]), ("reverse", 1.0)):
        text = display.trace_text(tape, X0, d, (), mode, ascii=True)
        assert text.isascii()
    text = display.trace_text(tape, X0, [1.0, 0.0], ascii=True)
    assert re.search(r"v_dot\[1\] +=  ?v_dot\[-1\] / v\[-1\]", text)


def test_trace_of_a_guarded_tape_raises_where_the_branch_flips(rich):
    with pytest.raises(wg.BranchChangedError):
        rich.trace([0.1, 2.0], [1.0, 0.0])


# ---- the printed rules agree with the compiled kernels, op by op ---------------------------

# Operand values inside every operation's domain (a > b, both in (0, 1)).
A, B, C = 0.6, 0.35, 0.45
DOMAIN = {"arccosh": (1.7, B)}
NAMESPACE = {name: getattr(np, name) for name in (
    "cos", "sin", "sqrt", "log", "exp", "sinh", "cosh", "sign", "pi", "nan", "inf")}


def one_op(name, kind, a=None, b=None, c=C):
    """A tape of one operation ``name`` of ``kind`` on inputs (a, b)."""
    op = ops.BY_NAME[name]
    a_, b_ = DOMAIN.get(name, (A, B))
    a, b = (a_ if a is None else a), (b_ if b is None else b)
    args = {Kind.UNARY: (0, 0), Kind.VV: (0, 1), Kind.VC: (0, 0), Kind.CV: (0, 1)}[kind]
    if name == "select":
        t = wg.Tape(opcodes=[op.code()], args=[(2, 0)], consts=[], aux=[0, 1], outputs=[3],
                    in_shape=(3,), out_shape=())
        return t, np.array([a, b, c])
    t = wg.Tape(opcodes=[op.code(kind)], args=[args], consts=[c], aux=[], outputs=[2],
                in_shape=(2,), out_shape=())
    return t, np.array([a, b])


CASES = [(op.name, Kind.UNARY) for op in ops.OPERATIONS if op.arity == 1]
CASES += [(op.name, kind) for op in ops.OPERATIONS if ops.is_binary(op)
          for kind in (Kind.VV, Kind.VC, Kind.CV)]


def number(v):
    return f"({float(v)!r})"


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k.name}" for n, k in CASES])
def test_printed_rules_match_the_sweeps(name, kind):
    t, x = one_op(name, kind)
    check_rules(t, x)


@pytest.mark.parametrize("name, a, b", [
    ("minimum", 0.3, 0.7), ("minimum", 0.7, 0.3), ("minimum", 0.5, 0.5),
    ("maximum", 0.3, 0.7), ("maximum", 0.7, 0.3), ("maximum", 0.5, 0.5),
    ("select", 0.3, 0.7)])
def test_printed_rules_at_ties_and_branches(name, a, b):
    for c in (0.0, 1.0):
        t, x = one_op(name, Kind.VV, a, b, c)
        check_rules(t, x)


def check_rules(t, x):
    """The tangent rule and the local partials the traces print, evaluated
    with numbers in place of the names, against the engine."""
    eng = t._engine
    (entry,) = display._unpack(t)
    seed = np.linspace(0.7, -0.4, t.n_inputs)
    val = eng_values = display._values(t, x, ())
    dot = np.zeros((eng.n_slots, 1, 1))
    dot[:t.n_inputs, 0, 0] = seed
    eng.tangents(eng_values[:, None].copy(), dot, False)
    dot = dot[:, 0, 0]
    rule = _traces._tangent_rule(entry, lambda s: number(val[s]), lambda s: number(dot[s]), val)
    assert eval(rule, dict(NAMESPACE)) == pytest.approx(dot[entry.slot], rel=1e-13), rule
    partials = _traces._partials_at(entry, lambda s: number(val[s]), val)
    edges = _traces._edge_partials(t, [entry], val, np.ones(eng.n_slots))
    for pos, _ in entry.operands:
        text = partials[pos]
        expr = ("-" if text.startswith("-") else "") + (
            f"1 / {text.lstrip('-')[1:]}" if text.lstrip("-").startswith("/")
            else (text.lstrip("-") or "1"))
        assert eval(expr, dict(NAMESPACE)) == pytest.approx(edges[(0, pos)][0], rel=1e-13), text


def test_every_operation_has_a_printed_rule():
    missing = [op.name for op in ops.OPERATIONS
               if op.name not in _traces._PARTIALS
               and op.name not in ("const", "select", "minimum", "maximum")]
    assert missing == []


# ---- the graph ---------------------------------------------------------------------------------

def operand_count(t):
    """Operands of every operation, counted from the tape's arrays: one per
    slot operand and per constant operand; const entries have none."""
    n = 0
    for code in t._engine.opcodes.tolist():
        op, kind = ops.split(code)
        n += {"const": 0, "select": 3}.get(op.name, 2 if ops.is_binary(op) else 1)
    return n


def dot_nodes(text):
    return re.findall(r"^\s+(\w+) \[", text, flags=re.M)


def dot_edges(text):
    return re.findall(r"^\s+(\w+) -> (\w+)", text, flags=re.M)


def test_to_dot_of_the_survey_example(tape):
    text = tape.to_dot()
    assert text.startswith("digraph wengert {") and text.rstrip().endswith("}")
    nodes = [n for n in dot_nodes(text) if n not in ("graph", "node", "edge")]
    assert nodes == [f"s{k}" for k in range(7)] + ["y0"]
    assert len(dot_edges(text)) == operand_count(tape) + tape.n_outputs == 9
    for name in ("log", "mul", "add", "sin", "sub", "x[0]", "x[1]"):
        assert f'"{name}\\n' in text
    assert ("s0", "s2") in dot_edges(text)          # x1 -> ln x1


def test_to_dot_shows_constants_parameters_selects_and_guards(rich):
    text = rich.to_dot()
    eng = rich._engine
    nodes = [n for n in dot_nodes(text) if n not in ("graph", "node", "edge")]
    slots = [n for n in nodes if re.fullmatch(r"s\d+", n)]
    assert slots == [f"s{k}" for k in range(eng.n_slots)]        # one node per slot
    consts = [n for n in nodes if re.fullmatch(r"c\d+_\d", n)]
    n_const_operands = sum(ops.split(c)[1] in (Kind.VC, Kind.CV) for c in eng.opcodes.tolist())
    assert len(consts) == n_const_operands == 5
    assert [n for n in nodes if n.startswith("y")] == ["y0", "y1"]
    assert [n for n in nodes if n.startswith("g")] == ["g0"]
    edges = dot_edges(text)
    assert len(edges) == operand_count(rich) + rich.n_outputs + 2 * rich.n_guards
    assert 'label="cond", style=dashed' in text
    assert 'label="true"' in text and 'label="false"' in text
    assert "fillcolor=\"#fff2cc\"" in text                        # the parameter
    assert "x[0] > p[0]" in text


def test_to_dot_of_a_constant_entry():
    t = wg.Tape(opcodes=[ops.code_of("const"), ops.code_of("add", Kind.VV)],
                args=[(0, 0), (0, 1)], consts=[2.5], aux=[], outputs=[2], in_shape=(1,),
                out_shape=())
    text = t.to_dot()
    assert 's1 [label="2.5", shape=box' in text
    assert len(dot_edges(text)) == operand_count(t) + 1 == 3


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_render(rich, tmp_path, fmt):
    path = display.render(rich, tmp_path / f"graph.{fmt}")
    assert path == tmp_path / f"graph.{fmt}" and path.stat().st_size > 100
    head = path.read_bytes()[:1000]
    assert (b"<svg" in head) if fmt == "svg" else head.startswith(b"\x89PNG")
    # The format may also be given explicitly, whatever the name.
    other = display.render(rich, tmp_path / "graph.out", format="svg")
    assert b"<svg" in other.read_bytes()[:400]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_accepts_the_text(rich):
    done = subprocess.run(["dot", "-Tplain"], input=rich.to_dot(), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_render_without_graphviz_says_how_to_install(tape, tmp_path, monkeypatch):
    monkeypatch.setattr(display.shutil, "which", lambda name: None)
    with pytest.raises(display.GraphvizNotFoundError, match="apt-get install graphviz") as info:
        display.render(tape, tmp_path / "graph.svg")
    assert isinstance(info.value, wg.WengertError)
    assert not (tmp_path / "graph.svg").exists()


# ---- statistics --------------------------------------------------------------------------------

def test_stats_of_the_survey_example(tape):
    s = tape.stats()
    assert {k: s[k] for k in ("n_ops", "n_inputs", "n_params", "n_outputs", "n_guards",
                              "n_consts", "n_slots")} == dict(
        n_ops=5, n_inputs=2, n_params=0, n_outputs=1, n_guards=0, n_consts=0, n_slots=7)
    assert s["by_operation"] == {"log": 1, "sin": 1, "add": 1, "sub": 1, "mul": 1}
    assert s["by_kind"] == dict(const=0, select=0, unary=2, vv=3, vc=0, cv=0, array=0)
    assert s["n_elementwise"] == 5
    assert s["work_bytes"] == 7 * 8
    assert s["tape_bytes"]["opcodes"] == 5 and s["tape_bytes"]["args"] == 5 * 2 * 4


def test_stats_counts_match_the_tape(rich):
    s = rich.stats()
    eng = rich._engine
    assert s["n_guards"] == 1 and s["n_params"] == 1 and s["n_outputs"] == 2
    assert s["n_consts"] == eng.consts.size and s["n_slots"] == eng.n_slots
    assert sum(s["by_operation"].values()) == sum(s["by_kind"].values()) == s["n_ops"]
    assert s["by_kind"]["select"] == s["by_operation"]["select"] == 1
    names = [ops.split(c)[0].name for c in eng.opcodes.tolist()]
    assert s["by_operation"] == {n: names.count(n) for n in s["by_operation"]}
    bytes_ = s["tape_bytes"]
    assert bytes_["total"] == sum(v for k, v in bytes_.items() if k != "total")
    assert bytes_["guards"] == 1 + 8 + 1


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_stats_of_a_large_tape_of_scalar_entries(scalar_entries):
    n = 10_000
    t = wg.record(rosenbrock, np.ones(n))
    s = t.stats()
    assert s["n_ops"] == len(t) and s["n_inputs"] == n
    assert s["work_bytes"] == (n + len(t)) * 8
    assert s["by_operation"]["square"] == 3 * (n - 1)
    assert s["n_elementwise"] == len(t)


def test_stats_of_a_large_tape_of_array_entries():
    n = 10_000
    t = wg.record(rosenbrock, np.ones(n))
    s = t.stats()
    # Seven elementwise calls and a sum, each one entry over n - 1 elements.
    assert s["n_ops"] == len(t) == 8 and s["n_inputs"] == n
    assert s["by_operation"] == {"map": 7, "sum": 1} and s["by_kind"]["array"] == 8
    assert s["n_slots"] == n + 7 * (n - 1) + 1 and s["work_bytes"] == s["n_slots"] * 8
    assert s["n_elementwise"] == 8 * (n - 1)


def test_summary_for_print(tape):
    text = display.summary(tape)
    lines = text.splitlines()
    assert lines[0] == "wengert.Tape: inputs (2,) -> output (), 5 operations"
    assert "5 operations, 2 inputs, 0 parameters, 1 output" in text
    assert text.endswith(tape.listing())


def test_summary_of_a_large_tape_is_short(scalar_entries):
    t = wg.record(lambda x: np.sum(np.sin(x)), np.ones(500))
    lines = display.summary(t).splitlines()
    assert len(lines) < 30
    assert lines[-1] == f"... {t.n_ops + 500 + 1 - 20:,} more rows not shown (max_rows=20)"


# ---- array entries: one row, one node each, read from the tape itself ----------------------

_MATRIX = np.linspace(-1.0, 1.0, 20).reshape(4, 5)


def array_program(v):
    """Every kind of array entry (map, matmul both ways, where, cumsum, sum,
    gather) and scalar entries reading single elements of them."""
    m = (np.sin(v) * v[0]).reshape(3, 4)
    c = m @ _MATRIX
    d = wg.where(m > 0.3, m * m, np.cos(m))
    g = m[::-1, [3, 1, 0, 2]]
    return (np.sum(c) + np.sum(np.cumsum(d, axis=1)) + v[3] * m[1, 2]
            + np.sum(m.T @ m) + np.sum(g * np.arange(12.0).reshape(3, 4)))


@pytest.fixture(scope="module")
def arrays():
    return wg.record(array_program, np.linspace(0.1, 1.2, 12))


def no_expansion(monkeypatch):
    """Make the scalar expansion of array entries fail if anything asks for it."""
    from wengert import _expand

    def refuse(state):
        raise AssertionError("the tool expanded the array entries")
    monkeypatch.setattr(_expand, "expand", refuse)


def bracketed(text):
    """The numbers of an array row's value column ``[a, b, c, ...]``."""
    inside = text.rsplit("[", 1)[1].split("]")[0]
    return [float(v) for v in inside.split(", ") if v != "..."]


def test_forward_trace_shows_an_array_entry_as_one_row(arrays, monkeypatch, rng):
    no_expansion(monkeypatch)
    x, v = rng.uniform(0.1, 1.2, 12), rng.standard_normal(12)
    text = arrays.trace(x, v)
    lines = text.splitlines()
    body = lines[lines.index(next(t for t in lines if t.startswith("Forward primal"))) + 1:-2]
    assert len(body) == display._n_primal_rows(arrays)
    # The numbers are the replay's, the first three of each array row.
    run = arrays._replay(x, np.zeros(0), seeds=v[:, None, None])
    for e in display._unpack(arrays):
        label = display._range_name(lambda s: display._slot_namer(12, 12, f"v{DOT}")(s),
                                    e.slot, e.count)
        row = next(line for line in body if line.split("\u2502")[1].split()[0] == label)
        primal, tangent = row.split("\u2502")
        if e.count == 1:
            assert float(tangent.rsplit("=", 1)[1]) == pytest.approx(
                run.tangents[e.slot, 0, 0], rel=1e-5, abs=1e-12)
            continue
        np.testing.assert_allclose(bracketed(tangent), run.tangents[e.slot:e.slot + 3, 0, 0],
                                   rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(bracketed(primal), run.values[e.slot:e.slot + 3, 0],
                                   rtol=1e-5, atol=1e-12)
    # The rules: elementwise partials, linear calls on the tangents, the product rule.
    text = re.sub(r" +=", " =", text)               # the columns' alignment
    assert f"v{DOT}[1:13] = v{DOT}[-11:1] * cos(v[-11:1])   (elementwise)" in text
    assert f"v{DOT}[13:25] = v{DOT}[1:13] * v[-11] + v{DOT}[-11] * v[1:13]" in text
    assert f"v{DOT}[13:25] @ [-1, -0.894737, ...]   (3x4 @ 4x5)" in text
    assert f"v{DOT}[40:52] if v[64:76] else v{DOT}[52:64]   (elementwise)" in text
    assert f"cumsum of each row of 4 in v{DOT}[76:88]" in text
    assert f"= sum(v{DOT}[25:40])" in text
    assert f"gather(v{DOT}[" in text
    assert f"v{DOT}[13:25]\u1d40 @ v[13:25]" not in text       # a product rule, not an adjoint
    assert re.search(rf"\) @ v\[13:25\] \+ \(.*\) @ v{DOT}\[13:25\]", text)     # A @ B, A traced
    # The directional derivative is the jvp's, and the scalar recording's.
    assert float(lines[-1].rsplit("=", 1)[1]) == pytest.approx(float(arrays.jvp(x, v)), rel=1e-5)
    from _helpers import scalar_recording
    monkeypatch.undo()
    with scalar_recording():
        scalars = wg.record(array_program, x)
    assert scalars.trace(x, v).splitlines()[-1] == lines[-1]


def test_reverse_trace_shows_an_array_entry_as_one_row(arrays, monkeypatch, rng):
    no_expansion(monkeypatch)
    x = rng.uniform(0.1, 1.2, 12)
    text = arrays.trace(x, 1.0, mode="reverse")
    table = [line for line in text.split("Reverse adjoint trace")[1].splitlines()
             if line.startswith((f"v{BAR}[", f"x{BAR}["))]
    assert len(table) == len(arrays) + 12 + 12          # entries, input slots, x̄ rows
    run = arrays._replay(x, np.zeros(0), output_seeds=np.ones((1, 1, 1)))
    name = display._slot_namer(12, 12, f"v{BAR}")
    labels = [line.split(" = ")[0].strip() for line in table]
    expected = [display._range_name(name, e.slot, e.count)
                for e in reversed(display._unpack(arrays))] + [name(s) for s in range(11, -1, -1)]
    assert labels[:-12] == expected
    for e in display._unpack(arrays):
        row = table[expected.index(display._range_name(name, e.slot, e.count))]
        got = (bracketed(row) if e.count > 1 else [float(row.rsplit("=", 1)[1])])
        np.testing.assert_allclose(got, run.adjoints[e.slot:e.slot + len(got), 0, 0],
                                   rtol=1e-5, atol=1e-12)
    # The rules, in words where an entry works on whole arrays.
    assert f"v{BAR}[121] broadcast" in text                  # sum
    assert f"reverse cumsum of v{BAR}[" in text              # cumsum
    assert f"where not v[64:76]" in text and f"where v[64:76]" in text
    assert f"@ [-1, -0.894737, ...]\u1d40" in text           # dA = dC B^T, B constant
    assert f"\u1d40 @ v{BAR}[" in text                       # dB = A^T dC
    assert f"scattered back" in text                         # gather
    assert f"v{BAR}[1:13] * cos(v[-11:1]) at v[-8]" in text  # an input read by a map
    assert "summed over the broadcast" in text               # sin(v) * v[0]
    assert f" * v[-8] at v[19]" in text                      # a scalar entry reads m[1, 2]
    gradient = text.split("gradient")[-1]
    monkeypatch.undo()
    from _helpers import scalar_recording
    with scalar_recording():
        scalars = wg.record(array_program, x)
    assert scalars.trace(x, 1.0, mode="reverse").split("gradient")[-1] == gradient
    ascii_text = display.trace_text(arrays, x, 1.0, (), "reverse", ascii=True)
    assert ascii_text.isascii() and "@ [-1, -0.894737, ...].T" in ascii_text


def test_reverse_trace_of_a_vector_output_of_an_array_entry(monkeypatch, rng):
    no_expansion(monkeypatch)
    t = wg.record(lambda v: np.sin(v) * 2.0, np.ones(10))
    x, w = rng.standard_normal(10), rng.standard_normal(10)
    text = t.trace(x, w, mode="reverse")
    row = next(line for line in text.splitlines() if line.startswith(f"v{BAR}[11:21]"))
    assert f"= y{BAR}[0:10]" in row
    np.testing.assert_allclose(bracketed(row), w[:3], rtol=1e-5)
    assert re.search(rf"v{BAR}\[1:11\] += v{BAR}\[11:21\] \* 2 ", text)
    np.testing.assert_allclose([row_value(text, f"x{BAR}[{i}]") for i in range(10)],
                               t.vjp(x, w), rtol=1e-5)


def test_traces_of_array_entries_keep_max_rows(arrays, monkeypatch):
    no_expansion(monkeypatch)
    x = np.linspace(0.1, 1.2, 12)
    total = display._n_primal_rows(arrays)
    forward = arrays.trace(x, max_rows=15).splitlines()
    assert forward[-3] == f"... {total - 15:,} more rows not shown (max_rows=15)"
    primal, tangent = forward[-4].split("\u2502")
    label = primal.split("=")[0].strip()       # the 15th row, both columns
    assert label.startswith("v[") and tangent.startswith(f" v{DOT}{label[1:]} =")
    reverse = arrays.trace(x, 1.0, mode="reverse", max_rows=3)
    adjoint = reverse.split("Reverse adjoint trace")[1].split("gradient")[0].splitlines()
    assert len(adjoint) == 1 + 3 + 1 + 1
    n_rows = len(arrays) + 24
    assert adjoint[4] == f"... {n_rows - 3:,} more rows not shown (max_rows=3)"
    assert arrays.trace(x, max_rows=None).splitlines()[-1] == forward[-1]


def graph_nodes(text):
    return [n for n in dot_nodes(text) if n not in ("graph", "node", "edge")]


def test_to_dot_draws_an_array_entry_as_one_node(arrays, monkeypatch):
    no_expansion(monkeypatch)
    text = arrays.to_dot()
    nodes = graph_nodes(text)
    entries = display._unpack(arrays)
    # Inputs: x[0] and x[3] are read alone (a broadcast, a scalar entry),
    # the rest in runs between them; then one node per entry.
    assert [n for n in nodes if re.fullmatch(r"s\d+", n)] == \
        ["s0", "s1", "s3", "s4"] + [f"s{e.slot}" for e in entries]
    assert 's1 [label="x[1:3]\\nv[-10:-8]"' in text and 's4 [label="x[4:12]\\nv[-7:1]"' in text
    assert 's12 [label="sin\\nv[1:13]\\n12", shape=ellipse, peripheries=2, ' \
           'tooltip="v[1:13] = sin(v[-11:1])"]' in text
    assert '"matmul\\nv[25:40]\\n3x4 @ 4x5"' in text and '"sum\\nv[88]\\n15 -> 1"' in text
    edges = dot_edges(text)
    assert [a for a, b in edges if b == "s12"] == ["s0", "s1", "s3", "s4"]   # sin(x)
    assert [a for a, b in edges if b == "s114"] == ["s3", "s24"]             # x[3] * m[1, 2]
    assert 's24 -> s36 [label="A"];' in text and 'c2_1 -> s36 [label="B"];' in text
    assert 's75 -> s87 [label="cond", style=dashed];' in text
    assert 's51 -> s87 [label="true"];' in text and 's63 -> s87 [label="false"];' in text
    assert 'c5_1 -> s75 [label="2"];' in text                               # m > 0.3
    assert ("s24", "s134") in edges and ("s159", "y0") in edges             # gather, output
    assert all(a in nodes and b in nodes for a, b in edges)
    assert len(nodes) == 4 + len(arrays) + 3 + 1            # and 3 constant operands
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0 and done.stderr == "", done.stderr


def test_to_dot_of_array_entries_keeps_max_nodes(arrays, monkeypatch):
    no_expansion(monkeypatch)
    total = 4 + len(arrays) + 1
    for limit in (0, 1, 5, 6, 9, total - 1):
        text = arrays.to_dot(max_nodes=limit)
        drawn = [n for n in graph_nodes(text) if re.fullmatch(r"s\d+|y\d+", n)]
        assert len(drawn) <= limit
        assert f"// ... {total - len(drawn):,} more nodes not shown (max_nodes={limit})" in text
        assert all(a in graph_nodes(text) and b in graph_nodes(text)
                   for a, b in dot_edges(text))
    assert arrays.to_dot(max_nodes=total) == arrays.to_dot(max_nodes=None)


def test_to_dot_of_a_product_too_large_to_expand():
    from test_array_entries import Builder, code
    n = 2**10           # 2**31 scalar operations: the expansion refuses it
    b = Builder(2 * n * n)
    C = b.matmul(code("mul", Kind.VV), n, n, n, (0, n, 1), (n * n, n, 1))
    total = b.sum(1, n * n, (C, 0, 1))
    t = b.tape([total], ())
    with pytest.raises(wg.WengertError, match="too many"):
        t._scalar_form()
    text = t.to_dot()
    assert graph_nodes(text) == ["s0", "s1048576", f"s{2 * n * n}", f"s{2 * n * n + n * n}",
                                 "y0"]
    assert 'label="x[0:1048576]\\nv[-2097151:-1048575]"' in text
    assert dot_edges(text) == [("s0", f"s{2 * n * n}"), ("s1048576", f"s{2 * n * n}"),
                               (f"s{2 * n * n}", f"s{2 * n * n + n * n}"),
                               (f"s{2 * n * n + n * n}", "y0")]


@pytest.mark.parametrize("f, shown", [
    # A 1x1 constant matrix is the last constant: its stride along an axis
    # of one element points past the pool (listing, trace, to_dot and str
    # raised IndexError).
    (lambda x: np.array([[2.0]]) @ x.reshape(1, 8), "= 2 @ v[-7:1]"),
    (lambda x: x.reshape(8, 1) @ np.array([[3.0]]), " @ 3   (8x1 @ 1x1)"),
])
def test_a_product_with_a_one_element_constant_matrix_is_shown(f, shown):
    x = np.linspace(0.5, 1.5, 8)
    tape = wg.record(f, x)
    assert shown in tape.listing(x)
    str(tape)
    assert shown in tape.trace(x)
    assert "@" in tape.to_dot()


def reaches(edges, source, target):
    after = {}
    for a, b in edges:
        after.setdefault(a, []).append(b)
    seen, todo = {source}, [source]
    while todo:
        for b in after.get(todo.pop(), ()):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return target in seen


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30)
@given(st.data())
def test_every_input_the_output_depends_on_reaches_it_in_the_graph(data):
    # Random array programs: the graph of the array tape (entries as nodes)
    # joins every input the output structurally depends on to the output.
    from test_array_entries import array_programs, run_program
    steps = data.draw(array_programs())
    x = np.linspace(-0.9, 0.8, 12)
    t = wg.record(lambda v: run_program(steps, v), x)
    text = t.to_dot(max_nodes=None)
    edges = dot_edges(text)
    nodes = display._Nodes(t)
    column = sparsity.jacobian_sparsity(t).toarray()[0]
    for i in range(12):
        assert not column[i] or reaches(edges, f"s{int(nodes.of(i))}", "y0"), i
