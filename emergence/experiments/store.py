"""Durable sweep results: a Zarr store made up front with the whole grid, filled cell by cell.

:meth:`SweepStore.create` writes the full results Dataset of a config (every coordinate
known, every value missing) to a Zarr store (format 2, consolidated metadata, readable with
``xr.open_zarr`` by any xarray), chunked so that no two cells share a chunk, with the config
JSON in its attributes and per-cell bookkeeping:

==========================  ======================================================
``status``                  0 pending, 1 done, 2 failed (CF ``flag_values``)
``error``                   why a failed cell failed (one line), else ""
``cell_runs``               how many times the cell was computed and written
``cell_finished_at``        when it was written (seconds since the epoch)
``cell_seconds``            its wall time; ``cell_write_seconds``: time to store it
``cell_epoch_seconds`` ...  its training seconds per epoch, probe and landscape time
``cell_checksum``           CRC-32 of the cell's results as read back after writing
==========================  ======================================================

The checksum makes damage visible: :meth:`SweepStore.damaged` recomputes it for every done
cell (a deleted chunk reads back as missing values, a changed one as other bytes), the
runner computes damaged cells again, and :func:`~emergence.experiments.results.open_results`
refuses to report on them.

:meth:`SweepStore.write` stores one :class:`~emergence.experiments.sweep.CellResult`: the
data first, then its checksum (of the data as read back), the status last. Zarr writes each
chunk to a temporary file and renames it, so a kill at any moment leaves every finished cell
readable and at worst one cell pending. A store is made in a temporary folder beside its
path and renamed into place once complete, so a kill while it is made leaves no store.
:class:`StoreLock` keeps a second sweep off a store that one is writing: an OS-level lock
(``flock``) that dies with its process, so a killed sweep never leaves a stale lock.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from emergence.errors import ConfigError, FileFormatError, first_line

__all__ = ["STATUS", "BOOKKEEPING", "StoreLock", "SweepStore", "cell_checksums", "damaged_cells", "first_difference"]

#: Cell status codes in the ``status`` variable.
STATUS = {"pending": 0, "done": 1, "failed": 2}
#: Per-cell variables that describe the run, not the results.
BOOKKEEPING = ("status", "error", "cell_runs", "cell_finished_at", "cell_seconds", "cell_write_seconds",
               "cell_epoch_seconds", "cell_probe_seconds", "cell_landscape_seconds", "cell_checksum")


def _digest(blocks: list[Any]) -> int:
    """CRC-32 of a cell's arrays (in the given order), with every NaN written as the same bits."""
    import zlib

    crc = 0
    for block in blocks:
        a = np.asarray(block)
        if a.dtype.kind in "fiub":  # as float64, so that a decoded integer variable hashes the same
            a = a.astype(np.float64)
            a = np.where(np.isnan(a), np.nan, a)
        else:
            a = np.asarray([str(v) for v in a.ravel()], dtype=object)
            crc = zlib.crc32("\x00".join(a).encode(), crc)
            continue
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


def _result_names(names: list[str], dims: dict[str, tuple[str, ...]], cell_dims: tuple[str, ...]) -> list[str]:
    """The variables that hold a cell's results: those over the cell dims, bookkeeping aside (sorted)."""
    return sorted(n for n in names if n not in BOOKKEEPING and tuple(dims[n][:len(cell_dims)]) == tuple(cell_dims))


def damaged_cells(ds: Any, cell_dims: tuple[str, ...]) -> list[tuple[int, ...]]:
    """Done cells of a results Dataset whose checksum differs from the one recorded (none without records)."""
    if "cell_checksum" not in ds or "status" not in ds:
        return []
    done = ds["status"].transpose(*cell_dims).values == STATUS["done"]
    recorded = ds["cell_checksum"].transpose(*cell_dims).values
    bad = done & (cell_checksums(ds, cell_dims) != recorded)
    return [tuple(int(i) for i in idx) for idx in zip(*np.nonzero(bad), strict=False)]


