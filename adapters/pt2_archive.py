"""``torch.export`` archives (``.pt2``) read without running anything they contain.

``torch.export.load`` unpickles several members of the archive with the full unpickler
(``weights_only=False``: pickled weights and constants, the legacy weights file, and the sample
inputs as a fallback), hands shape expressions to ``sympy.sympify`` (which calls ``eval``), and
resolves node targets by ``getattr`` on ``torch``, so a crafted file can run code. This reader
opens the zip itself with declared sizes checked first (:func:`emergence.adapters.bounded.check_zip`),
reads raw tensor bytes into tensors (views checked against their storage), allows pickled
members only through torch's ``weights_only`` unpickler, refuses custom-object constants,
accepts shape expressions only of the symbols and functions torch writes, and node targets only
of ``torch.ops`` operators and ``operator``/``math`` builtins. Then torch's own deserializer
builds the program from those checked parts. ``trust_pickle=True`` uses ``torch.export.load``
as it is.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from typing import Any

import torch

from emergence.adapters.bounded import DEFAULT_LIMITS, ReadLimits, check_elements, check_zip, load_weights
from emergence.errors import FileFormatError, UntrustedPickleError, first_line

__all__ = ["read_pt2"]

_MODEL = "model"
_WEIGHTS = "data/weights/"
_CONSTANTS = "data/constants/"
_SAMPLE = "data/sample_inputs/model.pt"

# Identifiers torch writes in shape expressions (torch.utils._sympy.functions and sympy core).
_SYMPY_NAMES = frozenset({
    "Mod", "PythonMod", "FloorDiv", "CeilDiv", "CleanDiv", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt",
    "Ge", "And", "Or", "Not", "True", "False", "oo", "zoo", "nan", "Integer", "Rational", "Float", "Pow",
    "PowByNatural", "FloatPow", "IntTrueDiv", "FloatTrueDiv", "ToFloat", "TruncToInt", "TruncToFloat",
    "RoundToInt", "RoundDecimal", "Identity", "Where", "LShift", "RShift", "Mul", "Add", "sqrt", "floor",
    "ceiling", "IsNonOverlappingAndDenseIndicator", "ModularIndexing", "BitwiseFn_bitwise_and",
    "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor", "OpaqueUnaryFn_sqrt", "OpaqueUnaryFn_exp",
    "OpaqueUnaryFn_log", "Symbol",
    # assumptions of Symbol(...), as sympy's srepr writes them
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero", "even",
    "odd", "commutative", "extended_real", "rational",
})
_SYMBOL = re.compile(r"[a-z]{1,5}\d+")
_TOKEN = re.compile(r"\s+|\d+\.\d*(?:e[+-]?\d+)?|\d+|'[a-z]{1,5}\d+'|[A-Za-z_][A-Za-z0-9_]*|\*\*|//|==|!=|<=|>=|"
                    r"[-+*/%(),<>&|~=]")
_TARGET = re.compile(r"(torch\.ops(\.[A-Za-z_][A-Za-z0-9_]*){2,3}|_operator\.[a-z_]+|math\.[a-z_]+)")
#: The only double-underscore names a target may hold: ATen's bitwise operators (masks of attention
#: windows are built with them); any other dunder could walk from torch.ops to Python internals.
_DUNDER_OPS = re.compile(r"torch\.ops\.aten\.__(i?(and|or|xor|lshift|rshift))__(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _check_expr(expr: Any, where: str) -> None:
    """Refuse a shape expression that is anything but symbols, numbers, operators and known functions."""
    if not isinstance(expr, str) or len(expr) > 10_000:
        raise FileFormatError(f"{where}: a shape expression that is not a short string; refused")
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise FileFormatError(f"{where}: shape expression {expr[:60]!r} has {expr[pos]!r}, which torch never "
                                  "writes; refused (sympy would evaluate it as Python)")
        tok = m.group()
        if (tok[0].isalpha() or tok[0] == "_") and tok not in _SYMPY_NAMES and not _SYMBOL.fullmatch(tok):
            raise FileFormatError(f"{where}: shape expression {expr[:60]!r} names {tok!r}, which is neither a "
                                  "shape symbol nor a sympy function torch writes; refused")
        pos = m.end()


def _check_program_json(obj: Any, label: str) -> None:
    """Walk the serialized program: every shape expression and every node target is checked."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k == "expr_str":
                    _check_expr(v, label)
                elif k == "range_constraints" and isinstance(v, dict):
                    for name in v:
                        _check_expr(name, label)
                elif (k == "target" and isinstance(v, str) and "inputs" in item
                      and (not _TARGET.fullmatch(v) or ("__" in v and not _DUNDER_OPS.fullmatch(v)))):
                    raise FileFormatError(f"{label}: a node calls {v[:80]!r}, which is not a torch operator; "
                                          "refused (only torch.ops, operator and math functions may run)")
                if isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(x for x in item if isinstance(x, (dict, list)))


