"""The adapters layer: the outside world to and from the core's graph.

Built only on the core (:mod:`emergence`); the experiment layer and the CLI build on it.

* graphs -- :mod:`adapters.graphfile` (GraphML, GML, edge lists, ... through igraph),
  :mod:`adapters.igraph_graph`, :mod:`adapters.networkx_graph`;
* models -- :mod:`adapters.model_files` (recognise and load ``.pt2``, ONNX, TorchScript,
  state dicts, safetensors), :mod:`adapters.torch_model` / :mod:`adapters.torch_ops`
  (``torch.export`` programs), :mod:`adapters.onnx_model` / :mod:`adapters.onnx_ops`,
  all feeding one format-independent builder (:mod:`adapters._channels`);
* measuring -- :mod:`adapters.model_measure` (:func:`measure_model`, :class:`ModelProbe`); neuron-level graphs
  counted by transposed convolutions -- :mod:`adapters.neuron_count`;
* data and built-in models -- :mod:`adapters.datasets` (bundled data, ``.npz``, CIFAR-10,
  probe batches), :mod:`adapters.architectures` (MLP / CNN / VGG and their weight files);
* :mod:`adapters.atomic` -- files written atomically.

Each format comes as a pair (``from_x`` / ``to_x``, ``read_x`` / ``write_x``) where the
format can be written; models are read only. Optional packages are imported inside
the functions that need them.
"""

from adapters._probe import GRANULARITIES, check_granularity
from adapters.graphfile import FORMATS, read_graph, read_node_list, write_graph
from adapters.igraph_graph import from_igraph, to_igraph
from adapters.model_files import LoadedModel, load_model, model_graph
from adapters.model_measure import ModelMeasurement, ModelProbe, measure_model
from adapters.networkx_graph import from_networkx, to_networkx
from adapters.neuron_count import ImplicitCounter, NeuronModelGraph
from adapters.onnx_model import SUPPORTED_ONNX_OPS, from_onnx
from adapters.torch_model import SUPPORTED_TORCH_OPS, from_exported, from_torch

__all__ = [
    "FORMATS",
    "GRANULARITIES",
    "ImplicitCounter",
    "LoadedModel",
    "ModelMeasurement",
    "ModelProbe",
    "NeuronModelGraph",
    "SUPPORTED_ONNX_OPS",
    "SUPPORTED_TORCH_OPS",
    "check_granularity",
    "from_exported",
    "from_igraph",
    "from_networkx",
    "from_onnx",
    "from_torch",
    "load_model",
    "measure_model",
    "model_graph",
    "read_graph",
    "read_node_list",
    "to_igraph",
    "to_networkx",
    "write_graph",
]