def cell_checksums(ds: Any, cell_dims: tuple[str, ...]) -> np.ndarray:
    """The checksum of every cell of a results Dataset (shape of the cell dims), as the store records it.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"acc": (("seed", "epoch"), [[0.5, 0.6], [0.7, np.nan]])}, coords={"seed": [0, 1]})
    >>> sums = cell_checksums(ds, ("seed",))
    >>> sums.shape, bool(sums[0] != sums[1])
    ((2,), True)
    """
    names = _result_names(list(ds.data_vars), {n: ds[n].dims for n in ds.data_vars}, cell_dims)
    values = {n: ds[n].transpose(*cell_dims, ...).values for n in names}
    shape = tuple(ds.sizes[d] for d in cell_dims)
    out = np.zeros(shape, dtype=np.int64)
    for idx in np.ndindex(*shape):
        out[idx] = _digest([values[n][idx] for n in names])
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k in sorted(value):
            out.update(_flatten(value[k], f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def first_difference(stored: dict[str, Any], asked: dict[str, Any]) -> str | None:
    """The first field (dotted, in sorted order) whose value differs, as ``"field: stored X, asked Y"``.

    Examples
    --------
    >>> first_difference({"train": {"lr": 0.1, "epochs": 2}}, {"train": {"lr": 0.01, "epochs": 2}})
    'train.lr: stored 0.1, asked 0.01'
    >>> first_difference({"a": 1}, {"a": 1}) is None
    True
    """
    a, b = _flatten(stored), _flatten(asked)
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b or a[key] != b[key]:
            return (f"{key}: stored {json.dumps(a[key]) if key in a else 'nothing'}, "
                    f"asked {json.dumps(b[key]) if key in b else 'nothing'}")
    return None


class StoreLock:
    """An exclusive ``flock`` on ``<store>.lock``: held while a sweep writes, released when its process dies.

    Raises
    ------
    ConfigError
        If another process holds it (naming that process).
    """

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(store)}.lock")
        self._fd: int | None = None

    def __enter__(self) -> StoreLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FileFormatError(f"cannot create the lock file {str(self.path)!r}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"another sweep (pid {holder}) is writing {str(self.path)[:-5]!r}; wait for it to "
                              "finish or stop it, then run this command again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays (removing it would race)
            self._fd = None


@contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Zarr and xarray warn about formats and defaults that do not concern a user of the store."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="zarr")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


class SweepStore:
    """A sweep's Zarr store (see the module docstring); open one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, group: Any, cell_dims: tuple[str, ...]) -> None:
        self.path, self._group, self.cell_dims = path, group, cell_dims

    @classmethod
    def create(cls, path: str | os.PathLike[str], template: Any, cell_dims: tuple[str, ...]) -> SweepStore:
        """Write ``template`` (the empty results Dataset) as a new store, replacing any store at ``path``.

        Raises
        ------
        FileFormatError
            If the store cannot be written (no such folder, no permission).
        """
        import zarr

        p = Path(path)
        ds = template.copy()
        shape = tuple(ds.sizes[d] for d in cell_dims)
        if "status" not in ds:  # a template; a finished Dataset brings its own bookkeeping
            ds["status"] = (cell_dims, np.zeros(shape, dtype=np.int8),
                            {"flag_values": [0, 1, 2], "flag_meanings": "pending done failed"})
            ds["error"] = (cell_dims, np.full(shape, "", dtype=object))
            ds["cell_runs"] = (cell_dims, np.zeros(shape, dtype=np.int64))
            for name, units in (("cell_finished_at", "seconds since 1970-01-01"), ("cell_seconds", "s"),
                                ("cell_write_seconds", "s"), ("cell_epoch_seconds", "s"), ("cell_probe_seconds", "s"),
                                ("cell_landscape_seconds", "s")):
                ds[name] = (cell_dims, np.full(shape, np.nan), {"units": units})
        for var in ds.variables.values():
            var.encoding = {}  # chunks and codecs of a file it was read from do not apply
        if "cell_checksum" not in ds:
            ds["cell_checksum"] = (cell_dims, np.where(ds["status"].values == STATUS["done"],
                                                       cell_checksums(ds, cell_dims), 0).astype(np.int64))
        encoding = {name: {"chunks": tuple(1 if d in cell_dims else ds.sizes[d] for d in var.dims)}
                    for name, var in ds.data_vars.items()}
        for stale in p.parent.glob(f".{p.name}.partial-*"):  # left by a sweep killed while it made a store
            shutil.rmtree(stale, ignore_errors=True)
        partial = p.parent / f".{p.name}.partial-{os.getpid()}"
        try:
            with _quiet_zarr():
                ds.to_zarr(partial, mode="w", encoding=encoding, consolidated=True, zarr_format=2)
            if p.exists():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            os.rename(partial, p)
            group = zarr.open_group(p, mode="r+", zarr_format=2)
        except (OSError, ValueError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise FileFormatError(f"could not create the store {str(p)!r}: {first_line(exc)}") from exc
        return cls(p, group, cell_dims)

    @classmethod
    def open(cls, path: str | os.PathLike[str], config_json: str, cell_dims: tuple[str, ...]) -> SweepStore:
        """Open an existing store for ``config_json``.

        Raises
        ------
        FileFormatError
            If ``path`` is not a sweep store.
        ConfigError
            If the store was written with another config (naming the first differing field).
        """
        import zarr

        p = Path(path)
        try:
            group = zarr.open_group(p, mode="r+", zarr_format=2)
            stored = json.loads(group.attrs["config"])
            group["status"]
        except Exception as exc:  # zarr raises several kinds for a folder that is not a store
            raise FileFormatError(f"{str(p)!r} exists but is not a sweep store ({first_line(exc)}); "
                                  "choose another --out, or --overwrite to replace it") from exc
        diff = first_difference(stored, json.loads(config_json))
        if diff is not None:
            raise ConfigError(f"{str(p)!r} holds a sweep with another config ({diff}); run the same command to "
                              "resume it, or add --overwrite to start anew")
        return cls(p, group, cell_dims)

    def status(self) -> np.ndarray:
        """The status code of every cell (shape of the cell dims)."""
        return np.asarray(self._group["status"][...])

    def error(self, index: tuple[int, ...]) -> str:
        """The error message of a failed cell ("" otherwise)."""
        return str(self._group["error"][tuple(index)])

    def layers(self) -> list[str]:
        return [str(v) for v in self._group["layer"][...]]

    def write(self, result: Any) -> float:
        """Store one cell's result (data first, status last); returns the seconds the data took to write.

        Raises
        ------
        FileFormatError
            If the cell's layers do not match the store's, or the store cannot be written.
        """
        g, at = self._group, tuple(result.index)
        start = time.perf_counter()
        try:
            if result.values is not None:
                if list(result.layers) != self.layers():
                    raise FileFormatError(f"cell {at} measured layers {result.layers}, but the store has "
                                          f"{self.layers()}")
                for name, value in result.values.items():
                    g[name][at] = value
            seconds = time.perf_counter() - start
            t = result.timing
            g["cell_runs"][at] = int(g["cell_runs"][at]) + 1
            g["cell_seconds"][at] = result.seconds
            g["cell_write_seconds"][at] = seconds
            g["cell_epoch_seconds"][at] = t["train"] / t["epochs"] if t["epochs"] else np.nan
            g["cell_probe_seconds"][at] = t["probe"] / t["probes"] if t["probes"] else np.nan
            g["cell_landscape_seconds"][at] = t["landscape"]
            g["cell_finished_at"][at] = time.time()
            g["error"][at] = result.error or ""
            if "cell_checksum" in g:  # stores made before checksums existed have none
                g["cell_checksum"][at] = self._checksum(at) if result.error is None else 0
            g["status"][at] = STATUS["done"] if result.error is None else STATUS["failed"]
        except OSError as exc:
            raise FileFormatError(f"could not write to the store {str(self.path)!r}: {exc}") from exc
        return seconds

    def _names(self) -> list[str]:
        dims = {n: tuple(a.attrs.get("_ARRAY_DIMENSIONS", ())) for n, a in self._group.arrays()}
        return _result_names(list(dims), dims, self.cell_dims)

    def _checksum(self, at: tuple[int, ...]) -> int:
        """The checksum of one cell's results, read back from the store."""
        return _digest([self._group[n][at] for n in self._names()])

    def damaged(self) -> list[tuple[int, ...]]:
        """Done cells whose results no longer match the checksum recorded when they were written."""
        if "cell_checksum" not in self._group:
            return []
        return damaged_cells(self.dataset(), self.cell_dims)

    def mark_pending(self, index: tuple[int, ...]) -> None:
        """Book a cell as pending again (its results are computed anew by the next run)."""
        self._group["status"][tuple(int(i) for i in index)] = STATUS["pending"]

    def finalize(self, attrs: dict[str, Any]) -> None:
        """Add ``attrs`` to the store's attributes (and re-consolidate its metadata)."""
        import zarr

        self._group.attrs.update(attrs)
        with _quiet_zarr():
            zarr.consolidate_metadata(self.path, zarr_format=2)

    def dataset(self) -> Any:
        """The whole store as an in-memory xarray Dataset."""
        import xarray as xr

        with xr.open_zarr(self.path, consolidated=True) as ds:
            return ds.load()
