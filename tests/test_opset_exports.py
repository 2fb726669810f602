"""The blocks of today's conv nets and transformers, exported at opsets 13, 17 and 20 by both exporters,
give exactly the graph, the active set and the emergence of their `.pt2` (decomposed SiLU/GELU/LayerNorm
included: activity is read at the end of the whole elementwise formula)."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_zoo import build

import emergence
from adapters.model_files import model_graph

BLOCKS = ["se", "convnext", "splitattn", "vit", "mixer"]


def _sorted_edges(g):
    order = torch.argsort(g.edge_index[0] * g.num_nodes + g.edge_index[1])
    return g.edge_index[:, order], g.edge_weight[order]


@pytest.fixture(scope="module", params=BLOCKS)
def block(request, tmp_path_factory):
    model, shape = build(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    x = torch.rand(2, *shape)
    b = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: b},)), str(folder / "m.pt2"))
    probe = torch.rand(48, *shape, generator=torch.Generator().manual_seed(3))
    return request.param, model, folder, x, probe, model_graph(folder / "m.pt2", probe)


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_exports_agree_with_pt2(block, opset, exporter):
    name, model, folder, x, probe, ref = block
    path = folder / f"{exporter}{opset}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})
    mg = model_graph(path, probe)
    e, w = _sorted_edges(mg.graph)
    ref_e, ref_w = _sorted_edges(ref.graph)
    assert [l.units for l in mg.layers] == [l.units for l in ref.layers], (name, exporter, opset)
    assert torch.equal(e, ref_e), (name, exporter, opset)
    assert torch.allclose(w, ref_w, rtol=1e-4, atol=1e-6), (name, exporter, opset)
    assert torch.allclose(mg.activity.mean, ref.activity.mean, atol=1e-5), (name, exporter, opset)
    assert torch.equal(mg.graph.active, ref.graph.active), (name, exporter, opset)
    assert emergence.measure(mg.graph).value == emergence.measure(ref.graph).value
