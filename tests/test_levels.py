"""Topological levels: structure, caching, and invalidation."""

import pytest
import torch
from hypothesis import given

import emergence
from emergence.levels import topological_levels
from emergence.testing.strategies import dags


@given(dags(max_nodes=15))
def test_every_edge_goes_to_a_later_level(g):
    lv = topological_levels(g.edge_index, g.num_nodes)
    level = torch.empty(g.num_nodes, dtype=torch.long)
    for h in range(lv.num_levels):
        level[lv.node_order[lv.node_ptr[h] : lv.node_ptr[h + 1]]] = h
    src, dst = g.edge_index[:, lv.edge_order]
    assert lv.num_edges == g.num_edges
    assert sorted(lv.edge_order.tolist()) == list(range(g.num_edges))
    assert bool((level[src] < level[dst]).all())
    assert torch.equal(lv.dst.long(), dst)
    for h in range(lv.num_levels):  # each ordered edge's source sits in that level at src_local
        ea, eb = lv.edge_ptr[h], lv.edge_ptr[h + 1]
        nodes = lv.node_order[lv.node_ptr[h] : lv.node_ptr[h + 1]]
        assert torch.equal(nodes[lv.src_local[ea:eb].long()], src[ea:eb])


def test_levels_are_cached_and_reused_when_only_activity_changes():
    g = emergence.from_edges([(0, 1), (1, 2), (0, 2)], 3, [False, True, True])
    first = topological_levels(g.edge_index, 3)
    g.active = torch.tensor([False, False, True])
    emergence.measure(g)
    assert topological_levels(g.edge_index, 3) is first


def test_cache_is_invalidated_by_in_place_edits_and_new_tensors():
    g = emergence.from_edges([(0, 1), (1, 2)], 3, [False, True, True])
    first = topological_levels(g.edge_index, 3)
    g.edge_index[1, 1] = 0  # now 0 -> 1 -> 0: a cycle, which must not be masked by the cache
    with pytest.raises(emergence.NotADAGError, match="1 -> 0 -> 1"):
        topological_levels(g.edge_index, 3)
    g.edge_index[1, 1] = 2
    assert topological_levels(g.edge_index, 3) is not first
    h = emergence.from_edges([(0, 1), (1, 2)], 3, [False, True, True])
    assert topological_levels(h.edge_index, 3) is not first


def test_cache_tracks_the_zero_weight_pattern():
    g = emergence.from_edges([(0, 1), (1, 2)], 3, [False, True, True], weights=[1.0, 1.0])
    assert emergence.measure(g).value == 2
    g.edge_weight = torch.tensor([1.0, 0.0])  # prune the second edge
    assert emergence.measure(g).value == 1
    g.edge_weight = torch.tensor([3.0, 5.0])  # weights change, structure does not
    assert emergence.measure(g).value == 2
    assert emergence.measure(g, weighted=True).value == pytest.approx(3.0 + 15.0, rel=1e-12)
