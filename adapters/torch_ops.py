"""ATen operations of an exported PyTorch program mapped to the format-independent channel graph.

:class:`_Walker` visits the nodes of a ``torch.export`` program once, in order, reads each
operation's arguments and calls the IR-neutral handler it maps to (:class:`emergence.adapters._front.Front`,
through :mod:`emergence.adapters.op_registry`): dense and conv layers make nodes and weighted edges, batch
norm folds into the layer before it, elementwise and shape operations carry each slot's provenance.
:data:`SUPPORTED_TORCH_OPS` lists what is mapped; anything else is refused with
:class:`~emergence.errors.UnsupportedOpError`.

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

from emergence.adapters._channels import ChannelValue
from emergence.adapters._front import Front
from emergence.adapters._window import Window
from emergence.adapters.op_registry import TORCH, TORCH_ACTIVATIONS, dispatch, ops_of, supported
from emergence.adapters.signatures import exported_user_inputs
from emergence.defaults import DEFAULT_GRANULARITY
from emergence.errors import UnsupportedOpError

__all__ = ['SUPPORTED_TORCH_OPS']

_DISPATCH = dispatch(TORCH)  # op name -> semantic handler (the method "_<handler>"), see op_registry
_DENSE, _CONV, _RECURRENT = ops_of(TORCH, "dense"), ops_of(TORCH, "conv"), ops_of(TORCH, "recurrence")
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


def _name(arg: Any) -> str:
    """The name of an argument computed by the model, ``""`` for a literal."""
    return arg.name if isinstance(arg, fx.Node) else ""


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
                if op in _RECURRENT:  # [batch, time, features]: steps are positions, like tokens
                    return "tokens"
                if op in _DENSE:
                    val = u.args[0].meta.get("val") if isinstance(u.args[0], fx.Node) else None
                    return "tokens" if val is not None and len(val.shape) >= 3 else "dense"
                nxt.append(u)
        frontier = nxt
    return "dense"


class _Walker(Front):
    """Reads an exported program's graph and feeds the IR-neutral :class:`Front`."""

    def __init__(self, ep: torch.export.ExportedProgram, state: dict[str, torch.Tensor] | None = None,
                 granularity: str = DEFAULT_GRANULARITY) -> None:
        super().__init__(granularity, TORCH_ACTIVATIONS)
        self.ep = ep
        self.state = state or {}
        self.env: dict[str, Any] = {}  # fx node name -> ChannelValue (data) or a constant
        self.nodes: dict[str, fx.Node] = {n.name: n for n in ep.graph.nodes}

    def uses(self, name: str) -> int:
        return len(self.nodes[name].users)

    def user_ops(self, name: str) -> list[str]:
        return [_opname(u) if u.op == "call_function" else u.op for u in self.nodes[name].users]

    def _constant(self, spec: Any) -> torch.Tensor:
        name = spec.target
        if name in self.state:
            return self.state[name]
        if name in self.ep.state_dict:
            return self.ep.state_dict[name]
        return self.ep.constants[name]

    def run(self) -> None:
        sig = self.ep.graph_signature
        users = exported_user_inputs(self.ep)
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
                self.env[node.name] = self.input(node.name, shape, per_element=per_element, index=floats)
                floats += 1
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "get_attr":
                self.env[node.name] = getattr(self.ep.graph_module, str(node.target))

    def _call(self, node: fx.Node) -> None:
        op = _opname(node)
        if _DISPATCH.get(op) == "ignore":  # a check: handled before its arguments are even read
            self._ignore(node, op, (), {})
            self.env[node.name] = None
            return
        args: Any = fx.node.map_arg(node.args, lambda n: self.env[n.name])
        kwargs: Any = fx.node.map_arg(node.kwargs, lambda n: self.env[n.name])
        if op == "sym_size":
            self.env[node.name] = (args[0].prov.shape[args[1]] if isinstance(args[0], ChannelValue)
                                   else _target(node)(*args))
            return
        from_data = any(n.name in self.data for n in node.all_input_nodes)
        ids = node.args[1] if op == "embedding" else None
        if from_data and isinstance(ids, fx.Node) and ids.name in self.data and isinstance(args[0], torch.Tensor):
            weight = args[0]
            self.env[node.name] = self.embedding(node.name, name=_layer_name(node), features=int(weight.shape[1]),
                                                 shape=(*args[1].shape, int(weight.shape[1])))
            return
        if not _has_value(args) and not _has_value(kwargs):  # constant folding with real tensors
            self.env[node.name] = _target(node)(*args, **kwargs)
            if from_data:
                self.data.add(node.name)
            return
        name = _DISPATCH.get(op)
        if name is None:
            raise UnsupportedOpError(
                f"operation {op!r} (node {node.name!r}) cannot be mapped to a graph; the operations that can are "
                "listed in the README's 'Ops covered' section (emergence.adapters.SUPPORTED_TORCH_OPS)"
            )
        try:
            self.env[node.name] = getattr(self, f"_{name}")(node, op, args, kwargs)
        except (RuntimeError, ValueError, IndexError) as exc:  # shapes the walk did not expect
            raise UnsupportedOpError(f"operation {op!r} (node {node.name!r}) could not be mapped: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc

    # -- readers: ATen arguments -> the IR-neutral handlers ---------------------------------------
    def _ignore(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> None:
        """Checks that compute nothing (``_assert_tensor_metadata`` ...): no value, nothing depends on them."""

    def _dense(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        if op == "baddbmm":  # input + b1 @ b2
            if not all(isinstance(a, ChannelValue) for a in args[1:3]):
                raise UnsupportedOpError(f"baddbmm (node {node.name!r}) with a constant factor is not supported")
            prod = self.product(args[1], args[2])
            return self.b.merge([args[0], prod]) if isinstance(args[0], ChannelValue) else prod
        if op in ("mm", "matmul", "bmm") and isinstance(args[0], ChannelValue) and isinstance(args[1], ChannelValue):
            return self.product(args[0], args[1])  # attention: a product of two activations
        if op == "linear":
            x, w = args[0], args[1]
        elif op == "addmm":
            x, w = args[1], args[2].t() if isinstance(args[2], torch.Tensor) else args[2]
        else:
            x, w = args[0], args[1].t() if isinstance(args[1], torch.Tensor) else args[1]
        if not isinstance(x, ChannelValue) or not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise UnsupportedOpError(f"{op} (node {node.name!r}) needs a constant 2-D weight and a tensor input")
        return self.dense(node.name, x, w, name=_layer_name(node), kind=_kind(node, op))

    def _conv(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x, w = args[0], args[1]
        names: tuple[str, ...] = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
                                  "output_padding", "groups")
        if op.startswith("conv_transpose"):
            names = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
        elif op != "convolution":
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        a = {**dict(zip(names, args, strict=False)), **kwargs}
        if not isinstance(w, torch.Tensor):
            raise UnsupportedOpError(f"{op} (node {node.name!r}) needs a constant weight")
        transposed = bool(a.get("transposed")) or op.startswith("conv_transpose")
        window = _conv_window(node, w, a.get("stride"), a.get("padding"), a.get("dilation"))
        return self.conv(node.name, x, w, groups=int(a.get("groups", 1)), shape=_out_shape(node, x.prov.shape[0]),
                         name=_layer_name(node), kind=_kind(node, op), window=window, transposed=transposed)

    def _batch_norm(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x, weight, _bias, _mean, var = args[:5]
        eps = args[7] if op == "batch_norm" else args[6]
        if op == "batch_norm" and args[5]:
            raise UnsupportedOpError(f"batch norm in training mode (node {node.name!r}); call model.eval() first")
        scale = torch.rsqrt(var.double() + eps)
        if weight is not None:
            scale = scale * weight.double()
        value = self.batch_norm(node.name, _src(node, 0).name, x, scale)
        return value if op == "batch_norm" else (value, None, None)

    def _elementwise(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        keep = op in ("dropout", "clone", "contiguous", "alias", "detach", "_to_copy", "to", "lift_fresh_copy")
        value = self.elementwise(node.name, _src(node, 0).name, args[0], keep=keep)
        return (value, None) if op == "native_dropout" else value

    def _reduce(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if op in ("var", "std"):
            keepdim = bool(kwargs.get("keepdim", args[3] if len(args) > 3 else False))
        else:
            keepdim = bool(args[2] if len(args) > 2 and not isinstance(args[2], torch.dtype) else
                           kwargs.get("keepdim", False))
        dims = None if dims is None else (list(dims) if isinstance(dims, (list, tuple)) else [dims])
        return self.reduce(node.name, _src(node, 0).name, args[0], dims, keepdim=keepdim,
                           statistic=op in ("mean", "var", "std"))

    def _softmax(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        return self.softmax(node.name, _src(node, 0).name, args[0], int(args[1] if len(args) > 1 else
                                                                        kwargs.get("dim", -1)))

    def _attention(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        q, k, v = args[:3]
        if not all(isinstance(t, ChannelValue) for t in (q, k, v)):
            raise UnsupportedOpError(f"{op} (node {node.name!r}) with constant queries, keys or values")
        out = self.attention(q, k, v, args[3] if len(args) > 3 else kwargs.get("attn_mask"))
        return out if op == "scaled_dot_product_attention" else (out, *[None] * 8)

    def _select(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        vals = [a for a in args if isinstance(a, ChannelValue)]
        shape = _out_shape(node, vals[0].prov.shape[0]) if vals else ()
        if op == "where":
            return self.select(node.name, [_name(a) for a in node.args[1:3]], args[1:3], shape)
        return self.select(node.name, [_src(node, 0).name], args[:1], shape)  # masked_fill(x, mask, value)

    def _einsum(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        return self.einsum(str(args[0]), args[1], f"node {node.name!r}")

    def _resize(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        from emergence.adapters._resize import scale_of

        x = args[0]
        linear = "linear" in op and "_aa" not in op  # bilinear / trilinear / linear, not anti-aliased
        rest = list(args[2 + int(linear):])  # after (input, output_size[, align_corners])
        vec = getattr(node.target, "_overloadname", "") == "vec"
        nsp = x.prov.dim() - 2
        factors = (rest[0] if rest else None) if vec else rest[:nsp]
        scales = [scale_of(f) for f in factors] if factors else None
        if linear:
            mode, transform, nearest = "linear", "align_corners" if args[2] else "pytorch_half_pixel", "floor"
        elif "nearest_exact" in op:
            mode, transform, nearest = "nearest", "half_pixel", "round_prefer_ceil"
        else:
            mode, transform, nearest = ("nearest" if "nearest" in op else "cubic"), "asymmetric", "floor"
        return self.resize(x, _out_shape(node, x.prov.shape[0]), mode=mode,
                           scales=scales, transform=transform, nearest=nearest)

    def _pool(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        value = self.pool(x, _out_shape(node, x.prov.shape[0]), _pool_window(op, args, kwargs))
        return (value, None) if op == "max_pool2d_with_indices" else value

    def _add(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        sign = -float(kwargs.get("alpha", 1.0)) if op.startswith("sub") else float(kwargs.get("alpha", 1.0))
        signs = [sign, 1.0] if op == "rsub" else [1.0, sign]
        x = next(a for a in args[:2] if isinstance(a, ChannelValue))
        return self.add(node.name, [_name(a) for a in node.args[:2]], args[:2], _out_shape(node, x.prov.shape[0]),
                        signs)

    def _mul(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        x = next(a for a in args[:2] if isinstance(a, ChannelValue))
        return self.mul(node.name, [_name(a) for a in node.args[:2]], args[:2], _out_shape(node, x.prov.shape[0]),
                        divide=op.startswith("div"))

    def _concat(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> ChannelValue:
        # torch.cat skips empty 1-D tensors (an empty key/value cache): they hold no entries
        parts = [p for p in args[0] if not (isinstance(p, torch.Tensor) and p.dim() == 1 and p.numel() == 0)]
        return self.concat(parts, int(args[1] if len(args) > 1 else kwargs.get("dim", 0)))

    def _recurrence(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> tuple:
        x, hx, params, has_biases, num_layers, _dropout, _train, bidirectional, batch_first = args[:9]
        kind = {"lstm": "LSTM", "gru": "GRU"}.get(op, "RNN")
        where = f"{kind} {_layer_name(node)!r}"
        if not batch_first:
            raise UnsupportedOpError(f"{where} reads [time, batch, features]; the probe batch is dim 0 here: build "
                                     "it with batch_first=True")
        if int(num_layers) != 1:
            raise UnsupportedOpError(f"{where} stacks {num_layers} layers, whose inner outputs cannot be recorded; "
                                     "stack one-layer modules instead (nn.LSTM(..., num_layers=1) each)")
        if _has_value(list(hx) if isinstance(hx, (list, tuple)) else [hx]):
            raise UnsupportedOpError(f"{where} starts from a state the model computes; only a constant initial "
                                     "state (zeros by default) is supported")
        per = 4 if has_biases else 2
        weights = [(params[d * per], params[d * per + 1]) for d in range(2 if bidirectional else 1)]
        y, last = self.recurrence(node.name, x, weights, gates={"lstm": 4, "gru": 3}.get(op, 1),
                                  carry=op in ("lstm", "gru"), name=_layer_name(node), kind=kind)
        return (y, last, last) if op == "lstm" else (y, last)

    # -- layout: the op itself applied to the provenance ----------------------------------------------
    def _shape(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        if op in ("view", "_unsafe_view"):  # the provenance may be a strided copy: reshape is view's meaning
            return x.derive(x.prov.reshape(args[1]))
        out = _target(node)(x.prov, *args[1:], **kwargs)
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

    def _getitem(self, node: fx.Node, op: str, args: tuple, kwargs: dict) -> Any:
        seq, i = args
        if isinstance(seq, ChannelValue):  # indexing a tensor
            return seq.derive(seq.prov[i])
        if i == 0:  # a multi-output op's value (its statistics, indices or final states follow it)
            self.unary(node.name, _src(node, 0).name)
        return seq[i]
