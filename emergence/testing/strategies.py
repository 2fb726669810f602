"""Hypothesis strategies: graphs (acyclic by construction, shrinking toward small graphs) and small conv nets."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from emergence.graph import from_layers, graph
from emergence.graphdata import Graph

__all__ = ["conv_nets", "dags", "digraphs", "layered_nets"]


@st.composite
def dags(
    draw: st.DrawFn,
    *,
    min_nodes: int = 0,
    max_nodes: int = 10,
    weights: st.SearchStrategy[float] | None = None,
    layers: int = 0,
    relabel: bool = True,
) -> Graph:
    """Random DAGs with a random active mask.

    Edges are drawn among pairs ``i < j`` of a hidden order, so every draw is acyclic;
    a drawn permutation then relabels the nodes, so edges are not sorted. Hypothesis
    shrinks toward fewer nodes, fewer edges and the identity labeling.

    Parameters
    ----------
    min_nodes, max_nodes : int
        Bounds on the number of nodes.
    weights : strategy of float, optional
        When given, every edge gets a weight drawn from it (``edge_weight``).
    layers : int, default 0
        When positive, nodes get a random ``layer`` id in ``[0, layers)``.
    relabel : bool, default True
        Apply a random permutation to node ids.

    Returns
    -------
    strategy of emergence.Graph
    """
    n = draw(st.integers(min_nodes, max_nodes))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = sorted(draw(st.sets(st.integers(0, len(pairs) - 1))) if pairs else [])
    perm = draw(st.permutations(range(n))) if relabel else list(range(n))
    edges = [(perm[pairs[k][0]], perm[pairs[k][1]]) for k in chosen]
    active = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    extra: dict[str, Any] = {}
    if weights is not None:
        extra["edge_weight"] = torch.tensor([draw(weights) for _ in edges], dtype=torch.float64)
    if layers > 0:
        ids = draw(st.lists(st.integers(0, layers - 1), min_size=n, max_size=n))
        extra["layer"] = torch.tensor(ids, dtype=torch.long)
    ei = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    return graph(ei, n, active, **extra)


@st.composite
def digraphs(draw: st.DrawFn, *, min_nodes: int = 0, max_nodes: int = 7,
             weights: st.SearchStrategy[float] | None = None) -> Graph:
    """Random directed graphs, cycles, self-loops and parallel edges allowed, with a random active mask.

    Parameters
    ----------
    min_nodes, max_nodes : int
        Bounds on the number of nodes.
    weights : strategy of float, optional
        When given, every edge gets a weight drawn from it.

    Returns
    -------
    strategy of emergence.Graph
    """
    n = draw(st.integers(min_nodes, max_nodes))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n)) if n else []
    active = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    extra: dict[str, Any] = {}
    if weights is not None:
        extra["edge_weight"] = torch.tensor([draw(weights) for _ in edges], dtype=torch.float64)
    ei = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    return graph(ei, n, active, **extra)


@st.composite
def layered_nets(
    draw: st.DrawFn, *, max_layers: int = 5, max_width: int = 5
) -> tuple[Graph, list[int], list[int]]:
    """Fully connected layered networks with random activity.

    Returns
    -------
    strategy of (graph, widths, active counts)
    """
    widths = draw(st.lists(st.integers(1, max_width), min_size=1, max_size=max_layers))
    masks = [draw(st.lists(st.booleans(), min_size=w, max_size=w)) for w in widths]
    mats = [torch.ones(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    if not mats:  # a single layer has no edges: build it directly
        return graph(torch.zeros(2, 0, dtype=torch.long), widths[0], masks[0]), widths, [sum(masks[0])]
    return from_layers(mats, masks), widths, [sum(m) for m in masks]


class _ConvNet(torch.nn.Module):
    """A sequence of conv stages (conv, optional batch norm, ReLU, optional pool, optional residual conv),
    then flatten and a dense head. ``stages`` is a list of dicts as drawn by :func:`conv_nets`."""

    def __init__(self, cin: int, stages: list[dict[str, Any]], flat: int, classes: int) -> None:
        super().__init__()
        self.stages = stages
        self.convs = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        self.res = torch.nn.ModuleList()
        for st_ in stages:
            self.convs.append(torch.nn.Conv2d(cin, st_["cout"], st_["k"], st_["stride"], st_["pad"], st_["dil"],
                                              groups=st_["groups"]))
            self.norms.append(torch.nn.BatchNorm2d(st_["cout"]) if st_["bn"] else torch.nn.Identity())
            self.res.append(torch.nn.Conv2d(st_["cout"], st_["cout"], 3, 1, 1) if st_["residual"]
                            else torch.nn.Identity())
            cin = st_["cout"]
        self.head = torch.nn.Linear(flat, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for st_, conv, norm, res in zip(self.stages, self.convs, self.norms, self.res, strict=False):
            x = torch.relu(norm(conv(x)))
            if st_["residual"]:
                x = torch.relu(res(x)) + x
            if st_["pool"] == "max":
                x = torch.nn.functional.max_pool2d(x, st_["pk"], st_["ps"], st_["pp"])
            elif st_["pool"] == "avg":
                x = torch.nn.functional.avg_pool2d(x, st_["pk"], st_["ps"], st_["pp"])
            elif st_["pool"] == "adaptive":
                x = torch.nn.functional.adaptive_avg_pool2d(x, st_["pout"])
        return self.head(x.flatten(1))


@st.composite
def conv_nets(draw: st.DrawFn, *, max_stages: int = 3) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """Small conv nets in eval mode: random channels, kernel sizes, strides, paddings, dilations, groups,
    pools (overlapping ones too), residual blocks, batch norm (a zero scale among them), zeroed kernel
    entries. Returns the model and its per-sample input shape ``(C, H, W)``.
    """
    cin = draw(st.integers(1, 3))
    size = draw(st.integers(4, 9))
    shape = (cin, size, size)
    stages, c = [], cin
    for _ in range(draw(st.integers(1, max_stages))):
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
        cout = groups * draw(st.integers(1, 3))
        k, dil, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        pad = draw(st.integers(0, k // 2 * dil))
        span = dil * (k - 1) + 1
        if size + 2 * pad < span:
            break
        out = (size + 2 * pad - span) // stride + 1
        stage = dict(cout=cout, k=k, stride=stride, pad=pad, dil=dil, groups=groups, bn=draw(st.booleans()),
                     residual=draw(st.booleans()), pool=draw(st.sampled_from(["none", "max", "avg", "adaptive"])))
        if stage["pool"] in ("max", "avg"):
            pk = draw(st.integers(2, 3))
            ps = draw(st.integers(1, pk))
            pp = draw(st.integers(0, pk // 2))
            if out + 2 * pp < pk:
                stage["pool"] = "none"
            else:
                stage.update(pk=pk, ps=ps, pp=pp)
                out = (out + 2 * pp - pk) // ps + 1
        if stage["pool"] == "adaptive":
            pout = draw(st.integers(1, max(1, out)))
            stage["pout"] = pout
            out = pout
        stages.append(stage)
        size, c = out, cout
    if not stages:
        stages.append(dict(cout=2, k=1, stride=1, pad=0, dil=1, groups=1, bn=False, residual=False, pool="none"))
        c = 2
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    net = _ConvNet(cin, stages, c * size * size, draw(st.integers(1, 3)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.mul_(torch.rand(m.weight.shape, generator=gen) > 0.3)  # zeroed entries
            elif isinstance(m, torch.nn.BatchNorm2d):
                if m.running_var is not None:  # always: the stages track running statistics
                    m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                if draw(st.booleans()):
                    m.weight[0] = 0.0  # a slimmed channel: no incoming edges
    return net.eval(), shape
