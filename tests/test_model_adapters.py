"""Model adapters: the same model gives the same graph from every format, with real activity."""

import warnings
from pathlib import Path

import pytest
import torch
from model_zoo import ZOO, build

import emergence
from emergence.adapters import from_onnx, from_torch
from emergence.adapters.model_files import load_model, model_graph

FORMATS = ["module", "pt2", "onnx-dynamo", "onnx-torchscript", "torchscript"]


def _save(model, shape, fmt, folder: Path):
    x = torch.rand(2, *shape)
    batch = torch.export.Dim("batch")
    if fmt == "module":
        return model
    if fmt == "pt2":
        path = folder / "m.pt2"
        torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(path))
        return path
    if fmt == "onnx-dynamo":
        path = folder / "m.onnx"
        torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
        return path
    if fmt == "onnx-torchscript":  # the TorchScript-based exporter folds batch norm into the convs
        path = folder / "legacy.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        return path
    path = folder / "m.jit"
    torch.jit.script(model).save(str(path))
    return path


@pytest.fixture(scope="module", params=sorted(ZOO))
def saved(request, tmp_path_factory):
    model, shape = build(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    files = {fmt: _save(model, shape, fmt, folder) for fmt in FORMATS}
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(1))
    return request.param, model, x, files


def _edges(g):
    order = torch.argsort(g.edge_index[0] * g.num_nodes + g.edge_index[1])
    return g.edge_index[:, order], g.edge_weight[order]


def test_every_format_gives_the_same_graph(saved):
    name, model, x, files = saved
    ref = model_graph(files["module"], x)
    ref_e, ref_w = _edges(ref.graph)
    ref_val = emergence.measure(ref.graph).value
    assert ref_val > 0, name
    for fmt in FORMATS[1:]:
        mg = model_graph(files[fmt], x)
        assert mg.graph.num_nodes == ref.graph.num_nodes, (name, fmt)
        assert [lay.units for lay in mg.layers] == [lay.units for lay in ref.layers], (name, fmt)
        e, w = _edges(mg.graph)
        assert torch.equal(e, ref_e), (name, fmt)
        assert torch.allclose(w, ref_w, rtol=1e-4, atol=1e-6), (name, fmt)
        assert torch.equal(mg.graph.active, ref.graph.active), (name, fmt)
        assert torch.allclose(mg.activity.mean, ref.activity.mean, atol=1e-5), (name, fmt)
        assert emergence.measure(mg.graph).value == ref_val, (name, fmt)
        w_ref = emergence.measure(ref.graph, weighted=True).log10
        assert abs(emergence.measure(mg.graph, weighted=True).log10 - w_ref) < 1e-5, (name, fmt)


def test_zero_batch_norm_scale_removes_incoming_edges(tmp_path):
    model, shape = build("rescnn")
    x = torch.rand(16, *shape)
    for fmt in ("module", "onnx-torchscript", "pt2"):  # folded by us, and by the exporter
        mg = model_graph(_save(model, shape, fmt, tmp_path), x)
        c1 = mg.layers[2]
        assert c1.units == 8 and c1.kind == "Conv2d", fmt
        dst = mg.graph.edge_index[1]
        assert int((dst == c1.offset + 3).sum()) == 0, fmt  # b1.weight[3] == 0
        assert int((dst == c1.offset + 2).sum()) == 8, fmt


def test_residual_and_concat_connect_all_producers():
    model, shape = build("rescnn")
    mg = from_torch(model, torch.rand(8, *shape))
    names = [lay.name for lay in mg.layers]
    assert names == ["input", "stem", "c1", "dw", "grouped", "point", "fc"]
    layer = {lay.name: lay for lay in mg.layers}
    src, dst = mg.graph.edge_index
    into_point = src[(dst >= layer["point"].offset) & (dst < layer["point"].offset + 4)]
    from_layers = {mg.layers[int(mg.graph.layer[s])].name for s in into_point}
    # relu(b2(dw(...)) + x): the sum is dw's units (the skip feeds them by identity edges), which the 1x1 reads
    assert from_layers == {"dw"}
    into_dw = src[(dst >= layer["dw"].offset) & (dst < layer["dw"].offset + 8)]
    assert {mg.layers[int(mg.graph.layer[s])].name for s in into_dw} == {"c1", "stem"}
    into_fc = src[dst >= layer["fc"].offset]
    assert {mg.layers[int(mg.graph.layer[s])].name for s in into_fc} == {"grouped", "point"}  # concat
    # grouped conv: each output channel sees the 4 channels of its group, each the sum's one unit
    into_grouped = dst[(dst >= layer["grouped"].offset) & (dst < layer["grouped"].offset + 8)]
    assert torch.bincount(into_grouped - layer["grouped"].offset).tolist() == [4] * 8
    # depthwise: one input channel per output channel (channel 3 of c1 has zero scale: no edges into it),
    # and one identity edge per channel from the skip
    from_c1 = into_dw[(into_dw >= layer["c1"].offset) & (into_dw < layer["c1"].offset + 8)]
    assert sorted((from_c1 - layer["c1"].offset).tolist()) == list(range(8))
    from_stem = into_dw[(into_dw >= layer["stem"].offset) & (into_dw < layer["stem"].offset + 8)]
    assert sorted((from_stem - layer["stem"].offset).tolist()) == list(range(8))


