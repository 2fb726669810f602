"""Run a sweep durably: cells in this process or on Dask, each written to a Zarr store as it finishes.

:func:`run_stored_sweep` is what ``emergence sweep`` and ``emergence reproduce`` call:

* **Durable.** The store (:mod:`emergence.experiments.store`) is created up front with the
  whole grid; every finished cell is written at once (``--out run.zarr``). With
  ``--out run.nc`` the store lives beside it as ``run.nc.zarr`` and the NetCDF file is
  written from it, atomically, once no cell is pending.
* **Resumable.** Run the same command again: done cells are skipped, pending ones run,
  failed ones run again with ``retry_failed``. A store of another config is refused,
  naming the first differing field (``overwrite`` starts anew); a second sweep on the same
  store is refused while the first holds its lock.
* **Distributed.** ``workers=1`` runs cells here, one after another. ``workers=N`` starts a
  local Dask cluster of N single-threaded worker processes on 127.0.0.1; ``scheduler``
  joins an existing cluster (``tcp://host:port`` or a scheduler file). Workers send each
  cell's small result back and this process writes it, so no shared file system is needed.
  A worker that dies mid-cell is replaced (the nanny restarts it) and its cell re-run by
  the scheduler. Every cell seeds itself and runs with ``cfg.threads`` torch threads, so
  results are bitwise identical whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emergence.adapters.datasets import Dataset
from emergence.device import resolve_device
from emergence.errors import ClusterError, ConfigError, FileFormatError, first_line
from emergence.experiments import sweep as _sweep
from emergence.experiments.cell import CellResult, run_cell
from emergence.experiments.config import Event, Progress, SweepConfig, ignore_progress
from emergence.experiments.results import open_results, save_results
from emergence.experiments.store import STATUS, StoreLock, SweepStore, first_difference
from emergence.experiments.sweep import empty_sweep, sweep_attrs

__all__ = ["saved_cells", "SweepOutcome", "run_stored_sweep", "store_path"]


@dataclass
class SweepOutcome:
    """What :func:`run_stored_sweep` did.

    Attributes
    ----------
    path : Path
        The results: the ``.zarr`` store, or the ``.nc`` file when one was asked for.
    store : Path
        The Zarr store.
    ran : int
        Cells computed by this call.
    skipped : int
        Cells already done before this call.
    failed : list of (str, str)
        ``(cell, error)`` for every failed cell.
    pending : int
        Cells still pending (non-zero only after an interruption).
    recomputed : list of str
        Done cells found damaged (checksum mismatch) and computed again.
    write_seconds : float
        Time spent writing cells to the store in this call.
    cell_seconds : float
        Compute time of the cells of this call.
    """

    path: Path
    store: Path
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: int = 0
    write_seconds: float = 0.0
    recomputed: list[str] = field(default_factory=list)
    cell_seconds: float = 0.0


def store_path(out: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The Zarr store for ``out`` and the NetCDF file to derive from it (None for a ``.zarr`` out).

    Raises
    ------
    ConfigError
        If ``out`` ends in neither ``.zarr`` nor ``.nc``.

    Examples
    --------
    >>> store_path("runs/a.zarr")
    (PosixPath('runs/a.zarr'), None)
    >>> store_path("runs/a.nc")
    (PosixPath('runs/a.nc.zarr'), PosixPath('runs/a.nc'))
    """
    p = Path(out)
    if p.suffix == ".zarr":
        return p, None
    if p.suffix == ".nc":
        return Path(f"{p}.zarr"), p
    raise ConfigError(f"--out must end in .zarr (a Zarr store) or .nc (NetCDF); got {str(p)!r}")


