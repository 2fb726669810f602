"""Recording activations during a forward pass and assembling the final model graph."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from emergence.activity import Activity, LayerInfo, ModelGraph, check_aggregation
from emergence.adapters._channels import ChannelGraphBuilder
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_OUTPUTS
from emergence.errors import InputShapeError, NonFiniteError, UnsupportedOpError, check_choice
from emergence.graph import graph as make_graph

#: Graph resolutions of a model: one node per channel of a conv layer, or one per neuron.
GRANULARITIES = ("channel", "neuron")


def check_granularity(granularity: str) -> str:
    """Return ``granularity`` if it is known, else raise :class:`~emergence.errors.ConfigError`.

    Examples
    --------
    >>> check_granularity("neuron")
    'neuron'
    """
    return check_choice("granularity", granularity, GRANULARITIES)


class ActivityRecorder:
    """Collects each layer's activity, chunk by chunk: float64 sums over the samples of every unit's
    activation and of its absolute value (per-sample values only for ``"frac"``, which needs them).

    ``act`` maps a layer index to the key (an FX node or ONNX value name) of the
    tensor holding that layer's activation.
    """

    def __init__(self, builder: ChannelGraphBuilder, act: dict[int, str],
                 aggregation: str = DEFAULT_AGGREGATION, *, softmax: bool = True) -> None:
        self.layers = builder.layers
        self.by_key: dict[str, list[int]] = {}
        for layer, key in act.items():
            self.by_key.setdefault(key, []).append(layer)
        self.wanted = set(self.by_key)
        self.per_sample = check_aggregation(aggregation) == "frac"
        self.absolute = aggregation == "absmean"  # sums of |x|: only this aggregation reads them
        n = len(self.layers)
        self.sums: list[torch.Tensor | None] = [None] * n
        self.abssums: list[torch.Tensor | None] = [None] * n
        self.rows = [0] * n
        self.values: dict[int, list[torch.Tensor]] = {i: [] for i in range(n)}  # per sample, "frac" only
        self.outputs = builder.output_layers()
        self.softmax_sums: dict[int, torch.Tensor | None] = {i: None for i in self.outputs} if softmax else {}
        self.softmax: dict[int, list[torch.Tensor]] = {i: [] for i in self.outputs}  # per sample, "frac" only
        self.keep = 0
        self.skip: set[str] = set()

    def start_chunk(self, keep: int) -> None:
        """The next recorded tensors hold ``keep`` real samples first (the rest is padding)."""
        self.keep = keep

    @staticmethod
    def _reduce(rec: Any, t: torch.Tensor, absolute: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[samples, units]`` means of ``t`` over everything but a unit's own axis, and with ``absolute`` those
        of ``|t|`` (None when a unit is one element: then the sums of ``|t|`` are taken directly)."""
        if rec.per_element or (rec.kind == "input" and rec.channel_dim == -1):
            return t.reshape(t.shape[0], -1), None
        v = t.movedim(rec.channel_dim, 1)
        dims = tuple(range(2, v.dim()))
        if not dims:
            return v, None
        return v.mean(dims), (v.abs().mean(dims) if absolute else None)

    @staticmethod
    def _add(total: torch.Tensor | None, part: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``total`` plus the float64 sums over the samples (dim 0) of ``part``, or of ``|part|``."""
        s = torch.sum(part.abs() if absolute else part, 0, dtype=torch.float64)
        return s if total is None else total + s

    def snapshot(self, keys: set[str]) -> dict[int, tuple[Any, ...]]:
        """What was recorded for the layers read from ``keys`` (e.g. the model's inputs), for :meth:`preload`."""
        return {i: (self.sums[i], self.abssums[i], self.rows[i], list(self.values[i]))
                for key in keys & self.wanted for i in self.by_key[key] if i not in self.softmax_sums}

    def preload(self, known: dict[int, tuple[Any, ...]]) -> None:
        """Take these layers' records as recorded (a :meth:`snapshot` of the same batch); their keys are skipped."""
        for i, (total, abstotal, rows, values) in known.items():
            self.sums[i], self.abssums[i], self.rows[i], self.values[i] = total, abstotal, rows, list(values)
        self.skip = {key for key, layers in self.by_key.items() if all(i in known for i in layers)}

    def record(self, key: str, tensor: torch.Tensor) -> None:
        """Reduce one activity tensor to per-unit sums over the chunk's real samples."""
        if key in self.skip:
            return
        raw = torch.as_tensor(tensor)
        for layer in self.by_key[key]:
            rec = self.layers[layer]
            own = (raw if rec.select is None else raw[rec.select])[: self.keep].detach().float()  # select: a step
            v, a = self._reduce(rec, own, self.absolute)
            if v.shape[1] != rec.units:
                raise UnsupportedOpError(
                    f"layer {rec.name!r}: its activation has {v.shape[1]} units where its weights have {rec.units}"
                )
            self.sums[layer] = self._add(self.sums[layer], v)  # finite exactly when every value is (checked later)
            if self.absolute:
                self.abssums[layer] = self._add(self.abssums[layer], v, absolute=True) if a is None \
                    else self._add(self.abssums[layer], a)
            self.rows[layer] += int(v.shape[0])
            if layer in self.softmax_sums:  # probabilities over the output's unit axis, reduced the same way
                p = self._reduce(rec, own.softmax(rec.channel_dim))[0]
                self.softmax_sums[layer] = self._add(self.softmax_sums[layer], p)
                if self.per_sample:
                    self.softmax[layer].append(p.cpu())
            if self.per_sample:
                self.values[layer].append(v.cpu())


def check_input_shape(declared: tuple[int | None, ...] | None, inputs_shape: tuple[int, ...]) -> None:
    """Raise :class:`InputShapeError` when a batch does not fit a model's declared per-sample shape.

    ``None`` entries of ``declared`` are free (symbolic) dims.
    """
    if declared is None:
        return
    got = tuple(inputs_shape[1:])
    if len(got) != len(declared) or any(d is not None and d != g for d, g in zip(declared, got, strict=False)):
        want = tuple("?" if d is None else d for d in declared)
        raise InputShapeError(
            f"the model rejects inputs of shape {tuple(inputs_shape)}: it takes samples of shape {want}"
        )


def assemble_activity(builder: ChannelGraphBuilder, recorder: ActivityRecorder, aggregation: str) -> Activity:
    """The :class:`Activity` of all nodes from what ``recorder`` collected."""
    check_aggregation(aggregation)
    missing = [r.name for i, r in enumerate(builder.layers) if recorder.sums[i] is None]
    if missing:
        raise UnsupportedOpError(f"no activation was recorded for layer(s) {', '.join(missing)}")
    common = recorder.rows[0] if recorder.rows else 0
    off = [builder.layers[i].name for i, n in enumerate(recorder.rows) if n != common]
    if off:
        raise UnsupportedOpError(
            f"layer(s) {', '.join(off[:5])}: their activations hold the samples in another dim than dim 0 (the "
            "model moves the batch before them, as an exporter that writes a time-first recurrent layer out step "
            "by step does); measure the PyTorch module or its .pt2 instead"
        )
    n = len(builder.layers)

    def cat(parts: list[Any], dim: int = 0) -> torch.Tensor:
        return torch.cat([p.cpu() for p in parts], dim=dim)

    sums = [s for s in recorder.sums if s is not None]  # all of them (checked above)
    total = cat(sums)
    if not bool(torch.isfinite(total).all()):  # a sum is finite exactly when every value summed is
        bad = next(r.name for r, s in zip(builder.layers, sums, strict=True) if not bool(torch.isfinite(s).all()))
        raise NonFiniteError(f"the probe batch gives NaN or infinite activations in layer {bad!r}; check inputs and "
                             "weights")

    output = torch.zeros(builder.num_nodes, dtype=torch.bool)
    for i in recorder.outputs:
        rec = builder.layers[i]
        output[rec.offset:rec.offset + rec.units] = True
    softmax = bool(recorder.outputs) and bool(recorder.softmax_sums)
    frac = aggregation == "frac"
    return Activity.from_sums(
        total, cat(recorder.abssums) if recorder.absolute else None, common, aggregation,
        per_sample=cat([cat(recorder.values[i]) for i in range(n)], 1) if frac else None,
        output=output, softmax_sum=cat([recorder.softmax_sums[i] for i in recorder.outputs]) if softmax else None,
        softmax_per_sample=cat([cat(recorder.softmax[i]) for i in recorder.outputs], 1) if frac and softmax else None,
    )


def assemble(
    builder: ChannelGraphBuilder, activity: Activity, threshold: float, source: str,
    device: str | torch.device | None = None, outputs: str = DEFAULT_OUTPUTS,
) -> ModelGraph:
    """The final :class:`ModelGraph`: edges, layers, node names and activity (a neuron-level builder gives a
    :class:`~emergence.adapters.neuron_count.NeuronModelGraph`, counted on ``device``)."""
    from emergence.adapters._neurons import NeuronGraphBuilder
    from emergence.adapters.neuron_count import assemble_neurons

    if isinstance(builder, NeuronGraphBuilder):
        return assemble_neurons(builder, activity, threshold, source, device, outputs)
    edge_index, weight = builder.edges()
    units = torch.tensor([r.units for r in builder.layers])
    layer = torch.repeat_interleave(torch.arange(len(builder.layers)), units)
    names = [f"{r.name}:{u}" for r in builder.layers for u in range(r.units)]
    g = make_graph(edge_index, builder.num_nodes, activity.mask(threshold, outputs), edge_weight=weight, layer=layer,
                   names=names)
    g.activity = activity.statistic(threshold).float()
    layers = [LayerInfo(r.name, r.kind, r.units, r.offset) for r in builder.layers]
    return ModelGraph(g, layers, activity, float(threshold), source)


def with_activity(base: ModelGraph, activity: Activity, threshold: float, outputs: str = DEFAULT_OUTPUTS
                  ) -> ModelGraph:
    """``base`` with new activity; the structure (and so the cached levels) is shared."""
    mg = dataclasses.replace(base, activity=activity, threshold=float(threshold))
    return dataclasses.replace(mg, graph=mg.at(threshold, outputs))


def as_batch(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """A probe batch as a tuple of tensors (one per model input), all with the same number of samples.

    Raises
    ------
    InputShapeError
        For something that is not tensors, or tensors of different batch sizes.
    """
    xs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not xs or not all(isinstance(x, torch.Tensor) and x.dim() >= 1 for x in xs):
        raise InputShapeError("inputs must be a tensor, or a tuple of tensors (one per model input), batch first")
    if len({int(x.shape[0]) for x in xs}) != 1:
        raise InputShapeError(f"the inputs hold different numbers of samples: {[int(x.shape[0]) for x in xs]}")
    return xs


def padded_chunks(x: torch.Tensor | Sequence[torch.Tensor], step: int,
                  fixed: bool) -> Iterator[tuple[Any, int]]:
    """``(chunk, real rows)`` of ``step`` rows each; with ``fixed`` (a model with a fixed batch size)
    the last chunk is zero-padded to ``step`` rows. A tuple of tensors is chunked alike.

    Examples
    --------
    >>> [(tuple(c.shape), k) for c, k in padded_chunks(torch.ones(5, 2), 2, fixed=True)]
    [((2, 2), 2), ((2, 2), 2), ((2, 2), 1)]
    """
    xs = (x,) if isinstance(x, torch.Tensor) else tuple(x)
    for a in range(0, xs[0].shape[0], step):
        chunks = []
        for t in xs:
            chunk = t[a : a + step]
            keep = chunk.shape[0]
            if fixed and keep < step:
                chunk = torch.cat([chunk, chunk.new_zeros(step - keep, *chunk.shape[1:])])
            chunks.append(chunk)
        yield (chunks[0] if isinstance(x, torch.Tensor) else tuple(chunks)), keep
