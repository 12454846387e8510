"""Fuzzing of the tape file reader: sample tapes, file surgery, a crash-proof
corpus runner (``tapefiles.py``) and an atheris harness (``fuzz_load.py``)."""
