"""emergence: count the paths from inactive to active neurons in networks and graphs.

A network is a directed graph (an :class:`emergence.Graph` with an ``active`` mask); its
emergence is the number of paths that leave an inactive node and run on through active ones
(AlShinaifi et al., arXiv:2409.01568, 2024), finite whenever the active nodes form no cycle
(:mod:`emergence.cycles`; :func:`condense` and ``measure(g, max_length=k)`` for graphs where they do).

Layers and the dependency rule
------------------------------
The code is four layers; imports only point down, and ``tests/test_layout.py`` checks it
by reading every module's imports:

1. **core** -- the modules directly in ``emergence/`` (``graph``, ``validate``, ``levels``,
   ``measure``, ``result``, ``activity``, ``errors``) and ``emergence/testing/``: graphs,
   counting and results for *any* DAG. The core imports nothing from ``adapters`` or the
   experiment layer, and never does file I/O, training or plotting.
2. **adapters** -- ``adapters/``: the outside world in and out (graph files, networkx and
   igraph, PyTorch and ONNX models, data files, the built-in architectures and their
   weight files, :func:`measure_model`). ``adapters`` imports only the core.
3. **experiments** -- ``emergence/experiments/`` (pruning, training, sweeps, results,
   statistics, plots, reproduction, console rendering) and ``emergence/landscape/``
   (Hessian and loss-slice probes). They may import the core and ``adapters``.
4. **CLI** -- ``cli.py`` imports everything; no module imports ``cli``.

This file is the public facade: it re-exports the core, and :func:`measure_model` /
:class:`ModelMeasurement` from ``emergence.adapters.model_measure`` and :class:`Monitor` /
:class:`MonitorRecord` from ``emergence.experiments.monitor`` *lazily*, on first use (PEP 562),
so that ``import emergence`` stays light (no onnx, onnxruntime, xarray or matplotlib)
and no core module imports upward.

Examples
--------
>>> import emergence
>>> g = emergence.from_layers([[[1, 1]], [[1]]], [[False, True], [True], [True]])
>>> emergence.measure(g).value
2
"""

from emergence.activity import AGGREGATIONS, DEFAULT_THRESHOLD, Activity, LayerInfo, ModelGraph
from emergence.cycles import condense
from emergence.errors import (
    ConfigError,
    EmergenceError,
    FileFormatError,
    GraphError,
    InputShapeError,
    NonFiniteError,
    NotADAGError,
    TimeLimitError,
    UnsupportedOpError,
    UntrustedPickleError,
)
from emergence.graph import from_adjacency, from_edges, from_layers, graph
from emergence.graphdata import Graph
from emergence.levels import Levels, topological_levels
from emergence.measure import EXACT_EDGE_LIMIT, layered, measure, measure_layers, measure_masks
from emergence.result import EmergenceResult, NodeContribution
from emergence.validate import node_count, validate

__version__ = "0.1.0"


def _source_checkout_paths() -> None:
    """In a source checkout the layout keeps ``adapters/`` and ``cli.py`` beside this folder; a wheel puts them
    inside it (``emergence/adapters``, ``emergence/cli.py``). Extending the package path makes
    ``emergence.adapters`` and ``emergence.cli`` resolve the same way in both (editable installs included)."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not os.path.isfile(os.path.join(here, "cli.py")) and os.path.isfile(os.path.join(root, "cli.py")) \
            and os.path.isdir(os.path.join(root, "adapters")) and root not in __path__:
        __path__.append(root)


_source_checkout_paths()

__all__ = [
    "AGGREGATIONS",
    "Activity",
    "ConfigError",
    "DEFAULT_THRESHOLD",
    "EXACT_EDGE_LIMIT",
    "EmergenceError",
    "EmergenceResult",
    "Graph",
    "FileFormatError",
    "GraphError",
    "InputShapeError",
    "LayerInfo",
    "Levels",
    "ModelGraph",
    "ModelMeasurement",
    "Monitor",
    "MonitorRecord",
    "NodeContribution",
    "NonFiniteError",
    "NotADAGError",
    "TimeLimitError",
    "UnsupportedOpError",
    "UntrustedPickleError",
    "condense",
    "from_adjacency",
    "from_edges",
    "from_layers",
    "graph",
    "layered",
    "measure",
    "measure_layers",
    "measure_masks",
    "measure_model",
    "node_count",
    "topological_levels",
    "validate",
]

#: Names served lazily from the adapters layer (module that defines them).
_LAZY = {"measure_model": "emergence.adapters.model_measure", "ModelMeasurement": "emergence.adapters.model_measure",
         "Monitor": "emergence.experiments.monitor", "MonitorRecord": "emergence.experiments.monitor"}


def __getattr__(name: str):  # PEP 562: resolved on first access, then cached in the module
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emergence' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
