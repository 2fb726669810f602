"""``networkx.DiGraph`` to and from the toolkit's graph."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from operator import methodcaller
from typing import Any

import numpy as np
import torch

from emergence.adapters.igraph_graph import _active_from_list, parse_flags
from emergence.errors import GraphError
from emergence.graph import graph as make_graph
from emergence.graphdata import Graph
from emergence.validate import validate

__all__ = ["from_networkx", "to_networkx"]


def from_networkx(
    g: Any,
    *,
    active_attr: str = "active",
    weight_attr: str | None = "weight",
    layer_attr: str | None = "layer",
    active: Iterable[Any] | None = None,
) -> Graph:
    """Convert a ``networkx.DiGraph`` (or ``MultiDiGraph``) into the toolkit's graph.

    Nodes are numbered in ``g.nodes`` order and named ``str(node)``. The edges are read straight from
    networkx's adjacency dicts in one pass (no per-edge Python objects), so a graph of 2.6·10⁵ edges converts
    within 3× of :func:`emergence.from_edges` given the same pairs as a Python list
    (``benchmarks/bench_converters.py``).

    Parameters
    ----------
    g : networkx.DiGraph or networkx.MultiDiGraph
        A directed graph (parallel edges of a multigraph stay parallel edges).
    active_attr : str, default "active"
        Node attribute with the activity flags.
    weight_attr : str or None, default "weight"
        Edge attribute with weights (used when every edge has it).
    layer_attr : str or None, default "layer"
        Node attribute with integer layer ids (used when every node has it).
    active : iterable, optional
        The active nodes (networkx nodes, their names, or indices), used instead of ``active_attr``, as in
        :func:`~emergence.adapters.from_igraph`.

    Returns
    -------
    emergence.Graph

    Raises
    ------
    GraphError
        If the graph is undirected, or a node lacks the activity attribute (and ``active`` is not given).

    Examples
    --------
    >>> import networkx as nx
    >>> h = nx.DiGraph([("x", "y"), ("y", "z")])
    >>> from_networkx(h, active=["y", "z"]).active.tolist()
    [False, True, True]
    """
    if not g.is_directed():
        raise GraphError("the graph is undirected; emergence counts directed paths, so use a DiGraph")
    nodes = list(g.nodes)
    n = len(nodes)
    index = dict(zip(nodes, range(n), strict=True))
    names = list(map(str, nodes))
    if active is not None:
        mask = _active_from_list(active, names, index)
    else:
        flags = dict(g.nodes(data=active_attr))
        missing = next((v for v in nodes if flags[v] is None), _NONE)
        if missing is not _NONE:
            raise GraphError(f"node {missing!r} has no attribute {active_attr!r}; set it on every node, or pass "
                             "active=[...]")
        mask = parse_flags([flags[v] for v in nodes], f"attribute {active_attr!r}")
    succ = g._succ  # node -> {neighbour -> edge data} (a multigraph: neighbour -> {key -> edge data})
    multi = g.is_multigraph()
    if multi:
        per = [[(v, d) for v, keyed in nbrs.items() for d in keyed.values()] for nbrs in succ.values()]
        counts = np.fromiter((len(p) for p in per), dtype=np.int64, count=n)
        targets: Any = (v for p in per for v, _ in p)
        datas: Any = [d for p in per for _, d in p]
    else:
        counts = np.fromiter(map(len, succ.values()), dtype=np.int64, count=n)
        targets = chain.from_iterable(succ.values())
        datas = None
    e = int(counts.sum())
    src = np.repeat(np.arange(n, dtype=np.int64), counts)
    dst = _node_indices(targets, nodes, index, e)
    extra: dict[str, Any] = {}
    if weight_attr is not None and e:
        first = datas[0] if datas is not None else next(d for nbrs in succ.values() for d in nbrs.values())
        if weight_attr in first:  # weights are used only when every edge has them: the first one decides
            if datas is None:
                datas = chain.from_iterable(nbrs.values() for nbrs in succ.values())
            values = np.fromiter(map(methodcaller("get", weight_attr, np.nan), datas), dtype=np.float64, count=e)
            if not np.isnan(values).any():
                extra["edge_weight"] = torch.from_numpy(values)
    if layer_attr is not None and n:
        layers = dict(g.nodes(data=layer_attr))
        if all(layers[v] is not None for v in nodes):
            extra["layer"] = torch.tensor([int(layers[v]) for v in nodes], dtype=torch.long)
    ei = torch.from_numpy(np.stack([src, dst]))
    return make_graph(ei, n, mask, names=names, **extra)


_NONE = object()


def _node_indices(targets: Iterable[Any], nodes: list[Any], index: dict[Any, int], e: int) -> np.ndarray:
    """The index of each target node. networkx keeps the node objects themselves as the adjacency keys, so
    they are matched by identity (a sort and a search over ``id``s, no hashing); a key that is an equal but
    distinct object (not the node dict's own) is looked up by value."""
    targets = list(targets)
    ids = np.fromiter(map(id, nodes), dtype=np.uint64, count=len(nodes))
    order = np.argsort(ids)
    sorted_ids = ids[order]
    want = np.fromiter(map(id, targets), dtype=np.uint64, count=e)
    pos = np.minimum(np.searchsorted(sorted_ids, want), max(len(nodes) - 1, 0))
    out = order[pos].astype(np.int64)
    missed = np.flatnonzero(sorted_ids[pos] != want)
    if missed.size:
        out[missed] = [index[targets[i]] for i in missed.tolist()]
    return out


def to_networkx(graph: Graph, *, active_attr: str = "active", weight_attr: str = "weight") -> Any:
    """Convert the toolkit's graph into a ``networkx.MultiDiGraph`` (parallel edges are kept).

    Nodes are the integers ``0..N-1`` with attributes ``name``, ``active_attr`` and
    ``layer`` (when present); edges carry ``weight_attr`` when the graph has weights.

    Parameters
    ----------
    graph : emergence.Graph
        The graph.
    active_attr, weight_attr : str
        Attribute names to write.

    Returns
    -------
    networkx.MultiDiGraph

    Examples
    --------
    >>> from emergence import graph
    >>> to_networkx(graph([[0], [1]], 3, [False, True, True])).number_of_nodes()
    3
    """
    import networkx as nx

    validate(graph)
    out = nx.MultiDiGraph()
    names = getattr(graph, "names", None)
    layer = getattr(graph, "layer", None)
    for i, flag in enumerate(graph.active.tolist()):
        attrs: dict[str, Any] = {active_attr: flag, "name": names[i] if names is not None else str(i)}
        if layer is not None:
            attrs["layer"] = int(layer[i])
        out.add_node(i, **attrs)
    w = getattr(graph, "edge_weight", None)
    for e, (u, v) in enumerate(graph.edge_index.t().tolist()):
        out.add_edge(u, v, **({weight_attr: float(w[e])} if w is not None else {}))
    return out
