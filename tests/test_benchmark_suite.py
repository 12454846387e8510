"""The benchmark suite still runs and its results are still right.

Every benchmark asserts its result; run once without timing (about 10 s),
they double as an end-to-end test at the sizes users benchmark.
"""
import os
import pathlib
import subprocess
import sys

import pytest

import wengert as wg

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "benchmarks").is_dir(), reason="benchmarks/ is not beside tests/")
def test_benchmarks_pass_without_timing():
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(pathlib.Path(wg.__file__).resolve().parent.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "benchmarks", "--benchmark-disable",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