def _check_targets(ep: Any, label: str) -> None:
    """After deserialization: every call in every graph is an operator, never a Python function."""
    import math
    import operator

    for gm in ep.graph_module.modules():
        graph = getattr(gm, "graph", None)
        if graph is None:
            continue
        for n in graph.nodes:
            if n.op in ("call_module", "call_method"):
                raise FileFormatError(f"{label}: node {n.name!r} is a {n.op}, which an exported program never has; "
                                      "refused")
            if n.op != "call_function":
                continue
            t = n.target
            if isinstance(t, (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)):
                continue
            if type(t).__name__ == "builtin_function_or_method" and getattr(t, "__module__", None) in (
                    "_operator", "operator", "math") and getattr(operator, t.__name__, getattr(math, t.__name__,
                                                                                            None)) is t:
                continue
            raise FileFormatError(f"{label}: node {n.name!r} calls {t!r}, which is not a torch operator; refused")


def _weights_only(data: bytes, label: str, member: str, limits: ReadLimits) -> Any:
    """A pickled member, through torch's ``weights_only`` unpickler only (its own zip checked first)."""
    import pickle

    try:
        return load_weights(data, f"{label} member {member}", limits)
    except pickle.UnpicklingError as exc:  # objects beyond weights
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"a call of {found.group(1)}" if found else "objects beyond tensors"
        raise UntrustedPickleError(
            f"{label!r} member {member!r} is a pickle holding {what}, which torch's weights-only loader refuses; "
            "unpickling it would run code: pass --trust-pickle (library: trust_pickle=True) only if you trust "
            "the file") from exc


