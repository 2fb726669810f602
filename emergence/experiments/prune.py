"""Magnitude (L1) pruning: global or layerwise, unstructured or structured, with masks that stay enforced.

**Prunable weights** are the ``weight`` tensors of ``nn.Linear`` and ``nn.Conv*`` layers;
biases and batch-norm parameters are never pruned. Structured pruning removes whole
output units (rows of a dense weight, filters of a conv) ranked by their mean absolute
weight, and never touches the last prunable layer (its units are the classes).
*Sparsity* is the fraction of prunable weights that are exactly zero.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (magnitude pruning at four levels).
.. [2] J. Frankle, M. Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (iterative pruning
   with rewinding).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from emergence.errors import ConfigError, check_choice

__all__ = [
    "PRUNE_SCOPES",
    "PRUNE_STRUCTURES",
    "PRUNE_WHEN",
    "Masks",
    "PruneConfig",
    "prunable",
    "magnitude_masks",
    "apply_masks",
    "sparsity",
    "iterative_levels",
    "rewind",
]

Masks = dict[str, torch.Tensor]
#: When pruning happens, how weights are ranked, and what is removed (see :class:`PruneConfig`).
PRUNE_WHEN = ("init", "after", "iterative")
PRUNE_SCOPES = ("layerwise", "global")
PRUNE_STRUCTURES = ("unstructured", "structured")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Attributes
    ----------
    when : {"init", "after", "iterative"}
        ``init``: prune the initial weights, then train. ``after``: train dense for
        ``pretrain_epochs``, prune, then fine-tune. ``iterative``: lottery-ticket style,
        train ``pretrain_epochs``, prune ``fraction`` of the remaining weights, rewind
        the survivors to their initial values, and repeat until the target sparsity.
    scope : {"global", "layerwise"}
        Rank weights across all prunable layers, or within each layer.
    structure : {"unstructured", "structured"}
        Prune single weights, or whole units (neurons / conv channels).
    fraction : float
        For ``iterative``: the fraction of remaining weights pruned per round.
    pretrain_epochs : int
        Dense training epochs before pruning (``after``) or per round (``iterative``).
    """

    when: str = "init"
    scope: str = "layerwise"
    structure: str = "unstructured"
    fraction: float = 0.2
    pretrain_epochs: int = 1

    def __post_init__(self) -> None:
        for name, value, allowed in (("when", self.when, PRUNE_WHEN), ("scope", self.scope, PRUNE_SCOPES),
                                     ("structure", self.structure, PRUNE_STRUCTURES)):
            check_choice(f"prune {name}", value, allowed)
        if not 0 < self.fraction < 1:
            raise ConfigError(f"prune fraction per round must be in (0, 1); got {self.fraction}")
        if self.pretrain_epochs < 0:
            raise ConfigError(f"pretrain epochs must be >= 0; got {self.pretrain_epochs}")


def prunable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, weight)`` of every prunable weight: dense and conv layers, in module order.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    >>> [n for n, _ in prunable(net)]
    ['0.weight', '2.weight']
    """
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            yield (f"{mname}.weight" if mname else "weight"), m.weight


def _unit_scores(w: torch.Tensor) -> torch.Tensor:
    return w.detach().abs().reshape(w.shape[0], -1).mean(1)


def _smallest(scores: torch.Tensor, alive: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` smallest ``scores`` among ``alive`` (ties broken by position)."""
    out = torch.zeros_like(alive)
    if count <= 0:
        return out
    idx = alive.nonzero().flatten()
    order = torch.argsort(scores[idx], stable=True)[:count]
    out[idx[order]] = True
    return out


def magnitude_masks(
    model: nn.Module,
    target: float,
    *,
    scope: str = "layerwise",
    structure: str = "unstructured",
    masks: Masks | None = None,
) -> Masks:
    """Masks that prune the smallest-magnitude weights until ``target`` sparsity is reached.

    Weights already masked stay masked; the new masks prune exactly
    ``round(target * total) - already pruned`` more weights (per layer when
    ``scope="layerwise"``), or the corresponding number of whole units.

    Parameters
    ----------
    model : nn.Module
    target : float
        Sparsity to reach, in ``[0, 1)``.
    scope, structure : str
        See :class:`PruneConfig`.
    masks : dict, optional
        Existing masks (1 = keep).

    Returns
    -------
    dict of str to torch.Tensor
        A bool mask per prunable weight (True = keep).

    Raises
    ------
    ConfigError
        For a target outside ``[0, 1)`` or an unknown scope/structure.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10))
    >>> m = magnitude_masks(net, 0.5)
    >>> sum(int((~v).sum()) for v in m.values())
    100
    """
    if not 0 <= target < 1:
        raise ConfigError(f"sparsity must be in [0, 1); got {target}")
    PruneConfig(scope=scope, structure=structure)  # validates the names
    params = dict(prunable(model))
    if not params:
        raise ConfigError("the model has no prunable (dense or conv) weights")
    keep = {n: (masks[n].clone() if masks and n in masks else torch.ones_like(p, dtype=torch.bool))
            for n, p in params.items()}
    if structure == "unstructured":
        for names in ([list(params)] if scope == "global" else [[n] for n in params]):
            _prune_weights(params, keep, names, target)
        return keep
    names = list(params)[:-1]  # the output layer's units are the classes
    if not names:
        raise ConfigError("structured pruning needs at least two prunable layers (the last one is kept whole)")
    for group in ([names] if scope == "global" else [[n] for n in names]):
        _prune_units(params, keep, group, target)
    return keep


