"""Neuron-level emergence of conv nets: the implicit count (transposed convolutions) against explicit graphs.

Two oracles: the materialized neuron graph (index arithmetic over the same provenance), and -- independent
of the adapters altogether -- a graph read off autograd Jacobians of a *structural twin* of the net (binary
or |w| kernels, batch norm folded, activations removed, pools replaced by sum-pools over the same windows),
counted by the core's exact DP.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

from emergence import layered, measure
from emergence.adapters.model_files import model_graph
from emergence.adapters.model_measure import measure_model
from emergence.adapters.neuron_count import NeuronModelGraph
from emergence.errors import UnsupportedOpError
from emergence.graph import graph
from emergence.testing.strategies import conv_nets

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import model_zoo


def _kernel(w: torch.Tensor, scale: torch.Tensor | None, weighted: bool) -> torch.Tensor:
    w = w.detach().double()
    if scale is not None:
        w = w * scale.double().reshape(-1, *([1] * (w.dim() - 1)))
    return w.abs() if weighted else (w != 0).double()


def _bn_scale(norm: torch.nn.Module) -> torch.Tensor | None:
    if not isinstance(norm, torch.nn.BatchNorm2d):
        return None
    return (norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)).detach()


def _sum_pool_adaptive(x: torch.Tensor, out: int) -> torch.Tensor:
    h = x.shape[-1]
    rows = []
    for i in range(out):
        a, b = (i * h) // out, -((-(i + 1) * h) // out)
        cols = []
        for j in range(out):
            c, d = (j * h) // out, -((-(j + 1) * h) // out)
            cols.append(x[..., a:b, c:d].sum((-1, -2)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


def twin_graph(net: torch.nn.Module, shape: tuple[int, ...], weighted: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Routes of a ``conv_nets`` model read off Jacobians of its structural twin: (edge_index, weight, nodes)."""
    leaves: list[torch.Tensor] = []
    offsets: list[int] = []
    src, dst, mult = [], [], []
    total = 0

    def leaf(like_shape: tuple[int, ...]) -> torch.Tensor:
        nonlocal total
        t = torch.zeros(like_shape, dtype=torch.float64, requires_grad=True)
        leaves.append(t)
        offsets.append(total)
        total += t.numel()
        return t

    def record(pre: torch.Tensor) -> torch.Tensor:
        flat = pre.reshape(-1)
        out_off = total
        eye = torch.eye(flat.numel(), dtype=torch.float64)
        grads = torch.autograd.grad(flat, leaves, grad_outputs=eye, is_grads_batched=True, allow_unused=True,
                                    retain_graph=True)
        for off, g in zip(offsets, grads, strict=True):
            if g is None:
                continue
            j = g.reshape(flat.numel(), -1)
            r, c = j.nonzero(as_tuple=True)
            src.append(c + off)
            dst.append(r + out_off)
            mult.append(j[r, c])
        return leaf(tuple(pre.shape))

    cur = leaf(shape)
    for stage, conv, norm, res in zip(net.stages, net.convs, net.norms, net.res, strict=True):
        k = _kernel(conv.weight, _bn_scale(norm), weighted)
        cur = record(F.conv2d(cur, k, None, conv.stride, conv.padding, conv.dilation, conv.groups))
        if stage["residual"]:
            r = record(F.conv2d(cur, _kernel(res.weight, None, weighted), None, 1, 1))
            cur = r + cur
        if stage["pool"] in ("max", "avg"):
            cur = F.avg_pool2d(cur, stage["pk"], stage["ps"], stage["pp"], divisor_override=1)
        elif stage["pool"] == "adaptive":
            cur = _sum_pool_adaptive(cur, stage["pout"])
    record(cur.reshape(-1) @ _kernel(net.head.weight, None, weighted).T)
    return torch.stack([torch.cat(src), torch.cat(dst)]), torch.cat(mult), total


