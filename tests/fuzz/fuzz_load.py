"""Coverage-guided fuzzing of the tape file reader with atheris.

Feeds arbitrary bytes to the reader behind ``wg.load`` and replays every
tape that loads. The only outcomes allowed are a tape that replays, or
``wg.TapeFormatError``; anything else (another exception, a crash, a hang,
an allocation over the RSS limit) is a finding, and libFuzzer saves the
input that caused it as ``crash-*``/``timeout-*``/``oom-*``.

atheris is an optional dependency (``pip install atheris``; wheels for
CPython 3.8-3.11 on Linux x86-64 and macOS). Usage::

    python tests/fuzz/fuzz_load.py --make-seeds SEEDS_DIR     # real tape files
    python tests/fuzz/fuzz_load.py SEEDS_DIR -max_total_time=60 -rss_limit_mb=2048

Any libFuzzer flag works (``-runs=N``, ``-max_len=N``, ``-jobs=N``...).
``tests/fuzz/test_fuzz_load.py`` runs it for a bounded time when atheris
is installed.
"""
import os
import sys


def make_seeds(directory):
    """Write the sample tapes' files into ``directory`` as a seed corpus."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tapefiles
    os.makedirs(directory, exist_ok=True)
    for name, data in tapefiles.sample_files().items():
        with open(os.path.join(directory, name + ".wgt"), "wb") as f:
            f.write(data)


def main(argv):
    import atheris                  # imported here: only the fuzzer needs it

    # Instrument the reader and the zip parser under it (imported first, so
    # they load inside the block); NumPy's compiled code is not instrumented.
    with atheris.instrument_imports(include=["wengert", "zipfile"]):
        import zipfile              # noqa: F401
        import numpy as np
        import wengert as wg
        from wengert import _io

    def exercise(tape):
        if tape.n_inputs > 10**4 or tape.n_outputs > 10**4 or tape.n_ops > 10**6:
            return
        x = np.full(tape.in_shape, 0.75)
        try:
            tape.forward(x)
            tape.jvp(x, np.ones(tape.in_shape))
            tape.vjp(x, np.ones(tape.out_shape))
        except wg.BranchChangedError:
            pass

    def test_one_input(data):
        try:
            tape = _io._load_bytes(data)
        except wg.TapeFormatError:
            return
        exercise(tape)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(sys.argv[2])
    else:
        main(sys.argv)
