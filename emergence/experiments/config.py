"""What a sweep is made of: its config, one cell's spec, and the progress events it sends.

:class:`SweepConfig` is everything a sweep depends on (stored with its results as JSON);
:class:`CellSpec` is one cell of it -- the grid point applied, made with
:func:`dataclasses.replace` so that the single-cell config is validated like any other;
:class:`Progress` is the callback that follows a sweep, with its events as :class:`Event`.
Both the sweep orchestrators (:mod:`~emergence.experiments.sweep`, :mod:`~emergence.experiments.runner`)
and the cell (:mod:`~emergence.experiments.cell`) import this module, and it imports neither.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from emergence.activity import check_aggregation, check_outputs
from emergence.adapters import check_granularity
from emergence.adapters.architectures import check_arch_params
from emergence.adapters.init import check_init
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, SWEEP_THRESHOLDS
from emergence.errors import ConfigError
from emergence.experiments.grid import Grid, apply_point, check_grid
from emergence.experiments.prune import PruneConfig
from emergence.experiments.train import TrainConfig
from emergence.landscape import LandscapeConfig

__all__ = ["CellSpec", "Event", "Progress", "SweepConfig", "cell_spec"]


class Event(str, enum.Enum):
    """What a :class:`Progress` callback is told, with the keyword arguments each event carries.

    The members are strings too (``Event.START == "start"``), so a callback may compare with either.
    """

    #: The sweep starts: ``cells``, ``epochs``, ``done`` (cells already in the store), ``workers`` (stored sweeps).
    START = "start"
    #: A cell starts here: ``sparsity``, ``seed``, ``label``.
    CELL = "cell"
    #: A cell finished an epoch: ``epoch``, ``test_accuracy``.
    EPOCH = "epoch"
    #: One step of a landscape probe inside a cell (in-process sweeps): ``stage``, ``done``, ``total``.
    PROBE = "probe"
    #: A cell is written: ``label``, ``status`` (``"done"`` or ``"failed"``), ``seconds``.
    CELL_DONE = "cell-done"
    #: How many cells run at once: ``count``.
    RUNNING = "running"
    #: Something the user must read even when quiet (damaged cells): ``text``.
    NOTE = "note"
    #: The sweep is over.
    DONE = "done"


class Progress(Protocol):
    """``progress(event, **info)``: follows a sweep (see :class:`Event` for what each event carries)."""

    def __call__(self, event: Event, /, **info: Any) -> None: ...


def ignore_progress(event: Event, /, **info: Any) -> None:
    """A :class:`Progress` that ignores every event (the default of every sweep function)."""


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
        if check_grid(self.grid) != self.grid:  # frozen: canonical on arrival, never rewritten afterwards
            raise ConfigError(f"grid must be (key, values) tuples as check_grid returns them; got {self.grid!r}: "
                              "pass check_grid(grid) or parse_grid(['KEY=V1,V2'])")
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


@dataclass(frozen=True)
class CellSpec:
    """One cell of a sweep: its single-cell config (grid point applied, no grid), target sparsity and seed.

    Attributes
    ----------
    config : SweepConfig
        The sweep's config with the cell's grid point applied (``grid=()``); validated.
    sparsity : float
        The target sparsity of the cell.
    seed : int
    index : tuple of int
        Position along :attr:`SweepConfig.cell_dims`.
    """

    config: SweepConfig
    sparsity: float
    seed: int
    index: tuple[int, ...]


def cell_spec(cfg: SweepConfig, index: tuple[int, ...], *, device: str | None = None) -> CellSpec:
    """The spec of cell ``index`` of ``cfg`` (``device`` overrides the config's: a worker's own GPU).

    Examples
    --------
    >>> cfg = SweepConfig(sparsities=(0.0, 0.5), seeds=(3,), grid=(("width", (0.5, 2.0)),))
    >>> spec = cell_spec(cfg, (1, 1, 0))
    >>> spec.config.arch_params, spec.config.grid, spec.sparsity, spec.seed
    ({'width': 2.0}, (), 0.5, 3)
    """
    coords = cfg.cell_coords
    point = {d: coords[d][i] for d, i in zip(cfg.cell_dims[:-2], index[:-2], strict=True)}
    train_cfg, prune_cfg, arch_params = apply_point(cfg.train, cfg.prune, cfg.arch_params, point)
    one = dataclasses.replace(cfg, train=train_cfg, prune=prune_cfg, arch_params=arch_params, grid=(),
                              device=cfg.device if device is None else device)
    return CellSpec(one, cfg.sparsities[index[-2]], cfg.seeds[index[-1]], tuple(index))
