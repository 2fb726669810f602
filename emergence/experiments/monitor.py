"""Emergence in your own training loop: a :class:`Monitor` that is never stale, and its history as data.

``Monitor(model, probe)`` exports the model once; ``monitor(model, epoch=...)`` measures it on the fixed
probe batch and returns a :class:`MonitorRecord`. It re-walks by itself whenever the structure it counted
changes -- the zero pattern of a weight (in-place pruning, a new ``torch.nn.utils.prune`` mask, lottery
ticket rewinding, batch-norm scales set to 0) -- and exports again when the model's layout changes
(a pruning reparametrization added or removed, a module or parameter added or replaced), so that its value
always equals a fresh :func:`~emergence.measure_model` of the model as it is (see
:mod:`emergence.adapters.model_probe`). Measuring draws no random numbers and leaves the model's mode and
weights untouched.

:meth:`Monitor.to_dataset` returns the history in the sweep-results schema
(:func:`~emergence.experiments.results.empty_results`), so ``emergence report`` and ``emergence plot`` read
it, and the histories of several runs combine with ``xarray.concat`` along ``seed`` or ``sparsity``.

Examples
--------
>>> import torch
>>> from emergence.experiments.monitor import Monitor
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> monitor = Monitor(net, torch.rand(32, 4))
>>> record = monitor(net, epoch=0)
>>> record.epoch, record.threshold, record.log10 == monitor(net, epoch=1).log10
(0, 0.05, True)
>>> sorted(monitor.to_dataset().sizes.items())
[('epoch', 2), ('layer', 3), ('seed', 1), ('sparsity', 1), ('threshold', 1)]

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emergence.adapters.model_probe import ModelProbe, ProbeRecord, _unwrap
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.errors import ConfigError
from emergence.experiments.results import METRIC_VARIABLES

__all__ = ["METRICS", "Monitor", "MonitorConfig", "MonitorRecord", "ThresholdRecord"]

#: Per-epoch metrics a measurement may carry (the sweep schema's loss and accuracy variables).
METRICS = METRIC_VARIABLES
#: Largest E a logger's float32 holds; above it only the log10 values are logged.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class MonitorConfig:
    """How a :class:`Monitor` measures (stored as JSON with its history).

    Attributes
    ----------
    thresholds : tuple of float
        The first is the main one (:attr:`MonitorRecord.log10` and friends).
    granularity, outputs, aggregation : str
        As in :func:`~emergence.measure_model`.
    weighted : bool
    device : str or None
    """

    thresholds: tuple[float, ...] = (DEFAULT_THRESHOLD,)
    granularity: str = DEFAULT_GRANULARITY
    outputs: str = DEFAULT_OUTPUTS
    aggregation: str = DEFAULT_AGGREGATION
    weighted: bool = False
    device: str | None = None

    def to_json(self) -> str:
        """The config as one JSON object."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ThresholdRecord:
    """One measurement at one threshold.

    Attributes
    ----------
    threshold : float
    log10 : float
        ``log10 E``; ``-inf`` when E = 0.
    relative_log10 : float
        ``log10 (E / edges)``; ``-inf`` when E = 0.
    hidden_log10 : float
        ``log10`` of the emergent paths that start outside the input layers; ``-inf`` when there are none.
    active_fraction, emergence_share : dict of str to float
        Per layer (inputs first): the fraction of its units active, and its share of E.
    active_count : dict of str to int
        Per layer: active units.
    hidden_active_fraction : float
        Fraction of the hidden units (neither inputs nor outputs) that are active.
    weighted : bool
        Paths weighted by ``|w|`` (else E counts paths: an integer).
    """

    threshold: float
    log10: float
    relative_log10: float
    hidden_log10: float
    active_fraction: dict[str, float]
    emergence_share: dict[str, float]
    active_count: dict[str, int]
    hidden_active_fraction: float
    weighted: bool = False

    @property
    def emergence(self) -> float:
        """E as a float: 0.0 when no path emerges, a whole number while a path count is below 2**53, ``inf`` past
        float64's range (~1e308).

        Examples
        --------
        >>> ThresholdRecord(0.05, math.log10(128), 0.0, 0.0, {}, {}, {}, 0.0).emergence
        128.0
        """
        if self.log10 == -math.inf:
            return 0.0
        if self.log10 >= 308:
            return math.inf
        value = 10.0 ** self.log10
        return float(round(value)) if not self.weighted and value < 2.0 ** 53 else value


