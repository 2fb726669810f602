"""emergence: count the paths from inactive to active neurons in networks and graphs.

A network is a directed acyclic graph (a :class:`torch_geometric.data.Data` with an
``active`` mask); its emergence is the number of paths that leave an inactive node
and run on through active ones (AlShinaifi et al., arXiv:2409.01568, 2024).

Examples
--------
>>> import emergence
>>> g = emergence.from_layers([[[1, 1]], [[1]]], [[False, True], [True], [True]])
>>> emergence.measure(g).value
2
"""

from emergence.activity import AGGREGATIONS, DEFAULT_THRESHOLD, Activity, LayerInfo, ModelGraph
from emergence.errors import (
    ConfigError,
    EmergenceError,
    FileFormatError,
    GraphError,
    InputShapeError,
    NonFiniteError,
    NotADAGError,
    UnsupportedOpError,
    UntrustedPickleError,
)
from emergence.graph import from_adjacency, from_edges, from_layers, graph, node_count, validate
from emergence.levels import Levels, topological_levels
from emergence.measure import EXACT_EDGE_LIMIT, layered, measure, measure_masks
from emergence.probe import ModelMeasurement, measure_model
from emergence.result import EmergenceResult, NodeContribution

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "Activity",
    "ConfigError",
    "DEFAULT_THRESHOLD",
    "EXACT_EDGE_LIMIT",
    "EmergenceError",
    "EmergenceResult",
    "FileFormatError",
    "GraphError",
    "InputShapeError",
    "LayerInfo",
    "Levels",
    "ModelGraph",
    "ModelMeasurement",
    "NodeContribution",
    "NonFiniteError",
    "NotADAGError",
    "UnsupportedOpError",
    "UntrustedPickleError",
    "from_adjacency",
    "from_edges",
    "from_layers",
    "graph",
    "layered",
    "measure",
    "measure_masks",
    "measure_model",
    "node_count",
    "topological_levels",
    "validate",
]
