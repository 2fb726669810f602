"""ONNX models to graphs, with activity from onnxruntime.

Constant subgraphs are folded first (weights produced by ``Constant``,
``ConstantOfShape``, ``Reshape``, ``Identity``... rather than stored as
initializers), concrete shapes come from one small onnxruntime run, and the graph is
built by the same format-independent builder as PyTorch models
(:mod:`emergence.adapters._channels`), so a model exported to ONNX gives the graph of its
PyTorch original. Activity comes from onnxruntime with each layer's activation
exposed as an extra output.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emergence.activity import ModelGraph, check_outputs
from emergence.adapters._probe import (
    ActivityRecorder,
    as_batch,
    assemble,
    assemble_activity,
    check_granularity,
    check_input_shape,
    padded_chunks,
)
from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.adapters.onnx_ops import SUPPORTED_ONNX_OPS, _Walker
from emergence.adapters.signatures import onnx_graph_inputs
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.errors import FileFormatError, InputShapeError, TimeLimitError, UnsupportedOpError, first_line

__all__ = ["from_onnx", "load_onnx", "SUPPORTED_ONNX_OPS"]


def _load_external_data(model: Any, path: Path) -> None:
    """Read tensors stored beside the model, refusing any location outside the model's folder.

    Raises
    ------
    FileFormatError
        For an absolute location, one that climbs out of the folder (``../``), or a missing file;
        nothing outside the folder is opened.
    """
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    folder = path.resolve().parent
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    for tensor in external:
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if Path(location).is_absolute() or folder not in target.parents:
            raise FileFormatError(f"{path.name!r}: tensor {tensor.name!r} points to external data at {location!r}, "
                                  "outside the model's folder; refused (move the data beside the model)")
        if not target.is_file():
            raise FileFormatError(f"{path.name!r}: the external data file {location!r} of tensor {tensor.name!r} "
                                  "is missing")
    if external:
        load_external_data_for_model(model, str(folder))


def load_onnx(path_or_proto: Any) -> Any:
    """Load and check an ONNX model from a path, bytes or a ``ModelProto``.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or not an ONNX model.
    """
    import onnx

    if isinstance(path_or_proto, onnx.ModelProto):
        model = path_or_proto
    else:
        try:
            if isinstance(path_or_proto, (bytes, bytearray)):
                model = onnx.load_from_string(bytes(path_or_proto))
            else:
                p = Path(os.fspath(path_or_proto))
                if not p.is_file():
                    raise FileFormatError(f"no such file: {str(p)!r}")
                model = onnx.load(str(p), load_external_data=False)
                _load_external_data(model, p)
        except FileFormatError:
            raise
        except Exception as exc:  # protobuf DecodeError, OSError, ValueError ...
            raise FileFormatError(f"could not read an ONNX model: {first_line(exc)}") \
                from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise FileFormatError(f"not a valid ONNX model: {first_line(exc)}") from exc
    if not model.graph.node:
        raise FileFormatError("the ONNX file holds no operations (truncated or empty?)")
    return _upgraded(model)


#: Models below this opset are upgraded (attribute-form axes, split, starts/ends and pads become inputs).
_MIN_OPSET = 13
_TARGET_OPSET = 17


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=_TARGET_OPSET)


def _upgraded(model: Any) -> Any:
    """An old-opset model converted to opset 17 with ``onnx.version_converter`` (the graph is unchanged:
    the tests compare onnxruntime's outputs before and after); newer models as they are.

    Raises
    ------
    UnsupportedOpError
        If the converter cannot upgrade an op of the model.
    """
    opset = _opset(model)
    if opset >= _MIN_OPSET:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, _TARGET_OPSET)
    except Exception as exc:  # the converter raises RuntimeError / ConvertError naming the op
        raise UnsupportedOpError(f"could not upgrade the opset-{opset} model to opset {_TARGET_OPSET}: "
                                 f"{first_line(exc)}") from exc


def _session(model: Any, outputs: list[str]) -> Any:
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    try:
        typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except Exception:  # shape inference is best-effort; untyped outputs fall back to float
        typed = {}
    for name in outputs:
        if name in known:
            continue
        info = onnx.ValueInfoProto()
        if name in typed:
            info.CopyFrom(typed[name])
            info.type.tensor_type.ClearField("shape")
        else:
            info = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        m.graph.output.append(info)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UnsupportedOpError(f"onnxruntime cannot run the model: {first_line(exc)}") from exc


def _run(session: Any, feeds: dict[str, np.ndarray], names: list[str], deadline: Deadline) -> list[np.ndarray]:
    try:
        with deadline.onnxruntime() as opts:
            return session.run(names, feeds, opts)
    except TimeLimitError:
        raise
    except Exception as exc:  # onnxruntime's InvalidArgument / Fail
        msg = first_line(exc)
        shapes = ", ".join(str(tuple(x.shape)) for x in feeds.values())
        raise InputShapeError(f"the model rejects inputs of shape {shapes}: {msg}") from exc


#: ONNX ops that hold subgraphs: their iteration counts and branches are data; a graph of units has no loops.
_CONTROL_FLOW = ("Loop", "If", "Scan", "SequenceMap")


def _refuse_control_flow(model: Any) -> None:
    """Refuse control flow before anything runs: it cannot be mapped, and a ``Loop`` may never end."""
    for node in model.graph.node:
        if node.op_type in _CONTROL_FLOW or any(a.type in (5, 10) for a in node.attribute):  # GRAPH(S) attributes
            raise UnsupportedOpError(
                f"ONNX op {node.op_type!r} (node {node.name!r}) is control flow (a subgraph run a data-dependent "
                "number of times), which cannot be mapped to a graph of units; export the model without loops "
                "or branches")


def _refuse_huge_constants(model: Any) -> None:
    """Before onnxruntime sees the model: refuse constant ops whose stored inputs ask for a giant output.

    onnxruntime would allocate it (or fail trying) in the shape run, before folding could refuse it.
    """
    from onnx import numpy_helper

    from emergence.adapters.onnx_ops import _check_fold_size

    const = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name and _small(t)}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            const[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range"):
            _check_fold_size(node, const)


def _small(t: Any) -> bool:
    """Shapes and repeat counts are short vectors: only those are read for the size check."""
    n = 1
    for d in t.dims:
        n *= int(d)
    return n <= 64


def _fixed_batch(model: Any) -> int | None:
    inp = onnx_graph_inputs(model)[0]
    dims = inp.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


#: ONNX element types -> numpy, for feeding inputs.
_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_, 2: np.uint8,
          3: np.int8}


def _feeds(inputs: list[Any], xs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    if len(xs) != len(inputs):
        raise InputShapeError(f"the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}), "
                              f"got {len(xs)}")
    return {i.name: x.detach().cpu().numpy().astype(_NUMPY.get(i.type.tensor_type.elem_type, np.float32))
            for i, x in zip(inputs, xs, strict=False)}


def from_onnx(
    path_or_proto: Any,
    inputs: torch.Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    aggregation: str = DEFAULT_AGGREGATION,
    source: str = "",
    granularity: str = DEFAULT_GRANULARITY,
    device: str | torch.device | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    outputs: str = DEFAULT_OUTPUTS,
) -> ModelGraph:
    """Build the graph of an ONNX model and measure activity on ``inputs`` with onnxruntime.

    Parameters
    ----------
    path_or_proto : str, path-like, bytes or onnx.ModelProto
        The model.
    inputs : torch.Tensor
        The probe batch, batch dimension first.
    threshold : float, default ``DEFAULT_THRESHOLD``
        Activity threshold for the returned graph's ``active`` mask.
    aggregation : {"mean", "absmean", "frac"}
        How a unit's activations are aggregated over the batch.
    source : str
        A label for reports.
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
        As in :func:`emergence.adapters.from_exported`.
    device : str or torch.device, optional
        Where a neuron-level count runs (onnxruntime itself runs on the CPU).
    timeout : float or None, default 600
        Seconds onnxruntime may run the model in all (None: no limit).

    outputs : {"exclude", "logits", "softmax"}, default "exclude"
        How output units are judged in the returned graph's ``active`` mask (as in
        :func:`~emergence.measure_model`).

    Returns
    -------
    ModelGraph

    Raises
    ------
    FileFormatError
        If the file is missing or not a valid ONNX model.
    UnsupportedOpError
        Naming an op (and its node) that cannot be mapped.
    InputShapeError
        If the model rejects the inputs.
    TimeLimitError
        If onnxruntime runs past ``timeout``.
    """
    deadline = Deadline(timeout, f"the forward pass of {source or 'the ONNX model'!r}")
    model = load_onnx(path_or_proto)
    _refuse_control_flow(model)
    _refuse_huge_constants(model)
    xs = as_batch(inputs)
    fixed = _fixed_batch(model)
    walker = _Walker(model, check_granularity(granularity))
    feeds = _feeds(walker.inputs, xs)
    for inp in walker.inputs:
        dims = inp.type.tensor_type.shape.dim
        check_input_shape(tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims[1:]),
                          feeds[inp.name].shape)
    batch = fixed or 1  # shapes and provenance at the model's own batch size (1 when it is dynamic)
    first = next(padded_chunks(tuple(torch.from_numpy(v) for v in feeds.values()), batch, fixed=True))[0]
    probe = {name: t.numpy() for name, t in zip(feeds, first, strict=False)}
    names = [o for n in model.graph.node for o in n.output if o]
    session = _session(model, names)
    shapes = {name: tuple(v.shape) for name, v in probe.items()}
    outs = _run(session, probe, names, deadline)
    shapes.update({n: tuple(np.asarray(v).shape) for n, v in zip(names, outs, strict=False)})
    walker.run(shapes, batch=batch)
    step = fixed or 256
    recorder = ActivityRecorder(walker.b, walker.act, aggregation)
    wanted = sorted(recorder.wanted - set(feeds))
    session = _session(model, wanted)
    for piece, keep in padded_chunks(tuple(torch.from_numpy(v) for v in feeds.values()), step, fixed=bool(fixed)):
        chunk = {name: t.numpy() for name, t in zip(feeds, piece, strict=False)}
        recorder.start_chunk(keep)
        for name, value in zip(wanted, _run(session, chunk, wanted, deadline), strict=False):
            recorder.record(name, torch.from_numpy(np.asarray(value)))
        for name in set(feeds) & recorder.wanted:
            recorder.record(name, torch.from_numpy(chunk[name]))
    return assemble(walker.b, assemble_activity(walker.b, recorder, aggregation), threshold, source, device,
                    check_outputs(outputs))
