"""Sweep results as xarray Datasets: the schema, and atomic NetCDF writing and reading.

Dimensions: the sweep's grid axes if any (``width``, ``lr``, ... see
:mod:`emergence.experiments.grid`), then ``sparsity``, ``seed``, ``epoch`` (0 = before
training; a :class:`~emergence.experiments.monitor.Monitor` may hold only some epochs), ``threshold`` and
``layer`` (layer names). :func:`empty_results` makes the schema. Variables (grid dims, where present,
come first in every variable that has ``sparsity``):

==========================  ==========================================  ==========================
``train_loss`` ...           loss and accuracy on train and test          (sparsity, seed, epoch)
``emergence_log10``          log10 E on the probe batch (NaN when E = 0)  (..., epoch, threshold)
``relative_emergence_log10`` log10 (E / edges)                            (..., epoch, threshold)
``emergence_hidden_log10``   log10 of the paths starting outside inputs   (..., epoch, threshold)
``active_count``             active units of a layer                      (..., threshold, layer)
``active_fraction``          fraction of a layer's units active           (..., threshold, layer)
``emergence_share``          share of E from paths starting in a layer    (..., threshold, layer)
``actual_sparsity``          fraction of prunable weights that are zero   (sparsity, seed)
``n_params``                 nonzero parameters                           (sparsity, seed)
``n_edges``                  edges of the graph                           (sparsity, seed)
``hessian_top`` ...          landscape figures, where probed (optional)   (sparsity, seed, epoch)
==========================  ==========================================  ==========================

Attributes hold the full config (JSON), package versions (JSON), the dataset and the
architecture, so a results file documents how it was made.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from emergence.adapters.atomic import atomic_path
from emergence.errors import ConfigError, FileFormatError, first_line

__all__ = ["REQUIRED_VARIABLES", "LANDSCAPE_VARIABLES", "package_versions", "save_results", "open_results",
           "recorded_threshold", "cells_note",
           "empty_results"]

REQUIRED_VARIABLES = (
    "train_loss", "train_accuracy", "test_loss", "test_accuracy", "emergence_log10", "relative_emergence_log10",
    "active_fraction", "actual_sparsity", "n_params",
)
#: Loss-landscape variables (sparsity, seed, epoch), NaN at epochs not probed (see :mod:`emergence.landscape`).
LANDSCAPE_VARIABLES = ("hessian_top", "hessian_trace", "hessian_trace_stderr", "slice_minima", "slice_roughness",
                       "slice_curvature", "slice_gap")
_PACKAGES = ("emergence", "torch", "numpy", "scipy", "xarray", "netCDF4", "onnx", "onnxruntime")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape a result.

    Examples
    --------
    >>> "torch" in package_versions()
    True
    """
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def empty_results(
    sparsities: Sequence[float], seeds: Sequence[int], epochs: int | Sequence[int], thresholds: Sequence[float],
    layers: Sequence[str], attrs: Mapping[str, Any] | None = None, *, landscape: bool = False,
    grid: Sequence[tuple[str, Sequence[Any]]] = (),
) -> Any:
    """The sweep-results schema: a Dataset of the variables above, filled with NaN (counts with -1).

    This is the one place the schema is made: sweeps fill it cell by cell, a
    :class:`~emergence.experiments.monitor.Monitor` fills it from its history, and your own code can fill
    it too; ``emergence report`` and ``emergence plot`` read any Dataset made from it.

    Parameters
    ----------
    sparsities, seeds : sequence
        Coordinates of the ``sparsity`` and ``seed`` axes.
    epochs : int or sequence of int
        ``E`` for epochs ``0 .. E`` (0 = before training), or the epoch numbers themselves.
    thresholds : sequence of float
    layers : sequence of str
        Layer names, inputs first.
    attrs : mapping, optional
        Dataset attributes (``config``, ``versions``, ``dataset`` ... as JSON strings or plain values).
    landscape : bool, default False
        Add the loss-landscape variables.
    grid : sequence of (str, sequence)
        ``(key, values)`` pairs: leading dimensions with those coordinates.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ConfigError
        For epoch numbers that are negative, repeated or unsorted.

    Examples
    --------
    >>> ds = empty_results([0.0, 0.5], [0], 2, [0.05], ["input", "fc"], {})
    >>> dict(ds.sizes)
    {'sparsity': 2, 'seed': 1, 'epoch': 3, 'threshold': 1, 'layer': 2}
    >>> empty_results([0.0], [0], [0, 5, 10], [0.05], ["input"])["epoch"].values.tolist()
    [0, 5, 10]
    """
    import xarray as xr

    if isinstance(epochs, (int, np.integer)):
        epoch_values = np.arange(int(epochs) + 1, dtype=np.int64)
    else:
        epoch_values = np.asarray(list(epochs), dtype=np.int64)
        if epoch_values.size == 0 or (epoch_values < 0).any() or (np.diff(epoch_values) <= 0).any():
            raise ConfigError(f"epochs must be increasing integers >= 0, got {epoch_values.tolist()}")

    coords: dict[str, np.ndarray] = {k: np.asarray(list(v)) for k, v in grid}
    g = tuple(k for k, _ in grid)
    gs = tuple(len(coords[k]) for k in g)
    coords |= {
        "sparsity": np.asarray(sparsities, dtype=np.float64),
        "seed": np.asarray(seeds, dtype=np.int64),
        "epoch": epoch_values,
        "threshold": np.asarray(thresholds, dtype=np.float64),
        "layer": np.asarray(layers, dtype=str),
    }
    s, r, e, t, nl = (len(coords[k]) for k in ("sparsity", "seed", "epoch", "threshold", "layer"))

    def nan(*shape: int) -> np.ndarray:
        return np.full((*gs, *shape), np.nan)

    base = (*g, "sparsity", "seed", "epoch")
    data = {
        "train_loss": (base, nan(s, r, e)),
        "train_accuracy": (base, nan(s, r, e)),
        "test_loss": (base, nan(s, r, e)),
        "test_accuracy": (base, nan(s, r, e)),
        "emergence_log10": ((*base, "threshold"), nan(s, r, e, t)),
        "relative_emergence_log10": ((*base, "threshold"), nan(s, r, e, t)),
        "emergence_hidden_log10": ((*base, "threshold"), nan(s, r, e, t)),
        "active_count": ((*base, "threshold", "layer"), nan(s, r, e, t, nl)),
        "active_fraction": ((*base, "threshold", "layer"), nan(s, r, e, t, nl)),
        "emergence_share": ((*base, "threshold", "layer"), nan(s, r, e, t, nl)),
        "actual_sparsity": ((*g, "sparsity", "seed"), nan(s, r)),
        "n_params": ((*g, "sparsity", "seed"), np.full((*gs, s, r), -1, dtype=np.int64)),
        "n_edges": ((*g, "sparsity", "seed"), np.full((*gs, s, r), -1, dtype=np.int64)),
    }
    if landscape:
        data.update({k: (base, nan(s, r, e)) for k in LANDSCAPE_VARIABLES})
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
    units = {"train_accuracy": "fraction", "test_accuracy": "fraction", "active_fraction": "fraction",
             "emergence_share": "fraction", "actual_sparsity": "fraction", "emergence_log10": "log10 paths",
             "relative_emergence_log10": "log10 paths per edge", "emergence_hidden_log10": "log10 paths",
             "active_count": "units"}
    for k, u in units.items():
        ds[k].attrs["units"] = u
    return ds


