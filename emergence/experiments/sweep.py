"""Pruning x training-dynamics sweeps: train one model per cell and record everything per epoch.

A sweep is a grid of independent cells, one per combination of the grid axes' values (see
:mod:`emergence.experiments.grid`), sparsity and seed. :func:`run_cell` computes one cell
and returns its small result, so cells can run anywhere (in this process, or as Dask tasks:
:mod:`emergence.experiments.runner`); :func:`run_sweep` runs them all in memory.

Each cell is seeded on its own (weights from ``torch.manual_seed(seed)``, batch order from its
own generator, ``threads`` torch threads), so a cell's numbers do not depend on which other
cells ran before it, in which process, or how many ran at once. It is pruned as
:class:`~emergence.experiments.prune.PruneConfig` says, and trained; at epoch 0
(before training) and after every epoch it records train/test loss and accuracy and,
on a fixed probe batch from the training set, emergence at every threshold (see
:class:`~adapters.model_measure.ModelProbe`). The result is an xarray Dataset
(:mod:`emergence.experiments.results`) with the config and package versions in its attributes.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from adapters.architectures import ArchSpec, build
from adapters.datasets import Dataset, load_dataset
from adapters.model_measure import ModelProbe
from emergence.activity import check_aggregation
from emergence.errors import ConfigError, EmergenceError, NonFiniteError, first_line
from emergence.experiments.grid import Grid, apply_point, check_grid
from emergence.experiments.prune import PruneConfig, apply_masks, iterative_levels, magnitude_masks, rewind, sparsity
from emergence.experiments.results import LANDSCAPE_VARIABLES, empty_results, package_versions
from emergence.experiments.train import TrainConfig, evaluate, train
from emergence.landscape import LandscapeConfig, cross_entropy, probe_landscape

__all__ = ["SweepConfig", "CellResult", "run_cell", "run_sweep", "Progress"]

#: ``progress(event, **info)``: "start" (cells, epochs, done), "cell" (sparsity, seed, label), "epoch" (epoch),
#: "cell-done" (label, status, seconds), "running" (count), "done".
Progress = Callable[..., None]

#: Variables a cell fills, with the dims after the cell dims.
CELL_VARIABLES = {
    "train_loss": ("epoch",), "train_accuracy": ("epoch",), "test_loss": ("epoch",), "test_accuracy": ("epoch",),
    "emergence_log10": ("epoch", "threshold"), "relative_emergence_log10": ("epoch", "threshold"),
    "active_fraction": ("epoch", "threshold", "layer"), "emergence_share": ("epoch", "threshold", "layer"),
    "actual_sparsity": (), "n_params": (), "n_edges": (),
}


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
    thresholds: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2)
    aggregation: str = "mean"
    probe_samples: int = 256
    weighted: bool = False
    device: str | None = None
    landscape: LandscapeConfig | None = None
    grid: Grid = ()
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", check_grid(self.grid))
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1; got {self.threads}")
        for point in self.points():  # every grid point must make valid configs
            apply_point(self.train, self.prune, self.arch_params, point)
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
            yield dict(zip(keys, values))

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Positions of every cell along :attr:`cell_dims`, in row-major order."""
        return itertools.product(*(range(len(v)) for v in self.cell_coords.values()))

    def label(self, index: tuple[int, ...]) -> str:
        """A cell's coordinates as text, e.g. ``width=2 sparsity=0.5 seed=1``."""
        coords = self.cell_coords
        return " ".join(f"{d}={coords[d][i]:g}" if isinstance(coords[d][i], float) else f"{d}={coords[d][i]}"
                        for d, i in zip(self.cell_dims, index))

