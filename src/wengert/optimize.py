"""Tape optimisation (placeholder until the optimiser lands)."""


def optimize_tape(tape):
    raise NotImplementedError("tape.optimize is not built yet")
