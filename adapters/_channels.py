"""Format-independent construction of a network's graph from its operations.

Both model front-ends (PyTorch export graphs and ONNX) walk their operations in
order and call this builder, so the same model gives the same graph whichever format
it came in.

Every tensor is tracked symbolically as a :class:`ChannelValue`: an integer
*provenance* tensor with the tensor's shape (batch dim included, all rows equal),
whose entries are *slot* ids (or -1 for constants and padding), and a slot table
(:class:`Slots`) that lists, per slot, the graph nodes the entry is a linear
combination of, with their coefficients. Shape operations (flatten, reshape,
transpose, slicing, padding, concatenation) are applied to the provenance tensor
itself, so any channel shuffle is followed exactly. A dense layer consumes the
features of its input; a convolution consumes the channels; each creates new nodes
and edges from every node its inputs came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from emergence.adapters._window import Window
from emergence.errors import UnsupportedOpError

_CHUNK = 1 << 22  # entries of a dense weight block processed at once


@dataclass
class Slots:
    """Slot table in CSR form: slot ``k`` is ``sum coef[t] * node[t]`` for ``t in ptr[k]:ptr[k+1]``."""

    ptr: torch.Tensor
    node: torch.Tensor
    coef: torch.Tensor

    @staticmethod
    def single(nodes: torch.Tensor) -> Slots:
        return Slots(torch.arange(nodes.numel() + 1), nodes.long(), torch.ones(nodes.numel(), dtype=torch.float64))

    def __len__(self) -> int:
        return self.ptr.numel() - 1

    def expand(self, slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each entry of ``slot``: (entry index, node, coef) of every term, flattened."""
        lens = self.ptr[slot + 1] - self.ptr[slot]
        total = int(lens.sum())
        owner = torch.repeat_interleave(torch.arange(slot.numel()), lens, output_size=total)
        first = torch.cumsum(lens, 0) - lens
        term = self.ptr[slot][owner] + torch.arange(total) - first[owner]
        return owner, self.node[term], self.coef[term]

    @staticmethod
    def from_terms(owner: torch.Tensor, node: torch.Tensor, coef: torch.Tensor, size: int, combine: str) -> Slots:
        """Slots from (slot, node, coef) triples; repeated (slot, node) terms are combined."""
        if owner.numel():
            key = owner * (int(node.max()) + 1) + node
            uniq, inv = torch.unique(key, return_inverse=True)
            if combine == "sum":
                c = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, coef)
            else:  # "max": strongest coupling
                c = torch.zeros(uniq.numel(), dtype=torch.float64).scatter_reduce_(0, inv, coef.abs(), "amax")
            owner = uniq // (int(node.max()) + 1)
            node = uniq % (int(node.max()) + 1)
            coef = c
        counts = torch.bincount(owner, minlength=size)
        ptr = torch.zeros(size + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=ptr[1:])
        return Slots(ptr, node, coef)


def _unit(slots: Slots) -> Slots:
    return Slots(slots.ptr, slots.node, torch.ones_like(slots.coef))


@dataclass
class ChannelValue:
    """Symbolic provenance of one tensor (see module docstring).

    ``direct`` is the index of the layer whose raw output this is (no operation in
    between but identities), which lets a following per-channel scale such as batch
    norm fold into that layer's incoming edges, as exporters fold it into the weights.
    """

    prov: torch.Tensor
    slots: Slots
    direct: int | None = None

    def derive(self, prov: torch.Tensor) -> ChannelValue:
        return ChannelValue(prov, self.slots)


@dataclass
class LayerRecord:
    """A node-creating operation: its nodes are ``offset .. offset + units - 1``."""

    name: str
    kind: str
    units: int
    offset: int
    channel_dim: int  # where its units lie in its output tensor (1 for channels, -1 for features)
    per_element: bool = False  # one unit per element of a sample (neuron-level layers)
    depth: int = 0  # the longest chain of layers from an input to this one (inputs: 0)
    select: tuple | None = None  # an index into the tensor its activity is read on, giving [batch, units] (a step)
    src: list[torch.Tensor] = field(default_factory=list)
    dst: list[torch.Tensor] = field(default_factory=list)
    weight: list[torch.Tensor] = field(default_factory=list)


