"""Topological levels of a DAG, computed with vectorized frontier passes and cached.

Counting paths needs every successor of a node before the node itself. Grouping
nodes by *depth* (length of the longest path that reaches them) gives levels in
which every edge goes from a lower level to a higher one, so a dynamic program can
process one whole level with one gather and one scatter instead of one node at a
time. The levels depend only on the structure of the graph, not on which nodes are
active, so they are cached: measuring the same graph again after changing only
``active`` (the training-loop case) reuses them.

The computation touches each edge once: one radix sort of (source, target) keys
(skipped when ``edge_index`` is already sorted by source), then Kahn's algorithm one
frontier at a time, where each frontier gathers the out-edges of its nodes with a
single ``repeat_interleave``. Index arrays are ``int32`` when the graph allows it.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, field

import torch

from emergence.errors import NotADAGError
from emergence.graphdata import Graph
from emergence.validate import check_edge_index, node_label

__all__ = ["Levels", "topological_levels"]


@dataclass(eq=False)
class Levels:
    """Nodes and edges of a DAG grouped by depth level.

    Positions ("pos") index nodes in level order: level ``h`` holds the nodes
    ``node_order[node_ptr[h]:node_ptr[h + 1]]`` and is the source level of the
    ordered edges ``edge_ptr[h]:edge_ptr[h + 1]``.

    Attributes
    ----------
    num_nodes : int
        N.
    node_order : torch.Tensor
        ``[N]`` node ids sorted by level.
    node_ptr, edge_ptr : list of int
        Level offsets into the ordered nodes and the ordered edges (length L + 1).
    dst : torch.Tensor
        ``[E']`` target node id of each ordered edge.
    src_local : torch.Tensor
        ``[E']`` position of each ordered edge's source within its own level.
    """

    num_nodes: int
    node_order: torch.Tensor
    node_ptr: list[int]
    edge_ptr: list[int]
    dst: torch.Tensor
    src_local: torch.Tensor
    _order_parts: tuple[torch.Tensor, ...] = field(default=(), repr=False)
    _edge_order: torch.Tensor | None = field(default=None, repr=False)
    _on_device: dict[str, Levels] = field(default_factory=dict, repr=False)
    _rows: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _ones: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_levels(self) -> int:
        """Number of levels L (the longest path has L - 1 edges)."""
        return len(self.node_ptr) - 1

    @property
    def num_edges(self) -> int:
        """Number of structural edges E'."""
        return int(self.dst.numel())

    @property
    def edge_order(self) -> torch.Tensor:
        """``[E']`` column of ``edge_index`` of each ordered edge (computed on first use)."""
        if self._edge_order is None:
            order = self._order_parts[-1].long()
            for outer in reversed(self._order_parts[:-1]):
                order = outer.index_select(0, order)
            self._edge_order = order
        return self._edge_order

    def level_matrix(self, h: int, values: torch.Tensor | None = None) -> torch.Tensor | None:
        """Level ``h``'s edges as a sparse CSR matrix ``[nodes of level h, N]`` (None: no edges leave it).

        Row ``i`` is the ``i``-th node of the level, column ``j`` node ``j``; entries are 1, or
        ``values[edge_ptr[h]:edge_ptr[h + 1]]`` (one per ordered edge, e.g. ``|w|``). Parallel edges are
        separate entries, which a product sums. A level's edges are already grouped by source, so the
        matrix costs one ``bincount`` the first time and nothing after (rows, and the matrix of ones, are cached).

        Examples
        --------
        >>> import torch
        >>> lv = topological_levels(torch.tensor([[0, 0], [1, 2]]), 3)
        >>> (lv.level_matrix(0) @ torch.ones(3, 1, dtype=torch.float64)).tolist()
        [[2.0]]
        """
        ea, eb = self.edge_ptr[h], self.edge_ptr[h + 1]
        if eb == ea:
            return None
        size = self.node_ptr[h + 1] - self.node_ptr[h]
        rows = self._rows.get(h)
        if rows is None:
            counts = torch.bincount(self.src_local[ea:eb].long(), minlength=size)
            rows = torch.zeros(size + 1, dtype=self.dst.dtype, device=self.dst.device)
            torch.cumsum(counts, 0, out=rows[1:])
            self._rows[h] = rows
        if values is None and h in self._ones:
            return self._ones[h]
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products of CSR and dense are stable
            warnings.simplefilter("ignore", UserWarning)
            vals = torch.ones(eb - ea, dtype=torch.float64, device=self.dst.device) if values is None \
                else values[ea:eb]
            m = torch.sparse_csr_tensor(rows, self.dst[ea:eb], vals, (size, self.num_nodes))
        if values is None:
            self._ones[h] = m
        return m

    def to(self, device: str | torch.device) -> Levels:
        """Return the levels with their tensors on ``device`` (copies are cached)."""
        if self.node_order.device == torch.device(device):
            return self
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = Levels(
                self.num_nodes,
                self.node_order.to(device),
                self.node_ptr,
                self.edge_ptr,
                self.dst.to(device),
                self.src_local.to(device),
                (self.edge_order.to(device),),
            )
        return self._on_device[key]


@dataclass(eq=False)
class _CacheEntry:
    version: int
    num_nodes: int
    keep: torch.Tensor | None
    levels: Levels | None
    error: NotADAGError | None = None  # the graph (or its kept edges) has a cycle


# Levels keyed by the id of the edge_index tensor they were computed from, one slot for all edges and one for
# the latest subset (``keep``); an entry dies with its tensor. (A WeakKeyDictionary would compare tensors
# with ==.) A cycle is remembered too, so a cyclic graph is not walked again to find it refused.
_CACHE: dict[tuple[int, bool], tuple[weakref.ref[torch.Tensor], _CacheEntry]] = {}


def _cached(t: torch.Tensor, kept: bool) -> _CacheEntry | None:
    item = _CACHE.get((id(t), kept))
    return item[1] if item is not None and item[0]() is t else None


def _store(t: torch.Tensor, kept: bool, entry: _CacheEntry) -> None:
    key = (id(t), kept)
    _CACHE[key] = (weakref.ref(t, lambda _ref: _CACHE.pop(key, None) if _CACHE is not None else None), entry)


def _raise_cycle(src: torch.Tensor, dst: torch.Tensor, indeg: torch.Tensor, g: Graph | None) -> None:
    """Find a node on a cycle among the nodes Kahn's algorithm could not remove, and raise."""
    left = indeg > 0  # every such node still has a predecessor that is left
    on = left[src] & left[dst]
    pred = torch.full((indeg.numel(),), -1, dtype=torch.long)
    pred[dst[on]] = src[on]
    node = int(left.nonzero()[0, 0])
    jump = pred.clone()
    for _ in range(max(1, math.ceil(math.log2(indeg.numel() + 1)))):  # pointer doubling
        jump = torch.where(jump >= 0, jump[jump.clamp_min(0)], jump)
    node = int(jump[node])  # after >= N backward steps we are on a cycle
    cycle, closed = [node], False
    while len(cycle) < 8:
        nxt = int(pred[cycle[-1]])
        if nxt == node:
            closed = True
            break
        cycle.append(nxt)
    cycle.reverse()  # pred walks backwards; report in edge direction
    path = " -> ".join(node_label(g, v) for v in cycle) + (f" -> {node_label(g, cycle[0])}" if closed else " -> ...")
    raise NotADAGError(
        f"the graph has a directed cycle through node {node_label(g, node)} ({path}); "
        "emergence counts paths and needs a DAG: remove an edge of the cycle",
        cycle=cycle,
    )


def _sort_by_source(
    src: torch.Tensor, dst: torch.Tensor, n: int, it: torch.dtype
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Edges in CSR order: (permutation, or None if already sorted; targets in that order as ``it``)."""
    if src.numel() < 2 or bool((src[1:] >= src[:-1]).all()):
        return None, dst.to(it)
    bits = max(1, (n - 1).bit_length())
    if 2 * bits <= 62:  # one radix sort of (source, target) keys carries the targets along
        keys, perm = torch.sort((src << bits) | dst)
        return perm, keys.bitwise_and_((1 << bits) - 1).to(it)
    perm = torch.sort(src, stable=True).indices
    return perm, dst[perm].to(it)


def _compute(src: torch.Tensor, dst: torch.Tensor, n: int, g: Graph | None) -> Levels:
    e = src.numel()
    it = torch.int32 if max(n, e) < 2**31 - 1 else torch.long  # half the bytes to touch and read
    perm, dst_s = _sort_by_source(src, dst, n, it)
    counts = torch.bincount(src, minlength=n)
    indptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=indptr[1:])
    indeg = torch.bincount(dst, minlength=n)
    owner = torch.empty(n, dtype=it)
    steps = torch.arange(max(e, n), dtype=it)
    # Outputs are written level by level into preallocated buffers: a fresh E-sized
    # tensor per step would cost more in page faults than the arithmetic.
    dst_ord = torch.empty(e, dtype=it)  # target node id of each ordered edge
    loc_ord = torch.empty(e, dtype=it)  # source's place within its level
    pos_ord = torch.empty(e, dtype=it)  # place of the edge in CSR order
    frontier = (indeg == 0).nonzero().flatten().to(it)
    nodes, node_ptr, edge_ptr = [], [0], [0]
    while frontier.numel():
        lens = counts[frontier]
        total = int(lens.sum())
        ea, eb = edge_ptr[-1], edge_ptr[-1] + total
        nxt = frontier[:0]
        if total:
            loc = loc_ord[ea:eb]
            loc.copy_(torch.repeat_interleave(steps[: lens.numel()], lens, output_size=total))
            starts = (indptr[frontier] - (torch.cumsum(lens, 0) - lens)).to(it)
            pos = torch.add(starts.index_select(0, loc), steps[:total], out=pos_ord[ea:eb])
            d = torch.index_select(dst_s, 0, pos, out=dst_ord[ea:eb])
            indeg.index_add_(0, d, torch.tensor(-1).expand(total))
            nxt = d[indeg.index_select(0, d) == 0]
            if nxt.numel() > 1:  # drop repeats: keep the one occurrence that wins the write
                rank = steps[: nxt.numel()]
                owner[nxt] = rank
                nxt = nxt[owner.index_select(0, nxt) == rank]
        nodes.append(frontier)
        node_ptr.append(node_ptr[-1] + frontier.numel())
        edge_ptr.append(eb)
        frontier = nxt
    if node_ptr[-1] < n:
        _raise_cycle(src, dst, indeg, g)
    return Levels(
        num_nodes=n,
        node_order=torch.cat(nodes).long() if nodes else torch.empty(0, dtype=torch.long),
        node_ptr=node_ptr,
        edge_ptr=edge_ptr,
        dst=dst_ord,
        src_local=loc_ord,
        _order_parts=(pos_ord,) if perm is None else (perm, pos_ord),
    )


def topological_levels(
    edge_index: torch.Tensor,
    num_nodes: int,
    keep: torch.Tensor | None = None,
    *,
    graph: Graph | None = None,
) -> Levels:
    """Group the nodes and edges of a DAG by depth, reusing a cached result when possible.

    Parameters
    ----------
    edge_index : torch.Tensor
        ``[2, E]`` int64 edges.
    num_nodes : int
        N.
    keep : torch.Tensor, optional
        ``[E]`` bool; only these edges are structural (used to leave out zero-weight edges).
    graph : emergence.Graph, optional
        The graph the edges belong to, used only to name nodes in error messages.

    Returns
    -------
    Levels
        On the CPU; use :meth:`Levels.to` for another device. The result is cached
        for as long as ``edge_index`` lives and is not modified in place.

    Raises
    ------
    GraphError
        If an index lies outside ``[0, num_nodes)``.
    NotADAGError
        If the graph has a directed cycle; the message names a node on it.

    Examples
    --------
    >>> import torch
    >>> lv = topological_levels(torch.tensor([[0, 1, 0], [1, 2, 2]]), 4)
    >>> lv.num_levels, lv.node_order.tolist()
    (3, [0, 3, 1, 2])
    """
    kept = keep is not None
    entry = _cached(edge_index, kept)
    if (
        entry is not None
        and entry.version == edge_index._version
        and entry.num_nodes == num_nodes
        and (keep is None or (entry.keep is not None and torch.equal(entry.keep, keep.cpu())))
    ):
        if entry.error is not None:  # a fresh exception each time: a re-raised one would pile up tracebacks
            raise NotADAGError(str(entry.error), entry.error.cycle)
        assert entry.levels is not None
        return entry.levels
    check_edge_index(edge_index, num_nodes)
    ei = edge_index.cpu()
    kp = None if keep is None else keep.cpu()
    try:
        if kp is not None:
            ids = kp.nonzero().flatten()
            levels = _compute(ei[0, ids], ei[1, ids], num_nodes, graph)
            levels._order_parts = (ids, *levels._order_parts)
        else:
            levels = _compute(ei[0], ei[1], num_nodes, graph)
    except NotADAGError as exc:
        _store(edge_index, kept, _CacheEntry(edge_index._version, num_nodes, kp, None, exc))
        raise
    _store(edge_index, kept, _CacheEntry(edge_index._version, num_nodes, kp, levels))
    return levels
