"""Model files: every supported kind loads; broken, hostile or unsupported ones are refused cleanly."""

import pickle
import zipfile

import numpy as np
import onnx
import pytest
import torch
from model_zoo import build

import emergence
from emergence import (
    FileFormatError,
    InputShapeError,
    NonFiniteError,
    UnsupportedOpError,
    UntrustedPickleError,
)
from emergence.adapters.architectures import ArchSpec, save_model
from emergence.adapters.architectures import build as build_arch
from emergence.adapters.model_files import load_model, model_graph


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_builtin_architecture_round_trip(tmp_path, suffix):
    spec = ArchSpec("cnn", (1, 12, 12), 3, {"channels": [4, 6], "hidden": 8})
    torch.manual_seed(0)
    model = build_arch(spec)
    path = save_model(model, spec, tmp_path / f"m{suffix}")
    loaded = load_model(path)
    assert loaded.kind == "module" and loaded.input_shape == (1, 12, 12)
    x = torch.rand(16, 1, 12, 12)
    a, b = model_graph(model, x), model_graph(path, x)
    assert torch.equal(a.graph.edge_index, b.graph.edge_index)
    assert emergence.measure(a.graph).value == emergence.measure(b.graph).value


def test_trusted_pickle_loads_and_untrusted_is_refused(tmp_path):
    model, shape = build("mlp")
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(UntrustedPickleError, match="--trust-pickle"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    assert loaded.kind == "module"
    assert model_graph(loaded, torch.rand(4, *shape)).graph.num_nodes == 64 + 24 + 16 + 5


class _Hostile:
    def __reduce__(self):
        import os

        return (os.mkdir, ("/tmp/emergence-pwned-by-pickle",))


def test_hostile_pickle_runs_nothing(tmp_path):
    import os
    import shutil

    shutil.rmtree("/tmp/emergence-pwned-by-pickle", ignore_errors=True)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Hostile()}, path)
    with pytest.raises(UntrustedPickleError):
        load_model(path)
    legacy = tmp_path / "evil.pth"
    legacy.write_bytes(pickle.dumps(_Hostile()))
    with pytest.raises((UntrustedPickleError, FileFormatError)):
        load_model(legacy)
    assert not os.path.exists("/tmp/emergence-pwned-by-pickle")


def _truncate(src, dst, frac=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def test_broken_files_are_refused(tmp_path):
    model, shape = build("mlp")
    x = torch.rand(2, *shape)
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(pt2))
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), dynamo=True, verbose=False)
    spec = ArchSpec("mlp", (4,), 2, {"widths": [3]})
    sd = save_model(build_arch(spec), spec, tmp_path / "sd.pt")
    cases = [
        (tmp_path / "missing.onnx", "no such file"),
        (_truncate(pt2, tmp_path / "half.pt2"), "could not read 'half.pt2'"),
        (_truncate(onnx_path, tmp_path / "half.onnx"), "ONNX"),
        (_truncate(sd, tmp_path / "half.pt"), "could not read 'half.pt'"),
    ]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 50)
    cases.append((junk, "ONNX"))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    cases.append((text, "could not read 'notes.pt'"))
    plain = tmp_path / "plain.pt"
    torch.save(build_arch(spec).state_dict(), plain)
    cases.append((plain, "state_dict without an architecture"))
    st = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(st))
    cases.append((st, "no architecture metadata"))
    for path, match in cases:
        with pytest.raises(FileFormatError, match=match):
            load_model(path)


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    model, shape = build("rescnn")
    x = torch.rand(2, *shape)
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b")},)), str(pt2))
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), dynamo=True, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("b")},))
    jit = tmp_path / "m.jit"
    torch.jit.script(model).save(str(jit))
    bad = torch.rand(4, 2, 9, 9)
    for target in (model, pt2, onnx_path, jit):
        with pytest.raises(InputShapeError, match="rejects inputs of shape"):
            model_graph(target, bad)


def test_unsupported_torch_op_is_named():
    class Sorter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.sort(self.fc(x), dim=1).values

    with pytest.raises(UnsupportedOpError, match="operation 'sort' \\(node 'sort'\\)"):
        model_graph(Sorter(), torch.rand(3, 4))
    recurrent = torch.nn.LSTM(4, 3, batch_first=True)

    class LastStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = recurrent

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    assert model_graph(LastStep(), torch.rand(2, 5, 4)).layers[-1].name == "rnn.t4"  # recurrent layers map

    class Cumulative(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.cumsum(self.fc(x), dim=1)

    with pytest.raises(UnsupportedOpError, match="operation 'cumsum'"):
        model_graph(Cumulative(), torch.rand(2, 4))


def test_unsupported_onnx_op_is_named():
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "W")
    k = onnx.numpy_helper.from_array(np.array([2], dtype=np.int64), "K")
    graph = h.make_graph(
        [h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="dense"),
         h.make_node("TopK", ["y", "K"], ["v", "i"], name="pick")],
        "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [h.make_tensor_value_info("v", onnx.TensorProto.FLOAT, ["n", 2])], [w, k],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match="ONNX op 'TopK' \\(node 'pick'\\)"):
        model_graph(model, torch.rand(2, 4))


def test_onnx_weights_from_constant_subgraphs_are_folded():
    """Weights produced by Constant -> Reshape -> Identity (not initializers) still give edges."""
    h = onnx.helper
    flat = onnx.numpy_helper.from_array(np.arange(1, 13, dtype=np.float32), "flat")
    shape = onnx.numpy_helper.from_array(np.array([3, 4], dtype=np.int64), "shape")
    graph = h.make_graph(
        [h.make_node("Constant", [], ["wflat"], value=flat, name="c"),
         h.make_node("Constant", [], ["wshape"], value=shape, name="s"),
         h.make_node("Reshape", ["wflat", "wshape"], ["w34"], name="r"),
         h.make_node("Identity", ["w34"], ["W"], name="i"),
         h.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="dense"),
         h.make_node("Relu", ["y"], ["z"], name="act")],
        "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["n", 3])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    mg = model_graph(model, torch.rand(5, 4))
    assert mg.graph.num_nodes == 7 and mg.graph.num_edges == 12
    assert sorted(mg.graph.edge_weight.tolist()) == [float(v) for v in range(1, 13)]


def test_npz_inputs_are_checked(tmp_path):
    from emergence.adapters.datasets import load_npz, probe_inputs

    np.savez(tmp_path / "nan.npz", x=np.full((2, 4), np.nan, dtype=np.float32))
    with pytest.raises(NonFiniteError):
        probe_inputs(tmp_path / "nan.npz", input_shape=(4,))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileFormatError, match="pickled objects"):
        load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "noy.npz", z=np.zeros(3))
    with pytest.raises(FileFormatError, match="no array 'x'"):
        load_npz(tmp_path / "noy.npz")
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
    with pytest.raises(FileFormatError):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "img.npz", x=np.zeros((5, 8, 8), dtype=np.uint8))
    assert probe_inputs(tmp_path / "img.npz", samples=3, input_shape=(64,)).shape == (3, 64)
    with pytest.raises(InputShapeError, match="model takes \\(3, 8, 8\\)"):
        probe_inputs(tmp_path / "img.npz", input_shape=(3, 8, 8))
