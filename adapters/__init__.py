"""Converters between the toolkit's graph and other formats.

Each format comes as a pair (``from_x`` / ``to_x``, ``read_x`` / ``write_x``) where the
format can be written; models are read only. Optional packages are imported inside
the functions that need them.
"""

from adapters.graphfile import FORMATS, read_graph, read_node_list, write_graph
from adapters.igraph_graph import from_igraph, to_igraph
from adapters.model_files import LoadedModel, load_model, model_graph
from adapters.networkx_graph import from_networkx, to_networkx
from adapters.onnx_model import SUPPORTED_ONNX_OPS, from_onnx
from adapters.torch_model import SUPPORTED_TORCH_OPS, from_exported, from_torch

__all__ = [
    "FORMATS",
    "LoadedModel",
    "SUPPORTED_ONNX_OPS",
    "SUPPORTED_TORCH_OPS",
    "from_exported",
    "from_igraph",
    "from_networkx",
    "from_onnx",
    "from_torch",
    "load_model",
    "model_graph",
    "read_graph",
    "read_node_list",
    "to_igraph",
    "to_networkx",
    "write_graph",
]
