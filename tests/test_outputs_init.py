"""Output-unit rules, emergence from hidden sources, and the emergence-promoting initialization."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from emergence.adapters.architectures import ArchSpec, build
from emergence.adapters.init import emergence_init, weight_layers
from emergence.adapters.model_measure import measure_model
from emergence.errors import ConfigError
from emergence.graph import graph
from emergence.measure import measure


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))


def test_exclude_is_the_logits_count_with_outputs_inactive():
    net, x = _mlp(), torch.rand(64, 1, 4, 4)
    ref = measure_model(net, x, outputs="logits")
    g = ref.model_graph.graph
    out_nodes = ref.model_graph.activity.output
    assert out_nodes.sum() == 4 and bool(out_nodes[-4:].all())  # the last Linear's 4 units
    active = g.active.clone()
    active[out_nodes] = False
    want = measure(graph(g.edge_index, g.num_nodes, active), method="exact")
    got = measure_model(net, x, outputs="exclude")
    assert got.result.value == want.value and got.outputs == "exclude"
    assert got.to_dict()["layers"][-1]["active"] == 0


def test_softmax_rule_ignores_a_shift_of_all_logits_and_logits_rule_does_not():
    net, x = _mlp(1), torch.rand(64, 1, 4, 4)
    before = {o: measure_model(net, x, outputs=o).result.value for o in ("logits", "softmax")}
    with torch.no_grad():
        net[-1].bias += 5.0  # every logit up by 5: no prediction or probability changes
    after = {o: measure_model(net, x, outputs=o).result.value for o in ("logits", "softmax")}
    assert after["softmax"] == before["softmax"]
    assert after["logits"] != before["logits"]


def test_hidden_emergence_is_the_count_without_input_edges():
    net, x = _mlp(2), torch.rand(64, 1, 4, 4)
    x[:, :, :2] = 0  # eight inactive input pixels
    m = measure_model(net, x)
    g = m.model_graph.graph
    inputs = g.layer == 0
    keep = ~inputs[g.edge_index[0]]
    want = measure(graph(g.edge_index[:, keep], g.num_nodes, g.active), method="exact")
    assert m.hidden_log10 == pytest.approx(want.log10, abs=1e-9)
    assert m.result.log10 > m.hidden_log10  # inputs start most of E


def test_output_layers_agree_across_granularity_and_formats(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3))
    x = torch.rand(8, 1, 7, 7)
    torch.onnx.export(net, (x[:2],), tmp_path / "m.onnx", dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    outs = []
    for model, gran in ((net, "channel"), (net, "neuron"), (tmp_path / "m.onnx", "channel")):
        mg = measure_model(model, x, granularity=gran).model_graph
        outs.append([mg.layers[i].name for i in mg.output_layers()])
    assert len(outs[0]) == 1 and outs[0] == outs[1]
    assert len(outs[2]) == 1


def test_emergence_init_scales_by_distance_from_the_middle():
    for n_layers, powers in ((3, [-1, 0, 1]), (4, [-1.5, -0.5, 0.5, 1.5])):
        torch.manual_seed(0)
        net = nn.Sequential(*[nn.Linear(5, 5) for _ in range(n_layers)])
        before = [m.weight.detach().clone() for m in weight_layers(net)]
        bias = [m.bias.detach().clone() for m in weight_layers(net)]
        emergence_init(net, 3.0)
        for m, w, b, k in zip(weight_layers(net), before, bias, powers, strict=True):
            torch.testing.assert_close(m.weight.detach(), w * 3.0 ** k)
            torch.testing.assert_close(m.bias.detach(), b)  # biases untouched
    with pytest.raises(ConfigError, match="alpha must be a finite number > 0"):
        emergence_init(net, 0.0)


def test_build_records_the_init_and_alpha_one_is_the_default():
    spec = ArchSpec("mlp", (1, 4, 4), 3, {"widths": [6, 5]})
    torch.manual_seed(4)
    default = build(spec)
    torch.manual_seed(4)
    one = build(ArchSpec("mlp", (1, 4, 4), 3, {"widths": [6, 5], "init": "emergence", "init_alpha": 1.0}))
    torch.manual_seed(4)
    two = build(ArchSpec("mlp", (1, 4, 4), 3, {"widths": [6, 5], "init": "emergence", "init_alpha": 2.0}))
    for a, b in zip(default.state_dict().values(), one.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    w = [m.weight for m in weight_layers(two)]
    w0 = [m.weight for m in weight_layers(default)]
    torch.testing.assert_close(w[0], w0[0] / 2)
    torch.testing.assert_close(w[2], w0[2] * 2)
    with pytest.raises(ConfigError, match="only applies to --init emergence"):
        build(ArchSpec("mlp", (1, 4, 4), 3, {"init_alpha": 2.0}))


@pytest.mark.parametrize("args, phrase", [
    (["--init-alpha", "2"], "only applies to --init emergence"),
    (["--init", "emergence", "--init-alpha", "-1"], "finite number > 0"),
    (["--outputs", "probs"], "'probs' is not one of"),
])
def test_cli_init_and_outputs_errors_are_one_line(tmp_path, args, phrase):
    r = subprocess.run([sys.executable, "-m", "emergence.cli", "sweep", "--out", str(tmp_path / "s.zarr"), "--epochs",
                        "1", "--seeds", "1", *args], capture_output=True, text=True)
    assert r.returncode == 1 and phrase in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_json_reports_the_output_rule_and_hidden_emergence():
    net, x = _mlp(3), torch.rand(64, 1, 4, 4)
    x[:, :, :2] = 0
    d = measure_model(net, x, outputs="softmax").to_dict()
    assert d["outputs"] == "softmax" and d["emergence_hidden_log10"] == pytest.approx(
        measure_model(net, x, outputs="softmax").hidden_log10)


def test_configs_stored_before_the_option_read_back_as_logits():
    import json

    from emergence.experiments.sweep import SweepConfig

    cfg = SweepConfig(sparsities=(0.0,), seeds=(0,))
    assert cfg.outputs == "exclude"
    old = json.loads(cfg.to_json())
    del old["outputs"]
    assert SweepConfig.from_json(json.dumps(old)).outputs == "logits"
