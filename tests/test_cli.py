"""The command line, ``python -m wengert``, run as users run it: in a subprocess.

The subprocess imports the same wengert these tests imported (installed, or
a source tree built in place and put on PYTHONPATH), never an unbuilt copy.
"""
from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import wengert as wg

from _helpers import scalar_recording

# The directory holding the wengert package this process uses.
PACKAGE_ROOT = pathlib.Path(wg.__file__).resolve().parent.parent


def cli_env(**extra):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run(*args, timeout=120, **env):
    return subprocess.run([sys.executable, "-m", "wengert", *map(str, args)],
                          capture_output=True, timeout=timeout, env=cli_env(**env),
                          encoding="utf-8", errors="replace", check=False)


def assert_one_line_error(done, *words):
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0]


# ---- usage --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["demo"], ["show"], ["bench"]])
def test_help(command):
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m wengert")
    assert done.stderr == ""


@pytest.mark.slow
def test_help_lists_the_commands():
    text = run("--help").stdout
    for command in ("demo", "show", "bench"):
        assert command in text


@pytest.mark.slow
def test_version():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"wengert {wg.__version__}"


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["frobnicate"], ["bench", "--sizes", "ten"],
                                  ["bench", "--repeat", "0"], ["show"],
                                  ["demo", "--at", "2,x"], ["show", "f.wgt", "--dot", "--render", "g.svg"]])
def test_usage_errors_exit_2(args):
    done = run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "usage:" in done.stderr and "Traceback" not in done.stderr


# ---- demo ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo():
    done = run("demo")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


@pytest.mark.slow
def test_demo_shows_the_wengert_list(demo):
    for text in ("v[1]  = log(v[-1])   =  0.693147", "v[2]  = v[-1] * v[0] =  10",
                 "v[4]  = sin(v[0])    = -0.958924", "y     = v[5]         =  11.6521"):
        assert text in demo


@pytest.mark.slow
def test_demo_shows_the_tangent_and_adjoint_traces(demo):
    assert "v\u0307[1]  = v\u0307[-1] / v[-1]" in demo        # table 2: v̇1 = v̇-1 / v-1
    assert "=  0.5" in demo
    assert "directional derivative J @ x\u0307 = y\u0307 = 5.5" in demo
    assert "2 - 0.283662 = 1.71634" in demo                   # table 3: v̄0
    assert "gradient x\u0304 = [5.5, 1.71634]" in demo


@pytest.mark.slow
def test_demo_compares_the_gradient(demo):
    lines = demo.splitlines()
    wengert = next(line for line in lines if "wengert, reverse mode" in line)
    closed = next(line for line in lines if line.strip().startswith("closed form"))
    fd = next(line for line in lines if line.strip().startswith("finite differences"))
    assert "5.5" in wengert and "1.71633781453677" in wengert
    assert "1.71633781453677" in closed and "1/x1 + x2" in closed
    assert "approx_fprime" in fd
    fd_error = float(fd.split()[4])
    assert 1e-10 < fd_error < 1e-6
    assert float(wengert.split()[5]) <= 1e-15
    assert "f(x) = 11.6520714552231" in demo


@pytest.mark.slow
def test_demo_at_another_point():
    done = run("demo", "--at", "1,1")
    assert done.returncode == 0, done.stderr
    assert f"{1 + 1:.15g}" in done.stdout and f"{1 - np.cos(1.0):.15g}" in done.stdout


@pytest.mark.slow
def test_demo_rejects_a_point_outside_the_domain():
    assert_one_line_error(run("demo", "--at=-1,1"), "x1 must be positive")


@pytest.mark.slow
def test_demo_on_an_ascii_terminal():
    done = run("demo", PYTHONIOENCODING="ascii")
    assert done.returncode == 0, done.stderr
    assert done.stdout.isascii()
    assert "v_dot[-1] / v[-1]" in done.stdout and "gradient x_bar = [5.5, 1.71634]" in done.stdout


# ---- show ---------------------------------------------------------------------------------

