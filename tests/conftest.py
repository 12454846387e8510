"""Test configuration: the hypothesis profile and the per-test random generator.

``python -m pytest`` runs everything (as CI does); ``python -m pytest -m "not slow"``
is the fast suite for development, which leaves out the tests marked ``slow``
(over about a second, or starting a Python subprocess: the CLI, the mutated-file
and fuzz corpora, the hostile-input sweep, the benchmark run).
"""
import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import wengert as wg

settings.register_profile(
    # Derandomised: the suite gives the same verdict on every run.
    "wengert", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A longer run for soaking: WENGERT_HYPOTHESIS_PROFILE=soak python -m pytest ...
settings.register_profile("soak", parent=settings.get_profile("wengert"), max_examples=1000)
settings.load_profile(os.environ.get("WENGERT_HYPOTHESIS_PROFILE", "wengert"))


@pytest.fixture
def rng(request):
    """One seeded Generator per test, seeded from the test's id."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def guarded(x, p):
    """Guards, a dynamic parameter, a select, constants on both sides, two outputs."""
    y = wg.where(x[0] > 0, x[0] * 2, np.sin(x[1])) + np.maximum(x[0], x[1])
    y = 3.0 * x[0] - x[1] / 2.0 + y + 1.5
    if x[0] > p:
        return np.stack([y * p, x[0] * x[0]])
    return np.stack([y, x[1]])


@pytest.fixture(scope="module")
def rich():
    """A small tape with every feature the displays and drivers show."""
    return wg.record(guarded, np.array([1.0, 2.0]), 0.5)


@pytest.fixture
def scalar_entries():
    """Record NumPy calls as one scalar entry per element (not as array
    entries), for tests about tools that read a tape entry by entry."""
    from _helpers import scalar_recording
    with scalar_recording():
        yield
