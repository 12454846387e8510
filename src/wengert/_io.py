"""Tape files (placeholder until the persistence module lands)."""


def save_tape(tape, path):
    raise NotImplementedError("tape.save is not built yet")


def load(path):
    raise NotImplementedError("wg.load is not built yet")
