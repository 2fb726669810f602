"""Transposed convolutions and resizing at neuron level, against autograd.

The oracle: for a net ``input -> (resize) -> layer``, the neuron graph has an edge from input element ``i``
to output neuron ``j`` exactly when ``d out_j / d in_i`` is not zero (weights are generic, a few taps pruned).
The implicit count must equal the count of the materialized edge list, and every format the same graph.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from hf_zoo import export_as
from torch import nn

import emergence
from emergence.adapters.model_files import model_graph


class _Resize(nn.Module):
    def __init__(self, **kw) -> None:
        super().__init__()
        self.kw = kw
        self.mix = nn.Conv2d(2, 3, 1)  # dense over channels: the resize alone decides the positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(F.interpolate(x, **self.kw))


def _transposed(**kw) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(kw.pop("cin", 2), kw.pop("cout", 3), 3, **kw)
    with torch.no_grad():
        layer.weight[0, 0, 1, 1] = 0.0  # a pruned tap
        layer.weight[1, 0, 0, 2] = 0.0
    return layer


NETS = {
    "convT-s2-p1-op1": lambda: _transposed(stride=2, padding=1, output_padding=1),
    "convT-s1": lambda: _transposed(),
    "convT-s3-d2-groups": lambda: _transposed(cin=4, cout=6, stride=3, dilation=2, padding=2, groups=2),
    "nearest-x2": lambda: _Resize(scale_factor=2, mode="nearest"),
    "nearest-size": lambda: _Resize(size=(5, 7), mode="nearest"),
    "nearest-exact": lambda: _Resize(scale_factor=2, mode="nearest-exact"),
    "bilinear": lambda: _Resize(scale_factor=2, mode="bilinear"),
    "bilinear-corners": lambda: _Resize(scale_factor=2, mode="bilinear", align_corners=True),
    "bilinear-down": lambda: _Resize(size=(2, 3), mode="bilinear"),
}


def _shape(name: str) -> tuple[int, ...]:
    return (4, 3, 4) if "groups" in name else (2, 3, 4)


def _jacobian_edges(net: nn.Module, x: torch.Tensor) -> set[tuple[int, int]]:
    net = net.double()
    jac = torch.autograd.functional.jacobian(lambda v: net(v), x[:1].double())  # [1, *out, 1, *in]
    out_n, in_n = net(x[:1].double()).numel(), x[:1].numel()
    nz = (jac.reshape(out_n, in_n) != 0).nonzero()
    return {(int(i), in_n + int(o)) for o, i in nz.tolist()}


@pytest.mark.parametrize("name", list(NETS))
def test_neuron_edges_are_the_jacobians_support(name):
    net = NETS[name]().eval()
    x = torch.rand(8, *_shape(name))
    mg = model_graph(net, x, granularity="neuron")
    assert [lay.kind for lay in mg.layers][0] == "input" and len(mg.layers) == 2  # a resize makes no neurons
    m = mg.materialize()
    edges = [tuple(e) for e in m.graph.edge_index.t().tolist()]
    assert len(edges) == len(set(edges))  # one route per pair: no tap is counted twice
    assert set(edges) == _jacobian_edges(net.float(), x)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        m.graph.active = torch.rand(m.graph.num_nodes, generator=gen) < 0.5
        for weighted in (False, True):
            want = emergence.measure(m.graph, weighted=weighted, method="log").log10
            got = mg.counter.count(m.graph.active, weighted=weighted).log10
            assert (want is None and got is None) or got == pytest.approx(want, rel=1e-12), (name, weighted)


def test_bilinear_weights_are_the_interpolation_weights():
    net = _Resize(scale_factor=2, mode="bilinear").eval()
    with torch.no_grad():
        net.mix.weight.fill_(1.0)
    mg = model_graph(net, torch.rand(4, 2, 3, 4), granularity="neuron")
    m = mg.materialize()
    jac = torch.autograd.functional.jacobian(lambda v: net.double()(v), torch.rand(1, 2, 3, 4, dtype=torch.float64))
    dense = jac.reshape(-1, 24).abs().t()  # [in, out]: |d out / d in| = the interpolation weight
    src, dst = m.graph.edge_index
    assert torch.allclose(m.graph.edge_weight.double(), dense[src, dst - 24])


@pytest.mark.parametrize("name", ["convT-s2-p1-op1", "nearest-x2", "bilinear", "bilinear-corners"])
def test_every_format_gives_the_same_neuron_graph(name, tmp_path):
    logging.disable(logging.WARNING)
    try:
        net = NETS[name]().eval()
        x = torch.rand(8, *_shape(name))
        ref = model_graph(net, x, granularity="neuron").materialize()
        key = ref.graph.edge_index[:, torch.argsort(ref.graph.edge_index[0] * ref.graph.num_nodes
                                                    + ref.graph.edge_index[1])]
        for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
            got = model_graph(str(export_as(net, x, tmp_path, fmt)), x, granularity="neuron").materialize()
            ei = got.graph.edge_index[:, torch.argsort(got.graph.edge_index[0] * got.graph.num_nodes
                                                       + got.graph.edge_index[1])]
            assert torch.equal(ei, key), fmt
            assert torch.equal(got.graph.active, ref.graph.active), fmt
    finally:
        logging.disable(logging.NOTSET)


def test_bicubic_is_refused_at_neuron_level_in_one_sentence():
    from emergence.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="has no neuron graph here"):
        model_graph(_Resize(scale_factor=2, mode="bicubic").eval(), torch.rand(4, 2, 3, 4), granularity="neuron")
