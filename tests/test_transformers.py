"""Attention and token models: the union rule by hand, GPT-style decoders from every format, token-id and
multi-input models, and reshapes that name the batch size."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_zoo import TOKEN_ZOO, build_tokens
from torch import nn

import emergence
from emergence.adapters.model_files import model_graph

ROOT = Path(__file__).resolve().parent.parent


class OneHead(nn.Module):
    """q, k, v projections of 3 features, one head over the tokens, an output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(3, 3, bias=False) for _ in range(4))
        with torch.no_grad():
            self.q.weight[1, 2] = 0.0  # q1 does not read x2
            self.o.weight[0, 2] = 0.0  # out0 does not read feature 2 of the attention output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), dim=-1)
        return self.o(a @ self.v(x))


def test_one_head_attention_edges_by_hand():
    torch.manual_seed(0)
    mg = model_graph(OneHead().eval(), torch.rand(16, 2, 3))
    assert [(lay.name, lay.units) for lay in mg.layers] == [("input", 3), ("q", 3), ("k", 3), ("v", 3), ("o", 3)]
    x, q, k, v, o = (list(range(3 * i, 3 * i + 3)) for i in range(5))
    expect = {(a, b) for b in q + k + v for a in x} - {(x[2], q[1])}
    # o = softmax(q k^T) v: entry (token, f) depends on every q and k feature (S contracts the features,
    # softmax spans the tokens) and on v's feature f; the projection then reads features f with W_o[j, f] != 0
    for j in range(3):
        for f in range(3):
            if not (j == 0 and f == 2):
                expect |= {(s, o[j]) for s in q + k + [v[f]]}
    got = {tuple(e) for e in mg.graph.edge_index.t().tolist()}
    assert got == expect


def _formats(model, example, folder: Path, dynamic: bool = True) -> dict[str, object]:
    batch = torch.export.Dim("batch")
    shapes = ({0: batch},) if dynamic else None
    out: dict[str, object] = {"module": model}
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=shapes), str(folder / "m.pt2"))
    out["pt2"] = folder / "m.pt2"
    torch.onnx.export(model, (example,), str(folder / "dyn.onnx"), dynamo=True, dynamic_shapes=shapes, verbose=False)
    out["onnx-dynamo"] = folder / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(folder / "ts.onnx"), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}} if dynamic else None)
    out["onnx-torchscript"] = folder / "ts.onnx"
    return out


def _same(a, b):
    ea = a.graph.edge_index[:, torch.argsort(a.graph.edge_index[0] * a.graph.num_nodes + a.graph.edge_index[1])]
    eb = b.graph.edge_index[:, torch.argsort(b.graph.edge_index[0] * b.graph.num_nodes + b.graph.edge_index[1])]
    assert [lay.units for lay in a.layers] == [lay.units for lay in b.layers]
    assert torch.equal(ea, eb)
    assert torch.equal(a.graph.active, b.graph.active)
    assert emergence.measure(a.graph).value == emergence.measure(b.graph).value
    ga, gb = a.at(a.threshold, "logits"), b.at(b.threshold, "logits")  # outputs as units: paths end there too
    assert emergence.measure(ga).value == emergence.measure(gb).value
    wa, wb = emergence.measure(ga, weighted=True).log10, emergence.measure(gb, weighted=True).log10
    assert (wa is None and wb is None) or abs(wa - wb) < 1e-5  # None: E = 0 in both


@pytest.mark.parametrize("name", sorted(TOKEN_ZOO))
def test_token_models_agree_across_formats(name, tmp_path):
    model, shape, vocab = build_tokens(name)
    example = torch.randint(0, vocab, (2, *shape))
    probe = torch.randint(0, vocab, (48, *shape), generator=torch.Generator().manual_seed(1))
    files = _formats(model, example, tmp_path)
    ref = model_graph(files["module"], probe)
    assert ref.layers[0].kind == "Embedding" and ref.layers[0].units == 12  # the table's features are inputs
    assert emergence.measure(ref.graph).value > 0
    for f in files.values():
        _same(model_graph(f, probe), ref)


class IdsAndMask(nn.Module):
    """Token ids and an attention mask: two inputs, as BERT-style encoders take them."""

    def __init__(self, vocab: int = 11, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.emb(ids)).chunk(3, dim=-1)
        s = q @ k.transpose(1, 2) + (1.0 - mask[:, None, :].float()) * -1e4
        return self.out((s.softmax(-1) @ v).mean(1))


