"""Results Datasets: the schema, and NetCDF round trips that change nothing."""

import json

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from emergence import FileFormatError
from emergence.experiments.results import REQUIRED_VARIABLES, empty_results, open_results, save_results

finite_or_nan = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan")))


@st.composite
def result_sets(draw):
    s = draw(st.lists(st.floats(0, 0.99, allow_nan=False), min_size=1, max_size=3, unique=True))
    seeds = draw(st.lists(st.integers(0, 100), min_size=1, max_size=3, unique=True))
    epochs = draw(st.integers(0, 4))
    th = draw(st.lists(st.floats(1e-4, 1, allow_nan=False), min_size=1, max_size=3, unique=True))
    layers = draw(st.lists(st.text("abcdefgh._:0123456789", min_size=1, max_size=8), min_size=1, max_size=3,
                           unique=True))
    no_nul = st.characters(blacklist_characters="\x00")  # NetCDF cannot store it (save_results refuses it)
    attrs = {"config": json.dumps({"a": draw(st.integers())}), "dataset": draw(st.text(no_nul, max_size=10)),
             "probe_seconds": draw(st.floats(0, 10))}
    ds = empty_results(s, seeds, epochs, th, layers, attrs)
    for name in ds.data_vars:
        shape = ds[name].shape
        if ds[name].dtype.kind == "i":
            ds[name].values[...] = np.asarray(draw(st.lists(st.integers(0, 10**9), min_size=int(np.prod(shape)),
                                                            max_size=int(np.prod(shape))))).reshape(shape)
        else:
            ds[name].values[...] = np.asarray(draw(st.lists(finite_or_nan, min_size=int(np.prod(shape)),
                                                            max_size=int(np.prod(shape))))).reshape(shape)
    return ds


@settings(max_examples=25)
@given(result_sets())
def test_netcdf_round_trip_is_identical(tmp_path_factory, ds):
    path = save_results(ds, tmp_path_factory.mktemp("nc") / "run.nc")
    back = open_results(path)
    xr.testing.assert_identical(ds, back)
    xr.testing.assert_identical(ds, xr.open_dataset(path).load())


def test_an_attribute_netcdf_would_cut_is_refused_and_nothing_is_written(tmp_path):
    ds = empty_results([0.0], [0], 1, [0.05], ["a"], {"dataset": "mnist\x00tail"})
    with pytest.raises(FileFormatError, match="attribute 'dataset' of the results holds a NUL"):
        save_results(ds, tmp_path / "run.nc")
    assert list(tmp_path.iterdir()) == []


def test_schema_has_the_documented_dims_and_variables():
    ds = empty_results([0.0, 0.5], [0, 1, 2], 3, [0.01, 0.05], ["input", "fc1"], {})
    assert dict(ds.sizes) == {"sparsity": 2, "seed": 3, "epoch": 4, "threshold": 2, "layer": 2}
    assert set(REQUIRED_VARIABLES) <= set(ds.data_vars)
    assert ds.test_accuracy.dims == ("sparsity", "seed", "epoch")
    assert ds.emergence_log10.dims == ("sparsity", "seed", "epoch", "threshold")
    assert ds.active_fraction.dims == ("sparsity", "seed", "epoch", "threshold", "layer")
    assert ds.actual_sparsity.dims == ("sparsity", "seed")


def test_writing_is_atomic_and_bad_files_are_refused(tmp_path):
    ds = empty_results([0.0], [0], 1, [0.05], ["input"], {})
    save_results(ds, tmp_path / "a.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]
    with pytest.raises(FileFormatError, match="does not exist"):
        save_results(ds, tmp_path / "missing" / "a.nc")
    (tmp_path / "junk.nc").write_bytes(b"not netcdf at all")
    with pytest.raises(FileFormatError, match="could not read 'junk.nc' as NetCDF"):
        open_results(tmp_path / "junk.nc")
    xr.Dataset({"x": ("a", [1, 2])}).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(FileFormatError, match="not a sweep result"):
        open_results(tmp_path / "other.nc")
    with pytest.raises(FileFormatError, match="no such file"):
        open_results(tmp_path / "nope.nc")
