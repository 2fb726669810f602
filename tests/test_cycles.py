"""Graphs as they come: cycles among inactive nodes, condensation, bounded walks, converters.

Against slow references: the DAG brute force on the graph without its edges into inactive nodes (an
emergent path never uses one), enumeration of bounded walks, and scipy's strongly connected components.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import emergence
from emergence.cycles import condense, strong_components
from emergence.errors import ConfigError, NotADAGError
from emergence.graph import graph
from emergence.testing import brute_force_emergence, brute_force_walks
from emergence.testing.strategies import dags, digraphs


def _active_subgraph(g):
    """The graph without its edges into inactive nodes: what an emergent path can use."""
    keep = g.active[g.edge_index[1]]
    extra = {} if getattr(g, "edge_weight", None) is None else {"edge_weight": g.edge_weight[keep]}
    return graph(g.edge_index[:, keep], g.num_nodes, g.active, **extra)


def _acyclic(g) -> bool:
    n = g.num_nodes
    count, _ = strong_components(g.edge_index, n)
    loops = bool((g.edge_index[0] == g.edge_index[1]).any())
    return count == n and not loops


@settings(max_examples=150, deadline=None)
@given(digraphs(weights=st.sampled_from([0.5, 1.0, 2.0, -3.0])))
def test_cycles_among_inactive_nodes_do_not_stop_an_exact_count(g):
    sub = _active_subgraph(g)
    if not _acyclic(sub):
        with pytest.raises(NotADAGError, match="the active nodes form a directed cycle") as info:
            emergence.measure(g)
        cycle = info.value.cycle
        assert cycle and all(bool(g.active[v]) for v in cycle)  # an active cycle, named in order
        pairs = set(map(tuple, g.edge_index.t().tolist()))
        assert all((a, b) in pairs for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True))
        return
    want = brute_force_emergence(sub)
    assert emergence.measure(g).value == want
    assert emergence.measure(g, method="log").value == pytest.approx(want, rel=1e-9, abs=1e-9)
    wanted = brute_force_emergence(sub, weighted=True)
    assert emergence.measure(g, weighted=True).value == pytest.approx(wanted, rel=1e-9, abs=1e-9)


def test_several_masks_of_a_cyclic_graph_are_counted_each_on_its_own():
    # 1 <-> 2 is a cycle; mask a makes 1 inactive, mask b makes 2 inactive: each is acyclic, their union is not
    g = graph([[0, 1, 2, 2], [1, 2, 1, 3]], 4, [False, True, True, True])
    masks = torch.tensor([[False, False, True, True], [False, True, False, True]])
    got = [r.value for r in emergence.measure_masks(g, masks)]
    for m, value in zip(masks, got, strict=True):
        h = graph(g.edge_index, 4, m)
        assert value == brute_force_emergence(_active_subgraph(h))


def test_the_refusal_sums_up_the_components_of_active_nodes():
    # two active cycles: a 3-cycle and a self-loop; an inactive 2-cycle that does not matter
    edges = [[0, 1], [1, 2], [2, 0], [3, 3], [4, 5], [5, 4], [4, 0]]
    g = emergence.from_edges(edges, 6, [True, True, True, True, False, False], names=list("abcdef"))
    with pytest.raises(NotADAGError) as info:
        emergence.measure(g)
    msg = str(info.value)
    assert "2 strongly connected components of active nodes hold cycles (largest: 3, 1 nodes)" in msg
    assert "--condense" in msg and "--max-length" in msg and "\n" not in msg


@settings(max_examples=120, deadline=None)
@given(digraphs(weights=st.sampled_from([0.5, 1.0, 3.0])), st.integers(1, 5))
def test_bounded_walks_match_enumeration(g, k):
    want = brute_force_walks(g, k)
    assert emergence.measure(g, max_length=k).value == want
    assert emergence.measure(g, max_length=k, method="log").value == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert emergence.measure(g, max_length=k, weighted=True).value == pytest.approx(
        brute_force_walks(g, k, weighted=True), rel=1e-9, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(dags(max_nodes=9))
def test_on_a_dag_bounded_walks_reach_e_at_the_longest_path(g):
    e = emergence.measure(g).value
    longest = emergence.topological_levels(g.edge_index, g.num_nodes).num_levels
    assert emergence.measure(g, max_length=max(longest, 1)).value == e
    values = [emergence.measure(g, max_length=k).value for k in range(1, longest + 2)]
    assert values == sorted(values)  # more length, more walks


def test_long_walks_do_not_overflow_in_log_space():
    g = graph([[0, 1, 1, 2, 2], [1, 2, 1, 1, 2]], 3, [False, True, True])  # loops on active nodes
    r = emergence.measure(g, max_length=2000, method="log")
    assert r.log10 is not None and math.isfinite(r.log10) and r.log10 > 300
    with pytest.raises(ConfigError, match="max_length must be an integer >= 1"):
        emergence.measure(g, max_length=0)


@settings(max_examples=100, deadline=None)
@given(digraphs(weights=st.sampled_from([1.0, 2.0])), st.sampled_from(["any", "all"]))
def test_condensation_invariants(g, rule):
    c = condense(g, rule)
    n_comp, comp = strong_components(g.edge_index, g.num_nodes)
    assert c.num_nodes == n_comp
    members = torch.cat(list(c.members)) if c.members else torch.zeros(0, dtype=torch.long)
    assert sorted(members.tolist()) == list(range(g.num_nodes))  # a partition
    for i, m in enumerate(c.members):
        assert len(set(comp[m].tolist())) == 1
        flags = g.active[m]
        assert bool(c.active[i]) == (bool(flags.any()) if rule == "any" else bool(flags.all()))
    assert not bool((c.edge_index[0] == c.edge_index[1]).any())
    assert _acyclic(c)
    emergence.measure(c)  # always countable
    between = comp[g.edge_index[0]] != comp[g.edge_index[1]]
    assert float(c.edge_weight.sum()) == pytest.approx(float(g.edge_weight[between].sum()))


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=8))
def test_condensing_a_dag_changes_nothing(g):
    c = condense(g)
    assert c.num_nodes == g.num_nodes and [m.tolist() for m in c.members] == [[i] for i in range(g.num_nodes)]
    assert torch.equal(c.active, g.active)
    # parallel edges are merged into one whose weight is their number: weighted, the count is the same
    assert emergence.measure(c, weighted=True).value == pytest.approx(emergence.measure(g).value)


def test_from_edges_takes_no_edges_and_coo_duplicates_are_summed():
    g = emergence.from_edges([], 3, [False, True, True])
    assert g.num_edges == 0 and emergence.measure(g).value == 0
    a = sp.coo_matrix((np.array([1.0, 2.0, 4.0]), (np.array([0, 0, 1]), np.array([1, 1, 2]))), shape=(3, 3))
    g = emergence.from_adjacency(a, [False, True, True])
    assert g.edge_index.tolist() == [[0, 1], [1, 2]] and g.edge_weight.tolist() == [3.0, 4.0]  # as a.tocsr() reads


def test_networkx_converter_takes_active_and_keeps_parallel_edges():
    import networkx as nx

    from emergence.adapters import from_networkx, to_networkx

    h = nx.DiGraph([("numpy", "scipy"), ("scipy", "numpy"), ("scipy", "pandas")])
    g = from_networkx(h, active=["pandas"])
    assert g.names == ["numpy", "scipy", "pandas"] and g.active.tolist() == [False, False, True]
    assert emergence.measure(g).value == 1  # the numpy <-> scipy cycle is inactive
    m = nx.MultiDiGraph([(0, 1), (0, 1), (1, 2)])
    nx.set_node_attributes(m, {0: False, 1: True, 2: True}, "active")
    g = from_networkx(m)
    assert g.num_edges == 3 and emergence.measure(g).value == 4
    back = from_networkx(to_networkx(g))
    assert back.edge_index.tolist() == g.edge_index.tolist() and back.active.tolist() == g.active.tolist()


def test_networkx_nodes_equal_but_distinct_objects_and_partial_weights():
    import networkx as nx

    from emergence.adapters import from_networkx

    def node(i):  # a new tuple on every call: equal to the node, not the same object
        return tuple([i, "abc"[i - 1]])

    h = nx.DiGraph()
    h.add_nodes_from([node(1), node(2), node(3)])
    h.add_edge(node(1), node(2), weight=2.0)
    h.add_edge(node(2), node(3), weight=5.0)
    h.add_edge(node(1), node(3), weight=7.0)
    assert all(v is not next(k for k in h.nodes if k == v) for v in h._succ[node(1)])  # the fallback is tested
    g = from_networkx(h, active=[(2, "b"), (3, "c")])
    assert sorted(map(tuple, g.edge_index.t().tolist())) == [(0, 1), (0, 2), (1, 2)]
    assert emergence.measure(g, weighted=True).value == pytest.approx(2.0 * (1 + 5.0) + 7.0)
    del h.edges[(2, "b"), (3, "c")]["weight"]  # one edge without a weight: the graph is unweighted
    assert getattr(from_networkx(h, active=[(3, "c")]), "edge_weight", None) is None


def test_rustworkx_round_trip():
    from emergence.adapters import from_rustworkx, to_rustworkx

    g = emergence.from_edges([(0, 1), (1, 2), (2, 1), (0, 2)], 3, [False, True, False], weights=[1.0, 2.0, 3.0, 4.0],
                             names=["a", "b", "c"], layer=[0, 1, 1])
    back = from_rustworkx(to_rustworkx(g))
    for key in ("edge_index", "active", "edge_weight", "layer"):
        assert torch.equal(getattr(back, key), getattr(g, key)), key
    assert back.names == g.names
    assert emergence.measure(back).value == emergence.measure(g).value


def test_an_edge_list_with_names_reads_without_a_format_flag(tmp_path):
    from emergence.adapters import read_graph

    p = tmp_path / "deps.txt"
    p.write_text("# package dependencies\nnumpy scipy\nscipy numpy\nscipy pandas\n")
    g = read_graph(p, active=["pandas"])
    assert g.names == ["numpy", "scipy", "pandas"] and emergence.measure(g).value == 1


def test_cli_condense_and_max_length_agree_with_the_library(tmp_path):
    import json

    from typer.testing import CliRunner

    from emergence import cli

    p = tmp_path / "g.txt"
    p.write_text("a b\nb c\nc b\nc d\n")
    act = tmp_path / "active.txt"
    act.write_text("b\nc\nd\n")
    run = CliRunner()
    out = run.invoke(cli.app, ["graph", str(p), "--active-nodes", str(act)])
    assert out.exit_code == 1 and "the active nodes form a directed cycle" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    from emergence.adapters import read_graph

    g = read_graph(p, active=["b", "c", "d"])
    out = run.invoke(cli.app, ["graph", str(p), "--active-nodes", str(act), "--condense", "any", "--json"])
    assert json.loads(out.stdout)["emergence"] == emergence.measure(condense(g)).value == 2
    out = run.invoke(cli.app, ["graph", str(p), "--active-nodes", str(act), "--max-length", "3", "--json"])
    assert json.loads(out.stdout)["emergence"] == brute_force_walks(g, 3) == 4


def test_a_long_active_cycle_is_named_in_part():
    n = 20
    g = emergence.from_edges([(i, (i + 1) % n) for i in range(n)], n, [True] * n)
    with pytest.raises(NotADAGError, match=r"-> \.\.\.\), so emergence is infinite.*largest: 20 nodes"):
        emergence.measure(g)