def test_multi_input_model_with_random_data_and_the_cli_table(tmp_path):
    torch.manual_seed(0)
    model = IdsAndMask().eval()
    ids, mask = torch.randint(0, 11, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    b = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (ids, mask), dynamic_shapes=({0: b}, {0: b})),
                      str(tmp_path / "enc.pt2"))
    m = emergence.measure_model(tmp_path / "enc.pt2", "random", samples=32)
    assert [r for r in m.layers["layer"]] == ["emb", "qkv", "out"]
    direct = emergence.measure_model(model, (torch.randint(0, 11, (32, 5), generator=torch.Generator()
                                                            .manual_seed(0)), torch.ones(32, 5, dtype=torch.long)))
    assert m.result.num_edges == direct.result.num_edges
    np.savez(tmp_path / "batch.npz", x0=np.random.default_rng(0).integers(0, 11, (20, 5)),
             x1=np.ones((20, 5), dtype=np.int64))
    r = subprocess.run([sys.executable, "-m", "emergence.cli", "measure", str(tmp_path / "enc.pt2"), "--data",
                        str(tmp_path / "batch.npz"), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 20


def test_gpt_per_layer_table_from_the_cli(tmp_path):
    model, shape, vocab = build_tokens("gpt")
    b = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (torch.randint(0, vocab, (2, *shape)),), dynamic_shapes=({0: b},)),
                      str(tmp_path / "gpt.pt2"))
    r = subprocess.run([sys.executable, "-m", "emergence.cli", "measure", str(tmp_path / "gpt.pt2"), "--data", "random",
                        "--samples", "64"], cwd=ROOT, capture_output=True, text=True, env={"COLUMNS": "160",
                                                                                            "PATH": ""})
    assert r.returncode == 0, r.stderr
    for layer in ("wte", "blocks.0.attn.qkv", "blocks.1.fc2", "head"):
        assert layer in r.stdout, r.stdout


class ReshapesBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.b(F.relu(self.a(x)).reshape(n, 2, 3)).sum(1)


def test_a_reshape_that_names_the_batch_size(tmp_path):
    """Exported at batch 4 (torch.export then bakes 4 into the reshape), measured on its own 4 samples."""
    torch.manual_seed(0)
    model = ReshapesBatch().eval()
    x = torch.rand(4, 6)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "fixed.pt2"))
    np.savez(tmp_path / "four.npz", x=x.numpy())
    r = subprocess.run([sys.executable, "-m", "emergence.cli", "measure", str(tmp_path / "fixed.pt2"), "--data",
                        str(tmp_path / "four.npz"), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = model_graph(model, x)
    assert json.loads(r.stdout)["edges"] == ref.graph.num_edges


def test_integer_npz_inputs_stay_integers(tmp_path):
    from emergence.adapters.datasets import load_npz, probe_inputs

    np.savez(tmp_path / "ids.npz", x=np.arange(12, dtype=np.int32).reshape(3, 4))
    x, _ = load_npz(tmp_path / "ids.npz")
    assert x.dtype == torch.int64 and x.tolist()[1] == [4, 5, 6, 7]
    np.savez(tmp_path / "img.npz", x=np.full((2, 4, 4), 255, dtype=np.uint8))
    assert float(load_npz(tmp_path / "img.npz")[0].max()) == 1.0  # images still scaled
    from emergence.adapters.datasets import InputSpec

    ids, mask = probe_inputs("random", samples=8, input_specs=[InputSpec((5,), "int", 11), InputSpec((5,), "int")])
    assert ids.dtype == torch.int64 and int(ids.max()) < 11 and bool((mask == 1).all())


class Einsum(nn.Module):
    """Attention written as einsums (scores contract the features, values contract the tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.einsum("btd,bsd->bts", self.q(x), self.k(x)).softmax(-1)
        return self.o(torch.einsum("bts,bsd->btd", a, self.v(x)))


def test_einsum_attention_equals_the_matmul_form(tmp_path):
    torch.manual_seed(0)
    model = Einsum().eval()
    x = torch.rand(16, 3, 4)
    g = model_graph(model, x)
    files = _formats(model, x[:2], tmp_path)
    for f in files.values():
        _same(model_graph(f, x), g)
    # the same union as q @ k^T and a @ v: every output depends on all q, k features and the v features it reads
    o = g.layers[-1]
    sources = {s for s, d in g.graph.edge_index.t().tolist() if o.offset <= d < o.offset + o.units}
    assert sources == set(range(4, 4 + 18))
