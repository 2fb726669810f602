"""What a model takes as input, read once per IR: the names, shapes and kinds of its inputs.

Every adapter that needs a program's inputs reads them here: :func:`exported_user_inputs` for a
``torch.export`` program (the placeholders its signature marks as user inputs, in order),
:func:`onnx_graph_inputs` for an ONNX graph (its inputs that are not initializers). The
``*_input_specs`` functions add what ``--data random`` needs to make a batch: each input's shape
without the batch axis, its kind (float, int, bool) and, for token ids, how many rows the embedding
table behind them has.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["exported_input_specs", "exported_user_inputs", "input_shape", "onnx_graph_inputs", "onnx_input_specs"]


def exported_user_inputs(ep: Any) -> list[str]:
    """The names of a ``torch.export`` program's user inputs (placeholders), in call order."""
    return [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]


def onnx_graph_inputs(model: Any) -> list[Any]:
    """An ONNX model's graph inputs that are not initializers (``ValueInfoProto``), in order."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shape(specs: tuple[Any, ...] | None) -> tuple[int, ...] | None:
    """The first input's shape without the batch axis (None when unknown)."""
    return specs[0].shape if specs else None


#: Operations that pass token ids on unchanged but for their shape or type (``input_ids.view(-1, T)``):
#: the embedding table behind them bounds the random ids of ``--data random``.
_TORCH_PASS_THROUGH = {"view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "flatten", "clone", "contiguous",
                       "_to_copy", "to", "alias", "expand", "detach", "slice", "select"}
_ONNX_PASS_THROUGH = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Identity", "Expand", "Slice"}


def onnx_input_specs(model: Any) -> tuple[Any, ...]:
    """Per input: shape, kind, and for token ids the rows of the table a ``Gather`` looks them up in."""
    from emergence.adapters.datasets import InputSpec

    inits = {t.name: t for t in model.graph.initializer}
    first_input_of: dict[str, list[Any]] = {}  # tensor -> the nodes that take it as their first input
    for n in model.graph.node:
        if n.input:
            first_input_of.setdefault(n.input[0], []).append(n)
    specs = []
    for inp in onnx_graph_inputs(model):
        dims = inp.type.tensor_type.shape.dim[1:]
        shape = tuple(int(d.dim_value) for d in dims) if all(d.HasField("dim_value") and d.dim_value > 0
                                                             for d in dims) else None
        elem = inp.type.tensor_type.elem_type
        kind = "float" if elem in (1, 10, 11, 16) else "bool" if elem == 9 else "int"
        names, frontier = {inp.name}, [inp.name]  # the ids and what only reshapes or casts them
        while frontier:
            for n in first_input_of.get(frontier.pop(), []):
                if n.op_type in _ONNX_PASS_THROUGH and n.output[0] not in names:
                    names.add(n.output[0])
                    frontier.append(n.output[0])
        rows = [int(inits[n.input[0]].dims[0]) for n in model.graph.node
                if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] in names and n.input[0] in inits]
        specs.append(InputSpec(shape, kind, min(rows) if rows else None))
    return tuple(specs)


def exported_input_specs(ep: Any) -> tuple[Any, ...]:
    """As :func:`onnx_input_specs`, for a ``torch.export`` program (tables of ``embedding`` ops)."""
    from emergence.adapters.datasets import InputSpec

    users = exported_user_inputs(ep)
    params = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind.name == "PARAMETER"}
    nodes = {n.name: n for n in ep.graph.nodes}
    specs = []
    for name in users:
        val = nodes[name].meta.get("val")
        try:
            shape = tuple(int(s) for s in val.shape[1:])
        except (TypeError, AttributeError):
            shape = None
        kind = "float" if val is None or val.dtype.is_floating_point else "bool" if val.dtype == torch.bool else "int"
        rows = []
        seen, frontier = {nodes[name]}, [nodes[name]]  # the ids and what only reshapes or casts them
        while frontier:
            cur = frontier.pop()
            for user in cur.users:
                op = getattr(user.target, "_opname", "")
                if op == "embedding" and user.args[1] is cur:
                    table = ep.state_dict.get(params.get(user.args[0].name, ""))
                    if table is not None:
                        rows.append(int(table.shape[0]))
                elif op in _TORCH_PASS_THROUGH and user.args and user.args[0] is cur and user not in seen:
                    seen.add(user)
                    frontier.append(user)
        specs.append(InputSpec(shape, kind, min(rows) if rows else None))
    return tuple(specs)
