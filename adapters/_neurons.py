"""Neuron-level graphs of conv nets: one node per (channel, position) activation.

:class:`NeuronGraphBuilder` is a :class:`~emergence.adapters._channels.ChannelGraphBuilder` whose nodes
are neurons: every input element, and every output element of a dense or conv layer. It never
builds the edge list. It records, per node-creating layer, the operation that made it (the
input's provenance, the weight, the geometry) on a *tape* that
:class:`emergence.adapters.neuron_count.ImplicitCounter` sweeps backwards with transposed convolutions;
:meth:`NeuronGraphBuilder.materialize` enumerates the same edges by index arithmetic for small
nets (``--save-graph``, and the oracle of the tests).

Semantics, beyond the channel graph's:

* Padding positions are not nodes (their provenance is -1).
* Pools (max, average, adaptive, global) create no neurons: a pool cell is a transparent
  pass-through that stands for the cells of its window, so a path through a pool picks one
  cell. With overlapping windows (a ResNet stem's 3x3/2 max-pool) a neuron reaches a
  consumer once per route; with non-overlapping windows this is a plain edge set.
* Edges are counted with this multiplicity (``num_edges`` is the number of routes): for
  ω = 1 a connection counts once per route, for ω = |w| it weighs the sum of |w| over routes.
* Batch norm after a layer scales that layer's incoming edges per neuron (folded, as exporters do).
* The residual rule: a sum a nonlinearity reads is the branch layer's neurons, the shortcut feeding neuron
  ``i`` from its entry ``i`` (an ``"identity"`` operation on the tape, weight 1).
* A transposed convolution's neurons read the inputs its taps join; a resize makes no neurons (each output
  entry is the weighted sum of the inputs it interpolates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emergence.adapters._channels import ChannelGraphBuilder, ChannelValue, LayerRecord, Slots
from emergence.adapters._window import Window, gather_windows
from emergence.errors import UnsupportedOpError

#: Largest edge list :meth:`NeuronGraphBuilder.materialize` builds.
MATERIALIZE_LIMIT = 10_000_000


@dataclass
class TapeOp:
    """One node-creating operation, as the implicit count needs it.

    ``kind`` is ``"conv"``, ``"conv_transpose"``, ``"linear"`` or ``"identity"`` (a residual rule's shortcut:
    entry ``i`` of ``x`` feeds neuron ``i`` with weight 1); ``x`` the input's provenance; ``weight``
    ``[out, in/groups, *kernel]``, ``[in, out/groups, *kernel]`` (transposed) or ``[out, in]`` (float64, CPU;
    None for an identity); ``in_shape``/``out_shape`` per sample.
    """

    kind: str
    layer: int
    x: ChannelValue
    weight: torch.Tensor | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    groups: int = 1
    window: Window | None = None


class NeuronGraphBuilder(ChannelGraphBuilder):
    """A :class:`ChannelGraphBuilder` with one node per neuron, recording a tape instead of edges."""

    def __init__(self) -> None:
        super().__init__()
        self.tape: list[TapeOp] = []
        self.unit_scale: dict[int, torch.Tensor] = {}  # layer -> per-neuron factor folded into its edges

    def _neuron_layer(self, name: str, kind: str, shape: Sequence[int]) -> tuple[LayerRecord, torch.Tensor]:
        units = math.prod(int(s) for s in shape)
        rec = self._new_layer(name, kind, units, -1)
        rec.per_element = True
        return rec, torch.arange(units).reshape(tuple(int(s) for s in shape))

    def _record(self, op: TapeOp) -> None:
        """Put ``op`` on the tape; its layer lies one deeper than the deepest layer it reads."""
        nodes = op.x.slots.node
        if nodes.numel():
            offsets = torch.tensor([r.offset for r in self.layers])
            read = torch.unique(torch.bucketize(nodes.contiguous(), offsets, right=True) - 1).tolist()
            rec = self.layers[op.layer]
            rec.depth = max(rec.depth, 1 + max(self.layers[i].depth for i in read))
        self.tape.append(op)

    def _value(self, rec: LayerRecord, local: torch.Tensor, batch: int) -> ChannelValue:
        slots = Slots.single(torch.arange(rec.offset, rec.offset + rec.units))
        return ChannelValue(local.expand(batch, *local.shape).clone(), slots, direct=len(self.layers) - 1)

    def input(self, shape: Sequence[int], *, per_element: bool | str, name: str = "input") -> ChannelValue:
        """One input node per element of a sample (``per_element`` is ignored: every element is a neuron)."""
        shape = tuple(int(s) for s in shape)
        rec, local = self._neuron_layer(name, "input", shape[1:])
        return ChannelValue(local.expand(shape).clone(), Slots.single(torch.arange(rec.offset, rec.offset + rec.units)))

    def linear(self, x: ChannelValue, weight: torch.Tensor, *, name: str, kind: str = "Linear") -> ChannelValue:
        """A dense layer on the last dim: one neuron per output feature at every leading position."""
        w = weight.detach().double().cpu()
        if w.dim() != 2 or x.prov.shape[-1] != w.shape[1]:
            raise UnsupportedOpError(
                f"{kind} {name!r}: weight {tuple(w.shape)} does not fit an input of shape {tuple(x.prov.shape)}"
            )
        in_shape = tuple(int(s) for s in x.prov.shape[1:])
        out_shape = (*in_shape[:-1], int(w.shape[0]))
        rec, local = self._neuron_layer(name, kind, out_shape)
        self._record(TapeOp("linear", len(self.layers) - 1, x, w, in_shape, out_shape))
        return self._value(rec, local, int(x.prov.shape[0]))

    def conv(
        self, x: ChannelValue, weight: torch.Tensor, *, groups: int, out_shape: Sequence[int], name: str, kind: str,
        window: Window | None = None,
    ) -> ChannelValue:
        """A convolution: one neuron per (output channel, output position)."""
        if window is None:
            raise UnsupportedOpError(f"{kind} {name!r}: its stride and padding are unknown, so it has no neuron graph")
        w = self._conv_weight(x, weight, groups, name, kind)
        shape = tuple(int(s) for s in out_shape)
        rec, local = self._neuron_layer(name, kind, shape[1:])
        self._record(TapeOp("conv", len(self.layers) - 1, x, w, tuple(int(s) for s in x.prov.shape[1:]),
                            shape[1:], groups, window))
        return self._value(rec, local, shape[0])

    def scale(self, x: ChannelValue, factor: torch.Tensor, *, exclusive: bool) -> ChannelValue:
        """Batch norm and other constant factors: folded per neuron into a layer used only here."""
        if x.direct is not None and exclusive and self.layers[x.direct].per_element:
            f = torch.as_tensor(factor, dtype=torch.float64).detach().cpu()
            full = torch.broadcast_to(f, x.prov.shape)[0].abs().reshape(-1)
            prev = self.unit_scale.get(x.direct)
            self.unit_scale[x.direct] = full if prev is None else prev * full
            return x
        return super().scale(x, factor, exclusive=exclusive)

    def conv_transpose(self, x: ChannelValue, weight: torch.Tensor, *, groups: int, out_shape: Sequence[int],
                       name: str, kind: str, window: Window | None = None) -> ChannelValue:
        """A transposed convolution: one neuron per (output channel, output position). Input entry ``i`` feeds
        output position ``i * stride - pad + k * dilation`` through tap ``k``; its adjoint (the count's
        backward message) is an ordinary convolution with the same weight."""
        if window is None:
            raise UnsupportedOpError(f"{kind} {name!r}: its stride and padding are unknown, so it has no neuron graph")
        w = weight.detach().double().cpu()
        cin = int(x.prov.shape[1])
        if groups < 1 or w.shape[0] != cin or cin % groups:
            raise UnsupportedOpError(f"{kind} {name!r}: weight {tuple(w.shape)} with groups={groups} does not fit "
                                     f"{cin} input channels")
        shape = tuple(int(s) for s in out_shape)
        if shape[1] != w.shape[1] * groups:
            raise UnsupportedOpError(f"{kind} {name!r}: weight {tuple(w.shape)} with groups={groups} does not make "
                                     f"{shape[1]} output channels")
        rec, local = self._neuron_layer(name, kind, shape[1:])
        self._record(TapeOp("conv_transpose", len(self.layers) - 1, x, w, tuple(int(s) for s in x.prov.shape[1:]),
                            shape[1:], groups, window))
        return self._value(rec, local, shape[0])

    def recurrence(self, x: ChannelValue, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], *, gates: int,
                   carry: bool, name: str, kind: str, reverse: Sequence[bool] = (False, True),
                   select: Any = None) -> tuple[ChannelValue, ChannelValue]:
        """Refused: a recurrent layer's units are its hidden features per time step, the channel graph's."""
        raise UnsupportedOpError(f"{kind} {name!r}: recurrent layers are mapped at channel level, where each time "
                                 "step's hidden features are the units; measure with granularity='channel' "
                                 "(--granularity channel)")

    def residual(self, values: Sequence[ChannelValue], signs: Sequence[float]) -> tuple[ChannelValue, int] | None:
        """The residual rule at neuron level (see :meth:`ChannelGraphBuilder.residual`): the sum's neurons are
        the branch layer's, and the shortcut feeds neuron ``i`` from its own entry ``i`` (an ``"identity"``
        operation on the tape, weight 1). None (the union rule) when the operands' shapes differ, when no
        operand is a layer's own output, when the shortcut holds the branch's own neurons, or when the
        branch layer already reads a neuron the shortcut holds (an edge would be counted twice)."""
        i = self._residual_branch(values)
        if i is None:
            return None
        layer = int(values[i].direct)  # type: ignore[arg-type]
        rec = self.layers[layer]
        others = [v for j, v in enumerate(values) if j != i]
        rest = [float(s) for j, s in enumerate(signs) if j != i]
        shortcut = others[0] if len(others) == 1 and rest[0] == 1 else self.merge(others, signs=rest)
        held = shortcut.slots.node
        own = (held >= rec.offset) & (held < rec.offset + rec.units)
        read = torch.cat([op.x.slots.node for op in self.tape if op.layer == layer])
        if bool(own.any()) or bool(torch.isin(held, read).any()):
            return None
        self._record(TapeOp("identity", layer, shortcut, None, tuple(int(s) for s in shortcut.prov.shape[1:]),
                            tuple(int(s) for s in shortcut.prov.shape[1:])))
        return ChannelValue(values[i].prov, values[i].slots), layer

    def resize(self, x: ChannelValue, out_shape: Sequence[int],
               taps: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> ChannelValue:
        """A resize creates no neurons: each output entry is the weighted sum of the input entries it reads
        (``taps``: per spatial dim, input indices ``[O, k]`` and weights, see
        :func:`emergence.adapters._resize.taps`)."""
        if taps is None:
            raise UnsupportedOpError("this resize (interpolate, upsample, Resize) has no neuron graph here (nearest "
                                     "and (bi/tri)linear modes do); measure with granularity='channel' "
                                     "(--granularity channel)")
        p = x.prov[0]  # [C, *I]
        shape = tuple(int(s) for s in out_shape)
        nsp = p.dim() - 1
        if len(taps) != nsp:
            raise UnsupportedOpError(f"a resize of {nsp} spatial dims given taps for {len(taps)}")
        cells = math.prod(shape[1:])
        owner = torch.arange(cells).reshape(shape[1:])
        index: list[torch.Tensor] = [torch.arange(p.shape[0]).reshape(-1, *([1] * (2 * nsp)))]
        weight = torch.ones((1,) * (1 + 2 * nsp), dtype=torch.float64)
        ok = torch.ones((1,) * (1 + 2 * nsp), dtype=torch.bool)
        for d, (idx, w) in enumerate(taps):
            view = [1] * (1 + 2 * nsp)
            view[1 + d], view[1 + nsp + d] = idx.shape[0], idx.shape[1]
            index.append(idx.clamp(min=0).reshape(view))
            weight = weight * w.reshape(view)
            ok = ok & (idx >= 0).reshape(view)
        entry = p[tuple(index)]  # [C, *O, *K]
        full = entry.shape
        ok = ok.expand(full) & (entry >= 0)
        cell = owner.reshape(*owner.shape, *([1] * nsp)).expand(full)
        t_owner, node, coef = x.slots.expand(entry[ok])
        slots = Slots.from_terms(cell[ok][t_owner], node, coef * weight.expand(full)[ok][t_owner], cells, "sum")
        has = torch.bincount(cell[ok], minlength=cells) > 0
        ids = torch.where(has, torch.arange(cells), torch.full((cells,), -1)).reshape(shape[1:])
        return ChannelValue(ids.expand(shape).clone(), slots)

    def pool(self, x: ChannelValue, out_shape: Sequence[int], window: Window | None = None) -> ChannelValue:
        """A pool creates no neurons: each cell stands for the cells of its window (one route each)."""
        if window is None:
            raise UnsupportedOpError("a pool without its window geometry has no neuron graph")
        p = x.prov[0]
        shape = tuple(int(s) for s in out_shape)
        idx = [window.taps(d, int(p.shape[1 + d]), shape[2 + d]) for d in range(p.dim() - 1)]
        win = gather_windows(p, idx)  # [C, *O, *K]
        cells = math.prod(shape[1:])
        flat = win.reshape(cells, -1)
        owner = torch.arange(cells).unsqueeze(1).expand_as(flat)
        ok = flat >= 0
        t_owner, node, coef = x.slots.expand(flat[ok])
        slots = Slots.from_terms(owner[ok][t_owner], node, coef, cells, "sum")
        has = torch.bincount(owner[ok], minlength=cells) > 0
        ids = torch.where(has, torch.arange(cells), torch.full((cells,), -1)).reshape(shape[1:])
        return ChannelValue(ids.expand(shape).clone(), slots)

    def table(self, name: str, units: int, out_shape: Sequence[int], kind: str = "Embedding") -> ChannelValue:
        raise UnsupportedOpError(f"{kind} {name!r}: token models have no neuron-level graph here; "
                                 "use granularity 'channel'")

    # -- materialization ---------------------------------------------------------------
    def _op_edges(self, op: TapeOp) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(source node, target node, weight)`` per route of one operation (one row per route)."""
        rec = self.layers[op.layer]
        entries_prov = op.x.prov[0]
        dst_all = torch.arange(rec.offset, rec.offset + rec.units).reshape(op.out_shape)
        if op.kind == "identity":  # a shortcut: entry i -> neuron i, weight 1, never scaled by the branch's norm
            keep = entries_prov >= 0
            owner, node, coef = op.x.slots.expand(entries_prov[keep])
            nz = coef != 0
            return node[nz], dst_all[keep][owner][nz], coef.abs()[nz]
        if op.weight is None:
            raise UnsupportedOpError(f"layer {rec.name!r}: a {op.kind} operation without a weight")
        if op.kind == "linear":
            entry = entries_prov.unsqueeze(-2).expand(*op.out_shape, op.in_shape[-1])  # [*L, out, D]
            w = op.weight.expand(*op.out_shape[:-1], *op.weight.shape)
            dst = dst_all.unsqueeze(-1).expand_as(entry)
        elif op.kind == "conv_transpose":
            entry, w, dst = self._transposed_routes(op, entries_prov, dst_all)
        else:
            win = op.window
            if win is None:
                raise UnsupportedOpError(f"layer {rec.name!r}: a {op.kind} operation without a window")
            idx = [win.taps(d, op.in_shape[1 + d], op.out_shape[1 + d]) for d in range(len(op.in_shape) - 1)]
            cw = gather_windows(entries_prov, idx)  # [Cin, *O, *K]
            cout, per_in = op.weight.shape[0], op.weight.shape[1]
            per_out = cout // op.groups
            grouped = cw.reshape(op.groups, per_in, *cw.shape[1:])
            entry = grouped[torch.arange(cout) // per_out]  # [Cout, per_in, *O, *K]
            nsp = len(op.out_shape) - 1
            w = op.weight.reshape(cout, per_in, *([1] * nsp), *op.weight.shape[2:]).expand_as(entry)
            dst = dst_all.reshape(cout, 1, *op.out_shape[1:], *([1] * nsp)).expand_as(entry)
        scale = self.unit_scale.get(op.layer)
        if scale is not None:
            w = w * scale[dst - rec.offset]
        keep = (entry >= 0) & (w != 0)
        owner, node, coef = op.x.slots.expand(entry[keep])
        keep_term = coef != 0
        return node[keep_term], dst[keep][owner][keep_term], (w[keep][owner] * coef.abs())[keep_term].abs()

    @staticmethod
    def _transposed_routes(op: TapeOp, entries_prov: torch.Tensor,
                           dst_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Entry, weight and target of every (input entry, tap) of a transposed convolution: input position
        ``i`` reaches output position ``i * stride - pad + k * dilation`` (taps that land outside are none)."""
        win, w0 = op.window, op.weight
        if win is None or w0 is None:
            raise UnsupportedOpError("a transposed convolution without its window or weight")
        nsp = len(op.in_shape) - 1
        cin, per_out = int(w0.shape[0]), int(w0.shape[1])
        ks = [int(k) for k in w0.shape[2:]]
        grids = torch.meshgrid(*[torch.arange(n) for n in op.in_shape[1:]], *[torch.arange(k) for k in ks],
                               indexing="ij")  # every (input position, tap)
        outs = [grids[d] * win.stride[d] - win.pad[d] + grids[nsp + d] * win.dilation[d] for d in range(nsp)]
        inside = torch.ones_like(outs[0], dtype=torch.bool)
        for d in range(nsp):
            inside &= (outs[d] >= 0) & (outs[d] < op.out_shape[1 + d])
        pos = [g[inside] for g in grids[:nsp]]
        taps = [g[inside] for g in grids[nsp:]]
        where = [o[inside] for o in outs]
        ci = torch.arange(cin).unsqueeze(1)  # [Cin, 1]
        co = (ci // (cin // op.groups)) * per_out + torch.arange(per_out)  # [Cin, per_out] output channels
        entry = entries_prov[(ci.unsqueeze(2), *[p.reshape(1, 1, -1) for p in pos])].expand(cin, per_out, -1)
        w = w0[(ci.unsqueeze(2), torch.arange(per_out).reshape(1, -1, 1), *[t.reshape(1, 1, -1) for t in taps])]
        dst = dst_all[(co.unsqueeze(2), *[o.reshape(1, 1, -1) for o in where])]
        return entry, w, dst

    def output_layers(self) -> list[int]:
        """Indices of the layers no op of the tape reads (the model's outputs), inputs excluded."""
        offsets = torch.tensor([r.offset for r in self.layers])
        read: set[int] = set()
        for op in self.tape:
            if op.x.slots.node.numel():
                read.update(torch.unique(torch.bucketize(op.x.slots.node, offsets, right=True) - 1).tolist())
        return [i for i, r in enumerate(self.layers) if r.kind != "input" and i not in read]

    def materialize(self, limit: int = MATERIALIZE_LIMIT) -> tuple[torch.Tensor, torch.Tensor]:
        """The neuron graph's routes: ``(edge_index [2, R], weight [R])``, one column per route.

        Raises
        ------
        UnsupportedOpError
            When it would hold more than ``limit`` routes.
        """
        srcs, dsts, ws, total = [], [], [], 0
        for op in self.tape:
            s, d, w = self._op_edges(op)
            total += s.numel()
            if total > limit:
                raise UnsupportedOpError(
                    f"the neuron graph has more than {limit:,} edges, too many to write; measure it without "
                    "saving the graph, or save the channel-level graph"
                )
            srcs.append(s)
            dsts.append(d)
            ws.append(w)
        if not srcs:
            return torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.float64)
        return torch.stack([torch.cat(srcs), torch.cat(dsts)]), torch.cat(ws)
