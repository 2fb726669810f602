"""Hypothesis strategies for graphs: acyclic by construction, shrinking toward small graphs."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st
from torch_geometric.data import Data

from emergence.graph import from_layers, graph

__all__ = ["dags", "layered_nets"]


@st.composite
def dags(
    draw: st.DrawFn,
    *,
    min_nodes: int = 0,
    max_nodes: int = 10,
    weights: st.SearchStrategy[float] | None = None,
    layers: int = 0,
    relabel: bool = True,
) -> Data:
    """Random DAGs with a random active mask.

    Edges are drawn among pairs ``i < j`` of a hidden order, so every draw is acyclic;
    a drawn permutation then relabels the nodes, so edges are not sorted. Hypothesis
    shrinks toward fewer nodes, fewer edges and the identity labeling.

    Parameters
    ----------
    min_nodes, max_nodes : int
        Bounds on the number of nodes.
    weights : strategy of float, optional
        When given, every edge gets a weight drawn from it (``edge_weight``).
    layers : int, default 0
        When positive, nodes get a random ``layer`` id in ``[0, layers)``.
    relabel : bool, default True
        Apply a random permutation to node ids.

    Returns
    -------
    strategy of torch_geometric.data.Data
    """
    n = draw(st.integers(min_nodes, max_nodes))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = sorted(draw(st.sets(st.integers(0, len(pairs) - 1))) if pairs else [])
    perm = draw(st.permutations(range(n))) if relabel else list(range(n))
    edges = [(perm[pairs[k][0]], perm[pairs[k][1]]) for k in chosen]
    active = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    extra: dict[str, Any] = {}
    if weights is not None:
        extra["edge_weight"] = torch.tensor([draw(weights) for _ in edges], dtype=torch.float64)
    if layers > 0:
        extra["layer"] = torch.tensor(draw(st.lists(st.integers(0, layers - 1), min_size=n, max_size=n)), dtype=torch.long)
    ei = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    return graph(ei, n, active, **extra)


@st.composite
def layered_nets(
    draw: st.DrawFn, *, max_layers: int = 5, max_width: int = 5
) -> tuple[Data, list[int], list[int]]:
    """Fully connected layered networks with random activity.

    Returns
    -------
    strategy of (graph, widths, active counts)
    """
    widths = draw(st.lists(st.integers(1, max_width), min_size=1, max_size=max_layers))
    masks = [draw(st.lists(st.booleans(), min_size=w, max_size=w)) for w in widths]
    mats = [torch.ones(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    if not mats:  # a single layer has no edges: build it directly
        return graph(torch.zeros(2, 0, dtype=torch.long), widths[0], masks[0]), widths, [sum(masks[0])]
    return from_layers(mats, masks), widths, [sum(m) for m in masks]
