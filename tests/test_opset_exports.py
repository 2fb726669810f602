"""The blocks of today's conv nets and transformers, exported at opsets 13, 17 and 20 by both exporters,
give exactly the graph, the active set and the emergence of their `.pt2` (decomposed SiLU/GELU/LayerNorm
included: activity is read at the end of the whole elementwise formula)."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_zoo import build

import emergence
from emergence.adapters.model_files import model_graph

BLOCKS = ["se", "convnext", "splitattn", "vit", "mixer"]


def _export(model, x, path, exporter: str, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})


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


#: Exports the exporters themselves cannot write (their error, not ours): the TorchScript exporter has no
#: scaled_dot_product_attention below opset 14. (The dynamo exporter writes opset 18 and converts down with
#: onnx.version_converter; for ConvNeXt at 13 and 17 that conversion fails and it keeps opset 18 -- the file
#: it writes is still checked.)
CANNOT_EXPORT = {("vit", "torchscript", 13)}
EXPORTS = [(e, o) for e in ("dynamo", "torchscript") for o in (13, 17, 20)]


@pytest.mark.parametrize("exporter, opset", EXPORTS, ids=[f"{e}-{o}" for e, o in EXPORTS])
def test_exports_agree_with_pt2(block, opset, exporter):
    name, model, folder, x, probe, ref = block
    if (name, exporter, opset) in CANNOT_EXPORT:
        with pytest.raises(Exception, match="not supported"):  # still true of the exporter?
            _export(model, x, folder / "cannot.onnx", exporter, opset)
        return
    path = folder / f"{exporter}{opset}.onnx"
    _export(model, x, path, exporter, opset)
    mg = model_graph(path, probe)
    e, w = _sorted_edges(mg.graph)
    ref_e, ref_w = _sorted_edges(ref.graph)
    assert [lay.units for lay in mg.layers] == [lay.units for lay in ref.layers], (name, exporter, opset)
    assert torch.equal(e, ref_e), (name, exporter, opset)
    assert torch.allclose(w, ref_w, rtol=1e-4, atol=1e-6), (name, exporter, opset)
    assert torch.allclose(mg.activity.mean, ref.activity.mean, atol=1e-5), (name, exporter, opset)
    assert torch.equal(mg.graph.active, ref.graph.active), (name, exporter, opset)
    assert emergence.measure(mg.graph).value == emergence.measure(ref.graph).value
