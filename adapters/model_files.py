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
import enum
import os
import pickle
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emergence.activity import ModelGraph
from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.adapters.signatures import exported_input_specs, exported_user_inputs, input_shape, onnx_input_specs
from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_THRESHOLD
from emergence.errors import (
    EmergenceError,
    FileFormatError,
    InputShapeError,
    UnsupportedOpError,
    UntrustedPickleError,
    first_line,
)

__all__ = ["LoadedModel", "ModelKind", "check_terminates", "differentiable", "ensure_terminates", "load_model",
           "model_graph"]


class ModelKind(str, enum.Enum):
    """What a loaded model is; what each kind can do (a graph, gradients) is :data:`_KINDS`, in this module only.

    The members are strings too (``ModelKind.ONNX == "onnx"``).
    """

    MODULE = "module"
    EXPORTED = "exported"
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"

    @classmethod
    def of(cls, obj: Any) -> ModelKind:
        """The kind of a model object (an ``nn.Module``, ``ExportedProgram``, ScriptModule or ONNX proto)."""
        if isinstance(obj, torch.jit.ScriptModule):
            return cls.TORCHSCRIPT
        if isinstance(obj, torch.nn.Module):
            return cls.MODULE
        return cls.EXPORTED if isinstance(obj, torch.export.ExportedProgram) else cls.ONNX


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model of one :class:`ModelKind`, with what its file says about its inputs."""

    kind: ModelKind
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
    return LoadedModel(ModelKind.MODULE, obj.eval(), None, p.name)


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
    loader = _FORMATS.get(p.suffix.lower(), _load_pytorch_file)
    return loader(p, trust_pickle)


def _load_onnx_file(p: Path, trust_pickle: bool) -> LoadedModel:
    from emergence.adapters.onnx_model import load_onnx

    model = load_onnx(p)
    specs = onnx_input_specs(model)
    return LoadedModel(ModelKind.ONNX, model, input_shape(specs), p.name, specs)


def _load_pt2_file(p: Path, trust_pickle: bool) -> LoadedModel:
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
        raise FileFormatError(f"could not read {p.name!r} as a torch.export program: {first_line(exc)}") from exc
    specs = exported_input_specs(ep)
    return LoadedModel(ModelKind.EXPORTED, ep, input_shape(specs), p.name, specs)


def _load_safetensors_file(p: Path, trust_pickle: bool) -> LoadedModel:
    from emergence.adapters.architectures import load_model_file

    model, spec = load_model_file(p)
    return LoadedModel(ModelKind.MODULE, model, spec.input_shape, p.name)


def _load_pytorch_file(p: Path, trust_pickle: bool) -> LoadedModel:
    """TorchScript, a checkpoint of a built-in architecture, or (trusted only) a pickled module."""
    if _is_torchscript(p):
        try:
            with _torch_logs_silenced():
                module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # torch.jit.load raises RuntimeError on a bad archive
            raise FileFormatError(f"could not read {p.name!r} as TorchScript: {first_line(exc)}") from exc
        return LoadedModel(ModelKind.TORCHSCRIPT, module, None, p.name)
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
    from emergence.adapters.architectures import from_checkpoint

    model, spec = from_checkpoint(obj, p.name)
    return LoadedModel(ModelKind.MODULE, model, spec.input_shape, p.name)


#: File suffix -> loader ``(path, trust_pickle) -> LoadedModel``; any other suffix is read as a PyTorch file.
_FORMATS: dict[str, Callable[[Path, bool], LoadedModel]] = {
    ".onnx": _load_onnx_file,
    ".pt2": _load_pt2_file,
    ".safetensors": _load_safetensors_file,
}


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
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, trust_pickle=trust_pickle)
    if not isinstance(model, LoadedModel):
        model = LoadedModel(ModelKind.of(model), model, None, type(model).__name__)
    opts: dict[str, Any] = dict(threshold=threshold, aggregation=aggregation, granularity=granularity)
    g = _KINDS[model.kind].graph(model, inputs, device, timeout, opts)
    return dataclasses.replace(g, source=model.source or g.source)


def _module_graph(model: LoadedModel, inputs: Any, device: Any, timeout: float | None, opts: dict[str, Any]) -> Any:
    from emergence.adapters.torch_model import from_torch

    return from_torch(model.obj, inputs, device=device, **opts)


def _exported_graph(model: LoadedModel, inputs: Any, device: Any, timeout: float | None,
                    opts: dict[str, Any]) -> Any:
    from emergence.adapters.torch_model import _as_input, from_exported

    return from_exported(model.obj, _as_input(inputs), device=device, source=model.source, timeout=timeout, **opts)


def _torchscript_graph(model: LoadedModel, inputs: Any, device: Any, timeout: float | None,
                       opts: dict[str, Any]) -> Any:
    from emergence.adapters.onnx_model import from_onnx
    from emergence.adapters.torch_model import _as_input

    deadline = Deadline(timeout, f"the forward pass of {model.source!r}")
    first = _as_input(inputs[:1]) if isinstance(inputs, torch.Tensor) else tuple(_as_input(x[:1]) for x in inputs)
    proto = _torchscript_to_onnx(model.obj, first, deadline)
    return from_onnx(proto, inputs, source=model.source, device=device, timeout=deadline.remaining() or 1e-3, **opts)


def _onnx_graph(model: LoadedModel, inputs: Any, device: Any, timeout: float | None, opts: dict[str, Any]) -> Any:
    from emergence.adapters.onnx_model import from_onnx

    return from_onnx(model.obj, inputs, source=model.source, device=device, timeout=timeout, **opts)


class _FixedBatch(torch.nn.Module):
    """Runs a module exported with a fixed batch size on any batch, chunk by chunk (zero-padding the last)."""

    def __init__(self, inner: torch.nn.Module, batch: int) -> None:
        super().__init__()
        self.inner, self.batch = inner, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from emergence.adapters._probe import padded_chunks

        return torch.cat([self.inner(chunk)[:keep] for chunk, keep in padded_chunks(x, self.batch, fixed=True)])


def _static_batch(ep: Any) -> int | None:
    users = set(exported_user_inputs(ep))
    for n in ep.graph.nodes:
        if n.op == "placeholder" and n.name in users:
            b = n.meta["val"].shape[0]
            return int(b) if isinstance(b, int) else None
    return None


def _module_itself(model: LoadedModel) -> torch.nn.Module:
    return model.obj


def _exported_module(model: LoadedModel) -> torch.nn.Module:
    module = model.obj.module()
    batch = _static_batch(model.obj)
    return module if batch is None else _FixedBatch(module, batch)


def _no_gradients(model: LoadedModel) -> torch.nn.Module:
    raise UnsupportedOpError("the landscape needs gradients, and ONNX models cannot be differentiated here; "
                             "use the PyTorch file of the model (.pt2, TorchScript or a state_dict)")


def _no_check(model: LoadedModel, example: Any, deadline: Deadline) -> None:
    """Nothing of this kind runs outside Python, where a time limit reaches it."""


def _torchscript_terminates(model: LoadedModel, example: Any, deadline: Deadline) -> None:
    check_terminates(model.obj, example, deadline)


@dataclass(frozen=True)
class _KindOps:
    """What each :class:`ModelKind` can do: its graph, a module to differentiate, a check that it finishes."""

    graph: Callable[[LoadedModel, Any, Any, float | None, dict[str, Any]], Any]
    module: Callable[[LoadedModel], torch.nn.Module]
    terminates: Callable[[LoadedModel, Any, Deadline], None]


#: The one place a :class:`ModelKind` is dispatched on.
_KINDS: dict[ModelKind, _KindOps] = {
    ModelKind.MODULE: _KindOps(_module_graph, _module_itself, _no_check),
    ModelKind.EXPORTED: _KindOps(_exported_graph, _exported_module, _no_check),
    ModelKind.TORCHSCRIPT: _KindOps(_torchscript_graph, _module_itself, _torchscript_terminates),
    ModelKind.ONNX: _KindOps(_onnx_graph, _no_gradients, _no_check),
}


def differentiable(model: LoadedModel) -> torch.nn.Module:
    """A PyTorch module to differentiate (a program exported with a fixed batch runs on any batch).

    Raises
    ------
    UnsupportedOpError
        For ONNX models, which cannot be differentiated here.
    """
    return _KINDS[model.kind].module(model)


def ensure_terminates(model: LoadedModel, example: Any, deadline: Deadline) -> None:
    """Refuse a model whose forward pass runs past ``deadline`` where Python cannot stop it (TorchScript).

    Raises
    ------
    TimeLimitError
        If the module runs past the deadline (it is killed, nothing is left running).
    """
    _KINDS[model.kind].terminates(model, example, deadline)