def _twin_count(net, shape, mask, weighted):
    ei, m, n = twin_graph(net, shape, weighted)
    if weighted:
        return measure(graph(ei, n, mask, edge_weight=m), weighted=True)
    reps = m.round().long()
    assert bool((m == reps).all())
    ei = ei.repeat_interleave(reps, dim=1)  # one edge per route
    return measure(graph(ei, n, mask), method="exact")


def _masks(n: int, seed: int, k: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=g) < p for p in (0.5, 0.8, 0.95)][:k]


@given(conv_nets(), st.integers(0, 1000))
def test_implicit_count_equals_twin_jacobian_graph(net_shape, seed):
    net, shape = net_shape
    mg = model_graph(net, torch.randn(4, *shape), granularity="neuron")
    assert isinstance(mg, NeuronModelGraph)
    _, m, n = twin_graph(net, shape, weighted=False)
    assert n == mg.graph.num_nodes
    assert mg.counter.num_edges == int(m.sum())
    for mask in _masks(n, seed):
        got = mg.counter.count(mask)
        want = _twin_count(net, shape, mask, weighted=False)
        assert got.value == want.value  # exact integers
        w_got, w_want = mg.counter.count(mask, weighted=True), _twin_count(net, shape, mask, weighted=True)
        assert (w_got.log10 is None) == (w_want.log10 is None)
        if w_got.log10 is not None:
            assert w_got.log10 == pytest.approx(w_want.log10, rel=1e-9, abs=1e-9)


@given(conv_nets(), st.integers(0, 1000))
def test_implicit_count_equals_materialized_graph(net_shape, seed):
    net, shape = net_shape
    mg = model_graph(net, torch.randn(4, *shape), granularity="neuron")
    explicit = mg.materialize().graph
    assert explicit.num_edges == mg.counter.num_edges
    for mask in _masks(mg.graph.num_nodes, seed, k=2):
        explicit.active = mask
        got, want = mg.counter.count(mask), measure(explicit, method="exact")
        assert got.value == want.value
        layers = {k: v for k, v in (want.layer_log10 or {}).items() if v is not None}
        assert {k: v for k, v in got.layer_log10.items() if v is not None}.keys() == layers.keys()
        for k, v in layers.items():
            assert got.layer_log10[k] == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("name", ["rescnn", "shufflenetish", "mlp"])
def test_zoo_models_match_materialized_graph(name):
    net, shape = model_zoo.build(name)
    mg = model_graph(net, torch.randn(16, *shape), granularity="neuron")
    g = mg.materialize().graph
    for mask in [mg.graph.active, *_masks(mg.graph.num_nodes, 3, k=2)]:
        g.active = mask
        assert mg.counter.count(mask).log10 == pytest.approx(measure(g, method="exact").log10, abs=1e-12)
        assert mg.counter.count(mask, weighted=True).log10 == pytest.approx(measure(g, weighted=True).log10,
                                                                              abs=1e-9)


def test_small_resnet18_with_overlapping_stem_pool_matches_materialized_graph():
    torch.manual_seed(0)
    net = model_zoo.ResNet18(classes=3, width=2).eval()
    mg = model_graph(net, torch.randn(2, 3, 32, 32), granularity="neuron")
    g = mg.materialize().graph
    for mask in _masks(mg.graph.num_nodes, 5, k=2):
        g.active = mask
        want = measure(g, method="exact")
        got = mg.counter.count(mask)
        assert got.value == float(want.value) if want.value < 2**53 else got.log10 == pytest.approx(want.log10)
        assert got.log10 == pytest.approx(want.log10, rel=1e-12)


