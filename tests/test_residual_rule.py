"""The residual rule: ``relu(bn2(conv2(h)) + shortcut)`` is judged where the nonlinearity acts.

A residual sum that a nonlinearity reads next *is* the branch's last layer: its units are conv2's, conv2's
kernels and the shortcut (identity edges of weight 1; a projection shortcut is its own layer) both feed
them, their activity is read after the ReLU, and the next layer reads them only. Checked against a
hand-made oracle, and across formats.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hf_zoo import export_as, graph_key
from torch import nn

import emergence
from emergence.adapters.model_files import model_graph


class Block(nn.Module):
    """stem (1x1 conv + ReLU) -> basic block (conv-bn-relu-conv-bn, + shortcut, ReLU) -> linear head."""

    def __init__(self, projection: bool = False, shortcut_first: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 1)
        self.c1, self.b1 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
        self.c2, self.b2 = nn.Conv2d(3, 4 if projection else 3, 3, padding=1, bias=False), nn.BatchNorm2d(
            4 if projection else 3)
        self.proj = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4)) if projection else None
        self.head = nn.Linear((4 if projection else 3) * 4 * 4, 2)
        self.shortcut_first = shortcut_first
        with torch.no_grad():
            for bn in (self.b1, self.b2):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
            self.c2.weight[1, 2] = 0.0  # c1's channel 2 does not reach c2's channel 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.stem(x))
        y = self.b2(self.c2(F.relu(self.b1(self.c1(s)))))
        short = s if self.proj is None else self.proj(s)
        out = F.relu(short + y if self.shortcut_first else y + short)
        return self.head(out.flatten(1))


def _by_name(mg):
    offsets, out = 0, {}
    for lay in mg.layers:
        out[lay.name] = list(range(offsets, offsets + lay.units))
        offsets += lay.units
    return out


@pytest.mark.parametrize("projection", [False, True])
@pytest.mark.parametrize("shortcut_first", [False, True])
def test_the_sum_is_the_branch_layer_fed_by_the_shortcut(projection, shortcut_first):
    torch.manual_seed(0)
    net = Block(projection, shortcut_first).eval()
    x = torch.rand(64, 1, 4, 4)
    mg = model_graph(net, x, threshold=0.3)
    n = _by_name(mg)
    assert list(n) == ["input", "stem", "c1", "c2", *(["proj.0"] if projection else []), "head"] or \
        list(n) == ["input", "stem", "c1", *(["proj.0"] if projection else []), "c2", "head"]
    edges = {tuple(e) for e in mg.graph.edge_index.t().tolist()}
    # into c2: its kernels from c1 (all pairs but c1:2 -> c2:1), and the shortcut as identity edges
    kernel = {(n["c1"][i], n["c2"][o]) for o in range(len(n["c2"])) for i in range(3) if not (i == 2 and o == 1)}
    short = n["proj.0"] if projection else n["stem"]
    identity = {(short[c], n["c2"][c]) for c in range(len(n["c2"]))}
    assert {e for e in edges if e[1] in n["c2"]} == kernel | identity
    # the head reads the sum's units only (the union rule would add the shortcut's)
    assert {e[0] for e in edges if e[1] in n["head"]} == set(n["c2"])
    # c2's activity is read after the add and the ReLU
    with torch.no_grad():
        s = F.relu(net.stem(x))
        y = net.b2(net.c2(F.relu(net.b1(net.c1(s)))))
        sc = s if net.proj is None else net.proj(s)
        after = F.relu(y + sc).mean(dim=(0, 2, 3))
    assert mg.graph.active[n["c2"]].tolist() == (after > 0.3).tolist()
    # identity edges have weight 1 (times the shortcut's own scale: none here)
    w = {tuple(e): float(v) for e, v in zip(mg.graph.edge_index.t().tolist(), mg.graph.edge_weight, strict=True)}
    assert all(w[e] == pytest.approx(1.0) for e in identity)


def test_a_sum_no_nonlinearity_reads_keeps_the_union_rule():
    class PreNorm(nn.Module):  # a transformer's residual stream: x + f(x), no activation after the sum
        def __init__(self) -> None:
            super().__init__()
            self.a, self.f, self.out = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.a(x))
            return self.out(h + self.f(h))

    torch.manual_seed(0)
    mg = model_graph(PreNorm().eval(), torch.rand(16, 3))
    n = _by_name(mg)
    into_out = {e[0] for e in mg.graph.edge_index.t().tolist() if e[1] in n["out"]}
    assert into_out == set(n["a"]) | set(n["f"])


def test_the_rule_is_the_same_in_every_format(tmp_path):
    torch.manual_seed(0)
    net = Block(projection=True).eval()
    x = torch.rand(32, 1, 4, 4)
    ref = model_graph(net, x)
    units, edges, active = graph_key(ref)
    for fmt in ("pt2", "onnx-dynamo", "onnx-torchscript"):
        got = model_graph(str(export_as(net, x, tmp_path, fmt)), x)
        u, e, a = graph_key(got)
        assert u == units and torch.equal(e, edges) and torch.equal(a, active), fmt
        assert emergence.measure(got.graph).value == emergence.measure(ref.graph).value, fmt


@pytest.mark.parametrize("projection", [False, True])
@pytest.mark.parametrize("shortcut_first", [False, True])
def test_at_neuron_level_the_shortcut_feeds_each_neuron_from_its_own_entry(projection, shortcut_first):
    """The oracle: conv2's neurons read c1's neurons in their 3x3 window (kernel taps), plus the shortcut's
    neuron at the same (channel, position) by an edge of weight 1; the head reads conv2's neurons only; their
    activity is read after the add and the ReLU; the implicit count equals the count of that edge list."""
    torch.manual_seed(0)
    net = Block(projection, shortcut_first).eval()
    x = torch.rand(64, 1, 4, 4)
    mg = model_graph(net, x, threshold=0.3, granularity="neuron")
    n = _by_name(mg)
    c2, c1 = torch.tensor(n["c2"]).reshape(-1, 4, 4), torch.tensor(n["c1"]).reshape(3, 4, 4)
    short = torch.tensor(n["proj.0"] if projection else n["stem"]).reshape(-1, 4, 4)
    kernel = set()
    for o in range(c2.shape[0]):
        for i in range(3):
            for y in range(4):
                for xx in range(4):
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            if 0 <= y + dy < 4 and 0 <= xx + dx < 4 and float(net.c2.weight[o, i, dy + 1, dx + 1]):
                                kernel.add((int(c1[i, y + dy, xx + dx]), int(c2[o, y, xx])))
    identity = {(int(short.reshape(-1)[k]), int(c2.reshape(-1)[k])) for k in range(c2.numel())}
    m = mg.materialize()
    ei, w = m.graph.edge_index, m.graph.edge_weight
    into = ei[1] >= c2.min()
    into &= ei[1] <= c2.max()
    got = [tuple(e) for e in ei[:, into].t().tolist()]
    assert len(got) == len(set(got)) and set(got) == kernel | identity
    weights = {tuple(e): float(v) for e, v in zip(ei.t().tolist(), w, strict=True)}
    assert all(weights[e] == pytest.approx(1.0) for e in identity)
    assert {e[0] for e in ei.t().tolist() if e[1] in set(n["head"])} == set(n["c2"])
    with torch.no_grad():
        s = F.relu(net.stem(x))
        y = net.b2(net.c2(F.relu(net.b1(net.c1(s)))))
        after = F.relu(y + (s if net.proj is None else net.proj(s))).mean(0).reshape(-1)
    assert mg.graph.active[n["c2"]].tolist() == (after > 0.3).tolist()
    m.graph.active = torch.arange(m.graph.num_nodes) % 3 != 0  # a mask with many emergent paths
    for weighted in (False, True):
        want = emergence.measure(m.graph, weighted=weighted, method="log").log10
        assert want is not None and want > 1
        assert mg.counter.count(m.graph.active, weighted=weighted).log10 == pytest.approx(want, rel=1e-12)


class InPlaceBlock(nn.Module):
    """A torchvision-style block: ``out += identity`` in place, then ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.c1, self.b1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.c2, self.b2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 6 * 6, 2)
        with torch.no_grad():
            for bn in (self.b1, self.b2):
                bn.running_mean.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = F.relu(self.stem(x))
        out = self.b2(self.c2(F.relu(self.b1(self.c1(identity)))))
        out += identity
        return self.head(F.relu(out).flatten(1))


