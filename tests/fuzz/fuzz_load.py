"""Coverage-guided fuzzing of the tape file reader with atheris.

Feeds arbitrary bytes to the reader behind ``wg.load`` and replays every
tape that loads. The only outcomes allowed are a tape that replays, or
``wg.TapeFormatError``; anything else (another exception, a crash, a hang,
an allocation over the RSS limit) is a finding, and libFuzzer saves the
input that caused it as ``crash-*``/``timeout-*``/``oom-*``. A custom
mutator repacks mutated members with valid CRCs, so the fuzzer gets past
the archive checksums to the .npy headers, the JSON header and the tape
validation.

atheris is an optional dependency (``pip install atheris``: wheels for
Linux x86-64, CPython 3.8-3.13; elsewhere it builds from source and needs
clang with libFuzzer). Usage::

    python tests/fuzz/fuzz_load.py --make-seeds SEEDS_DIR     # real tape files
    python tests/fuzz/fuzz_load.py SEEDS_DIR -max_total_time=60 -rss_limit_mb=2048 -max_len=16384

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

    import zipfile                  # already imported by atheris itself
    with atheris.instrument_imports(include=["wengert"]):
        import numpy as np
        import wengert as wg
        from wengert import _io
    # zipfile was loaded before the block above: instrument its functions now
    # (NumPy's compiled code carries no coverage either way).
    for name in dir(zipfile):
        obj = getattr(zipfile, name)
        if isinstance(obj, type) and obj.__module__ == "zipfile":
            for attr, member in vars(obj).items():
                if callable(member) and hasattr(member, "__code__"):
                    setattr(obj, attr, atheris.instrument_func(member))
        elif (callable(obj) and getattr(obj, "__module__", None) == "zipfile"
              and hasattr(obj, "__code__")):
            setattr(zipfile, name, atheris.instrument_func(obj))

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

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tapefiles

    def mutate(data, max_size, seed):
        """Half the time mutate one member's content and repack the archive
        with valid CRCs, so mutations get past the CRC check to the .npy,
        JSON and tape layers; otherwise mutate the raw bytes."""
        if seed % 2:
            try:
                parts = tapefiles.members(data)
            except Exception:           # not a zip: mutate it as raw bytes
                parts = None
            if parts:
                stem = sorted(parts)[(seed // 2) % len(parts)]
                parts[stem] = atheris.Mutate(parts[stem], 2 * len(parts[stem]) + 64)
                packed = tapefiles.pack(parts)
                if len(packed) <= max_size:
                    return packed
        return atheris.Mutate(data, max_size)

    def test_one_input(data):
        try:
            tape = _io._load_bytes(data)
        except wg.TapeFormatError:
            return
        exercise(tape)

    atheris.Setup(argv, test_one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(sys.argv[2])
    else:
        main(sys.argv)