def test_one_by_one_convs_are_copies_of_the_channel_graph_closed_form():
    """Dense 1x1 convs: the neuron graph is H*W copies of a layered net, so E = H*W * layered(widths, active)."""
    torch.manual_seed(0)
    widths = [3, 5, 4, 2]
    net = torch.nn.Sequential(*[torch.nn.Conv2d(a, b, 1) for a, b in zip(widths, widths[1:], strict=False)]).eval()
    mg = model_graph(net, torch.randn(2, 3, 4, 5), granularity="neuron")
    hw = 20
    gen = torch.Generator().manual_seed(1)
    chan = [torch.rand(w, generator=gen) < 0.6 for w in widths]
    mask = torch.cat([c.reshape(-1, 1).expand(-1, hw).reshape(-1) for c in chan])  # averaged per channel
    got = mg.counter.count(mask)
    assert got.value == hw * layered(widths, [int(c.sum()) for c in chan])


def test_deep_net_beyond_float64_keeps_log10_precision():
    """A 140-layer dense 1x1 conv stack has ~10**337 paths: per-layer exponents keep log10 E exact to 1e-9."""
    widths = [256] * 141
    net = torch.nn.Sequential(*[torch.nn.Conv2d(256, 256, 1, bias=False) for _ in range(140)]).eval()
    with torch.no_grad():
        for m in net:
            m.weight.fill_(1 / 256)
    mg = model_graph(net, torch.rand(2, 256, 1, 1), granularity="neuron")
    active = [256] * 141
    active[0] = 200
    mask = torch.ones(mg.graph.num_nodes, dtype=torch.bool)
    mask[:56] = False
    want = layered(widths, active)
    got = mg.counter.count(mask)
    assert got.log10 == pytest.approx(math.log10(want), rel=1e-12)
    assert got.value == math.inf


@pytest.mark.parametrize("name", ["rescnn", "shufflenetish"])
def test_formats_agree_at_neuron_level(tmp_path, name):
    from emergence.adapters.torch_model import export_module

    net, shape = model_zoo.build(name)
    x = torch.randn(12, *shape)
    ep = export_module(net, (x[:2],))
    torch.export.save(ep, tmp_path / "m.pt2")
    torch.onnx.export(net, (x[:2],), tmp_path / "m.onnx", dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    ref = model_graph(net, x, granularity="neuron")
    r = ref.counter.count(ref.graph.active)
    for f in ["m.pt2", "m.onnx"]:
        mg = model_graph(tmp_path / f, x, granularity="neuron")
        assert mg.graph.num_nodes == ref.graph.num_nodes
        assert mg.counter.num_edges == ref.counter.num_edges
        assert torch.equal(mg.graph.active, ref.graph.active)
        assert torch.allclose(mg.activity.statistic(0.05), ref.activity.statistic(0.05), atol=1e-5)
        assert mg.counter.count(mg.graph.active).value == r.value
        w, rw = mg.counter.count(mg.graph.active, weighted=True), ref.counter.count(ref.graph.active, weighted=True)
        assert w.log10 == pytest.approx(rw.log10, abs=1e-6)


def test_materialize_refuses_above_the_limit():
    net, shape = model_zoo.build("rescnn")
    mg = model_graph(net, torch.randn(4, *shape), granularity="neuron")
    with pytest.raises(UnsupportedOpError, match="more than 1,000 edges"):
        mg.materialize(limit=1000)


def test_measure_model_neuron_level_table_and_channel_default():
    net, shape = model_zoo.build("rescnn")
    x = torch.randn(16, *shape)
    m = measure_model(net, x, granularity="neuron", thresholds=[0.1])
    c = measure_model(net, x)
    assert m.granularity == "neuron" and c.granularity == "channel"
    assert m.layers["units"].sum() == m.result.num_nodes > c.result.num_nodes
    assert m.layers["edges"].sum() == m.result.num_edges
    assert json.loads(m.to_json())["granularity"] == "neuron"
    assert len(m.thresholds) == 1
    with pytest.raises(Exception, match="granularity must be one of"):
        measure_model(net, x, granularity="pixel")


def test_token_models_are_refused_at_neuron_level():
    net, _, vocab = model_zoo.build_tokens("gpt")
    with pytest.raises(UnsupportedOpError, match="granularity 'channel'"):
        model_graph(net, torch.randint(0, vocab, (4, 6)), granularity="neuron")


def test_cli_measure_neuron_level_and_save_graph(tmp_path):
    net, shape = model_zoo.build("shufflenetish")
    from emergence.adapters.torch_model import export_module

    torch.export.save(export_module(net, (torch.randn(2, *shape),)), tmp_path / "m.pt2")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((8, *shape)).astype("float32"))
    out = subprocess.run([sys.executable, "-m", "emergence.cli", "measure", str(tmp_path / "m.pt2"), "--data",
                          str(tmp_path / "x.npz"), "--granularity", "neuron", "--json", "--save-graph",
                          str(tmp_path / "g.pt")], capture_output=True, text=True, cwd=tmp_path.parent)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["granularity"] == "neuron" and body["nodes"] == 3 * 12 * 12 + 12 * 144 * 2 + 6 * 36 + 4
    from emergence.adapters.graphfile import read_graph

    g = read_graph(tmp_path / "g.pt")
    assert g.num_nodes == body["nodes"] and g.num_edges == body["edges"]
    bad = subprocess.run([sys.executable, "-m", "emergence.cli", "measure", str(tmp_path / "m.pt2"), "--granularity",
                          "pixel"], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_count_equals_cpu_count():
    net, shape = model_zoo.build("rescnn")
    x = torch.randn(16, *shape)
    cpu = model_graph(net, x, granularity="neuron")
    gpu = model_graph(net, x, granularity="neuron", device="cuda")
    for weighted in (False, True):
        a = cpu.counter.count(cpu.graph.active, weighted=weighted)
        b = gpu.counter.count(gpu.graph.active, weighted=weighted)
        assert b.log10 == pytest.approx(a.log10, abs=1e-9)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), st.integers(0, 2),
       st.integers(0, 3), st.sampled_from([1, 2]), st.integers(4, 9), st.integers(0, 1000))