def _prepare(model: torch.nn.Module, cfg: SweepConfig, target: float, data: Dataset,
             gen: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Prune as configured (pretraining and rewinding included); returns the masks."""
    p = cfg.prune
    opts = dict(scope=p.scope, structure=p.structure)
    if p.when == "init":
        masks = magnitude_masks(model, target, **opts) if target > 0 else None
    elif p.when == "after":
        train(model, data.x_train, data.y_train, cfg.train, generator=gen, epochs=p.pretrain_epochs)
        masks = magnitude_masks(model, target, **opts) if target > 0 else None
    else:  # iterative: lottery ticket with rewinding to the initial weights
        initial = copy.deepcopy(model.state_dict())
        masks = None
        for level in iterative_levels(target, p.fraction):
            train(model, data.x_train, data.y_train, cfg.train, generator=gen, masks=masks,
                  epochs=p.pretrain_epochs)
            masks = magnitude_masks(model, level, masks=masks, **opts)
            rewind(model, initial, masks)
    if masks:
        apply_masks(model, masks)
    return masks


class _Cell:
    """The epoch hook of one cell: records metrics, emergence and the landscape."""

    def __init__(self, cfg: SweepConfig, model: torch.nn.Module, masks: dict[str, torch.Tensor] | None,
                 data: Dataset, probe_x: torch.Tensor, landscape_batch: tuple[torch.Tensor, torch.Tensor] | None,
                 timing: dict[str, float], emit: Progress) -> None:
        self.cfg, self.model, self.masks, self.data = cfg, model, masks, data
        self.landscape_batch, self.timing, self.emit = landscape_batch, timing, emit
        self.probe = ModelProbe(model, probe_x, cfg.thresholds, aggregation=cfg.aggregation, weighted=cfg.weighted,
                                device=cfg.device)
        self.train_metrics: list[Any] = []
        self.test_metrics: list[Any] = []
        self.records: list[Any] = []
        self.landscape: list[tuple[int, dict[str, float]]] = []
        self.clock = time.perf_counter()

    def _landscape_due(self, epoch: int) -> bool:
        land = self.cfg.landscape
        return land is not None and (epoch == self.cfg.train.epochs or bool(land.every and epoch % land.every == 0))

    def __call__(self, epoch: int) -> None:
        t = self.timing
        if epoch > 0:
            t["train"] += time.perf_counter() - self.clock
            t["epochs"] += 1
        self.train_metrics.append(evaluate(self.model, self.data.x_train, self.data.y_train))
        self.test_metrics.append(evaluate(self.model, self.data.x_test, self.data.y_test))
        loss = self.train_metrics[-1].loss
        if not np.isfinite(loss):
            raise NonFiniteError(f"training diverged: the train loss is {loss} after epoch {epoch} "
                                 f"(lr {self.cfg.train.lr:g}); lower the learning rate")
        t0 = time.perf_counter()
        self.records.append(self.probe(self.model))
        t["probe"] += time.perf_counter() - t0
        t["probes"] += 1
        if self._landscape_due(epoch):
            assert self.landscape_batch is not None and self.cfg.landscape is not None
            t0 = time.perf_counter()
            x, y = self.landscape_batch
            figures = probe_landscape(self.model, cross_entropy, x, y, self.cfg.landscape, masks=self.masks)
            self.landscape.append((epoch, figures))
            t["landscape"] += time.perf_counter() - t0
        self.emit("epoch", epoch=epoch, test_accuracy=self.test_metrics[-1].accuracy)
        self.clock = time.perf_counter()

    def values(self) -> dict[str, np.ndarray]:
        """This cell's arrays, by variable, over the dims after the cell dims (see ``CELL_VARIABLES``)."""
        out: dict[str, np.ndarray] = {}
        for name, split in (("train", self.train_metrics), ("test", self.test_metrics)):
            out[f"{name}_loss"] = np.array([m.loss for m in split])
            out[f"{name}_accuracy"] = np.array([m.accuracy for m in split])
        for var, field_ in (("emergence_log10", "emergence_log10"), ("relative_emergence_log10", "relative_log10"),
                            ("active_fraction", "active_fraction"), ("emergence_share", "emergence_share")):
            out[var] = torch.stack([getattr(r, field_) for r in self.records]).numpy()
        out["actual_sparsity"] = np.array(sparsity(self.model))
        out["n_params"] = np.array(sum(int((p != 0).sum()) for p in self.model.parameters()), dtype=np.int64)
        out["n_edges"] = np.array(self.records[-1].num_edges, dtype=np.int64)
        if self.cfg.landscape is not None:
            epochs = self.cfg.train.epochs + 1
            for key in LANDSCAPE_VARIABLES:
                out[key] = np.full(epochs, np.nan)
            for epoch, figures in self.landscape:
                for key in LANDSCAPE_VARIABLES:
                    out[key][epoch] = figures[key]
        return out


@dataclass(frozen=True)
class CellResult:
    """What one cell sends back: small arrays (a few kB), never the model.

    Attributes
    ----------
    index : tuple of int
        Position along :attr:`SweepConfig.cell_dims`.
    values : dict of str to numpy.ndarray, or None
        By variable, over the dims after the cell dims; None when the cell failed.
    layers : list of str
        Layer names of the measured graph (the ``layer`` coordinate).
    error : str or None
        One line saying why the cell failed.
    seconds : float
        Wall time of the cell.
    timing : dict
        ``train`` seconds over ``epochs`` epochs, ``probe`` seconds over ``probes`` probes,
        ``landscape`` seconds.
    """

    index: tuple[int, ...]
    values: dict[str, np.ndarray] | None
    layers: list[str]
    error: str | None
    seconds: float
    timing: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.error is None


@functools.lru_cache(maxsize=2)
def _cached_dataset(name: str) -> Dataset:
    return load_dataset(name)


def _cell_settings(cfg: SweepConfig, index: tuple[int, ...]) -> tuple[SweepConfig, float, int]:
    """The single-cell config (grid applied), the target sparsity and the seed of cell ``index``."""
    coords = cfg.cell_coords
    point = {d: coords[d][i] for d, i in zip(cfg.cell_dims[:-2], index[:-2])}
    train_cfg, prune_cfg, arch_params = apply_point(cfg.train, cfg.prune, cfg.arch_params, point)
    one = copy.copy(cfg)
    for k, v in dict(train=train_cfg, prune=prune_cfg, arch_params=arch_params, grid=()).items():
        object.__setattr__(one, k, v)
    return one, cfg.sparsities[index[-2]], cfg.seeds[index[-1]]


def run_cell(cfg: SweepConfig, index: tuple[int, ...], *, data: Dataset | None = None,
             progress: Progress | None = None, device: str | None = None) -> CellResult:
    """Train and measure one cell; a failure is returned (with its message), not raised.

    Parameters
    ----------
    cfg : SweepConfig
    index : tuple of int
        The cell's position along :attr:`SweepConfig.cell_dims`.
    data : Dataset, optional
        Use this instead of loading ``cfg.dataset`` (loaded once per process otherwise).
    progress : callable, optional
        Receives "epoch" events.
    device : str, optional
        Overrides ``cfg.device`` (a worker's own GPU).

    Returns
    -------
    CellResult

    Examples
    --------
    >>> cfg = SweepConfig(arch_params={"widths": [8]}, dataset="mnist", sparsities=(0.5,), seeds=(0,),
    ...                   train=TrainConfig(epochs=0), thresholds=(0.05,), probe_samples=16)
    >>> r = run_cell(cfg, (0, 0))
    >>> r.ok, r.values["test_accuracy"].shape, r.layers
    (True, (1,), ['input', '1', '3'])
    """
    start = time.perf_counter()
    timing = {"train": 0.0, "probe": 0.0, "epochs": 0, "probes": 0, "landscape": 0.0}
    threads = torch.get_num_threads()
    one, target, seed = _cell_settings(cfg, index)
    if device is not None:
        object.__setattr__(one, "device", device)
    cell = None
    try:
        torch.set_num_threads(cfg.threads)
        data = data or _cached_dataset(cfg.dataset)
        spec = ArchSpec(one.arch, data.input_shape, data.num_classes, dict(one.arch_params))
        torch.manual_seed(seed)
        model = build(spec)
        if one.device:
            model = model.to(one.device)
        gen = torch.Generator().manual_seed(seed)
        masks = _prepare(model, one, target, data, gen)
        landscape_batch = None
        if one.landscape is not None:
            n = one.landscape.samples
            landscape_batch = (data.x_train[:n].to(one.device or "cpu"), data.y_train[:n].to(one.device or "cpu"))
        cell = _Cell(one, model, masks, data, data.x_train[: one.probe_samples], landscape_batch, timing,
                     progress or (lambda *a, **k: None))
        train(model, data.x_train, data.y_train, one.train, generator=gen, masks=masks, on_epoch=cell)
        values, error = cell.values(), None
    except Exception as exc:  # a cell's failure is data: recorded, reported, and the other cells go on
        values = None
        error = first_line(exc) if isinstance(exc, EmergenceError) else f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        torch.set_num_threads(threads)
    layers = list(cell.probe.layers) if cell is not None else []
    return CellResult(tuple(index), values, layers, error, time.perf_counter() - start, timing)


def sweep_attrs(cfg: SweepConfig, data: Dataset) -> dict[str, Any]:
    """The attributes every results Dataset of ``cfg`` carries (config, versions, dataset, architecture)."""
    return dict(
        config=cfg.to_json(),
        versions=json.dumps(package_versions(), sort_keys=True),
        dataset=cfg.dataset,
        architecture=ArchSpec(cfg.arch, data.input_shape, data.num_classes, dict(cfg.arch_params)).to_json(),
        prunable="weights of dense and conv layers (biases and batch norm are never pruned)",
        accuracy_gain="test accuracy",
    )


def empty_sweep(cfg: SweepConfig, layers: list[str], attrs: dict[str, Any] | None = None) -> Any:
    """The results Dataset of ``cfg``, every value missing (see :func:`emergence.experiments.results.empty_results`)."""
    return empty_results(list(cfg.sparsities), list(cfg.seeds), cfg.train.epochs, list(cfg.thresholds), layers,
                         dict(attrs or {}), landscape=cfg.landscape is not None, grid=cfg.grid)


def cell_assignments(cfg: SweepConfig, result: CellResult) -> Iterator[tuple[str, tuple[int, ...], np.ndarray]]:
    """``(variable, leading index, array)`` for every variable a finished cell fills."""
    assert result.values is not None
    for name, value in result.values.items():
        yield name, result.index, value


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
        for name, at, value in cell_assignments(cfg, result):
            ds[name].values[at] = value
        emit("cell-done", label=cfg.label(index), status="done", seconds=result.seconds)
    assert ds is not None
    ds.attrs.update(sweep_attrs(cfg, data), **timing_attrs(timing))
    emit("done")
    return ds


def timing_attrs(timing: dict[str, float]) -> dict[str, float]:
    """Mean training seconds per epoch, probe seconds per measurement, landscape seconds in total."""
    return dict(seconds_per_epoch=timing["train"] / max(timing["epochs"], 1),
                probe_seconds=timing["probe"] / max(timing["probes"], 1), landscape_seconds=timing["landscape"])