@dataclass(frozen=True)
class MonitorRecord:
    """One call of a :class:`Monitor`: every threshold, and the metrics given with it.

    The properties ``threshold``, ``log10``, ``relative_log10``, ``hidden_log10``, ``emergence``,
    ``active_fraction``, ``emergence_share`` and ``hidden_active_fraction`` are those of the first (main)
    threshold; :meth:`at` gives any other.

    Attributes
    ----------
    epoch : int
    thresholds : tuple of ThresholdRecord
    layers : tuple of str
    num_edges : int
        Edges of the graph counted (neuron level: routes are not materialized, see ``num_edges`` of
        :class:`~emergence.adapters.neuron_count.NeuronModelGraph`).
    structure : str
        What the call redid first: ``""`` (nothing), ``"walk"`` or ``"export"``.
    metrics : dict of str to float
        The ``METRICS`` given to :meth:`Monitor.measure`.
    n_params : int
        Nonzero parameters (a pruned weight counts as ``weight_orig * weight_mask``).
    sparsity : float
        Fraction of the dense and conv weights that are zero (as a sweep's ``actual_sparsity``).
    probe : ProbeRecord or None
        The probe's own record, every threshold as tensors (what :meth:`Monitor.to_dataset` stores).
    """

    epoch: int
    thresholds: tuple[ThresholdRecord, ...]
    layers: tuple[str, ...]
    num_edges: int
    structure: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    n_params: int = 0
    sparsity: float = 0.0
    probe: ProbeRecord | None = field(default=None, repr=False, compare=False)

    def at(self, threshold: float) -> ThresholdRecord:
        """The record at ``threshold`` (one the monitor measures).

        Raises
        ------
        ConfigError
            For a threshold the monitor does not measure.
        """
        for t in self.thresholds:
            if math.isclose(t.threshold, float(threshold), rel_tol=1e-12, abs_tol=1e-15):
                return t
        raise ConfigError(f"threshold {threshold} was not measured; the monitor measures "
                          f"{', '.join(f'{t.threshold:g}' for t in self.thresholds)}")

    @property
    def main(self) -> ThresholdRecord:
        """The record at the first threshold."""
        return self.thresholds[0]

    threshold = property(lambda self: self.main.threshold, doc="The main threshold.")
    log10 = property(lambda self: self.main.log10, doc="log10 E at the main threshold (-inf when E = 0).")
    relative_log10 = property(lambda self: self.main.relative_log10, doc="log10 (E / edges) at the main threshold.")
    hidden_log10 = property(lambda self: self.main.hidden_log10, doc="log10 of the paths starting past the inputs.")
    emergence = property(lambda self: self.main.emergence, doc="E at the main threshold, as a float.")
    active_fraction = property(lambda self: self.main.active_fraction, doc="Per-layer active fractions.")
    emergence_share = property(lambda self: self.main.emergence_share, doc="Per-layer shares of E.")
    hidden_active_fraction = property(lambda self: self.main.hidden_active_fraction,
                                      doc="Fraction of the hidden units that are active.")

    def scalars(self, prefix: str = "emergence/", *, per_layer: bool = False) -> dict[str, float]:
        """Finite numbers for a logger, named ``{prefix}{quantity}@{threshold}``.

        Per threshold: ``E`` (0.0 when no path emerges; left out above float32's range, where only the
        logarithms are finite for a logger), ``log10``, ``relative_log10`` and ``hidden_log10`` (left out
        when their E is 0, where the logarithm is not a number), ``active_fraction`` (of the hidden units),
        ``num_edges``; with ``per_layer`` also ``active_fraction/{layer}`` and ``share/{layer}``.

        Examples
        --------
        >>> t = ThresholdRecord(0.05, -math.inf, -math.inf, -math.inf, {"fc": 0.0}, {"fc": 0.0}, {"fc": 0}, 0.0)
        >>> MonitorRecord(3, (t,), ("fc",), 10).scalars()
        {'emergence/E@0.05': 0.0, 'emergence/active_fraction@0.05': 0.0, 'emergence/num_edges': 10.0}
        """
        out: dict[str, float] = {}
        for t in self.thresholds:
            at = f"@{t.threshold:g}"
            e = t.emergence
            if e <= _FLOAT32_MAX:
                out[f"{prefix}E{at}"] = e
            for name in ("log10", "relative_log10", "hidden_log10"):
                v = getattr(t, name)
                if math.isfinite(v):
                    out[f"{prefix}{name}{at}"] = float(v)
            out[f"{prefix}active_fraction{at}"] = float(t.hidden_active_fraction)
            if per_layer:
                for layer, v in t.active_fraction.items():
                    out[f"{prefix}active_fraction/{layer}{at}"] = float(v)
                for layer, v in t.emergence_share.items():
                    out[f"{prefix}share/{layer}{at}"] = float(v)
        out[f"{prefix}num_edges"] = float(self.num_edges)
        return out