def _layers(cfg: SweepConfig, data: Dataset) -> list[str]:
    """The layer names of the sweep's graphs, from one model of the first grid point (no training)."""
    import torch

    from emergence.adapters.architectures import ArchSpec, build
    from emergence.adapters.model_probe import ModelProbe
    from emergence.experiments.config import cell_spec

    params = cell_spec(cfg, next(cfg.indices())).config.arch_params  # the first grid point, applied
    rng = torch.get_rng_state()
    try:
        model = build(ArchSpec(cfg.arch, data.input_shape, data.num_classes, dict(params)))
        probe = ModelProbe(model, data.x_train[: min(cfg.probe_samples, 8)], cfg.thresholds[:1],
                           aggregation=cfg.aggregation)
        probe(model)
    finally:
        torch.set_rng_state(rng)
    return list(probe.layers)


def _open_store(cfg: SweepConfig, store: Path, nc: Path | None, data: Dataset, overwrite: bool) -> SweepStore:
    """The store to write: the existing one (same config), one rebuilt from a finished ``.nc``, or a new one."""
    if store.exists() and not overwrite:
        return SweepStore.open(store, cfg.to_json(), cfg.cell_dims)
    if nc is not None and nc.exists() and not overwrite:
        previous = open_results(nc)  # its working store was removed: carry on from the file
        diff = first_difference(json.loads(previous.attrs.get("config", "{}")), json.loads(cfg.to_json()))
        if diff is not None:
            raise ConfigError(f"{str(nc)!r} holds a sweep with another config ({diff}); run the same command to "
                              "resume it, or add --overwrite to start anew")
        return SweepStore.create(store, previous, cfg.cell_dims)
    template = empty_sweep(cfg, _layers(cfg, data), sweep_attrs(cfg, data))
    return SweepStore.create(store, template, cfg.cell_dims)


def _in_process(cfg: SweepConfig, todo: list[tuple[int, ...]], data: Dataset | None,
                emit: Progress) -> Iterator[CellResult]:
    coords = cfg.cell_coords
    for index in todo:
        emit(Event.CELL, sparsity=coords["sparsity"][index[-2]], seed=coords["seed"][index[-1]], label=cfg.label(index))
        emit(Event.RUNNING, count=1)
        yield run_cell(cfg, index, data=data, progress=emit)


def _remote_cell(cfg: SweepConfig, index: tuple[int, ...]) -> CellResult:
    """A cell as a Dask task: on CUDA with several GPUs, each worker takes its own GPU."""
    device = None
    if cfg.device and cfg.device == "cuda":
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            from distributed import get_worker

            name = str(get_worker().name)
            rank = int(name) if name.isdigit() else sum(map(ord, name))
            device = f"cuda:{rank % count}"
    return run_cell(cfg, index, device=device)


def _scheduler_address(scheduler: str) -> str:
    """The address of ``--scheduler``: given as is, or read from a scheduler file (checked, so that a
    missing or garbled file is one sentence instead of Dask's endless wait for the file to appear)."""
    p = Path(scheduler)
    if not (scheduler.endswith(".json") or p.is_file()):
        return scheduler
    try:
        info = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"the scheduler file {scheduler!r} does not exist; start the scheduler with "
                          "'dask scheduler --scheduler-file FILE' first, or pass its address (tcp://host:8786)") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"the scheduler file {scheduler!r} is not a Dask scheduler file ({first_line(exc)})") \
            from exc
    if not isinstance(info, dict) or not isinstance(info.get("address"), str):
        raise ConfigError(f"the scheduler file {scheduler!r} has no 'address'; is it a Dask scheduler file?")
    return info["address"]


