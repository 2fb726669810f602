"""Today's model families from the `transformers` library: the module, its `.pt2` and its ONNX files
(both exporters, where they can write one) give the same nodes, edges, active set and emergence.

The models are built from configs with random weights (``tests/hf_zoo.py``); nothing downloads.
"""

from __future__ import annotations

import logging

import pytest
import torch
from hf_zoo import CANNOT_EXPORT, FAMILIES, build, export_as, graph_key

import emergence
from emergence.adapters.model_files import model_graph


@pytest.mark.parametrize("family", FAMILIES)
def test_module_pt2_and_onnx_give_the_same_graph(family, tmp_path):
    logging.disable(logging.WARNING)  # the exporters' chatter
    try:
        model, x = build(family)
        ref = model_graph(model, x)
        units, edges, active = graph_key(ref)
        assert ref.graph.num_edges > 0 and len(ref.layers) > 2
        e_ref = emergence.measure(ref.graph, method="log").log10
        w_ref = emergence.measure(ref.graph, weighted=True).log10
        for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
            if (family, fmt) in CANNOT_EXPORT:  # the exporter itself refuses: check that it still does
                with pytest.raises(Exception, match=CANNOT_EXPORT[(family, fmt)]):
                    export_as(model, x, tmp_path, fmt)
                continue
            got = model_graph(str(export_as(model, x, tmp_path, fmt)), x)
            u, e, a = graph_key(got)
            assert u == units, (fmt, u, units)
            for mine, theirs in zip(got.layers, ref.layers, strict=True):  # layers are named by module path
                same = mine.name == theirs.name
                if fmt == "onnx-dynamo" and not same:  # a conv the exporter fused with the norm after it carries
                    same = mine.name.rsplit(".", 1)[0] == theirs.name.rsplit(".", 1)[0]  # the norm's name
                assert same, (fmt, mine.name, theirs.name)
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


# --- the layers these families brought, by hand -------------------------------------------------------------

class _GroupNormConv(torch.nn.Module):
    """Conv1d, GroupNorm with fewer groups than channels (ONNX writes Reshape, InstanceNorm, Reshape), GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 8, 3)
        self.norm = torch.nn.GroupNorm(2, 8)
        self.head = torch.nn.Conv1d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.gelu(self.norm(self.conv(x))))


class _UpConv(torch.nn.Module):
    """Conv, bilinear upsampling, conv (a decoder stage)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.b(torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear"))


class _RMSNormDivided(torch.nn.Module):
    """RMSNorm written as x * (1 / sqrt(mean(x^2) + eps)): a scalar divided by data."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = h * (1.0 / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))
        return self.b(torch.relu(h))


class _UnusedBranch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.unused = torch.nn.Linear(4, 5), torch.nn.Linear(5, 3), torch.nn.Linear(5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        _ = self.unused(h)
        return self.b(h)


def _prelu() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.PReLU(5), torch.nn.Linear(5, 3))


def _decoder() -> torch.nn.Module:
    """Conv, a grouped strided transposed conv (a U-Net decoder step), conv."""
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                               torch.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(6, 3, 1))


@pytest.mark.parametrize("make, shape", [(_GroupNormConv, (2, 10)), (_UpConv, (1, 6, 6)), (_RMSNormDivided, (4,)),
                                         (_UnusedBranch, (4,)), (_prelu, (4,)), (_decoder, (1, 8, 8))],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_hand_made_layers_agree_across_formats(make, shape, tmp_path):
    torch.manual_seed(0)
    model, x = make().eval(), torch.randn(16, *shape)
    ref = model_graph(model, x)
    for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
        (u, e, a), (units, edges, active) = graph_key(model_graph(str(export_as(model, x, tmp_path, fmt)), x)), \
            graph_key(ref)
        assert u == units and torch.equal(e, edges) and torch.equal(a, active), fmt
    names = [lay.name for lay in ref.layers]
    assert "unused" not in names


def test_group_norm_is_read_after_its_activation():
    """The conv's channels are judged on gelu(groupnorm(conv)), not on the raw conv output."""
    torch.manual_seed(0)
    model = _GroupNormConv().eval()
    with torch.no_grad():
        model.norm.bias.fill_(-5.0)  # after the norm every channel is pushed below the threshold
    mg = model_graph(model, torch.randn(16, 2, 10))
    conv = next(i for i, lay in enumerate(mg.layers) if lay.name == "conv")
    offset = sum(lay.units for lay in mg.layers[:conv])
    assert not bool(mg.graph.active[offset:offset + 8].any())


def test_a_transposed_convolution_couples_the_pairs_its_taps_join():
    torch.manual_seed(0)
    model = _decoder().eval()
    with torch.no_grad():
        model[2].weight[1, 0] = 0.0  # input channel 1 no longer reaches output channel 0
    mg = model_graph(model, torch.randn(8, 1, 8, 8))
    offsets = [0]
    for lay in mg.layers:
        offsets.append(offsets[-1] + lay.units)
    i = [lay.name for lay in mg.layers].index("2")
    src, dst = mg.graph.edge_index
    into = (dst >= offsets[i]) & (dst < offsets[i + 1])
    pairs = {(int(s) - offsets[i - 1], int(t) - offsets[i]) for s, t in zip(src[into], dst[into], strict=True)}
    # groups of 2: inputs 0, 1 feed outputs 0..2, inputs 2, 3 feed outputs 3..5
    assert pairs == {(a, b) for a in range(4) for b in range(6) if (a < 2) == (b < 3)} - {(1, 0)}


@pytest.mark.parametrize("make, shape", [(_UpConv, (1, 6, 6)), (_decoder, (1, 8, 8))],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_decoders_are_measured_at_neuron_level(make, shape):
    """Upsampling and transposed convolutions have neuron graphs (tests/test_neuron_layers.py checks their
    edges against autograd): the implicit count equals the count of the materialized graph."""
    torch.manual_seed(0)
    mg = model_graph(make().eval(), torch.randn(4, *shape), granularity="neuron")
    m = mg.materialize()
    m.graph.active = torch.arange(m.graph.num_nodes) % 2 == 0
    want = emergence.measure(m.graph, method="log").log10
    assert want is not None and mg.counter.count(m.graph.active).log10 == pytest.approx(want, rel=1e-12)


def test_a_compiled_module_is_measured_as_the_module_it_wraps():
    torch.manual_seed(0)
    net = _prelu().eval()
    x = torch.randn(16, 4)
    plain, compiled = model_graph(net, x), model_graph(torch.compile(net), x)
    assert [lay.name for lay in compiled.layers] == [lay.name for lay in plain.layers]
    assert torch.equal(compiled.graph.edge_index, plain.graph.edge_index)
    assert torch.equal(compiled.graph.active, plain.graph.active)


@pytest.mark.parametrize("family", ["gpt2", "clip-text"])
def test_random_token_ids_span_the_embedding_table_behind_a_reshape(family, tmp_path):
    """GPT-2 and CLIP look their ids up after ``input_ids.view(-1, T)``: ``--data random`` still finds the table."""
    from emergence.adapters.datasets import probe_inputs
    from emergence.adapters.model_files import load_model

    model, x = build(family)
    for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
        loaded = load_model(export_as(model, x, tmp_path, fmt))
        assert loaded.input_specs is not None and loaded.input_specs[0].high == 100, (fmt, loaded.input_specs)
        ids = probe_inputs("random", samples=64, input_specs=loaded.input_specs)
        assert ids.dtype == torch.int64 and int(ids.min()) >= 0 and int(ids.max()) < 100
        assert ids.unique().numel() > 50, fmt  # spread over the table, not one id
