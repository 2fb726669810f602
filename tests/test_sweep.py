"""A tiny end-to-end sweep, and the guarantee that measuring does not change training."""

import copy
import json

import numpy as np
import pytest
import torch

from emergence.adapters.datasets import Dataset
from emergence.adapters.model_probe import ModelProbe
from emergence.experiments.prune import PruneConfig
from emergence.experiments.sweep import SweepConfig, run_sweep
from emergence.experiments.train import TrainConfig, train


def tiny_data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, :3].mean((1, 2)) > 0.5).long()
    return Dataset("tiny", x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :])


@pytest.mark.parametrize("when", ["init", "after", "iterative"])
def test_tiny_sweep_end_to_end(when):
    cfg = SweepConfig(arch="mlp", arch_params={"widths": [12, 8]}, dataset="tiny", sparsities=(0.0, 0.6),
                      seeds=(0, 1), train=TrainConfig(epochs=2, lr=0.2), thresholds=(0.01, 0.05),
                      probe_samples=32, prune=PruneConfig(when=when, pretrain_epochs=1, fraction=0.3))
    events = []
    ds = run_sweep(cfg, data=tiny_data(), progress=lambda e, **k: events.append(e))
    assert dict(ds.sizes) == {"sparsity": 2, "seed": 2, "epoch": 3, "threshold": 2, "layer": 4}
    assert list(ds.layer.values) == ["input", "1", "3", "5"]
    for v in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert not bool(ds[v].isnull().any()), v
    assert bool((ds.emergence_log10.notnull()).any())
    np.testing.assert_allclose(ds.actual_sparsity.sel(sparsity=0.6).values, 0.6, atol=0.01)
    assert (ds.actual_sparsity.sel(sparsity=0.0).values == 0).all()
    assert bool((ds.n_params.sel(sparsity=0.6) < ds.n_params.sel(sparsity=0.0)).all())
    assert SweepConfig.from_json(ds.attrs["config"]) == cfg
    assert "torch" in json.loads(ds.attrs["versions"])
    assert events[0] == "start" and events[-1] == "done" and events.count("cell") == 4
    frac = ds.active_fraction.values
    assert np.nanmin(frac) >= 0 and np.nanmax(frac) <= 1
    shares = ds.emergence_share.sum("layer").values
    ok = np.isfinite(ds.emergence_log10.values)
    np.testing.assert_allclose(shares[ok], 1.0, atol=1e-9)


def test_sweep_is_reproducible():
    cfg = SweepConfig(arch_params={"widths": [8]}, sparsities=(0.5,), seeds=(3,), train=TrainConfig(epochs=2),
                      thresholds=(0.05,), probe_samples=16)
    a = run_sweep(cfg, data=tiny_data())
    b = run_sweep(cfg, data=tiny_data())
    for v in ("test_accuracy", "train_loss", "emergence_log10", "active_fraction"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_measuring_does_not_change_training():
    data = tiny_data()
    results = []
    for probing in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(  # batch norm and dropout: both behave differently in train mode
            torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.Dropout(0.5), torch.nn.Linear(64, 4))
        probe = ModelProbe(model, data.x_train[:16], [0.05]) if probing else None
        modes = []

        def hook(epoch, model=model, probe=probe, modes=modes):
            if probe is not None:
                probe(model)
            modes.append(model.training)

        torch.manual_seed(123)  # the dropout stream: a probe must not draw from it
        train(model, data.x_train, data.y_train, TrainConfig(epochs=2, batch_size=32),
              generator=torch.Generator().manual_seed(0), on_epoch=hook)
        results.append((copy.deepcopy(model.state_dict()), modes))
    (plain, _), (probed, modes) = results
    for k in plain:
        assert torch.equal(plain[k], probed[k]), k
    assert modes == [True, True, True]  # the model is back in train mode after every probe


def test_sweep_records_the_landscape_where_asked():
    from emergence.experiments.report import summarize
    from emergence.landscape import LandscapeConfig

    cfg = SweepConfig(arch_params={"widths": [8]}, sparsities=(0.0, 0.5), seeds=(0, 1), train=TrainConfig(epochs=2),
                      thresholds=(0.05,), probe_samples=16,
                      landscape=LandscapeConfig(every=0, samples=32, iters=5, trace_samples=3, steps=5))
    ds = run_sweep(cfg, data=tiny_data())
    for v in ("hessian_top", "hessian_trace", "slice_minima", "slice_roughness"):
        assert ds[v].dims == ("sparsity", "seed", "epoch")
        assert bool(ds[v].sel(epoch=2).notnull().all()) and bool(ds[v].sel(epoch=[0, 1]).isnull().all()), v
    assert SweepConfig.from_json(ds.attrs["config"]) == cfg
    rep = summarize(ds)
    c4 = [t for t in rep.claims if t.claim.startswith("C4")]
    assert {t.claim for t in c4} == {"C4 top", "C4 trace", "C4 rough"}
    assert any(t.group == "across runs" and "stratified permutation" in t.estimate.test for t in c4)  # within levels
    assert any(f.startswith("C4 top") for f in rep.findings)
    every = run_sweep(SweepConfig(arch_params={"widths": [8]}, sparsities=(0.0,), seeds=(0,),
                                  train=TrainConfig(epochs=2), thresholds=(0.05,), probe_samples=16,
                                  landscape=LandscapeConfig(every=1, samples=16, iters=3, trace_samples=2,
                                                            steps=3)), data=tiny_data())
    assert bool(every.hessian_top.notnull().all())
