"""Validation of the toolkit's graph type: node counts, edge index ranges, attributes, the whole contract.

A graph (see :mod:`emergence.graph`) that came from elsewhere -- a file, another
library, user code -- is checked here before anything counts on it; every failure is
a :class:`~emergence.errors.GraphError` naming the bad value and the fix.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from emergence.errors import GraphError
from emergence.graphdata import Graph, is_graph

__all__ = ["check_edge_index", "node_count", "node_label", "tensor_memo", "validate", "validate_attributes"]

# Facts about tensors, keyed by (the id of the tensor, what): an entry holds the tensor's version and dies with it.
_MEMO: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], int, Any]] = {}


def tensor_memo(t: torch.Tensor, what: str, compute: Callable[[torch.Tensor], Any]) -> Any:
    """``compute(t)``, remembered for as long as ``t`` lives unmodified (its in-place version is checked).

    A graph measured again and again (a training loop) keeps its ``edge_weight`` tensor: facts about it (all
    finite, which entries are zero) are computed once, not on every measurement.

    Examples
    --------
    >>> w = torch.tensor([1.0, 0.0])
    >>> tensor_memo(w, "zeros", lambda t: int((t == 0).sum()))
    1
    >>> w[0] = 0.0  # an in-place change: computed again
    >>> tensor_memo(w, "zeros", lambda t: int((t == 0).sum()))
    2
    """
    key = (id(t), what)
    item = _MEMO.get(key)
    if item is not None and item[0]() is t and item[1] == t._version:
        return item[2]
    value = compute(t)
    _MEMO[key] = (weakref.ref(t, lambda _ref: _MEMO.pop(key, None) if _MEMO is not None else None), t._version,
                  value)
    return value


def node_count(g: Graph) -> int:
    """Return the number of nodes of a graph without guessing from ``edge_index``.

    Parameters
    ----------
    g : emergence.Graph
        A graph with a stored ``num_nodes`` or an ``active`` mask.

    Returns
    -------
    int

    Raises
    ------
    GraphError
        If the graph stores neither.

    Examples
    --------
    >>> from emergence.graph import graph
    >>> node_count(graph([[0], [1]], 5, [0, 1, 0, 0, 0]))
    5
    """
    if not is_graph(g):
        raise GraphError(f"expected an emergence.Graph (or a torch_geometric Data), got {type(g).__name__}; "
                         "build one with emergence.graph(...) or emergence.from_edges(...)")
    stored = _stored_num_nodes(g)
    if stored is not None:
        return int(stored)
    active = getattr(g, "active", None)
    if isinstance(active, torch.Tensor):
        return int(active.numel())
    raise GraphError("graph stores neither num_nodes nor an active mask; set g.num_nodes = N")


def _stored_num_nodes(g: Graph) -> int | None:
    """The node count set on the graph, never one guessed from ``edge_index`` (torch_geometric guesses)."""
    if isinstance(g, Graph):
        return g.__dict__.get("_num_nodes")
    store = getattr(g, "_store", None)  # a torch_geometric Data keeps its attributes in a store
    return store["num_nodes"] if store is not None and "num_nodes" in store else None


def node_label(g: Graph | None, i: int) -> str:
    """Label node ``i`` for messages: its index, and its name when the graph has names."""
    names = getattr(g, "names", None)
    if isinstance(names, (list, tuple)) and 0 <= i < len(names):
        return f"{i} ({names[i]!r})"
    return str(i)


def check_edge_index(ei: torch.Tensor, n: int) -> None:
    """Check that ``ei`` is an int64 ``[2, E]`` tensor with every index in ``[0, n)``.

    Parameters
    ----------
    ei : torch.Tensor
        The edge index.
    n : int
        Number of nodes.

    Raises
    ------
    GraphError
        Naming the first edge with an index out of range.

    Examples
    --------
    >>> check_edge_index(torch.tensor([[0], [3]]), 3)
    Traceback (most recent call last):
    ...
    emergence.errors.GraphError: edge 0 has target 3, outside the node range [0, 3); fix edge_index or num_nodes
    """
    if not isinstance(ei, torch.Tensor):
        raise GraphError("graph has no edge_index tensor; set g.edge_index = LongTensor [2, E]")
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise GraphError(f"edge_index must have shape [2, E], got {tuple(ei.shape)}")
    if ei.dtype != torch.long:
        raise GraphError(f"edge_index must be int64 (torch.long), got {ei.dtype}")
    if ei.numel():
        lo, hi = torch.aminmax(ei)
        if int(lo) < 0 or int(hi) >= n:
            row, e = (int(v) for v in ((ei < 0) | (ei >= n)).nonzero()[0])
            raise GraphError(
                f"edge {e} has {'source' if row == 0 else 'target'} {int(ei[row, e])}, "
                f"outside the node range [0, {n}); fix edge_index or num_nodes"
            )


def validate_attributes(g: Graph, n: int) -> None:
    """Check the node and edge attributes of a graph with ``n`` nodes (not ``edge_index`` ranges).

    This is the part of :func:`validate` that must run on every measurement (masks
    and weights change between measurements; the structure is checked once per
    structure, when its levels are computed).

    Parameters
    ----------
    g : emergence.Graph
        The graph.
    n : int
        Its number of nodes.

    Raises
    ------
    GraphError
        With the first problem found, naming the bad value.

    Examples
    --------
    >>> from emergence.graph import graph
    >>> g = graph([[0], [1]], 2, [True, False])
    >>> g.active = torch.tensor([True])
    >>> validate_attributes(g, 2)
    Traceback (most recent call last):
    ...
    emergence.errors.GraphError: active has shape (1,) but the graph has 2 nodes
    """
    ei = getattr(g, "edge_index", None)
    if not isinstance(ei, torch.Tensor) or ei.dim() != 2:
        raise GraphError("graph has no edge_index tensor of shape [2, E]; set g.edge_index = LongTensor [2, E]")
    active = getattr(g, "active", None)
    if active is None:
        raise GraphError("graph has no 'active' mask; set g.active = BoolTensor [N]")
    if not isinstance(active, torch.Tensor) or active.dtype != torch.bool:
        raise GraphError(f"active must be a bool tensor, got {getattr(active, 'dtype', type(active))}")
    if active.dim() != 1 or active.numel() != n:
        raise GraphError(f"active has shape {tuple(active.shape)} but the graph has {n} nodes")
    w = getattr(g, "edge_weight", None)
    if w is not None:
        if not isinstance(w, torch.Tensor) or not w.dtype.is_floating_point:
            raise GraphError(f"edge_weight must be a float tensor, got {getattr(w, 'dtype', type(w))}")
        if w.dim() != 1 or w.numel() != ei.shape[1]:
            raise GraphError(f"edge_weight has shape {tuple(w.shape)} but there are {ei.shape[1]} edges")
        bad = tensor_memo(w, "nonfinite", lambda t: None if bool(torch.isfinite(t).all()) else ~torch.isfinite(t))
        if bad is not None:
            e = int(bad.nonzero()[0, 0])
            raise GraphError(
                f"edge_weight[{e}] = {float(w[e])} (edge {node_label(g, int(ei[0, e]))} -> "
                f"{node_label(g, int(ei[1, e]))}) is not finite; weights must be finite numbers"
            )
    layer = getattr(g, "layer", None)
    if layer is not None:
        if not isinstance(layer, torch.Tensor) or layer.dtype.is_floating_point or layer.dtype == torch.bool:
            raise GraphError(f"layer must be an integer tensor, got {getattr(layer, 'dtype', type(layer))}")
        if layer.dim() != 1 or layer.numel() != n:
            raise GraphError(f"layer has shape {tuple(layer.shape)} but the graph has {n} nodes")
    names = getattr(g, "names", None)
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != n):
        size = len(names) if hasattr(names, "__len__") else "?"
        raise GraphError(f"names must be a list of {n} strings, got {type(names).__name__} of length {size}")


def validate(g: Graph) -> Graph:
    """Check that a graph satisfies the toolkit's contract, and return it.

    Checks shapes and dtypes of ``edge_index``, ``active``, ``edge_weight``,
    ``layer`` and ``names``, that every index lies in ``[0, N)`` and that every
    weight is finite. Cycles are found when the graph is measured (see
    :func:`emergence.levels.topological_levels`), where the order is computed anyway.

    Parameters
    ----------
    g : emergence.Graph
        The graph to check.

    Returns
    -------
    emergence.Graph
        ``g`` itself.

    Raises
    ------
    GraphError
        With the first problem found, naming the bad value.

    Examples
    --------
    >>> from emergence.graph import graph
    >>> g = graph([[0], [1]], 2, [True, False])
    >>> validate(g) is g
    True
    """
    n = node_count(g)
    if n < 0:
        raise GraphError(f"num_nodes must be >= 0, got {n}")
    check_edge_index(getattr(g, "edge_index", None), n)  # type: ignore[arg-type]  # checked there
    validate_attributes(g, n)
    return g
