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


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(args, **kw)``: the real command line in a subprocess (``python -m emergence.cli``), run from the
    repository root with its output captured as text; ``kw`` goes to :func:`subprocess.run` (``timeout=``)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def run(args, **kw):
        return subprocess.run([sys.executable, "-m", "emergence.cli", *map(str, args)], cwd=root,
                              capture_output=True, text=True, **kw)

    return run


@pytest.fixture(scope="session")
def science():
    """``science(results)``: a sweep's results (a Dataset, or the path of a Zarr store) without the store's
    bookkeeping variables -- what two runs of the same sweep must agree on."""
    from pathlib import Path

    import xarray as xr

    from emergence.experiments.store import BOOKKEEPING

    def strip(results):
        if isinstance(results, (str, Path)):
            with xr.open_zarr(results) as ds:
                results = ds.load()
        return results.drop_vars([v for v in BOOKKEEPING if v in results])

    return strip