class _Archive:
    """The members of one ``.pt2`` under its root folder, read with declared sizes checked."""

    def __init__(self, path: str, label: str, limits: ReadLimits) -> None:
        self.z = check_zip(path, label, limits)
        self.label, self.limits = label, limits
        names = self.z.namelist()
        roots = {n.split("/", 1)[0] for n in names if "/" in n}
        fmt = [n for n in names if n.endswith("/archive_format") and n.count("/") == 1]
        if not fmt:
            raise FileFormatError(f"{label!r} is a zip archive but not a torch.export program (no archive_format "
                                  "member); was it written by torch.export.save?")
        self.root = fmt[0].rsplit("/", 1)[0] + "/"
        if len(roots) > 1 and self.root[:-1] not in roots:
            raise FileFormatError(f"{label!r} has no single root folder")
        self.names = {n[len(self.root):] for n in names if n.startswith(self.root)}

    def has(self, member: str) -> bool:
        return member in self.names

    def read(self, member: str) -> bytes:
        if member not in self.names:
            raise FileFormatError(f"{self.label!r} lacks the member {member!r}; truncated or not written by "
                                  "torch.export.save?")
        try:
            return self.z.read(self.root + member)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise FileFormatError(f"{self.label!r} member {member!r} is damaged: {first_line(exc)}") from exc

    def json(self, member: str) -> Any:
        try:
            return json.loads(self.read(member).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise FileFormatError(f"{self.label!r} member {member!r} is not valid JSON: {first_line(exc)}") from exc


def _sizes(values: list[dict], where: str) -> list[int]:
    out = []
    for v in values:
        if not isinstance(v, dict) or "as_int" not in v or not isinstance(v["as_int"], int):
            raise FileFormatError(f"{where}: a weight with a symbolic or malformed size; refused")
        out.append(v["as_int"])
    return out


def _payloads(arc: _Archive, folder: str, config: Any, prefix_ok: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors of a weights or constants config, from raw bytes (pickled ones through ``weights_only``)."""
    from torch._export.serde.serialize import deserialize_scalar_type

    label, limits = arc.label, arc.limits
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise FileFormatError(f"{label!r}: {folder} config has no 'config' table")
    flat: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for fqn, meta in entries.items():
        where = f"{label!r} {folder}{fqn}"
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise FileFormatError(f"{where}: malformed entry")
        path = meta["path_name"]
        if "/" in path or "\\" in path or ".." in path:
            raise FileFormatError(f"{where} names {path!r}, outside the archive's {folder} folder; refused")
        if path.startswith(("custom_obj_", "opaque_obj_")):
            raise UntrustedPickleError(
                f"{where} is a pickled custom object ({path!r}); loading it would run code: pass --trust-pickle "
                "(library: trust_pickle=True) only if you trust the file")
        if not path.startswith(prefix_ok):
            raise FileFormatError(f"{where} names {path!r}, which is no payload kind torch writes; refused")
        if meta.get("use_pickle"):
            out[fqn] = _weights_only(arc.read(folder + path), label, folder + path, limits)
            if not isinstance(out[fqn], torch.Tensor):
                raise FileFormatError(f"{where} unpickles to a {type(out[fqn]).__name__}, not a tensor")
            continue
        tm = meta.get("tensor_meta")
        if not isinstance(tm, dict):
            raise FileFormatError(f"{where}: no tensor_meta")
        try:
            dtype = deserialize_scalar_type(tm["dtype"])
            sizes, strides = _sizes(tm["sizes"], where), _sizes(tm["strides"], where)
            offset = tm["storage_offset"]["as_int"]
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise FileFormatError(f"{where}: malformed tensor_meta ({first_line(exc)})") from exc
        numel = check_elements(sizes, where, limits)
        if path not in flat:
            data = arc.read(folder + path)
            elem = torch.empty((), dtype=dtype).element_size()
            if len(data) % elem:
                raise FileFormatError(f"{where}: {len(data)} bytes is no whole number of {dtype} elements")
            flat[path] = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.empty(0, dtype=dtype)
        storage = flat[path]
        if len(sizes) != len(strides) or any(s < 0 for s in strides) or not isinstance(offset, int) or offset < 0:
            raise FileFormatError(f"{where}: malformed strides or offset")
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=False)) if numel else 0
        if numel and last >= storage.numel():
            raise FileFormatError(f"{where}: declares a view past the end of its {storage.numel()} stored elements; "
                                  "the file is damaged")
        if numel > storage.numel():
            raise FileFormatError(f"{where}: declares {numel} elements over a storage of {storage.numel()} (a stride-0 "
                                  "view); refused")
        t = torch.as_strided(storage, sizes, strides, offset)
        out[fqn] = torch.nn.Parameter(t, requires_grad=bool(tm.get("requires_grad"))) if meta.get("is_param") else t
    return out


def read_pt2(path: str, label: str, *, trust_pickle: bool = False,
             limits: ReadLimits = DEFAULT_LIMITS) -> torch.export.ExportedProgram:
    """Load the program of a ``.pt2`` archive without executing anything it holds.

    Parameters
    ----------
    path : str
        The archive.
    label : str
        Its name in messages.
    trust_pickle : bool, default False
        Use ``torch.export.load`` unchanged (unpickles with the full unpickler: runs code).
    limits : ReadLimits, optional
        What the archive may declare.

    Returns
    -------
    torch.export.ExportedProgram

    Raises
    ------
    FileFormatError
        If the archive is damaged, a bomb, or holds expressions or calls torch never writes.
    UntrustedPickleError
        If a member can only be read by the full unpickler.
    """
    if trust_pickle:
        check_zip(path, label, limits).close()
        return torch.export.load(path)
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    arc = _Archive(path, label, limits)
    try:
        if arc.read("archive_format").decode(errors="replace").strip() != "pt2":
            raise FileFormatError(f"{label!r} is not a pt2 archive (archive_format is not 'pt2')")
        if arc.has("byteorder") and arc.read("byteorder").decode(errors="replace").strip() != sys.byteorder:
            raise FileFormatError(f"{label!r} was written on a machine of the other byte order; re-export it here")
        models = sorted(n for n in arc.names if n.startswith("models/") and n.endswith(".json"))
        if f"models/{_MODEL}.json" not in models:
            raise FileFormatError(f"{label!r} holds no program named {_MODEL!r} (has {models[:3]})")
        program = arc.json(f"models/{_MODEL}.json")
        _check_program_json(program, repr(label))
        if arc.has(f"{_WEIGHTS}{_MODEL}.pt"):  # the legacy layout: one torch.save of the state_dict
            state: Any = _weights_only(arc.read(f"{_WEIGHTS}{_MODEL}.pt"), label, f"{_WEIGHTS}{_MODEL}.pt", limits)
        else:
            state = _payloads(arc, _WEIGHTS, arc.json(f"{_WEIGHTS}{_MODEL}_weights_config.json"), ("weight_",))
        if arc.has(f"{_CONSTANTS}{_MODEL}.pt"):
            constants: Any = _weights_only(arc.read(f"{_CONSTANTS}{_MODEL}.pt"), label,
                                           f"{_CONSTANTS}{_MODEL}.pt", limits)
        elif arc.has(f"{_CONSTANTS}{_MODEL}_constants_config.json"):
            constants = _payloads(arc, _CONSTANTS, arc.json(f"{_CONSTANTS}{_MODEL}_constants_config.json"),
                                  ("tensor_",))
        else:
            constants = {}
        sample = arc.read(_SAMPLE) if arc.has(_SAMPLE) else b""
        examples = _weights_only(sample, label, _SAMPLE, limits) if sample else ((), {})
        if not isinstance(state, dict) or not isinstance(constants, dict):
            raise FileFormatError(f"{label!r}: its weights are not a table of tensors")
        if not isinstance(examples, tuple):
            raise FileFormatError(f"{label!r}: its sample inputs are not a tuple")
    finally:
        arc.z.close()
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        ep = ExportedProgramDeserializer(None).deserialize(serialized, state, constants, examples)
    except (FileFormatError, UntrustedPickleError):
        raise
    except Exception as exc:  # torch's deserializer raises many kinds on a malformed program
        raise FileFormatError(f"could not read {label!r} as a torch.export program: {first_line(exc)}") from exc
    _check_targets(ep, repr(label))
    return ep
