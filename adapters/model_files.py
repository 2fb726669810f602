"""Model files of any supported kind, recognised and loaded safely, then turned into graphs.

==================  =========================================================
``.onnx``           ONNX (any exporter)
``.pt2``            a ``torch.export`` program
``.pt`` ``.jit``    TorchScript (``torch.jit.save``); run through ONNX
``.pt`` ``.pth``    a state_dict of one of the toolkit's architectures, loaded
                    with ``weights_only=True``; or a fully pickled module, loaded
                    only with ``trust_pickle=True`` (unpickling runs code)
``.safetensors``    weights of one of the toolkit's architectures
==================  =========================================================
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emergence.activity import ModelGraph
from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_THRESHOLD
from emergence.errors import EmergenceError, FileFormatError, InputShapeError, UntrustedPickleError, first_line

__all__ = ["LoadedModel", "check_terminates", "load_model", "model_graph"]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: ``kind`` is ``"module"``, ``"exported"``, ``"onnx"`` or ``"torchscript"``."""

    kind: str
    obj: Any
    input_shape: tuple[int, ...] | None
    source: str
    input_specs: tuple[Any, ...] | None = None  # emergence.adapters.datasets.InputSpec per model input


_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == _ZIP_MAGIC
    except OSError:
        return False


@contextmanager
def _torch_logs_silenced() -> Iterator[None]:
    """torch logs its own deserialization failures (with a traceback) before raising; we report them in one line."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch", "torch.export", "torch._export", "torch.serialization")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.setLevel(level)


def _is_torchscript(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


def _onnx_input_shape(model: Any) -> tuple[int, ...] | None:
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim[1:]
    if all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        return tuple(int(d.dim_value) for d in dims)
    return None


#: Operations that pass token ids on unchanged but for their shape or type (``input_ids.view(-1, T)``):
#: the embedding table behind them bounds the random ids of ``--data random``.
_TORCH_PASS_THROUGH = {"view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "flatten", "clone", "contiguous",
                       "_to_copy", "to", "alias", "expand", "detach", "slice", "select"}
_ONNX_PASS_THROUGH = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Identity", "Expand", "Slice"}


def _onnx_input_specs(model: Any) -> tuple[Any, ...]:
    """Per input: shape, kind, and for token ids the rows of the table a ``Gather`` looks them up in."""
    from emergence.adapters.datasets import InputSpec

    inits = {t.name: t for t in model.graph.initializer}
    first_input_of: dict[str, list[Any]] = {}  # tensor -> the nodes that take it as their first input
    for n in model.graph.node:
        if n.input:
            first_input_of.setdefault(n.input[0], []).append(n)
    specs = []
    for inp in (i for i in model.graph.input if i.name not in inits):
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


def _exported_input_specs(ep: Any) -> tuple[Any, ...]:
    """As :func:`_onnx_input_specs`, for a ``torch.export`` program (tables of ``embedding`` ops)."""
    from emergence.adapters.datasets import InputSpec

    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
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


def _exported_input_shape(ep: Any) -> tuple[int, ...] | None:
    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    for n in ep.graph.nodes:
        if n.op == "placeholder" and n.name in users:
            try:
                return tuple(int(s) for s in n.meta["val"].shape[1:])
            except (TypeError, KeyError):
                return None
    return None


def _load_whole_pickle(p: Path, trust_pickle: bool) -> LoadedModel:
    """A fully pickled ``nn.Module``: unpickled (running its code) only when the caller trusts it."""
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{p.name!r} holds pickled Python objects (a whole model), and unpickling runs arbitrary code; "
            "if you trust its source, pass --trust-pickle (library: trust_pickle=True)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # any error of the pickled code itself
        raise FileFormatError(f"could not unpickle {p.name!r}: {exc}") from exc
    if not isinstance(obj, torch.nn.Module):
        raise FileFormatError(f"{p.name!r} unpickles to a {type(obj).__name__}, not an nn.Module")
    return LoadedModel("module", obj.eval(), None, p.name)


def load_model(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> LoadedModel:
    """Recognise and load a model file (see the module docstring for the kinds).

    Parameters
    ----------
    path : str or path-like
        The file.
    trust_pickle : bool, default False
        Allow a fully pickled ``nn.Module`` to be unpickled, which runs arbitrary code.

    Returns
    -------
    LoadedModel

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or of no supported kind.
    UntrustedPickleError
        If the file is a full pickle and ``trust_pickle`` is False; nothing is executed.
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileFormatError(f"no such file: {str(p)!r}")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from emergence.adapters.onnx_model import load_onnx

        model = load_onnx(p)
        return LoadedModel("onnx", model, _onnx_input_shape(model), p.name, _onnx_input_specs(model))
    if suffix == ".pt2":
        if not _is_zip(p):
            raise FileFormatError(f"{p.name!r} is not a torch.export program: a .pt2 file is a zip archive, and "
                                  "this one does not start like one (truncated, or another format renamed?)")
        from emergence.adapters.pt2_archive import read_pt2

        try:
            with _torch_logs_silenced():
                ep = read_pt2(str(p), p.name, trust_pickle=trust_pickle)
        except EmergenceError:
            raise
        except Exception as exc:  # torch.export.load (trusted files) raises many kinds on a bad archive
            raise FileFormatError(f"could not read {p.name!r} as a torch.export program: "
                                  f"{first_line(exc)}") from exc
        return LoadedModel("exported", ep, _exported_input_shape(ep), p.name, _exported_input_specs(ep))
    if suffix == ".safetensors":
        from emergence.adapters.architectures import load_model_file

        model, spec = load_model_file(p)
        return LoadedModel("module", model, spec.input_shape, p.name)
    if _is_torchscript(p):
        try:
            with _torch_logs_silenced():
                return LoadedModel("torchscript", torch.jit.load(str(p), map_location="cpu"), None, p.name)
        except Exception as exc:  # torch.jit.load raises RuntimeError on a bad archive
            raise FileFormatError(f"could not read {p.name!r} as TorchScript: {first_line(exc)}") from exc
    from emergence.adapters.bounded import load_weights

    try:
        obj = load_weights(str(p), p.name)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise FileFormatError(f"could not read {p.name!r}: {first_line(exc)}") from exc
        return _load_whole_pickle(p, trust_pickle)  # objects beyond weights: a pickled model
    except EmergenceError:
        raise
    except Exception as exc:  # truncated zip, not a torch file at all ...
        raise FileFormatError(f"could not read {p.name!r} as a PyTorch file: {first_line(exc)}") from exc
    from emergence.adapters.architectures import ArchSpec, _from_state

    if isinstance(obj, dict) and "arch" in obj and "state_dict" in obj:
        spec = ArchSpec.from_json(obj["arch"])
        return LoadedModel("module", _from_state(spec, obj["state_dict"], p.name), spec.input_shape, p.name)
    raise FileFormatError(
        f"{p.name!r} is a state_dict without an architecture; emergence rebuilds only its own architectures "
        "(saved with emergence.adapters.architectures.save_model); export other models to .pt2 or ONNX"
    )


