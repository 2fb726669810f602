"""Pruning x training-dynamics sweeps: train one model per cell and record everything per epoch.

A sweep is a grid of independent cells, one per combination of the grid axes' values (see
:mod:`emergence.experiments.grid`), sparsity and seed. :func:`~emergence.experiments.cell.run_cell`
computes one cell and returns its small result, so cells can run anywhere (in this process, or as
Dask tasks: :mod:`emergence.experiments.runner`); :func:`run_sweep` runs them all in memory.

Each cell is seeded on its own (weights from ``torch.manual_seed(seed)``, batch order from its
own generator, ``threads`` torch threads), so a cell's numbers do not depend on which other
cells ran before it, in which process, or how many ran at once. It is pruned as
:class:`~emergence.experiments.prune.PruneConfig` says, and trained; at epoch 0
(before training) and after every epoch it records train/test loss and accuracy and,
on a fixed probe batch from the training set, emergence at every threshold (see
:class:`~emergence.adapters.model_probe.ModelProbe`). The result is an xarray Dataset
(:mod:`emergence.experiments.results`) with the config and package versions in its attributes.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import json
from typing import Any

from emergence.adapters.architectures import ArchSpec, build
from emergence.adapters.datasets import Dataset, load_dataset
from emergence.errors import EmergenceError
from emergence.experiments.cell import CellResult, run_cell
from emergence.experiments.config import Event, Progress, SweepConfig, ignore_progress
from emergence.experiments.grid import apply_point
from emergence.experiments.results import empty_results, package_versions
from emergence.experiments.train import TrainConfig  # noqa: F401  (re-exported: configs are built from here)

__all__ = ["CellResult", "Progress", "SweepConfig", "run_cell", "run_sweep"]  # re-exported from .cell and .config


def sweep_attrs(cfg: SweepConfig, data: Dataset) -> dict[str, Any]:
    """The attributes every results Dataset of ``cfg`` carries (config, versions, dataset, architecture)."""
    return dict(
        config=cfg.to_json(),
        versions=json.dumps(package_versions(), sort_keys=True),
        dataset=cfg.dataset,
        architecture=ArchSpec(cfg.arch, data.input_shape, data.num_classes, dict(cfg.arch_params)).to_json(),
        prunable="weights of dense and conv layers (biases and batch norm are never pruned)",
        accuracy_gain="test accuracy",
        granularity=cfg.granularity,
    )


def empty_sweep(cfg: SweepConfig, layers: list[str], attrs: dict[str, Any] | None = None) -> Any:
    """The results Dataset of ``cfg``, every value missing (see :func:`emergence.experiments.results.empty_results`)."""
    return empty_results(list(cfg.sparsities), list(cfg.seeds), cfg.train.epochs, list(cfg.thresholds), layers,
                         dict(attrs or {}), landscape=cfg.landscape is not None, grid=cfg.grid)


def run_sweep(cfg: SweepConfig, *, progress: Progress | None = None, data: Dataset | None = None) -> Any:
    """Run every cell of ``cfg`` in this process and return the results Dataset (nothing is written).

    For long sweeps use :func:`emergence.experiments.runner.run_stored_sweep`, which writes every
    cell to a Zarr store as it finishes, resumes after a kill, and runs cells on Dask.

    Parameters
    ----------
    cfg : SweepConfig
    progress : callable, optional
        Receives progress events (see :data:`Progress`).
    data : Dataset, optional
        Use this instead of loading ``cfg.dataset`` (its name is still recorded).

    Returns
    -------
    xarray.Dataset
        See :mod:`emergence.experiments.results`; the attrs also hold ``seconds_per_epoch`` and
        ``probe_seconds`` (the measuring cost).

    Raises
    ------
    ConfigError, FileFormatError
        For an unknown architecture or dataset, or bad settings.
    EmergenceError
        When a cell fails (e.g. training diverges), naming the cell.

    Examples
    --------
    >>> d = load_dataset("mnist")
    >>> small = Dataset("mnist", d.x_train[:512], d.y_train[:512], d.x_test[:128], d.y_test[:128])
    >>> cfg = SweepConfig(arch_params={"widths": [16]}, sparsities=(0.0, 0.5), seeds=(0,),
    ...                   train=TrainConfig(epochs=1), thresholds=(0.05,), probe_samples=32)
    >>> ds = run_sweep(cfg, data=small)
    >>> float(ds.actual_sparsity.sel(sparsity=0.5, seed=0))
    0.5
    """
    data = data or load_dataset(cfg.dataset)
    for point in cfg.points():  # fail early on a bad architecture
        _, _, params = apply_point(cfg.train, cfg.prune, cfg.arch_params, point)
        build(ArchSpec(cfg.arch, data.input_shape, data.num_classes, dict(params)))
    emit = progress or ignore_progress
    emit(Event.START, cells=cfg.cells, epochs=cfg.train.epochs, done=0)
    ds = None
    timing = {"train": 0.0, "probe": 0.0, "epochs": 0, "probes": 0, "landscape": 0.0}
    coords = cfg.cell_coords
    for index in cfg.indices():
        emit(Event.CELL, sparsity=coords["sparsity"][index[-2]], seed=coords["seed"][index[-1]], label=cfg.label(index))
        result = run_cell(cfg, index, data=data, progress=emit)
        if not result.ok:
            raise EmergenceError(f"cell {cfg.label(index)} failed: {result.error}")
        for k in timing:
            timing[k] += result.timing[k]
        if ds is None:
            ds = empty_sweep(cfg, result.layers)
        for name, value in result.values.items():
            ds[name].values[result.index] = value
        emit(Event.CELL_DONE, label=cfg.label(index), status="done", seconds=result.seconds)
    assert ds is not None
    ds.attrs.update(sweep_attrs(cfg, data), **timing_attrs(timing))
    emit(Event.DONE)
    return ds


def timing_attrs(timing: dict[str, float]) -> dict[str, float]:
    """Mean training seconds per epoch, probe seconds per measurement, landscape seconds in total."""
    return dict(seconds_per_epoch=timing["train"] / max(timing["epochs"], 1),
                probe_seconds=timing["probe"] / max(timing["probes"], 1), landscape_seconds=timing["landscape"])
