"""Sweep results as xarray Datasets: the schema, and atomic NetCDF writing and reading.

Dimensions: the sweep's grid axes if any (``width``, ``lr``, ... see
:mod:`emergence.experiments.grid`), then ``sparsity``, ``seed`` (the *cell dims*), ``epoch`` (0 = before
training; a :class:`~emergence.experiments.monitor.Monitor` may hold only some epochs), ``threshold`` and
``layer`` (layer names). NaN means "not measured"; ``-inf`` in a log10 variable is E = 0, a value (it ranks
lowest in every rank test). :data:`SCHEMA` is the one table of variables: it makes the empty Dataset
(:func:`empty_results`), says where each per-cell value comes from (:func:`probe_values` fills those a probe
measures, for sweeps and monitors alike) and writes the table below. Every variable has the cell dims first,
then the dims shown:

{table}

Attributes hold the full config (JSON), package versions (JSON), the dataset and the
architecture, so a results file documents how it was made.
"""

from __future__ import annotations

import enum
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from emergence.adapters.atomic import atomic_path
from emergence.errors import ConfigError, FileFormatError, first_line

__all__ = ["LANDSCAPE_VARIABLES", "METRIC_VARIABLES", "REQUIRED_VARIABLES", "SCHEMA", "Variable", "cells_note",
           "empty_results", "open_results", "package_versions", "probe_values", "recorded_threshold", "save_results",
           "schema_table"]


class Source(str, enum.Enum):
    """Where a variable's value comes from."""

    #: A field of the probe's record (:class:`~emergence.adapters.model_probe.ProbeRecord`), per epoch.
    PROBE = "probe"
    #: A loss or accuracy the training loop evaluates (a sweep's cell, or the metrics given to a monitor).
    METRIC = "metric"
    #: The model after pruning: its sparsity, parameters, the edges of its graph.
    MODEL = "model"
    #: Measured on the model by a sweep's cell every epoch (the baselines of
    #: :mod:`emergence.experiments.baselines`); NaN in a monitor's history.
    TRAINING = "training"
    #: A loss-landscape probe (:func:`emergence.landscape.probe_landscape`), at the epochs probed.
    LANDSCAPE = "landscape"


@dataclass(frozen=True)
class Variable:
    """One variable of the results schema.

    Attributes
    ----------
    name : str
    dims : tuple of str
        The dims after the cell dims (grid axes, ``sparsity``, ``seed``).
    description : str
    units : str
        Empty when the variable has none.
    source : Source
    field : str
        The attribute of the source's record that holds it (for :attr:`Source.PROBE`, a ``[T]`` or ``[T, L]``
        tensor of a :class:`~emergence.adapters.model_probe.ProbeRecord`); defaults to ``name``.
    dtype : str, default "float64"
    fill : float or int, default NaN
        The value of "not measured".
    required : bool, default True
        A results file must hold it (landscape variables are optional).
    """

    name: str
    dims: tuple[str, ...]
    description: str
    units: str
    source: Source
    field: str = ""
    dtype: str = "float64"
    fill: float = math.nan
    required: bool = True

    @property
    def attribute(self) -> str:
        """The field of the source's record (``field``, else ``name``)."""
        return self.field or self.name


_E, _ET, _ETL = ("epoch",), ("epoch", "threshold"), ("epoch", "threshold", "layer")
_LANDSCAPE = "landscape figure, where probed (see emergence.landscape)"

