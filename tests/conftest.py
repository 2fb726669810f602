"""Hypothesis profiles: ``ci`` (default, fast) and ``thorough`` (HYPOTHESIS_PROFILE=thorough)."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """A small real dataset file (12x12 images, 4 classes) so sweep cells take a fraction of a second."""
    import numpy as np

    d = tmp_path_factory.mktemp("data")
    g = np.random.default_rng(0)
    x = g.random((600, 12, 12))
    y = (x[:, :6].mean((1, 2)) > 0.5).astype(int) + 2 * (x[:, :, :6].mean((1, 2)) > 0.5).astype(int)
    np.savez(d / "tiny.npz", x=(x * 255).round().astype(np.uint8), y=y)
    return d / "tiny.npz"
