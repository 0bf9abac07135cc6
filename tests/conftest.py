"""Shared test settings: strict numerics and a deterministic hypothesis profile."""

import os

# The command line enables JAX's persistent compilation cache in a user directory; tests that run it
# in-process stay hermetic (tests/test_compilation_cache.py exercises the cache with its own directory).
os.environ.setdefault("EOSMODEL_NO_COMPILATION_CACHE", "1")

import jax  # noqa: E402
import pytest
from hypothesis import HealthCheck, settings

# Deterministic in CI and locally; compile time makes per-example deadlines meaningless.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (``jax.enable_x64`` context)."""
    with jax.enable_x64(True):
        yield
