"""ONNX operations mapped to the format-independent channel graph.

:class:`_Walker` folds constant subgraphs (weights produced by ``Constant``,
``ConstantOfShape``, ``Reshape``, ``Identity``... rather than stored as initializers),
takes concrete shapes from one small onnxruntime run, and feeds every node to
:class:`emergence.adapters._channels.ChannelGraphBuilder`, the same builder the PyTorch front-end
uses, so a model exported to ONNX gives the graph of its PyTorch original.
:data:`SUPPORTED_ONNX_OPS` lists what is mapped.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from emergence.adapters._channels import ChannelGraphBuilder, ChannelValue, Slots
from emergence.adapters._neurons import NeuronGraphBuilder
from emergence.adapters._window import Window
from emergence.adapters.op_registry import ONNX, dispatch, ops_of, supported
from emergence.errors import UnsupportedOpError

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16

__all__ = ["SUPPORTED_ONNX_OPS"]

_DISPATCH = dispatch(ONNX)  # op type -> semantic handler (the method "_<handler>"), see op_registry
_DENSE, _CONV = ops_of(ONNX, "dense"), ops_of(ONNX, "conv")
_KEEP_DIRECT = {"Identity", "Dropout", "Cast"}
#: Nonlinearities: a residual sum one of them reads is a layer's units (see ChannelGraphBuilder.residual).
_ACTIVATIONS = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
                "Gelu", "Softplus", "Mish", "Swish", "ThresholdedRelu", "Clip"}
#: ONNX operations the ONNX front-end maps (constant subgraphs of any op are folded first).
SUPPORTED_ONNX_OPS = supported(ONNX)


def _module_path(node: Any) -> str:
    """The PyTorch module path of the layer an ONNX node came from (``encoder.layer.0.output.dense``), as the
    dynamo exporter records it (``pkg.torch.onnx.name_scopes``) or the TorchScript exporter spells it in the
    node name (``/encoder/layer.0/output/dense/MatMul``); else the node's own name. So a layer is named the
    same from the module, the ``.pt2`` and the ONNX file."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes" and len(prop.value) <= 10_000:  # a file could hold anything
            try:
                scopes = ast.literal_eval(prop.value)  # literals only: never runs code
            except Exception:  # malformed (SyntaxError, ValueError, RecursionError ...): fall back to the name
                break
            if isinstance(scopes, list) and len(scopes) >= 2 and all(isinstance(s, str) for s in scopes):
                return scopes[-2] or scopes[-1]
            break
    name = node.name or ""
    parts = name.split("/")
    if name.startswith("/") and len(parts) > 2:
        path: list[str] = []
        for seg in parts[1:-1]:  # a container's child is spelled with its parent's name: body, body.0
            if path and seg.startswith(path[-1] + "."):
                path[-1] = seg
            else:
                path.append(seg)
        return ".".join(path)
    return name or node.output[0]


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _window(node: Any, kernel: list[int], in_sizes: Sequence[int], out_sizes: Sequence[int]) -> Window:
    """The geometry of an ONNX Conv or pool: ``pads`` (begin half), ``auto_pad``, strides and dilations."""
    a = _attrs(node)
    n = len(kernel)
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max((o - 1) * s + d * (k - 1) + 1 - i, 0)
                 for o, s, d, k, i in zip(out_sizes, strides, dil, kernel, in_sizes, strict=False)]
        pad = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    elif auto == "VALID":
        pad = [0] * n
    else:
        pad = list(a.get("pads", [0] * (2 * n)))[:n]
    return Window.of(kernel, strides, pad, dil)


