"""Recording activations during a forward pass and assembling the final model graph."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from emergence.activity import Activity, LayerInfo, ModelGraph, check_aggregation
from emergence.adapters._channels import ChannelGraphBuilder
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
    """Collects per-sample activations of each layer's activity tensor, chunk by chunk.

    ``act`` maps a layer index to the key (an FX node or ONNX value name) of the
    tensor holding that layer's activation.
    """

    def __init__(self, builder: ChannelGraphBuilder, act: dict[int, str]) -> None:
        self.layers = builder.layers
        self.by_key: dict[str, list[int]] = {}
        for layer, key in act.items():
            self.by_key.setdefault(key, []).append(layer)
        self.wanted = set(self.by_key)
        self.values: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(self.layers))}
        self.absvalues: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(self.layers))}
        self.outputs = builder.output_layers()
        self.softmax: dict[int, list[torch.Tensor]] = {i: [] for i in self.outputs}
        self.keep = 0

    def start_chunk(self, keep: int) -> None:
        """The next recorded tensors hold ``keep`` real samples first (the rest is padding)."""
        self.keep = keep

    @staticmethod
    def _reduce(rec: Any, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[samples, units]`` means of ``t`` and of ``|t|`` over everything but a unit's own axis."""
        if rec.per_element or (rec.kind == "input" and rec.channel_dim == -1):
            v = t.reshape(t.shape[0], -1)
            return v, v.abs()
        v = t.movedim(rec.channel_dim, 1)
        dims = tuple(range(2, v.dim()))
        return (v.mean(dims), v.abs().mean(dims)) if dims else (v, v.abs())

    def record(self, key: str, tensor: torch.Tensor) -> None:
        """Reduce one activity tensor to ``[samples, units]`` means (and means of absolute values)."""
        raw = torch.as_tensor(tensor)
        for layer in self.by_key[key]:
            rec = self.layers[layer]
            own = (raw if rec.select is None else raw[rec.select])[: self.keep].detach().float()  # select: a step
            v, a = self._reduce(rec, own)
            if layer in self.softmax:  # probabilities over the output's unit axis, reduced the same way
                self.softmax[layer].append(self._reduce(rec, own.softmax(rec.channel_dim))[0].cpu())
            if v.shape[1] != rec.units:
                raise UnsupportedOpError(
                    f"layer {rec.name!r}: its activation has {v.shape[1]} units where its weights have {rec.units}"
                )
            if not bool(torch.isfinite(v).all()):
                raise NonFiniteError(
                    f"the probe batch gives NaN or infinite activations in layer {rec.name!r}; check inputs and weights"
                )
            self.values[layer].append(v.cpu())
            self.absvalues[layer].append(a.cpu())


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
    missing = [r.name for i, r in enumerate(builder.layers) if not recorder.values[i]]
    if missing:
        raise UnsupportedOpError(f"no activation was recorded for layer(s) {', '.join(missing)}")
    rows = {i: sum(v.shape[0] for v in recorder.values[i]) for i in range(len(builder.layers))}
    common = rows[0] if rows else 0
    off = [builder.layers[i].name for i, n in rows.items() if n != common]
    if off:
        raise UnsupportedOpError(
            f"layer(s) {', '.join(off[:5])}: their activations hold the samples in another dim than dim 0 (the "
            "model moves the batch before them, as an exporter that writes a time-first recurrent layer out step "
            "by step does); measure the PyTorch module or its .pt2 instead"
        )
    per_sample = torch.cat([torch.cat(recorder.values[i]) for i in range(len(builder.layers))], dim=1)
    per_abs = torch.cat([torch.cat(recorder.absvalues[i]) for i in range(len(builder.layers))], dim=1)
    output = torch.zeros(builder.num_nodes, dtype=torch.bool)
    for i in recorder.outputs:
        rec = builder.layers[i]
        output[rec.offset:rec.offset + rec.units] = True
    softmax = torch.cat([torch.cat(recorder.softmax[i]) for i in recorder.outputs], dim=1) if recorder.outputs \
        else None
    return Activity.from_samples(per_sample, per_abs, aggregation, output=output, softmax=softmax)


def assemble(
    builder: ChannelGraphBuilder, activity: Activity, threshold: float, source: str,
    device: str | torch.device | None = None,
) -> ModelGraph:
    """The final :class:`ModelGraph`: edges, layers, node names and activity (a neuron-level builder gives a
    :class:`~emergence.adapters.neuron_count.NeuronModelGraph`, counted on ``device``)."""
    from emergence.adapters._neurons import NeuronGraphBuilder
    from emergence.adapters.neuron_count import assemble_neurons

    if isinstance(builder, NeuronGraphBuilder):
        return assemble_neurons(builder, activity, threshold, source, device)
    edge_index, weight = builder.edges()
    units = torch.tensor([r.units for r in builder.layers])
    layer = torch.repeat_interleave(torch.arange(len(builder.layers)), units)
    names = [f"{r.name}:{u}" for r in builder.layers for u in range(r.units)]
    g = make_graph(edge_index, builder.num_nodes, activity.mask(threshold), edge_weight=weight, layer=layer,
                   names=names)
    g.activity = activity.statistic(threshold).float()
    layers = [LayerInfo(r.name, r.kind, r.units, r.offset) for r in builder.layers]
    return ModelGraph(g, layers, activity, float(threshold), source)


def with_activity(base: ModelGraph, activity: Activity, threshold: float) -> ModelGraph:
    """``base`` with new activity; the structure (and so the cached levels) is shared."""
    mg = dataclasses.replace(base, activity=activity, threshold=float(threshold))
    return dataclasses.replace(mg, graph=mg.at(threshold))


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
