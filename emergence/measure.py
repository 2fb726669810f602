"""Counting emergence: paths that leave an inactive node and run on through active ones.

For a DAG G = (V, E) with edge weights w and active set H, every active node s has

    P(s) = 1 + sum_{(s -> t) in E, t in H} omega(s, t) * P(t)

and emergence is ``E(G, H) = sum_{(x -> s) in E, x not in H, s in H} omega(x, s) * P(s)``,
with omega = 1 (plain count) or omega = |w| (weighted). Edges of weight exactly 0
are not edges. Two methods compute it over the same cached topological levels
(:mod:`emergence.levels`), one level per step, sinks last-in first-out:

* ``"exact"`` -- Python integers in numpy object arrays (unweighted only);
* ``"log"`` -- float64 torch tensors on any device, which never overflow: each level is one
  sparse product ``P_h = 1 + A_h P`` (:meth:`~emergence.levels.Levels.level_matrix`), and if a count
  passes float64's range (~1e308) the same program runs again in natural-log space.

References
----------
.. [1] F. AlShinaifi, Z. Almoaigel, J. J. Li, A. Kuleib, G. A. Silva, "Quantifying
   Emergence in Neural Networks: Insights from Pruning and Training Dynamics",
   arXiv:2409.01568, 2024.
.. [2] J. J. Li, S. Pardo Guerra, K. Basu, G. A. Silva, "A Categorical Framework for
   Quantifying Emergent Effects in Network Topology", arXiv:2311.17403, 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
import torch

from emergence.cycles import levels_for
from emergence.device import resolve_device
from emergence.errors import ConfigError, GraphError
from emergence.graphdata import Graph
from emergence.levels import Levels
from emergence.result import EmergenceResult
from emergence.validate import node_count, tensor_memo, validate_attributes
from emergence.walks import EXACT_WALK_STEPS, check_max_length, walk_counts

__all__ = ["measure", "measure_layers", "measure_masks", "layered", "EXACT_EDGE_LIMIT", "METHODS"]

#: ``method="auto"`` counts exactly up to this many edges (unweighted), in log space above.
EXACT_EDGE_LIMIT = 100_000

_LN10 = math.log(10.0)
# exp() of a log-term this far below a level's shift still keeps full float64 precision.
_SAFE_SHIFT = 600.0

Method = Literal["auto", "exact", "log"]
#: Counting methods (see :func:`measure`).
METHODS = ("auto", "exact", "log")


def _exact_counts(lv: Levels, active: np.ndarray) -> np.ndarray:
    """Per-node emergent path counts C (Python ints) of inactive nodes; 0 elsewhere."""
    p = np.zeros(lv.num_nodes, dtype=object)
    c = np.zeros(lv.num_nodes, dtype=object)
    order, dst, loc = lv.node_order.numpy(), lv.dst.numpy(), lv.src_local.numpy()
    for h in reversed(range(lv.num_levels)):
        ids = order[lv.node_ptr[h] : lv.node_ptr[h + 1]]
        ea, eb = lv.edge_ptr[h], lv.edge_ptr[h + 1]
        s = np.zeros(ids.size, dtype=object)
        if eb > ea:
            np.add.at(s, loc[ea:eb], p[dst[ea:eb]])
        act = active[ids]
        p[ids] = np.where(act, s + 1, 0)
        c[ids] = np.where(act, 0, s)
    return c


def _flat_index(loc: torch.Tensor, cols: int) -> torch.Tensor:
    """Row indices ``loc`` of a ``[k, T]`` block as indices into its flattened ``[size * T]`` form."""
    if cols == 1:
        return loc
    return (loc.long().unsqueeze(1) * cols + torch.arange(cols, device=loc.device)).reshape(-1)


def _level_sums(g: torch.Tensor, loc: torch.Tensor, size: int, shift: float | None) -> torch.Tensor:
    """log(sum exp(g)) per source ``loc`` for each column of ``g [k, T]``; -inf where no finite term.

    With a scalar ``shift`` (safe when no term lies more than ~600 below it) this is one
    exp and one scatter; ``shift=None`` shifts every source by its own maximum. Columns are
    flattened so each scatter is one 1-D ``index_add_`` (fast) rather than one per row.
    """
    cols = g.shape[1]
    idx = _flat_index(loc, cols)
    flat = torch.zeros(size * cols, dtype=g.dtype, device=g.device)
    if shift is None:
        mx = torch.full((size * cols,), -math.inf, dtype=g.dtype, device=g.device)
        mx.scatter_reduce_(0, idx.long(), g.reshape(-1), "amax").clamp_(min=-1e300)
        flat.index_add_(0, idx, (g.reshape(-1) - mx.index_select(0, idx)).exp_())
        return flat.log_().add_(mx).view(size, cols)
    flat.index_add_(0, idx, (g - shift).exp_().reshape(-1))
    return flat.view(size, cols).log_().add_(shift)


def _safe_shift(g: torch.Tensor, spread: float) -> float | None:
    """One shift for all of ``g`` if no finite term lies ~600 or more below the top, else None.

    Finite terms are ``log w + log P >= -spread``, so the bound is free when the top is
    small; deep graphs with huge counts check the actual smallest finite term.
    """
    top = float(g.max())
    if top == -math.inf or top + spread <= _SAFE_SHIFT:
        return top if top > -math.inf else 0.0
    low = float(torch.where(g == -math.inf, top, g).min())
    return top if top - low <= _SAFE_SHIFT else None


def _log_counts(lv: Levels, active: torch.Tensor, logw: torch.Tensor | None) -> torch.Tensor:
    """Natural log of the emergent paths leaving each node, ``[N, T]`` for masks ``active [N, T]``.

    -inf where a node has none (and for active nodes). All T masks share one pass.
    """
    dev, cols = active.device, active.shape[1]
    logp = torch.full((lv.num_nodes, cols), -math.inf, dtype=torch.float64, device=dev)
    logc = torch.full((lv.num_nodes, cols), -math.inf, dtype=torch.float64, device=dev)
    spread = 0.0 if logw is None or logw.numel() == 0 else max(0.0, -float(logw.min()))
    w = None if logw is None else logw.unsqueeze(1)
    # Per node in level order: 0 where active (the one-node path, log 1), -inf where not.
    base = torch.zeros(lv.num_nodes, cols, dtype=torch.float64, device=dev)
    base.masked_fill_(~active.index_select(0, lv.node_order), -math.inf)
    for h in reversed(range(lv.num_levels)):
        a, b = lv.node_ptr[h], lv.node_ptr[h + 1]
        ea, eb = lv.edge_ptr[h], lv.edge_ptr[h + 1]
        ids = lv.node_order[a:b]
        if eb == ea:
            logp.index_copy_(0, ids, base[a:b])
            continue
        g = logp.index_select(0, lv.dst[ea:eb])
        if w is not None:
            g += w[ea:eb]
        s = _level_sums(g, lv.src_local[ea:eb], b - a, _safe_shift(g, spread))
        act = base[a:b]  # log P = log(1 + S) where active; C = S where inactive
        logp.index_copy_(0, ids, torch.logaddexp(s + act, act))
        logc.index_copy_(0, ids, s.masked_fill_(act == 0, -math.inf))
    return logc


def _nonzero(w: torch.Tensor) -> torch.Tensor | None:
    """``[E]`` bool: the edges of nonzero weight (None when all are)."""
    keep = w != 0
    return None if bool(keep.all()) else keep


#: Devices whose sparse CSR x dense products torch implements; others take the log-space program directly.
_CSR_DEVICES = ("cpu", "cuda")


def _linear_counts(lv: Levels, active: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor | None:
    """The emergent paths leaving each node, ``[N, T]`` float64, in linear space: one sparse product per level.

    ``w`` holds ``|w|`` per ordered edge (None: unweighted). Every P of an active node is at least 1,
    so nothing underflows; None when a count overflows float64 (the caller then counts in log space).
    """
    if active.device.type not in _CSR_DEVICES:
        return None
    dev, cols = active.device, active.shape[1]
    p = torch.zeros(lv.num_nodes, cols, dtype=torch.float64, device=dev)
    c = torch.zeros_like(p)
    act_all = active.index_select(0, lv.node_order)
    for h in reversed(range(lv.num_levels)):
        a, b = lv.node_ptr[h], lv.node_ptr[h + 1]
        ids, act = lv.node_order[a:b], act_all[a:b]
        m = lv.level_matrix(h, w)
        if m is None:  # sinks: P = 1 where active, C = 0
            p.index_copy_(0, ids, act.double())
            continue
        s = m @ p
        p.index_copy_(0, ids, (s + 1).masked_fill_(~act, 0.0))
        c.index_copy_(0, ids, s.masked_fill_(act, 0.0))
    if bool(torch.isinf(c).any()):  # an inactive node's count passed float64's range (an active P may: unused)
        return None
    return c


def _node_log_counts(lv: Levels, active: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Natural log of the emergent paths leaving each node, ``[N, T]``: in linear float64 (:func:`_linear_counts`)
    and, past its range, in log space (:func:`_log_counts`)."""
    c = _linear_counts(lv, active, w)
    if c is not None:
        return c.log_()
    return _log_counts(lv, active, None if w is None else w.log())