def survey(x):
    return np.log(x[0]) + x[0] * x[1] - np.sin(x[1])


def big(x):
    return np.sum(np.sin(x) * x)


@pytest.fixture
def saved(tmp_path):
    """Tape files of the survey example and of a longer function."""
    paths = {}
    for name, f, x in (("survey", survey, [2.0, 5.0]), ("big", big, np.ones(50))):
        paths[name] = tmp_path / f"{name}.wgt"
        with scalar_recording():          # one row per element in the listings
            wg.record(f, np.asarray(x)).save(paths[name])
        wg.load(paths[name])
    return paths


@pytest.mark.slow
def test_show_prints_stats_and_listing(saved):
    done = run("show", saved["survey"])
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "inputs (2,) -> output ()" in text
    assert "5 operations, 2 inputs, 0 parameters, 1 output, 0 guards" in text
    assert "log 1" in text and "tape 49 B" in text
    assert "v[1]  = log(v[-1])" in text and "y     = v[5]" in text
    assert "0.693147" not in text                              # no values without --at


@pytest.mark.slow
def test_show_at_a_point(saved):
    done = run("show", saved["survey"], "--at", "2,5")
    assert done.returncode == 0, done.stderr
    assert "v[1]  = log(v[-1])   =  0.693147" in done.stdout
    assert "=  11.6521" in done.stdout


@pytest.mark.slow
def test_show_truncates_long_listings(saved):
    done = run("show", saved["big"], "--max-rows", "5")
    assert done.returncode == 0, done.stderr
    listing = done.stdout.split("Wengert list:\n", 1)[1].splitlines()
    assert len(listing) == 6
    assert listing[-1] == "... 195 more rows not shown (max_rows=5; --max-rows 0 shows all)"
    assert run("show", saved["big"], "--max-lines", "5").stdout == done.stdout   # former name
    whole = run("show", saved["big"], "--max-rows", "0").stdout
    assert "more rows" not in whole and "\ny      = v[" in whole


@pytest.mark.slow
def test_show_dot(saved):
    done = run("show", saved["survey"], "--dot")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("digraph wengert {") and done.stdout.count("->") == 9


@pytest.mark.slow
def test_show_wrong_point(saved):
    assert_one_line_error(run("show", saved["survey"], "--at", "1,2,3"), "3 numbers", "2 inputs")


@pytest.mark.slow
def test_show_a_bad_file_is_one_line(saved, tmp_path):
    bad = tmp_path / "bad.wgt"
    bad.write_bytes(b"this is not a tape\n" * 10)
    assert_one_line_error(run("show", bad), "bad.wgt")


@pytest.mark.slow
def test_show_a_missing_file_is_one_line(saved, tmp_path):
    assert_one_line_error(run("show", tmp_path / "missing.wgt"), "missing.wgt", "no such file")


# ---- bench --------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_prints_a_table():
    done = run("bench", "--sizes", "10,100", "--repeat", "1", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "\r" not in done.stdout                      # the progress bar stays off stdout
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["n", "ops"])
    for column in ("NumPy f", "tape f", "tape grad", "approx_fprime", "err grad", "err FD"):
        assert column in lines[header]
    rows = [line.split() for line in lines[header + 2:header + 4]]
    assert [r[0] for r in rows] == ["10", "100"]
    for r in rows:
        err_grad, err_fd = float(r[-2]), float(r[-1])
        assert err_grad < 1e-13 < err_fd < 1e-3


def test_progress_bar_draws_on_a_terminal_only():
    from wengert.__main__ import Progress
    stream = io.StringIO()
    bar = Progress(4, stream=stream, enabled=True)
    bar.step("n=10")
    bar.step("n=100")
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\rbench [") and "2/4 n=100" in text and text.endswith("\r")
    quiet = io.StringIO()                               # not a TTY: nothing drawn
    bar = Progress(4, stream=quiet)
    bar.step("n=10")
    bar.close()
    assert quiet.getvalue() == ""
