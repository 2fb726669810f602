"""Grid axes of a sweep beyond sparsity and seed: width, learning rate, optimizer, pruning schedule, ...

A sweep is a grid of independent cells: every combination of the grid axes' values, of the
sparsities and of the seeds. Each axis becomes a dimension of the results Dataset with its
values as coordinates (in the order given), placed before ``sparsity`` and ``seed``.

On the command line an axis is ``--grid KEY=V1,V2,...`` (repeatable), e.g.
``--grid width=0.5,1,2 --grid lr=0.01,0.1``. The keys and what they set:

==================  ============================================================  =========
key                 sets                                                          values
==================  ============================================================  =========
``width``           architecture ``width``: multiplier of the hidden widths       float
                    (mlp, cnn; 1 = as given) or VGG's channel scale
``init_alpha``      alpha of the emergence-promoting init (``--init emergence``;  float
                    1 = the default init)
``lr``              learning rate                                                 float
``optimizer``       ``sgd`` or ``adam``                                           str
``momentum``        SGD momentum                                                  float
``weight_decay``    weight decay                                                  float
``batch_size``      batch size                                                    int
``prune_at``        when pruning happens: ``init``, ``after``, ``iterative``      str
``prune_scope``     ``layerwise`` or ``global``                                   str
``prune_structure`` ``unstructured`` or ``structured``                            str
``prune_fraction``  fraction pruned per round (``iterative``)                     float
``pretrain_epochs`` dense epochs before pruning, or per round                     int
==================  ============================================================  =========
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from emergence.errors import ConfigError

__all__ = ["GRID_AXES", "Axis", "Grid", "apply_point", "check_grid", "parse_grid"]

#: ``((key, (value, ...)), ...)`` in dimension order.
Grid = tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class Axis:
    """What a grid key sets: a field of ``section`` (``train``, ``prune`` or ``arch`` params), and its type."""

    section: str
    field: str
    kind: type
    help: str


GRID_AXES: dict[str, Axis] = {
    "width": Axis("arch", "width", float, "multiplier of hidden widths (mlp, cnn) or VGG's channel scale"),
    "init_alpha": Axis("arch", "init_alpha", float, "emergence-promoting init scale (with --init emergence)"),
    "lr": Axis("train", "lr", float, "learning rate"),
    "optimizer": Axis("train", "optimizer", str, "sgd or adam"),
    "momentum": Axis("train", "momentum", float, "SGD momentum"),
    "weight_decay": Axis("train", "weight_decay", float, "weight decay"),
    "batch_size": Axis("train", "batch_size", int, "batch size"),
    "prune_at": Axis("prune", "when", str, "init, after or iterative"),
    "prune_scope": Axis("prune", "scope", str, "layerwise or global"),
    "prune_structure": Axis("prune", "structure", str, "unstructured or structured"),
    "prune_fraction": Axis("prune", "fraction", float, "fraction pruned per round (iterative)"),
    "pretrain_epochs": Axis("prune", "pretrain_epochs", int, "dense epochs before pruning, or per round"),
}


def _convert(key: str, kind: type, value: Any) -> Any:
    if kind is str:
        return str(value).strip()
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"grid axis {key!r} takes numbers; got {value!r}") from None
    if kind is int:
        if v != int(v):
            raise ConfigError(f"grid axis {key!r} takes integers; got {value!r}")
        return int(v)
    return v


def check_grid(grid: Sequence[Sequence[Any]] | dict[str, Sequence[Any]] | None) -> Grid:
    """Validate a grid and return it in canonical form (typed values, tuples).

    Raises
    ------
    ConfigError
        For an unknown key, a key given twice, no values, repeated or mistyped values.

    Examples
    --------
    >>> check_grid({"width": [0.5, "1", 2]})
    (('width', (0.5, 1.0, 2.0)),)
    >>> check_grid([("optimizer", ["sgd", "adam"])])
    (('optimizer', ('sgd', 'adam')),)
    """
    items = list(grid.items()) if isinstance(grid, dict) else [tuple(item) for item in (grid or ())]
    out = []
    seen = set()
    for item in items:
        if len(item) != 2:
            raise ConfigError(f"a grid axis is (key, values); got {item!r}")
        key, values = str(item[0]), item[1]
        if key in ("sparsity", "seed", "epoch", "threshold", "layer"):
            raise ConfigError(f"{key!r} is not a grid axis: sparsities and seeds have options of their own "
                              "(--sparsity, --seeds), and epoch, threshold and layer are recorded dimensions")
        if key not in GRID_AXES:
            raise ConfigError(f"unknown grid axis {key!r}; choose from {', '.join(GRID_AXES)}")
        if key in seen:
            raise ConfigError(f"grid axis {key!r} is given twice; list all its values once (KEY=V1,V2)")
        seen.add(key)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"grid axis {key!r} needs at least one value")
        typed = tuple(_convert(key, GRID_AXES[key].kind, v) for v in values)
        if len(set(typed)) != len(typed):
            raise ConfigError(f"grid axis {key!r} repeats a value: {list(typed)}")
        out.append((key, typed))
    return tuple(out)


def parse_grid(specs: Sequence[str] | None) -> Grid:
    """Parse ``KEY=V1,V2,...`` strings (the ``--grid`` option) into a grid.

    Raises
    ------
    ConfigError
        For text without ``=``, and everything :func:`check_grid` refuses.

    Examples
    --------
    >>> parse_grid(["width=0.5,1,2", "lr=0.01,0.1"])
    (('width', (0.5, 1.0, 2.0)), ('lr', (0.01, 0.1)))
    """
    items = []
    for spec in specs or ():
        key, sep, values = str(spec).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--grid takes KEY=V1,V2,... (e.g. width=0.5,1,2); got {spec!r}")
        items.append((key.strip(), [v for v in values.split(",") if v.strip()]))
    return check_grid(items)


def apply_point(train: Any, prune: Any, arch_params: dict[str, Any], point: dict[str, Any]) -> tuple[Any, Any, dict]:
    """The train config, prune config and architecture parameters of one grid point.

    Raises
    ------
    ConfigError
        When a value is out of range for the field it sets (checked by the configs).

    Examples
    --------
    >>> from emergence.experiments.train import TrainConfig
    >>> from emergence.experiments.prune import PruneConfig
    >>> t, p, a = apply_point(TrainConfig(), PruneConfig(), {}, {"lr": 0.01, "width": 2.0})
    >>> t.lr, a
    (0.01, {'width': 2.0})
    """
    changes: dict[str, dict[str, Any]] = {"train": {}, "prune": {}, "arch": {}}
    for key, value in point.items():
        axis = GRID_AXES[key]
        changes[axis.section][axis.field] = value
    return (dataclasses.replace(train, **changes["train"]), dataclasses.replace(prune, **changes["prune"]),
            {**arch_params, **changes["arch"]})