def save_results(ds: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to NetCDF atomically (a temporary file beside ``path``, then a rename).

    The temporary file is read back and compared (variables, shapes, every done cell's checksum)
    before it is renamed, so a full disk or a file-size limit leaves no partial file at ``path``.

    Raises
    ------
    FileFormatError
        If the folder does not exist, an attribute holds a NUL character (NetCDF would cut it there), or
        the file cannot be written or read back.
    """
    import xarray as xr

    from emergence.experiments.store import damaged_cells

    p = Path(path)
    for owner, attrs in [("the results", ds.attrs), *((f"variable {k!r}", ds[k].attrs) for k in ds.variables)]:
        for key, value in attrs.items():
            if isinstance(value, str) and "\x00" in value:  # NetCDF strings end at a NUL: the rest would be lost
                raise FileFormatError(f"cannot write {str(p)!r}: attribute {key!r} of {owner} holds a NUL "
                                      "character, which NetCDF cannot store; remove it first")
    with atomic_path(p) as tmp:
        try:
            ds.to_netcdf(tmp, engine="netcdf4")
            with xr.open_dataset(tmp, engine="netcdf4") as back:  # verified before it takes the name
                ok = set(back.variables) == set(ds.variables) and all(back[v].shape == ds[v].shape
                                                                      for v in ds.variables)
                if ok and "status" in ds and "cell_checksum" in ds:
                    back = back.load()
                    ok = not damaged_cells(back, tuple(ds["status"].dims))
        except Exception as exc:  # netCDF4/HDF5 raise OSError, RuntimeError ... (a full disk, a size limit)
            hint = " (a full disk or a file-size limit?)" if "HDF error" in str(exc) else ""
            raise FileFormatError(f"could not write {str(p)!r}: {first_line(exc)}{hint}; nothing was written there") \
                from exc
        if not ok:
            raise FileFormatError(f"could not write {str(p)!r}: the file read back differs from what was written; "
                                  "nothing was written there")
    return p


def open_results(path: str | os.PathLike[str]) -> Any:
    """Read a results file (NetCDF from :func:`save_results`, or a sweep's ``.zarr`` store), fully loaded.

    Raises
    ------
    FileFormatError
        If the file is missing, not NetCDF, or lacks the variables of a sweep.
    """
    import xarray as xr

    p = Path(path)
    if p.is_dir():  # a Zarr store written by a sweep (emergence.experiments.store)
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with xr.open_zarr(p) as z:
                    ds = z.load()
        except Exception as exc:  # zarr raises several kinds for a folder that is not a store
            raise FileFormatError(f"could not read {p.name!r} as a Zarr store: {first_line(exc)}") from exc
    elif not p.is_file():
        raise FileFormatError(f"no such file: {str(p)!r}")
    else:
        try:
            ds = xr.load_dataset(p, engine="netcdf4")
        except Exception as exc:  # netCDF4/HDF5 raise OSError, RuntimeError, ValueError ...
            raise FileFormatError(f"could not read {p.name!r} as NetCDF: {first_line(exc)}") from exc
    missing = [v for v in REQUIRED_VARIABLES if v not in ds]
    if missing:
        raise FileFormatError(f"{p.name!r} is not a sweep result: it lacks {', '.join(missing)}")
    _check_integrity(ds, p.name)
    return _done_cells_only(ds, p.name)


def _done_cells_only(ds: Any, name: str) -> Any:
    """Results of done cells only: pending and failed cells' values become NaN, their counts an attribute.

    Raises
    ------
    FileFormatError
        When no cell is done (nothing to report).
    """
    from emergence.experiments.store import BOOKKEEPING, STATUS

    if "status" not in ds:
        return ds
    status = ds["status"]
    counts = {k: int((status.values == v).sum()) for k, v in STATUS.items()}
    if counts["done"] == 0:
        raise FileFormatError(f"{name!r} has no done cell yet ({counts['pending']} pending, {counts['failed']} "
                              "failed); run or resume the sweep first")
    ds.attrs["cell_counts"] = json.dumps(counts)
    if counts["done"] == status.size:
        return ds
    done = status == STATUS["done"]
    for v in ds.data_vars:
        if v not in BOOKKEEPING and set(status.dims) <= set(ds[v].dims) and ds[v].dtype.kind in "fiu":
            ds[v] = ds[v].astype(float).where(done)
    return ds


def cells_note(ds: Any) -> str | None:
    """One line saying which cells a report or figure leaves out (None when every cell is done).

    Examples
    --------
    >>> import xarray as xr
    >>> cells_note(xr.Dataset(attrs={"cell_counts": '{"pending": 2, "done": 4, "failed": 1}'}))
    'uses the 4 done cells of 7; 2 pending and 1 failed are left out'
    """
    counts = json.loads(ds.attrs.get("cell_counts", "{}") or "{}")
    if not counts or counts.get("done", 0) == sum(counts.values()):
        return None
    return (f"uses the {counts['done']} done cells of {sum(counts.values())}; {counts.get('pending', 0)} pending "
            f"and {counts.get('failed', 0)} failed are left out")


def _check_integrity(ds: Any, name: str) -> None:
    """Refuse results whose done cells no longer match the checksums written with them."""
    from emergence.experiments.store import damaged_cells

    if "status" not in ds:
        return
    dims = tuple(ds["status"].dims)
    bad = damaged_cells(ds, dims)
    if bad:
        first = " ".join(f"{d}={ds[d].values[i]}" for d, i in zip(dims, bad[0], strict=False))
        raise FileFormatError(f"{name!r}: {len(bad)} done cells no longer match the checksum written with them "
                              f"(first: {first}), so their data was changed or lost; run the sweep command again to "
                              "compute them anew")


def recorded_threshold(ds: Any, threshold: float) -> float:
    """The recorded threshold equal to ``threshold`` (to float rounding); refused when none is.

    A sweep records emergence at the thresholds it was run with; a table at any other one
    would silently show the nearest.

    Raises
    ------
    ConfigError
        Naming the thresholds the results hold.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(coords={"threshold": [0.01, 0.05]})
    >>> recorded_threshold(ds, 0.05)
    0.05
    >>> recorded_threshold(ds, 0.3)
    Traceback (most recent call last):
    ...
    emergence.errors.ConfigError: threshold 0.3 was not recorded (these results hold 0.01, 0.05); pass one of ...
    """
    import numpy as np

    taus = np.asarray(ds.threshold.values, dtype=float)
    hit = np.flatnonzero(np.isclose(taus, float(threshold), rtol=1e-9, atol=1e-12))
    if hit.size == 0:
        held = ", ".join(f"{t:g}" for t in taus)
        raise ConfigError(f"threshold {threshold:g} was not recorded (these results hold {held}); pass one of those "
                          "with --threshold")
    return float(taus[hit[0]])