def _group_logsumexp(values: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group log-sum-exp of the columns of ``values [N, T]`` (-inf ignored): (group ids, [G, T])."""
    ids, inv = torch.unique(groups, return_inverse=True)
    return ids, _level_sums(values, inv, ids.numel(), None)


def measure(
    graph: Graph,
    *,
    weighted: bool = False,
    method: Method = "auto",
    device: str | torch.device | None = None,
    max_length: int | None = None,
) -> EmergenceResult:
    """Count the paths that leave an inactive node and run on through active nodes.

    Parameters
    ----------
    graph : emergence.Graph
        A directed graph with ``edge_index``, ``active`` and a stored ``num_nodes``; optional
        ``edge_weight``, ``layer`` and ``names`` (see :mod:`emergence.graph`). Cycles are allowed where they
        pass an inactive node (an emergent path never uses an edge into one); the active subgraph must be
        acyclic, or ``max_length`` given.
    weighted : bool, default False
        Weight each path by the product of ``|edge_weight|`` along it.
    method : {"auto", "exact", "log"}, default "auto"
        ``"exact"`` counts with Python integers (unweighted only; fine up to ~1e5
        edges); ``"log"`` runs the dynamic program in log space on ``device`` and never
        overflows; ``"auto"`` counts exactly when unweighted with at most
        :data:`EXACT_EDGE_LIMIT` edges, in log space otherwise.
    device : str or torch.device, optional
        Where the log-space program runs (default: the device of ``edge_index``).
    max_length : int, optional
        Count emergent *walks* of at most this many edges instead (see :mod:`emergence.walks`): finite on
        any graph, equal to E on a DAG once it reaches the longest path; ``"auto"`` counts them exactly
        while edges x max_length <= :data:`~emergence.walks.EXACT_WALK_STEPS` (unweighted).

    Returns
    -------
    EmergenceResult
        The count (``value``, ``log10``), relative emergence per edge, per-node and
        per-layer contributions and the graph's counts.

    Raises
    ------
    GraphError
        If the graph is malformed (shapes, indices, non-finite weights).
    NotADAGError
        If the *active* subgraph (the edges into active nodes) has a directed cycle: E is infinite. Cycles
        through inactive nodes do not matter (see :mod:`emergence.cycles`); the message names an active
        cycle and sums up the strongly connected components of active nodes.
    ConfigError
        For an unknown method, ``method="exact"`` with ``weighted=True``, a ``max_length`` below 1, or an
        unusable device.
    GraphError
        Also for ``weighted=True`` on a graph without ``edge_weight``.

    Examples
    --------
    >>> from emergence.graph import graph
    >>> g = graph([[0, 1, 1], [1, 2, 3]], 4, [False, True, True, True])
    >>> r = measure(g)
    >>> r.value, r.exact, r.relative
    (3, True, 1.0)
    >>> round(measure(g, method="log").value, 9)
    3.0

    References
    ----------
    .. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024, section "Methods".
    """
    active = getattr(graph, "active", None)
    masks = active.unsqueeze(0) if isinstance(active, torch.Tensor) and active.dim() == 1 else active
    if max_length is not None:
        k = check_max_length(max_length)
        n, dev, w = _check(graph, masks, weighted, method, device)
        edges = int(graph.edge_index.shape[1])
        exact = method == "exact" or (method == "auto" and not weighted and edges * k <= EXACT_WALK_STEPS)
        return walk_counts(graph, cast(torch.Tensor, masks), k, weighted=weighted, exact=exact, device=dev)[0]
    return measure_masks(graph, masks, weighted=weighted, method=method, device=device)[0]


def _check(graph: Graph, masks: Any, weighted: bool, method: str, device: str | torch.device | None
           ) -> tuple[int, torch.device, torch.Tensor | None]:
    """Check a count's arguments; (nodes, device, edge weights or None)."""
    if method not in METHODS:
        raise ConfigError(f"method must be 'auto', 'exact' or 'log', got {method!r}")
    n = node_count(graph)
    validate_attributes(graph, n)
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 2 or masks.shape[1] != n:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise GraphError(f"masks must be a bool tensor [T, {n}], got {shape}")
    dev = resolve_device(device, graph.edge_index.device)
    w = getattr(graph, "edge_weight", None)
    if weighted and w is None:
        raise GraphError("weighted=True needs edge weights, but the graph has no edge_weight")
    if method == "exact" and weighted:
        raise ConfigError("method='exact' counts unweighted paths only; use method='log' with weighted=True")
    return n, dev, w


def _edges(graph: Graph) -> int:
    """Edges of nonzero weight (all of them, also those a cyclic graph's count leaves out)."""
    w = getattr(graph, "edge_weight", None)
    keep = None if w is None else tensor_memo(w, "keep", _nonzero)
    return int(graph.edge_index.shape[1]) if keep is None else int(keep.sum())


class _MaskByMask(Exception):
    """The masks' active subgraphs together have a cycle: count each mask on its own."""


def _prepare(graph: Graph, masks: Any, weighted: bool, method: str, device: str | torch.device | None
             ) -> tuple[int, Levels, torch.device, torch.Tensor | None, bool]:
    """Check a count's arguments; (nodes, levels, device, ordered ``|w|`` on it or None, count exactly?)."""
    n, dev, w = _check(graph, masks, weighted, method, device)
    keep = None if w is None else tensor_memo(w, "keep", _nonzero)
    lv = levels_for(graph, n, keep, masks)  # a cyclic graph: the levels of its active subgraph
    if lv is None:
        raise _MaskByMask
    exact = method == "exact" or (method == "auto" and not weighted and lv.num_edges <= EXACT_EDGE_LIMIT)
    absw = None
    if weighted and w is not None and not exact:
        absw = w.to(dev, torch.float64).index_select(0, lv.to(dev).edge_order).abs_()
    return n, lv, dev, absw, exact


def measure_masks(
    graph: Graph,
    masks: torch.Tensor | None,
    *,
    weighted: bool = False,
    method: Method = "auto",
    device: str | torch.device | None = None,
) -> list[EmergenceResult]:
    """Emergence of one graph under several activity masks, counted in one pass.

    Used for many thresholds at once: the log-space program runs with one column per
    mask, so T masks cost far less than T calls to :func:`measure`.

    Parameters
    ----------
    graph : emergence.Graph
        The graph (its own ``active`` is ignored).
    masks : torch.Tensor
        ``[T, N]`` bool, one activity mask per row.
    weighted, method, device
        As in :func:`measure`.

    Returns
    -------
    list of EmergenceResult
        One per mask, in order.

    Raises
    ------
    GraphError, NotADAGError, ConfigError
        As :func:`measure`; also if ``masks`` is not ``[T, N]`` bool.

    Examples
    --------
    >>> import torch
    >>> from emergence.graph import graph
    >>> g = graph([[0, 1], [1, 2]], 3, [False, True, True])
    >>> [r.value for r in measure_masks(g, torch.tensor([[False, True, True], [False, False, True]]))]
    [2, 1]
    """
    try:
        n, lv, dev, absw, exact = _prepare(graph, masks, weighted, method, device)
    except _MaskByMask:
        return [r for m in cast(torch.Tensor, masks)
                for r in measure_masks(graph, m.unsqueeze(0), weighted=weighted, method=method, device=device)]
    masks = cast(torch.Tensor, masks)  # a [T, N] bool tensor: _prepare checked it
    layer = getattr(graph, "layer", None)
    common = dict(weighted=bool(weighted), num_nodes=n, num_edges=_edges(graph), names=getattr(graph, "names", None))
    if exact:
        return [EmergenceResult.from_counts(_exact_counts(lv, m.cpu().numpy()), layer=layer,
                                            num_active=int(m.sum()), **common) for m in masks]
    node_log = _node_log_counts(lv.to(dev), masks.to(dev).t(), absw)  # [N, T]
    return _log_results(node_log, masks, layer, common)


def _log_results(node_log: torch.Tensor, masks: torch.Tensor, layer: torch.Tensor | None,
                 common: dict[str, Any]) -> list[EmergenceResult]:
    """One result per mask from the natural-log path counts per node (``[N, T]``): totals, per layer, per node."""
    totals = torch.logsumexp(node_log, 0).tolist() if node_log.shape[0] else [-math.inf] * masks.shape[0]
    layer_sums = _group_logsumexp(node_log, layer.to(node_log.device)) if layer is not None else None
    node_log10 = (node_log / _LN10).cpu()
    out = []
    for t, m in enumerate(masks):
        layer_log10 = None
        if layer_sums is not None:
            ids, sums = layer_sums
            layer_log10 = {int(i): (s / _LN10 if math.isfinite(s) else None)
                           for i, s in zip(ids.tolist(), sums[:, t].tolist(), strict=True)}
        out.append(EmergenceResult.from_log10(totals[t] / _LN10, node_log10[:, t].contiguous(),
                                              layer_log10=layer_log10, num_active=int(m.sum()), **common))
    return out


def measure_layers(
    graph: Graph,
    masks: torch.Tensor,
    *,
    weighted: bool = False,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, int]:
    """``log10`` of the emergent paths that start in each layer, under each mask, in one float64 pass.

    What a training-loop monitor needs from a count, without per-node results: E is the sum over the
    layers, a layer's share its part of that sum. Counted like ``method="log"`` of :func:`measure_masks`.

    Parameters
    ----------
    graph : emergence.Graph
        With ``layer`` (``[N]`` layer index of each node).
    masks : torch.Tensor
        ``[T, N]`` bool.
    weighted, device
        As in :func:`measure`.

    Returns
    -------
    (torch.Tensor, int)
        ``[T, L]`` float64 on the CPU (``-inf`` where no path starts in a layer; ``L`` is one more than the
        largest layer index), and the number of structural edges (nonzero weight).

    Raises
    ------
    GraphError, NotADAGError, ConfigError
        As :func:`measure_masks`; also for a graph without ``layer``.

    Examples
    --------
    >>> import torch
    >>> from emergence.graph import graph
    >>> g = graph([[0, 1], [2, 2]], 3, [False, False, True], layer=[0, 1, 1])
    >>> per_layer, edges = measure_layers(g, g.active.unsqueeze(0))
    >>> (10 ** per_layer).tolist(), edges
    ([[1.0, 1.0]], 2)
    """
    layer = getattr(graph, "layer", None)
    if not isinstance(layer, torch.Tensor):
        raise GraphError("measure_layers needs the graph's layer index (g.layer = LongTensor [N])")
    try:
        n, lv, dev, absw, _ = _prepare(graph, masks, weighted, "log", device)
    except _MaskByMask:
        parts = [measure_layers(graph, m.unsqueeze(0), weighted=weighted, device=device) for m in masks]
        return torch.cat([p[0] for p in parts]), parts[0][1]
    size = int(layer.max()) + 1 if n else 0
    lvd, active, lay = lv.to(dev), masks.to(dev).t(), layer.to(dev)
    c = _linear_counts(lvd, active, absw)
    if c is not None:
        sums = torch.zeros(size, c.shape[1], dtype=torch.float64, device=dev).index_add_(0, lay, c).log10_()
    else:
        node_log = _log_counts(lvd, active, None if absw is None else absw.log())
        sums = _level_sums(node_log, lay, size, None) / _LN10
    return sums.t().cpu(), _edges(graph)


def layered(widths: Sequence[int], active_counts: Sequence[int]) -> int:
    """Closed-form emergence of a fully connected layered network (exact integer).

    With widths n_1..n_L and a_l active units in layer l:
    ``P_L = 1``, ``P_l = 1 + a_{l+1} P_{l+1}`` and
    ``E = sum_{l<L} (n_l - a_l) * a_{l+1} * P_{l+1}``.

    Parameters
    ----------
    widths : sequence of int
        Units per layer, input first.
    active_counts : sequence of int
        Active units per layer, ``0 <= a_l <= n_l``.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        If the sequences differ in length or a count is out of range.

    Examples
    --------
    >>> layered([2, 3, 1], [1, 2, 1])
    5

    References
    ----------
    .. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
    """
    if len(widths) != len(active_counts):
        raise ConfigError(f"got {len(widths)} widths but {len(active_counts)} active counts")
    for i, (n, a) in enumerate(zip(widths, active_counts, strict=False)):
        if int(n) != n or int(a) != a or n < 0 or not 0 <= a <= n:
            raise ConfigError(f"layer {i}: need integers 0 <= active <= width, got width {n}, active {a}")
    total, p_next = 0, 1
    for k in range(len(widths) - 2, -1, -1):
        a_next = int(active_counts[k + 1])
        total += (int(widths[k]) - int(active_counts[k])) * a_next * p_next
        p_next = 1 + a_next * p_next
    return total
