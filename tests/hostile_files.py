"""Hostile files made in the tests: crafted archives whose payload only creates a marker file, and bombs.

Each maker writes one file and returns its path. A payload is a pickle whose ``__reduce__`` calls
``open(marker, "w")``: harmless, but proof that code ran when the marker exists.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch


class Payload:
    """Unpickling this creates ``path`` (the stand-in for arbitrary code)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def torch_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    return buf.getvalue()


def small_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()


def good_pt2(path: Path) -> Path:
    """A small program with a dynamic batch dimension (so its shapes hold sympy expressions)."""
    batch = torch.export.Dim.AUTO
    torch.export.save(torch.export.export(small_net(), (torch.rand(2, 4),), dynamic_shapes=({0: batch},)), str(path))
    return path


def _members(path: Path) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = names[0].split("/", 1)[0] + "/"
        return root, {n[len(root):]: z.read(n) for n in names}


def _write(path: Path, root: str, members: dict[str, bytes], compress: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(root + name, data, compress_type=(compress or {}).get(name, zipfile.ZIP_STORED))
    return path


def rewrite_pt2(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` to ``dst`` with ``edit(members)`` applied to the dict of member bytes."""
    root, members = _members(src)
    edit(members)
    return _write(dst, root, members)


def pt2_pickled_sample_inputs(good: Path, dst: Path, marker: Path) -> Path:
    return rewrite_pt2(good, dst, lambda m: m.__setitem__("data/sample_inputs/model.pt", torch_payload(marker)))


def pt2_pickled_weight(good: Path, dst: Path, marker: Path) -> Path:
    def edit(m):
        cfg = json.loads(m["data/weights/model_weights_config.json"])
        cfg["config"]["0.bias"]["use_pickle"] = True
        m["data/weights/" + cfg["config"]["0.bias"]["path_name"]] = torch_payload(marker)
        m["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()
    return rewrite_pt2(good, dst, edit)


def pt2_pickled_constant(good: Path, dst: Path, marker: Path, prefix: str = "tensor_") -> Path:
    def edit(m):
        cfg = {"config": {"c": {"path_name": f"{prefix}0", "is_param": False, "use_pickle": True,
                                "tensor_meta": None}}}
        m[f"data/constants/{prefix}0"] = torch_payload(marker)
        m["data/constants/model_constants_config.json"] = json.dumps(cfg).encode()
    return rewrite_pt2(good, dst, edit)


def pt2_legacy_weights(good: Path, dst: Path, marker: Path) -> Path:
    def edit(m):
        del m["data/weights/model_weights_config.json"]
        m["data/weights/model.pt"] = torch_payload(marker)
    return rewrite_pt2(good, dst, edit)


def pt2_sympy_eval(good: Path, dst: Path, marker: Path) -> Path:
    """A shape expression that sympy.sympify would evaluate as Python."""
    code = f"open({str(marker)!r}, 'w')"

    def edit(m):
        text = m["models/model.json"].decode()
        m["models/model.json"] = re.sub(r'"expr_str": "[^"]*"', lambda _: '"expr_str": ' + json.dumps(code),
                                        text).encode()
    return rewrite_pt2(good, dst, edit)


def pt2_python_target(good: Path, dst: Path, target: str = "torch.serialization.os.system") -> Path:
    """A node whose target resolves to a Python function, not an operator."""
    def edit(m):
        prog = json.loads(m["models/model.json"])
        nodes = prog["graph_module"]["graph"]["nodes"]
        nodes[0]["target"] = target
        m["models/model.json"] = json.dumps(prog).encode()
    return rewrite_pt2(good, dst, edit)


def pt2_zip_bomb(good: Path, dst: Path, size: int = 3 << 30) -> Path:
    """A weight member that declares ``size`` bytes and deflates to a few MB (written streaming)."""
    root, members = _members(good)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            if name == "data/weights/weight_0":
                info = zipfile.ZipInfo(root + name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with z.open(info, "w", force_zip64=True) as fh:
                    chunk = b"\0" * (64 << 20)
                    for _ in range(size // len(chunk)):
                        fh.write(chunk)
                continue
            z.writestr(root + name, data)
    return dst


def pt2_stride_zero(good: Path, dst: Path) -> Path:
    def edit(m):
        cfg = json.loads(m["data/weights/model_weights_config.json"])
        meta = cfg["config"]["0.bias"]["tensor_meta"]
        meta["sizes"], meta["strides"] = [{"as_int": 1 << 40}], [{"as_int": 0}]
        m["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()
    return rewrite_pt2(good, dst, edit)


def pt2_past_storage(good: Path, dst: Path) -> Path:
    def edit(m):
        cfg = json.loads(m["data/weights/model_weights_config.json"])
        cfg["config"]["0.bias"]["tensor_meta"]["storage_offset"] = {"as_int": 1000}
        m["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()
    return rewrite_pt2(good, dst, edit)


def npz_bomb(dst: Path, size: int = 4 << 30) -> Path:
    """An .npz whose x declares ``size`` bytes of float32 zeros, deflated."""
    n = size // 4
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    with zipfile.ZipFile(dst, "w") as z:
        info = zipfile.ZipInfo("x.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            chunk = b"\0" * (64 << 20)
            for _ in range(size // len(chunk)):
                fh.write(chunk)
    return dst


def pt_stride_zero(dst: Path) -> Path:
    """A state_dict-style .pt whose tensor is a stride-0 view of one element declaring 2**40."""
    torch.save({"arch": "{}", "state_dict": {"w": torch.ones(1).expand(1 << 40)}}, str(dst))
    return dst


def pt_pickled_module(dst: Path, marker: Path) -> Path:
    dst.write_bytes(torch_payload(marker))
    return dst


def graphml_entity_bomb(dst: Path) -> Path:
    ents = ['<!ENTITY a0 "xxxxxxxxxx">'] + [f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 9)]
    dst.write_text('<?xml version="1.0"?>\n<!DOCTYPE graphml [' + "".join(ents) + ']>\n'
                   '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault="directed">'
                   '<node id="n0"><data key="d0">&a8;</data></node></graph></graphml>\n')
    return dst


def graphml_external_entity(dst: Path, secret: Path) -> Path:
    dst.write_text('<?xml version="1.0"?>\n<!DOCTYPE graphml [<!ENTITY ext SYSTEM "file://' + str(secret) + '">]>\n'
                   '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
                   '<key id="active" for="node" attr.name="active" attr.type="boolean"/>'
                   '<graph edgedefault="directed"><node id="n0"><data key="active">&ext;</data></node>'
                   '<node id="n1"/><edge source="n0" target="n1"/></graph></graphml>\n')
    return dst
