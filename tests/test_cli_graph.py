"""`emergence graph` through Typer's runner: output formats and clean failures."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from typer.testing import CliRunner

import emergence
from emergence.adapters import write_graph
from emergence.cli import app
from emergence.testing import brute_force_emergence
from emergence.testing.strategies import dags

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "example.graphml"
KEYS = {
    "emergence", "log10_emergence", "relative_emergence", "log10_relative_emergence",
    "exact", "weighted", "nodes", "edges", "active",
}


def _json(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_table_output_on_bundled_example():
    r = runner.invoke(app, ["graph", str(EXAMPLE)])
    assert r.exit_code == 0, r.output
    for text in ("emergence E", "log10 E", "relative emergence", "Top", "in:7", "layer"):
        assert text in r.stdout, r.output


def test_json_is_one_object_with_the_documented_keys():
    out = _json(["graph", str(EXAMPLE), "--json"])
    assert set(out) >= KEYS
    assert out["exact"] is True and isinstance(out["emergence"], int)
    from emergence.adapters import read_graph

    g = emergence.measure(emergence.validate(read_graph(EXAMPLE)))
    assert out["emergence"] == g.value and out["nodes"] == 21


def test_weighted_json():
    out = _json(["graph", str(EXAMPLE), "--json", "--weighted"])
    assert out["weighted"] is True and out["exact"] is False and out["emergence"] > 0


@settings(max_examples=20)
@given(dags(min_nodes=1, max_nodes=12))
def test_cli_agrees_with_exact_count_on_random_dags(tmp_path_factory, g):
    path = write_graph(g, tmp_path_factory.mktemp("cli") / "g.graphml")
    for method in ("exact", "log"):
        out = _json(["graph", str(path), "--json", "--method", method])
        ref = brute_force_emergence(g)
        if method == "exact":
            assert out["emergence"] == ref
        elif ref:
            assert math.isclose(out["log10_emergence"], math.log10(ref), rel_tol=1e-9)
        else:
            assert out["log10_emergence"] is None


def test_deep_graph_overflowing_float64_gives_finite_log10(tmp_path):
    width, depth = 30, 230  # 30^229 ~ 1e338 paths
    g = emergence.from_layers([torch.ones(width, width)] * (depth - 1), [[0] * width] + [[1] * width] * (depth - 1))
    path = write_graph(g, tmp_path / "deep.graphml")
    out = _json(["graph", str(path), "--json", "--method", "log"])
    assert out["emergence"] is None  # beyond float64; the log carries it
    assert math.isfinite(out["log10_emergence"]) and out["log10_emergence"] > 308
    expected = emergence.layered([width] * depth, [0] + [width] * (depth - 1))
    assert math.isclose(out["log10_emergence"], math.log10(expected))
    exact = _json(["graph", str(path), "--json", "--method", "exact"])
    assert exact["emergence"] == emergence.layered([width] * depth, [0] + [width] * (depth - 1))


def test_edge_list_with_active_nodes_file(tmp_path):
    g = emergence.from_edges([(0, 1), (1, 2)], 3, [False, True, True])
    path = write_graph(g, tmp_path / "g.edges")
    listing = tmp_path / "active.txt"
    listing.write_text("1\n2\n")
    out = _json(["graph", str(path), "--json", "--active-nodes", str(listing)])
    assert out["emergence"] == 2


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


CYCLE = "graph [ directed 1 node [ id 0 active 0 ] node [ id 1 active 1 ] node [ id 2 active 1 ] " \
        "edge [ source 0 target 1 ] edge [ source 1 target 2 ] edge [ source 2 target 1 ] ]"
NO_MASK = "graph [ directed 1 node [ id 0 ] node [ id 1 ] edge [ source 0 target 1 ] ]"
BAD_WEIGHT = ('graph [ directed 1 node [ id 0 active 0 ] node [ id 1 active 1 ] '
              'edge [ source 0 target 1 weight "heavy" ] ]')


@pytest.mark.parametrize(
    "name, text, extra, phrase",
    [
        ("missing.graphml", None, [], "no such file"),
        ("broken.graphml", "<graphml><graph", [], "could not read"),
        ("cycle.gml", CYCLE, [], "the active nodes form a directed cycle"),
        ("nomask.gml", NO_MASK, [], "no node attribute 'active'"),
        ("badweight.gml", BAD_WEIGHT, [], "non-numeric"),
        ("noweights.gml", CYCLE.replace("edge [ source 2 target 1 ] ", ""), ["--weighted"], "needs edge weights"),
        ("g.gml", CYCLE.replace("edge [ source 2 target 1 ] ", ""), ["--device", "tpu9"], "device 'tpu9'"),
        ("g.gml", CYCLE.replace("edge [ source 2 target 1 ] ", ""), ["--method", "magic"], "'magic' is not one of"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_is_one_sentence_and_exit_1(tmp_path, name, text, extra, phrase, as_json):
    path = tmp_path / name if text is None else _write(tmp_path, name, text)
    r = runner.invoke(app, ["graph", str(path), *extra, *(["--json"] if as_json else [])])
    assert r.exit_code == 1, r.output
    assert r.stdout == "", r.output  # nothing on stdout, not even with --json
    assert phrase in r.stderr, r.stderr
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_help_explains_the_options():
    r = runner.invoke(app, ["graph", "--help"])
    assert r.exit_code == 0, r.output
    for opt in ("--active-attr", "--weight-attr", "--weighted", "--json", "--device"):
        assert opt in r.output, r.output


def test_debug_shows_the_error_with_the_error_that_caused_it(tmp_path: Path):
    import subprocess
    import sys

    bad = tmp_path / "bad.gml"
    bad.write_text("node 0 1\n")
    plain = subprocess.run([sys.executable, "-m", "emergence.cli", "graph", str(bad)], capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "emergence.cli", "--debug", "graph", str(bad)], capture_output=True,
                           text=True)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "was the direct cause of the following exception" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()