def _shapes(example: Any) -> str:
    xs = example if isinstance(example, tuple) else (example,)
    return ", ".join(str(tuple(x.shape)) for x in xs)


def _convert_torchscript(folder: str) -> None:
    """In a child process: load ``module.pt`` and ``example.pt`` from ``folder``, export ``model.onnx`` there.

    The exporter runs the module (torch's C++ interpreter), so this is where foreign code runs;
    errors go to ``error.txt`` as one line.
    """
    import warnings

    d = Path(folder)
    try:
        module = torch.jit.load(str(d / "module.pt"), map_location="cpu")
        xs = tuple(torch.load(d / "example.pt", weights_only=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = [f"input{i}" if i else "input" for i in range(len(xs))]
            torch.onnx.export(module, xs, str(d / "model.tmp"), dynamo=False, input_names=names,
                              dynamic_axes={n: {0: "batch"} for n in names})
        os.replace(d / "model.tmp", d / "model.onnx")
    except Exception as exc:  # the TorchScript exporter raises many kinds
        (d / "error.txt").write_text(str(exc) or type(exc).__name__)


def _torchscript_to_onnx(module: Any, example: Any, deadline: Deadline) -> Any:
    """The ONNX form of a TorchScript module, converted in a child process that is killed at the deadline.

    The exporter runs the module once in torch's C++ interpreter; a ``while True`` there cannot be
    interrupted from Python, so the conversion runs where a kill ends it.
    """
    import subprocess
    import sys
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory(prefix="emergence-ts-") as folder:
        d = Path(folder)
        torch.jit.save(module, str(d / "module.pt"))
        torch.save(tuple(example) if isinstance(example, tuple) else (example,), d / "example.pt")
        code = f"import sys, {__name__} as m; m._convert_torchscript(sys.argv[1])"
        try:
            r = subprocess.run([sys.executable, "-c", code, folder], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=deadline.remaining())
        except subprocess.TimeoutExpired:
            raise deadline.expired() from None
        if (d / "error.txt").is_file():
            payload = (d / "error.txt").read_text()
            msg = first_line(Exception(payload))
            if any(k in payload.lower() for k in ("shape", "size", "channels", "dimension")):
                raise InputShapeError(f"the model rejects inputs of shape {_shapes(example)}: {msg}")
            raise FileFormatError(f"could not convert the TorchScript model to ONNX: {msg}")
        if not (d / "model.onnx").is_file():
            raise FileFormatError(f"converting the TorchScript model to ONNX crashed (exit status {r.returncode})")
        return onnx.load(str(d / "model.onnx"))


def check_terminates(module: Any, example: Any, deadline: Deadline) -> None:
    """Run a TorchScript module once on ``example`` where a kill can stop it; refuse it if it does not return.

    Raises
    ------
    TimeLimitError
        If the module runs past the deadline (it is killed, nothing is left running).
    """
    _torchscript_to_onnx(module, example, deadline)


def model_graph(
    model: Any,
    inputs: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    aggregation: str = DEFAULT_AGGREGATION,
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
    granularity: str = DEFAULT_GRANULARITY,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> ModelGraph:
    """The graph and activity of a model given as an object or a file.

    Parameters
    ----------
    model : nn.Module, ExportedProgram, onnx.ModelProto, LoadedModel, str or path-like
        The model.
    inputs : torch.Tensor
        The probe batch.
    threshold, aggregation, device
        As in :func:`emergence.adapters.from_torch`.
    trust_pickle : bool, default False
        As in :func:`load_model`.
    granularity : {"channel", "neuron"}, default ``DEFAULT_GRANULARITY``
        One node per channel of a conv layer, or one per neuron (a
        :class:`~emergence.adapters.neuron_count.NeuronModelGraph`, counted without an edge list).
    timeout : float or None, default 600
        Seconds the model's forward passes (and a TorchScript model's conversion) may take.

    Returns
    -------
    ModelGraph

    Raises
    ------
    TimeLimitError
        If foreign code runs past ``timeout``.
    """
    from emergence.adapters.onnx_model import from_onnx
    from emergence.adapters.torch_model import _as_input, from_exported, from_torch

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, trust_pickle=trust_pickle)
    if not isinstance(model, LoadedModel):
        kind = "module" if isinstance(model, torch.nn.Module) else (
            "exported" if isinstance(model, torch.export.ExportedProgram) else "onnx")
        if isinstance(model, torch.jit.ScriptModule):
            kind = "torchscript"
        model = LoadedModel(kind, model, None, type(model).__name__)
    opts: dict[str, Any] = dict(threshold=threshold, aggregation=aggregation, granularity=granularity)
    deadline = Deadline(timeout, f"the forward pass of {model.source!r}")
    if model.kind == "module":
        g = from_torch(model.obj, inputs, device=device, **opts)
    elif model.kind == "exported":
        g = from_exported(model.obj, _as_input(inputs), device=device, source=model.source, timeout=timeout, **opts)
    elif model.kind == "torchscript":
        first = _as_input(inputs[:1]) if isinstance(inputs, torch.Tensor) else tuple(_as_input(x[:1]) for x in inputs)
        proto = _torchscript_to_onnx(model.obj, first, deadline)
        g = from_onnx(proto, inputs, source=model.source, device=device, timeout=deadline.remaining() or 1e-3,
                      **opts)
    else:
        g = from_onnx(model.obj, inputs, source=model.source, device=device, timeout=timeout, **opts)
    return dataclasses.replace(g, source=model.source or g.source)
