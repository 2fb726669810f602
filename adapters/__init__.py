"""The adapters layer: the outside world to and from the core's graph.

Built only on the core (:mod:`emergence`); the experiment layer and the CLI build on it.

* graphs -- :mod:`emergence.adapters.graphfile` (GraphML, GML, edge lists, ... through igraph),
  :mod:`emergence.adapters.igraph_graph`, :mod:`emergence.adapters.networkx_graph`;
* models -- :mod:`emergence.adapters.model_files` (recognise and load ``.pt2``, ONNX, TorchScript,
  state dicts, safetensors), :mod:`emergence.adapters.torch_model` / :mod:`emergence.adapters.torch_ops`
  (``torch.export`` programs), :mod:`emergence.adapters.onnx_model` / :mod:`emergence.adapters.onnx_ops`,
  all feeding one format-independent builder (:mod:`emergence.adapters._channels`);
* measuring -- :mod:`emergence.adapters.model_measure` (:func:`measure_model`, :class:`ModelProbe`); neuron-level graphs
  counted by transposed convolutions -- :mod:`emergence.adapters.neuron_count`;
* data and built-in models -- :mod:`emergence.adapters.datasets` (bundled data, ``.npz``, CIFAR-10,
  probe batches), :mod:`emergence.adapters.architectures` (MLP / CNN / VGG and their weight files);
* :mod:`emergence.adapters.atomic` -- files written atomically.

Each format comes as a pair (``from_x`` / ``to_x``, ``read_x`` / ``write_x``) where the
format can be written; models are read only. Optional packages are imported inside
the functions that need them.
"""

from emergence.adapters._probe import GRANULARITIES, check_granularity
from emergence.adapters.graphfile import FORMATS, read_graph, read_node_list, write_graph
from emergence.adapters.igraph_graph import from_igraph, to_igraph
from emergence.adapters.model_files import LoadedModel, load_model, model_graph
from emergence.adapters.model_measure import ModelMeasurement, ModelProbe, measure_model
from emergence.adapters.networkx_graph import from_networkx, to_networkx
from emergence.adapters.neuron_count import ImplicitCounter, NeuronModelGraph
from emergence.adapters.onnx_model import SUPPORTED_ONNX_OPS, from_onnx
from emergence.adapters.torch_model import SUPPORTED_TORCH_OPS, from_exported, from_torch

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
