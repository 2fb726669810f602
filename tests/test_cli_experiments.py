"""`emergence sweep`, `plot`, `report` and the reproduction pipeline."""

import numpy as np
import pytest
from test_sweep import tiny_data
from typer.testing import CliRunner

from emergence.cli import app
from emergence.experiments.reproduce import reproduce
from emergence.experiments.results import open_results
from emergence.experiments.sweep import SweepConfig
from emergence.experiments.train import TrainConfig

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    data = tiny_data()
    x = (np.concatenate([data.x_train, data.x_test])[:, 0] * 255).round().astype(np.uint8)
    y = np.concatenate([data.y_train, data.y_test])
    np.savez(d / "tiny.npz", x=x, y=y)
    out = d / "run.nc"
    r = runner.invoke(app, ["sweep", "--dataset", str(d / "tiny.npz"), "--arch", "mlp", "--arch-params",
                            '{"widths": [10, 6]}', "--sparsity", "0,0.5", "--seeds", "2", "--epochs", "2",
                            "--probe-samples", "24", "--thresholds", "0.02,0.05", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "cells" in r.stderr and r.stdout == "", r.output  # progress on stderr only
    return d, out


def test_sweep_writes_a_readable_result(run):
    _, out = run
    ds = open_results(out)
    assert dict(ds.sizes) == {"sparsity": 2, "seed": 2, "epoch": 3, "threshold": 2, "layer": 4}
    assert ds.attrs["dataset"].endswith("tiny.npz")


def test_quiet_sweep_prints_no_progress(run, tmp_path):
    d, _ = run
    r = runner.invoke(app, ["sweep", "--dataset", str(d / "tiny.npz"), "--arch-params", '{"widths": [4]}',
                            "--sparsity", "0.5", "--seeds", "1", "--epochs", "1", "--quiet", "--prune-at",
                            "iterative", "--out", str(tmp_path / "q.nc")])
    assert r.exit_code == 0, r.output
    assert "cells" not in r.stderr and "wrote" in r.stderr, r.output


def test_plot_writes_pngs(run, tmp_path):
    _, out = run
    r = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["accuracy_vs_epoch.png", "active_fraction.png", "emergence_vs_epoch.png",
                     "gain_vs_emergence.png", "relative_emergence_vs_epoch.png", "threshold_sensitivity.png"]
    assert all((tmp_path / "figs" / n).read_bytes()[:8] == PNG for n in names)


def test_report_prints_tables_and_writes_markdown(run, tmp_path):
    _, out = run
    md = tmp_path / "report.md"
    r = runner.invoke(app, ["report", str(out), "--markdown", str(md)])
    assert r.exit_code == 0, r.output
    for text in ("final accuracy", "Spearman", "Pearson", "pooled", "Findings", "relative"):
        assert text in r.stdout, r.output
    assert "| pooled |" in md.read_text()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["sweep", "--out", "{d}/x.nc", "--arch", "resnet"], "'resnet' is not one of"),
        (["sweep", "--out", "{d}/x.nc", "--sparsity", "0,1.2"], "sparsities must be in [0, 1)"),
        (["sweep", "--out", "{d}/x.nc", "--arch-params", "{widths"], "--arch-params must be a JSON object"),
        (["sweep", "--out", "{d}/x.nc", "--arch-params", '{"depth": 3}'], "does not take these parameters"),
        (["sweep", "--out", "{d}/x.nc", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["sweep", "--out", "{d}/x.nc", "--optimizer", "lbfgs"], "'lbfgs' is not one of"),
        (["sweep", "--out", "{d}/x.nc", "--prune-at", "never"], "'never' is not one of"),
        (["sweep", "--out", "{d}/nowhere/x.nc", "--dataset", "{d}/tiny.npz", "--epochs", "0", "--seeds", "1",
          "--sparsity", "0", "--quiet"], "does not exist"),
        (["report", "{d}/missing.nc"], "no such file"),
        (["report", "{d}/tiny.npz"], "could not read 'tiny.npz' as NetCDF"),
        (["plot", "{d}/missing.nc", "--out", "{d}/figs"], "no such file"),
    ],
)
def test_bad_input_is_one_sentence(run, args, phrase):
    d, _ = run
    r = runner.invoke(app, [a.replace("{d}", str(d)) for a in args])
    assert r.exit_code == 1, r.output
    assert phrase in r.stderr and "Traceback" not in r.output, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_reproduce_pipeline_writes_results_figures_and_report(tmp_path, monkeypatch):
    import emergence.experiments.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "load_dataset", lambda name: tiny_data())
    cfgs = [SweepConfig(arch_params={"widths": [6]}, dataset=name, sparsities=(0.0, 0.5), seeds=(0,),
                        train=TrainConfig(epochs=1), thresholds=(0.05,), probe_samples=16)
            for name in ("mnist", "fashion-mnist")]
    extra = dict(arch_params={"widths": [6]}, dataset="mnist", sparsities=(0.0, 0.5), seeds=(0, 1),
                 thresholds=(0.0, 0.05, 0.1), probe_samples=16)
    grid = [("mnist-sgd", SweepConfig(**extra, train=TrainConfig(epochs=2),
                                      grid=(("prune_at", ("init", "after")),)))]
    init = [("mnist", SweepConfig(**{**extra, "arch_params": {"widths": [6], "init": "emergence"}},
                                  train=TrainConfig(epochs=2), grid=(("init_alpha", (1.0, 2.0)),)))]
    done = reproduce(tmp_path / "out", configs=cfgs, robustness=grid, inits=init)
    assert [p.name for p in done.results] == ["mnist.nc", "fashion-mnist.nc", "mnist-sgd.nc", "mnist.nc"]
    assert len(done.figures) == 12 and all(p.read_bytes()[:8] == PNG for p in done.figures)
    text = done.report.read_text()
    assert text.count("### Findings") == 2 and "![accuracy](mnist/accuracy_vs_epoch.png)" in text
    assert "## Robustness: each claim's verdict per setting" in text and "mnist-sgd, prune_at=after" in text
    assert "## Emergence-promoting initialization" in text and "alpha minus default" in text


