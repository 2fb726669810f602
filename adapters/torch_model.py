"""PyTorch models to graphs: ``nn.Module`` (through ``torch.export``) and ``.pt2`` programs.

The exported program's ATen operations are walked once to build the graph (see
:mod:`emergence.adapters._channels`), then run on the probe batch by an FX interpreter that
records, for every layer, the activation at the end of the elementwise chain that
follows it: a real forward pass through the very graph the edges came from.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from emergence.activity import DEFAULT_THRESHOLD, ModelGraph
from emergence.adapters._probe import (
    ActivityRecorder,
    as_batch,
    assemble,
    assemble_activity,
    check_granularity,
    check_input_shape,
    padded_chunks,
    with_activity,
)
from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.adapters.torch_ops import SUPPORTED_TORCH_OPS, _Walker
from emergence.errors import InputShapeError, UnsupportedOpError, first_line

__all__ = ["from_torch", "from_exported", "export_module", "ExportedProbe", "SUPPORTED_TORCH_OPS"]


def export_module(model: torch.nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
                  ) -> torch.export.ExportedProgram:
    """Export ``model`` in eval mode with a dynamic batch dimension.

    Raises
    ------
    InputShapeError
        If the model rejects the example batch.
    UnsupportedOpError
        If ``torch.export`` cannot capture the model.
    """
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(inner, torch.nn.Module):
        model = inner  # torch.compile(model): export the module it wraps (the same weights)
    was_training = model.training
    model.eval()
    param = next(iter(model.parameters()), None)
    examples = as_batch(example)
    if param is not None:
        examples = tuple(e.to(param.device) for e in examples)
    try:
        batch = torch.export.Dim.AUTO
        try:
            return torch.export.export(model, examples, dynamic_shapes=tuple({0: batch} for _ in examples))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            msg = first_line(exc)
            if "shape" in msg.lower() or "size" in msg.lower() or "dimension" in msg.lower():
                raise InputShapeError(
                    f"the model rejects inputs of shape {', '.join(str(tuple(e.shape)) for e in examples)}: {msg}"
                ) from exc
            raise UnsupportedOpError(f"torch.export could not capture the model: {msg}") from exc
    finally:
        model.train(was_training)


class ExportedProbe:
    """Measures one exported program repeatedly while its weights change (e.g. during training).

    The graph is walked once (or again on request, e.g. when weighted emergence needs the
    current weights); every call re-runs the forward pass for activity, with the weights
    taken from ``state`` (a live model's ``state_dict()``) when given. The returned graphs
    share one ``edge_index``, so the count's topological levels stay cached.

    Parameters
    ----------
    ep : torch.export.ExportedProgram
    aggregation : str, default "mean"
    device : str or torch.device, optional
    source : str
    """

    def __init__(self, ep: torch.export.ExportedProgram, *, aggregation: str = "mean",
                 device: str | torch.device | None = None, source: str = "", granularity: str = "channel",
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.ep, self.aggregation, self.device, self.source = ep, aggregation, device, source
        Deadline(timeout)  # checks the value now
        self.timeout = timeout
        self.granularity = check_granularity(granularity)
        self._walker: _Walker | None = None
        self._base: ModelGraph | None = None

    def __call__(self, inputs: torch.Tensor | tuple[torch.Tensor, ...], *, threshold: float = DEFAULT_THRESHOLD,
                 state: dict[str, torch.Tensor] | None = None, rewalk: bool = False) -> ModelGraph:
        if self._walker is None or rewalk:
            self._walker = _Walker(self.ep, state, self.granularity)
            self._walker.run()
            self._base = None
        recorder = ActivityRecorder(self._walker.b, self._walker.act)
        deadline = Deadline(self.timeout, f"the forward pass of {self.source or 'the program'!r}")
        _run_exported(self.ep, inputs, recorder, self.device, state, deadline)
        activity = assemble_activity(self._walker.b, recorder, self.aggregation)
        if self._base is None:
            self._base = assemble(self._walker.b, activity, threshold, self.source, self.device)
            return self._base
        return with_activity(self._base, activity, threshold)


def _as_input(x: Any) -> Any:
    """Floating inputs as float32; integer inputs (token ids, indices) and masks keep their type."""
    if not isinstance(x, torch.Tensor):
        return tuple(_as_input(t) for t in as_batch(x))
    return x.float() if x.is_floating_point() else x


def from_exported(
    ep: torch.export.ExportedProgram,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    aggregation: str = "mean",
    device: str | torch.device | None = None,
    source: str = "",
    granularity: str = "channel",
    timeout: float | None = DEFAULT_TIMEOUT,
) -> ModelGraph:
    """Build the graph of an exported program and measure activity on ``inputs``.

    Parameters
    ----------
    ep : torch.export.ExportedProgram
        E.g. from ``torch.export.load("model.pt2")``.
    inputs : torch.Tensor
        The probe batch, batch dimension first.
    threshold : float, default 0.05
        Activity threshold for the returned graph's ``active`` mask.
    aggregation : {"mean", "absmean", "frac"}
        How a unit's activations are aggregated over the batch.
    device : str or torch.device, optional
        Where the forward pass runs (default CPU).
    source : str
        A label for reports.
    granularity : {"channel", "neuron"}, default "channel"
        One node per channel of a conv layer (activity averaged over positions), or one per
        neuron, i.e. per (channel, position) activation (a
        :class:`~emergence.adapters.neuron_count.NeuronModelGraph`, counted without an edge list).
    timeout : float or None, default 600
        Seconds the forward pass may take (checked between operations; None: no limit).

    Returns
    -------
    ModelGraph

    Raises
    ------
    UnsupportedOpError
        Naming an operation that cannot be mapped.
    InputShapeError
        If the program rejects the inputs.
    TimeLimitError
        If the forward pass runs past ``timeout``.
    """
    return ExportedProbe(ep, aggregation=aggregation, device=device, source=source,
                         granularity=granularity, timeout=timeout)(inputs, threshold=threshold)


def _run_exported(ep: Any, inputs: torch.Tensor | tuple[torch.Tensor, ...], recorder: ActivityRecorder, device: Any,
                  state: dict[str, torch.Tensor] | None = None, deadline: Deadline | None = None) -> None:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    sig = ep.graph_signature
    state = state or {}
    consts: list[torch.Tensor | None] = []
    for spec in sig.input_specs:
        if spec.kind.name == "USER_INPUT":
            consts.append(None)
            continue
        if spec.target in state:
            t = state[spec.target]
        else:
            t = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
        consts.append(t.to(dev) if isinstance(t, torch.Tensor) else t)
    gm = ep.graph_module
    xs = as_batch(inputs)
    users = [s.arg.name for s in sig.input_specs if s.kind.name == "USER_INPUT"]
    if len(xs) != len(users):
        raise InputShapeError(f"the model takes {len(users)} inputs, got {len(xs)}")
    placeholders = {n.name: n for n in gm.graph.nodes if n.op == "placeholder"}
    for name, x in zip(users, xs, strict=False):
        check_input_shape(tuple(s if isinstance(s, int) else None for s in placeholders[name].meta["val"].shape[1:]),
                          tuple(x.shape))
    batch = placeholders[users[0]].meta["val"].shape[0]
    step = int(batch) if isinstance(batch, int) else xs[0].shape[0]
    want = recorder.wanted

    class _Interp(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            if deadline is not None:
                deadline.check()
            out = super().run_node(n)
            if n.name in want:
                recorder.record(n.name, out[0] if isinstance(out, tuple) else out)
            return out

    with torch.no_grad():
        for chunk, keep in padded_chunks(tuple(x.to(dev) for x in xs), step, fixed=isinstance(batch, int)):
            recorder.start_chunk(keep)
            pieces = iter(chunk)
            args = [next(pieces) if c is None else c for c in consts]
            try:
                _Interp(gm).run(*args)
            except (RuntimeError, ValueError, IndexError) as exc:
                msg = first_line(exc)
                raise InputShapeError(f"the model rejects inputs of shape "
                                      f"{', '.join(str(tuple(x.shape)) for x in xs)}: {msg}") from exc


def from_torch(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    aggregation: str = "mean",
    device: str | torch.device | None = None,
    granularity: str = "channel",
) -> ModelGraph:
    """Build the graph of an in-memory ``nn.Module`` and measure activity on ``inputs``.

    The model is exported with ``torch.export`` in eval mode (its mode is restored
    afterwards) and run on the probe batch.

    Parameters
    ----------
    model : torch.nn.Module
        A single-input model.
    inputs : torch.Tensor
        The probe batch.
    threshold, aggregation, device, granularity
        As in :func:`from_exported`.

    Returns
    -------
    ModelGraph

    Raises
    ------
    UnsupportedOpError, InputShapeError

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> mg = from_torch(net, torch.rand(8, 4))
    >>> [(l.name, l.units) for l in mg.layers]
    [('input', 4), ('0', 3), ('2', 2)]
    >>> mg.graph.num_edges
    18
    """
    xs = tuple(_as_input(x) for x in as_batch(inputs))
    ep = export_module(model, tuple(x[:2] for x in xs))
    batch = xs[0] if len(xs) == 1 else xs
    return from_exported(
        ep, batch, threshold=threshold, aggregation=aggregation, device=device,
        source=type(model).__name__, granularity=granularity,
    )
