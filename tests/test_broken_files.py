"""Every broken or hostile file gets exactly one line on stderr and exit status 1, from the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from onnx import TensorProto, helper

    d = tmp_path_factory.mktemp("broken")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    x = torch.rand(2, 4)
    torch.export.save(torch.export.export(net, (x,)), str(d / "good.pt2"))
    good = (d / "good.pt2").read_bytes()
    (d / "text.pt2").write_text("this is not a model\n" * 20)
    (d / "truncated.pt2").write_bytes(good[: len(good) // 2])
    torch.jit.save(torch.jit.trace(net, x), str(d / "good.jit"))
    (d / "truncated.jit").write_bytes((d / "good.jit").read_bytes()[:300])
    (d / "garbage.onnx").write_bytes(bytes(range(256)) * 8)
    (d / "empty.onnx").write_bytes(b"")
    (d / "garbage.pt").write_bytes(b"\x80\x02garbage" * 10)
    (d / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (d / "bad.npz").write_bytes(b"PK\x03\x04 not really")

    def external(name: str, location: str) -> None:
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2])
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=location)
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w])
        (d / name).write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                               .SerializeToString())

    secret = d.parent / "secret.bin"
    secret.write_bytes(np.ones(8, dtype=np.float32).tobytes())
    external("climbs.onnx", "../secret.bin")
    external("absolute.onnx", str(secret))
    external("missing.onnx", "weights.bin")
    return d


CASES = [
    (["measure", "{d}/text.pt2"], "is not a torch.export program"),
    (["measure", "{d}/truncated.pt2"], "could not read 'truncated.pt2'"),
    (["measure", "{d}/truncated.jit"], "truncated.jit"),
    (["measure", "{d}/garbage.onnx"], "ONNX"),
    (["measure", "{d}/empty.onnx"], "ONNX"),
    (["measure", "{d}/garbage.pt"], "garbage.pt"),
    (["measure", "{d}/garbage.safetensors"], "safetensors"),
    (["measure", "{d}/climbs.onnx"], "outside the model's folder; refused"),
    (["measure", "{d}/absolute.onnx"], "outside the model's folder; refused"),
    (["measure", "{d}/missing.onnx"], "is missing"),
    (["measure", "{d}/good.pt2", "--data", "{d}/bad.npz"], "bad.npz"),
    (["measure", "{d}/nowhere.pt2"], "no such file"),
]


@pytest.mark.parametrize("args, phrase", CASES, ids=[c[0][1].split("/")[-1] + "-" + str(i)
                                                     for i, c in enumerate(CASES)])
def test_broken_file_is_one_line(files, args, phrase):
    args = args if "--data" in args else [*args, "--data", "random"]
    r = subprocess.run([sys.executable, "-m", "emergence.cli", *[a.replace("{d}", str(files)) for a in args]], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and phrase in lines[0], lines[0]
    assert r.stdout == ""


def test_external_data_inside_the_folder_is_read(files):
    """The guard refuses only what leaves the folder: data beside the model loads."""
    import onnx
    from onnx import numpy_helper

    from emergence.adapters.onnx_model import load_onnx

    model = onnx.load(str(files / "missing.onnx"), load_external_data=False)
    (files / "weights.bin").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    try:
        loaded = load_onnx(files / "missing.onnx")
        np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]).ravel(), np.arange(8))
    finally:
        (files / "weights.bin").unlink()
    assert model.graph.initializer[0].name == "w"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """A bug (an exception that is not ours) still gives one line; --debug shows the traceback."""
    code = ("import sys\nfrom emergence import cli\n"
            "@cli.app.command('boom')\n"
            "def boom():\n    raise KeyError('internal')\n"
            "sys.argv = ['emergence', *sys.argv[1:]]\ncli.app()\n")
    r = subprocess.run([sys.executable, "-c", code, "boom"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unexpected KeyError" in r.stderr and "--debug" in r.stderr
    r = subprocess.run([sys.executable, "-c", code, "--debug", "boom"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback (most recent call last)" in r.stderr
