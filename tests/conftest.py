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


@pytest.fixture
def scalar_entries():
    """Record NumPy calls as one scalar entry per element (not as array
    entries), for tests about tools that read a tape entry by entry."""
    from _helpers import scalar_recording
    with scalar_recording():
        yield
