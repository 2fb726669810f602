"""Today's model families from the `transformers` library: the module, its `.pt2` and its ONNX files
(both exporters, where they can write one) give the same nodes, edges, active set and emergence.

The models are built from configs with random weights (``tests/hf_zoo.py``); nothing downloads.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from hf_zoo import CANNOT_EXPORT, FAMILIES, build

import emergence
from emergence.adapters.model_files import model_graph

pytest.importorskip("transformers")  # a test extra; .ci/run installs it


def _export(model: torch.nn.Module, x: torch.Tensor, folder: Path, fmt: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "pt2":
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            torch.export.save(ep, str(folder / "m.pt2"))
            return folder / "m.pt2"
        path = folder / f"{fmt}.onnx"
        if fmt == "onnx-dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        return path


def _key(mg):
    ei = mg.graph.edge_index
    order = torch.argsort(ei[0] * mg.graph.num_nodes + ei[1])
    return [lay.units for lay in mg.layers], ei[:, order], mg.graph.active


@pytest.mark.parametrize("family", FAMILIES)
def test_module_pt2_and_onnx_give_the_same_graph(family, tmp_path):
    logging.disable(logging.WARNING)  # the exporters' chatter
    try:
        model, x = build(family)
        ref = model_graph(model, x)
        units, edges, active = _key(ref)
        assert ref.graph.num_edges > 0 and len(ref.layers) > 2
        e_ref = emergence.measure(ref.graph, method="log").log10
        w_ref = emergence.measure(ref.graph, weighted=True).log10
        for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
            if (family, fmt) in CANNOT_EXPORT:  # the exporter itself refuses: check that it still does
                with pytest.raises(Exception, match=CANNOT_EXPORT[(family, fmt)]):
                    _export(model, x, tmp_path, fmt)
                continue
            got = model_graph(str(_export(model, x, tmp_path, fmt)), x)
            u, e, a = _key(got)
            assert u == units, (fmt, u, units)
            assert torch.equal(e, edges), fmt
            assert torch.equal(a, active), fmt
            assert emergence.measure(got.graph, method="log").log10 == e_ref, fmt
            w = emergence.measure(got.graph, weighted=True).log10
            assert (w is None and w_ref is None) or abs(w - w_ref) < 1e-4, (fmt, w, w_ref)
    finally:
        logging.disable(logging.NOTSET)


def test_layer_names_are_module_paths():
    model, x = build("bert")
    names = [lay.name for lay in model_graph(model, x).layers]
    assert "m.encoder.layer.0.attention.self.query" in names and "m.encoder.layer.0.output.dense" in names
    assert "m.pooler.dense" not in names  # the pooler feeds nothing the model returns: no nodes
