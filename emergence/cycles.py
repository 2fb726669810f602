"""Cycles: which ones stop a count, how to name them, and condensation.

An emergent path ``x -> s1 -> ... -> sk`` leaves an inactive node and then stays on active nodes, so it
never uses an edge *into* an inactive node. E is therefore finite, and the DAG program exact, whenever the
**active subgraph** -- the edges into active nodes -- is acyclic, however many cycles the inactive nodes
sit on (a package archive's mutually dependent test packages, a git history's merges of unused branches).
:func:`levels_for` finds the levels of that subgraph when the whole graph has a cycle; when the active
subgraph itself has one, E is infinite and the refusal names one active cycle and sums up the strongly
connected components of active nodes. :func:`condense` replaces every strongly connected component by one
node, which always leaves a DAG.

References
----------
.. [1] R. Tarjan, "Depth-first search and linear graph algorithms", SIAM J. Comput. 1(2), 1972 (strongly
   connected components; computed here by :func:`scipy.sparse.csgraph.connected_components`).
"""

from __future__ import annotations

from typing import Any, Literal, NoReturn

import numpy as np
import torch

from emergence.errors import ConfigError, NotADAGError
from emergence.graphdata import Graph
from emergence.levels import Levels, _raise_cycle, topological_levels
from emergence.validate import node_count, node_label, validate

__all__ = ["CONDENSE_RULES", "condense", "levels_for", "strong_components"]

#: How a condensed node's activity follows from its members'.
CONDENSE_RULES = ("any", "all")


