"""``rustworkx.PyDiGraph`` to and from the toolkit's graph."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from emergence.adapters.igraph_graph import _active_from_list, parse_flags
from emergence.errors import GraphError
from emergence.graph import graph as make_graph
from emergence.graphdata import Graph
from emergence.validate import validate

__all__ = ["from_rustworkx", "to_rustworkx"]


def _field(payload: Any, key: str) -> Any:
    return payload.get(key) if isinstance(payload, dict) else None


def from_rustworkx(
    g: Any,
    *,
    active_attr: str = "active",
    weight_attr: str | None = "weight",
    layer_attr: str | None = "layer",
    active: Iterable[Any] | None = None,
) -> Graph:
    """Convert a ``rustworkx.PyDiGraph`` into the toolkit's graph.

    Node payloads are dicts (``{"active": True, "name": "numpy"}``) or the activity flag itself; edge
    payloads are dicts or the weight itself. Nodes are numbered in ``g.node_indices()`` order (indices left
    by removed nodes are closed up), named by their payload's ``name`` or their rustworkx index.

    Parameters
    ----------
    g : rustworkx.PyDiGraph
    active_attr, weight_attr, layer_attr : str
        Payload keys, as in :func:`~emergence.adapters.from_networkx`.
    active : iterable, optional
        Names or indices of the active nodes, used instead of the payloads.

    Returns
    -------
    emergence.Graph

    Raises
    ------
    GraphError
        If the graph is undirected, or a node's payload holds no activity flag (and ``active`` is not given).

    Examples
    --------
    >>> import rustworkx as rx
    >>> h = rx.PyDiGraph()
    >>> a, b = h.add_node({"active": False, "name": "a"}), h.add_node({"active": True, "name": "b"})
    >>> _ = h.add_edge(a, b, {"weight": 2.0})
    >>> from_rustworkx(h).edge_weight.tolist()
    [2.0]
    """
    import rustworkx as rx

    if not isinstance(g, rx.PyDiGraph):
        raise GraphError(f"expected a rustworkx.PyDiGraph (emergence counts directed paths), got {type(g).__name__}")
    ids = np.asarray(g.node_indices(), dtype=np.int64)
    n = ids.size
    pos = np.full(int(ids.max()) + 1 if n else 0, -1, dtype=np.int64)
    pos[ids] = np.arange(n)
    payloads = list(g.nodes())
    named = [p.get("name") if isinstance(p, dict) else None for p in payloads]
    names = [str(i) if v is None else str(v) for v, i in zip(named, ids.tolist(), strict=True)]
    if active is not None:
        mask = _active_from_list(active, names)
    else:
        flags = [p.get(active_attr) if isinstance(p, dict) else p for p in payloads]
        missing = next((names[i] for i, f in enumerate(flags) if f is None), None)
        if missing is not None:
            raise GraphError(f"node {missing!r} has no {active_attr!r} in its payload; set it on every node, or "
                             "pass active=[...]")
        mask = parse_flags(flags, f"payload {active_attr!r}")
    pairs = np.asarray(g.edge_list(), dtype=np.int64).reshape(-1, 2)
    ei = torch.from_numpy(pos[pairs].T.copy())
    extra: dict[str, Any] = {}
    edges = g.edges()
    first = edges[0] if len(edges) else None
    if weight_attr is not None and (isinstance(first, (int, float)) or _field(first, weight_attr) is not None):
        values = [e.get(weight_attr) if isinstance(e, dict) else e for e in edges]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            extra["edge_weight"] = torch.tensor(values, dtype=torch.float64)
    if layer_attr is not None and n:
        layers = [_field(p, layer_attr) for p in payloads]
        if all(v is not None for v in layers):
            extra["layer"] = torch.tensor([int(v) for v in layers], dtype=torch.long)
    return make_graph(ei, n, mask, names=names, **extra)


def to_rustworkx(graph: Graph, *, active_attr: str = "active", weight_attr: str = "weight") -> Any:
    """Convert the toolkit's graph into a ``rustworkx.PyDiGraph`` (parallel edges are kept).

    Node ``i`` becomes rustworkx node ``i`` with payload ``{active_attr, "name", "layer"}``; an edge's payload
    is ``{weight_attr: w}`` when the graph has weights, else None.

    Examples
    --------
    >>> from emergence import graph
    >>> h = to_rustworkx(graph([[0], [1]], 3, [False, True, True], names=["a", "b", "c"]))
    >>> h.num_nodes(), h[1]
    (3, {'active': True, 'name': 'b'})
    """
    import rustworkx as rx

    validate(graph)
    out = rx.PyDiGraph(multigraph=True)
    names = getattr(graph, "names", None)
    layer = getattr(graph, "layer", None)
    payloads = []
    for i, flag in enumerate(graph.active.tolist()):
        p: dict[str, Any] = {active_attr: bool(flag), "name": names[i] if names is not None else str(i)}
        if layer is not None:
            p["layer"] = int(layer[i])
        payloads.append(p)
    out.add_nodes_from(payloads)
    w = getattr(graph, "edge_weight", None)
    weights = [None] * graph.num_edges if w is None else [{weight_attr: float(v)} for v in w.tolist()]
    out.add_edges_from([(u, v, d) for (u, v), d in zip(graph.edge_index.t().tolist(), weights, strict=True)])
    return out
