"""ONNX models of every opset from 7 on, built with onnx.helper: attribute-form and input-form ops give the
same graph, and upgrading an old model keeps what it computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import emergence
from emergence.adapters.onnx_model import from_onnx, load_onnx

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(6, 4)).astype(np.float32)
W1[2, 1] = 0.0  # a pruned weight
B1 = RNG.normal(size=6).astype(np.float32) * 0.1
W2 = RNG.normal(size=(3, 6)).astype(np.float32)
B2 = np.zeros(3, np.float32)
IR = {7: 4, 8: 4, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 17: 8, 18: 8}


def _int64(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _model(opset: int, middle: list, extra_inits: list = (), hidden_out: str = "m") -> onnx.ModelProto:
    """x [N, 4] -> Gemm(6) -> Relu -> <middle: 'r' to hidden_out> -> Gemm(3) -> y."""
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             *middle, helper.make_node("Gemm", [hidden_out, "W2", "B2"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(a, n) for a, n in ((W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2"))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [*inits, *extra_inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR[opset]
    onnx.checker.check_model(m)
    return m


# (name, old opset and attribute form, new opset and input form); each maps 'r' [N, 6] to 'm' [N, 6]
OPS = {
    "Unsqueeze+Squeeze": (
        (11, [helper.make_node("Unsqueeze", ["r"], ["u"], axes=[1]), helper.make_node("Squeeze", ["u"], ["m"],
                                                                                       axes=[1])], []),
        (13, [helper.make_node("Unsqueeze", ["r", "ax"], ["u"]), helper.make_node("Squeeze", ["u", "ax"], ["m"])],
         [_int64("ax", [1])])),
    "ReduceSum": (
        (11, [helper.make_node("Unsqueeze", ["r"], ["u"], axes=[2]),
              helper.make_node("ReduceSum", ["u"], ["s"], axes=[2], keepdims=0),
              helper.make_node("Relu", ["s"], ["m"])],
         []),
        (13, [helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
              helper.make_node("ReduceSum", ["u", "ax"], ["s"], keepdims=0), helper.make_node("Relu", ["s"], ["m"])],
         [_int64("ax", [2])])),
    "ReduceMean": (
        (17, [helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
              helper.make_node("ReduceMean", ["u"], ["m"], axes=[2], keepdims=0)], [_int64("ax", [2])]),
        (18, [helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
              helper.make_node("ReduceMean", ["u", "ax"], ["m"], keepdims=0)], [_int64("ax", [2])])),
    "Split": (
        (11, [helper.make_node("Split", ["r"], ["a", "b"], axis=1, split=[2, 4]),
              helper.make_node("Concat", ["b", "a"], ["m"], axis=1)], []),
        (13, [helper.make_node("Split", ["r", "sp"], ["a", "b"], axis=1),
              helper.make_node("Concat", ["b", "a"], ["m"], axis=1)], [_int64("sp", [2, 4])])),
    "Slice": (
        (9, [helper.make_node("Slice", ["r"], ["a"], starts=[0], ends=[3], axes=[1]),
             helper.make_node("Slice", ["r"], ["b"], starts=[3], ends=[6], axes=[1]),
             helper.make_node("Concat", ["b", "a"], ["m"], axis=1)], []),
        (13, [helper.make_node("Slice", ["r", "s0", "e0", "ax"], ["a"]),
              helper.make_node("Slice", ["r", "s1", "e1", "ax"], ["b"]),
              helper.make_node("Concat", ["b", "a"], ["m"], axis=1)],
         [_int64("s0", [0]), _int64("e0", [3]), _int64("s1", [3]), _int64("e1", [6]), _int64("ax", [1])])),
    "Pad": (
        (9, [helper.make_node("Pad", ["r"], ["p"], pads=[0, 1, 0, 1], mode="constant", value=0.0),
             helper.make_node("Slice", ["p"], ["m"], starts=[1], ends=[7], axes=[1])], []),
        (13, [helper.make_node("Pad", ["r", "pads"], ["p"], mode="constant"),
              helper.make_node("Slice", ["p", "s", "e", "ax"], ["m"])],
         [_int64("pads", [0, 1, 0, 1]), _int64("s", [1]), _int64("e", [7]), _int64("ax", [1])])),
}


def _graph(model):
    x = torch.from_numpy(np.random.default_rng(5).random((32, 4)).astype(np.float32))
    mg = from_onnx(model, x, outputs="logits")  # a two-layer net: E > 0 only with the outputs judged as units
    order = torch.argsort(mg.graph.edge_index[0] * mg.graph.num_nodes + mg.graph.edge_index[1])
    return mg, mg.graph.edge_index[:, order]


def _outputs(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("name", sorted(OPS))
def test_attribute_and_input_forms_give_the_same_graph(name):
    (old_opset, old_nodes, old_inits), (new_opset, new_nodes, new_inits) = OPS[name]
    old, new = _model(old_opset, old_nodes, old_inits), _model(new_opset, new_nodes, new_inits)
    x = np.random.default_rng(6).random((5, 4)).astype(np.float32)
    np.testing.assert_allclose(_outputs(old, x), _outputs(new, x), rtol=1e-6)
    (a, ea), (b, eb) = _graph(old), _graph(new)
    assert torch.equal(ea, eb) and torch.equal(a.graph.active, b.graph.active)
    assert [lay.units for lay in a.layers] == [4, 6, 3]
    assert emergence.measure(a.graph).value == emergence.measure(b.graph).value > 0


def _cnn(opset: int) -> onnx.ModelProto:
    """x [N, 1, 6, 6] -> Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax, plus an
    Unsqueeze/Squeeze pair in the attribute form below opset 13."""
    g = np.random.default_rng(1)
    conv = g.normal(size=(3, 1, 3, 3)).astype(np.float32)
    conv[1, 0] = 0.0  # an empty kernel: channel 1 reads nothing
    fc = g.normal(size=(4, 3 * 2 * 2)).astype(np.float32)
    bn = [np.abs(g.normal(size=3)).astype(np.float32) + 0.5 for _ in range(2)] + [
        g.normal(size=3).astype(np.float32) * 0.1, np.abs(g.normal(size=3)).astype(np.float32) + 0.5]
    old = opset < 13
    nodes = [helper.make_node("Conv", ["x", "C"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mu", "var"], ["n"], epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[3, 3]),
             helper.make_node("Unsqueeze", ["p"] if old else ["p", "ax"], ["u"], **({"axes": [0]} if old else {})),
             helper.make_node("Squeeze", ["u"] if old else ["u", "ax"], ["q"], **({"axes": [0]} if old else {})),
             helper.make_node("Flatten", ["q"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "F", "Fb"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(conv, "C"), numpy_helper.from_array(fc, "F"),
             numpy_helper.from_array(np.zeros(4, np.float32), "Fb"),
             *(numpy_helper.from_array(a, n) for a, n in zip(bn, ("s", "b", "mu", "var"), strict=True))]
    if not old:
        inits.append(_int64("ax", [0]))
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR[opset]
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("opset", [7, 8, 9, 11, 13, 17])
def test_a_model_of_each_opset_is_measured(opset):
    m = _cnn(opset)
    x = np.random.default_rng(2).random((16, 1, 6, 6)).astype(np.float32)
    upgraded = load_onnx(m)
    if opset < 13:
        assert upgraded.opset_import[0].version == 17
    np.testing.assert_allclose(_outputs(m, x), _outputs(upgraded, x), rtol=1e-5, atol=1e-6)  # same computation
    mg = from_onnx(m, torch.from_numpy(x))
    ref = from_onnx(_cnn(17), torch.from_numpy(x))
    assert torch.equal(mg.graph.edge_index, ref.graph.edge_index)
    assert torch.equal(mg.graph.active, ref.graph.active)
    assert [lay.units for lay in mg.layers] == [1, 3, 4]
    assert int(mg.graph.num_edges) == 2 + 3 * 4  # channel 1 has no incoming edge


def test_gather_elements_over_many_entries_is_folded_right(tmp_path):
    """onnx's reference evaluator fails on GatherElements over more than 32 entries (BERT's position ids)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from emergence.adapters.model_files import model_graph

    n = 64
    w0 = np.random.default_rng(0).random((n, 3)).astype(np.float32)
    w0[5, 1] = 0.0
    idx = np.tile(np.arange(n)[::-1, None], (1, 3)).astype(np.int64)  # W = W0 upside down
    g = helper.make_graph(
        [helper.make_node("GatherElements", ["W0", "I"], ["W"], axis=0),
         helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w0, "W0"), numpy_helper.from_array(idx, "I")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "ge.onnx"))
    mg = model_graph(str(tmp_path / "ge.onnx"), torch.rand(8, n))
    src, dst = mg.graph.edge_index
    assert mg.graph.num_edges == n * 3 - 1 and not bool(((src == n - 1 - 5) & (dst == n + 1)).any())
    w = {(int(s), int(t) - n): float(v) for s, t, v in zip(src, dst, mg.graph.edge_weight, strict=True)}
    assert w[(0, 0)] == pytest.approx(float(w0[n - 1, 0]))
