"""Measuring a live PyTorch model again and again as it trains, without ever reporting a stale graph.

:class:`ModelProbe` exports the model once and, at every call, runs the exported program on the fixed
probe batch with the model's *current* tensors (read from the module itself, so a parameter replaced
by assignment, a pruning reparametrization's ``weight_orig`` and ``weight_mask``, or a buffer are all
seen as they are now). Before it counts it checks that the structure it counted is still the model's:

* **the layout** -- the modules (names, types and identities), the names, shapes, dtypes and devices
  of every parameter and buffer, and the forward hooks. Adding ``torch.nn.utils.prune`` (which renames
  ``weight`` to ``weight_orig`` and adds ``weight_mask`` and a hook), removing it, replacing a module
  or adding a parameter changes the layout: the model is **exported again**;
* **the zero pattern** of every floating tensor the program reads (and the values of integer ones): in
  place magnitude pruning, a new pruning mask, rewinding to other weights with other zeros, batch-norm
  scales set to 0. A change **walks the graph again** (no export).

Either way the call returns what a fresh :func:`~emergence.measure_model` of the model returns. With
``weighted=True`` every call walks again (the edge weights are the current weights). Measuring draws
no random numbers and leaves the model's mode and weights as they were.

After the first call, a call with no structural change costs one forward pass through the exported
program's generated code (the activations the count needs come back as extra outputs), float64 sums
over the probe batch, and one sparse product per topological level (see :mod:`emergence.measure`):
``benchmarks/monitor_cost.py`` measures it against an eager forward pass.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emergence.activity import check_aggregation, check_outputs
from emergence.adapters._probe import as_batch, check_granularity
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.errors import ConfigError

__all__ = ["ModelProbe", "ProbeRecord"]

_LN10 = math.log(10.0)


@dataclass(frozen=True, eq=False)
class ProbeRecord:
    """One measurement of a model, at every threshold.

    Attributes
    ----------
    thresholds : tuple of float
    layers : tuple of str
        Layer names (inputs first), the order of the ``[T, L]`` arrays.
    emergence_log10, relative_log10, hidden_log10 : torch.Tensor
        ``[T]`` float64; ``-inf`` where E = 0 (see ``zero``: E = 0 is data, it ranks lowest);
        ``hidden_log10`` counts only the paths that start outside the input layers (``-inf`` where there
        are none). ``relative_log10`` is NaN for a graph without edges.
    active_fraction, emergence_share : torch.Tensor
        ``[T, L]`` per layer: fraction of its units active, and its share of E (paths that start in it).
    num_edges : int
    active_count : torch.Tensor
        ``[T, L]`` active units per layer (for a dense net these determine E).
    zero, hidden_zero : torch.Tensor
        ``[T]`` bool: E = 0, and no emergent path starts outside the inputs.
    units : torch.Tensor
        ``[L]`` units per layer.
    roles : tuple of str
        Per layer: ``"input"``, ``"output"`` (its units are the model's outputs) or ``"hidden"``.
    structure : str
        What this call had to redo first: ``""`` (nothing), ``"walk"`` (the zero pattern changed, or
        ``weighted``) or ``"export"`` (first call, or the model's layout changed).
    """

    thresholds: tuple[float, ...]
    layers: tuple[str, ...]
    emergence_log10: torch.Tensor
    relative_log10: torch.Tensor
    active_fraction: torch.Tensor
    emergence_share: torch.Tensor
    num_edges: int
    hidden_log10: torch.Tensor
    active_count: torch.Tensor
    zero: torch.Tensor
    hidden_zero: torch.Tensor
    units: torch.Tensor
    roles: tuple[str, ...]
    structure: str = ""


def _unwrap(model: Any) -> Any:
    """The module a ``torch.compile`` wrapper holds (the one that is exported), else ``model``."""
    inner = getattr(model, "_orig_mod", None)
    return inner if type(model).__name__ == "OptimizedModule" and isinstance(inner, torch.nn.Module) else model


def _layout(model: torch.nn.Module) -> tuple[Any, ...]:
    """What, when it changes, makes the exported program stale: modules, tensors' names and kinds, hooks."""
    mods = tuple((name, type(m), id(m), tuple(m._forward_pre_hooks), tuple(m._forward_hooks))
                 for name, m in model.named_modules(remove_duplicate=False))
    tensors = tuple((name, tuple(t.shape), t.dtype, t.device)
                    for name, t in (*model.named_parameters(remove_duplicate=False),
                                    *model.named_buffers(remove_duplicate=False)))
    return mods, tensors


def _live(model: torch.nn.Module, target: str) -> torch.Tensor:
    """The tensor a program's parameter or buffer ``target`` (``"layer.0.weight"``) names, read now."""
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _Zeros:
    """What of a tensor the graph's structure depends on, and a cheap test of whether it changed.

    For a floating tensor: where its zeros are (their number and positions; a dense weight has none, so the
    test is one ``count_nonzero``); for any other tensor (integer ids, bool masks): its values.
    """

    def __init__(self, t: torch.Tensor) -> None:
        t = t.detach()
        self.floating = t.is_floating_point() or t.is_complex()
        if self.floating:
            flat = t.reshape(-1)
            self.nonzero = int(torch.count_nonzero(flat))
            zeros = flat.numel() - self.nonzero
            # where the zeros are: their positions while few (8 bytes each), else a bool mask (1 byte an entry)
            self.where = None if zeros == 0 else (flat == 0).nonzero().flatten() if 8 * zeros <= flat.numel() \
                else None
            self.mask = (flat == 0) if zeros and self.where is None else None
            self.shape = tuple(t.shape)
        else:
            self.values = t.clone()

    def same(self, t: torch.Tensor) -> bool:
        """True when ``t`` has the zeros (or the values) this record was made from."""
        t = t.detach()
        if not self.floating:
            return t.dtype == self.values.dtype and torch.equal(t, self.values)
        if tuple(t.shape) != self.shape or int(torch.count_nonzero(t)) != self.nonzero:
            return False
        flat = t.reshape(-1)
        if self.mask is not None:
            return torch.equal(flat == 0, self.mask)
        # as many zeros as before, all of the old ones still zero: the same zeros
        return self.where is None or not bool(flat.index_select(0, self.where).any())


class ModelProbe:
    """Measures a PyTorch model on a fixed probe batch, again and again, as it trains (see the module docs).

    Parameters
    ----------
    model : nn.Module
        Exported now, in eval mode (its mode is restored).
    probe : torch.Tensor or tuple of torch.Tensor
        The fixed probe batch, batch first (a tuple for several inputs).
    thresholds : sequence of float, default ``(DEFAULT_THRESHOLD,)``
    aggregation : {"mean", "absmean", "frac"}, default ``DEFAULT_AGGREGATION``
    weighted : bool, default False
    device : str or torch.device, optional
        Where the forward pass and the count run.
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
    outputs : {"exclude", "logits", "softmax"}, default "exclude"

    Raises
    ------
    ConfigError
        For no threshold, a non-finite one, or an unknown option.
    UnsupportedOpError, InputShapeError
        If the model cannot be exported or walked, or rejects the probe.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> probe = ModelProbe(net, torch.rand(16, 4))
    >>> probe(net).structure, probe(net).structure
    ('export', '')
    >>> with torch.no_grad():
    ...     net[0].weight[:4] = 0
    >>> probe(net).structure
    'walk'
    """

    def __init__(self, model: Any, probe: torch.Tensor | Sequence[torch.Tensor],
                 thresholds: Sequence[float] = (DEFAULT_THRESHOLD,), *, aggregation: str = DEFAULT_AGGREGATION,
                 weighted: bool = False, device: str | torch.device | None = None,
                 granularity: str = DEFAULT_GRANULARITY, outputs: str = DEFAULT_OUTPUTS) -> None:
        from emergence.adapters.torch_model import _as_input
        from emergence.device import resolve_device

        self.aggregation = check_aggregation(aggregation)
        self.outputs = check_outputs(outputs)
        self.granularity = check_granularity(granularity)
        ts = [float(t) for t in thresholds]
        if not ts:
            raise ConfigError("a probe needs at least one threshold")
        bad = [t for t in ts if not math.isfinite(t)]
        if bad:
            raise ConfigError(f"thresholds must be finite numbers, got {bad[0]}")
        resolve_device(device)
        self.thresholds, self.weighted, self.device = ts, bool(weighted), device
        xs = tuple(_as_input(x) for x in as_batch(probe))
        self.probe: Any = xs[0] if len(xs) == 1 else xs
        self.layers: list[str] = []
        self._layout: tuple[Any, ...] | None = None
        self._program: Any = None
        self._targets: list[str] = []
        self._zeros: list[_Zeros] = []
        self._last: tuple[torch.Tensor, torch.Tensor, int] | None = None  # masks, per-layer log10, edges
        self._export(_unwrap(model))

    def _export(self, model: torch.nn.Module) -> None:
        from emergence.adapters.torch_model import ExportedProbe, export_module

        rng = torch.get_rng_state()
        try:
            ep = export_module(model, tuple(x[:2] for x in as_batch(self.probe)))
        finally:
            torch.set_rng_state(rng)
        self._program = ExportedProbe(ep, aggregation=self.aggregation, device=self.device,
                                      granularity=self.granularity, source=type(model).__name__, timeout=None,
                                      softmax=self.outputs == "softmax")
        used = {n.name for n in ep.graph.nodes if n.op == "placeholder" and n.users}  # e.g. not a batch norm's
        self._targets = [s.target for s in ep.graph_signature.input_specs  # num_batches_tracked in eval mode
                         if s.kind.name in ("PARAMETER", "BUFFER") and s.arg.name in used]
        self._layout = _layout(model)
        self._zeros = []

    def _state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {t: _live(model, t).detach() for t in self._targets}

    def __call__(self, model: Any) -> ProbeRecord:
        """Measure ``model`` (the probed one, or any other: a new layout is exported) as it is now.

        Returns
        -------
        ProbeRecord
        """
        model = _unwrap(model)
        rng = torch.get_rng_state()
        try:
            structure = ""
            if _layout(model) != self._layout:
                self._export(model)
            state = self._state(model)
            if not self._zeros:  # exported, never walked with these tensors
                structure = "export"
            elif self.weighted or not all(z.same(state[t]) for t, z in zip(self._targets, self._zeros, strict=True)):
                structure = "walk"  # new zeros, or (weighted) the edge weights are the current weights
            if structure:
                self._zeros = [_Zeros(state[t]) for t in self._targets]
                self._last = None
            mg = self._program(self.probe, threshold=self.thresholds[0], state=state, rewalk=bool(structure),
                               outputs=self.outputs)
            return self._record(mg, structure)
        finally:
            torch.set_rng_state(rng)

    def _record(self, mg: Any, structure: str) -> ProbeRecord:
        self.layers = [lay.name for lay in mg.layers]
        n_layers = len(mg.layers)
        units = torch.tensor([lay.units for lay in mg.layers], dtype=torch.float64)
        masks = mg.masks(self.thresholds, self.outputs)
        layer = mg.graph.layer
        count = torch.stack([torch.bincount(layer[m], minlength=n_layers) for m in masks])
        last = self._last
        if last is not None and torch.equal(last[0], masks):  # the same structure and activity: the same count
            per_layer, edges = last[1], last[2]
        else:
            per_layer, edges = mg.layer_log10(masks, weighted=self.weighted, device=self.device)  # [T, L]
            self._last = (masks, per_layer, edges)
        inputs, outs = set(mg.input_layers()), set(mg.output_layers())
        roles = tuple("input" if i in inputs else "output" if i in outs else "hidden" for i in range(n_layers))
        past_inputs = torch.tensor([r != "input" for r in roles], dtype=torch.bool)
        total = torch.logsumexp(per_layer * _LN10, 1) / _LN10  # [T]
        hidden = torch.logsumexp(per_layer[:, past_inputs] * _LN10, 1) / _LN10
        zero, hidden_zero = total == -math.inf, hidden == -math.inf
        share = torch.where(zero.unsqueeze(1), 0.0, 10.0 ** (per_layer - total.unsqueeze(1)))
        rel = total - math.log10(edges) if edges else torch.full_like(total, math.nan)  # -inf where E = 0
        return ProbeRecord(tuple(self.thresholds), tuple(self.layers), total, rel, count.double() / units, share,
                           mg.num_edges, hidden, count, zero, hidden_zero, units.long(), roles, structure)