def test_dense_activity_matches_a_hand_computation():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
        net[2].bias.zero_()
    x = torch.tensor([[0.2, 0.9], [0.0, 0.7]])
    mg = from_torch(net, x, outputs="logits")  # the output judged by its raw value, like any unit
    # inputs: means 0.1 and 0.8; hidden (after ReLU): 0.1 and 0; output: 0.1
    assert torch.allclose(mg.activity.mean, torch.tensor([0.1, 0.8, 0.1, 0.0, 0.1], dtype=torch.float64))
    assert mg.graph.active.tolist() == [True, True, True, False, True]
    assert mg.graph.num_edges == 3  # zero weights are not edges: in0->h0, h0->out, h1->out
    assert emergence.measure(mg.graph).value == 1  # h1 -> out
    assert mg.at(0.5, "logits").active.tolist() == [False, True, False, False, False]
    assert mg.at(0.05).active.tolist() == [True, True, True, False, False]  # by default outputs are not nodes


@pytest.mark.parametrize("aggregation", ["mean", "absmean", "frac"])
def test_one_forward_pass_serves_many_thresholds(aggregation):
    model, shape = build("mlp")
    x = torch.rand(32, *shape)
    mg = from_torch(model, x, aggregation=aggregation)
    for tau in (0.0, 0.05, 0.2, 0.5):
        again = from_torch(model, x, aggregation=aggregation, threshold=tau)
        assert torch.equal(mg.at(tau).active, again.graph.active), tau
        assert mg.at(tau).edge_index is mg.graph.edge_index  # structure shared: levels stay cached
    if aggregation == "absmean":
        assert bool((mg.activity.absmean >= mg.activity.mean.abs() - 1e-12).all())


def test_input_granularity_follows_the_first_layer():
    mlp, shape = build("mlp")
    assert from_torch(mlp, torch.rand(4, *shape)).layers[0].units == 64  # pixels feed a dense layer
    cnn, shape = build("rescnn")
    assert from_torch(cnn, torch.rand(4, *shape)).layers[0].units == 1  # channels feed a conv


def test_static_batch_programs_are_run_in_chunks(tmp_path):
    model, shape = build("rescnn")
    x = torch.rand(10, *shape)
    ep = torch.export.export(model, (torch.rand(4, *shape),))  # batch fixed at 4
    torch.onnx.export(model, (torch.rand(4, *shape),), str(tmp_path / "fixed.onnx"), dynamo=True, verbose=False)
    ref = from_torch(model, x)
    for mg in (model_graph(ep, x), from_onnx(tmp_path / "fixed.onnx", x)):
        assert mg.activity.samples == 10
        assert torch.allclose(mg.activity.mean, ref.activity.mean, atol=1e-5)


def test_loaded_kinds(saved):
    name, model, x, files = saved
    assert load_model(files["pt2"]).kind == "exported"
    assert load_model(files["pt2"]).input_shape == ZOO[name][1]
    assert load_model(files["onnx-dynamo"]).kind == "onnx"
    assert load_model(files["torchscript"]).kind == "torchscript"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_pass_and_count_agree_with_cpu():
    model, shape = build("rescnn")
    x = torch.rand(16, *shape)
    cpu = model_graph(model, x)
    gpu = model_graph(model.cuda(), x, device="cuda")
    assert torch.equal(cpu.graph.active, gpu.graph.active)
    assert emergence.measure(cpu.graph).value == emergence.measure(gpu.graph, device="cuda", method="exact").value
    assert abs(emergence.measure(cpu.graph, method="log").log10
               - emergence.measure(gpu.graph, method="log", device="cuda").log10) < 1e-9
