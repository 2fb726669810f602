"""ONNX operations mapped to the format-independent channel graph.

:class:`_Walker` folds constant subgraphs (weights produced by ``Constant``,
``ConstantOfShape``, ``Reshape``, ``Identity``... rather than stored as initializers),
takes concrete shapes from one small onnxruntime run, reads every node's inputs and attributes and calls
the IR-neutral handler it maps to (:class:`emergence.adapters._front.Front`, through
:mod:`emergence.adapters.op_registry`), the same handlers the PyTorch front-end calls, so a model exported to
ONNX gives the graph of its PyTorch original.
:data:`SUPPORTED_ONNX_OPS` lists what is mapped.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emergence.adapters._channels import ChannelValue
from emergence.adapters._front import Front
from emergence.adapters._window import Window
from emergence.adapters.op_registry import ONNX, ONNX_ACTIVATIONS, dispatch, ops_of, supported
from emergence.adapters.signatures import onnx_graph_inputs
from emergence.errors import UnsupportedOpError

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16

__all__ = ["SUPPORTED_ONNX_OPS"]

_DISPATCH = dispatch(ONNX)  # op type -> semantic handler (the method "_<handler>"), see op_registry
_DENSE, _CONV, _RECURRENT = ops_of(ONNX, "dense"), ops_of(ONNX, "conv"), ops_of(ONNX, "recurrence")
_KEEP_DIRECT = {"Identity", "Dropout", "Cast"}
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


class _Walker(Front):
    """Reads an ONNX graph (constant folding included) and feeds the IR-neutral :class:`Front`."""

    def __init__(self, model: Any, granularity: str = "channel") -> None:
        import onnx.numpy_helper as nh

        super().__init__(granularity, ONNX_ACTIVATIONS)
        self.model = model
        self.graph = model.graph
        self.const: dict[str, np.ndarray] = {t.name: nh.to_array(t) for t in self.graph.initializer}
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.env: dict[str, ChannelValue] = {}
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.users: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for name in dict.fromkeys(i for i in n.input if i):
                self.users.setdefault(name, []).append(n)
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        for out in self.graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        self.inputs = onnx_graph_inputs(self.model)
        if not self.inputs:
            raise UnsupportedOpError("the model takes no input")
        self.input_info = self.inputs[0]
        self.shapes: dict[str, tuple[int, ...]] = {}

    def uses(self, name: str) -> int:
        return self.consumers.get(name, 0)

    def user_ops(self, name: str) -> list[str]:
        users = self.users.get(name, [])
        return [u.op_type for u in users] + ["output"] * (self.consumers.get(name, 0) - len(users))

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
            self.env[inp.name] = self.input(inp.name, shape, per_element=per_element, index=floats)
            floats += 1
        for node in self.graph.node:
            if self.fold(node):
                continue
            name = _DISPATCH.get(node.op_type)
            if name is None:
                raise UnsupportedOpError(
                    f"ONNX op {node.op_type!r} (node {node.name!r}) cannot be mapped to a graph; the ops that can "
                    "are listed in the README's 'Ops covered' section (emergence.adapters.SUPPORTED_ONNX_OPS)"
                )
            try:
                outs = getattr(self, f"_{name}")(node)
            except (RuntimeError, ValueError, IndexError) as exc:  # shapes the walk did not expect
                raise UnsupportedOpError(f"ONNX op {node.op_type!r} (node {node.name!r}) could not be mapped: "
                                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            for out, value in zip(node.output, outs if isinstance(outs, list) else [outs], strict=False):
                if out and value is not None:
                    self.env[out] = value

    def _first_layer_kind(self) -> str:
        frontier, seen = {self.input_info.name}, set()
        while frontier:
            nxt: set[str] = set()
            for node in self.graph.node:
                if node.name in seen or not frontier.intersection(node.input):
                    continue
                seen.add(node.name)
                if node.op_type in _CONV:
                    return "conv"
                if node.op_type in _RECURRENT:  # steps are positions, like tokens
                    return "tokens"
                if node.op_type in _DENSE:
                    return "tokens" if len(self.shapes.get(node.input[0], ())) >= 3 else "dense"
                nxt.update(o for o in node.output if o)
            frontier = nxt
        return "dense"

    def _value(self, node: Any, i: int = 0) -> ChannelValue:
        name = node.input[i]
        if name not in self.env:
            raise UnsupportedOpError(f"{node.op_type} (node {node.name!r}): input {name!r} is neither data nor "
                                     "constant")
        return self.env[name]

    def _operands(self, node: Any) -> tuple[list[str], list[Any]]:
        """The named inputs of ``node`` and their values (a ChannelValue, or the constant)."""
        names = [n for n in node.input if n]
        for n in names:
            if n not in self.env and n not in self.const:
                raise UnsupportedOpError(f"{node.op_type} (node {node.name!r}): input {n!r} is neither data nor "
                                         "constant")
        return names, [self.env[n] if n in self.env else self.const[n] for n in names]

    def _out(self, node: Any) -> tuple[int, ...]:
        return self.shapes[node.output[0]]

    # -- readers: ONNX inputs and attributes -> the IR-neutral handlers ---------------------------
    def _gather(self, node: Any) -> Any:
        if node.input[0] in self.const and node.input[1] in self.data:  # embedding lookup of token ids
            table = self.const[node.input[0]]
            if table.ndim != 2 or int(_attrs(node).get("axis", 0)) != 0:
                raise UnsupportedOpError(f"Gather (node {node.name!r}) of token ids needs a 2-D table on axis 0")
            ids = self.const[node.input[1]]
            return self.embedding(node.output[0], name=_module_path(node), features=int(table.shape[1]),
                                  shape=(*ids.shape, table.shape[1]))
        return self._shape(node)

    def _reduce(self, node: Any) -> ChannelValue:
        x = self._value(node)
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const[node.input[1]].tolist()
        if not axes and a.get("noop_with_empty_axes", 0):
            return x
        return self.reduce(node.output[0], node.input[0], x, axes, keepdim=bool(a.get("keepdims", 1)),
                           statistic=node.op_type in ("ReduceMean", "ReduceSumSquare", "ReduceL2"))

    def _softmax(self, node: Any) -> ChannelValue:
        return self.softmax(node.output[0], node.input[0], self._value(node), int(_attrs(node).get("axis", -1)))

    def _einsum(self, node: Any) -> ChannelValue:
        equation = _attrs(node)["equation"]
        equation = equation.decode() if isinstance(equation, bytes) else str(equation)
        return self.einsum(equation, [self.env.get(n) for n in node.input], f"node {node.name!r}")

    def _select(self, node: Any) -> ChannelValue:
        names = list(node.input[1:3])
        return self.select(node.output[0], names, [self.env.get(n) for n in names], self._out(node))

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
        from emergence.adapters._resize import scale_of

        a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in _attrs(node).items()}
        x = self._value(node)
        scales = None
        if node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in self.const \
                and self.const[node.input[2]].size == x.prov.dim():
            scales = [scale_of(v) for v in self.const[node.input[2]].tolist()[2:]]
        elif node.op_type == "Upsample" and len(node.input) > 1 and node.input[1] in self.const:
            scales = [scale_of(v) for v in self.const[node.input[1]].tolist()[2:]]
        return self.resize(x, self._out(node), mode=str(a.get("mode", "nearest")),
                           scales=scales, transform=str(a.get("coordinate_transformation_mode", "half_pixel")
                                                        if node.op_type == "Resize" else "asymmetric"),
                           nearest=str(a.get("nearest_mode", "round_prefer_floor")
                                       if node.op_type == "Resize" else "floor"))

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
                return self.product(self.env[node.input[0]], self.env[node.input[1]])
            if node.input[1] not in self.const or self.const[node.input[1]].ndim != 2:
                raise UnsupportedOpError(f"MatMul (node {node.name!r}) needs a constant 2-D right-hand matrix")
            w = self.const[node.input[1]].T
        return self.dense(node.output[0], self._value(node), torch.tensor(w),
                          name=_module_path(node) or node.output[0])

    def _conv(self, node: Any) -> ChannelValue:
        if node.input[1] not in self.const:
            raise UnsupportedOpError(f"Conv (node {node.name!r}) needs a constant weight")
        w = torch.tensor(self.const[node.input[1]])
        x = self._value(node)
        shape = (x.prov.shape[0], *self._out(node)[1:])
        transposed = node.op_type == "ConvTranspose"
        window: Window | None = _window(node, [int(k) for k in w.shape[2:]], x.prov.shape[2:], shape[2:])
        if transposed and (_attrs(node).get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID")
                           or "output_shape" in _attrs(node)):
            window = None  # padding derived from the output shape: the neuron level refuses it
        return self.conv(node.output[0], x, w, groups=int(_attrs(node).get("group", 1)), shape=shape,
                         name=_module_path(node), kind=f"{node.op_type}{w.dim() - 2}d", window=window,
                         transposed=transposed)

    def _batch_norm(self, node: Any) -> ChannelValue:
        a = _attrs(node)
        if a.get("training_mode", 0):
            raise UnsupportedOpError(f"BatchNormalization (node {node.name!r}) in training mode")
        scale, _b, _mean, var = (self.const.get(n) for n in node.input[1:5])
        if scale is None or var is None:
            raise UnsupportedOpError(f"BatchNormalization (node {node.name!r}) needs constant parameters")
        factor = torch.from_numpy(scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + a.get("epsilon", 1e-5)))
        return self.batch_norm(node.output[0], node.input[0], self._value(node), factor)

    def _elementwise(self, node: Any) -> ChannelValue:
        return self.elementwise(node.output[0], node.input[0], self._value(node), keep=node.op_type in _KEEP_DIRECT)

    def _add(self, node: Any) -> ChannelValue:
        names, values = self._operands(node)
        signs = [1.0, -1.0] if node.op_type == "Sub" else None
        return self.add(node.output[0], names, values, self._out(node), signs)

    def _mul(self, node: Any) -> ChannelValue:
        names, values = self._operands(node)
        return self.mul(node.output[0], names, values, self._out(node), divide=node.op_type == "Div")

    def _concat(self, node: Any) -> ChannelValue:
        names, values = self._operands(node)
        return self.concat(values, int(_attrs(node)["axis"]))

    def _recurrence(self, node: Any) -> list[ChannelValue]:
        a = _attrs(node)
        op, where = node.op_type, f"{node.op_type} (node {node.name!r})"
        if any(n not in self.const for n in node.input[1:3]):
            raise UnsupportedOpError(f"{where} needs constant weights")
        if any(n in self.env for n in node.input[4:]):
            raise UnsupportedOpError(f"{where} starts from a state the model computes; only a constant initial "
                                     "state is supported")
        w, r = self.const[node.input[1]], self.const[node.input[2]]
        hidden, dirs, layout = int(r.shape[-1]), int(w.shape[0]), int(a.get("layout", 0))
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        x = self._value(node)
        y, last = self.recurrence(
            node.output[0], x if layout else x.derive(x.prov.transpose(0, 1)),
            [(torch.from_numpy(np.array(w[d])), torch.from_numpy(np.array(r[d]))) for d in range(dirs)],
            gates={"LSTM": 4, "GRU": 3}.get(op, 1), carry=op != "RNN", name=_module_path(node), kind=op,
            reverse=[direction == "reverse"] if dirs == 1 else [False, True],
            select=(lambda t, d: (slice(None), t, d)) if layout else (lambda t, d: (t, d)))
        batch, steps = int(y.prov.shape[0]), int(y.prov.shape[1])
        out = y.prov.reshape(batch, steps, dirs, hidden)  # ONNX: Y [T, dirs, batch, H] (layout 1: batch first)
        y_onnx = y.derive(out if layout else out.permute(1, 2, 0, 3).contiguous())
        state = last.derive(last.prov.permute(1, 0, 2).contiguous() if layout else last.prov)
        return [y_onnx, state, state]

    # -- layout: the op itself applied to the provenance ----------------------------------------------
    def _shape(self, node: Any) -> list[ChannelValue]:
        x = self._value(node)
        outs = self.apply(node, {node.input[0]: x.prov.numpy()})
        group = self._group_norm_source(node)
        if group is not None:  # GroupNorm written out: elementwise on the tensor before the first Reshape
            self.unary(node.output[0], group)
        elif node.op_type in ("Reshape", "Identity") and self.shapes.get(node.input[0]) is not None \
                and self.shapes.get(node.input[0]) == self.shapes.get(node.output[0]):
            self.unary(node.output[0], node.input[0])  # a reshape to the same shape (GroupNorm, a group a channel)
        return [x.derive(torch.from_numpy(np.ascontiguousarray(o, dtype=np.int64))) for o in outs]

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
            return x.derive(torch.from_numpy(np.ascontiguousarray(self._pad_minus_one(node, x), dtype=np.int64)))
        out = self.apply(node, feeds)[0]
        return x.derive(torch.from_numpy(np.ascontiguousarray(out, dtype=np.int64)))

    def _pad_minus_one(self, node: Any, x: ChannelValue) -> np.ndarray:
        import onnx

        twin = onnx.helper.make_node("Pad", [node.input[0], node.input[1], "__minus_one"], ["y"], mode="constant")
        self.const["__minus_one"] = np.array(-1, dtype=np.int64)
        return self.apply(twin, {node.input[0]: x.prov.numpy()})[0]

    def _pool(self, node: Any) -> ChannelValue:
        x = self._value(node)
        shape = self._out(node)
        if node.op_type.startswith("Global"):
            window = Window(adaptive=True)
        else:
            window = _window(node, list(_attrs(node)["kernel_shape"]), x.prov.shape[2:], shape[2:])
        return self.pool(x, shape, window)
