"""ATen operations of an exported PyTorch program mapped to the format-independent channel graph.

:class:`_Walker` visits the nodes of a ``torch.export`` program once, in order, and feeds
each operation to :class:`emergence.adapters._channels.ChannelGraphBuilder`: dense and conv layers
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

from emergence.adapters._channels import ChannelGraphBuilder, ChannelValue
from emergence.adapters._neurons import NeuronGraphBuilder
from emergence.adapters._window import Window
from emergence.adapters.op_registry import TORCH, dispatch, ops_of, supported
from emergence.errors import UnsupportedOpError

__all__ = ['SUPPORTED_TORCH_OPS']

_DISPATCH = dispatch(TORCH)  # op name -> semantic handler (the method "_<handler>"), see op_registry
_DENSE, _CONV = ops_of(TORCH, "dense"), ops_of(TORCH, "conv")
#: Nonlinearities: a residual sum one of them reads is a layer's units (see ChannelGraphBuilder.residual).
_ACTIVATIONS = {
    "relu", "relu_", "prelu", "_prelu_kernel", "gelu", "gelu_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh",
    "tanh_", "hardtanh", "hardtanh_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
    "hardswish", "hardswish_", "hardsigmoid", "softplus", "mish",
}
#: ATen operations (export IR names) the PyTorch front-end maps.
SUPPORTED_TORCH_OPS = supported(TORCH)


def _src(node: fx.Node, i: int) -> fx.Node:
    """Argument ``i`` of ``node`` as the node that computed it (handlers ask this only of data arguments)."""
    arg = node.args[i]
    if not isinstance(arg, fx.Node):
        raise UnsupportedOpError(f"{_opname(node)} (node {node.name!r}): argument {i} is the constant {arg!r}, "
                                 "where a tensor computed by the model was expected")
    return arg


def _live(graph: fx.Graph) -> set[fx.Node]:
    """The nodes the graph's outputs depend on (exported programs may keep unused branches)."""
    stack = [n for n in graph.nodes if n.op == "output"]
    live: set[fx.Node] = set()
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.all_input_nodes)
    return live


def _target(node: fx.Node) -> Callable[..., Any]:
    """The function a ``call_function`` node calls."""
    if not callable(node.target):
        raise UnsupportedOpError(f"node {node.name!r} calls {node.target!r}, which is not a function")
    return node.target


def _opname(node: fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    return str(getattr(t, "_opname", None) or getattr(t, "__name__", t))


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


def _ints(v: Any) -> list[int]:
    return [int(v)] if isinstance(v, int) else [int(a) for a in (v or [])]


def _conv_window(node: fx.Node, w: torch.Tensor, stride: Any, padding: Any, dilation: Any) -> Window | None:
    """The geometry of a convolution; ``padding="same"`` with an odd-sized footprint becomes numbers."""
    kernel = [int(k) for k in w.shape[2:]]
    dil = _ints(dilation) or [1]
    dil = dil * len(kernel) if len(dil) == 1 else dil
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0]
        elif all((d * (k - 1)) % 2 == 0 for k, d in zip(kernel, dil, strict=False)):
            padding = [d * (k - 1) // 2 for k, d in zip(kernel, dil, strict=False)]
        else:
            raise UnsupportedOpError(f"convolution (node {node.name!r}): padding='same' with an even kernel pads "
                                     "unevenly; pad explicitly")
    return Window.of(kernel, _ints(stride) or [1], _ints(padding), dil)


def _pool_window(op: str, args: tuple, kwargs: dict) -> Window:
    """The window of a pool from its ATen arguments (adaptive pools: windows from the sizes)."""
    if op.startswith("adaptive") or op.startswith("_adaptive"):
        return Window(adaptive=True)
    names: tuple[str, ...]
    if op.startswith("max_pool"):
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    else:
        names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    a = {**dict(zip(names, args, strict=False)), **kwargs}
    kernel = _ints(a["kernel_size"])
    n = int(op[-2]) if op[-2].isdigit() else (int(op[-1]) if op[-1].isdigit() else len(kernel))
    if op == "max_pool2d_with_indices":
        n = 2
    kernel = kernel * n if len(kernel) == 1 else kernel
    return Window.of(kernel, _ints(a.get("stride")), _ints(a.get("padding")), _ints(a.get("dilation")))


def _has_value(x: Any) -> bool:
    if isinstance(x, ChannelValue):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_value(v) for v in x)
    return False


