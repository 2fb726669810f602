"""Graph files, igraph and networkx: round trips, and clean refusals of bad files."""

import igraph as ig
import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import emergence
from emergence import FileFormatError, GraphError
from emergence.adapters import from_igraph, from_networkx, read_graph, to_igraph, to_networkx, write_graph
from emergence.testing.strategies import dags

weights = st.floats(-5, 5, allow_nan=False, width=32).filter(lambda w: w != 0)


def _edges(g):
    w = getattr(g, "edge_weight", None)
    ws = w.double().tolist() if w is not None and g.num_edges else [None] * g.num_edges
    rows = zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), ws, strict=True)
    return sorted(rows, key=lambda t: (t[0], t[1], t[2] or 0))


def _same(a, b):
    """Same nodes, mask, layers and multiset of weighted edges (edge order may differ)."""
    assert a.num_nodes == b.num_nodes
    assert torch.equal(a.active, b.active)
    ea, eb = _edges(a), _edges(b)
    assert [e[:2] for e in ea] == [e[:2] for e in eb]
    if getattr(a, "edge_weight", None) is not None and a.num_edges:  # no edges: no weight attribute
        assert [e[2] for e in ea] == pytest.approx([e[2] for e in eb], rel=1e-12)
    if getattr(a, "layer", None) is not None and a.num_nodes:
        assert torch.equal(a.layer, b.layer)


@given(dags(max_nodes=10, weights=weights, layers=3))
def test_igraph_round_trip(g):
    _same(g, from_igraph(to_igraph(g)))


@given(dags(max_nodes=10, weights=weights, layers=3))
def test_networkx_round_trip(g):
    _same(g, from_networkx(to_networkx(g)))


@settings(max_examples=15)
@given(dags(max_nodes=10, weights=weights, layers=3), st.sampled_from(["graphml", "gml"]))
def test_file_round_trip_keeps_graph_and_emergence(tmp_path_factory, g, fmt):
    path = tmp_path_factory.mktemp("rt") / f"g.{fmt}"
    write_graph(g, path)
    h = read_graph(path)
    _same(g, h)
    assert emergence.measure(h).value == emergence.measure(g).value


def test_edge_list_takes_active_nodes_from_a_list(tmp_path):
    g = emergence.from_edges([(0, 1), (1, 2), (0, 2)], 4, [False, True, True, False])
    path = write_graph(g, tmp_path / "g.edges")
    with pytest.raises(GraphError, match="carries no node attributes"):
        read_graph(path)
    h = read_graph(path, active=["1", "2"])
    assert emergence.measure(h).value == emergence.measure(g).value == 3
    with pytest.raises(GraphError, match="'zz' is not a node"):
        read_graph(path, active=["zz"])


def test_custom_attribute_names_and_string_flags(tmp_path):
    path = tmp_path / "g.graphml"
    h = ig.Graph(edges=[(0, 1), (1, 2)], directed=True)
    h.vs["on"] = ["no", "yes", "true"]
    h.es["w"] = [2.0, 3.0]
    h.write_graphml(str(path))
    g = read_graph(path, active_attr="on", weight_attr="w")
    assert g.active.tolist() == [False, True, True]
    assert emergence.measure(g, weighted=True).value == pytest.approx(2.0 + 6.0)
    with pytest.raises(GraphError, match="no node attribute 'active' \\(node attributes: 'on', 'id'\\)"):
        read_graph(path)


@pytest.mark.parametrize(
    "name, content, error, match",
    [
        ("missing.graphml", None, FileFormatError, "no such file"),
        ("g.unknown", "x", FileFormatError, "cannot tell the format"),
        ("g.graphml", "<graphml><graph edgedefault='directed'><node id='a'/>", FileFormatError, "could not read"),
        ("g.graphml", "\x00\x01binary garbage\xff", FileFormatError, "could not read"),
        ("g.gml", "graph [ directed 1 node [ id 0 ] edge [ source 0 target", FileFormatError, "could not read"),
        (
            "g.graphml",
            '<?xml version="1.0"?><!DOCTYPE g [<!ENTITY x SYSTEM "file:///etc/passwd">]><graphml/>',
            FileFormatError,
            "DOCTYPE",
        ),
        ("g.gml", "graph [ node [ id 0 active 1 ] node [ id 1 active 0 ] edge [ source 0 target 1 ] ]",
         GraphError, "undirected"),
        ("g.gml", "graph [ directed 1 node [ id 0 active 2 ] ]", GraphError, "attribute 'active' of node 0 is 2"),
        (
            "g.gml",
            'graph [ directed 1 node [ id 0 active 1 ] node [ id 1 active 1 ] edge [ source 0 target 1 weight "x" ] ]',
            GraphError,
            "non-numeric",
        ),
    ],
)
def test_bad_files_are_refused_cleanly(tmp_path, name, content, error, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(error, match=match):
        read_graph(path)


def test_pickle_format_is_refused(tmp_path):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(FileFormatError, match="unpickling runs arbitrary code"):
        read_graph(path, format="pickle")


def test_write_is_atomic_and_needs_an_existing_folder(tmp_path):
    g = emergence.graph([[0], [1]], 2, [False, True])
    with pytest.raises(FileFormatError, match="does not exist"):
        write_graph(g, tmp_path / "nowhere" / "g.graphml")
    path = write_graph(g, tmp_path / "g.graphml")
    assert [p.name for p in tmp_path.iterdir()] == ["g.graphml"]
    assert read_graph(path).num_nodes == 2


def test_undirected_networkx_is_refused():
    with pytest.raises(GraphError, match="undirected"):
        from_networkx(nx.path_graph(3))