def strong_components(edge_index: torch.Tensor, num_nodes: int) -> tuple[int, torch.Tensor]:
    """Strongly connected components: ``(count, [N] component id of each node)``, ids ``0 .. count - 1``.

    Examples
    --------
    >>> count, comp = strong_components(torch.tensor([[0, 1, 1], [1, 0, 2]]), 3)
    >>> count, comp[0] == comp[1], comp[1] == comp[2]
    (2, tensor(True), tensor(False))
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    ei = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])), shape=(num_nodes, num_nodes))
    count, labels = connected_components(adj, directed=True, connection="strong")
    return int(count), torch.from_numpy(labels.astype(np.int64))


def _refuse_active_cycles(graph: Graph, edge_index: torch.Tensor, keep: torch.Tensor, n: int) -> None:
    """Raise the one-line refusal when the edges ``keep`` marks (those into active nodes) have a cycle."""
    sub = edge_index[:, keep]
    _, comp = strong_components(sub, n)
    sizes = torch.bincount(comp, minlength=int(comp.max()) + 1 if comp.numel() else 0)
    loops = sub[0] == sub[1]
    cyclic = sizes > 1
    cyclic[comp[sub[0][loops]]] = True
    if not bool(cyclic.any()):
        return
    found = sorted(sizes[cyclic].tolist(), reverse=True)
    c = int(torch.nonzero(cyclic)[0, 0])
    if bool(loops.any()) and int(sizes[c]) == 1:  # a self-loop is the cycle
        cycle = [int(sub[0][loops][0])]
    else:
        members = comp == c
        within = members[sub[0]] & members[sub[1]] & ~loops
        try:
            _raise_cycle(sub[0][within], sub[1][within], members.long(), graph)
        except NotADAGError as exc:
            cycle = exc.cycle
    closed = bool(((sub[0] == cycle[-1]) & (sub[1] == cycle[0])).any())  # a long cycle is named in part
    _refuse(graph, cycle, closed, len(found), found)


def _refuse(graph: Graph, cycle: list[int], closed: bool, count: int, sizes: list[int]) -> NoReturn:
    """Raise the one-line refusal for an active subgraph with cycles."""
    path = " -> ".join(node_label(graph, v) for v in cycle)
    path += f" -> {node_label(graph, cycle[0])}" if closed else " -> ..."
    largest = ", ".join(str(s) for s in sizes[:3])
    raise NotADAGError(
        f"the active nodes form a directed cycle ({path}), so emergence is infinite; {count} strongly connected "
        f"component{'s of active nodes hold' if count != 1 else ' of active nodes holds'} cycles (largest: "
        f"{largest} node{'s' if sizes[:1] != [1] else ''}); condense them (emergence.condense, --condense any) "
        "or count walks of bounded length (max_length=K, --max-length K)",
        cycle=cycle,
    ) from None


def levels_for(graph: Graph, n: int, keep: torch.Tensor | None, masks: torch.Tensor) -> Levels | None:
    """Topological levels a count of ``graph`` under the ``[T, N]`` ``masks`` can use.

    The whole graph's levels (cached) when it is a DAG; else those of its edges into nodes active under
    some mask (an emergent path uses no other edge). None when those have a cycle but each mask's own
    active subgraph may not: the caller then counts mask by mask.

    Raises
    ------
    NotADAGError
        For a single mask whose active subgraph has a cycle: the message names one and sums up the
        strongly connected components of active nodes.
    """
    ei = graph.edge_index
    try:
        return topological_levels(ei, n, keep, graph=graph)
    except NotADAGError:
        pass
    into_active = masks.any(0).cpu()[ei[1].cpu()]
    sub = into_active if keep is None else keep.cpu() & into_active
    if masks.shape[0] == 1:  # a cycle of these edges is one of active nodes: the components tell at once
        _refuse_active_cycles(graph, ei.cpu(), sub, n)
    try:
        return topological_levels(ei, n, sub, graph=graph)
    except NotADAGError:
        return None  # several masks: each may be acyclic on its own


def condense(graph: Graph, rule: Literal["any", "all"] = "any") -> Graph:
    """Replace every strongly connected component by one node: a DAG whose emergence is always finite.

    Parameters
    ----------
    graph : emergence.Graph
        Any directed graph with ``active`` (cycles allowed).
    rule : {"any", "all"}, default "any"
        A component is active when any (or all) of its members are.

    Returns
    -------
    emergence.Graph
        One node per component, numbered in order of each component's first member; ``edge_index`` the
        edges between components, parallel edges merged and self-loops dropped; ``edge_weight`` the sum of
        the merged edges' weights (their number for a graph without weights), so ``weighted=True`` counts
        the original edges; ``members`` (a list of tensors of original node ids), ``size`` ([C] members per
        component) and ``names`` (the first member's name, with ``+k`` for k more members) when the graph
        has names.

    Raises
    ------
    ConfigError
        For an unknown rule.
    GraphError
        If the graph is malformed.

    Examples
    --------
    >>> from emergence.graph import graph
    >>> g = graph([[0, 1, 1, 2], [1, 0, 2, 3]], 4, [False, True, True, True])
    >>> c = condense(g)
    >>> c.num_nodes, c.edge_index.tolist(), c.active.tolist(), [m.tolist() for m in c.members]
    (3, [[0, 1], [1, 2]], [True, True, True], [[0, 1], [2], [3]])
    """
    if rule not in CONDENSE_RULES:
        raise ConfigError(f"rule must be one of {', '.join(map(repr, CONDENSE_RULES))}, got {rule!r}")
    validate(graph)
    n = node_count(graph)
    ei = graph.edge_index.cpu()
    _, comp = strong_components(ei, n)
    # number components by their first member, so a DAG keeps its node order
    first = torch.full((int(comp.max()) + 1 if n else 0,), n, dtype=torch.long)
    first.scatter_reduce_(0, comp, torch.arange(n), "amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    comp = rank[comp]
    c = order.numel()
    active = graph.active.cpu()
    hits = torch.bincount(comp, weights=active.double(), minlength=c)
    size = torch.bincount(comp, minlength=c)
    new_active = hits > 0 if rule == "any" else hits == size
    src, dst = comp[ei[0]], comp[ei[1]]
    w = getattr(graph, "edge_weight", None)
    weight = torch.ones(ei.shape[1], dtype=torch.float64) if w is None else w.cpu().double()
    between = src != dst
    key = src[between] * max(c, 1) + dst[between]
    pairs, inverse = torch.unique(key, return_inverse=True)
    summed = torch.zeros(pairs.numel(), dtype=torch.float64).index_add_(0, inverse, weight[between])
    out = Graph(edge_index=torch.stack([pairs // max(c, 1), pairs % max(c, 1)]), num_nodes=c, active=new_active,
                edge_weight=summed)
    members_sorted = torch.argsort(comp, stable=True)
    out.members = list(torch.split(members_sorted, size.tolist()))
    out.size = size
    names: Any = getattr(graph, "names", None)
    if names is not None:
        out.names = [str(names[int(m[0])]) + (f"+{len(m) - 1}" if len(m) > 1 else "") for m in out.members]
    return out
