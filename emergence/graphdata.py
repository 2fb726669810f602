"""The toolkit's graph type: a directed graph as tensors, with named node and edge attributes.

:class:`Graph` holds what a count needs -- ``edge_index`` [2, E], ``num_nodes``, the ``active``
mask [N] and, optionally, ``edge_weight`` [E], ``layer`` [N] and ``names`` -- as plain
attributes, the way a ``torch_geometric.data.Data`` does, without importing torch_geometric
(whose import costs more than torch's own). Every function of the toolkit also accepts a
``torch_geometric.data.Data`` with the same attributes, unchanged; ``emergence.adapters.to_pyg`` /
``from_pyg`` convert between the two.

Examples
--------
>>> import torch
>>> g = Graph(edge_index=torch.tensor([[0], [1]]), num_nodes=2, active=torch.tensor([False, True]))
>>> g
Graph(edge_index=[2, 1], num_nodes=2, active=[2])
>>> g.num_edges, "active" in g, g.keys()
(1, True, ['edge_index', 'num_nodes', 'active'])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from emergence.errors import GraphError

__all__ = ["Graph", "is_graph"]


class Graph:
    """A directed graph: ``edge_index`` [2, E] (sources in row 0), ``num_nodes`` and named attributes.

    Attributes are set and read as plain attributes (``g.active = mask``); a name of one of
    its methods (``keys``, ``to``, ...) is refused with a :class:`~emergence.errors.GraphError`; a
    missing one raises :class:`AttributeError`, so ``getattr(g, "edge_weight", None)`` tells whether it is there.
    ``num_nodes`` is the stored count, or the length of ``active`` when none is stored, or ``None``.
    The constructors in :mod:`emergence.graph` build and validate one; :func:`emergence.validate`
    checks one that came from elsewhere.

    Parameters
    ----------
    edge_index : torch.Tensor, optional
        int64 tensor of shape [2, E].
    num_nodes : int, optional
        Number of nodes N (isolated nodes included).
    **attrs
        Any further attributes (``active``, ``edge_weight``, ``layer``, ``names``, ...).

    Examples
    --------
    >>> import torch
    >>> g = Graph(num_nodes=3)
    >>> g.edge_index = torch.tensor([[0, 1], [1, 2]])
    >>> g.active = torch.tensor([False, True, True])
    >>> g.to_dict()["num_nodes"], Graph.from_dict(g.to_dict()).num_edges
    (3, 2)
    """

    # The attributes the toolkit reads (set per instance; a graph may lack any but edge_index).
    edge_index: torch.Tensor
    active: torch.Tensor
    edge_weight: torch.Tensor
    layer: torch.Tensor
    names: list[str]

    def __init__(self, edge_index: torch.Tensor | None = None, num_nodes: int | None = None, **attrs: Any) -> None:
        if edge_index is not None:
            self.edge_index = edge_index
        if num_nodes is not None:
            self.num_nodes = int(num_nodes)
        for key, value in attrs.items():
            setattr(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        if key != "num_nodes" and (key.startswith("_") or hasattr(type(self), key)):
            raise GraphError(f"{key!r} cannot be a graph attribute (it names a method of Graph or is private); "
                             "choose another name")
        super().__setattr__(key, value)

    def __getattr__(self, key: str) -> Any:  # only called for attributes that are not set
        raise AttributeError(f"the graph has no attribute {key!r} (it has {', '.join(self.keys()) or 'none'})")

    @property
    def num_nodes(self) -> int | None:
        """The stored node count, else the length of ``active``, else ``None``."""
        stored = self.__dict__.get("_num_nodes")
        if stored is not None:
            return int(stored)
        active = self.__dict__.get("active")
        return int(active.numel()) if isinstance(active, torch.Tensor) else None

    @num_nodes.setter
    def num_nodes(self, value: int | None) -> None:
        self.__dict__["_num_nodes"] = None if value is None else int(value)

    @property
    def num_edges(self) -> int:
        """The number of edges (columns of ``edge_index``; 0 without one)."""
        ei = self.__dict__.get("edge_index")
        return int(ei.shape[1]) if isinstance(ei, torch.Tensor) and ei.dim() == 2 else 0

    def keys(self) -> list[str]:
        """The names of the attributes that are set, in the order they were set."""
        return [("num_nodes" if k == "_num_nodes" else k) for k, v in self.__dict__.items()
                if not (k == "_num_nodes" and v is None)]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for key in self.keys():
            yield key, getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The attributes as a plain dict (what ``torch.save`` writes for a ``.pt`` graph file)."""
        return dict(iter(self))

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> Graph:
        """A graph from a dict of attributes (the inverse of :meth:`to_dict`)."""
        graph = cls()
        for key, value in mapping.items():
            setattr(graph, key, value)
        return graph

    def to(self, device: torch.device | str) -> Graph:
        """A copy with every tensor attribute on ``device``."""
        return Graph.from_dict({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self})

    def clone(self) -> Graph:
        """A deep copy of the tensors (lists are copied too)."""
        def copy(v: Any) -> Any:
            return v.clone() if isinstance(v, torch.Tensor) else (list(v) if isinstance(v, list) else v)

        return Graph.from_dict({k: copy(v) for k, v in self})

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                return str(list(v.shape))
            if isinstance(v, (list, tuple)):
                return f"[{len(v)}]"
            return repr(v)

        return f"{type(self).__name__}(" + ", ".join(f"{k}={short(v)}" for k, v in self) + ")"


def is_graph(obj: object) -> bool:
    """Whether ``obj`` is a graph the toolkit reads: a :class:`Graph` or a ``torch_geometric`` ``Data``.

    The ``Data`` check looks at the class's module, so torch_geometric is never imported for it.

    Examples
    --------
    >>> is_graph(Graph(num_nodes=1)), is_graph({"edge_index": None})
    (True, False)
    """
    if isinstance(obj, Graph):
        return True
    cls = type(obj)
    return cls.__module__.startswith("torch_geometric.") and any(c.__name__ == "Data" for c in cls.__mro__)
