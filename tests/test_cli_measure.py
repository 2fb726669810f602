"""`emergence measure` through Typer's runner."""

import json

import numpy as np
import pytest
import torch
from model_zoo import build
from typer.testing import CliRunner

from emergence.adapters import read_graph
from emergence.adapters.architectures import ArchSpec, save_model
from emergence.adapters.architectures import build as build_arch
from emergence.cli import app

runner = CliRunner()
GRAPH_KEYS = {"emergence", "log10_emergence", "relative_emergence", "log10_relative_emergence", "exact",
              "weighted", "nodes", "edges", "active"}
LAYER_KEYS = {"layer", "kind", "units", "active", "active_fraction", "edges", "log10_emergence", "share"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model, shape = build("rescnn")
    x = torch.rand(2, *shape)
    dyn = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dyn), str(d / "res.pt2"))
    torch.onnx.export(model, (x,), str(d / "res.onnx"), dynamo=True, dynamic_shapes=dyn, verbose=False)
    torch.save(model, d / "whole.pt")
    spec = ArchSpec("mlp", (1, 8, 8), 3, {"widths": [16, 8]})
    torch.manual_seed(0)
    save_model(build_arch(spec), spec, d / "mlp.pt")
    np.savez(d / "batch.npz", x=np.random.default_rng(0).random((40, *shape), dtype=np.float32))
    np.savez(d / "wrong.npz", x=np.zeros((4, 3, 5, 5), dtype=np.float32))
    (d / "junk.onnx").write_bytes(b"\x01\x02 not onnx")
    return d


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


def test_table_lists_layers_and_totals(files):
    r = _ok(["measure", str(files / "res.pt2"), "--data", str(files / "batch.npz")])
    for text in ("layer", "units", "active", "edges", "share", "stem", "Conv2d", "Linear", "Total",
                 "relative emergence"):
        assert text in r.stdout, r.output


def test_json_has_graph_keys_layers_and_thresholds(files):
    r = _ok(["measure", str(files / "res.onnx"), "--data", str(files / "batch.npz"), "--json",
             "--thresholds", "0.01,0.05,0.2"])
    out = json.loads(r.stdout)
    assert set(out) >= GRAPH_KEYS
    assert [lay["kind"] for lay in out["layers"]][:2] == ["input", "Conv2d"]
    assert all(set(lay) >= LAYER_KEYS for lay in out["layers"])
    assert [t["threshold"] for t in out["thresholds"]] == [0.01, 0.05, 0.2]
    assert out["thresholds"][1]["emergence"] == out["emergence"]
    assert sum(lay["units"] for lay in out["layers"]) == out["nodes"]


def test_pt2_and_onnx_agree_through_the_cli(files):
    a = json.loads(_ok(["measure", str(files / "res.pt2"), "--data", str(files / "batch.npz"), "--json"]).stdout)
    b = json.loads(_ok(["measure", str(files / "res.onnx"), "--data", str(files / "batch.npz"), "--json"]).stdout)
    for key in ("emergence", "nodes", "edges", "active"):
        assert a[key] == b[key], key


def test_builtin_state_dict_with_random_batch_and_save_graph(files, tmp_path):
    out = tmp_path / "g.graphml"
    r = _ok(["measure", str(files / "mlp.pt"), "--data", "random", "--samples", "16", "--json",
             "--save-graph", str(out)])
    res = json.loads(r.stdout)
    g = read_graph(out)
    assert g.num_nodes == res["nodes"] == 64 + 16 + 8 + 3 and g.num_edges == res["edges"]
    assert int(g.active.sum()) == res["active"] and g.layer.max() == 3
    assert "activity" in out.read_text()
    pt = tmp_path / "g.pt"
    _ok(["measure", str(files / "mlp.pt"), "--data", "random", "--samples", "16", "--save-graph", str(pt), "--json"])
    h = read_graph(pt)
    assert torch.equal(h.edge_index, g.edge_index) and torch.equal(h.active, g.active)


def test_trusted_pickle_needs_the_flag(files):
    r = runner.invoke(app, ["measure", str(files / "whole.pt"), "--data", str(files / "batch.npz")])
    assert r.exit_code == 1 and "--trust-pickle" in r.stderr, r.output
    _ok(["measure", str(files / "whole.pt"), "--data", str(files / "batch.npz"), "--trust-pickle", "--json"])


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["missing.onnx"], "no such file"),
        (["junk.onnx"], "ONNX"),
        (["res.pt2", "--data", "wrong.npz"], "but the model takes (1, 16, 16)"),
        (["res.pt2", "--data", "nosuchdata"], "neither a bundled dataset"),
        (["res.pt2", "--aggregation", "median"], "'median' is not one of"),
        (["res.pt2", "--thresholds", "0.1,abc"], "--thresholds takes numbers"),
        (["res.pt2", "--samples", "0"], "samples must be at least 1"),
        (["whole.pt"], "--trust-pickle"),
    ],
)
def test_bad_input_is_one_sentence(files, args, phrase):
    argv = ["measure", str(files / args[0])] + [str(files / a) if a.endswith(".npz") else a for a in args[1:]]
    argv += [] if "--data" in args else ["--data", "random"]
    r = runner.invoke(app, [*argv, "--json"])
    assert r.exit_code == 1, r.output
    assert r.stdout == "" and phrase in r.stderr, r.output
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_measure_without_data_names_data_random(files):
    r = runner.invoke(app, ["measure", str(files / "res.pt2")])
    assert r.exit_code == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "--data random" in r.stderr, r.stderr
