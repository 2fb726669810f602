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

**Output units** (the units of the layers no other layer reads: a classifier's logits) have
no nonlinearity, so "active" is not defined for them the way it is for a ReLU unit. How they
are judged is a choice (``outputs``):

* ``"exclude"`` (the default) -- outputs are not nodes of the count: no path ends at one.
  Emergence then depends only on the hidden representation and the weights into it.
* ``"logits"`` -- the raw output is judged like any unit (the rule before this option
  existed). It is arbitrary under a softmax: adding a constant to every logit changes no
  prediction but can switch every output unit, and one output unit moves log10 E by ~0.3 in
  the reproduction's MLP.
* ``"softmax"`` -- the softmax probability (over the output's unit axis) is judged instead.
  It is invariant to that shift, but with C classes a balanced probe gives mean
  probabilities near 1/C, so whether outputs are active depends on C against tau.

Since an output unit is a sink, excluding it is the same as calling it inactive: paths stay
inside the active nodes, and a sink starts none.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (tau = 0.05).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.errors import ConfigError, check_choice
from emergence.graphdata import Graph
from emergence.measure import Method, measure_layers, measure_masks
from emergence.result import EmergenceResult

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "DEFAULT_OUTPUTS", "DEFAULT_THRESHOLD", "OUTPUTS", "Activity",
           "LayerInfo", "ModelGraph",
           "check_aggregation", "check_outputs"]

AGGREGATIONS = ("mean", "absmean", "frac")
#: How output units are judged (see the module docs).
OUTPUTS = ("exclude", "logits", "softmax")


def check_outputs(outputs: str) -> str:
    """Return ``outputs`` if it is one of :data:`OUTPUTS`, else raise :class:`ConfigError`.

    Examples
    --------
    >>> check_outputs("softmax")
    'softmax'
    """
    return check_choice("outputs", outputs, OUTPUTS)


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
    absmean : torch.Tensor or None
        ``[N]`` mean absolute activation (recorded for ``"absmean"``; may be None otherwise).
    per_sample : torch.Tensor or None
        ``[S, N]`` per-sample activations, kept for ``"frac"`` only.
    samples : int
        Size of the probe batch.
    output : torch.Tensor or None
        ``[N]`` bool: the output units (None: no node is an output).
    softmax : Activity or None
        The same statistics of the softmax probabilities, for the output units only (``[N_out]``,
        in node order).
    """

    aggregation: str
    mean: torch.Tensor
    absmean: torch.Tensor | None
    per_sample: torch.Tensor | None
    samples: int
    output: torch.Tensor | None = None
    softmax: Activity | None = None

    @classmethod
    def from_samples(cls, per_sample: torch.Tensor, per_sample_abs: torch.Tensor, aggregation: str, *,
                     output: torch.Tensor | None = None, softmax: torch.Tensor | None = None) -> Activity:
        """Aggregate ``[S, N]`` per-sample activations (and their absolute values).

        ``output`` (``[N]`` bool) marks the output units and ``softmax`` (``[S, N_out]``) holds their
        per-sample softmax probabilities.

        Examples
        --------
        >>> a = Activity.from_samples(torch.tensor([[0.0, 1.0], [0.2, -1.0]]),
        ...                           torch.tensor([[0.0, 1.0], [0.2, 1.0]]), "mean")
        >>> a.mask(0.05).tolist(), a.mask(0.2).tolist()
        ([True, False], [False, False])
        """
        check_aggregation(aggregation)
        keep = aggregation == "frac"
        return cls.from_sums(per_sample.double().sum(0), per_sample_abs.double().sum(0), int(per_sample.shape[0]),
                             aggregation, per_sample=per_sample if keep else None, output=output,
                             softmax_sum=None if softmax is None else softmax.double().sum(0),
                             softmax_per_sample=softmax if keep else None)

    @classmethod
    def from_sums(cls, total: torch.Tensor, abs_total: torch.Tensor | None, samples: int, aggregation: str, *,
                  per_sample: torch.Tensor | None = None, output: torch.Tensor | None = None,
                  softmax_sum: torch.Tensor | None = None,
                  softmax_per_sample: torch.Tensor | None = None) -> Activity:
        """Aggregate from ``[N]`` sums over ``samples`` samples (float64), as a forward pass accumulates them
        chunk by chunk; ``"frac"`` also needs the ``[S, N]`` per-sample values (and those of the softmax).

        Examples
        --------
        >>> a = Activity.from_sums(torch.tensor([0.2, -1.0], dtype=torch.float64), None, 2, "mean")
        >>> a.mean.tolist(), a.mask(0.05).tolist()
        ([0.1, -0.5], [True, False])
        """
        check_aggregation(aggregation)
        if aggregation == "absmean" and abs_total is None:
            raise ConfigError("aggregation 'absmean' needs the sums of absolute activations")
        if aggregation == "frac" and per_sample is None:
            raise ConfigError("aggregation 'frac' needs the per-sample activations, not only their sums")
        if samples < 1:
            raise ConfigError(f"activity needs at least one sample, got {samples}")
        soft = None
        if softmax_sum is not None:
            soft = cls.from_sums(softmax_sum, softmax_sum, samples, aggregation, per_sample=softmax_per_sample)
        return cls(
            aggregation,
            total.double() / samples,
            None if abs_total is None else abs_total.double() / samples,
            per_sample.float().clone() if aggregation == "frac" and per_sample is not None else None,
            int(samples),
            output,
            soft,
        )

    def statistic(self, threshold: float | None = None) -> torch.Tensor:
        """``[N]`` statistic compared with the threshold (``"frac"`` needs the threshold itself)."""
        if self.aggregation == "mean":
            return self.mean
        if self.aggregation == "absmean":
            assert self.absmean is not None  # from_sums refuses absmean without it
            return self.absmean
        if threshold is None:
            raise ConfigError("aggregation 'frac' needs a threshold to count samples above it")
        assert self.per_sample is not None
        return (self.per_sample > threshold).double().mean(0)

    def mask(self, threshold: float = DEFAULT_THRESHOLD, outputs: str = DEFAULT_OUTPUTS) -> torch.Tensor:
        """``[N]`` bool: which nodes are active at ``threshold``, output units judged as ``outputs`` says.

        Examples
        --------
        >>> logits = torch.tensor([[0.0, 3.0], [0.0, 3.0]])
        >>> a = Activity.from_samples(logits, logits.abs(), "mean", output=torch.tensor([True, True]),
        ...                           softmax=logits.softmax(1))
        >>> a.mask(0.05, "logits").tolist(), a.mask(0.05, "softmax").tolist(), a.mask(0.05, "exclude").tolist()
        ([False, True], [False, True], [False, False])
        """
        check_outputs(outputs)
        stat = self.statistic(threshold)
        cut = 0.5 if self.aggregation == "frac" else threshold
        active = stat > cut
        if self.output is not None and outputs != "logits":
            active = active.clone()
            if outputs == "exclude":
                active[self.output] = False
            else:
                if self.softmax is None:
                    raise ConfigError("the softmax of the outputs was not recorded; measure the model again")
                active[self.output] = self.softmax.mask(threshold)
        return active


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
    graph : emergence.Graph
        ``edge_index``, ``edge_weight`` (total absolute effective weight of the
        connection), ``layer`` (index into ``layers``), ``names``, ``activity`` (the
        statistic) and ``active`` at ``threshold``.
    layers : list of LayerInfo
    activity : Activity
    threshold : float
    source : str
        Where the model came from (a file name or a class name).
    """

    graph: Graph
    layers: list[LayerInfo]
    activity: Activity
    threshold: float
    source: str = ""

    #: One node per channel of a conv layer; a neuron-level subclass says ``"neuron"``.
    granularity: ClassVar[str] = DEFAULT_GRANULARITY

    @property
    def num_edges(self) -> int:
        """Edges of the graph."""
        return int(self.graph.num_edges)

    def layer_edges(self) -> torch.Tensor:
        """``[L]`` edges into each layer."""
        g = self.graph
        return torch.bincount(g.layer[g.edge_index[1]], minlength=len(self.layers))

    def count(self, masks: torch.Tensor, *, weighted: bool = False, device: str | torch.device | None = None,
              method: Method = "auto") -> list[EmergenceResult]:
        """Emergence under each row of ``masks`` (``[T, N]`` bool), all in one pass (see
        :func:`emergence.measure_masks`)."""
        return measure_masks(self.graph, masks, weighted=weighted, device=device, method=method)

    def layer_log10(self, masks: torch.Tensor, *, weighted: bool = False,
                    device: str | torch.device | None = None) -> tuple[torch.Tensor, int]:
        """``[T, L]`` log10 of the emergent paths starting in each layer under each mask, and the edges counted
        (see :func:`emergence.measure.measure_layers`): what a monitor needs, without per-node results."""
        per_layer, edges = measure_layers(self.graph, masks, weighted=weighted, device=device)
        if per_layer.shape[1] < len(self.layers):  # trailing layers without nodes of their own
            pad = torch.full((per_layer.shape[0], len(self.layers) - per_layer.shape[1]), -math.inf,
                             dtype=torch.float64)
            per_layer = torch.cat([per_layer, pad], 1)
        return per_layer, edges

    def explicit(self) -> ModelGraph:
        """The graph with its edge list (here: itself)."""
        return self

    def at(self, threshold: float = DEFAULT_THRESHOLD, outputs: str = DEFAULT_OUTPUTS) -> Graph:
        """The graph with ``active`` (and ``activity``) at another threshold; the structure is shared.

        Output units are judged as ``outputs`` says, by default as :func:`~emergence.measure_model` judges
        them. Sharing ``edge_index`` keeps the topological levels cached across thresholds.
        """
        g = copy.copy(self.graph)
        g.active = self.activity.mask(threshold, outputs)
        g.activity = self.activity.statistic(threshold).float()
        return g

    def masks(self, thresholds: Sequence[float], outputs: str = DEFAULT_OUTPUTS) -> torch.Tensor:
        """``[T, N]`` masks for several thresholds, output units judged as ``outputs`` says."""
        if not thresholds:
            return torch.zeros(0, 0)
        return torch.stack([self.activity.mask(t, outputs) for t in thresholds])

    def input_layers(self) -> list[int]:
        """Indices of the input layers (kind ``"input"``)."""
        return [i for i, info in enumerate(self.layers) if info.kind == "input"]

    def hidden_log10(self, result: EmergenceResult) -> float | None:
        """``log10`` of the emergent paths that start outside the input layers (None when there are none).

        Input units' activity is fixed by the data, not learned; this is the part of E whose
        sources the network itself switches off.

        Examples
        --------
        >>> import torch
        >>> from emergence.graph import graph
        >>> g = graph(torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([False, False, True]),
        ...           layer=torch.tensor([0, 1, 2]))
        >>> layers = [LayerInfo("input", "input", 1, 0), LayerInfo("h", "Linear", 1, 1), LayerInfo("o", "Linear", 1, 2)]
        >>> mg = ModelGraph(g, layers, None, 0.05)
        >>> round(mg.hidden_log10(mg.count(g.active.unsqueeze(0))[0]), 6)
        0.0
        """
        inputs = set(self.input_layers())
        parts = [v for k, v in (result.layer_log10 or {}).items() if k not in inputs and v is not None]
        if not parts:
            return None
        top = max(parts)
        return top + math.log10(sum(10.0 ** (v - top) for v in parts))

    def output_layers(self) -> list[int]:
        """Indices of the output layers (those holding the output units of :attr:`Activity.output`)."""
        out = self.activity.output
        if out is None:
            return []
        return sorted({int(v) for v in self.graph.layer[out].unique()})