class ChannelGraphBuilder:
    """Accumulates nodes, layers and edges while a front-end walks a model's operations."""

    def __init__(self) -> None:
        self.layers: list[LayerRecord] = []
        self.num_nodes = 0
        self._read_layers: set[int] = set()

    # -- nodes ------------------------------------------------------------------
    def _new_layer(self, name: str, kind: str, units: int, channel_dim: int) -> LayerRecord:
        rec = LayerRecord(name, kind, units, self.num_nodes, channel_dim)
        self.layers.append(rec)
        self.num_nodes += units
        return rec

    def input(self, shape: Sequence[int], *, per_element: bool | str, name: str = "input") -> ChannelValue:
        """Input nodes: one per element of a sample (dense nets), one per channel (conv nets), or one per
        feature of the last dim (``per_element="tokens"``: a sequence whose positions are like pixels)."""
        shape = tuple(int(s) for s in shape)
        per_sample = shape[1:]
        if per_element == "tokens" and len(per_sample) >= 2:
            units = per_sample[-1]
            prov = torch.arange(units).expand(per_sample)
            rec = self._new_layer(name, "input", units, len(shape) - 1)
        elif per_element or len(per_sample) <= 1:
            units = max(1, int(torch.tensor(per_sample).prod())) if per_sample else 1
            prov = torch.arange(units).reshape(per_sample)
            rec = self._new_layer(name, "input", units, -1)
        else:
            units = per_sample[0]
            prov = torch.arange(units).reshape(units, *([1] * (len(per_sample) - 1))).expand(per_sample)
            rec = self._new_layer(name, "input", units, 1)
        prov = prov.expand(shape).clone()
        return ChannelValue(prov, Slots.single(torch.arange(rec.offset, rec.offset + units)), direct=None)

    # -- node-creating operations -------------------------------------------------
    def _add_edges(self, rec: LayerRecord, src: torch.Tensor, dst_local: torch.Tensor, w: torch.Tensor) -> None:
        if src.numel():  # read layers, pruned connections included (see output_layers)
            offsets = torch.tensor([r.offset for r in self.layers])
            read = torch.unique(torch.bucketize(src.contiguous(), offsets, right=True) - 1).tolist()
            self._read_layers.update(read)
            rec.depth = max(rec.depth, 1 + max(self.layers[i].depth for i in read))
        keep = w != 0
        rec.src.append(src[keep])
        rec.dst.append(dst_local[keep] + rec.offset)
        rec.weight.append(w[keep])

    def _feature_terms(self, x: ChannelValue, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index along ``dim``, node, coef) for every node feeding each index of ``dim``."""
        p = x.prov[0].movedim(dim - 1 if dim > 0 else dim, 0)
        size = p.shape[0]
        p = p.reshape(size, -1)
        idx = torch.arange(size).unsqueeze(1).expand_as(p)
        ok = p >= 0
        key = torch.unique(p[ok] * size + idx[ok])
        owner, node, coef = x.slots.expand(key // size)
        return (key % size)[owner], node, coef

    def linear(self, x: ChannelValue, weight: torch.Tensor, *, name: str, kind: str = "Linear") -> ChannelValue:
        """A dense layer ``y = x W^T`` on the last dim; ``weight`` is ``[out, in]``."""
        w = weight.detach().double().cpu()
        if w.dim() != 2 or x.prov.shape[-1] != w.shape[1]:
            raise UnsupportedOpError(
                f"{kind} {name!r}: weight {tuple(w.shape)} does not fit an input of shape {tuple(x.prov.shape)}"
            )
        out = int(w.shape[0])
        rec = self._new_layer(name, kind, out, -1)
        k, node, coef = self._feature_terms(x, -1)
        step = max(1, _CHUNK // max(out, 1))
        for a in range(0, k.numel(), step):
            block = w[:, k[a : a + step]].abs() * coef[a : a + step].abs()  # [out, m]
            j, m = block.nonzero(as_tuple=True)
            self._add_edges(rec, node[a : a + step][m], j, block[j, m])
        prov = torch.arange(out).expand(*x.prov.shape[:-1], out).clone()
        return ChannelValue(prov, Slots.single(torch.arange(rec.offset, rec.offset + out)), direct=len(self.layers) - 1)

    @staticmethod
    def _conv_weight(x: ChannelValue, weight: torch.Tensor, groups: int, name: str, kind: str) -> torch.Tensor:
        """A conv weight ``[out, in / groups, *kernel]`` as float64 on the CPU, checked against its input."""
        w = weight.detach().double().cpu()
        cin, out = int(x.prov.shape[1]), int(w.shape[0])
        if groups < 1 or cin % groups or out % groups or w.shape[1] * groups != cin:
            raise UnsupportedOpError(
                f"{kind} {name!r}: weight {tuple(w.shape)} with groups={groups} does not fit {cin} input channels"
            )
        return w

    def conv(
        self, x: ChannelValue, weight: torch.Tensor, *, groups: int, out_shape: Sequence[int], name: str, kind: str,
        window: Window | None = None,
    ) -> ChannelValue:
        """A convolution over channels (dim 1); ``weight`` is ``[out, in / groups, *kernel]``. ``window`` (its
        stride, padding, dilation) does not change the channel graph; the neuron graph needs it."""
        w = self._conv_weight(x, weight, groups, name, kind)
        cin, out = int(x.prov.shape[1]), int(w.shape[0])
        strength = w.abs().reshape(out, w.shape[1], -1).sum(-1)  # [out, in/groups]: coupling per channel pair
        rec = self._new_layer(name, kind, out, 1)
        c, node, coef = self._feature_terms(x, 1)
        per_in, per_out = cin // groups, out // groups
        g = c // per_in
        outs = g.unsqueeze(1) * per_out + torch.arange(per_out)  # [m, out/groups]
        ws = strength[outs, (c - g * per_in).unsqueeze(1)] * coef.abs().unsqueeze(1)
        self._add_edges(rec, node.unsqueeze(1).expand_as(outs).reshape(-1), outs.reshape(-1), ws.reshape(-1))
        shape = tuple(int(s) for s in out_shape)
        prov = torch.arange(out).reshape(1, out, *([1] * (len(shape) - 2))).expand(shape).clone()
        return ChannelValue(prov, Slots.single(torch.arange(rec.offset, rec.offset + out)), direct=len(self.layers) - 1)

    def conv_transpose(
        self, x: ChannelValue, weight: torch.Tensor, *, groups: int, out_shape: Sequence[int], name: str, kind: str,
        window: Window | None = None,
    ) -> ChannelValue:
        """A transposed convolution; ``weight`` is ``[in, out / groups, *kernel]`` (PyTorch's and ONNX's layout).
        Over channels it couples the same pairs as a convolution with the weight's in and out swapped (per
        group): output channel ``o`` reads input channel ``i`` when any tap of ``weight[i, o]`` is nonzero.
        ``window`` (stride, padding, dilation) does not change the channel graph; the neuron graph needs it."""
        w = torch.as_tensor(weight)
        cin, per_out, k = int(w.shape[0]), int(w.shape[1]), tuple(w.shape[2:])
        conv_w = w.reshape(groups, cin // groups, per_out, *k).transpose(1, 2).reshape(groups * per_out,
                                                                                       cin // groups, *k)
        return self.conv(x, conv_w, groups=groups, out_shape=out_shape, name=name, kind=kind)

    # -- scaling and merging ------------------------------------------------------------
    def scale(self, x: ChannelValue, factor: torch.Tensor, *, exclusive: bool) -> ChannelValue:
        """Multiply by a constant that broadcasts against ``x`` (batch norm, scalar or per-channel Mul).

        When ``x`` is a layer's raw output used only here (``exclusive``) and the factor
        varies only along that layer's unit dim, it folds into the layer's incoming edges
        (as exporters fold batch norm into the preceding conv); otherwise into the
        coefficients of the slots, i.e. into whatever consumes ``x`` next.
        """
        f = torch.as_tensor(factor, dtype=torch.float64).detach().cpu()
        full = torch.broadcast_to(f, x.prov.shape)[0]
        if x.direct is not None and exclusive:
            rec = self.layers[x.direct]
            d = rec.channel_dim if rec.channel_dim < 0 else rec.channel_dim - 1
            per_unit = full.movedim(d, 0).reshape(rec.units, -1)
            if bool((per_unit == per_unit[:, :1]).all()):
                s = per_unit[:, 0].abs()
                rec.weight = [w * s[dst - rec.offset] for w, dst in zip(rec.weight, rec.dst, strict=False)]
                return x
        p = x.prov[0]
        ok = p >= 0
        values, vidx = torch.unique(full, return_inverse=True)
        key = torch.full_like(p, -1)
        key[ok] = p[ok] * values.numel() + vidx[ok]
        uniq, inv = torch.unique(key[ok], return_inverse=True)
        owner, node, coef = x.slots.expand(uniq // values.numel())
        new_coef = coef * values[(uniq % values.numel())[owner]]
        prov = torch.full_like(p, -1)
        prov[ok] = inv
        return ChannelValue(
            prov.expand_as(x.prov).clone(), Slots.from_terms(owner, node, new_coef, uniq.numel(), "sum")
        )

    def merge(
        self, values: Sequence[ChannelValue], *, signs: Sequence[float] | None = None, combine: str = "sum"
    ) -> ChannelValue:
        """Elementwise combination of several tensors: residual add (``sum``) or a gating product (``max``)."""
        if signs is not None:
            values = [
                v if sg == 1 else ChannelValue(v.prov, Slots(v.slots.ptr, v.slots.node, v.slots.coef * sg))
                for v, sg in zip(values, signs, strict=False)
            ]
        provs = torch.broadcast_tensors(*[v.prov for v in values])
        cur, slots = provs[0][0], values[0].slots
        for v, p in zip(values[1:], provs[1:], strict=False):
            kb = len(v.slots) + 1
            uniq, inv = torch.unique((cur + 1) * kb + (p[0] + 1), return_inverse=True)
            a, b = uniq // kb - 1, uniq % kb - 1
            owners, nodes, coefs = [], [], []
            for table, ids in ((slots, a), (v.slots, b)):
                has = (ids >= 0).nonzero().flatten()
                owner, node, coef = table.expand(ids[has])
                owners.append(has[owner])
                nodes.append(node)
                coefs.append(coef)
            slots = Slots.from_terms(torch.cat(owners), torch.cat(nodes), torch.cat(coefs), uniq.numel(), combine)
            cur = torch.where(((a < 0) & (b < 0))[inv], torch.full_like(inv, -1), inv)
        return ChannelValue(cur.expand(provs[0].shape).clone(), slots)

    def _residual_branch(self, values: Sequence[ChannelValue]) -> int | None:
        """The operand of a residual sum that is a layer's own output (not an input's) and lies deepest; None
        when the operands' shapes differ or no operand is a layer's output (both levels' rule)."""
        if any(v.prov.shape != values[0].prov.shape for v in values):
            return None
        cands = [i for i, v in enumerate(values) if v.direct is not None and self.layers[v.direct].kind != "input"]
        if not cands:
            return None
        return max(cands, key=lambda j: (self.layers[values[j].direct].depth, -j))  # type: ignore[index]

    def residual(self, values: Sequence[ChannelValue], signs: Sequence[float]) -> tuple[ChannelValue, int] | None:
        """A residual sum that a nonlinearity reads next: its units are the units of the branch's last layer.

        The branch is the operand that is a layer's own output (batch norm folded in) and lies deepest;
        every other operand (the shortcut) feeds that layer's units by identity edges -- unit ``c`` of the
        sum reads channel ``c`` of the shortcut with weight 1 (times the shortcut's own scale), a projection
        shortcut being its own layer. So the branch layer's activity is read on the value its nonlinearity
        acts on (``relu(bn2(conv2(h)) + x)``). Returns the sum and the branch layer's index, or None when no
        operand is a layer's output of the sum's shape (then the union rule of :meth:`merge` applies).
        """
        i = self._residual_branch(values)
        if i is None:
            return None
        branch = values[i]
        layer = int(branch.direct)  # type: ignore[arg-type]
        rec = self.layers[layer]
        dim = rec.channel_dim
        existing = torch.cat([s * self.num_nodes + d for s, d in zip(rec.src, rec.dst, strict=True)]) \
            if rec.src else torch.empty(0, dtype=torch.long)
        terms = [(j, *self._feature_terms(v, dim)) for j, v in enumerate(values) if j != i]
        if any(bool(((node >= rec.offset) & (node < rec.offset + rec.units)).any()) for _, _, node, _ in terms):
            return None  # the shortcut holds the branch's own units: no identity edge may loop back
        for j, idx, node, coef in terms:
            w = (coef * float(signs[j])).abs()
            new = ~torch.isin(node * self.num_nodes + idx + rec.offset, existing)  # a pair already joined stays one
            self._add_edges(rec, node[new], idx[new], w[new])
        return ChannelValue(branch.prov, branch.slots), layer

    def recurrence(self, x: ChannelValue, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], *, gates: int,
                   carry: bool, name: str, kind: str, reverse: Sequence[bool] = (False, True),
                   select: Any = None) -> tuple[ChannelValue, ChannelValue]:
        """An RNN / GRU / LSTM layer unrolled over time steps (see :func:`emergence.adapters._recurrent.unroll`)."""
        from emergence.adapters._recurrent import unroll

        return unroll(self, x, weights, gates=gates, carry=carry, name=name, kind=kind, reverse=reverse,
                      select=select)

    # -- structure ------------------------------------------------------------------
    def resize(self, x: ChannelValue, out_shape: Sequence[int], taps: Any = None) -> ChannelValue:
        """Up- or down-sampling over the spatial dims (``interpolate``, ``Resize``): each output entry reads
        input entries of its own channel near its position. At channel level every position of a channel
        carries the channel's slot, so the nearest entry stands for all that it reads (``taps``, which positions
        each output reads, matter at neuron level only)."""
        spatial = list(out_shape[2:])
        prov = F.interpolate(x.prov.double(), size=spatial, mode="nearest").long()
        return x.derive(prov)

    def concat(self, values: Sequence[ChannelValue], dim: int) -> ChannelValue:
        """Concatenate tensors along ``dim`` (slot tables are stacked)."""
        provs, ptrs, nodes, coefs, base, tbase = [], [torch.zeros(1, dtype=torch.long)], [], [], 0, 0
        for v in values:
            provs.append(torch.where(v.prov >= 0, v.prov + base, v.prov))
            ptrs.append(v.slots.ptr[1:] + tbase)
            nodes.append(v.slots.node)
            coefs.append(v.slots.coef)
            base += len(v.slots)
            tbase += v.slots.node.numel()
        slots = Slots(torch.cat(ptrs), torch.cat(nodes), torch.cat(coefs))
        return ChannelValue(torch.cat(provs, dim=dim), slots)

    def pool(self, x: ChannelValue, out_shape: Sequence[int], window: Window | None = None) -> ChannelValue:
        """A reduction over the spatial dims of a channel tensor (pooling, global mean); ``window`` as in
        :meth:`conv`."""
        p = x.prov[0]
        c = int(p.shape[0])
        flat = p.reshape(c, -1)
        ok = flat >= 0
        idx = torch.arange(c).unsqueeze(1).expand_as(flat)
        pairs = torch.unique(flat[ok] * c + idx[ok])
        ch, slot = pairs % c, pairs // c
        owner, node, coef = x.slots.expand(slot)
        slots = Slots.from_terms(ch[owner], node, coef, c, "max")
        has = torch.bincount(ch, minlength=c) > 0
        chan = torch.where(has, torch.arange(c), torch.full((c,), -1))
        shape = tuple(int(s) for s in out_shape)
        prov = chan.reshape(1, c, *([1] * (len(shape) - 2))).expand(shape).clone()
        return ChannelValue(prov, slots)

    # -- products of activations (attention) ---------------------------------------------
    def reduce(self, x: ChannelValue, dims: Sequence[int], *, keepdim: bool) -> ChannelValue:
        """The union rule over ``dims`` (batch excluded): an output entry depends on every node that fed
        any entry it combines -- a sum, mean or max over any axis, softmax's normaliser, a contraction.

        Entries whose node sets (with coefficients, strongest kept) are equal share one slot, so
        e.g. every row of one attention head's scores is a single slot.
        """
        p = x.prov[0]
        nd = p.dim()
        red = sorted({(d % (nd + 1)) - 1 for d in dims})
        if any(d < 0 for d in red):
            raise UnsupportedOpError("a reduction over the batch dimension cannot be mapped")
        keep = [d for d in range(nd) if d not in red]
        q = p.permute(*keep, *red)
        kept_shape = [p.shape[d] for d in keep]
        rows = q.reshape(int(torch.tensor(kept_shape).prod()) if keep else 1, -1)
        m, r = rows.shape
        owner = torch.arange(m).unsqueeze(1).expand(m, r)
        ok = rows >= 0
        pairs = torch.unique(owner[ok] * (len(x.slots) + 1) + rows[ok])  # (row, slot) without repeats
        row, slot = pairs // (len(x.slots) + 1), pairs % (len(x.slots) + 1)
        term_owner, node, coef = x.slots.expand(slot)
        table = Slots.from_terms(row[term_owner], node, coef, m, "max")  # one slot per row, node sets merged
        lens = table.ptr[1:] - table.ptr[:-1]
        width = int(lens.max()) if m and lens.numel() else 0
        sig = torch.full((m, 2 * width), -1.0, dtype=torch.float64)
        if width:
            pos = torch.arange(table.node.numel()) - torch.repeat_interleave(table.ptr[:-1], lens)
            r_of = torch.repeat_interleave(torch.arange(m), lens)
            sig[r_of, pos] = table.node.double()
            sig[r_of, width + pos] = table.coef
        uniq, inv = torch.unique(sig, dim=0, return_inverse=True)
        first = torch.full((uniq.shape[0],), m, dtype=torch.long).scatter_reduce_(0, inv, torch.arange(m), "amin")
        owners, nodes, coefs = table.expand(first)
        slots = Slots.from_terms(owners, nodes, coefs, uniq.shape[0], "max")
        empty = lens[first] == 0
        ids = torch.where(empty[inv], torch.full_like(inv, -1), inv)
        out = ids.reshape(kept_shape) if keep else ids.reshape(())
        if keepdim:
            out = out.reshape([p.shape[d] if d in keep else 1 for d in range(nd)])
        return ChannelValue(out.unsqueeze(0).expand(x.prov.shape[0], *out.shape).clone(), slots)

    def spread(self, x: ChannelValue, dim: int) -> ChannelValue:
        """Softmax's rule: every entry along ``dim`` depends on all entries along it (shape unchanged).

        Like :meth:`product`, a data-dependent coupling: its coefficients are 1 (see there)."""
        r = self.reduce(x, [dim], keepdim=True)
        return ChannelValue(r.prov.expand(x.prov.shape).clone(), _unit(r.slots))

    def product(self, a: ChannelValue, b: ChannelValue) -> ChannelValue:
        """A matrix product of two activations, ``a[..., m, k] @ b[..., k, n]`` (batched, broadcasting):
        entry (i, j) depends on the union of the producers of row i of ``a`` and column j of ``b``.

        The strength of such a coupling depends on the data, not on weights, so its coefficients are 1:
        constant scales before or after it (``q * d**-0.5``, or on the scores) change nothing, and an
        exporter that moves the scale gives the same weighted graph."""
        if a.prov.dim() < 2 or b.prov.dim() < 2:
            raise UnsupportedOpError("a product of two activations needs operands with at least 2 dims")
        ra = self.reduce(a, [a.prov.dim() - 1], keepdim=True)
        rb = self.reduce(b, [b.prov.dim() - 2], keepdim=True)
        out = self.merge([ra, rb], combine="max")
        return ChannelValue(out.prov, _unit(out.slots))

    def couple(self, values: Sequence[ChannelValue]) -> ChannelValue:
        """Several activations combined entry by entry after contractions (einsum): the union, coefficients 1."""
        out = self.merge(values, combine="max")
        return ChannelValue(out.prov, _unit(out.slots))

    def einsum(self, equation: str, operands: Sequence[ChannelValue | None]) -> ChannelValue:
        """An einsum of activations (``None`` for constant operands): every operand is reduced over the
        letters the output lacks (the union rule), laid out in the output's order, and coupled.

        Raises
        ------
        UnsupportedOpError
            For ``...`` or implicit output subscripts, and for fewer than two activation operands (an
            einsum with a weight is a linear layer: write it as one).
        """
        equation = equation.replace(" ", "")
        lhs, arrow, out = equation.partition("->")
        if "." in equation or not arrow:
            raise UnsupportedOpError(f"einsum {equation!r}: write the output subscripts explicitly and without "
                                     "'...'")
        values = []
        for sub, operand in zip(lhs.split(","), operands, strict=False):
            if operand is None:
                continue
            contracted = [i for i, c in enumerate(sub) if c not in out]
            v = self.reduce(operand, contracted, keepdim=False) if contracted else operand
            rest = [c for c in sub if c in out]
            prov = v.prov.permute(*sorted(range(len(rest)), key=lambda i: out.index(rest[i])))
            shape = [v.prov.shape[rest.index(c)] if c in rest else 1 for c in out]
            values.append(ChannelValue(prov.reshape(shape), v.slots))
        if len(values) < 2:
            raise UnsupportedOpError(f"einsum {equation!r} with a constant operand: write it as a Linear layer "
                                     "(MatMul with the weight)")
        return self.couple(values)

    def table(self, name: str, units: int, out_shape: Sequence[int], kind: str = "Embedding") -> ChannelValue:
        """An embedding lookup: the table's ``units`` features become input nodes (features on the last dim)."""
        rec = self._new_layer(name, kind, units, -1)
        shape = tuple(int(s) for s in out_shape)
        prov = torch.arange(units).expand(shape).clone()
        return ChannelValue(prov, Slots.single(torch.arange(rec.offset, rec.offset + units)),
                            direct=len(self.layers) - 1)

    # -- result ----------------------------------------------------------------------
    def output_layers(self) -> list[int]:
        """Indices of the layers no layer reads (the model's outputs), inputs excluded.

        A layer counts as read even when every connection out of it is pruned.
        """
        return [i for i, r in enumerate(self.layers) if r.kind != "input" and i not in self._read_layers]

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All edges, repeated (source, target) pairs summed, zero weights dropped: (edge_index, weight)."""
        src = torch.cat([t for r in self.layers for t in r.src] or [torch.empty(0, dtype=torch.long)])
        dst = torch.cat([t for r in self.layers for t in r.dst] or [torch.empty(0, dtype=torch.long)])
        w = torch.cat([t for r in self.layers for t in r.weight] or [torch.empty(0, dtype=torch.float64)])
        n = max(self.num_nodes, 1)
        key, inv = torch.unique(src * n + dst, return_inverse=True)
        total = torch.zeros(key.numel(), dtype=torch.float64).index_add_(0, inv, w)
        keep = total != 0
        key, total = key[keep], total[keep]
        return torch.stack([key // n, key % n]), total
