"""Graph constructors and validation: every bad input raises GraphError naming the problem."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import emergence
from emergence import GraphError, NotADAGError
from emergence.testing import brute_force_emergence


def test_isolated_nodes_are_kept():
    g = emergence.graph([[0], [1]], 5, [False, True, False, False, False])
    assert g.num_nodes == 5
    r = emergence.measure(g)
    assert r.num_nodes == 5 and r.num_active == 1 and r.value == 1


def test_from_edges_and_adjacency_agree():
    adj = np.array([[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=float)
    active = [False, True, True, True]
    a = emergence.from_adjacency(adj, active)
    b = emergence.from_adjacency(sp.csr_array(adj), active)
    c = emergence.from_edges([(0, 1), (0, 2), (1, 2), (2, 3)], 4, active)
    values = {emergence.measure(x).value for x in (a, b, c)}
    assert values == {brute_force_emergence(c)} == {5}  # 0->1->2->3, 0->1->2, 0->1, 0->2->3, 0->2


def test_from_layers_matches_closed_form_and_skips_zero_weights():
    w1 = torch.ones(3, 2)
    w2 = torch.ones(2, 3)
    g = emergence.from_layers([w1, w2], [[False, True], [True, True, False], [True, True]])
    assert emergence.measure(g).value == emergence.layered([2, 3, 2], [1, 2, 2])
    w1[0, 0] = 0.0
    h = emergence.from_layers([w1, w2], [[False, True], [True, True, False], [True, True]])
    assert h.num_edges == g.num_edges - 1
    assert h.names[:3] == ["L0:0", "L0:1", "L1:0"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(edge_index=[[0], [3]], num_nodes=3, active=[1, 0, 1]), "target 3, outside the node range"),
        (dict(edge_index=[[-1], [0]], num_nodes=3, active=[1, 0, 1]), "source -1"),
        (dict(edge_index=[[0], [1]], num_nodes=3, active=[1, 0]), "shape \\(2,\\) but the graph has 3 nodes"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[1, 2]), "active\\[1\\] = 2 is not 0 or 1"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0.5, 1.0]), "active\\[0\\] = 0.5 is not 0 or 1"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[math.nan, 1.0]), "active\\[0\\] = nan is not 0 or 1"),
        (dict(edge_index=[[0.0], [1.0]], num_nodes=2, active=[0, 1]), "must hold integers"),
        (dict(edge_index=[[0, 1, 2]], num_nodes=3, active=[0, 1, 1]), "shape \\[2, E\\]"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0, 1], edge_weight=[math.nan]), "edge_weight\\[0\\] = nan"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0, 1], edge_weight=[math.inf]), "is not finite"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0, 1], edge_weight=[1.0, 2.0]), "there are 1 edges"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0, 1], layer=[0.5, 1.0]), "layer must be an integer"),
        (dict(edge_index=[[0], [1]], num_nodes=2, active=[0, 1], names=["a"]), "names must be a list of 2"),
    ],
)
def test_bad_graphs_are_refused(kwargs, match):
    with pytest.raises(GraphError, match=match):
        emergence.graph(**kwargs)


def test_non_finite_weight_error_names_the_edge():
    with pytest.raises(GraphError, match=r"edge 0 \('a'\) -> 1 \('b'\)"):
        emergence.graph([[0], [1]], 2, [0, 1], edge_weight=[math.nan], names=["a", "b"])


def test_validate_catches_edits_after_construction():
    g = emergence.graph([[0], [1]], 2, [False, True])
    g.active = torch.tensor([1, 0])
    with pytest.raises(GraphError, match="active must be a bool tensor"):
        emergence.measure(g)
    with pytest.raises(GraphError, match="expected an emergence.Graph"):
        emergence.measure({"edge_index": None})


def test_from_layers_shape_errors():
    with pytest.raises(GraphError, match="weights\\[1\\] has shape \\(2, 4\\) but layer 1 has 3 units"):
        emergence.from_layers([torch.ones(3, 2), torch.ones(2, 4)], [[0, 1], [1, 1, 1], [1, 1]])
    with pytest.raises(GraphError, match="got 2 activity masks for 3 layers"):
        emergence.from_layers([torch.ones(3, 2), torch.ones(2, 3)], [[0, 1], [1, 1, 1]])


@pytest.mark.parametrize("edges, on_cycle", [([(0, 1), (1, 2), (2, 0)], {0, 1, 2}), ([(0, 1), (1, 1)], {1})])
def test_cycles_of_active_nodes_are_refused_naming_them(edges, on_cycle):
    g = emergence.from_edges(edges + [(3, 0)], 4, [True, True, True, False], names=list("abcd"))
    with pytest.raises(NotADAGError, match="the active nodes form a directed cycle") as info:
        emergence.measure(g)
    assert set(info.value.cycle) <= on_cycle and info.value.cycle
    assert any(f"'{'abcd'[v]}'" in str(info.value) for v in info.value.cycle)


def test_a_cycle_through_an_inactive_node_is_counted():
    g = emergence.from_edges([(0, 1), (1, 2), (2, 0), (3, 0)], 4, [True, True, False, False])
    assert emergence.measure(g).value == 4  # 2 -> 0, 2 -> 0 -> 1, 3 -> 0, 3 -> 0 -> 1; no path enters 2


def test_a_zero_weight_edge_does_not_close_a_cycle():
    g = emergence.from_edges([(0, 1), (1, 2), (2, 0)], 3, [False, True, True], weights=[1.0, 1.0, 0.0])
    r = emergence.measure(g)
    assert r.value == 2 and r.num_edges == 2


def test_deep_graph_overflows_float64_but_log10_is_finite():
    depth, width = 200, 40  # 40^199 ~ 1e318 paths: beyond float64
    g = emergence.from_layers(
        [torch.ones(width, width)] * (depth - 1), [torch.ones(width)] * (depth - 1) + [torch.zeros(width)]
    )
    g.active[:width] = False  # the input layer is inactive, everything after it active
    g.active[width:] = True
    r = emergence.measure(g)
    assert r.exact is False and r.value == math.inf
    expected = emergence.layered([width] * depth, [0] + [width] * (depth - 1))
    assert abs(r.log10 - math.log10(expected)) < 1e-9 * math.log10(expected)
    assert math.isfinite(r.log10) and r.log10 > 308
    exact = emergence.measure(g, method="exact")
    assert exact.value == expected and abs(exact.log10 - r.log10) < 1e-9 * r.log10
    assert '"emergence": null' in r.to_json() and str(expected)[:20] in exact.to_json()


def test_weighted_needs_weights_and_exact_needs_unweighted():
    g = emergence.graph([[0], [1]], 2, [False, True])
    with pytest.raises(GraphError, match="needs edge weights"):
        emergence.measure(g, weighted=True)
    g.edge_weight = torch.tensor([2.0])
    with pytest.raises(emergence.ConfigError, match="unweighted paths only"):
        emergence.measure(g, weighted=True, method="exact")
    assert emergence.measure(g, weighted=True).value == pytest.approx(2.0)
    with pytest.raises(emergence.ConfigError, match="method must be"):
        emergence.measure(g, method="fast")
    with pytest.raises(emergence.ConfigError, match="device 'nonsense'"):
        emergence.measure(g, method="log", device="nonsense")


def test_layered_checks_its_arguments():
    with pytest.raises(emergence.ConfigError, match="got 2 widths but 1"):
        emergence.layered([1, 2], [1])
    with pytest.raises(emergence.ConfigError, match="layer 1"):
        emergence.layered([1, 2], [1, 3])


# --- the graph type: emergence.Graph, and torch_geometric's Data read unchanged ---------------------

def test_a_torch_geometric_data_is_measured_like_a_graph():
    from torch_geometric.data import Data

    g = emergence.from_edges([(0, 1), (1, 2), (0, 2), (3, 2)], 4, [False, True, True, False])
    d = Data(edge_index=g.edge_index, num_nodes=4, active=g.active)
    assert emergence.measure(d).value == emergence.measure(g).value == 4
    assert emergence.measure(d, method="log").log10 == pytest.approx(emergence.measure(g, method="log").log10)


def test_a_data_without_num_nodes_is_not_guessed_from_edges():
    from torch_geometric.data import Data

    d = Data(edge_index=torch.tensor([[0], [1]]))
    with pytest.raises(GraphError, match="neither num_nodes nor an active mask"):
        emergence.validate(d)


def test_pyg_round_trip_keeps_every_attribute():
    from emergence.adapters import from_pyg, to_pyg

    g = emergence.graph([[0, 1], [1, 2]], 3, [False, True, True], edge_weight=[0.5, 2.0], layer=[0, 1, 2],
                        names=["a", "b", "c"])
    back = from_pyg(to_pyg(g))
    assert isinstance(back, emergence.Graph)
    assert sorted(back.keys()) == sorted(["num_nodes", "edge_index", "active", "edge_weight", "layer", "names"])
    for key in ("edge_index", "active", "edge_weight", "layer"):
        assert torch.equal(getattr(back, key), getattr(g, key)), key
    assert back.names == g.names and back.num_nodes == 3
    with pytest.raises(GraphError, match="from_pyg expects a torch_geometric.data.Data"):
        from_pyg(g)


def test_graph_attribute_names_that_would_hide_its_methods_are_refused():
    with pytest.raises(GraphError, match="'keys' cannot be a graph attribute"):
        emergence.Graph(num_nodes=2, keys=[1, 2])
    g = emergence.Graph(num_nodes=2)
    with pytest.raises(GraphError, match="'_store' cannot be a graph attribute"):
        g._store = {}


def test_graph_dict_round_trip_and_device_copy():
    g = emergence.graph([[0], [1]], 2, [False, True], names=["x", "y"])
    h = emergence.Graph.from_dict(g.to_dict())
    assert h.keys() == g.keys() and torch.equal(h.edge_index, g.edge_index) and h.names == ["x", "y"]
    moved = g.to("cpu")
    assert moved is not g and torch.equal(moved.active, g.active)
    c = g.clone()
    c.active[0] = True
    assert not bool(g.active[0])
    assert emergence.Graph(active=torch.ones(3, dtype=torch.bool)).num_nodes == 3
    assert emergence.Graph().num_nodes is None and emergence.Graph().num_edges == 0
