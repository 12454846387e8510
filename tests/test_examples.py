"""The examples run and print what they promise (small sizes, to stay quick)."""
import pathlib
import runpy
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not beside tests/")


def run(name, args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_quickstart(capsys, monkeypatch):
    out = run("quickstart.py", [], capsys, monkeypatch)
    assert "v[1]  = log(v[-1])   =  0.693147" in out
    assert "error, wengert       = 0.00e+00" in out


def test_newton_rosenbrock(capsys, monkeypatch):
    out = run("newton_rosenbrock.py", ["50"], capsys, monkeypatch)
    rows = [line for line in out.splitlines() if line.startswith(("Newton-CG", "trust-ncg"))]
    assert len(rows) == 4
    assert all(float(row.split()[-1]) < 1e-6 for row in rows), out


def test_stiff_ode(capsys, monkeypatch):
    out = run("stiff_ode.py", ["40"], capsys, monkeypatch)
    assert "max difference 0.0e+00" in out
    assert "wengert sparse Jacobian" in out and "scipy finite differences" in out