@pytest.mark.parametrize("granularity", ["channel", "neuron"])
def test_an_in_place_residual_add_reads_the_same_in_every_format(granularity, tmp_path):
    """conv2's activity is read on relu(out + identity), recorded when it is produced: the in-place add
    does not change what an earlier layer was judged on, and every format agrees."""
    torch.manual_seed(0)
    net = InPlaceBlock().eval()
    x = torch.randn(32, 1, 6, 6)
    ref = model_graph(net, x, granularity=granularity)

    def e(mg):
        return emergence.measure(mg.graph).log10 if granularity == "channel" else \
            mg.counter.count(mg.graph.active).log10

    with torch.no_grad():
        s = F.relu(net.stem(x))
        after = F.relu(net.b2(net.c2(F.relu(net.b1(net.c1(s))))) + s)
    n = _by_name(ref)
    want = after.mean(0) if granularity == "neuron" else after.mean(dim=(0, 2, 3))
    assert ref.graph.active[n["c2"]].tolist() == (want.reshape(-1) > 0.05).tolist()
    for fmt in ("pt2", "onnx-torchscript", "onnx-dynamo"):
        got = model_graph(str(export_as(net, x, tmp_path, fmt)), x, granularity=granularity)
        assert torch.equal(got.graph.active, ref.graph.active), fmt
        assert e(got) == pytest.approx(e(ref), rel=1e-12), fmt
