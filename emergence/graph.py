"""The graph type of the toolkit and its validation.

A network is a :class:`torch_geometric.data.Data` with

* ``edge_index`` -- ``LongTensor [2, E]``, edge ``e`` runs ``edge_index[0, e] -> edge_index[1, e]``;
* ``num_nodes`` -- stored explicitly, so isolated nodes never vanish;
* ``active`` -- ``BoolTensor [N]``, the set H of active nodes;
* ``edge_weight`` -- optional ``FloatTensor [E]``; an edge whose weight is exactly 0 is not an edge;
* ``layer`` -- optional ``LongTensor [N]``, a group id per node for per-layer reports;
* ``names`` -- optional list of N strings.

The constructors below build such graphs from edge lists, adjacency matrices and
the weight matrices of layered networks; :func:`validate` checks a graph that came
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
from torch_geometric.data import Data

from emergence.errors import GraphError

__all__ = [
    "graph",
    "from_edges",
    "from_adjacency",
    "from_layers",
    "validate",
    "validate_attributes",
    "check_edge_index",
    "node_count",
]

ArrayLike = Any  # torch.Tensor, numpy array or nested sequence


def _as_tensor(value: ArrayLike, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        out = value.detach()
    else:
        try:
            out = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise GraphError(f"{name} could not be read as an array: {exc}") from None
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
) -> Data:
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
    torch_geometric.data.Data
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
    data = Data(edge_index=ei.long(), num_nodes=int(num_nodes))
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
) -> Data:
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
    torch_geometric.data.Data

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
    if e.numel() == 0:
        e = e.reshape(0, 2)
    if e.dim() != 2 or e.shape[1] != 2:
        raise GraphError(f"edges must have shape [E, 2], got {tuple(e.shape)}")
    return graph(e.t(), num_nodes, active, edge_weight=weights, layer=layer, names=names)


def from_adjacency(
    adjacency: ArrayLike, active: ArrayLike, *, names: Sequence[str] | None = None
) -> Data:
    """Build a graph from a square adjacency matrix, ``A[i, j] != 0`` meaning an edge i -> j.

    Parameters
    ----------
    adjacency : torch.Tensor, numpy array or scipy sparse matrix, shape [N, N]
        Entry ``A[i, j]`` is the weight of edge i -> j; zeros are absent edges.
    active : array-like of bool, shape [N]
        Which nodes are active.
    names : sequence of str, optional
        A name per node.

    Returns
    -------
    torch_geometric.data.Data
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
) -> Data:
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
    torch_geometric.data.Data
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


def node_count(g: Data) -> int:
    """Return the number of nodes of a graph without guessing from ``edge_index``.

    Parameters
    ----------
    g : torch_geometric.data.Data
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
    >>> node_count(graph([[0], [1]], 5, [0, 1, 0, 0, 0]))
    5
    """
    if not isinstance(g, Data):
        raise GraphError(f"expected a torch_geometric.data.Data graph, got {type(g).__name__}")
    if "num_nodes" in g._store:
        return int(g._store["num_nodes"])
    active = getattr(g, "active", None)
    if isinstance(active, torch.Tensor):
        return int(active.numel())
    raise GraphError("graph stores neither num_nodes nor an active mask; set g.num_nodes = N")


def node_label(g: Data | None, i: int) -> str:
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


def validate_attributes(g: Data, n: int) -> None:
    """Check the node and edge attributes of a graph with ``n`` nodes (not ``edge_index`` ranges).

    This is the part of :func:`validate` that must run on every measurement (masks
    and weights change between measurements; the structure is checked once per
    structure, when its levels are computed).

    Parameters
    ----------
    g : torch_geometric.data.Data
        The graph.
    n : int
        Its number of nodes.

    Raises
    ------
    GraphError
        With the first problem found, naming the bad value.

    Examples
    --------
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
        bad = ~torch.isfinite(w)
        if bool(bad.any()):
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


def validate(g: Data) -> Data:
    """Check that a graph satisfies the toolkit's contract, and return it.

    Checks shapes and dtypes of ``edge_index``, ``active``, ``edge_weight``,
    ``layer`` and ``names``, that every index lies in ``[0, N)`` and that every
    weight is finite. Cycles are found when the graph is measured (see
    :func:`emergence.levels.topological_levels`), where the order is computed anyway.

    Parameters
    ----------
    g : torch_geometric.data.Data
        The graph to check.

    Returns
    -------
    torch_geometric.data.Data
        ``g`` itself.

    Raises
    ------
    GraphError
        With the first problem found, naming the bad value.

    Examples
    --------
    >>> g = graph([[0], [1]], 2, [True, False])
    >>> validate(g) is g
    True
    """
    n = node_count(g)
    if n < 0:
        raise GraphError(f"num_nodes must be >= 0, got {n}")
    check_edge_index(getattr(g, "edge_index", None), n)
    validate_attributes(g, n)
    return g