def _first_layer_kind(gm: fx.GraphModule, user_inputs: set[str]) -> str:
    """'conv' if the input reaches a convolution before any dense layer; else 'tokens' when that dense layer
    reads a tensor of rank 3 or more (features last, positions before them), or 'dense'."""
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
                    val = u.args[0].meta.get("val") if isinstance(u.args[0], fx.Node) else None
                    return "tokens" if val is not None and len(val.shape) >= 3 else "dense"
                nxt.append(u)
        frontier = nxt
    return "dense"


class _Walker:
    """Walks an exported program's graph, feeding a :class:`ChannelGraphBuilder`."""

    def __init__(self, ep: torch.export.ExportedProgram, state: dict[str, torch.Tensor] | None = None,
                 granularity: str = "channel") -> None:
        self.ep = ep
        self.state = state or {}
        self.b = NeuronGraphBuilder() if granularity == "neuron" else ChannelGraphBuilder()
        self.env: dict[str, Any] = {}
        self.tail: dict[str, int] = {}  # fx node name -> layer whose activation chain ends there
        self.act: dict[int, str] = {}  # layer -> fx node holding its activation
        self.data: set[str] = set()  # nodes computed from integer inputs (token ids, masks): data, not nodes
        # Normalisation written out (decomposed LayerNorm / RMSNorm / InstanceNorm): ``root`` maps a node to
        # the node it is an elementwise function of; ``stat`` maps a mean or variance (keepdim) to the root
        # it summarises. Combining a value with a statistic of its own root is elementwise, as a constant.
        self.root: dict[str, str] = {}
        self.stat: dict[str, str] = {}

    def _constant(self, spec: Any) -> torch.Tensor:
        name = spec.target
        if name in self.state:
            return self.state[name]
        if name in self.ep.state_dict:
            return self.ep.state_dict[name]
        return self.ep.constants[name]

    def run(self) -> None:
        sig = self.ep.graph_signature
        users = [s.arg.name for s in sig.input_specs if s.kind.name == "USER_INPUT"]
        if not users:
            raise UnsupportedOpError("the model takes no tensor input")
        kind = _first_layer_kind(self.ep.graph_module, set(users))
        per_element = "tokens" if kind == "tokens" else kind == "dense"
        for spec in sig.input_specs:
            if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                self.env[spec.arg.name] = self._constant(spec)
        floats = 0
        live = _live(self.ep.graph)
        for node in self.ep.graph.nodes:
            if node.op == "call_function" and node not in live:
                continue  # computes nothing the outputs read (an unused pooler head): no nodes, no edges
            if node.op == "placeholder" and node.name in users:
                # provenance at the program's own batch size when it is fixed (a reshape may name it), else 1
                val = node.meta.get("val")
                b0 = val.shape[0] if hasattr(val, "shape") else 1
                shape = _out_shape(node, int(b0) if isinstance(b0, int) else 1)
                if val is not None and not (val.dtype.is_floating_point or val.dtype.is_complex):
                    # token ids, masks: they select and mask but are not units; lookups make the nodes
                    self.env[node.name] = torch.zeros(shape, dtype=val.dtype)
                    self.data.add(node.name)
                    continue
                name = "input" if floats == 0 else f"input:{node.name}"
                self.env[node.name] = self.b.input(shape, per_element=per_element, name=name)
                self.tail[node.name] = len(self.b.layers) - 1 if floats else 0
                self.act[len(self.b.layers) - 1] = node.name
                floats += 1
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "get_attr":
                self.env[node.name] = getattr(self.ep.graph_module, str(node.target))

    def _continue_chain(self, node: fx.Node, *srcs: fx.Node) -> None:
        """``node`` is an elementwise function of ``srcs`` (and constants): when they all lie on one layer's
        chain, so does ``node``, and the layer's activity is read at the latest node of its chain. So a
        decomposed activation (x * sigmoid(x), the erf form of GELU) ends the chain after the whole formula."""
        layers = {self.tail.get(s.name) for s in srcs}
        layer = next(iter(layers)) if len(layers) == 1 else None
        if layer is not None and self.b.layers[layer].kind != "input":
            self.tail[node.name] = layer
            self.act[layer] = node.name

    def _root(self, n: fx.Node) -> str:
        return self.root.get(n.name, n.name)

    def _unary(self, node: fx.Node, src: fx.Node) -> None:
        """``node`` is an elementwise function of ``src`` alone (and constants)."""
        self.root[node.name] = self._root(src)
        if src.name in self.stat:
            self.stat[node.name] = self.stat[src.name]
        self._continue_chain(node, src)

    def _normalising(self, node: fx.Node, a: fx.Node, b: fx.Node) -> fx.Node | None:
        """The data operand when the other one is a statistic of its root (x - mean(x), x * rsqrt(var(x)));
        None otherwise (two statistics of one root make a statistic)."""
        sa, sb = self.stat.get(a.name), self.stat.get(b.name)
        if sa is not None and sa == sb:
            self.stat[node.name] = sa
            return None
        if sb is not None and sb == self._root(a) and sa is None:
            return a
        if sa is not None and sa == self._root(b) and sb is None:
            return b
        return None

    def _new_layer(self, node: fx.Node, value: ChannelValue) -> ChannelValue:
        layer = len(self.b.layers) - 1
        self.tail[node.name] = layer
        self.act[layer] = node.name
        return value

    def _call(self, node: fx.Node) -> None:
        op = _opname(node)
        if _DISPATCH.get(op) == "ignore":  # a check: handled before its arguments are even read
            self._ignore(node, op, (), {})
            return
        args = fx.node.map_arg(node.args, lambda n: self.env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.env[n.name])
        if op == "sym_size":
            self.env[node.name] = (args[0].prov.shape[args[1]] if isinstance(args[0], ChannelValue)
                                   else _target(node)(*args))
            return
        from_data = any(n.name in self.data for n in node.all_input_nodes)
        ids = node.args[1] if op == "embedding" else None
        if from_data and isinstance(ids, fx.Node) and ids.name in self.data and isinstance(args[0], torch.Tensor):
            self.env[node.name] = self._embedding(node, args)
            return
        if not _has_value(args) and not _has_value(kwargs):  # constant folding with real tensors
            self.env[node.name] = _target(node)(*args, **kwargs)
            if from_data:
                self.data.add(node.name)
            return
        handler = self._handler(op)
        if handler is None:
            raise UnsupportedOpError(
                f"operation {op!r} (node {node.name!r}) cannot be mapped to a graph; the operations that can are "
                "listed in the README's 'Ops covered' section (emergence.adapters.SUPPORTED_TORCH_OPS)"
            )
        self.env[node.name] = handler(node, op, args, kwargs)

    def _handler(self, op: str) -> Callable[..., Any] | None:
        name = _DISPATCH.get(op)
        return getattr(self, f"_{name}") if name else None

    def _ignore(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> None:
        """Checks that compute nothing (``_assert_tensor_metadata`` ...): no value, nothing depends on them."""
        self.env[node.name] = None

    def _dense(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        if op == "baddbmm":  # input + b1 @ b2
            prod = self.b.product(args[1], args[2]) if all(isinstance(a, ChannelValue) for a in args[1:3]) else None
            if prod is None:
                raise UnsupportedOpError(f"baddbmm (node {node.name!r}) with a constant factor is not supported")
            return self.b.merge([args[0], prod]) if isinstance(args[0], ChannelValue) else prod
        if op in ("mm", "matmul", "bmm") and isinstance(args[0], ChannelValue) and isinstance(args[1], ChannelValue):
            return self.b.product(args[0], args[1])  # attention: a product of two activations
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
        names: tuple[str, ...] = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
                                  "output_padding", "groups")
        if op.startswith("conv_transpose"):
            names = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
        elif op != "convolution":
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        a = {**dict(zip(names, args, strict=False)), **kwargs}
        groups = int(a.get("groups", 1))
        if not isinstance(w, torch.Tensor):
            raise UnsupportedOpError(f"{op} (node {node.name!r}) needs a constant weight")
        shape = _out_shape(node, x.prov.shape[0])
        if a.get("transposed") or op.startswith("conv_transpose"):
            value = self.b.conv_transpose(x, w, groups=groups, out_shape=shape, name=_layer_name(node),
                                          kind=_kind(node, op))
            return self._new_layer(node, value)
        window = _conv_window(node, w, a.get("stride"), a.get("padding"), a.get("dilation"))
        value = self.b.conv(x, w, groups=groups, out_shape=shape, name=_layer_name(node), kind=_kind(node, op),
                            window=window)
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
        value = self.b.scale(x, scale.reshape(shape), exclusive=len(_src(node, 0).users) == 1)
        self._unary(node, _src(node, 0))
        return value if op == "batch_norm" else (value, None, None)

    def _elementwise(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        self._unary(node, _src(node, 0))
        x = args[0]
        keep = op in ("dropout", "clone", "contiguous", "alias", "detach", "_to_copy", "to", "lift_fresh_copy")
        value = x if keep else x.derive(x.prov)
        return (value, None) if op == "native_dropout" else value

    def _embedding(self, node: fx.Node, args: tuple) -> ChannelValue:
        weight, ids = args[0], args[1]
        shape = (*ids.shape, int(weight.shape[1]))
        return self._new_layer(node, self.b.table(_layer_name(node), int(weight.shape[1]), shape))

    def _reduce(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if dims is None or (isinstance(dims, (list, tuple)) and not dims):
            dims = list(range(1, x.prov.dim()))
        dims = [int(d) % x.prov.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        if op in ("var", "std"):
            keepdim = bool(kwargs.get("keepdim", args[3] if len(args) > 3 else False))
        else:
            keepdim = bool(args[2] if len(args) > 2 and not isinstance(args[2], torch.dtype) else
                           kwargs.get("keepdim", False))
        if op in ("mean", "var", "std") and keepdim:  # perhaps a normalisation statistic (see _normalising)
            self.stat[node.name] = self._root(_src(node, 0))
        return self.b.reduce(x, dims, keepdim=keepdim)

    def _softmax(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        dim = int(args[1] if len(args) > 1 else kwargs.get("dim", -1)) % args[0].prov.dim()
        self._unary(node, _src(node, 0))
        return self.b.spread(args[0], dim)

    def _attention(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        q, k, v = args[:3]
        mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
        if not all(isinstance(t, ChannelValue) for t in (q, k, v)):
            raise UnsupportedOpError(f"{op} (node {node.name!r}) with constant queries, keys or values")
        scores = self.b.product(q, k.derive(k.prov.transpose(-1, -2)))
        if isinstance(mask, ChannelValue):
            scores = self.b.merge([scores, mask])
        out = self.b.product(self.b.spread(scores, scores.prov.dim() - 1), v)
        return out if op == "scaled_dot_product_attention" else (out, *[None] * 8)

    def _mask(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        """Masking selects entries but adds no dependency: data flows as if unmasked (a causal or padding
        mask removes positions, never a feature of a head, so the channel graph is the same)."""
        if op == "where":
            vals = [a for a in args[1:3] if isinstance(a, ChannelValue)]
            if not vals:
                raise UnsupportedOpError(f"where (node {node.name!r}) selects between constants by data")
            if len(vals) == 2:
                return self.b.merge(vals)
            src = _src(node, 1 if isinstance(args[1], ChannelValue) else 2)
            self._continue_chain(node, src)
            return vals[0].derive(vals[0].prov.expand(_out_shape(node, vals[0].prov.shape[0])).clone())
        self._unary(node, _src(node, 0))
        return args[0].derive(args[0].prov)

    def _einsum(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        try:
            return self.b.einsum(str(args[0]), [a if isinstance(a, ChannelValue) else None for a in args[1]])
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{exc} (node {node.name!r})") from exc

    def _shape(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        if op in ("view", "_unsafe_view"):  # the provenance may be a strided copy: reshape is view's meaning
            return x.derive(x.prov.reshape(args[1]))
        out = _target(node)(x.prov, *args[1:], **kwargs)
        if isinstance(out, (list, tuple)):
            return type(out)(x.derive(o) for o in out)
        return x.derive(out)

    def _resize(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x = args[0]
        self._unary(node, _src(node, 0))
        return self.b.resize(x, _out_shape(node, x.prov.shape[0]))

    def _pad(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x, pads = args[0], list(args[1])
        mode = args[2] if op == "pad" and len(args) > 2 else kwargs.get("mode", "constant")
        if mode == "constant":
            return x.derive(F.pad(x.prov, pads, value=-1))
        padded = F.pad(x.prov.double(), pads, mode=mode)
        return x.derive(padded.long())

    def _pool(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        value = self.b.pool(x, _out_shape(node, x.prov.shape[0]), _pool_window(op, args, kwargs))
        return (value, None) if op == "max_pool2d_with_indices" else value

    def _add(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        a, b = args[0], args[1]
        if isinstance(a, ChannelValue) and isinstance(b, ChannelValue):
            src = self._normalising(node, _src(node, 0), _src(node, 1))
            if src is not None:  # x - mean(x): normalisation, elementwise on x
                x = a if src is node.args[0] else b
                self._unary(node, src)
                return x.derive(x.prov.expand(_out_shape(node, x.prov.shape[0])).clone())
            alpha = float(kwargs.get("alpha", 1.0))
            sign = -alpha if op.startswith("sub") else alpha
            signs = [sign, 1.0] if op == "rsub" else [1.0, sign]
            self._continue_chain(node, _src(node, 0), _src(node, 1))
            if self._root(_src(node, 0)) == self._root(_src(node, 1)):  # x + 0.04 x^3 (tanh GELU): elementwise on x
                self.root[node.name] = self._root(_src(node, 0))
                return self.b.merge([a, b], combine="max")
            if self._activation_follows(node):  # relu(branch + shortcut): the sum's units are the branch's
                res = self.b.residual([a, b], signs)
                if res is not None:
                    self.tail[node.name] = res[1]
                    self.act[res[1]] = node.name
                    return res[0]
            return self.b.merge([a, b], signs=signs)
        x = a if isinstance(a, ChannelValue) else b  # a constant (bias): elementwise
        self._unary(node, _src(node, 0 if isinstance(a, ChannelValue) else 1))
        return x

    @staticmethod
    def _activation_follows(node: fx.Node) -> bool:
        """Whether every use of ``node`` is a nonlinearity (the residual rule, see ``ChannelGraphBuilder.residual``)."""
        return bool(node.users) and all(u.op == "call_function" and _opname(u) in _ACTIVATIONS for u in node.users)

    def _mul(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        a, b = args[0], args[1]
        if isinstance(a, ChannelValue) and isinstance(b, ChannelValue):
            src = self._normalising(node, _src(node, 0), _src(node, 1))
            if src is not None:  # x * rsqrt(var(x) + eps): normalisation, elementwise on x
                x = a if src is node.args[0] else b
                self._unary(node, src)
                return x.derive(x.prov.expand(_out_shape(node, x.prov.shape[0])).clone())
            self._continue_chain(node, _src(node, 0), _src(node, 1))
            if self._root(_src(node, 0)) == self._root(_src(node, 1)):  # x * sigmoid(x): still elementwise on x
                self.root[node.name] = self._root(_src(node, 0))
            return self.b.merge([a, b], combine="max")
        src = _src(node, 0 if isinstance(a, ChannelValue) else 1)
        other = node.args[1] if isinstance(a, ChannelValue) else node.args[0]
        if isinstance(other, fx.Node) and other.name in self.data:  # a data-dependent mask: selects, adds nothing
            self._continue_chain(node, src)
            x = a if isinstance(a, ChannelValue) else b
            return x.derive(x.prov.expand(_out_shape(node, x.prov.shape[0])).clone())
        if not isinstance(a, ChannelValue):
            if op.startswith("div"):  # c / x: a scalar c makes it elementwise on x (RMSNorm's 1 / sqrt(...))
                if torch.as_tensor(a).numel() != 1:
                    raise UnsupportedOpError(f"dividing a per-channel constant by a tensor (node {node.name!r}) "
                                             "is not supported")
                self._unary(node, src)
                return b.derive(b.prov)
            a, b = b, a
        factor = torch.as_tensor(b, dtype=torch.float64)
        self._unary(node, src)
        if factor.numel() == 1:  # a scalar is part of an elementwise formula (GELU's 0.5, hard-swish's 1/6)
            return a.derive(a.prov)
        if op.startswith("div"):
            factor = 1.0 / factor
        return self.b.scale(a, factor, exclusive=len(src.users) == 1)

    def _cat(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        # torch.cat skips empty 1-D tensors (an empty key/value cache): they hold no entries
        parts = [p for p in args[0] if not (isinstance(p, torch.Tensor) and p.dim() == 1 and p.numel() == 0)]
        dim = int(args[1] if len(args) > 1 else kwargs.get("dim", 0))
        if len(parts) == 1 and isinstance(parts[0], ChannelValue):
            return parts[0]
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
        self._unary(node, _src(node, 0))
        return seq[i]
