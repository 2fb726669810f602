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

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from emergence.activity import check_aggregation, check_outputs
from emergence.adapters import check_granularity
from emergence.adapters.architectures import ArchSpec, build, check_arch_params
from emergence.adapters.datasets import Dataset, load_dataset
from emergence.adapters.init import check_init
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, SWEEP_THRESHOLDS
from emergence.errors import ConfigError, EmergenceError
from emergence.experiments.cell import CellResult, run_cell
from emergence.experiments.grid import Grid, apply_point, check_grid
from emergence.experiments.prune import PruneConfig
from emergence.experiments.results import empty_results, package_versions
from emergence.experiments.train import TrainConfig
from emergence.landscape import LandscapeConfig

__all__ = ["SweepConfig", "CellResult", "run_cell", "run_sweep", "Progress"]  # the cell's two from .cell

#: ``progress(event, **info)``: "start" (cells, epochs, done), "cell" (sparsity, seed, label), "epoch" (epoch),
#: "probe" (stage, done, total: a landscape probe's steps, in-process sweeps only),
#: "cell-done" (label, status, seconds), "running" (count), "done".
Progress = Callable[..., None]

@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep depends on; stored with its results as JSON.

    ``grid`` adds axes (``(key, values)`` pairs, see :mod:`emergence.experiments.grid`);
    ``threads`` is the number of torch threads each cell runs with: results are bitwise
    identical for any number of workers at a fixed ``threads`` (torch's reductions, and so
    the low bits of a trained net, depend on the thread count).

    Examples
    --------
    >>> cfg = SweepConfig(sparsities=(0.0, 0.5), seeds=(0,), train=TrainConfig(epochs=1),
    ...                   grid=(("width", (0.5, 1.0)),))
    >>> SweepConfig.from_json(cfg.to_json()) == cfg
    True
    >>> cfg.cell_dims, cfg.cells
    (('width', 'sparsity', 'seed'), 4)
    """

    arch: str = "mlp"
    arch_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    sparsities: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    thresholds: tuple[float, ...] = SWEEP_THRESHOLDS
    aggregation: str = DEFAULT_AGGREGATION
    probe_samples: int = 256
    weighted: bool = False
    device: str | None = None
    landscape: LandscapeConfig | None = None
    grid: Grid = ()
    threads: int = 1
    granularity: str = DEFAULT_GRANULARITY
    outputs: str = DEFAULT_OUTPUTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", check_grid(self.grid))
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1; got {self.threads}")
        for point in self.points():  # every grid point must make valid configs
            _, _, params = apply_point(self.train, self.prune, self.arch_params, point)
            check_init(params.get("init", "default"), params.get("init_alpha", 1.0))
            check_arch_params(self.arch, {k: v for k, v in params.items() if k not in ("init", "init_alpha")})
        if not self.sparsities or any(not 0 <= s < 1 for s in self.sparsities):
            raise ConfigError(f"sparsities must be in [0, 1); got {list(self.sparsities)}")
        if len(set(self.sparsities)) != len(self.sparsities) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("sparsities and seeds must not repeat")
        if not self.seeds:
            raise ConfigError("need at least one seed")
        if not self.thresholds:
            raise ConfigError("need at least one threshold")
        if self.probe_samples < 1:
            raise ConfigError(f"probe_samples must be at least 1; got {self.probe_samples}")
        check_aggregation(self.aggregation)
        check_granularity(self.granularity)
        check_outputs(self.outputs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        d = json.loads(text)
        d["train"] = TrainConfig(**d["train"])
        d["prune"] = PruneConfig(**d["prune"])
        if d.get("landscape") is not None:
            d["landscape"] = LandscapeConfig(**d["landscape"])
        for k in ("sparsities", "seeds", "thresholds"):
            d[k] = tuple(d[k])
        d["grid"] = check_grid(d.get("grid", ()))
        d.setdefault("outputs", "logits")  # results stored before the option judged raw logits
        return cls(**d)

    @property
    def cell_dims(self) -> tuple[str, ...]:
        """The dimensions that index cells: the grid axes, then ``sparsity`` and ``seed``."""
        return (*(k for k, _ in self.grid), "sparsity", "seed")

    @property
    def cell_coords(self) -> dict[str, tuple[Any, ...]]:
        """Coordinate values along each cell dimension."""
        return {**dict(self.grid), "sparsity": self.sparsities, "seed": self.seeds}

    @property
    def cells(self) -> int:
        """How many cells the sweep has."""
        return int(np.prod([len(v) for v in self.cell_coords.values()]))

    def points(self) -> Iterator[dict[str, Any]]:
        """Every combination of the grid axes' values (one empty point when there is no grid)."""
        keys = [k for k, _ in self.grid]
        for values in itertools.product(*(v for _, v in self.grid)):
            yield dict(zip(keys, values, strict=False))

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Positions of every cell along :attr:`cell_dims`, in row-major order."""
        return itertools.product(*(range(len(v)) for v in self.cell_coords.values()))

    def label(self, index: tuple[int, ...]) -> str:
        """A cell's coordinates as text, e.g. ``width=2 sparsity=0.5 seed=1``."""
        coords = self.cell_coords
        return " ".join(f"{d}={coords[d][i]:g}" if isinstance(coords[d][i], float) else f"{d}={coords[d][i]}"
                        for d, i in zip(self.cell_dims, index, strict=False))

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
    emit = progress or (lambda *a, **k: None)
    emit("start", cells=cfg.cells, epochs=cfg.train.epochs, done=0)
    ds = None
    timing = {"train": 0.0, "probe": 0.0, "epochs": 0, "probes": 0, "landscape": 0.0}
    coords = cfg.cell_coords
    for index in cfg.indices():
        emit("cell", sparsity=coords["sparsity"][index[-2]], seed=coords["seed"][index[-1]], label=cfg.label(index))
        result = run_cell(cfg, index, data=data, progress=emit)
        if not result.ok:
            raise EmergenceError(f"cell {cfg.label(index)} failed: {result.error}")
        for k in timing:
            timing[k] += result.timing[k]
        if ds is None:
            ds = empty_sweep(cfg, result.layers)
        for name, value in result.values.items():
            ds[name].values[result.index] = value
        emit("cell-done", label=cfg.label(index), status="done", seconds=result.seconds)
    assert ds is not None
    ds.attrs.update(sweep_attrs(cfg, data), **timing_attrs(timing))
    emit("done")
    return ds


def timing_attrs(timing: dict[str, float]) -> dict[str, float]:
    """Mean training seconds per epoch, probe seconds per measurement, landscape seconds in total."""
    return dict(seconds_per_epoch=timing["train"] / max(timing["epochs"], 1),
                probe_seconds=timing["probe"] / max(timing["probes"], 1), landscape_seconds=timing["landscape"])
