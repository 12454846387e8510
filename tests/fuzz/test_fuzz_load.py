"""Fuzzing ``wg.load``: a bounded coverage-guided atheris run when atheris is
installed, and seeded pure-Python fuzzing that always runs.

Every input must either load into a tape that replays, or raise
``wg.TapeFormatError``; inputs run in subprocesses, so a crash or a hang
fails the test instead of the test runner. ``WENGERT_FUZZ_SECONDS`` sets the
atheris time budget (default 20 s).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wengert as wg

from fuzz import tapefiles

HARNESS = Path(__file__).with_name("fuzz_load.py")
FUZZ_SECONDS = int(os.environ.get("WENGERT_FUZZ_SECONDS", "20"))

# Thousands of files, each loaded in a subprocess; atheris runs FUZZ_SECONDS.
pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed: coverage-guided fuzzing of wg.load "
                           "skipped (optional: `pip install atheris`; wheels for Linux "
                           "x86-64, elsewhere it needs clang with libFuzzer)")
def test_atheris_finds_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in tapefiles.sample_files().items():
        (corpus / f"{name}.wgt").write_bytes(data)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(wg.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={FUZZ_SECONDS}",
               "-rss_limit_mb=2048", "-max_len=16384", "-timeout=10", "-seed=1",
               f"-artifact_prefix={tmp_path}{os.sep}"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                          timeout=FUZZ_SECONDS + 300)
    log = proc.stderr.decode("utf-8", "replace")
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.split("-")[0] in
                      ("crash", "timeout", "oom", "leak", "slow"))
    assert proc.returncode == 0 and not findings, (
        f"atheris exited with status {proc.returncode}; inputs saved: {findings}\n{log[-4000:]}")
    assert "Done" in log, log[-2000:]


def test_random_mutations_load_or_raise_tape_format_error(tmp_path):
    """Seeded havoc: stacked flips, inserts, deletes, splices and interesting
    integers, half inside members repacked with valid CRCs."""
    seeds = tapefiles.sample_files()
    entries = list(tapefiles.havoc(seeds, np.random.default_rng(99), 2500))
    problems, outcomes = tapefiles.run_corpus(entries, tmp_path)
    assert not problems, "\n".join(problems[:20])
    assert len(outcomes) == len(entries)


def test_random_tapes_load_or_raise_tape_format_error(tmp_path):
    """Well-formed files of random tapes: mostly-valid opcodes and operands
    probe the tape validation itself; those that load must replay."""
    entries = list(tapefiles.random_tapes(np.random.default_rng(5), 2500))
    problems, outcomes = tapefiles.run_corpus(entries, tmp_path)
    assert not problems, "\n".join(problems[:20])
    loaded = sum(outcome == "LOADED" for outcome in outcomes.values())
    assert 0.05 * len(entries) < loaded < 0.95 * len(entries), loaded


def test_random_bytes_raise_tape_format_error(tmp_path):
    rng = np.random.default_rng(11)
    entries = []
    for k in range(300):
        n = int(rng.integers(0, 4096))
        head = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00", b"\x80\x04"][k % 5]
        entries.append((f"random {k}", head + rng.bytes(n), "reject"))
    problems, _ = tapefiles.run_corpus(entries, tmp_path)
    assert not problems, "\n".join(problems[:20])
