"""``torch_geometric.data.Data`` to and from the toolkit's graph.

The toolkit's own :class:`~emergence.Graph` keeps the attributes a ``Data`` keeps (``edge_index``,
``num_nodes``, ``active``, ``edge_weight``, ``layer``, ``names``), and every function also reads a
``Data`` directly; these two convert when a torch_geometric pipeline needs the other type.
"""

from __future__ import annotations

from typing import Any

from emergence.errors import GraphError
from emergence.graphdata import Graph, is_graph
from emergence.validate import node_count, validate

__all__ = ["from_pyg", "to_pyg"]


def from_pyg(data: Any) -> Graph:
    """Convert a ``torch_geometric.data.Data`` into the toolkit's graph (tensors are shared, not copied).

    Parameters
    ----------
    data : torch_geometric.data.Data
        A graph with ``edge_index``, ``active`` and a stored ``num_nodes`` (or an ``active`` mask
        that gives it); every other attribute is carried over.

    Returns
    -------
    emergence.Graph
        The validated graph.

    Raises
    ------
    GraphError
        If ``data`` is not a ``Data`` or breaks the graph contract (see :func:`emergence.validate`).

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> d = Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2, active=torch.tensor([False, True]))
    >>> from_pyg(d)
    Graph(edge_index=[2, 1], num_nodes=2, active=[2])
    """
    if isinstance(data, Graph) or not is_graph(data):
        raise GraphError(f"from_pyg expects a torch_geometric.data.Data, got {type(data).__name__}")
    n = node_count(data)
    attrs = {k: v for k, v in data.to_dict().items() if k != "num_nodes"}
    return validate(Graph(num_nodes=n, **attrs))


def to_pyg(graph: Graph) -> Any:
    """Convert the toolkit's graph into a ``torch_geometric.data.Data`` (tensors are shared, not copied).

    Parameters
    ----------
    graph : emergence.Graph
        A graph (it is validated first).

    Returns
    -------
    torch_geometric.data.Data
        With the same attributes and a stored ``num_nodes``.

    Raises
    ------
    GraphError
        If the graph breaks the contract.
    ImportError
        If torch_geometric is not installed (``pip install torch-geometric``).

    Examples
    --------
    >>> from emergence import graph
    >>> d = to_pyg(graph([[0], [1]], 2, [False, True]))
    >>> type(d).__name__, d.num_nodes, d.active.tolist()
    ('Data', 2, [False, True])
    """
    from torch_geometric.data import Data

    validate(graph)
    n = node_count(graph)
    attrs = {k: v for k, v in graph if k != "num_nodes"}
    return Data(num_nodes=n, **attrs)
