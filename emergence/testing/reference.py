"""A slow, obviously correct reference: enumerate every emergent path one by one."""

from __future__ import annotations

import math
from collections.abc import Callable

from emergence.graphdata import Graph
from emergence.validate import node_count

__all__ = ["brute_force_emergence", "brute_force_walks"]


def _successors(graph: Graph, weighted: bool) -> tuple[int, list[bool], list[list[tuple[int, float]]]]:
    """(nodes, activity flags, each node's out-edges as ``(target, weight)``, zero-weight edges left out)."""
    n = node_count(graph)
    w = getattr(graph, "edge_weight", None)
    weights = [1.0] * graph.edge_index.shape[1] if w is None else w.tolist()
    succ: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (s, t), wt in zip(graph.edge_index.t().tolist(), weights, strict=True):
        if wt != 0:
            succ[s].append((t, abs(wt) if weighted else 1))
    return n, graph.active.tolist(), succ


def _starts(n: int, active: list[bool], succ: list[list[tuple[int, float]]],
            onward: Callable[[int, float], float]) -> float:
    """The sum of ``onward(s, w)`` over the edges ``x -> s`` (weight w) from an inactive x into an active s."""
    return sum((onward(s, wt) for x in range(n) if not active[x] for s, wt in succ[x] if active[s]), 0)


def brute_force_emergence(graph: Graph, *, weighted: bool = False) -> float | int:
    """Count emergent paths by depth-first enumeration (exponential time: tiny graphs only).

    Every edge ``x -> s`` with ``x`` inactive and ``s`` active starts the paths
    ``x -> s -> ...`` that stay inside the active set; each is enumerated and counted
    (with the product of ``|w|`` along it when ``weighted``).

    Parameters
    ----------
    graph : emergence.Graph
        A small DAG with ``edge_index``, ``active`` and optional ``edge_weight``.
    weighted : bool, default False
        Weight each path by the product of its edges' ``|w|``.

    Returns
    -------
    int or float
        An int when unweighted.

    Examples
    --------
    >>> from emergence import graph
    >>> brute_force_emergence(graph([[0, 1], [1, 2]], 3, [False, True, True]))
    2
    """
    n, active, succ = _successors(graph, weighted)

    def paths_from(s: int, acc: float) -> float:
        total = acc  # the path that ends at s
        for t, wt in succ[s]:
            if active[t]:
                total += paths_from(t, acc * wt)
        return total

    total = _starts(n, active, succ, paths_from)
    if not weighted:
        return int(total)
    return float(total) if math.isfinite(total) else math.inf



def brute_force_walks(graph: Graph, max_length: int, *, weighted: bool = False) -> float | int:
    """Count emergent walks of at most ``max_length`` edges by enumeration (any graph; tiny ones only).

    The walks ``x -> s1 -> ... -> sj`` with ``x`` inactive, every ``si`` active and ``j <= max_length``,
    each enumerated (cycles may be passed more than once), weighted by the product of ``|w|`` when
    ``weighted``.

    Examples
    --------
    >>> from emergence import graph
    >>> brute_force_walks(graph([[0, 1, 2], [1, 2, 1]], 3, [False, True, True]), 3)  # 0-1, 0-1-2, 0-1-2-1
    3
    """
    n, active, succ = _successors(graph, weighted)

    def walks_from(s: int, acc: float, left: int) -> float:
        total = acc
        if left:
            for t, wt in succ[s]:
                if active[t]:
                    total += walks_from(t, acc * wt, left - 1)
        return total

    total = _starts(n, active, succ, lambda s, wt: walks_from(s, wt, max_length - 1))
    return int(total) if not weighted else float(total)
