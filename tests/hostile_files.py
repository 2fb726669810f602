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


def pt2_edit_json(good: Path, dst: Path, member: str, edit) -> Path:
    """Copy ``good`` with ``edit(obj)`` applied to the JSON member ``member``."""
    def apply(m):
        obj = json.loads(m[member])
        edit(obj)
        m[member] = json.dumps(obj).encode()
    return rewrite_pt2(good, dst, apply)


def pt2_legacy_constants(good: Path, dst: Path, marker: Path) -> Path:
    def edit(m):
        m.pop("data/constants/model_constants_config.json", None)
        m["data/constants/model.pt"] = torch_payload(marker)
    return rewrite_pt2(good, dst, edit)


def pt2_small_bomb(good: Path, dst: Path, size: int = 256 << 20) -> Path:
    return pt2_zip_bomb(good, dst, size)


def plain_zip(dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("readme.txt", "not a model")
    return dst


def pt_zip_bomb(dst: Path, size: int = 256 << 20) -> Path:
    """A torch.save archive whose data member is deflated zeros declaring ``size`` bytes."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(dst, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if "/data/" in info.filename:
                out = zipfile.ZipInfo(info.filename)
                out.compress_type = zipfile.ZIP_DEFLATED
                with z.open(out, "w", force_zip64=True) as fh:
                    chunk = b"\0" * (16 << 20)
                    for _ in range(size // len(chunk)):
                        fh.write(chunk)
            else:
                z.writestr(info.filename, data)
    return dst


def npz_lying_header(dst: Path) -> Path:
    """x.npy declares 10**9 floats but holds 16 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("x.npy", header.getvalue() + b"\0" * 16)
    return dst


def npz_garbage_member(dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("x.npy", b"this is no npy header")
    return dst


def onnx_model(dst: Path, nodes, inputs, outputs, inits=(), opset: int = 17) -> Path:
    import onnx
    from onnx import helper

    g = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(dst))
    return dst


def onnx_loop(dst: Path, trips: int = 2**62) -> Path:
    from onnx import TensorProto as T
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["y_in", "one"], ["y_out"])],
        "body",
        [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
         helper.make_tensor_value_info("y_in", T.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []), helper.make_tensor_value_info("y_out", T.FLOAT, None)],
        [helper.make_tensor("one", T.FLOAT, [], [1.0])])
    return onnx_model(dst, [helper.make_node("Loop", ["M", "c", "x"], ["y"], body=body)],
                      [helper.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("y", T.FLOAT, ["N", 4])],
                      [helper.make_tensor("M", T.INT64, [], [trips]), helper.make_tensor("c", T.BOOL, [], [True])])


def onnx_if(dst: Path) -> Path:
    from onnx import TensorProto as T
    from onnx import helper

    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", T.FLOAT, ["N", 4])])
    return onnx_model(dst, [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
                      [helper.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("y", T.FLOAT, ["N", 4])],
                      [helper.make_tensor("c", T.BOOL, [], [True])])


def onnx_huge_constant(dst: Path, op: str = "ConstantOfShape") -> Path:
    """A constant subgraph asking folding for 10**12 elements, added to the input."""
    from onnx import TensorProto as T
    from onnx import helper

    x = helper.make_tensor_value_info("x", T.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", T.FLOAT, ["N", "M"])
    if op == "ConstantOfShape":
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
        inits = [helper.make_tensor("shape", T.INT64, [2], [10**6, 10**6])]
    elif op == "Expand":
        nodes = [helper.make_node("Expand", ["one", "shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
        inits = [helper.make_tensor("shape", T.INT64, [2], [10**6, 10**6]),
                 helper.make_tensor("one", T.FLOAT, [1], [1.0])]
    elif op == "Tile":
        nodes = [helper.make_node("Tile", ["one", "reps"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
        inits = [helper.make_tensor("reps", T.INT64, [2], [10**6, 10**6]),
                 helper.make_tensor("one", T.FLOAT, [1, 1], [1.0])]
    else:  # Range
        nodes = [helper.make_node("Range", ["a", "b", "d"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
        inits = [helper.make_tensor("a", T.FLOAT, [], [0.0]), helper.make_tensor("b", T.FLOAT, [], [1e12]),
                 helper.make_tensor("d", T.FLOAT, [], [1.0])]
    return onnx_model(dst, nodes, [x], [y], inits)


def onnx_huge_dims(dst: Path) -> Path:
    from onnx import TensorProto as T
    from onnx import helper

    return onnx_model(dst, [helper.make_node("Relu", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", T.FLOAT, ["N", 10**12])],
                      [helper.make_tensor_value_info("y", T.FLOAT, ["N", 10**12])])


def torchscript_loop(dst: Path, bounded: bool = False) -> Path:
    class Forever(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.lin(x)
            while True:
                y = y + 1.0
            return y

    class Long(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.lin(x)
            i = 0
            while i < 4611686018427387904:
                y = y + 1.0
                i += 1
            return y

    torch.jit.save(torch.jit.script(Long() if bounded else Forever()), str(dst))
    return dst


GRAPHML_HEAD = ('<?xml version="1.0"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
                '<key id="a" for="node" attr.name="active" attr.type="boolean"/>'
                '<key id="l" for="node" attr.name="layer" attr.type="double"/><graph edgedefault="directed">')


def graphml(dst: Path, body: str, head: str = GRAPHML_HEAD) -> Path:
    dst.write_text(head + body + "</graph></graphml>\n")
    return dst


def graphml_padded_doctype(dst: Path) -> Path:
    """The DOCTYPE after 8 kB of whitespace and a comment (a check of the first 4 kB misses it)."""
    dst.write_text('<?xml version="1.0"?>\n' + " " * 8192 + "<!-- pad -->\n"
                   '<!DOCTYPE graphml [<!ENTITY a "aaaaaaaaaa">]>\n'
                   '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault="directed">'
                   '<node id="n0"/></graph></graphml>\n')
    return dst


def shared_file(tmp_path_factory, name: str, make) -> Path:
    """A big file made once per test run, shared by every pytest-xdist worker (made under a file lock)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent
    path = root / name
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            partial = root / f".{name}.partial"
            make(partial)
            partial.rename(path)
    return path
