"""ATen operations of an exported PyTorch program mapped to the format-independent channel graph.

:class:`_Walker` visits the nodes of a ``torch.export`` program once, in order, and feeds
each operation to :class:`adapters._channels.ChannelGraphBuilder`: dense and conv layers
make nodes and weighted edges, batch norm folds into the layer before it, elementwise
and shape operations carry each slot's provenance. :data:`SUPPORTED_TORCH_OPS` lists what
is mapped; anything else is refused with :class:`~emergence.errors.UnsupportedOpError`.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from adapters._channels import ChannelGraphBuilder, ChannelValue
from emergence.errors import UnsupportedOpError

__all__ = ['SUPPORTED_TORCH_OPS']

_DENSE = {"linear", "addmm", "mm", "matmul"}
_CONV = {"conv1d", "conv2d", "conv3d", "convolution"}
_BATCH_NORM = {"batch_norm", "_native_batch_norm_legit_no_training"}
_ELEMENTWISE = {
    "relu", "relu_", "gelu", "silu", "silu_", "sigmoid", "tanh", "hardtanh", "hardtanh_", "relu6", "leaky_relu",
    "leaky_relu_", "elu", "elu_", "selu", "celu", "hardswish", "hardswish_", "hardsigmoid", "softplus", "mish",
    "softmax", "_softmax", "log_softmax", "_log_softmax", "dropout", "feature_dropout", "alpha_dropout",
    "native_dropout", "clone", "contiguous", "alias", "detach", "_to_copy", "to", "type_as", "clamp", "clamp_min",
    "clamp_max", "abs", "neg", "exp", "log", "sqrt", "square", "pow", "erf", "layer_norm", "group_norm",
    "local_response_norm", "lift_fresh_copy",
}
_SHAPE = {
    "view", "_unsafe_view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "squeeze", "unsqueeze",
    "expand", "slice", "select", "narrow", "movedim", "channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "split",
    "split_with_sizes", "chunk", "unbind", "repeat", "flip", "roll", "index_select",
}
_PAD = {"constant_pad_nd", "pad"}
_POOL = {
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "mean", "amax", "sum",
}
_ADD = {"add", "add_", "sub", "sub_", "rsub"}
_MUL = {"mul", "mul_", "div", "div_"}
#: ATen operations (export IR names) the PyTorch front-end maps.
SUPPORTED_TORCH_OPS = sorted(
    _DENSE | _CONV | _BATCH_NORM | _ELEMENTWISE | _SHAPE | _PAD | _POOL | _ADD | _MUL | {"cat", "concat", "getitem"}
)


def _opname(node: fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    return getattr(t, "_opname", None) or getattr(t, "__name__", str(t))


def _layer_name(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return str(path)
    return node.name


def _kind(node: fx.Node, op: str) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        cls = str(list(stack.values())[-1][1]).rsplit(".", 1)[-1]
        if cls in ("Linear", "Conv1d", "Conv2d", "Conv3d", "LazyLinear", "Bilinear"):
            return cls
    return "Linear" if op in _DENSE else "Conv"


def _out_shape(node: fx.Node, batch: int) -> tuple[int, ...]:
    val = node.meta.get("val")
    if val is None or not hasattr(val, "shape"):
        raise UnsupportedOpError(f"node {node.name!r} has no recorded shape; export the model with torch.export")
    return (batch, *(int(s) for s in val.shape[1:]))


def _has_value(x: Any) -> bool:
    if isinstance(x, ChannelValue):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_value(v) for v in x)
    return False


def _first_layer_kind(gm: fx.GraphModule, user_inputs: set[str]) -> str:
    """'dense' if the input reaches a dense layer before any convolution, else 'conv'."""
    seen, frontier = set(), [n for n in gm.graph.nodes if n.name in user_inputs]
    while frontier:
        nxt = []
        for n in frontier:
            for u in n.users:
                if u.name in seen:
                    continue
                seen.add(u.name)
                op = _opname(u) if u.op == "call_function" else ""
                if op in _CONV:
                    return "conv"
                if op in _DENSE:
                    continue
                nxt.append(u)
        frontier = nxt
    return "dense"


class _Walker:
    """Walks an exported program's graph, feeding a :class:`ChannelGraphBuilder`."""

    def __init__(self, ep: torch.export.ExportedProgram, state: dict[str, torch.Tensor] | None = None) -> None:
        self.ep = ep
        self.state = state or {}
        self.b = ChannelGraphBuilder()
        self.env: dict[str, Any] = {}
        self.tail: dict[str, int] = {}  # fx node name -> layer whose activation chain ends there
        self.act: dict[int, str] = {}  # layer -> fx node holding its activation

    def _constant(self, spec: Any) -> torch.Tensor:
        name = spec.target
        if name in self.state:
            return self.state[name]
        if name in self.ep.state_dict:
            return self.ep.state_dict[name]
        return self.ep.constants[name]

    def run(self) -> None:
        sig = self.ep.graph_signature
        users = {s.arg.name for s in sig.input_specs if s.kind.name == "USER_INPUT"}
        if len(users) != 1:
            raise UnsupportedOpError(f"the model takes {len(users)} tensor inputs; only single-input models are supported")
        per_element = _first_layer_kind(self.ep.graph_module, users) == "dense"
        for spec in sig.input_specs:
            if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                self.env[spec.arg.name] = self._constant(spec)
        for node in self.ep.graph.nodes:
            if node.op == "placeholder" and node.name in users:
                shape = _out_shape(node, 1)
                self.env[node.name] = self.b.input(shape, per_element=per_element)
                self.tail[node.name] = 0
                self.act[0] = node.name
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "get_attr":
                self.env[node.name] = getattr(self.ep.graph_module, str(node.target))

    def _continue_chain(self, node: fx.Node, src: fx.Node) -> None:
        if src.name in self.tail and len(src.users) == 1 and self.tail[src.name] != 0:
            layer = self.tail.pop(src.name)
            self.tail[node.name] = layer
            self.act[layer] = node.name

    def _new_layer(self, node: fx.Node, value: ChannelValue) -> ChannelValue:
        layer = len(self.b.layers) - 1
        self.tail[node.name] = layer
        self.act[layer] = node.name
        return value

    def _call(self, node: fx.Node) -> None:
        op = _opname(node)
        args = fx.node.map_arg(node.args, lambda n: self.env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.env[n.name])
        if op == "sym_size":
            self.env[node.name] = args[0].prov.shape[args[1]] if isinstance(args[0], ChannelValue) else node.target(*args)
            return
        if not _has_value(args) and not _has_value(kwargs):  # constant folding with real tensors
            self.env[node.name] = node.target(*args, **kwargs)
            return
        handler = self._handler(op)
        if handler is None:
            raise UnsupportedOpError(
                f"operation {op!r} (node {node.name!r}) cannot be mapped to a graph; "
                f"supported operations: {', '.join(SUPPORTED_TORCH_OPS)}"
            )
        self.env[node.name] = handler(node, op, args, kwargs)

    def _handler(self, op: str) -> Callable[..., Any] | None:
        for ops, fn in (
            (_DENSE, self._dense), (_CONV, self._conv), (_BATCH_NORM, self._batch_norm),
            (_ELEMENTWISE, self._elementwise), (_SHAPE, self._shape), (_PAD, self._pad), (_POOL, self._pool),
            (_ADD, self._add), (_MUL, self._mul), ({"cat", "concat"}, self._cat), ({"getitem"}, self._getitem),
        ):
            if op in ops:
                return fn
        return None

    def _dense(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        if op == "linear":
            x, w = args[0], args[1]
        elif op == "addmm":
            x, w = args[1], args[2].t() if isinstance(args[2], torch.Tensor) else args[2]
        else:
            x, w = args[0], args[1].t() if isinstance(args[1], torch.Tensor) else args[1]
        if not isinstance(x, ChannelValue) or not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise UnsupportedOpError(f"{op} (node {node.name!r}) needs a constant 2-D weight and a tensor input")
        return self._new_layer(node, self.b.linear(x, w, name=_layer_name(node), kind=_kind(node, op)))

    def _conv(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x, w = args[0], args[1]
        if op == "convolution":
            if args[6]:
                raise UnsupportedOpError(f"transposed convolution (node {node.name!r}) is not supported")
            groups = int(args[8])
        else:
            groups = int(args[6] if len(args) > 6 else kwargs.get("groups", 1))
        if not isinstance(w, torch.Tensor):
            raise UnsupportedOpError(f"{op} (node {node.name!r}) needs a constant weight")
        shape = _out_shape(node, x.prov.shape[0])
        value = self.b.conv(x, w, groups=groups, out_shape=shape, name=_layer_name(node), kind=_kind(node, op))
        return self._new_layer(node, value)

    def _batch_norm(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x, weight, _bias, _mean, var = args[:5]
        eps = args[7] if op == "batch_norm" else args[6]
        if op == "batch_norm" and args[5]:
            raise UnsupportedOpError(f"batch norm in training mode (node {node.name!r}); call model.eval() first")
        scale = torch.rsqrt(var.double() + eps)
        if weight is not None:
            scale = scale * weight.double()
        shape = [1, -1] + [1] * (x.prov.dim() - 2)
        value = self.b.scale(x, scale.reshape(shape), exclusive=len(node.args[0].users) == 1)
        self._continue_chain(node, node.args[0])
        return value if op == "batch_norm" else (value, None, None)

    def _elementwise(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        self._continue_chain(node, node.args[0])
        x = args[0]
        keep = op in ("dropout", "clone", "contiguous", "alias", "detach", "_to_copy", "to", "lift_fresh_copy")
        value = x if keep else x.derive(x.prov)
        return (value, None) if op == "native_dropout" else value

    def _shape(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        out = node.target(x.prov, *args[1:], **kwargs)
        if isinstance(out, (list, tuple)):
            return type(out)(x.derive(o) for o in out)
        return x.derive(out)

    def _pad(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x, pads = args[0], list(args[1])
        mode = args[2] if op == "pad" and len(args) > 2 else kwargs.get("mode", "constant")
        if mode == "constant":
            return x.derive(F.pad(x.prov, pads, value=-1))
        padded = F.pad(x.prov.double(), pads, mode=mode)
        return x.derive(padded.long())

    def _pool(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        if op in ("mean", "amax", "sum"):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            dims = [d % x.prov.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
            if dims is None or any(d < 2 for d in dims):
                raise UnsupportedOpError(f"{op} over dims {dims} (node {node.name!r}): only spatial reductions map")
        value = self.b.pool(x, _out_shape(node, x.prov.shape[0]))
        return (value, None) if op == "max_pool2d_with_indices" else value

    def _add(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        a, b = args[0], args[1]
        if isinstance(a, ChannelValue) and isinstance(b, ChannelValue):
            alpha = float(kwargs.get("alpha", 1.0))
            sign = -alpha if op.startswith("sub") else alpha
            signs = [sign, 1.0] if op == "rsub" else [1.0, sign]
            return self.b.merge([a, b], signs=signs)
        x = a if isinstance(a, ChannelValue) else b  # a constant (bias): elementwise
        self._continue_chain(node, node.args[0] if isinstance(a, ChannelValue) else node.args[1])
        return x

    def _mul(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        a, b = args[0], args[1]
        if isinstance(a, ChannelValue) and isinstance(b, ChannelValue):
            return self.b.merge([a, b], combine="max")
        src = node.args[0] if isinstance(a, ChannelValue) else node.args[1]
        if not isinstance(a, ChannelValue):
            if op.startswith("div"):
                raise UnsupportedOpError(f"dividing a constant by a tensor (node {node.name!r}) is not supported")
            a, b = b, a
        factor = torch.as_tensor(b, dtype=torch.float64)
        if op.startswith("div"):
            factor = 1.0 / factor
        value = self.b.scale(a, factor, exclusive=len(src.users) == 1)
        self._continue_chain(node, src)
        return value

    def _cat(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        parts = list(args[0])
        dim = int(args[1] if len(args) > 1 else kwargs.get("dim", 0))
        ref = next(p for p in parts if isinstance(p, ChannelValue))
        vals = []
        for p in parts:
            if isinstance(p, ChannelValue):
                vals.append(p)
            else:  # a constant block: no provenance
                shape = list(p.shape)
                shape[0] = ref.prov.shape[0]
                vals.append(ChannelValue(torch.full(shape, -1, dtype=torch.long), ref.slots.__class__.single(
                    torch.empty(0, dtype=torch.long))))
        return self.b.concat(vals, dim)

    def _getitem(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        seq, i = args
        if isinstance(seq, ChannelValue):  # indexing a tensor
            return seq.derive(seq.prov[i])
        self._continue_chain(node, node.args[0])
        return seq[i]