#: The results schema: every variable of a sweep's (or a monitor's) Dataset, in order.
SCHEMA: tuple[Variable, ...] = (
    Variable("train_loss", _E, "mean cross-entropy on the training set", "", Source.METRIC),
    Variable("train_accuracy", _E, "accuracy on the training set", "fraction", Source.METRIC),
    Variable("test_loss", _E, "mean cross-entropy on the test set", "", Source.METRIC),
    Variable("test_accuracy", _E, "accuracy on the test set", "fraction", Source.METRIC),
    Variable("emergence_log10", _ET, "log10 E on the probe batch (-inf: E = 0)", "log10 paths", Source.PROBE),
    Variable("relative_emergence_log10", _ET, "log10 (E / edges)", "log10 paths per edge", Source.PROBE,
             "relative_log10"),
    Variable("emergence_hidden_log10", _ET, "log10 of the paths starting outside inputs (-inf: none)", "log10 paths",
             Source.PROBE, "hidden_log10", required=False),
    Variable("active_count", _ETL, "active units of a layer", "units", Source.PROBE, required=False),
    Variable("active_fraction", _ETL, "fraction of a layer's units active", "fraction", Source.PROBE),
    Variable("emergence_share", _ETL, "share of E from paths starting in a layer", "fraction", Source.PROBE,
             required=False),
    Variable("weight_norm", _E, "L2 norm of the dense and conv weights (a baseline)", "", Source.TRAINING,
             required=False),
    Variable("path_norm_log10", _E, "log10 of the l1 path norm, |W| on ones (a baseline)", "", Source.TRAINING,
             required=False),
    Variable("actual_sparsity", (), "fraction of prunable weights that are zero", "fraction", Source.MODEL),
    Variable("n_params", (), "nonzero parameters", "", Source.MODEL, dtype="int64", fill=-1),
    Variable("n_edges", (), "edges of the graph (the last epoch's)", "", Source.MODEL, "num_edges", dtype="int64",
             fill=-1, required=False),
    *(Variable(k, _E, _LANDSCAPE, "", Source.LANDSCAPE, required=False)
      for k in ("hessian_top", "hessian_trace", "hessian_trace_stderr", "slice_minima", "slice_roughness",
                "slice_curvature", "slice_gap")),
)
#: Variables every results file holds.
REQUIRED_VARIABLES = tuple(v.name for v in SCHEMA if v.required)
#: Loss-landscape variables (cell dims, epoch), NaN at epochs not probed (see :mod:`emergence.landscape`).
LANDSCAPE_VARIABLES = tuple(v.name for v in SCHEMA if v.source is Source.LANDSCAPE)
#: The losses and accuracies a training loop reports (a sweep's cell, the metrics of a monitor's record).
METRIC_VARIABLES = tuple(v.name for v in SCHEMA if v.source is Source.METRIC)


def schema_table() -> str:
    """:data:`SCHEMA` as a reStructuredText table (name, meaning, dims after the cell dims, units).

    Examples
    --------
    >>> schema_table().splitlines()[3].split()[:2]
    ['``train_loss``', 'mean']
    """
    rows = [(f"``{v.name}``", v.description, "(" + ", ".join(("...", *v.dims)) + ")", v.units or "—")
            for v in SCHEMA]
    widths = [max(len(r[i]) for r in rows + [("variable", "meaning", "dims", "units")]) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([rule, line(("variable", "meaning", "dims", "units")), rule, *map(line, rows), rule])


if __doc__ is not None:  # None under python -OO
    __doc__ = __doc__.replace("{table}", schema_table())


def probe_values(records: Sequence[Any], layers: Sequence[str]) -> dict[str, np.ndarray]:
    """The :attr:`Source.PROBE` variables of one run, from its probe records (one per epoch, in order).

    Parameters
    ----------
    records : sequence of ProbeRecord
        Each with the fields :data:`SCHEMA` names, ``[T]`` or ``[T, L]`` tensors over its own ``layers``.
    layers : sequence of str
        The ``layer`` coordinate: a record's layers are placed by name; a layer a record lacks keeps the fill.

    Returns
    -------
    dict of str to numpy.ndarray
        By variable: ``[epoch, threshold]`` or ``[epoch, threshold, layer]``.
    """
    where = {name: j for j, name in enumerate(layers)}
    out: dict[str, np.ndarray] = {}
    for v in SCHEMA:
        if v.source is not Source.PROBE:
            continue
        if "layer" not in v.dims:
            out[v.name] = np.stack([_numpy(getattr(r, v.attribute), v.dtype) for r in records])
            continue
        arr = np.full((len(records), len(records[0].thresholds), len(layers)), v.fill, dtype=v.dtype)
        for e, r in enumerate(records):
            arr[e][:, [where[name] for name in r.layers]] = _numpy(getattr(r, v.attribute), v.dtype)
        out[v.name] = arr
    return out


def _numpy(value: Any, dtype: str) -> np.ndarray:
    """A record's value (a tensor on any device, or an array) as a numpy array of ``dtype``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=dtype)
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
    """The sweep-results schema: a Dataset of the :data:`SCHEMA` variables, each filled with its ``fill``
    (NaN; counts with -1).

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
    coords |= {
        "sparsity": np.asarray(sparsities, dtype=np.float64),
        "seed": np.asarray(seeds, dtype=np.int64),
        "epoch": epoch_values,
        "threshold": np.asarray(thresholds, dtype=np.float64),
        "layer": np.asarray(layers, dtype=str),
    }
    cell = (*g, "sparsity", "seed")
    data = {}
    for v in SCHEMA:
        if v.source is Source.LANDSCAPE and not landscape:
            continue
        dims = (*cell, *v.dims)
        data[v.name] = (dims, np.full(tuple(len(coords[d]) for d in dims), v.fill, dtype=v.dtype))
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
    for v in SCHEMA:
        if v.units and v.name in ds:
            ds[v.name].attrs["units"] = v.units
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
