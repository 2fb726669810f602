"""Which neurons are active: per-node statistics from real forward passes, and masks at any threshold.

A unit's activation is read after its layer's nonlinearity (the end of the chain of
elementwise operations that follows the layer) and averaged over the spatial
positions of a conv channel. Over the probe batch it is aggregated by

* ``"mean"`` -- the mean activation (the paper's rule: active when it exceeds tau);
* ``"absmean"`` -- the mean absolute activation;
* ``"frac"`` -- the fraction of samples whose activation exceeds tau (active when
  that fraction exceeds one half).

One forward pass serves every threshold: :class:`Activity` keeps the statistics and
:meth:`Activity.mask` turns them into a mask for any tau.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (tau = 0.05).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch_geometric.data import Data

from emergence.errors import ConfigError, check_choice
from emergence.measure import measure_masks
from emergence.result import EmergenceResult

__all__ = ["AGGREGATIONS", "DEFAULT_THRESHOLD", "Activity", "LayerInfo", "ModelGraph", "check_aggregation"]

AGGREGATIONS = ("mean", "absmean", "frac")
#: The paper's activity threshold.
DEFAULT_THRESHOLD = 0.05


def check_aggregation(aggregation: str) -> str:
    """Return ``aggregation`` if it is known, else raise :class:`ConfigError`.

    Examples
    --------
    >>> check_aggregation("mean")
    'mean'
    """
    return check_choice("aggregation", aggregation, AGGREGATIONS)


@dataclass(frozen=True, eq=False)
class Activity:
    """Per-node activity statistics of a probe batch.

    Attributes
    ----------
    aggregation : str
        One of :data:`AGGREGATIONS`.
    mean : torch.Tensor
        ``[N]`` mean activation over the probe batch.
    absmean : torch.Tensor
        ``[N]`` mean absolute activation.
    per_sample : torch.Tensor or None
        ``[S, N]`` per-sample activations, kept for ``"frac"`` only.
    samples : int
        Size of the probe batch.
    """

    aggregation: str
    mean: torch.Tensor
    absmean: torch.Tensor
    per_sample: torch.Tensor | None
    samples: int

    @classmethod
    def from_samples(cls, per_sample: torch.Tensor, per_sample_abs: torch.Tensor, aggregation: str) -> Activity:
        """Aggregate ``[S, N]`` per-sample activations (and their absolute values).

        Examples
        --------
        >>> a = Activity.from_samples(torch.tensor([[0.0, 1.0], [0.2, -1.0]]),
        ...                           torch.tensor([[0.0, 1.0], [0.2, 1.0]]), "mean")
        >>> a.mask(0.05).tolist(), a.mask(0.2).tolist()
        ([True, False], [False, False])
        """
        check_aggregation(aggregation)
        return cls(
            aggregation,
            per_sample.double().mean(0),
            per_sample_abs.double().mean(0),
            per_sample.float().clone() if aggregation == "frac" else None,
            int(per_sample.shape[0]),
        )

    def statistic(self, threshold: float | None = None) -> torch.Tensor:
        """``[N]`` statistic compared with the threshold (``"frac"`` needs the threshold itself)."""
        if self.aggregation == "mean":
            return self.mean
        if self.aggregation == "absmean":
            return self.absmean
        if threshold is None:
            raise ConfigError("aggregation 'frac' needs a threshold to count samples above it")
        assert self.per_sample is not None
        return (self.per_sample > threshold).double().mean(0)

    def mask(self, threshold: float) -> torch.Tensor:
        """``[N]`` bool: which nodes are active at ``threshold``."""
        stat = self.statistic(threshold)
        return stat > (0.5 if self.aggregation == "frac" else threshold)


@dataclass(frozen=True)
class LayerInfo:
    """One group of nodes: the inputs, or the units of one dense or conv layer.

    Attributes
    ----------
    name, kind : str
        E.g. ``"features.0"``, ``"Conv2d"``; the inputs are named ``"input"``, kind ``"input"``.
    units : int
        Nodes in the layer (features, or channels for conv layers).
    offset : int
        Id of its first node; its nodes are ``offset .. offset + units - 1``.
    """

    name: str
    kind: str
    units: int
    offset: int


@dataclass(frozen=True, eq=False)
class ModelGraph:
    """A network's graph together with the activity measured on a probe batch.

    Attributes
    ----------
    graph : torch_geometric.data.Data
        ``edge_index``, ``edge_weight`` (total absolute effective weight of the
        connection), ``layer`` (index into ``layers``), ``names``, ``activity`` (the
        statistic) and ``active`` at ``threshold``.
    layers : list of LayerInfo
    activity : Activity
    threshold : float
    source : str
        Where the model came from (a file name or a class name).
    """

    graph: Data
    layers: list[LayerInfo]
    activity: Activity
    threshold: float
    source: str = ""

    #: One node per channel of a conv layer; a neuron-level subclass says ``"neuron"``.
    granularity: ClassVar[str] = "channel"

    @property
    def num_edges(self) -> int:
        """Edges of the graph."""
        return int(self.graph.num_edges)

    def layer_edges(self) -> torch.Tensor:
        """``[L]`` edges into each layer."""
        g = self.graph
        return torch.bincount(g.layer[g.edge_index[1]], minlength=len(self.layers))

    def count(self, masks: torch.Tensor, *, weighted: bool = False,
              device: str | torch.device | None = None) -> list[EmergenceResult]:
        """Emergence under each row of ``masks`` (``[T, N]`` bool), all in one pass (see
        :func:`emergence.measure_masks`)."""
        return measure_masks(self.graph, masks, weighted=weighted, device=device)

    def explicit(self) -> ModelGraph:
        """The graph with its edge list (here: itself)."""
        return self

    def at(self, threshold: float) -> Data:
        """The graph with ``active`` (and ``activity``) at another threshold; the structure is shared.

        Sharing ``edge_index`` keeps the topological levels cached across thresholds.
        """
        g = copy.copy(self.graph)
        g.active = self.activity.mask(threshold)
        g.activity = self.activity.statistic(threshold).float()
        return g

    def masks(self, thresholds: Sequence[float]) -> torch.Tensor:
        """``[T, N]`` masks for several thresholds."""
        return torch.stack([self.activity.mask(t) for t in thresholds]) if thresholds else torch.zeros(0, 0)