def _threshold_records(rec: ProbeRecord, hidden: torch.Tensor, weighted: bool) -> tuple[ThresholdRecord, ...]:
    """:class:`ThresholdRecord` per threshold of a probe's record; ``hidden`` marks the hidden layers."""
    out = []
    for i, tau in enumerate(rec.thresholds):
        zero, hzero = bool(rec.zero[i]), bool(rec.hidden_zero[i])
        count = rec.active_count[i]
        n_hidden = rec.units[hidden].sum()
        units = count[hidden].sum()
        out.append(ThresholdRecord(
            float(tau),
            -math.inf if zero else float(rec.emergence_log10[i]),
            -math.inf if zero else float(rec.relative_log10[i]),
            -math.inf if hzero else float(rec.hidden_log10[i]),
            dict(zip(rec.layers, rec.active_fraction[i].tolist(), strict=True)),
            dict(zip(rec.layers, rec.emergence_share[i].tolist(), strict=True)),
            dict(zip(rec.layers, count.tolist(), strict=True)),
            float(units) / float(n_hidden) if int(n_hidden) else 0.0,
            weighted,
        ))
    return tuple(out)


class Monitor:
    """Measures a model's emergence on a fixed probe batch as it trains (see the module docs).

    Parameters
    ----------
    model : torch.nn.Module
        Exported now (in eval mode; its mode is restored).
    probe : torch.Tensor or tuple of torch.Tensor
        The fixed probe batch, batch first (a tuple for a model with several inputs, e.g. token ids and a
        mask).
    thresholds : sequence of float, default ``(DEFAULT_THRESHOLD,)``
        Activity thresholds, all served by one forward pass; the first is the main one.
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
    outputs : {"exclude", "logits", "softmax"}, default "exclude"
    weighted : bool, default False
        Weight paths by ``|w|``; every call then walks the graph again (the weights are the edges').
    aggregation : {"mean", "absmean", "frac"}, default ``DEFAULT_AGGREGATION``
    device : str or torch.device, optional
        Where the forward pass and the count run.

    Raises
    ------
    ConfigError
        For an unknown option or no (or a non-finite) threshold.
    UnsupportedOpError, InputShapeError
        If the model cannot be exported or walked, or rejects the probe.

    See Also
    --------
    emergence.measure_model : one measurement, from a model or a file.
    emergence.integrations.lightning.EmergenceCallback, emergence.integrations.transformers.EmergenceCallback
    """

    def __init__(self, model: Any, probe: torch.Tensor | Sequence[torch.Tensor], *,
                 thresholds: Sequence[float] = (DEFAULT_THRESHOLD,), granularity: str = DEFAULT_GRANULARITY,
                 outputs: str = DEFAULT_OUTPUTS, weighted: bool = False, aggregation: str = DEFAULT_AGGREGATION,
                 device: str | torch.device | None = None) -> None:
        if isinstance(thresholds, (int, float)):
            thresholds = (float(thresholds),)
        self.config = MonitorConfig(tuple(float(t) for t in thresholds), granularity, outputs, aggregation,
                                    bool(weighted), None if device is None else str(device))
        self._probe = ModelProbe(model, probe, self.config.thresholds, aggregation=aggregation, weighted=weighted,
                                 device=device, granularity=granularity, outputs=outputs)
        self.source = type(model).__name__
        self.history: list[MonitorRecord] = []
        self._sizes: tuple[int, float] | None = None

    def __call__(self, model: Any, *, epoch: int | None = None, **metrics: float) -> MonitorRecord:
        """Same as :meth:`measure`."""
        return self.measure(model, epoch=epoch, **metrics)

    def measure(self, model: Any, *, epoch: int | None = None, **metrics: float) -> MonitorRecord:
        """Measure ``model`` now and add the record to :attr:`history`.

        Parameters
        ----------
        model : torch.nn.Module
            The monitored model (another one is exported anew).
        epoch : int, optional
            Default: 0 for the first call, then one more than the last record's epoch. Measuring an
            epoch again replaces it in :meth:`to_dataset`.
        **metrics : float
            Any of :data:`METRICS` (``train_loss``, ``test_accuracy``, ...), stored with the record.

        Returns
        -------
        MonitorRecord

        Raises
        ------
        ConfigError
            For a negative epoch or an unknown metric.
        NonFiniteError
            If the probe batch gives NaN or infinite activations.
        """
        if epoch is None:
            epoch = self.history[-1].epoch + 1 if self.history else 0
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ConfigError(f"epoch must be an integer >= 0, got {epoch!r}")
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ConfigError(f"unknown metric {unknown[0]!r}; a record carries {', '.join(METRICS)}")
        rec = self._probe(model)
        hidden = torch.tensor([r == "hidden" for r in rec.roles], dtype=torch.bool)
        if rec.structure or self._sizes is None:  # unchanged zeros: unchanged sizes
            self._sizes = _sizes(_unwrap(model))
        n_params, sparsity = self._sizes
        record = MonitorRecord(int(epoch), _threshold_records(rec, hidden, self.config.weighted), rec.layers,
                               rec.num_edges, rec.structure, {k: float(v) for k, v in metrics.items()}, n_params,
                               sparsity, rec)
        self.history.append(record)
        return record

    @property
    def layers(self) -> list[str]:
        """Layer names of the last measurement (inputs first)."""
        return list(self._probe.layers)

    def to_dataset(self, *, sparsity: float = 0.0, seed: int = 0, attrs: Mapping[str, Any] | None = None) -> Any:
        """The history as an xarray Dataset in the sweep-results schema (one run: ``sparsity`` and ``seed``
        of length 1; ``epoch`` the measured epochs, ``threshold``, ``layer``).

        Parameters
        ----------
        sparsity : float, default 0.0
            The run's label on the ``sparsity`` axis (e.g. its target sparsity).
        seed : int, default 0
            The run's label on the ``seed`` axis.
        attrs : mapping, optional
            Extra attributes (``dataset`` titles a report).

        Returns
        -------
        xarray.Dataset
            NaN where a value was not measured (a metric not given, a layer that did not exist yet);
            ``emergence_log10`` is ``-inf`` where E = 0, as in a sweep. ``actual_sparsity``, ``n_params`` and
            ``n_edges`` are those of the last record's model.

        Raises
        ------
        ConfigError
            When nothing was measured yet.
        """
        from emergence.experiments.results import SCHEMA, Source, empty_results, package_versions, probe_values

        if not self.history:
            raise ConfigError("the monitor has measured nothing yet; call it on the model first")
        last = {r.epoch: r for r in self.history}  # an epoch measured again: the later record
        epochs = sorted(last)
        layers: list[str] = []
        for r in self.history:
            layers += [name for name in r.layers if name not in layers]
        base = dict(source=self.source, config=self.config.to_json(), versions=json.dumps(package_versions()),
                    granularity=self.config.granularity, made_by="emergence.Monitor")
        ds = empty_results([float(sparsity)], [int(seed)], epochs, list(self.config.thresholds), layers,
                           {**base, **dict(attrs or {})})
        records = [last[e] for e in epochs]
        final = records[-1]
        model = {"actual_sparsity": final.sparsity, "n_params": final.n_params, "num_edges": final.num_edges}
        for name, values in probe_values([r.probe for r in records], layers).items():
            ds[name].values[0, 0] = values
        for v in SCHEMA:
            if v.source is Source.METRIC:
                ds[v.name].values[0, 0] = [r.metrics.get(v.attribute, v.fill) for r in records]
            elif v.source is Source.MODEL:
                ds[v.name].values[0, 0] = model[v.attribute]
        return ds


def _effective(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's own parameters as its forward uses them: ``x_orig * x_mask`` for a pruned ``x``."""
    out = {}
    for name, p in module.named_parameters(recurse=False):
        mask = getattr(module, name[:-5] + "_mask", None) if name.endswith("_orig") else None
        if isinstance(mask, torch.Tensor):
            out[name[:-5]] = p.detach() * mask
        else:
            out[name] = p.detach()
    return out


def _sizes(model: torch.nn.Module) -> tuple[int, float]:
    """(nonzero parameters, fraction of the dense and conv weights that are zero) of ``model`` now."""
    nonzero, total, zeros = 0, 0, 0
    with torch.no_grad():
        for m in model.modules():
            own = _effective(m)
            nonzero += sum(int(torch.count_nonzero(p)) for p in own.values())
            w = own.get("weight")
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)) and w is not None:
                total += w.numel()
                zeros += w.numel() - int(torch.count_nonzero(w))
    return nonzero, zeros / total if total else 0.0