@example(2, 1, 2, 1, 2, 0, 1, 4, 0)  # the last input rows are read by no window: pad after the transpose
@example(1, 3, 2, 1, 0, 3, 2, 5, 1)  # more padding after than before
def test_adjoint_is_the_vector_jacobian_product_of_the_convolution(nsp, k, stride, dilation, pad, pad_after,
                                                                   groups, size, seed):
    """Every branch of the transposed operation (flipped forward conv at stride 1, transposed conv with
    output padding, transposed conv then pad and crop -- asymmetric ONNX pads) is the adjoint of the
    forward convolution over the padded input."""
    from emergence.adapters._neurons import TapeOp
    from emergence.adapters._window import Window
    from emergence.adapters.neuron_count import ImplicitCounter

    g = torch.Generator().manual_seed(seed)
    if size + pad + pad_after < dilation * (k - 1) + 1:
        return
    w = torch.randn(2 * groups, 2, *([k] * nsp), generator=g, dtype=torch.float64)
    w[torch.rand(w.shape, generator=g) < 0.3] = 0
    x = torch.zeros(1, 2 * groups, *([size] * nsp), dtype=torch.float64, requires_grad=True)
    padded = F.pad(x, [pad, pad_after] * nsp)
    conv = (F.conv1d, F.conv2d, F.conv3d)[nsp - 1]
    y = conv(padded, w.abs(), stride=stride, dilation=dilation, groups=groups)
    msg = torch.rand(y.shape, generator=g, dtype=torch.float64)
    (expected,) = torch.autograd.grad(y, x, msg)
    op = TapeOp("conv", 0, None, w, tuple(x.shape[1:]), tuple(y.shape[1:]), groups,
                Window.of([k] * nsp, [stride], [pad], [dilation]))
    counter = ImplicitCounter.__new__(ImplicitCounter)
    counter.device, counter._kernels = torch.device("cpu"), {}
    got = counter._adjoint(op, msg.reshape(-1), weighted=True)
    torch.testing.assert_close(got, expected.reshape(-1), rtol=1e-12, atol=1e-12)
