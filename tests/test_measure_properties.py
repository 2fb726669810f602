"""Property tests of the emergence count against a brute-force reference and invariants."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import emergence
from emergence.testing import brute_force_emergence
from emergence.testing.strategies import dags, layered_nets

small_weights = st.floats(-3, 3, allow_nan=False).filter(lambda w: abs(w) > 1e-3)


def _relabel(g, perm):
    perm = torch.as_tensor(perm, dtype=torch.long)  # new id of old node i is perm[i]
    active = torch.empty_like(g.active)
    active[perm] = g.active
    return emergence.graph(perm[g.edge_index], g.num_nodes, active, edge_weight=getattr(g, "edge_weight", None))


def _close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol * max(1.0, abs(a))


@given(dags(max_nodes=12))
def test_matches_brute_force_unweighted(g):
    ref = brute_force_emergence(g)
    assert emergence.measure(g, method="exact").value == ref
    log = emergence.measure(g, method="log")
    assert log.exact is False
    assert _close(log.log10, math.log10(ref) if ref else None)


@given(dags(max_nodes=10, weights=small_weights))
def test_matches_brute_force_weighted(g):
    ref = brute_force_emergence(g, weighted=True)
    r = emergence.measure(g, weighted=True)
    assert r.weighted and not r.exact
    assert _close(r.log10, math.log10(ref) if ref > 0 else None, 1e-9)


@given(dags(max_nodes=14), st.booleans())
def test_zero_when_all_or_none_active(g, flag):
    g.active = torch.full_like(g.active, flag)
    for method in ("exact", "log"):
        r = emergence.measure(g, method=method)
        assert r.value == 0 and r.log10 is None and r.log10_relative is None and r.relative == 0


@given(dags(max_nodes=14), st.data())
def test_invariant_under_relabeling(g, data):
    perm = data.draw(st.permutations(range(g.num_nodes)))
    h = _relabel(g, perm)
    assert emergence.measure(h, method="exact").value == emergence.measure(g, method="exact").value
    assert _close(emergence.measure(h, method="log").log10, emergence.measure(g, method="log").log10)


@given(dags(max_nodes=10), dags(max_nodes=10))
def test_additive_over_disjoint_union(g, h):
    n = g.num_nodes
    u = emergence.graph(
        torch.cat([g.edge_index, h.edge_index + n], dim=1),
        n + h.num_nodes,
        torch.cat([g.active, h.active]),
    )
    assert emergence.measure(u).value == emergence.measure(g).value + emergence.measure(h).value


@given(dags(max_nodes=25))
def test_exact_equals_log(g):
    ex = emergence.measure(g, method="exact")
    lg = emergence.measure(g, method="log")
    assert _close(lg.log10, ex.log10, 1e-9)
    assert _close(lg.log10_relative, ex.log10_relative, 1e-9)
    fin = torch.isfinite(ex.node_log10)
    assert torch.equal(fin, torch.isfinite(lg.node_log10))
    assert torch.allclose(lg.node_log10[fin], ex.node_log10[fin], rtol=0, atol=1e-9)


@given(layered_nets())
def test_dense_layered_equals_closed_form(net):
    g, widths, counts = net
    assert emergence.measure(g).value == emergence.layered(widths, counts)


@given(dags(min_nodes=2, max_nodes=12), st.data())
def test_removing_an_edge_never_increases(g, data):
    if g.num_edges == 0:
        return
    e = data.draw(st.integers(0, g.num_edges - 1))
    keep = torch.ones(g.num_edges, dtype=torch.bool)
    keep[e] = False
    h = emergence.graph(g.edge_index[:, keep], g.num_nodes, g.active)
    assert emergence.measure(h).value <= emergence.measure(g).value


@given(dags(max_nodes=12, weights=st.sampled_from([0.0, 1.0, -1.0])))
def test_binary_weights_equal_unweighted_count_of_survivors(g):
    w = g.edge_weight
    survivors = emergence.graph(g.edge_index[:, w != 0], g.num_nodes, g.active)
    expected = emergence.measure(survivors).value
    assert emergence.measure(g).value == expected  # zero-weight edges are not edges
    weighted = emergence.measure(g, weighted=True)
    assert _close(weighted.log10, math.log10(expected) if expected else None)
    assert weighted.num_edges == survivors.num_edges


@given(dags(max_nodes=14, layers=3))
def test_node_and_layer_contributions_sum_to_total(g):
    for method in ("exact", "log"):
        r = emergence.measure(g, method=method)
        node_total = float((10.0 ** r.node_log10).sum())
        layer_total = sum(10.0**v for v in r.layer_log10.values() if v is not None)
        expected = float(r.value)
        assert math.isclose(node_total, expected, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(layer_total, expected, rel_tol=1e-9, abs_tol=1e-12)
        assert bool((torch.isfinite(r.node_log10) & g.active).any()) is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@given(dags(max_nodes=20, weights=small_weights))
def test_cpu_and_cuda_agree(g):
    for weighted in (False, True):
        cpu = emergence.measure(g, weighted=weighted, method="log", device="cpu")
        gpu = emergence.measure(g, weighted=weighted, method="log", device="cuda")
        assert _close(cpu.log10, gpu.log10, 1e-12)
        assert torch.allclose(cpu.node_log10, gpu.node_log10, rtol=0, atol=1e-12, equal_nan=True)


@given(dags(max_nodes=14, weights=small_weights, layers=2), st.data())
def test_many_masks_in_one_pass_equal_one_at_a_time(g, data):
    rows = data.draw(st.lists(st.lists(st.booleans(), min_size=g.num_nodes, max_size=g.num_nodes), min_size=1,
                              max_size=4))
    masks = torch.tensor(rows, dtype=torch.bool).reshape(len(rows), g.num_nodes)
    for method, weighted in (("exact", False), ("log", False), ("log", True)):
        batch = emergence.measure_masks(g, masks, method=method, weighted=weighted)
        for m, r in zip(masks, batch, strict=True):
            g.active = m
            one = emergence.measure(g, method=method, weighted=weighted)
            assert _close(r.log10, one.log10, 1e-12) and r.num_active == one.num_active
            assert r.layer_log10.keys() == one.layer_log10.keys()
            assert all(_close(r.layer_log10[k], one.layer_log10[k], 1e-12) for k in r.layer_log10)


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**16 - 1))
def test_log_space_json_prints_the_exact_count_without_noise(a, b, c, bits):
    """A log-space count that fits in 12 digits prints as the exact integer (66517594.0, not ...99955)."""
    import json

    rng = np.random.default_rng(bits)
    widths = [a, b, c, 3]
    active = [rng.random(w) < 0.6 for w in widths]
    g = emergence.from_layers([np.ones((widths[i + 1], widths[i])) for i in range(3)], active)
    exact = emergence.measure(g, method="exact").value
    logged = json.loads(emergence.measure(g, method="log").to_json())["emergence"]
    assert logged == float(exact)