LANDSCAPE_KEYS = {"hessian_top", "hessian_trace", "hessian_trace_stderr", "slice_minima", "slice_roughness"}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import torch

    from emergence.adapters.architectures import ArchSpec, build, save_model

    d = tmp_path_factory.mktemp("land")
    spec = ArchSpec("mlp", (1, 28, 28), 10, {"widths": [16]})
    torch.manual_seed(0)
    model = build(spec)
    save_model(model, spec, d / "m.pt")
    x = torch.rand(2, 1, 28, 28)
    torch.export.save(torch.export.export(model, (x,)), str(d / "m.pt2"))
    torch.onnx.export(model, (x,), str(d / "m.onnx"), dynamo=True, verbose=False)
    return d


@pytest.mark.parametrize("name", ["m.pt", "m.pt2"])
def test_landscape_json_and_plots(saved_model, tmp_path, name):
    import json

    r = runner.invoke(app, ["landscape", str(saved_model / name), "--data", "mnist", "--samples", "64", "--iters",
                            "10", "--trace-samples", "4", "--steps", "7", "--json", "--plot", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out) >= LANDSCAPE_KEYS and out["samples"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landscape_1d.png", "landscape_2d.png"]
    assert all(p.read_bytes()[:8] == PNG for p in tmp_path.iterdir())


def test_landscape_shows_a_bar_per_probe_on_stderr_unless_quiet(saved_model):
    args = ["landscape", str(saved_model / "m.pt"), "--data", "mnist", "--samples", "32", "--iters", "5",
            "--trace-samples", "3", "--steps", "5", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    for stage in ("top eigenvalue", "trace", "1-D slice"):
        assert stage in r.stderr, r.stderr
    assert "3/3" in r.stderr and "5/5" in r.stderr
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == r.stdout


def test_landscape_table(saved_model):
    r = runner.invoke(app, ["landscape", str(saved_model / "m.pt"), "--data", "mnist", "--samples", "32",
                            "--iters", "5", "--trace-samples", "3", "--steps", "5"])
    assert r.exit_code == 0, r.output
    assert "top Hessian eigenvalue" in r.stdout and "Hessian trace" in r.stdout, r.output


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["{m}/m.onnx", "--data", "mnist"], "ONNX models cannot be differentiated"),
        (["{m}/m.pt", "--data", "random"], "a random batch has none"),
        (["{m}/missing.pt", "--data", "mnist"], "no such file"),
        (["{m}/m.pt", "--data", "mnist", "--steps", "2"], "landscape settings"),
    ],
)
def test_landscape_bad_input(saved_model, args, phrase):
    r = runner.invoke(app, ["landscape", *[a.replace("{m}", str(saved_model)) for a in args], "--json"])
    assert r.exit_code == 1, r.output
    assert r.stdout == "" and phrase in r.stderr and "Traceback" not in r.output, r.output


def test_e_zero_is_marked_on_the_figures_not_dropped(run, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import emergence.experiments.plot as P

    fig, ax = plt.subplots()
    assert P._zero_marks(ax, np.array([0, 1, 2]), np.array([[1.0, np.nan, 2.0], [1.5, 2.0, np.nan]]), "k")
    (line,) = ax.lines
    assert line.get_marker() == "v" and list(line.get_xdata()) == [1, 2]
    assert not P._zero_marks(ax, np.arange(3), np.ones((2, 3)), "k")
    plt.close(fig)

    _, out = run
    ds = open_results(out).load()
    for var in ("emergence_log10", "relative_emergence_log10"):  # sparsity 0.5, seed 0, epoch 0: E = 0
        ds[var][1, 0, 0, :] = np.nan
    legends: dict[str, list[str]] = {}
    save = P.save_figure

    def record(fig, path):
        legends[path.name] = [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
        return save(fig, path)

    monkeypatch.setattr(P, "save_figure", record)
    P.plot_sweep(ds, tmp_path / "figs")
    for name in ("emergence_vs_epoch.png", "relative_emergence_vs_epoch.png", "threshold_sensitivity.png"):
        assert P._ZERO_LABEL in legends[name], (name, legends[name])
    assert any("E = 0 at epoch t" in t for t in legends["gain_vs_emergence.png"])
    assert P._ZERO_LABEL not in legends["accuracy_vs_epoch.png"]