def _connect(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    for name in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # faults are reported in one line, by us
    if scheduler:
        address = _scheduler_address(scheduler)
        try:
            return Client(address, timeout="30s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"could not reach the Dask scheduler at {scheduler!r}: {first_line(exc)}") from exc
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _fault(exc: BaseException) -> str:
    """What an exception from a Dask future says about the cluster, in words."""
    text = f"{type(exc).__name__}: {first_line(exc)}"
    if "scheduler-connection-lost" in text or "CommClosed" in text or isinstance(exc, OSError):
        return "the connection to the Dask scheduler was lost"
    if type(exc).__name__ == "KilledWorker":
        return "workers died while running a cell, more often than Dask retries"
    return text[:200]


def _on_dask(cfg: SweepConfig, todo: list[tuple[int, ...]], workers: int, scheduler: str | None,
             emit: Progress) -> Iterator[CellResult]:
    from distributed import as_completed

    client, cluster = _connect(workers, scheduler)
    try:
        futures = {client.submit(_remote_cell, cfg, index, pure=False, key=f"emergence-cell-{cfg.label(index)}-"
                                 f"{time.time_ns()}"): index for index in todo}
        emit(Event.RUNNING, count=min(len(futures), sum(client.nthreads().values()) or 1))
        lost: list[BaseException] = []
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 -- a cell's own errors come back as results, never raised
                lost.append(exc)  # KilledWorker, a lost scheduler, a cancelled future: the cell stays pending
                continue
            yield result
            with contextlib.suppress(Exception):  # the scheduler went away; the next results say so
                emit(Event.RUNNING, count=sum(len(v) for v in client.processing().values()))
        if lost:
            raise ClusterError(f"the Dask cluster failed under {len(lost)} cells ({_fault(lost[0])})")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_stored_sweep(
    cfg: SweepConfig,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    progress: Progress | None = None,
    data: Dataset | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into a Zarr store, cell by cell, in this process or on Dask.

    Parameters
    ----------
    cfg : SweepConfig
    out : str or path-like
        ``.zarr`` (the store itself) or ``.nc`` (NetCDF, written from ``<out>.zarr`` at the end).
    workers : int, default 1
        1 runs the cells in this process; N > 1 starts a local Dask cluster of N processes.
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler file of an existing Dask cluster.
    overwrite : bool, default False
        Replace a store of another config instead of refusing it.
    retry_failed : bool, default False
        Run failed cells again.
    progress : callable, optional
        Receives progress events (:data:`emergence.experiments.sweep.Progress`).
    data : Dataset, optional
        Use this instead of loading ``cfg.dataset`` (in-process runs only).

    Returns
    -------
    SweepOutcome

    Raises
    ------
    ConfigError
        For a store of another config, a store another sweep is writing, bad settings.
    FileFormatError
        If the store or the NetCDF file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from emergence.experiments.train import TrainConfig
    >>> cfg = SweepConfig(arch_params={"widths": [8]}, sparsities=(0.0, 0.5), seeds=(0,),
    ...                   train=TrainConfig(epochs=1), thresholds=(0.05,), probe_samples=16)
    >>> out = tempfile.mkdtemp() + "/run.zarr"
    >>> run_stored_sweep(cfg, out).ran, run_stored_sweep(cfg, out).skipped   # the second call resumes
    (2, 2)
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1; got {workers}")
    distributed = workers > 1 or scheduler is not None
    if distributed and data is not None:
        raise ConfigError("a Dataset object can only be used in-process; name the dataset (cfg.dataset) instead")
    if cfg.device is not None:  # on a cluster the workers' devices count, so only the name is checked here
        resolve_device(cfg.device, check_available=not distributed)
    store_p, nc = store_path(out)
    if not store_p.parent.is_dir():
        raise FileFormatError(f"the folder {str(store_p.parent)!r} does not exist")
    emit = progress or ignore_progress
    outcome = SweepOutcome(nc or store_p, store_p)
    with StoreLock(store_p):
        local = data if data is not None else _sweep.load_dataset(cfg.dataset)
        store = _open_for_run(cfg, store_p, nc, local, overwrite, outcome, emit)
        todo = _schedule(cfg, store, retry_failed, outcome, emit)
        results = (_on_dask(cfg, todo, workers, scheduler, emit) if distributed
                   else _in_process(cfg, todo, local, emit))
        _write_all(cfg, store, results, outcome, emit)
        _finalize(cfg, store, nc, outcome)
    emit(Event.DONE)
    return outcome


def _open_for_run(cfg: SweepConfig, store_p: Path, nc: Path | None, data: Dataset, overwrite: bool,
                  outcome: SweepOutcome, emit: Progress) -> SweepStore:
    """Open (or create) the store, and mark its damaged done cells pending again, telling the user."""
    store = _open_store(cfg, store_p, nc, data, overwrite)
    damaged = store.damaged()
    for idx in damaged:
        store.mark_pending(idx)
    if damaged:
        names = ", ".join(cfg.label(i) for i in damaged[:3]) + (f" and {len(damaged) - 3} more"
                                                                if len(damaged) > 3 else "")
        emit(Event.NOTE, text=f"{len(damaged)} done cells of {str(store_p)!r} no longer match the checksum written "
                          f"with them ({names}): their data was changed or lost; computing them again")
    outcome.recomputed = [cfg.label(i) for i in damaged]
    return store


def _schedule(cfg: SweepConfig, store: SweepStore, retry_failed: bool, outcome: SweepOutcome,
              emit: Progress) -> list[tuple[int, ...]]:
    """The cells to run (pending ones, and failed ones with ``retry_failed``), in row-major order."""
    status = store.status()
    wanted = {STATUS["pending"]} | ({STATUS["failed"]} if retry_failed else set())
    todo = [idx for idx in cfg.indices() if int(status[idx]) in wanted]
    outcome.skipped = int((status == STATUS["done"]).sum())
    emit(Event.START, cells=cfg.cells, epochs=cfg.train.epochs, done=outcome.skipped,
         failed=int((status == STATUS["failed"]).sum()) if not retry_failed else 0)
    return todo


def _write_all(cfg: SweepConfig, store: SweepStore, results: Iterator[CellResult], outcome: SweepOutcome,
               emit: Progress) -> None:
    """Write every cell's result to the store as it arrives; a lost cluster keeps what was saved."""
    try:
        for result in results:
            outcome.write_seconds += store.write(result)
            outcome.ran += 1
            outcome.cell_seconds += result.seconds if np.isfinite(result.seconds) else 0.0
            emit(Event.CELL_DONE, label=cfg.label(result.index), status="done" if result.ok else "failed",
                 seconds=result.seconds, error=result.error)
    except ClusterError as exc:
        status = store.status()
        emit(Event.DONE)
        raise ClusterError(f"{exc}; {int((status == STATUS['done']).sum())} of {cfg.cells} cells are saved "
                           f"and {int((status == STATUS['pending']).sum())} stay pending: rerun the same command "
                           "(on a working cluster, or without --scheduler) to resume") from exc


def _finalize(cfg: SweepConfig, store: SweepStore, nc: Path | None, outcome: SweepOutcome) -> None:
    """Count pending and failed cells, store the timing attributes, and write the NetCDF file once none is pending."""
    status = store.status()
    outcome.pending = int((status == STATUS["pending"]).sum())
    outcome.failed = [(cfg.label(idx), store.error(idx)) for idx in cfg.indices()
                      if int(status[idx]) == STATUS["failed"]]
    ds = store.dataset()
    done = ds["status"] == STATUS["done"]
    store.finalize(dict(
        seconds_per_epoch=float(ds["cell_epoch_seconds"].where(done).mean()),
        probe_seconds=float(ds["cell_probe_seconds"].where(done).mean()),
        landscape_seconds=float(ds["cell_landscape_seconds"].where(done).sum()),
    ))
    if nc is not None and outcome.pending == 0:
        for stale in nc.parent.glob(f".{nc.name}.*.tmp"):  # left by a NetCDF write that was killed
            stale.unlink(missing_ok=True)
        save_results(store.dataset(), nc)


def saved_cells(out: str | os.PathLike[str]) -> tuple[int, int]:
    """How many cells of the sweep at ``out`` (``.zarr`` or ``.nc``) are done, and how many there are.

    Returns (0, 0) when no store exists yet. Used to tell an interrupted user what is kept.
    """
    store_p, _ = store_path(out)
    if not store_p.is_dir():
        return 0, 0
    import zarr

    try:
        status = np.asarray(zarr.open_group(store_p, mode="r", zarr_format=2)["status"][...])
    except Exception:  # a store being made, or none at all
        return 0, 0
    return int((status == STATUS["done"]).sum()), int(status.size)
