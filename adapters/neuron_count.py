"""Neuron-level emergence without an edge list: the count as a backward pass of transposed convolutions.

For ω = 1 the path-count recursion of the paper through a conv layer,
``P_l = 1 + A_{l+1}^T (H_{l+1} ⊙ P_{l+1})``, is a transposed convolution of the masked counts
with the binary kernel ``1[W ≠ 0]`` (same stride, padding, dilation and groups); for ω = |w| with
``|W|``. :class:`ImplicitCounter` sweeps the tape of a
:class:`~emergence.adapters._neurons.NeuronGraphBuilder` from the last layer to the first, one transposed
convolution (or transposed dense map) per layer, and scatters each message through the slot
tables onto the neurons it came from -- which is how pools, residual adds, concatenations and
flattens are followed. Each layer's counts are kept as a float64 tensor times a power of two,
so any depth works and ``log10 E`` keeps float64's relative precision.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the definition of emergence).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from emergence.activity import Activity, LayerInfo, ModelGraph
from emergence.adapters._neurons import MATERIALIZE_LIMIT, NeuronGraphBuilder, TapeOp
from emergence.defaults import DEFAULT_OUTPUTS
from emergence.errors import ConfigError, GraphError, UnsupportedOpError
from emergence.graph import graph as make_graph
from emergence.graphdata import Graph
from emergence.measure import Method
from emergence.result import EmergenceResult

__all__ = ["ImplicitCounter", "NeuronModelGraph", "assemble_neurons"]

_LOG10_2 = math.log10(2.0)


@dataclass(eq=False)
class _Target:
    """Where one operation's input entries send their messages: nodes of one earlier layer.

    Operations whose inputs map onto a layer by the same table share one ``_Target``, so their messages
    are summed per entry and scattered once (the identity shortcuts of a ResNet stage all read the
    stem's pool).
    """

    layer: int
    entries: int  # length of the per-entry message
    local: torch.Tensor | None  # node index within the layer per term (None: entry i is node i)
    entry: torch.Tensor | None  # entry index per term
    coef: torch.Tensor | None  # |coefficient| per term


class ImplicitCounter:
    """Counts neuron-level emergence of a recorded model on any torch device.

    Parameters
    ----------
    builder : NeuronGraphBuilder
        The walked model (its layers, slot tables and tape).
    device : str or torch.device, optional
        Where the sweep runs (default CPU).

    Examples
    --------
    >>> import torch
    >>> from emergence.adapters.torch_model import from_torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(2 * 4 * 4, 3))
    >>> mg = from_torch(net, torch.rand(8, 1, 4, 4), granularity="neuron")
    >>> mg.graph.num_nodes, mg.counter.num_edges
    (51, 296)
    >>> r = mg.counter.count(torch.arange(51) % 3 == 0)
    >>> r.value, r.num_active
    (110.0, 17)
    """

    def __init__(self, builder: NeuronGraphBuilder, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.layers = [(r.offset, r.units) for r in builder.layers]
        self.num_nodes = builder.num_nodes
        self.tape: dict[int, list[TapeOp]] = {}  # layer -> the operations feeding it (a conv, its shortcut)
        for op in builder.tape:
            self.tape.setdefault(op.layer, []).append(op)
        self.scale = {k: v.to(self.device) for k, v in builder.unit_scale.items()}
        self._offsets = torch.tensor([o for o, _ in self.layers])
        self._targets: dict[int, list[_Target]] = {}  # id(op) -> where its input entries send messages
        self._tables: dict[tuple[int, int, int], list[_Target]] = {}
        self._kernels: dict[tuple[int, bool, bool], torch.Tensor] = {}
        #: routes (edges with multiplicity) into each layer, and in all
        self.layer_edges = {lid: int(sum(self._routes(op) for op in ops)) for lid, ops in self.tape.items()}
        self.num_edges = sum(self.layer_edges.values())
        self._order = self._layer_order()

    def _layer_order(self) -> list[int]:
        """The layers in an order where every layer comes after those it reads (a projection shortcut may be
        built after the branch layer it feeds by the residual rule, so index order is not enough)."""
        reads = {lid: {t.layer for op in ops for t in self._targets_of(op)} for lid, ops in self.tape.items()}
        order: list[int] = []
        state: dict[int, int] = {}
        for start in range(len(self.layers)):  # depth-first, iterative: any depth of layers
            stack = [(start, False)]
            while stack:
                lid, done = stack.pop()
                if done:
                    state[lid] = 2
                    order.append(lid)
                    continue
                if state.get(lid):
                    continue
                state[lid] = 1
                stack.append((lid, True))
                stack.extend((r, False) for r in sorted(reads.get(lid, ()), reverse=True) if not state.get(r))
        return order

    # -- per-operation preparation (once) ---------------------------------------------------
    def _targets_of(self, op: TapeOp) -> list[_Target]:
        if id(op) in self._targets:
            return self._targets[id(op)]
        prov = op.x.prov[0].reshape(-1)
        ok = prov >= 0
        entries = ok.nonzero().flatten()
        owner, node, coef = op.x.slots.expand(prov[ok])
        entry, coef = entries[owner], coef.abs()
        keep = coef != 0
        entry, node, coef = entry[keep], node[keep], coef[keep]
        layer = torch.searchsorted(self._offsets, node, right=True) - 1
        targets = []
        for lid in torch.unique(layer).tolist():
            sel = layer == lid
            off, units = self.layers[lid]
            e, n, c = entry[sel], node[sel] - off, coef[sel]
            identity = (n.numel() == prov.numel() == units and bool((e == n).all()) and bool((c == 1).all())
                        and bool((e == torch.arange(units)).all()))
            if identity:
                targets.append(_Target(lid, units, None, None, None))
                continue
            same = self._tables.setdefault((lid, prov.numel(), n.numel()), [])
            n, e, c = n.to(self.device), e.to(self.device), c.to(self.device)
            for t in same:
                if all(a is not None and torch.equal(a, b) for a, b in ((t.local, n), (t.entry, e), (t.coef, c))):
                    targets.append(t)
                    break
            else:
                same.append(_Target(lid, prov.numel(), n, e, c))
                targets.append(same[-1])
        self._targets[id(op)] = targets
        return targets

    def _kernel(self, op: TapeOp, weighted: bool, flipped: bool = False) -> torch.Tensor:
        """``1[W != 0]`` (or ``|W|``) on the device, cached; ``flipped``: as the kernel of the forward
        convolution that equals the transposed one at stride 1 (in/out swapped per group, taps reversed)."""
        key = (op.layer, weighted, flipped)
        if key not in self._kernels:
            if flipped:
                w = self._kernel(op, weighted)
                g, nsp = op.groups, w.dim() - 2
                w = w.reshape(g, w.shape[0] // g, *w.shape[1:]).transpose(1, 2)
                w = w.reshape(-1, *w.shape[2:]).flip(tuple(range(2, 2 + nsp))).contiguous()
            else:
                if op.weight is None:
                    raise UnsupportedOpError(f"layer {op.layer}: a {op.kind} operation has no kernel")
                w = op.weight.to(self.device)
                w = w.abs() if weighted else (w != 0).double()
            self._kernels[key] = w
        return self._kernels[key]

    def _adjoint(self, op: TapeOp, msg: torch.Tensor, weighted: bool) -> torch.Tensor:
        """The transposed operation: messages on the output neurons -> messages on the input entries."""
        m = msg.reshape(op.out_shape)
        if op.kind == "identity":  # a residual shortcut: neuron i's message goes to entry i
            return msg.reshape(-1)
        if op.kind == "linear":
            return (m @ self._kernel(op, weighted)).reshape(-1)
        win = op.window
        if op.kind == "conv_transpose" and win is not None:
            return self._transposed_adjoint(op, m, weighted)
        if win is None:
            raise UnsupportedOpError(f"a {op.kind} operation of layer {op.layer} without a window")
        nsp = len(op.out_shape) - 1
        kernel = self._kernel(op, weighted)
        k = kernel.shape[2:]
        # The input entries the forward pass read are positions pad .. pad + in of the zero-padded
        # input; ``natural`` is how many of them a transposed convolution cropped by ``pad`` yields.
        span = [win.dilation[d] * (k[d] - 1) for d in range(nsp)]
        natural = [(op.out_shape[1 + d] - 1) * win.stride[d] - 2 * win.pad[d] + span[d] + 1 for d in range(nsp)]
        extra = [op.in_shape[1 + d] - natural[d] for d in range(nsp)]
        if all(s == 1 for s in win.stride) and not any(extra) and all(win.pad[d] <= span[d] for d in range(nsp)):
            # stride 1, padding the same on both sides: an ordinary convolution with the flipped
            # kernel (faster than the transposed one on CPU)
            conv = (F.conv1d, F.conv2d, F.conv3d)[nsp - 1]
            out = conv(m.unsqueeze(0), self._kernel(op, weighted, flipped=True), groups=op.groups,
                       dilation=win.dilation, padding=tuple(span[d] - win.pad[d] for d in range(nsp)))[0]
            return out.reshape(-1)
        transposed = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nsp - 1]
        if all(0 <= extra[d] < max(win.stride[d], win.dilation[d]) for d in range(nsp)):
            out = transposed(m.unsqueeze(0), kernel, stride=win.stride, groups=op.groups, dilation=win.dilation,
                             padding=win.pad, output_padding=tuple(extra))[0]
            return out.reshape(-1)
        # general case (e.g. a long padding after the input): transpose unpadded, then pad and crop
        out = transposed(m.unsqueeze(0), kernel, stride=win.stride, groups=op.groups, dilation=win.dilation)[0]
        pads = []
        for d in reversed(range(nsp)):  # F.pad lists the last dim first
            need = win.pad[d] + op.in_shape[1 + d] - out.shape[1 + d]
            pads += [0, max(need, 0)]
        if any(pads):
            out = F.pad(out, pads)
        sl = [slice(None)] + [slice(win.pad[d], win.pad[d] + op.in_shape[1 + d]) for d in range(nsp)]
        return out[tuple(sl)].reshape(-1)

    def _transposed_adjoint(self, op: TapeOp, m: torch.Tensor, weighted: bool) -> torch.Tensor:
        """A transposed convolution's adjoint: an ordinary convolution of the messages with its own weight
        (``[in, out/groups, *kernel]`` is a convolution's ``[out, in/groups, *kernel]`` from outputs to inputs),
        cropped or zero-padded to the input's size."""
        win = op.window
        assert win is not None  # checked by the caller
        nsp = len(op.out_shape) - 1
        conv = (F.conv1d, F.conv2d, F.conv3d)[nsp - 1]
        out = conv(m.unsqueeze(0), self._kernel(op, weighted), stride=win.stride, padding=win.pad,
                   dilation=win.dilation, groups=op.groups)[0]
        pads = []
        for d in reversed(range(nsp)):  # F.pad lists the last dim first
            pads += [0, max(op.in_shape[1 + d] - out.shape[1 + d], 0)]
        if any(pads):
            out = F.pad(out, pads)
        return out[(slice(None), *[slice(0, op.in_shape[1 + d]) for d in range(nsp)])].reshape(-1)

    def _routes(self, op: TapeOp) -> float:
        """Routes (edges with multiplicity) into ``op``'s layer."""
        _, units = self.layers[op.layer]
        s = None if op.kind == "identity" else self.scale.get(op.layer)  # a norm scales the branch only
        ones = torch.ones(units, dtype=torch.float64, device=self.device) if s is None else (s != 0).double()
        per_entry = self._adjoint(op, ones, False)
        total = 0.0
        for t in self._targets_of(op):
            total += float(per_entry.sum()) if t.entry is None else float(per_entry[t.entry].sum())
        return total

    # -- the count ------------------------------------------------------------------------
    def count(self, active: torch.Tensor, *, weighted: bool = False) -> EmergenceResult:
        """Emergence for one activity mask.

        Parameters
        ----------
        active : torch.Tensor
            ``[N]`` bool, one entry per neuron.
        weighted : bool, default False
            Weight paths by ``|w|`` (batch norm folded).

        Returns
        -------
        EmergenceResult
            ``exact`` is False: the count runs in float64 with a power-of-two exponent per layer
            (exact integers while they stay below 2**53).

        Raises
        ------
        GraphError
            For a mask of the wrong size.
        """
        active = torch.as_tensor(active).bool().reshape(-1)
        if active.numel() != self.num_nodes:
            raise GraphError(f"the activity mask has {active.numel()} entries; the neuron graph has "
                             f"{self.num_nodes} nodes")
        act = active.to(self.device)
        acc: dict[int, list] = {}  # layer -> [counts, exponent]: the layer's P - 1, times 2**exponent
        pending: dict[_Target, list] = {}  # shared target -> [per-entry message sum, exponent]
        node_log10 = torch.full((self.num_nodes,), -math.inf, dtype=torch.float64)
        sums: dict[int, tuple[float, int]] = {}
        for lid in reversed(self._order):
            for t in [t for t in pending if t.layer == lid]:
                total, e_t = pending.pop(t)
                vals = total[t.entry] * t.coef if weighted else total[t.entry]
                self._add(acc, lid, self.layers[lid][1], vals, e_t, t.local)
            off, units = self.layers[lid]
            h = act[off : off + units]
            q, e = acc.pop(lid, (torch.zeros(units, dtype=torch.float64, device=self.device), 0))
            qi = q.masked_fill(h, 0.0)
            s = float(qi.sum())
            if s > 0:
                sums[lid] = (s, e)
                node_log10[off : off + units] = (qi.log2_().mul_(_LOG10_2).add_(e * _LOG10_2)).cpu()
            ops = self.tape.get(lid)
            if not ops:
                continue
            mx = float(q.max()) if units else 0.0
            e2 = max(0, e + math.frexp(mx)[1]) if mx > 0 else 0
            base = q.mul_(2.0 ** (e - e2)).add_(2.0 ** (-e2)).masked_fill_(~h, 0.0)
            sc = self.scale.get(lid)
            for op in ops:
                msg = base
                if sc is not None and op.kind != "identity":  # a norm after the branch scales its edges only
                    msg = base * (sc if weighted else (sc != 0).double())
                if not bool((msg != 0).any()):
                    continue
                per_entry = self._adjoint(op, msg, weighted)
                for t in self._targets_of(op):
                    if t.entry is None:
                        self._add(acc, t.layer, t.entries, per_entry, e2)
                    else:
                        self._add(pending, t, t.entries, per_entry, e2)
        return self._result(sums, node_log10, int(active.sum()), weighted)

    def _add(self, bins: dict, key: int | _Target, size: int, vals: torch.Tensor, e: int,
             index: torch.Tensor | None = None) -> None:
        """``bins[key] += vals * 2**e`` (scattered by ``index``), keeping one exponent per bin: the larger."""
        b = bins.get(key)
        if b is None:
            b = bins[key] = [torch.zeros(size, dtype=torch.float64, device=self.device), e]
        elif e > b[1]:
            b[0] *= 2.0 ** (b[1] - e)
            b[1] = e
        elif e < b[1]:
            vals = vals * 2.0 ** (e - b[1])
        if index is None:
            b[0] += vals
        else:
            b[0].index_add_(0, index, vals)

    def _result(self, sums: dict[int, tuple[float, int]], node_log10: torch.Tensor, num_active: int,
                weighted: bool) -> EmergenceResult:
        layer_log10: dict[int, float | None] = {}
        for lid in range(len(self.layers)):
            s = sums.get(lid)
            layer_log10[lid] = None if s is None else math.log10(s[0]) + s[1] * _LOG10_2
        if sums:
            top = max(e for _, e in sums.values())
            total = math.fsum(s * 2.0 ** (e - top) for s, e in sums.values())
            total_log10 = math.log10(total) + top * _LOG10_2
        else:
            total_log10 = -math.inf
        result = EmergenceResult.from_log10(
            total_log10, node_log10, layer_log10=layer_log10, weighted=weighted, num_nodes=self.num_nodes,
            num_edges=self.num_edges, num_active=num_active,
        )
        if sums and total_log10 < 300:  # the sum itself, exact while it is an integer below 2**53
            value = math.fsum(math.ldexp(s, e) for s, e in sums.values())
            result = dataclasses.replace(result, value=value)
        return result


@dataclass(frozen=True, eq=False)
class NeuronModelGraph(ModelGraph):
    """A :class:`~emergence.activity.ModelGraph` at neuron level: ``graph`` holds the nodes (``layer``,
    ``active``, ``activity``) but no edges; ``counter`` counts emergence implicitly.

    Attributes
    ----------
    counter : ImplicitCounter
    builder : NeuronGraphBuilder
        The walked model, for :meth:`materialize`.
    """

    counter: ImplicitCounter | None = None
    builder: NeuronGraphBuilder | None = None

    granularity: ClassVar[str] = "neuron"

    def _counter(self) -> ImplicitCounter:
        if self.counter is None:
            raise ConfigError("this NeuronModelGraph has no counter; make it with "
                              "from_torch(..., granularity='neuron')")
        return self.counter

    def _builder(self) -> NeuronGraphBuilder:
        if self.builder is None:
            raise ConfigError("this NeuronModelGraph has no builder; make it with "
                              "from_torch(..., granularity='neuron')")
        return self.builder

    @property
    def num_edges(self) -> int:
        """Routes of the neuron graph (edges with multiplicity), never built."""
        return self._counter().num_edges

    def layer_edges(self) -> torch.Tensor:
        """``[L]`` routes into each layer."""
        return torch.tensor([self._counter().layer_edges.get(i, 0) for i in range(len(self.layers))])

    def count(self, masks: torch.Tensor, *, weighted: bool = False, device: str | torch.device | None = None,
              method: Method = "auto") -> list[EmergenceResult]:
        """One implicit sweep per row of ``masks``, on the counter's device (``device`` is the one the
        graph was built for), always in float64: ``method="exact"`` is refused."""
        if method == "exact":
            raise ConfigError("a neuron-level graph is counted in float64, not with exact integers; use method "
                              "'auto' or 'log', or materialize() it first")
        counter = self._counter()
        return [counter.count(m, weighted=weighted) for m in masks]

    def layer_log10(self, masks: torch.Tensor, *, weighted: bool = False,
                    device: str | torch.device | None = None) -> tuple[torch.Tensor, int]:
        """``[T, L]`` log10 of the emergent paths starting in each layer, from one implicit sweep per mask, and
        the edge count results carry."""
        results = self.count(masks, weighted=weighted, device=device)
        out = torch.full((len(results), len(self.layers)), -math.inf, dtype=torch.float64)
        for t, r in enumerate(results):
            for j, v in (r.layer_log10 or {}).items():
                if v is not None:
                    out[t, j] = v
        return out, self.num_edges

    def explicit(self) -> ModelGraph:
        """:meth:`materialize` with its default limit."""
        return self.materialize()

    def materialize(self, limit: int = MATERIALIZE_LIMIT) -> ModelGraph:
        """The neuron graph as an explicit :class:`ModelGraph`, one edge per route (repeated pairs are
        routes through overlapping pools), with ``edge_weight`` the effective ``|w|`` of each route.

        Raises
        ------
        UnsupportedOpError
            Above ``limit`` routes.
        """
        builder = self._builder()
        edge_index, weight = builder.materialize(limit)
        names = [f"{r.name}:{u}" for r in builder.layers for u in range(r.units)]
        g = make_graph(edge_index, builder.num_nodes, self.graph.active, edge_weight=weight,
                       layer=self.graph.layer, names=names)
        g.activity = self.graph.activity
        return ModelGraph(g, self.layers, self.activity, self.threshold, self.source)


def assemble_neurons(builder: NeuronGraphBuilder, activity: Activity, threshold: float, source: str,
                     device: str | torch.device | None = None, outputs: str = DEFAULT_OUTPUTS) -> NeuronModelGraph:
    """The :class:`NeuronModelGraph` of a walked model with its measured activity."""
    units = torch.tensor([r.units for r in builder.layers])
    layer = torch.repeat_interleave(torch.arange(len(builder.layers)), units)
    g = Graph(num_nodes=builder.num_nodes)
    g.layer = layer
    g.active = activity.mask(threshold, outputs)
    g.activity = activity.statistic(threshold).float()
    layers = [LayerInfo(r.name, r.kind, r.units, r.offset) for r in builder.layers]
    return NeuronModelGraph(g, layers, activity, float(threshold), source, ImplicitCounter(builder, device), builder)
