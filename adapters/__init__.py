"""The adapters layer: the outside world to and from the core's graph.

Built only on the core (:mod:`emergence`); the experiment layer and the CLI build on it.

* graphs -- :mod:`emergence.adapters.graphfile` (GraphML, GML, edge lists, ... through igraph),
  :mod:`emergence.adapters.igraph_graph`, :mod:`emergence.adapters.networkx_graph`,
  :mod:`emergence.adapters.rustworkx_graph`;
* models -- :mod:`emergence.adapters.model_files` (recognise and load ``.pt2``, ONNX, TorchScript,
  state dicts, safetensors), :mod:`emergence.adapters.torch_model` / :mod:`emergence.adapters.torch_ops`
  (``torch.export`` programs), :mod:`emergence.adapters.onnx_model` / :mod:`emergence.adapters.onnx_ops`,
  all feeding one format-independent builder (:mod:`emergence.adapters._channels`);
* measuring -- :mod:`emergence.adapters.model_measure` (:func:`measure_model`), :mod:`emergence.adapters.model_probe`
  (:class:`ModelProbe`, measuring a live model as it trains, re-walked when its structure changes); neuron-level graphs
  counted by transposed convolutions -- :mod:`emergence.adapters.neuron_count`;
* data and built-in models -- :mod:`emergence.adapters.datasets` (bundled data, ``.npz``, CIFAR-10,
  probe batches), :mod:`emergence.adapters.architectures` (MLP / CNN / VGG and their weight files);
* :mod:`emergence.adapters.atomic` -- files written atomically;
* :mod:`emergence.adapters.pyg_graph` -- ``torch_geometric.data.Data`` to and from the toolkit's graph.

Each format comes as a pair (``from_x`` / ``to_x``, ``read_x`` / ``write_x``) where the
format can be written; models are read only. Optional packages are imported inside
the functions that need them.
"""

#: Public names and the module defining each; imported on first use (PEP 562), so that reading a
#: graph file does not import onnx, onnxruntime or the model walkers.
_LAZY = {
    "GRANULARITIES": "_probe", "check_granularity": "_probe",
    "FORMATS": "graphfile", "read_graph": "graphfile", "read_node_list": "graphfile", "write_graph": "graphfile",
    "from_igraph": "igraph_graph", "to_igraph": "igraph_graph",
    "from_networkx": "networkx_graph", "to_networkx": "networkx_graph",
    "from_rustworkx": "rustworkx_graph", "to_rustworkx": "rustworkx_graph",
    "from_pyg": "pyg_graph", "to_pyg": "pyg_graph",
    "LoadedModel": "model_files", "load_model": "model_files", "model_graph": "model_files",
    "ModelMeasurement": "model_measure", "measure_model": "model_measure",
    "ModelProbe": "model_probe", "ProbeRecord": "model_probe",
    "ImplicitCounter": "neuron_count", "NeuronModelGraph": "neuron_count",
    "SUPPORTED_ONNX_OPS": "onnx_model", "from_onnx": "onnx_model",
    "SUPPORTED_TORCH_OPS": "torch_model", "from_exported": "torch_model", "from_torch": "torch_model",
}

__all__ = [
    "FORMATS",
    "GRANULARITIES",
    "ImplicitCounter",
    "LoadedModel",
    "ModelMeasurement",
    "ModelProbe",
    "ProbeRecord",
    "NeuronModelGraph",
    "SUPPORTED_ONNX_OPS",
    "SUPPORTED_TORCH_OPS",
    "check_granularity",
    "from_exported",
    "from_igraph",
    "from_networkx",
    "from_onnx",
    "from_pyg",
    "from_rustworkx",
    "from_torch",
    "load_model",
    "measure_model",
    "model_graph",
    "read_graph",
    "read_node_list",
    "to_igraph",
    "to_networkx",
    "to_pyg",
    "to_rustworkx",
    "write_graph",
]


def __getattr__(name: str):  # PEP 562: resolved on first access, then cached in the package
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"emergence.adapters.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emergence.adapters' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
