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

import functools
import warnings
from typing import Any

import torch
from torch import fx

from emergence.activity import ModelGraph, check_outputs
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
from emergence.adapters.signatures import exported_user_inputs
from emergence.adapters.torch_ops import SUPPORTED_TORCH_OPS, _Walker
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.errors import InputShapeError, UnsupportedOpError, first_line

__all__ = ["from_torch", "from_exported", "export_module", "ExportedProbe", "SUPPORTED_TORCH_OPS"]


def export_module(model: torch.nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
                  ) -> torch.export.ExportedProgram:
    """Export ``model`` in eval mode with a dynamic batch dimension.

    A model whose output holds something other than tensors (a `transformers` language model returns its
    key-value cache) is exported with its first output tensor as the output (the logits, or the hidden states).

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
    dynamic = tuple({0: torch.export.Dim.AUTO} for _ in examples)
    try:
        try:
            try:
                return _export(model, examples, dynamic)
            except (RuntimeError, ValueError, TypeError) as exc:
                if "in output, which is not a known type" not in str(exc):
                    raise
                # e.g. a `transformers` language model returning its key-value cache: measure its first output
                return _export(model, examples, dynamic, first_output=True)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            msg = first_line(exc)
            if "shape" in msg.lower() or "size" in msg.lower() or "dimension" in msg.lower():
                raise InputShapeError(
                    f"the model rejects inputs of shape {', '.join(str(tuple(e.shape)) for e in examples)}: {msg}"
                ) from exc
            raise UnsupportedOpError(f"torch.export could not capture the model: {msg}") from exc
    finally:
        model.train(was_training)


def _first_tensor(out: Any) -> Any:
    """The first tensor of a model's output (a tuple, a dict or a `transformers` ModelOutput), else ``out``."""
    if isinstance(out, torch.Tensor):
        return out
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for item in items:
        found = _first_tensor(item)
        if isinstance(found, torch.Tensor):
            return found
    return out


