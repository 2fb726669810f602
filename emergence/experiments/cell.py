"""One cell of a sweep: build, prune, train and measure a model, and return its small result.

:func:`run_cell` is the unit of work that runs anywhere -- in the sweep's own process or as a
Dask task on another machine (:mod:`emergence.experiments.runner`). It seeds itself (weights from
``torch.manual_seed(seed)``, batch order from its own generator) and runs with ``cfg.threads``
torch threads, so its numbers do not depend on where it ran or what ran beside it; a failure
(training that diverges, an exception) is returned as data, not raised.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emergence.adapters.architectures import ArchSpec, build
from emergence.adapters.datasets import Dataset, load_dataset
from emergence.adapters.model_probe import ModelProbe
from emergence.errors import EmergenceError, NonFiniteError, first_line
from emergence.experiments.baselines import path_norm_log10, weight_norm
from emergence.experiments.config import CellSpec, Event, Progress, SweepConfig, cell_spec, ignore_progress
from emergence.experiments.prune import apply_masks, iterative_levels, magnitude_masks, rewind, sparsity
from emergence.experiments.results import SCHEMA, Source, probe_values
from emergence.experiments.train import evaluate, train
from emergence.landscape import cross_entropy, probe_landscape

__all__ = ["CellResult", "run_cell"]


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
                                device=cfg.device, granularity=cfg.granularity, outputs=cfg.outputs)
        self.train_metrics: list[Any] = []
        self.test_metrics: list[Any] = []
        self.records: list[Any] = []
        self.landscape: list[tuple[int, dict[str, float]]] = []
        self.norms: dict[str, list[float]] = {"weight_norm": [], "path_norm_log10": []}
        self.probe_x = probe_x
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
        self.norms["weight_norm"].append(weight_norm(self.model))
        self.norms["path_norm_log10"].append(path_norm_log10(self.model, self.probe_x))
        t["probe"] += time.perf_counter() - t0
        t["probes"] += 1
        if self._landscape_due(epoch):
            assert self.landscape_batch is not None and self.cfg.landscape is not None
            t0 = time.perf_counter()
            x, y = self.landscape_batch
            figures = probe_landscape(self.model, cross_entropy, x, y, self.cfg.landscape, masks=self.masks,
                                      progress=self._probe_step)
            self.landscape.append((epoch, figures))
            t["landscape"] += time.perf_counter() - t0
        self.emit(Event.EPOCH, epoch=epoch, test_accuracy=self.test_metrics[-1].accuracy)
        self.clock = time.perf_counter()

    def _probe_step(self, stage: str, done: int, total: int) -> None:
        self.emit(Event.PROBE, stage=stage, done=done, total=total)

    def values(self) -> dict[str, np.ndarray]:
        """This cell's arrays, by variable of :data:`~emergence.experiments.results.SCHEMA`, over the dims after
        the cell dims."""
        metrics = {"train": self.train_metrics, "test": self.test_metrics}
        model = {"actual_sparsity": sparsity(self.model), "num_edges": self.records[-1].num_edges,
                 "n_params": sum(int((p != 0).sum()) for p in self.model.parameters())}
        out = probe_values(self.records, self.probe.layers)
        epochs = self.cfg.train.epochs + 1
        for v in SCHEMA:
            if v.source is Source.METRIC:
                split, _, quantity = v.attribute.partition("_")
                out[v.name] = np.array([getattr(m, quantity) for m in metrics[split]], dtype=v.dtype)
            elif v.source is Source.MODEL:
                out[v.name] = np.array(model[v.attribute], dtype=v.dtype)
            elif v.source is Source.TRAINING:
                out[v.name] = np.array(self.norms[v.attribute], dtype=v.dtype)
            elif v.source is Source.LANDSCAPE and self.cfg.landscape is not None:
                out[v.name] = np.full(epochs, v.fill, dtype=v.dtype)
                for epoch, figures in self.landscape:
                    out[v.name][epoch] = figures[v.attribute]
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
    spec = cell_spec(cfg, index)
    return spec.config, spec.sparsity, spec.seed


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
    >>> from emergence.experiments.sweep import SweepConfig, TrainConfig
    >>> cfg = SweepConfig(arch_params={"widths": [8]}, dataset="mnist", sparsities=(0.5,), seeds=(0,),
    ...                   train=TrainConfig(epochs=0), thresholds=(0.05,), probe_samples=16)
    >>> r = run_cell(cfg, (0, 0))
    >>> r.ok, r.values["test_accuracy"].shape, r.layers
    (True, (1,), ['input', '1', '3'])
    """
    start = time.perf_counter()
    timing = {"train": 0.0, "probe": 0.0, "epochs": 0, "probes": 0, "landscape": 0.0}
    threads = torch.get_num_threads()
    spec: CellSpec = cell_spec(cfg, index, device=device)
    one, target, seed = spec.config, spec.sparsity, spec.seed
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
                     progress or ignore_progress)
        train(model, data.x_train, data.y_train, one.train, generator=gen, masks=masks, on_epoch=cell)
        values, error = cell.values(), None
    except Exception as exc:  # a cell's failure is data: recorded, reported, and the other cells go on
        values = None
        error = first_line(exc) if isinstance(exc, EmergenceError) else f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        torch.set_num_threads(threads)
    layers = list(cell.probe.layers) if cell is not None else []
    return CellResult(tuple(index), values, layers, error, time.perf_counter() - start, timing)