def _prune_weights(params: dict[str, torch.Tensor], keep: Masks, names: list[str], target: float) -> None:
    """Clear ``keep`` for the smallest-magnitude live weights of ``names`` until ``target`` of them are pruned."""
    total = sum(params[n].numel() for n in names)
    pruned = sum(int((~keep[n]).sum()) for n in names)
    need = round(target * total) - pruned
    scores = torch.cat([params[n].detach().abs().flatten().cpu() for n in names])
    alive = torch.cat([keep[n].flatten().cpu() for n in names])
    cut = _smallest(scores, alive, need)
    for n, piece in zip(names, torch.split(cut, [params[n].numel() for n in names]), strict=True):
        keep[n] &= ~piece.reshape(params[n].shape).to(keep[n].device)


def _prune_units(params: dict[str, torch.Tensor], keep: Masks, group: list[str], target: float) -> None:
    """Clear ``keep`` for whole units (rows) of ``group``, weakest first, until ``target`` of its weights are pruned.

    Units differ in size across layers, so they are pruned by their share of the weights, unit by unit.
    """
    units = [params[n].shape[0] for n in group]
    per_unit = [params[n][0].numel() for n in group]
    alive = torch.cat([keep[n].reshape(keep[n].shape[0], -1).any(1).cpu() for n in group])
    total = sum(u * k for u, k in zip(units, per_unit, strict=True))
    size = torch.cat([torch.full((u,), k) for u, k in zip(units, per_unit, strict=True)])
    need = target * total - float((size * (~alive)).sum())
    scores = torch.cat([_unit_scores(params[n]).cpu() for n in group])
    order = torch.argsort(torch.where(alive, scores, torch.full_like(scores, math.inf)), stable=True)
    count = int((torch.cumsum(size[order], 0) <= need + 1e-9).sum()) if need > 0 else 0
    cut = torch.zeros_like(alive)
    cut[order[:count]] = True
    for n, piece in zip(group, torch.split(cut, units), strict=True):
        keep[n][piece.to(keep[n].device)] = False


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked weights in place (call after every optimizer step to keep them zero)."""
    params = dict(prunable(model))
    for n, m in masks.items():
        params[n].mul_(m.to(params[n].device, params[n].dtype))


def sparsity(model: nn.Module) -> float:
    """Fraction of prunable weights that are exactly zero.

    Examples
    --------
    >>> net = nn.Linear(4, 2)
    >>> with torch.no_grad():
    ...     net.weight[0] = 0
    >>> sparsity(net)
    0.5
    """
    total = zeros = 0
    for _, p in prunable(model):
        total += p.numel()
        zeros += int((p == 0).sum())
    return zeros / total if total else 0.0


def iterative_levels(target: float, fraction: float) -> list[float]:
    """Cumulative sparsities of the rounds of iterative pruning that end exactly at ``target``.

    The number of rounds is what ``fraction`` per round needs; the rate is then evened out.

    Examples
    --------
    >>> [round(s, 4) for s in iterative_levels(0.5, 0.2)]
    [0.1591, 0.2929, 0.4054, 0.5]
    """
    if target <= 0:
        return []
    rounds = max(1, math.ceil(math.log(1 - target) / math.log(1 - fraction) - 1e-9))
    rate = 1 - (1 - target) ** (1 / rounds)
    return [1 - (1 - rate) ** (k + 1) for k in range(rounds)]


@torch.no_grad()
def rewind(model: nn.Module, initial: dict[str, torch.Tensor], masks: Masks) -> None:
    """Restore every parameter and buffer to ``initial`` (a state_dict), then re-apply ``masks``."""
    model.load_state_dict(initial)
    apply_masks(model, masks)