def _gather_elements(node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """GatherElements by ``numpy.take_along_axis`` (onnx's reference evaluator fails on axes of over 32
    entries: it uses ``numpy.choose``)."""
    data, idx = inputs[0], np.asarray(inputs[1], dtype=np.int64)
    axis = int(_attrs(node).get("axis", 0)) % max(data.ndim, 1)
    return [np.take_along_axis(data, np.where(idx < 0, idx + data.shape[axis], idx), axis=axis)]


#: Ops whose constants are folded here rather than by onnx's reference evaluator (which gets them wrong).
_OWN_FOLDERS = {"GatherElements": _gather_elements}

#: Elements a folded constant may have (256 MiB of float32): a file cannot make folding allocate more.
_FOLD_LIMIT = 1 << 26


def _check_fold_size(node: Any, const: dict[str, np.ndarray]) -> None:
    """Refuse to fold an op whose constant inputs ask for an output above ``_FOLD_LIMIT`` elements."""
    vals = [const.get(n) for n in node.input]
    size = None
    try:
        if node.op_type in ("ConstantOfShape", "Expand") and vals[-1] is not None:
            shape = np.asarray(vals[-1], dtype=np.int64).ravel().tolist()
            base = [] if node.op_type == "ConstantOfShape" else list(np.shape(vals[0]))  # type: ignore[arg-type]
            n = max(len(shape), len(base))
            padded = [1] * (n - len(base)) + base, [1] * (n - len(shape)) + shape
            dims = [max(a, b) for a, b in zip(*padded, strict=False)]
            size = int(np.prod(dims, dtype=object)) if dims else 1
        elif node.op_type == "Tile":
            size = int(np.size(vals[0])) * int(np.prod(np.asarray(vals[1], dtype=object).ravel()))  # type: ignore[arg-type]
        elif node.op_type == "Range":
            start, limit, delta = (float(np.asarray(v).ravel()[0]) for v in vals[:3])
            size = max(math.ceil((limit - start) / delta), 0) if delta else None
    except (TypeError, ValueError, IndexError, OverflowError):
        size = None
    if size is not None and size > _FOLD_LIMIT:
        raise UnsupportedOpError(f"constant op {node.op_type!r} (node {node.name!r}) would make {size:,} elements, "
                                 f"more than the {_FOLD_LIMIT:,} a constant may have; refused")


class _Walker:
    def __init__(self, model: Any, granularity: str = "channel") -> None:
        import onnx.numpy_helper as nh

        self.model = model
        self.graph = model.graph
        self.b = NeuronGraphBuilder() if granularity == "neuron" else ChannelGraphBuilder()
        self.const: dict[str, np.ndarray] = {t.name: nh.to_array(t) for t in self.graph.initializer}
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.env: dict[str, ChannelValue] = {}
        self.tail: dict[str, int] = {}
        self.act: dict[int, str] = {}
        self.data: set[str] = set()  # values computed from integer inputs (token ids, masks)
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.users: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for name in dict.fromkeys(i for i in n.input if i):
                self.users.setdefault(name, []).append(n)
        self.root: dict[str, str] = {}  # as in the PyTorch walker: normalisation written out
        self.stat: dict[str, str] = {}
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        for out in self.graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        self.inputs = [i for i in self.graph.input if i.name not in self.const]
        if not self.inputs:
            raise UnsupportedOpError("the model takes no input")
        self.input = self.inputs[0]
        self.shapes: dict[str, tuple[int, ...]] = {}

    # -- constants --------------------------------------------------------------
    def fold(self, node: Any) -> bool:
        """Evaluate ``node`` if all its inputs are constants (the reference evaluator computes it)."""
        from onnx.reference import ReferenceEvaluator

        if node.op_type == "Shape" and node.input[0] in self.shapes:
            shape = np.array(self.shapes[node.input[0]], dtype=np.int64)
            a = _attrs(node)
            self.const[node.output[0]] = shape[a.get("start", 0) : a.get("end", len(shape))]
            return True
        if any(name and name not in self.const for name in node.input) or node.op_type in ("RandomNormal",
                                                                                              "RandomUniform"):
            return False
        if node.op_type == "Gather" and node.input[1] in self.data and node.input[0] in self.const:
            return False  # an embedding lookup of token ids: makes nodes (see _gather)
        _check_fold_size(node, self.const)
        try:
            feeds = {n: self.const[n] for n in node.input if n}
            own = _OWN_FOLDERS.get(node.op_type)
            outs = own(node, list(feeds.values())) if own is not None else \
                ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)
        except Exception as exc:  # the reference evaluator raises many types
            raise UnsupportedOpError(f"could not fold constant op {node.op_type!r} (node {node.name!r}): {exc}") \
                from exc
        for name, value in zip(node.output, outs, strict=False):
            if name:
                self.const[name] = np.asarray(value)
                if any(n in self.data for n in node.input):
                    self.data.add(name)
        return True

    def apply(self, node: Any, prov_inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run ``node`` on provenance arrays in place of its tensor inputs."""
        from onnx.reference import ReferenceEvaluator

        feeds = {n: self.const[n] for n in node.input if n and n in self.const}
        feeds.update(prov_inputs)
        return list(ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds))

    # -- walk -------------------------------------------------------------------------
    def run(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:
        self.shapes = shapes
        kind = self._first_layer_kind()
        per_element = "tokens" if kind == "tokens" else kind == "dense"
        floats = 0
        for inp in self.inputs:
            shape = (batch, *shapes[inp.name][1:])
            if inp.type.tensor_type.elem_type not in _FLOAT_TYPES:  # token ids, masks: data, not units
                self.const[inp.name] = np.zeros(shape, dtype=np.int64 if inp.type.tensor_type.elem_type != 9
                                                else bool)
                self.data.add(inp.name)
                continue
            self.env[inp.name] = self.b.input(shape, per_element=per_element,
                                              name="input" if floats == 0 else f"input:{inp.name}")
            self.tail[inp.name] = len(self.b.layers) - 1
            self.act[len(self.b.layers) - 1] = inp.name
            floats += 1
        for node in self.graph.node:
            if self.fold(node):
                continue
            handler = self._handler(node.op_type)
            if handler is None:
                raise UnsupportedOpError(
                    f"ONNX op {node.op_type!r} (node {node.name!r}) cannot be mapped to a graph; the ops that can "
                    "are listed in the README's 'Ops covered' section (emergence.adapters.SUPPORTED_ONNX_OPS)"
                )
            outs = handler(node)
            for name, value in zip(node.output, outs if isinstance(outs, list) else [outs], strict=False):
                if name and value is not None:
                    self.env[name] = value

    def _first_layer_kind(self) -> str:
        frontier, seen = {self.input.name}, set()
        while frontier:
            nxt: set[str] = set()
            for node in self.graph.node:
                if node.name in seen or not frontier.intersection(node.input):
                    continue
                seen.add(node.name)
                if node.op_type in _CONV:
                    return "conv"
                if node.op_type in _DENSE:
                    return "tokens" if len(self.shapes.get(node.input[0], ())) >= 3 else "dense"
                nxt.update(o for o in node.output if o)
            frontier = nxt
        return "dense"

    def _handler(self, op: str) -> Callable[[Any], Any] | None:
        name = _DISPATCH.get(op)
        return getattr(self, f"_{name}") if name else None

    def _value(self, node: Any, i: int = 0) -> ChannelValue:
        name = node.input[i]
        if name not in self.env:
            raise UnsupportedOpError(f"{node.op_type} (node {node.name!r}): input {name!r} is neither data nor "
                                     "constant")
        return self.env[name]

    def _continue_chain(self, node: Any, *srcs: str) -> None:
        """As the PyTorch walker: an elementwise function of one layer's chain extends that chain."""
        layers = {self.tail.get(s) for s in srcs}
        layer = next(iter(layers)) if len(layers) == 1 else None
        if layer is not None and self.b.layers[layer].kind != "input":
            self.tail[node.output[0]] = layer
            self.act[layer] = node.output[0]

    def _unary(self, node: Any, src: str) -> None:
        out = node.output[0]
        self.root[out] = self.root.get(src, src)
        if src in self.stat:
            self.stat[out] = self.stat[src]
        self._continue_chain(node, src)

    def _normalising(self, node: Any, a: str, b: str) -> str | None:
        sa, sb = self.stat.get(a), self.stat.get(b)
        if sa is not None and sa == sb:
            self.stat[node.output[0]] = sa
            return None
        if sb is not None and sb == self.root.get(a, a) and sa is None:
            return a
        if sa is not None and sa == self.root.get(b, b) and sb is None:
            return b
        return None

    def _expanded(self, x: ChannelValue, node: Any) -> ChannelValue:
        shape = (x.prov.shape[0], *self.shapes[node.output[0]][1:])
        return x.derive(x.prov.expand(shape).clone())

    def _gather(self, node: Any) -> Any:
        if node.input[0] in self.const and node.input[1] in self.data:  # embedding lookup of token ids
            table = self.const[node.input[0]]
            if table.ndim != 2 or int(_attrs(node).get("axis", 0)) != 0:
                raise UnsupportedOpError(f"Gather (node {node.name!r}) of token ids needs a 2-D table on axis 0")
            ids = self.const[node.input[1]]
            value = self.b.table(_module_path(node), int(table.shape[1]), (*ids.shape, table.shape[1]))
            return self._layer(node, value)
        return self._shape(node)

    def _reduce(self, node: Any) -> ChannelValue:
        x = self._value(node)
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const[node.input[1]].tolist()
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(1, x.prov.dim()))
        keepdims = bool(a.get("keepdims", 1))
        if node.op_type in ("ReduceMean", "ReduceSumSquare", "ReduceL2") and keepdims:
            self.stat[node.output[0]] = self.root.get(node.input[0], node.input[0])
        return self.b.reduce(x, [int(ax) % x.prov.dim() for ax in axes], keepdim=keepdims)

    def _softmax(self, node: Any) -> ChannelValue:
        x = self._value(node)
        axis = int(_attrs(node).get("axis", -1)) % x.prov.dim()
        self._unary(node, node.input[0])
        return self.b.spread(x, axis)

    def _einsum(self, node: Any) -> ChannelValue:
        equation = _attrs(node)["equation"]
        equation = equation.decode() if isinstance(equation, bytes) else str(equation)
        try:
            return self.b.einsum(equation, [self.env.get(n) for n in node.input])
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{exc} (node {node.name!r})") from exc

    def _where(self, node: Any) -> ChannelValue:
        """Masking selects entries but adds no dependency (as in the PyTorch walker)."""
        vals = [n for n in node.input[1:3] if n in self.env]
        if not vals:
            raise UnsupportedOpError(f"Where (node {node.name!r}) selects between constants by data")
        if len(vals) == 2:
            return self._expanded(self.b.merge([self.env[v] for v in vals]), node)
        self._unary(node, vals[0])
        return self._expanded(self.env[vals[0]], node)

    def _activation_follows(self, node: Any) -> bool:
        """Whether every use of ``node``'s output is a nonlinearity (as in the PyTorch walker)."""
        users = self.users.get(node.output[0], [])
        return bool(users) and all(u.op_type in _ACTIVATIONS for u in users) \
            and self.consumers.get(node.output[0], 0) == len(users)

    def _data_mask(self, node: Any) -> None:
        """A test of data (NaN checks, comparisons, logic): a mask, kept as a constant of its shape marked as
        data, which selects entries and adds no dependency."""
        out = node.output[0]
        shape = self.shapes.get(out)
        if shape is None:
            shape = np.broadcast_shapes(*[tuple(self.env[n].prov.shape) if n in self.env else np.shape(self.const[n])
                                          for n in node.input if n])
        self.const[out] = np.zeros(shape, dtype=bool)
        self.data.add(out)
        return None

    def _resize(self, node: Any) -> ChannelValue:
        x = self._value(node)
        self._unary(node, node.input[0])
        return self.b.resize(x, (x.prov.shape[0], *self.shapes[node.output[0]][1:]))

    def _layer(self, node: Any, value: ChannelValue) -> ChannelValue:
        layer = len(self.b.layers) - 1
        self.tail[node.output[0]] = layer
        self.act[layer] = node.output[0]
        return value

    def _dense(self, node: Any) -> ChannelValue:
        a = _attrs(node)
        if node.op_type == "Gemm":
            if a.get("transA", 0) or node.input[1] not in self.const:
                raise UnsupportedOpError(f"Gemm (node {node.name!r}) needs data as A (not transposed) and constant B")
            w = self.const[node.input[1]]
            w = w if a.get("transB", 0) else w.T
            w = w * a.get("alpha", 1.0)
        else:
            if node.input[0] in self.env and node.input[1] in self.env:  # attention: two activations
                return self.b.product(self.env[node.input[0]], self.env[node.input[1]])
            if node.input[1] not in self.const or self.const[node.input[1]].ndim != 2:
                raise UnsupportedOpError(f"MatMul (node {node.name!r}) needs a constant 2-D right-hand matrix")
            w = self.const[node.input[1]].T
        x = self._value(node)
        return self._layer(node, self.b.linear(x, torch.tensor(w), name=_module_path(node) or
                                               node.output[0], kind="Linear"))

    def _conv(self, node: Any) -> ChannelValue:
        if node.input[1] not in self.const:
            raise UnsupportedOpError(f"Conv (node {node.name!r}) needs a constant weight")
        w = torch.tensor(self.const[node.input[1]])
        x = self._value(node)
        shape = (x.prov.shape[0], *self.shapes[node.output[0]][1:])
        kind = f"Conv{w.dim() - 2}d"
        if node.op_type == "ConvTranspose":
            value = self.b.conv_transpose(x, w, groups=int(_attrs(node).get("group", 1)), out_shape=shape,
                                          name=_module_path(node), kind=f"ConvTranspose{w.dim() - 2}d")
            return self._layer(node, value)
        window = _window(node, [int(k) for k in w.shape[2:]], x.prov.shape[2:], shape[2:])
        value = self.b.conv(x, w, groups=int(_attrs(node).get("group", 1)), out_shape=shape,
                            name=_module_path(node), kind=kind, window=window)
        return self._layer(node, value)

    def _batch_norm(self, node: Any) -> ChannelValue:
        a = _attrs(node)
        if a.get("training_mode", 0):
            raise UnsupportedOpError(f"BatchNormalization (node {node.name!r}) in training mode")
        scale, _b, _mean, var = (self.const.get(n) for n in node.input[1:5])
        if scale is None or var is None:
            raise UnsupportedOpError(f"BatchNormalization (node {node.name!r}) needs constant parameters")
        x = self._value(node)
        factor = torch.from_numpy(scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + a.get("epsilon", 1e-5)))
        value = self.b.scale(x, factor.reshape([1, -1] + [1] * (x.prov.dim() - 2)),
                             exclusive=self.consumers.get(node.input[0], 0) == 1)
        self._unary(node, node.input[0])
        return value

    def _elementwise(self, node: Any) -> ChannelValue:
        x = self._value(node)
        self._unary(node, node.input[0])
        return x if node.op_type in _KEEP_DIRECT else x.derive(x.prov)

    def _shape(self, node: Any) -> list[ChannelValue]:
        x = self._value(node)
        outs = self.apply(node, {node.input[0]: x.prov.numpy()})
        group = self._group_norm_source(node)
        if group is not None:  # GroupNorm written out: elementwise on the tensor before the first Reshape
            self._unary(node, group)
        elif node.op_type in ("Reshape", "Identity") and self.shapes.get(node.input[0]) is not None \
                and self.shapes.get(node.input[0]) == self.shapes.get(node.output[0]):
            self._unary(node, node.input[0])  # a reshape to the same shape (GroupNorm with a group per channel)
        return [x.derive(torch.from_numpy(np.asarray(o, dtype=np.int64))) for o in outs]

    def _group_norm_source(self, node: Any) -> str | None:
        """``X -> Reshape -> InstanceNormalization -> Reshape`` back to X's shape is GroupNorm (as exporters
        write it): the name of X when ``node`` is that last Reshape, else None."""
        norm = self.producer.get(node.input[0])
        if node.op_type != "Reshape" or norm is None or norm.op_type != "InstanceNormalization":
            return None
        first = self.producer.get(norm.input[0])
        if first is None or first.op_type != "Reshape":
            return None
        src = first.input[0]
        same = self.shapes.get(src) is not None and self.shapes.get(src) == self.shapes.get(node.output[0])
        return src if same else None

    def _pad(self, node: Any) -> ChannelValue:
        x = self._value(node)
        mode = _attrs(node).get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        feeds = {node.input[0]: x.prov.numpy()}
        if mode == "constant" and len(node.input) > 2 and node.input[2]:
            feeds[node.input[2]] = np.array(-1, dtype=np.int64)
        elif mode == "constant":
            return x.derive(torch.from_numpy(np.asarray(self._pad_minus_one(node, x), dtype=np.int64)))
        out = self.apply(node, feeds)[0]
        return x.derive(torch.from_numpy(np.asarray(out, dtype=np.int64)))

    def _pad_minus_one(self, node: Any, x: ChannelValue) -> np.ndarray:
        import onnx

        twin = onnx.helper.make_node("Pad", [node.input[0], node.input[1], "__minus_one"], ["y"], mode="constant")
        self.const["__minus_one"] = np.array(-1, dtype=np.int64)
        return self.apply(twin, {node.input[0]: x.prov.numpy()})[0]

    def _pool(self, node: Any) -> ChannelValue:
        x = self._value(node)
        shape = (x.prov.shape[0], *self.shapes[node.output[0]][1:])
        if node.op_type.startswith("Global"):
            window = Window(adaptive=True)
        else:
            window = _window(node, list(_attrs(node)["kernel_shape"]), x.prov.shape[2:], shape[2:])
        return self.b.pool(x, shape, window)

    def _merge(self, node: Any) -> ChannelValue:
        names = [n for n in node.input if n]
        values = [self.env.get(n) for n in names]
        data = [i for i, v in enumerate(values) if v is not None]
        op = node.op_type
        if len(data) == 2 and len(names) == 2:
            src = self._normalising(node, names[0], names[1])
            if src is not None:  # x - mean(x), x / sqrt(var(x) + eps): elementwise on x
                self._unary(node, src)
                return self._expanded(self.env[src], node)
        if len(data) == 1 and any(n in self.data for n in names):  # a data-dependent mask: selects only
            self._unary(node, names[data[0]])
            return self._expanded(self.env[names[data[0]]], node)
        if len(data) > 1:
            self._continue_chain(node, *(names[i] for i in data))
            roots = {self.root.get(names[i], names[i]) for i in data}
            same = len(roots) == 1
            if same:  # x * sigmoid(x), x + 0.04 x^3: still elementwise on x
                self.root[node.output[0]] = next(iter(roots))
            if op in ("Mul", "Div") or same and len(data) == len(names):
                return self.b.merge([self.env[names[i]] for i in data], combine="max")
            signs = [1.0, -1.0] if op == "Sub" else None
            if len(data) != len(names):  # Sum of data and constants: constants are biases
                signs = None
            if self._activation_follows(node):  # relu(branch + shortcut): the sum's units are the branch's
                res = self.b.residual([self.env[names[i]] for i in data], signs or [1.0] * len(data))
                if res is not None:
                    self.tail[node.output[0]] = res[1]
                    self.act[res[1]] = node.output[0]
                    return res[0]
            return self.b.merge([self.env[names[i]] for i in data], signs=signs)
        i = data[0]
        x = self.env[names[i]]
        const = [self.const[n] for j, n in enumerate(names) if j != i]
        self._unary(node, names[i])
        if op in ("Add", "Sub", "Sum"):
            return x  # adding a constant (a bias) leaves the provenance alone
        factor = torch.from_numpy(np.asarray(const[0], dtype=np.float64))
        if op == "Div" and i != 0:  # c / x: a scalar c makes it elementwise on x (RMSNorm's 1 / sqrt(...))
            if factor.numel() != 1:
                raise UnsupportedOpError(f"Div (node {node.name!r}) of a per-channel constant by data is not "
                                         "supported")
            if names[i] in self.stat:  # the reciprocal of a statistic is one
                self.stat[node.output[0]] = self.stat[names[i]]
            return x.derive(x.prov)
        if factor.numel() == 1:  # a scalar is part of an elementwise formula (as in the PyTorch walker)
            return x.derive(x.prov)
        if op == "Div":
            factor = 1.0 / factor
        return self.b.scale(x, factor, exclusive=self.consumers.get(names[i], 0) == 1)

    def _concat(self, node: Any) -> ChannelValue:
        axis = int(_attrs(node)["axis"])
        parts = []
        ref = next(self.env[n] for n in node.input if n in self.env)
        for n in node.input:
            if n in self.env:
                parts.append(self.env[n])
            else:
                shape = list(self.const[n].shape)
                shape[0] = ref.prov.shape[0]
                parts.append(ChannelValue(torch.full(shape, -1, dtype=torch.long),
                                          Slots.single(torch.empty(0, dtype=torch.long))))
        return self.b.concat(parts, axis % ref.prov.dim())
