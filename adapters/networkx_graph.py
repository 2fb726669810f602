"""``networkx.DiGraph`` to and from the toolkit's graph."""

from __future__ import annotations

from typing import Any

import torch

from emergence.adapters.igraph_graph import parse_flags
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
) -> Graph:
    """Convert a ``networkx.DiGraph`` into the toolkit's graph.

    Nodes are numbered in ``g.nodes`` order and named ``str(node)``.

    Parameters
    ----------
    g : networkx.DiGraph
        A directed graph whose nodes carry ``active_attr``.
    active_attr : str, default "active"
        Node attribute with the activity flags.
    weight_attr : str or None, default "weight"
        Edge attribute with weights (used when every edge has it).
    layer_attr : str or None, default "layer"
        Node attribute with integer layer ids (used when every node has it).

    Returns
    -------
    emergence.Graph

    Raises
    ------
    GraphError
        If the graph is undirected or a node lacks the activity attribute.

    Examples
    --------
    >>> import networkx as nx
    >>> h = nx.DiGraph()
    >>> h.add_node("x", active=False); h.add_node("y", active=True); h.add_edge("x", "y")
    >>> from_networkx(h).names
    ['x', 'y']
    """
    if not g.is_directed():
        raise GraphError("the graph is undirected; emergence counts directed paths, so use a DiGraph")
    nodes = list(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    missing = [v for v in nodes if active_attr not in g.nodes[v]]
    if missing:
        raise GraphError(f"node {missing[0]!r} has no attribute {active_attr!r}; set it on every node")
    mask = parse_flags([g.nodes[v][active_attr] for v in nodes], f"attribute {active_attr!r}")
    edges = list(g.edges(data=True))
    ei = torch.tensor([[index[u], index[v]] for u, v, _ in edges], dtype=torch.long).reshape(-1, 2).t()
    extra: dict[str, Any] = {}
    if weight_attr is not None and edges and all(weight_attr in d for _, _, d in edges):
        extra["edge_weight"] = torch.tensor([float(d[weight_attr]) for _, _, d in edges], dtype=torch.float64)
    if layer_attr is not None and nodes and all(layer_attr in g.nodes[v] for v in nodes):
        extra["layer"] = torch.tensor([int(g.nodes[v][layer_attr]) for v in nodes], dtype=torch.long)
    return make_graph(ei, len(nodes), mask, names=[str(v) for v in nodes], **extra)


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
