"""emergence.Monitor: its value equals a fresh measure_model of the model as it is now, whatever happened to it.

Every test trains or edits a real model and compares the monitor's record with ``measure_model`` of the same
model at the same moment, at channel and neuron level: pruning in place, ``torch.nn.utils.prune`` (added,
re-masked, removed), lottery-ticket rewinding, batch-norm scales set to zero, parameters and modules
replaced or added.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

import emergence
from emergence.errors import ConfigError
from emergence.experiments.prune import apply_masks, magnitude_masks

THRESHOLDS = (0.05, 0.0, 0.2)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    c = torch.nn
    return c.Sequential(c.Conv2d(1, 6, 3), c.BatchNorm2d(6), c.ReLU(), c.Conv2d(6, 6, 3), c.ReLU(), c.Flatten(),
                        c.Linear(6 * 4 * 4, 12), c.ReLU(), c.Linear(12, 3))


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return x, (x[:, 0, :4].mean((1, 2)) * 3).long().clamp(max=2)


def _log10(v: float | None) -> float:
    return -math.inf if v is None else v


def assert_fresh(record, model, probe, granularity):
    """The record equals measure_model of ``model`` now, at every threshold, layer by layer."""
    m = emergence.measure_model(model, probe, thresholds=list(THRESHOLDS[1:]), granularity=granularity)
    fresh = [(THRESHOLDS[0], m.result), *m.thresholds]
    for rec, (tau, res) in zip(record.thresholds, fresh, strict=True):
        assert rec.threshold == tau
        assert rec.log10 == pytest.approx(_log10(res.log10), rel=1e-9, abs=1e-12), (tau, record.structure)
        assert rec.relative_log10 == pytest.approx(_log10(res.log10_relative), rel=1e-9, abs=1e-12)
    assert record.hidden_log10 == pytest.approx(_log10(m.hidden_log10), rel=1e-9, abs=1e-12)
    table = m.layers.set_index("layer")
    assert list(record.layers) == list(table.index)
    for layer in record.layers:
        assert record.active_fraction[layer] == pytest.approx(table.loc[layer, "active_fraction"], abs=1e-12)
        assert record.emergence_share[layer] == pytest.approx(table.loc[layer, "share"], abs=1e-9)
    assert record.num_edges == m.model_graph.num_edges


def _train(model, x, y, steps, masks=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 16, i * 16 + 16) % x.shape[0]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if masks:
            apply_masks(model, masks)


@pytest.mark.parametrize("granularity", ["channel", "neuron"])
def test_a_run_that_prunes_twice_matches_fresh_measurements_every_epoch(granularity):
    model, (x, y) = _net(), _data()
    probe = x[:32]
    monitor = emergence.Monitor(model, probe, thresholds=THRESHOLDS, granularity=granularity)
    masks = None
    structures = []
    for epoch in range(7):
        if epoch == 2:  # in-place magnitude pruning, kept after every step
            masks = magnitude_masks(model, 0.5)
            apply_masks(model, masks)
        if epoch == 4:  # torch's pruning: weight -> weight_orig * weight_mask, on top of the zeros
            masks = None
            prune.l1_unstructured(model[3], "weight", amount=0.6)
            prune.l1_unstructured(model[6], "weight", amount=0.6)
        if epoch > 0:
            _train(model, x, y, 3, masks)
        record = monitor(model, epoch=epoch)
        structures.append(record.structure)
        assert_fresh(record, model, probe, granularity)
    assert structures[0] == "export" and structures[2] == "walk" and structures[4] == "export"
    # epoch 1 walks again too: the batch norm's bias and running mean leave their initial zeros (any zero that
    # moves is taken as structural); once trained, nothing moves but the pruning
    assert structures[1] == "walk" and structures[3] == "" and structures[5:] == ["", ""]
    assert monitor.history[-1].sparsity > monitor.history[2].sparsity > 0.49


@pytest.mark.parametrize("granularity", ["channel", "neuron"])
def test_lottery_ticket_rewinding_and_removing_the_reparametrization(granularity):
    model, (x, y) = _net(), _data()
    probe = x[:32]
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    monitor = emergence.Monitor(model, probe, thresholds=THRESHOLDS, granularity=granularity)
    monitor(model)
    _train(model, x, y, 4)
    for name in ("0", "3", "6"):
        prune.l1_unstructured(model.get_submodule(name), "weight", amount=0.5)
    assert_fresh(monitor(model), model, probe, granularity)
    with torch.no_grad():  # rewind the surviving weights to their initial values, keep the masks
        for name in ("0", "3", "6"):
            model.get_submodule(name).weight_orig.copy_(initial[f"{name}.weight"])
    record = monitor(model)
    assert record.structure == ""  # the same zeros: the mask decides them
    assert_fresh(record, model, probe, granularity)
    for name in ("0", "3", "6"):  # a second round: a new mask on top of the first
        prune.l1_unstructured(model.get_submodule(name), "weight", amount=0.3)
    record = monitor(model)
    assert record.structure == "export"  # torch replaces the module's pruning hook by a container of both
    assert_fresh(record, model, probe, granularity)
    for name in ("0", "3", "6"):
        prune.remove(model.get_submodule(name), "weight")
    record = monitor(model)
    assert record.structure == "export"
    assert_fresh(record, model, probe, granularity)


@pytest.mark.parametrize("granularity", ["channel", "neuron"])
def test_batch_norm_slimming_and_replaced_parameters(granularity):
    model, (x, _) = _net(), _data()
    probe = x[:32]
    monitor = emergence.Monitor(model, probe, thresholds=THRESHOLDS, granularity=granularity)
    assert_fresh(monitor(model), model, probe, granularity)
    with torch.no_grad():
        model[1].weight[:3] = 0.0  # network slimming: batch-norm scales to zero remove their channels
    record = monitor(model)
    assert record.structure == "walk"
    assert_fresh(record, model, probe, granularity)
    w = model[6].weight.detach().clone()
    w[:, ::2] = 0.0
    model[6].weight = torch.nn.Parameter(w)  # replaced by assignment, new zeros
    record = monitor(model)
    assert record.structure == "walk"
    assert_fresh(record, model, probe, granularity)
    model[4] = torch.nn.Tanh()  # a module replaced: another forward
    record = monitor(model)
    assert record.structure == "export"
    assert_fresh(record, model, probe, granularity)
    model.append(torch.nn.ReLU())  # a module added
    record = monitor(model)
    assert record.structure == "export"
    assert_fresh(record, model, probe, granularity)


def test_measuring_draws_no_random_numbers_and_leaves_the_model_as_it_was():
    model, (x, _) = _net(), _data()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monitor = emergence.Monitor(model, x[:16])
    state = torch.get_rng_state()
    for _ in range(2):
        monitor(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics included


def test_zero_emergence_is_a_number_for_loggers():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        net[0].bias.fill_(-10.0)  # every hidden unit off: no emergent path
    monitor = emergence.Monitor(net, torch.rand(8, 3))
    record = monitor(net, epoch=0, test_accuracy=0.5)
    assert record.log10 == -math.inf and record.emergence == 0.0
    scalars = record.scalars()
    assert scalars["emergence/E@0.05"] == 0.0 and "emergence/log10@0.05" not in scalars
    assert all(isinstance(v, float) and math.isfinite(v) for v in scalars.values())
    ds = monitor.to_dataset()
    assert np.isneginf(ds["emergence_log10"].values).all()  # the sweep schema's -inf for E = 0 (NaN: not measured)
    assert ds["test_accuracy"].values.item() == 0.5


def test_bad_calls_raise_our_errors():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    monitor = emergence.Monitor(net, torch.rand(4, 3))
    with pytest.raises(ConfigError, match="the monitor has measured nothing"):
        monitor.to_dataset()
    with pytest.raises(ConfigError, match="unknown metric 'acc'"):
        monitor(net, acc=1.0)
    with pytest.raises(ConfigError, match="epoch must be an integer"):
        monitor(net, epoch=-1)
    with pytest.raises(ConfigError, match="threshold 0.3 was not measured"):
        monitor(net).at(0.3)
    with pytest.raises(ConfigError, match="finite"):
        emergence.Monitor(net, torch.rand(4, 3), thresholds=(math.nan,))


def test_graph_entry_points_share_measure_models_defaults():
    """ModelGraph.at, Activity.mask and from_torch judge outputs as measure_model does, at its threshold."""
    from emergence.adapters import from_torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = torch.rand(16, 4)
    m = emergence.measure_model(net, x)
    mg = from_torch(net, x)
    assert torch.equal(mg.graph.active, m.model_graph.graph.active)
    assert torch.equal(mg.at().active, m.model_graph.graph.active)
    assert torch.equal(mg.activity.mask(), m.model_graph.graph.active)
    assert emergence.measure(mg.at()).log10 == pytest.approx(m.result.log10)
    assert not bool(mg.at().active[mg.activity.output].any())  # outputs excluded, as measure_model does


def test_every_signature_uses_the_library_defaults():
    import inspect

    from emergence import cli
    from emergence.activity import ModelGraph
    from emergence.adapters import model_files, model_measure, model_probe, onnx_model, torch_model
    from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
    from emergence.experiments import monitor, plot, report, robustness, sweep

    want = {"threshold": DEFAULT_THRESHOLD, "outputs": DEFAULT_OUTPUTS, "aggregation": DEFAULT_AGGREGATION}
    seen = 0
    for mod in (model_files, model_measure, model_probe, onnx_model, torch_model, monitor, plot, report, robustness,
                sweep):
        for name, obj in vars(mod).items():
            targets = [obj] if inspect.isfunction(obj) else \
                [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else []
            for f in targets:
                for p in inspect.signature(f).parameters.values():
                    if p.name in want and p.default not in (inspect.Parameter.empty, None):  # None: inherited
                        assert p.default == want[p.name], f"{mod.__name__}.{name}: {p.name}={p.default!r}"
                        seen += 1
    for f in (ModelGraph.at, emergence.Activity.mask):
        for p in inspect.signature(f).parameters.values():
            if p.name in want:
                assert p.default == want[p.name]
                seen += 1
    assert seen > 20
    for command in cli.app.registered_commands:
        for p in inspect.signature(command.callback).parameters.values():
            if p.name in want:
                default = getattr(p.default, "value", p.default)
                assert default == want[p.name], f"emergence {command.callback.__name__} --{p.name}"


def test_report_and_plot_read_a_monitors_history(tmp_path):
    from typer.testing import CliRunner

    from emergence import cli
    from emergence.experiments.results import open_results, save_results

    model, (x, y) = _net(), _data()
    monitor = emergence.Monitor(model, x[:32], thresholds=(0.05, 0.1))
    for epoch in range(4):
        if epoch:
            _train(model, x, y, 2)
        with torch.no_grad():
            loss = float(torch.nn.functional.cross_entropy(model(x), y))
        monitor(model, epoch=epoch, train_loss=loss, test_loss=loss)
    path = save_results(monitor.to_dataset(sparsity=0.0, seed=3, attrs={"dataset": "toy"}), tmp_path / "run.nc")
    back = open_results(path)
    assert back["emergence_log10"].sel(seed=3, threshold=0.05).values.tolist()[0] == pytest.approx(
        [r.log10 for r in monitor.history])
    runner = CliRunner()
    out = runner.invoke(cli.app, ["report", str(path), "--markdown", str(tmp_path / "r.md")])
    assert out.exit_code == 0, out.output
    assert "toy" in (tmp_path / "r.md").read_text()
    out = runner.invoke(cli.app, ["plot", str(path), "--out", str(tmp_path / "fig")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "fig" / "emergence_vs_epoch.png").stat().st_size > 1000


@pytest.mark.parametrize("fraction", [0.05, 0.6])  # zeros kept as positions, or as a mask
def test_zeros_that_move_at_the_same_sparsity_are_seen(fraction):
    """Dynamic sparse training (RigL, SET) moves zeros and keeps their number: the count must notice."""
    model, (x, _) = _net(), _data()
    w = model[6].weight
    order = torch.randperm(w.numel(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w.view(-1)[order[: int(fraction * w.numel())]] = 0
    monitor = emergence.Monitor(model, x[:32], thresholds=THRESHOLDS)
    monitor(model)
    with torch.no_grad():
        flat = w.view(-1)
        zero, alive = (flat == 0).nonzero()[0], (flat != 0).nonzero()[0]
        flat[zero], flat[alive] = 1.0, 0.0  # one zero moves; as many zeros as before
    record = monitor(model)
    assert record.structure == "walk"
    assert_fresh(record, model, x[:32], "channel")
