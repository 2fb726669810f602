"""One call from a model (object or file) and a probe batch to emergence with a per-layer breakdown.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emergence.activity import ModelGraph, check_aggregation, check_outputs
from emergence.adapters._probe import check_granularity
from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.device import resolve_device
from emergence.errors import ConfigError
from emergence.result import EmergenceResult

__all__ = ["ModelMeasurement", "measure_model", "layer_table"]


def layer_table(mg: ModelGraph, result: EmergenceResult, active: torch.Tensor | None = None) -> Any:
    """Per-layer pandas DataFrame: units, active units, incoming edges, emergence starting there.

    ``active`` is the ``[N]`` mask the result was counted with (default: the graph's own).
    """
    import pandas as pd

    mask = mg.graph.active if active is None else active
    active = torch.bincount(mg.graph.layer[mask], minlength=len(mg.layers))
    edges = mg.layer_edges()
    shares = result.layer_shares()
    rows = [
        dict(layer=info.name, kind=info.kind, units=info.units, active=int(active[i]),
             active_fraction=int(active[i]) / info.units if info.units else 0.0, edges=int(edges[i]),
             log10_emergence=(result.layer_log10 or {}).get(i), share=shares.get(i, 0.0))
        for i, info in enumerate(mg.layers)
    ]
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class ModelMeasurement:
    """Emergence of a model on a probe batch.

    Attributes
    ----------
    result : EmergenceResult
        At ``threshold``.
    layers : pandas.DataFrame
        One row per layer (inputs first): ``layer``, ``kind``, ``units``, ``active``,
        ``active_fraction``, ``edges`` (incoming, nonzero), ``log10_emergence`` (paths
        that start in the layer) and ``share`` (of E).
    thresholds : list of (float, EmergenceResult)
        Results at every requested threshold (from the same forward pass).
    outputs : str
        How output units were judged (see :mod:`emergence.activity`).
    hidden_log10 : float or None
        ``log10`` of the emergent paths that start outside the input layers, at ``threshold``.
    model_graph : ModelGraph
        The graph and the activity statistics.
    threshold : float
    aggregation : str
    samples : int
    """

    result: EmergenceResult
    layers: Any
    thresholds: list[tuple[float, EmergenceResult]]
    model_graph: ModelGraph
    threshold: float
    aggregation: str
    samples: int
    outputs: str = DEFAULT_OUTPUTS
    hidden_log10: float | None = None

    @property
    def granularity(self) -> str:
        """``"neuron"`` for a neuron-level measurement, else ``"channel"``."""
        return self.model_graph.granularity

    def explicit_graph(self) -> Any:
        """The graph as an edge list (a neuron-level graph is materialized: at most 10**7 routes)."""
        return self.model_graph.explicit().graph

    def to_dict(self) -> dict[str, Any]:
        """The keys of ``emergence graph --json`` plus ``layers``, ``thresholds`` and the probe settings."""
        out = self.result.to_dict()
        out.pop("layers", None)
        records = self.layers.to_dict(orient="records")
        for r in records:
            if r["log10_emergence"] is not None and not math.isfinite(r["log10_emergence"]):
                r["log10_emergence"] = None
        out.update(threshold=self.threshold, aggregation=self.aggregation, samples=self.samples,
                   granularity=self.granularity, outputs=self.outputs, emergence_hidden_log10=self.hidden_log10,
                   model=self.model_graph.source, layers=records)
        if self.thresholds:
            out["thresholds"] = [dict(threshold=t, **r.to_dict()) for t, r in self.thresholds]
        return out

    def to_json(self, **kwargs: Any) -> str:
        """One strict JSON object (see :meth:`to_dict`)."""
        text = self.result.to_json()  # keeps exact integers of any size
        head = json.loads(text)
        body = self.to_dict()
        body["emergence"] = head["emergence"]
        return json.dumps(body, allow_nan=False, **kwargs)


def measure_model(
    model: Any,
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | str | os.PathLike[str] | None = None,
    *,
    samples: int = 256,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    thresholds: Sequence[float] | None = None,
    aggregation: str = DEFAULT_AGGREGATION,
    weighted: bool = False,
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
    granularity: str = DEFAULT_GRANULARITY,
    outputs: str = DEFAULT_OUTPUTS,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> ModelMeasurement:
    """Build a model's graph, measure activity on a probe batch, and count emergence.

    Parameters
    ----------
    model : nn.Module, ExportedProgram, onnx.ModelProto, str or path-like
        The model, or a model file (``.pt2``, ``.onnx``, TorchScript, a state_dict or
        ``.safetensors`` of a built-in architecture, or a trusted pickle).
    inputs : torch.Tensor, tuple of tensors, str, path-like or None
        The probe batch itself (a tuple for a model with several inputs, e.g. token ids and a
        mask), a bundled dataset name, an ``.npz`` file (``x``, or ``x0``, ``x1``, ...), or
        ``"random"`` / None for a seeded random batch shaped like the model's declared inputs
        (token ids below the size of the embedding table they index, masks of ones).
    samples : int, default 256
        Probe batch size when ``inputs`` is not a tensor.
    seed : int, default 0
        Seed of a random batch.
    threshold : float, default ``DEFAULT_THRESHOLD``
        Activity threshold of the main result.
    thresholds : sequence of float, optional
        More thresholds, all served by the same forward pass.
    aggregation : {"mean", "absmean", "frac"}, default ``DEFAULT_AGGREGATION``
        How activations are aggregated over the batch (see :mod:`emergence.activity`).
    weighted : bool, default False
        Weight paths by ``|w|`` (the effective weights, batch norm folded in).
    device : str or torch.device, optional
        Where the PyTorch forward pass and the count run.
    trust_pickle : bool, default False
        Allow unpickling a whole model file (runs its code).
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
        One node per channel of a conv layer (activity averaged over positions), or one per
        neuron -- every (channel, position) activation, counted by transposed convolutions
        without building the edge list (:mod:`emergence.adapters.neuron_count`).
    outputs : {"exclude", "logits", "softmax"}, default "exclude"
        How the output units (a classifier's logits) are judged: not nodes, raw values, or
        softmax probabilities (see :mod:`emergence.activity` for why ``"exclude"`` is the default).
    timeout : float or None, default 600
        Seconds a model file's forward passes may take (None: no limit); foreign code that runs
        longer is stopped with :class:`~emergence.errors.TimeLimitError`.

    Returns
    -------
    ModelMeasurement

    Raises
    ------
    EmergenceError
        A subclass naming the problem: a bad file, an unsupported op, inputs the model
        rejects, an untrusted pickle, a device this machine lacks, a time limit passed.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> m = measure_model(net, torch.rand(32, 4), thresholds=[0.01, 0.1])
    >>> list(m.layers.columns[:4]), len(m.thresholds)
    (['layer', 'kind', 'units', 'active'], 2)
    """
    from emergence.adapters.datasets import probe_inputs
    from emergence.adapters.model_files import LoadedModel, load_model, model_graph

    check_aggregation(aggregation)
    check_outputs(outputs)
    resolve_device(device)
    Deadline(timeout)
    for t in [threshold, *(thresholds or [])]:
        if not math.isfinite(float(t)):
            raise ConfigError(f"thresholds must be finite numbers, got {t}")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, trust_pickle=trust_pickle)
    if not isinstance(inputs, (torch.Tensor, tuple, list)):
        shape = model.input_shape if isinstance(model, LoadedModel) else None
        specs = model.input_specs if isinstance(model, LoadedModel) else None
        inputs = probe_inputs(inputs, samples=samples, seed=seed, input_shape=shape, input_specs=specs)
    mg = model_graph(model, inputs, threshold=threshold, aggregation=aggregation, device=device,
                     granularity=check_granularity(granularity), timeout=timeout)
    ts = [float(threshold), *(float(t) for t in (thresholds or []))]
    masks = mg.masks(ts, outputs)
    if outputs != "logits":  # the graph carries the mask it was counted with (saved graphs, layer tables)
        g = copy.copy(mg.graph)
        g.active = masks[0]
        mg = dataclasses.replace(mg, graph=g)
    result, *others = mg.count(masks, weighted=weighted, device=device)  # one pass for all
    return ModelMeasurement(result, layer_table(mg, result), list(zip(ts[1:], others, strict=False)), mg,
                            float(threshold), aggregation, mg.activity.samples, outputs, mg.hidden_log10(result))
