"""Pruning x training-dynamics sweeps: train one model per (sparsity, seed) and record everything per epoch.

Each cell is seeded (weights from ``torch.manual_seed(seed)``, batch order from its own
generator), pruned as :class:`~emergence.experiments.prune.PruneConfig` says, and trained; at epoch 0
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
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from adapters.architectures import ArchSpec, build
from adapters.datasets import Dataset, load_dataset
from adapters.model_measure import ModelProbe
from emergence.activity import check_aggregation
from emergence.errors import ConfigError
from emergence.experiments.prune import PruneConfig, apply_masks, iterative_levels, magnitude_masks, rewind, sparsity
from emergence.experiments.results import LANDSCAPE_VARIABLES, empty_results, package_versions
from emergence.experiments.train import TrainConfig, evaluate, train
from emergence.landscape import LandscapeConfig, cross_entropy, probe_landscape

__all__ = ["SweepConfig", "run_sweep", "Progress"]

#: ``progress(event, **info)``: "start" (cells, epochs), "cell" (sparsity, seed), "epoch", "done".
Progress = Callable[..., None]


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep depends on; stored with its results as JSON.

    Examples
    --------
    >>> cfg = SweepConfig(sparsities=(0.0, 0.5), seeds=(0,), train=TrainConfig(epochs=1))
    >>> SweepConfig.from_json(cfg.to_json()) == cfg
    True
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

    def __post_init__(self) -> None:
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
        return cls(**d)


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
    """The epoch hook of one (sparsity, seed) run: records metrics, emergence and the landscape."""

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

    def write(self, ds: Any, at: dict[str, int]) -> None:
        """Store this run's records in ``ds`` at ``at`` (sparsity and seed positions)."""
        for name, split in (("train", self.train_metrics), ("test", self.test_metrics)):
            ds[f"{name}_loss"][at] = [m.loss for m in split]
            ds[f"{name}_accuracy"][at] = [m.accuracy for m in split]
        for var, field_ in (("emergence_log10", "emergence_log10"), ("relative_emergence_log10", "relative_log10"),
                            ("active_fraction", "active_fraction"), ("emergence_share", "emergence_share")):
            ds[var][at] = torch.stack([getattr(r, field_) for r in self.records]).numpy()
        ds["actual_sparsity"][at] = sparsity(self.model)
        ds["n_params"][at] = sum(int((p != 0).sum()) for p in self.model.parameters())
        ds["n_edges"][at] = self.records[-1].num_edges
        for epoch, figures in self.landscape:
            for key in LANDSCAPE_VARIABLES:
                ds[key][dict(at, epoch=epoch)] = figures[key]


def run_sweep(cfg: SweepConfig, *, progress: Progress | None = None, data: Dataset | None = None) -> Any:
    """Run every (sparsity, seed) cell of ``cfg`` and return the results Dataset.

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
    spec = ArchSpec(cfg.arch, data.input_shape, data.num_classes, dict(cfg.arch_params))
    build(spec)  # fail early on a bad architecture
    probe_x = data.x_train[: cfg.probe_samples]
    landscape_batch = None
    if cfg.landscape is not None:
        n = cfg.landscape.samples
        landscape_batch = (data.x_train[:n].to(cfg.device or "cpu"), data.y_train[:n].to(cfg.device or "cpu"))
    emit = progress or (lambda *a, **k: None)
    emit("start", cells=len(cfg.sparsities) * len(cfg.seeds), epochs=cfg.train.epochs)
    ds = None
    timing = {"train": 0.0, "probe": 0.0, "epochs": 0, "probes": 0, "landscape": 0.0}
    for i, target in enumerate(cfg.sparsities):
        for j, seed in enumerate(cfg.seeds):
            emit("cell", sparsity=target, seed=seed)
            torch.manual_seed(seed)
            model = build(spec)
            if cfg.device:
                model = model.to(cfg.device)
            gen = torch.Generator().manual_seed(seed)
            masks = _prepare(model, cfg, target, data, gen)
            cell = _Cell(cfg, model, masks, data, probe_x, landscape_batch, timing, emit)
            train(model, data.x_train, data.y_train, cfg.train, generator=gen, masks=masks, on_epoch=cell)
            if ds is None:
                ds = empty_results(list(cfg.sparsities), list(cfg.seeds), cfg.train.epochs, list(cfg.thresholds),
                                   cell.probe.layers, {}, landscape=cfg.landscape is not None)
            cell.write(ds, dict(sparsity=i, seed=j))
    assert ds is not None
    ds.attrs.update(
        config=cfg.to_json(),
        versions=json.dumps(package_versions(), sort_keys=True),
        dataset=cfg.dataset,
        architecture=spec.to_json(),
        prunable="weights of dense and conv layers (biases and batch norm are never pruned)",
        accuracy_gain="test accuracy",
        seconds_per_epoch=timing["train"] / max(timing["epochs"], 1),
        probe_seconds=timing["probe"] / max(timing["probes"], 1),
        landscape_seconds=timing["landscape"],
    )
    emit("done")
    return ds

