"""``igraph.Graph`` objects to and from the toolkit's graph, and the attribute parsing they share with networkx.

The active mask, the weights and the layer ids come from node and edge attributes
whose names are configurable (``active``, ``weight`` and ``layer`` by default), or the
active nodes from an explicit list of names or indices.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from emergence.errors import GraphError
from emergence.graph import graph as make_graph
from emergence.graphdata import Graph
from emergence.validate import node_count, validate

__all__ = ["from_igraph", "parse_flags", "to_igraph"]

_TRUE = {"true", "1", "yes", "y", "t", "active", "on"}
_FALSE = {"false", "0", "no", "n", "f", "inactive", "off", ""}


def parse_flags(values: Sequence[Any], what: str) -> torch.Tensor:
    """Turn attribute values (bools, 0/1 numbers, or strings such as "true") into a bool mask.

    Parameters
    ----------
    values : sequence
        One value per node.
    what : str
        How to name the attribute in an error message.

    Returns
    -------
    torch.Tensor
        Bool tensor of ``len(values)``.

    Raises
    ------
    GraphError
        Naming the first value that is not a boolean flag.

    Examples
    --------
    >>> parse_flags([True, 0, 1.0, "yes", "False"], "active").tolist()
    [True, False, True, True, False]
    """
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool):
            out.append(v)
        elif isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) and v in (0, 1):
            out.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            out.append(v.strip().lower() in _TRUE)
        else:
            raise GraphError(f"{what} of node {i} is {v!r}; expected true/false or 1/0")
    return torch.tensor(out, dtype=torch.bool)


def _integer_ids(values: Sequence[Any], what: str) -> torch.Tensor:
    out = []
    for i, v in enumerate(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise GraphError(f"{what} of node {i} is {v!r}; expected an integer")
        if not -(2**63) <= int(f) < 2**63:
            raise GraphError(f"{what} of node {i} is {v!r}, beyond the 64-bit integers layer ids are stored as")
        out.append(int(f))
    return torch.tensor(out, dtype=torch.long)


def _weights(values: Sequence[Any], what: str) -> torch.Tensor:
    try:
        w = torch.tensor([float(v) for v in values], dtype=torch.float64)
    except (TypeError, ValueError):
        bad = next(v for v in values if not _is_number(v))
        raise GraphError(f"{what} has a non-numeric value {bad!r}; weights must be numbers") from None
    return w


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _names(g: Any) -> list[str]:
    attrs = g.vs.attributes()
    for key in ("name", "label", "id"):
        if key in attrs:
            return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in g.vs[key]]
    return [str(i) for i in range(g.vcount())]


def _active_from_list(active: Iterable[Any], names: list[str], nodes: dict[Any, int] | None = None) -> torch.Tensor:
    """The mask of the listed nodes: each item a node of ``nodes`` (a library's own node objects), a name, or an
    index."""
    items = list(active)
    found: list[int] | None = None
    if nodes is not None:
        try:  # the common case, every item one of the library's nodes: one C-level pass
            found = list(map(nodes.__getitem__, items))
        except (KeyError, TypeError):
            found = None
    if found is None:
        found = _resolve_items(items, names, nodes)
    mask = torch.zeros(len(names), dtype=torch.bool)
    mask[torch.tensor(found, dtype=torch.long)] = True
    return mask


def _resolve_items(items: list[Any], names: list[str], nodes: dict[Any, int] | None) -> list[int]:
    index = dict(zip(names, range(len(names)), strict=True))
    found: list[int] = []
    for item in items:
        try:
            if nodes is not None and item in nodes:
                found.append(nodes[item])
                continue
        except TypeError:  # an unhashable item: not a node
            pass
        key = str(item).strip()
        if key in index:
            found.append(index[key])
        elif key.isdigit() and int(key) < len(names):
            found.append(int(key))
        else:
            raise GraphError(f"active node {key!r} is not a node of the graph (neither a name nor an index)")
    return found


def from_igraph(
    g: Any,
    *,
    active_attr: str = "active",
    weight_attr: str | None = "weight",
    layer_attr: str | None = "layer",
    active: Iterable[Any] | None = None,
) -> Graph:
    """Convert a directed ``igraph.Graph`` into the toolkit's graph.

    Parameters
    ----------
    g : igraph.Graph
        A directed graph.
    active_attr : str, default "active"
        Node attribute that holds the activity flags (bool, 0/1 or "true"/"false").
    weight_attr : str or None, default "weight"
        Edge attribute with the weights; ignored when absent, never read when None.
    layer_attr : str or None, default "layer"
        Node attribute with integer layer ids; ignored when absent.
    active : iterable, optional
        Names or indices of the active nodes, used instead of ``active_attr``.

    Returns
    -------
    emergence.Graph
        With ``names`` from the ``name`` (or GraphML ``id``, or ``label``) attribute.

    Raises
    ------
    GraphError
        If the graph is undirected, has no activity attribute, or has bad values.

    Examples
    --------
    >>> import igraph as ig
    >>> h = ig.Graph(edges=[(0, 1)], directed=True)
    >>> h.vs["active"] = [False, True]
    >>> from_igraph(h).active.tolist()
    [False, True]
    """
    if not g.is_directed():
        raise GraphError("the graph is undirected; emergence counts directed paths, so give edges a direction")
    names = _names(g)
    if active is not None:
        mask = _active_from_list(active, names)
    elif active_attr in g.vs.attributes() or g.vcount() == 0:
        mask = parse_flags(g.vs[active_attr] if g.vcount() else [], f"attribute {active_attr!r}")
    else:
        present = ", ".join(repr(a) for a in g.vs.attributes()) or "none"
        raise GraphError(
            f"the graph has no node attribute {active_attr!r} (node attributes: {present}); "
            "name the activity attribute or list the active nodes"
        )
    ei = torch.from_numpy(np.asarray(g.get_edgelist(), dtype=np.int64).reshape(-1, 2).T.copy())
    extra: dict[str, Any] = {}
    if weight_attr is not None and weight_attr in g.es.attributes():
        extra["edge_weight"] = _weights(g.es[weight_attr], f"edge attribute {weight_attr!r}")
    if layer_attr is not None and layer_attr in g.vs.attributes():
        extra["layer"] = _integer_ids(g.vs[layer_attr], f"attribute {layer_attr!r}")
    return make_graph(ei, g.vcount(), mask, names=names, **extra)


def to_igraph(
    graph: Graph, *, active_attr: str = "active", weight_attr: str = "weight", layer_attr: str = "layer"
) -> Any:
    """Convert the toolkit's graph into a directed ``igraph.Graph`` with its attributes.

    Parameters
    ----------
    graph : emergence.Graph
        The graph.
    active_attr, weight_attr, layer_attr : str
        Attribute names to write the mask, the weights and the layer ids under.

    Returns
    -------
    igraph.Graph
        Node attributes ``name``, ``active_attr`` (and ``layer_attr``, and ``activity``
        when the graph has a per-node activity statistic); edge attribute ``weight_attr``
        when the graph has weights.

    Examples
    --------
    >>> from emergence import graph
    >>> to_igraph(graph([[0], [1]], 3, [True, False, True])).vcount()
    3
    """
    import igraph as ig

    validate(graph)
    n = node_count(graph)
    g = ig.Graph(n=n, edges=graph.edge_index.t().tolist(), directed=True)
    names = getattr(graph, "names", None)
    g.vs["name"] = list(names) if names is not None else [str(i) for i in range(n)]
    g.vs[active_attr] = graph.active.tolist()
    if getattr(graph, "layer", None) is not None:
        g.vs[layer_attr] = graph.layer.tolist()
    if getattr(graph, "edge_weight", None) is not None:
        g.es[weight_attr] = graph.edge_weight.double().tolist()
    activity = getattr(graph, "activity", None)
    if isinstance(activity, torch.Tensor) and activity.numel() == n:
        g.vs["activity"] = activity.double().tolist()
    return g
