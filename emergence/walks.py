"""Emergent walks of bounded length: finite on any graph, cycles included.

``measure(graph, max_length=k)`` counts the walks ``x -> s1 -> ... -> sj`` with ``x`` inactive, every
``si`` active and ``1 <= j <= k`` edges, weighted by the product of ``omega`` along them:

    P_1(s) = 1 for active s,   P_m(s) = 1 + sum_{s -> t, t active} omega(s, t) P_{m-1}(t),
    E_{<=k} = sum_{x inactive -> s active} omega(x, s) P_k(s).

On a DAG these walks are paths, and ``E_{<=k}`` equals E once ``k`` reaches the longest path. Where the
active nodes form cycles they are *walks*: they may pass a node more than once (counting simple paths
instead is #P-hard [2]). Each step is one product over the edges into active nodes, so a count costs
``k`` passes over them.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (emergence on DAGs).
.. [2] L. G. Valiant, "The complexity of enumeration and reliability problems", SIAM J. Comput. 8(3), 1979.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from emergence.errors import ConfigError
from emergence.result import EmergenceResult

__all__ = ["EXACT_WALK_STEPS", "check_max_length", "walk_counts"]

#: ``method="auto"`` counts exactly while edges x max_length stays at or below this (unweighted).
EXACT_WALK_STEPS = 2_000_000

_LN10 = math.log(10.0)


def check_max_length(max_length: object) -> int:
    """``max_length`` if it is an integer >= 1, else :class:`~emergence.errors.ConfigError`.

    Examples
    --------
    >>> check_max_length(3)
    3
    """
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ConfigError(f"max_length must be an integer >= 1 (edges per walk), got {max_length!r}")
    return int(max_length)


def _exact(src: np.ndarray, dst: np.ndarray, active: np.ndarray, n: int, k: int) -> np.ndarray:
    """Per-node walk counts (Python ints) of inactive nodes, 0 elsewhere."""
    inner = active[src] & active[dst]
    first = ~active[src] & active[dst]
    si, di = src[inner], dst[inner]
    p = active.astype(object)
    for _ in range(k - 1):
        s = np.zeros(n, dtype=object)
        np.add.at(s, si, p[di])
        p = np.where(active, s + 1, 0)
    c = np.zeros(n, dtype=object)
    np.add.at(c, src[first], p[dst[first]])
    return c


def _float(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor, active: torch.Tensor, n: int, k: int
           ) -> torch.Tensor:
    """Natural log of each node's weighted walk count, ``[N]`` float64 (-inf where none): linear float64 with
    a per-step rescaling, so that nothing overflows however long the walks."""
    inner = active[src] & active[dst]
    first = ~active[src] & active[dst]
    dev = active.device
    a = torch.sparse_coo_tensor(torch.stack([src[inner], dst[inner]]), w[inner], (n, n),
                                check_invariants=False).coalesce()
    act = active.double()
    p, shift = act.clone(), 0.0  # P_m = p * exp(shift)
    for _ in range(k - 1):
        q = torch.sparse.mm(a, p.unsqueeze(1)).squeeze(1) + math.exp(-shift) if shift < 700 else \
            torch.sparse.mm(a, p.unsqueeze(1)).squeeze(1)
        q = q * act
        top = float(q.max()) if q.numel() else 0.0
        if top > 0:
            p, shift = q / top, shift + math.log(top)
        else:
            p = q
    c = torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, src[first], w[first] * p[dst[first]])
    return c.log() + shift


def walk_counts(graph: object, masks: torch.Tensor, k: int, *, weighted: bool, exact: bool,
                device: torch.device) -> list[EmergenceResult]:
    """Emergent walks of at most ``k`` edges under each row of ``masks`` (``[T, N]`` bool), validated before.

    Returns
    -------
    list of EmergenceResult
        Exact (``exact=True``) or float64 results, one per mask; ``num_edges`` is the number of edges of
        nonzero weight.
    """
    ei = graph.edge_index  # type: ignore[attr-defined]
    n = int(masks.shape[1])
    w = getattr(graph, "edge_weight", None)
    keep = torch.ones(ei.shape[1], dtype=torch.bool) if w is None else (w != 0).cpu()
    src, dst = ei[0].cpu()[keep], ei[1].cpu()[keep]
    layer = getattr(graph, "layer", None)
    common = dict(weighted=bool(weighted), num_nodes=n, num_edges=int(src.numel()), names=getattr(graph, "names", None))
    out = []
    for m in masks:
        if exact:
            counts = _exact(src.numpy(), dst.numpy(), m.cpu().numpy(), n, k)
            out.append(EmergenceResult.from_counts(counts, layer=layer, num_active=int(m.sum()), **common))
            continue
        ww = torch.ones(src.numel(), dtype=torch.float64) if not weighted or w is None \
            else w.cpu()[keep].double().abs()
        node_log = _float(src.to(device), dst.to(device), ww.to(device), m.to(device), n, k).cpu()
        total = float(torch.logsumexp(node_log, 0)) if n else -math.inf
        layer_log10 = None
        if layer is not None:
            ids, inv = torch.unique(layer.cpu(), return_inverse=True)
            sums = torch.full((ids.numel(),), -math.inf, dtype=torch.float64)
            mx = sums.scatter_reduce(0, inv, node_log, "amax")
            safe = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
            s = torch.zeros_like(mx).index_add_(0, inv, (node_log - safe[inv]).exp())
            per = (s.log() + safe) / _LN10
            layer_log10 = {int(i): (float(v) if math.isfinite(v) else None) for i, v in zip(ids.tolist(),
                                                                                          per.tolist(), strict=True)}
        out.append(EmergenceResult.from_log10(total / _LN10, node_log / _LN10, layer_log10=layer_log10,
                                              num_active=int(m.sum()), **common))
    return out
