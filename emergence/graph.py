"""The graph type of the toolkit and its validation.

A network is a :class:`~emergence.Graph` with

* ``edge_index`` -- ``LongTensor [2, E]``, edge ``e`` runs ``edge_index[0, e] -> edge_index[1, e]``;
* ``num_nodes`` -- stored explicitly, so isolated nodes never vanish;
* ``active`` -- ``BoolTensor [N]``, the set H of active nodes;
* ``edge_weight`` -- optional ``FloatTensor [E]``; an edge whose weight is exactly 0 is not an edge;
* ``layer`` -- optional ``LongTensor [N]``, a group id per node for per-layer reports;
* ``names`` -- optional list of N strings.

The constructors below build such graphs from edge lists, adjacency matrices and
the weight matrices of layered networks; :func:`emergence.validate.validate` checks a graph that came
from elsewhere.

References
----------
.. [1] F. AlShinaifi et al., "Quantifying Emergence in Neural Networks: Insights from
   Pruning and Training Dynamics", arXiv:2409.01568, 2024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emergence.errors import GraphError
from emergence.graphdata import Graph
from emergence.validate import validate

__all__ = [
    "graph",
    "from_edges",
    "from_adjacency",
    "from_layers",
]

ArrayLike = Any  # torch.Tensor, numpy array or nested sequence


def _as_tensor(value: ArrayLike, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        out = value.detach()
    else:
        try:
            out = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise GraphError(f"{name} could not be read as an array: {exc}") from exc
    return out if dtype is None else out.to(dtype)


def _as_mask(active: ArrayLike, n: int, name: str = "active") -> torch.Tensor:
    mask = _as_tensor(active, name)
    if mask.numel() == 0:
        mask = mask.bool()
    if mask.dtype != torch.bool:
        if mask.dtype.is_complex:
            raise GraphError(f"{name} must be booleans or 0/1 numbers, got dtype {mask.dtype}")
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            i = int(bad.flatten().nonzero()[0, 0])
            raise GraphError(f"{name}[{i}] = {mask.flatten()[i].item()} is not 0 or 1; pass a boolean mask")
        mask = mask != 0
    if mask.dim() != 1 or mask.numel() != n:
        raise GraphError(
            f"{name} has shape {tuple(mask.shape)} but the graph has {n} nodes; pass one flag per node"
        )
    return mask


def graph(
    edge_index: ArrayLike,
    num_nodes: int,
    active: ArrayLike,
    *,
    edge_weight: ArrayLike | None = None,
    layer: ArrayLike | None = None,
    names: Sequence[str] | None = None,
) -> Graph:
    """Build and validate a graph from an ``edge_index`` array.

    Parameters
    ----------
    edge_index : array-like of int, shape [2, E]
        Sources in row 0, targets in row 1.
    num_nodes : int
        Number of nodes N (isolated nodes included).
    active : array-like of bool or 0/1, shape [N]
        Which nodes are active.
    edge_weight : array-like of float, shape [E], optional
        Edge weights; an edge of weight exactly 0 carries no paths.
    layer : array-like of int, shape [N], optional
        Group id per node, used for per-layer totals.
    names : sequence of str, optional
        A name per node, used in reports.

    Returns
    -------
    emergence.Graph
        The validated graph.

    Raises
    ------
    GraphError
        If shapes, dtypes, indices, weights or names are inconsistent.

    Examples
    --------
    >>> g = graph([[0, 1], [1, 2]], 3, [False, True, True])
    >>> g.num_nodes, g.num_edges
    (3, 2)
    """
    ei = _as_tensor(edge_index, "edge_index")
    if ei.numel() == 0:
        ei = ei.reshape(2, 0)
    if ei.dtype.is_floating_point or ei.dtype == torch.bool:
        raise GraphError(f"edge_index must hold integers, got dtype {ei.dtype}")
    data = Graph(edge_index=ei.long(), num_nodes=int(num_nodes))
    data.active = _as_mask(active, int(num_nodes))
    if edge_weight is not None:
        data.edge_weight = _as_tensor(edge_weight, "edge_weight")
        if not data.edge_weight.dtype.is_floating_point:
            data.edge_weight = data.edge_weight.double()
    if layer is not None:
        data.layer = _as_tensor(layer, "layer")
        if data.layer.numel() == 0:
            data.layer = data.layer.long()
    if names is not None:
        data.names = [str(s) for s in names]
    return validate(data)


def from_edges(
    edges: ArrayLike,
    num_nodes: int,
    active: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    layer: ArrayLike | None = None,
    names: Sequence[str] | None = None,
) -> Graph:
    """Build a graph from a list of ``(source, target)`` pairs.

    Parameters
    ----------
    edges : array-like of int, shape [E, 2]
        One ``(source, target)`` pair per edge.
    num_nodes, active, layer, names
        As in :func:`graph`.
    weights : array-like of float, shape [E], optional
        One weight per edge.

    Returns
    -------
    emergence.Graph

    Raises
    ------
    GraphError
        If the pairs are not of shape [E, 2] or any check of :func:`graph` fails.

    Examples
    --------
    >>> g = from_edges([(0, 2), (1, 2)], 3, [False, False, True])
    >>> g.edge_index.tolist()
    [[0, 1], [2, 2]]
    """
    e = _as_tensor(edges, "edges")
    if e.numel() == 0:  # no edges at all (an empty list reads as floats)
        e = e.reshape(0, 2).long()
    if e.dim() != 2 or e.shape[1] != 2:
        raise GraphError(f"edges must have shape [E, 2], got {tuple(e.shape)}")
    return graph(e.t(), num_nodes, active, edge_weight=weights, layer=layer, names=names)


def from_adjacency(
    adjacency: ArrayLike, active: ArrayLike, *, names: Sequence[str] | None = None
) -> Graph:
    """Build a graph from a square adjacency matrix, ``A[i, j] != 0`` meaning an edge i -> j.

    Parameters
    ----------
    adjacency : torch.Tensor, numpy array or scipy sparse matrix, shape [N, N]
        Entry ``A[i, j]`` is the weight of edge i -> j; zeros are absent edges. A sparse matrix's repeated
        ``(i, j)`` entries (a COO matrix may hold them) are summed into one edge, as scipy itself reads them.
    active : array-like of bool, shape [N]
        Which nodes are active.
    names : sequence of str, optional
        A name per node.

    Returns
    -------
    emergence.Graph
        A graph with ``edge_weight`` set to the nonzero entries.

    Raises
    ------
    GraphError
        If the matrix is not square or the mask does not fit.

    Examples
    --------
    >>> import numpy as np
    >>> g = from_adjacency(np.array([[0, 2.0], [0, 0]]), [False, True])
    >>> g.edge_index.tolist(), g.edge_weight.tolist()
    ([[0], [1]], [2.0])
    """
    import scipy.sparse as sp

    if sp.issparse(adjacency):
        coo = sp.coo_array(adjacency)
        coo.sum_duplicates()  # repeated (row, col) entries are one entry, their values summed, as scipy reads them
        shape = coo.shape
        keep = coo.data != 0
        rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep]
        ei = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
        w = torch.from_numpy(np.asarray(vals, dtype=np.float64))
    else:
        a = _as_tensor(adjacency, "adjacency")
        shape = tuple(a.shape)
        if a.dim() != 2:
            raise GraphError(f"adjacency must be a square matrix, got shape {shape}")
        ei = (a != 0).nonzero().t()
        w = a[ei[0], ei[1]].double()
    if len(shape) != 2 or shape[0] != shape[1]:
        raise GraphError(f"adjacency must be a square matrix, got shape {tuple(shape)}")
    return graph(ei, shape[0], active, edge_weight=w, names=names)


def from_layers(
    weights: Sequence[ArrayLike],
    active: Sequence[ArrayLike],
    *,
    layer_names: Sequence[str] | None = None,
) -> Graph:
    """Build the graph of a layered network from its weight matrices.

    Layer 0 is the input; ``weights[l]`` has shape ``[n_{l+1}, n_l]`` (PyTorch's
    ``nn.Linear.weight`` convention), and its nonzero entry ``W[j, i]`` is the edge
    from unit i of layer l to unit j of layer l + 1.

    Parameters
    ----------
    weights : sequence of array-like, each of shape [n_{l+1}, n_l]
        The weight matrices, input side first.
    active : sequence of array-like of bool
        One mask per layer (``len(weights) + 1`` of them), input layer first.
    layer_names : sequence of str, optional
        A name per layer, used to name nodes ``"<layer>:<unit>"`` (default ``"L<l>"``).

    Returns
    -------
    emergence.Graph
        The graph, with ``layer`` set to the layer index of every node.

    Raises
    ------
    GraphError
        If consecutive shapes do not chain or the masks do not fit.

    Examples
    --------
    >>> import torch
    >>> g = from_layers([torch.ones(3, 2), torch.ones(1, 3)],
    ...                 [[False, True], [True, True, False], [True]])
    >>> g.num_nodes, g.num_edges, g.layer.tolist()
    (6, 9, [0, 0, 1, 1, 1, 2])
    """
    mats = [_as_tensor(w, f"weights[{i}]") for i, w in enumerate(weights)]
    if not mats:
        raise GraphError("from_layers needs at least one weight matrix")
    widths = [int(mats[0].shape[1])] if mats[0].dim() == 2 else []
    for i, w in enumerate(mats):
        if w.dim() != 2 or int(w.shape[1]) != widths[-1]:
            raise GraphError(
                f"weights[{i}] has shape {tuple(w.shape)} but layer {i} has {widths[-1]} units; "
                "each matrix must be [out, in] with in = previous out"
            )
        widths.append(int(w.shape[0]))
    if len(active) != len(widths):
        raise GraphError(f"got {len(active)} activity masks for {len(widths)} layers; pass one per layer")
    offsets = np.concatenate([[0], np.cumsum(widths)])
    blocks, wts = [], []
    for i, w in enumerate(mats):
        nz = (w != 0).nonzero()  # rows j (out), cols k (in)
        blocks.append(torch.stack([nz[:, 1] + int(offsets[i]), nz[:, 0] + int(offsets[i + 1])]))
        wts.append(w[nz[:, 0], nz[:, 1]].double())
    masks = [_as_mask(a, widths[i], f"active[{i}]") for i, a in enumerate(active)]
    lnames = list(layer_names) if layer_names is not None else [f"L{i}" for i in range(len(widths))]
    if len(lnames) != len(widths):
        raise GraphError(f"got {len(lnames)} layer names for {len(widths)} layers")
    names = [f"{lnames[i]}:{u}" for i, n in enumerate(widths) for u in range(n)]
    layer = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
    return graph(
        torch.cat(blocks, dim=1),
        int(offsets[-1]),
        torch.cat(masks),
        edge_weight=torch.cat(wts),
        layer=layer,
        names=names,
    )
