"""Converters between the toolkit's graph and other formats.

Each format comes as a pair (``from_x`` / ``to_x``, ``read_x`` / ``write_x``); optional
packages are imported inside the functions that need them.
"""

from adapters.graphfile import FORMATS, from_igraph, read_graph, read_node_list, to_igraph, write_graph
from adapters.networkx_graph import from_networkx, to_networkx

__all__ = [
    "FORMATS",
    "from_igraph",
    "to_igraph",
    "read_graph",
    "read_node_list",
    "write_graph",
    "from_networkx",
    "to_networkx",
]