def _export(model: torch.nn.Module, examples: tuple[torch.Tensor, ...], dynamic: Any, first_output: bool = False
            ) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model``; with ``first_output`` its forward returns only its first output tensor
    (patched on the instance for the export, so that parameter and layer names stay the model's own)."""
    if first_output:
        forward = model.forward

        @functools.wraps(forward)  # the same signature, so that torch.export matches inputs as before
        def first(*args: Any, **kwargs: Any) -> Any:
            return _first_tensor(forward(*args, **kwargs))

        model.forward = first
    try:
        with warnings.catch_warnings():  # torch.nn.utils.prune sets module.weight in a hook: harmless here
            warnings.filterwarnings("ignore", message=".*was assigned during export", category=UserWarning)
            return torch.export.export(model, examples, dynamic_shapes=dynamic)
    finally:
        if first_output:
            del model.forward


class ExportedProbe:
    """Measures one exported program repeatedly while its weights change (e.g. during training).

    The graph is walked once (or again on request, e.g. when weighted emergence needs the
    current weights); every call re-runs the forward pass for activity, with the weights
    taken from ``state`` (a live model's ``state_dict()``) when given. The returned graphs
    share one ``edge_index``, so the count's topological levels stay cached.

    Parameters
    ----------
    ep : torch.export.ExportedProgram
    aggregation : str, default ``DEFAULT_AGGREGATION``
    device : str or torch.device, optional
    source : str
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
    timeout : float or None, default 600
        Seconds a forward pass may take, checked between ops by an interpreter; None runs the program's
        generated code (no check, the speed of a plain forward pass).
    softmax : bool, default True
        Record the softmax of the outputs (what ``outputs="softmax"`` judges them by).
    """

    def __init__(self, ep: torch.export.ExportedProgram, *, aggregation: str = DEFAULT_AGGREGATION,
                 device: str | torch.device | None = None, source: str = "", granularity: str = DEFAULT_GRANULARITY,
                 timeout: float | None = DEFAULT_TIMEOUT, softmax: bool = True) -> None:
        self.ep, self.aggregation, self.device, self.source = ep, aggregation, device, source
        Deadline(timeout)  # checks the value now
        self.timeout = timeout
        self.granularity = check_granularity(granularity)
        self.softmax = softmax  # record the outputs' softmax (needed to judge outputs by it)
        self._walker: _Walker | None = None
        self._base: ModelGraph | None = None
        self._recording: tuple[fx.GraphModule, list[str]] | None = None
        self._inputs: tuple[Any, dict[int, Any]] | None = None  # (probe tensors, their input layers' sums)

    def __call__(self, inputs: torch.Tensor | tuple[torch.Tensor, ...], *, threshold: float = DEFAULT_THRESHOLD,
                 state: dict[str, torch.Tensor] | None = None, rewalk: bool = False,
                 outputs: str = DEFAULT_OUTPUTS) -> ModelGraph:
        if self._walker is None or rewalk:
            self._walker = _Walker(self.ep, state, self.granularity)
            self._walker.run()
            self._base = None
            self._recording = None
        recorder = ActivityRecorder(self._walker.b, self._walker.act, self.aggregation, softmax=self.softmax)
        if self.timeout is None:  # no time limit to check between ops: run the program's generated code
            if self._recording is None:
                self._recording = _recording_module(self.ep, recorder.wanted)
                self._inputs = None
            known = self._inputs
            same = known is not None and _same_tensors(known[0], inputs)
            if known is not None and same:  # the same probe batch: its input layers' sums are known
                recorder.preload(known[1])
            _run_exported(self.ep, inputs, recorder, self.device, state, recording=self._recording)
            if not same:
                keys = set(exported_user_inputs(self.ep))
                self._inputs = (_tensor_ids(inputs), recorder.snapshot(keys))
        else:
            deadline = Deadline(self.timeout, f"the forward pass of {self.source or 'the program'!r}")
            _run_exported(self.ep, inputs, recorder, self.device, state, deadline)
        activity = assemble_activity(self._walker.b, recorder, self.aggregation)
        if self._base is None:
            self._base = assemble(self._walker.b, activity, threshold, self.source, self.device, outputs)
            return self._base
        return with_activity(self._base, activity, threshold, outputs)


def _tensor_ids(inputs: Any) -> tuple[tuple[int, int, int], ...]:
    """What identifies a batch's tensors and their contents: (id, in-place version, data pointer) each."""
    return tuple((id(x), x._version, x.data_ptr()) for x in as_batch(inputs))


def _same_tensors(ids: Any, inputs: Any) -> bool:
    return bool(ids == _tensor_ids(inputs))


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
    aggregation: str = DEFAULT_AGGREGATION,
    device: str | torch.device | None = None,
    source: str = "",
    granularity: str = DEFAULT_GRANULARITY,
    timeout: float | None = DEFAULT_TIMEOUT,
    outputs: str = DEFAULT_OUTPUTS,
) -> ModelGraph:
    """Build the graph of an exported program and measure activity on ``inputs``.

    Parameters
    ----------
    ep : torch.export.ExportedProgram
        E.g. from ``torch.export.load("model.pt2")``.
    inputs : torch.Tensor
        The probe batch, batch dimension first.
    threshold : float, default ``DEFAULT_THRESHOLD``
        Activity threshold for the returned graph's ``active`` mask.
    aggregation : {"mean", "absmean", "frac"}
        How a unit's activations are aggregated over the batch.
    device : str or torch.device, optional
        Where the forward pass runs (default CPU).
    source : str
        A label for reports.
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
        One node per channel of a conv layer (activity averaged over positions), or one per
        neuron, i.e. per (channel, position) activation (a
        :class:`~emergence.adapters.neuron_count.NeuronModelGraph`, counted without an edge list).
    timeout : float or None, default 600
        Seconds the forward pass may take (checked between operations; None: no limit).

    outputs : {"exclude", "logits", "softmax"}, default "exclude"
        How output units are judged in the returned graph's ``active`` mask (as in
        :func:`~emergence.measure_model`).

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
    return ExportedProbe(ep, aggregation=aggregation, device=device, source=source, granularity=granularity,
                         timeout=timeout)(inputs, threshold=threshold, outputs=check_outputs(outputs))


def _recording_module(ep: Any, wanted: set[str]) -> tuple[fx.GraphModule, list[str]]:
    """The program's graph as generated code that also returns the values of the ``wanted`` nodes (in the order of
    the returned names): the same ATen calls as an interpreter makes, at the speed of a plain forward pass."""
    old = ep.graph_module.graph
    graph = fx.Graph()
    mapped: dict[fx.Node, fx.Node] = {}
    out = graph.graph_copy(old, mapped)
    nodes = [n for n in old.nodes if n.name in wanted]
    graph.output((out, tuple(mapped[n] for n in nodes)))
    return fx.GraphModule(ep.graph_module, graph), [n.name for n in nodes]


def _run_exported(ep: Any, inputs: torch.Tensor | tuple[torch.Tensor, ...], recorder: ActivityRecorder, device: Any,
                  state: dict[str, torch.Tensor] | None = None, deadline: Deadline | None = None,
                  recording: tuple[fx.GraphModule, list[str]] | None = None) -> None:
    """Run the program on ``inputs`` chunk by chunk, handing the wanted activations to ``recorder``: through an
    interpreter that checks ``deadline`` between ops, or through ``recording`` (see :func:`_recording_module`)."""
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
    users = exported_user_inputs(ep)
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
                if recording is None:
                    _Interp(gm).run(*args)
                else:
                    _, values = recording[0](*args)
                    for name, out in zip(recording[1], values, strict=True):
                        recorder.record(name, out[0] if isinstance(out, tuple) else out)
            except (RuntimeError, ValueError, IndexError) as exc:
                msg = first_line(exc)
                raise InputShapeError(f"the model rejects inputs of shape "
                                      f"{', '.join(str(tuple(x.shape)) for x in xs)}: {msg}") from exc


def from_torch(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    aggregation: str = DEFAULT_AGGREGATION,
    device: str | torch.device | None = None,
    granularity: str = DEFAULT_GRANULARITY,
    outputs: str = DEFAULT_OUTPUTS,
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
    threshold, aggregation, device, granularity, outputs
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
        source=type(model).__name__, granularity=granularity, outputs=outputs,
    )
