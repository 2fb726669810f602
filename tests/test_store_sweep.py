"""Durable, resumable, distributed sweeps: real Zarr stores, real SIGKILLs, real Dask schedulers and workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emergence import ConfigError
from emergence.experiments.grid import GRID_AXES, parse_grid
from emergence.experiments.runner import run_stored_sweep
from emergence.experiments.store import STATUS, StoreLock, SweepStore
from emergence.experiments.sweep import SweepConfig, empty_sweep
from emergence.experiments.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def _args(npz, out, *extra, epochs=2, seeds=2, sparsity="0,0.5", widths="[16]"):
    return ["sweep", "--dataset", str(npz), "--arch-params", f'{{"widths": {widths}}}', "--sparsity", sparsity,
            "--seeds", str(seeds), "--epochs", str(epochs), "--probe-samples", "32", "--thresholds", "0.02,0.05",
            "--out", str(out), "--quiet", *extra]




def _results(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mid-creation, the consolidated metadata may not be there yet
        with xr.open_zarr(path) as ds:
            return ds.load()



def test_sigkill_then_rerun_loses_nothing_and_recomputes_nothing(npz, tmp_path, run_cli, science):
    whole = tmp_path / "whole.zarr"
    assert run_cli(_args(npz, whole, epochs=4, seeds=3)).returncode == 0
    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "emergence.cli", *_args(npz, killed, epochs=4, seeds=3)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    status = None
    while time.time() < deadline and proc.poll() is None:
        try:
            status = _results(killed)["status"].values
        except Exception:  # the store is still being created
            status = None
        if status is not None and (status == STATUS["done"]).any():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mid = _results(killed)  # a store opened mid-sweep is a valid Dataset
    assert (mid["status"] == STATUS["done"]).any() and (mid["status"] == STATUS["pending"]).any(), \
        "the kill must land mid-sweep"
    done_before = mid["status"].values == STATUS["done"]
    finished_before = mid["cell_finished_at"].values[done_before]
    # A cell is written data first, status last: the kill may land inside one cell's write (one worker, so at
    # most one cell). That cell is not done and is computed again; every other unfinished cell is untouched.
    in_flight = ~done_before & ~np.isnan(mid["test_accuracy"].values).all(-1)
    assert in_flight.sum() <= 1
    assert np.isnan(mid["test_accuracy"].values[~done_before & ~in_flight]).all()
    assert run_cli(_args(npz, killed, epochs=4, seeds=3)).returncode == 0  # the same command resumes
    after, ref = _results(killed), _results(whole)
    xr.testing.assert_identical(science(after).drop_attrs(), science(ref).drop_attrs())
    assert (after["status"] == STATUS["done"]).all()
    assert (after["cell_runs"].values[~in_flight] == 1).all(), "no finished or untouched cell was computed twice"
    assert (after["cell_runs"].values[in_flight] <= 2).all()
    np.testing.assert_array_equal(after["cell_finished_at"].values[done_before], finished_before)


def test_workers_1_and_2_are_bitwise_identical(npz, tmp_path, run_cli, science):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    assert run_cli(_args(npz, one, "--workers", "1")).returncode == 0
    r = run_cli(_args(npz, two, "--workers", "2"))
    assert r.returncode == 0, r.stderr
    a, b = science(_results(one)), science(_results(two))
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_a_killed_worker_is_replaced_and_its_cell_rerun(npz, tmp_path):
    from distributed import Client, LocalCluster

    cfg = SweepConfig(arch_params={"widths": [32]}, dataset=str(npz), sparsities=(0.0, 0.5), seeds=(0, 1),
                      train=TrainConfig(epochs=25), thresholds=(0.05,), probe_samples=32)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        outcome = {}
        t = threading.Thread(target=lambda: outcome.update(r=run_stored_sweep(
            cfg, tmp_path / "w.zarr", scheduler=cluster.scheduler_address)))
        t.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        busy = next(w for w, tasks in client.processing().items() if tasks)
        time.sleep(0.5)  # well inside the cell
        pid = client.run(os.getpid, workers=[busy])[busy]
        os.kill(pid, signal.SIGKILL)
        t.join(300)
    assert not t.is_alive()
    r = outcome["r"]
    assert r.failed == [] and r.pending == 0 and r.ran == 4
    assert (_results(tmp_path / "w.zarr")["status"] == STATUS["done"]).all()


def test_sweep_on_a_separately_started_scheduler_and_worker(npz, tmp_path, run_cli, science):
    sf = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    dask_cli = Path(sys.executable).parent / "dask"  # the `dask` command of this environment
    dask = [str(dask_cli), "scheduler"]
    sched = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sf),
                              "--dashboard-address", ":0"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.time() + 60
        while not sf.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(sf.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = subprocess.Popen([str(dask_cli), "worker", address, "--nthreads", "1",
                                   "--host", "127.0.0.1", "--no-dashboard"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = tmp_path / "remote.zarr"
        r = run_cli(_args(npz, out, "--scheduler", address, seeds=1), timeout=300)
        assert r.returncode == 0, r.stderr
        ds = _results(out)
        assert (ds["status"] == STATUS["done"]).all() and ds["test_accuracy"].notnull().all()
        local = tmp_path / "local.zarr"
        assert run_cli(_args(npz, local, seeds=1)).returncode == 0
        xr.testing.assert_identical(science(ds).drop_attrs(), science(_results(local)).drop_attrs())
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                p.wait(30)


def test_a_store_of_another_config_is_refused_in_one_line(npz, tmp_path, run_cli):
    out = tmp_path / "a.zarr"
    assert run_cli(_args(npz, out, epochs=1, seeds=1)).returncode == 0
    r = run_cli(_args(npz, out, "--lr", "0.01", epochs=1, seeds=1))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "train.lr: stored 0.1, asked 0.01" in r.stderr and "--overwrite" in r.stderr
    r = run_cli(_args(npz, out, "--lr", "0.01", "--overwrite", epochs=1, seeds=1))
    assert r.returncode == 0, r.stderr
    assert json.loads(_results(out).attrs["config"])["train"]["lr"] == 0.01


def test_a_second_sweep_on_a_locked_store_is_refused_and_a_killed_holder_leaves_no_lock(npz, tmp_path, run_cli):
    out = tmp_path / "l.zarr"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom emergence.experiments.store import "
                               "StoreLock\nwith StoreLock(sys.argv[1]):\n    print('locked', flush=True)\n"
                               "    time.sleep(600)\n", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = run_cli(_args(npz, out, epochs=1, seeds=1))
        assert r.returncode == 1 and f"another sweep (pid {holder.pid})" in r.stderr, r.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with StoreLock(out):  # the kernel released it with the process
        pass
    assert run_cli(_args(npz, out, epochs=1, seeds=1)).returncode == 0


def test_a_failing_cell_is_recorded_and_the_others_finish(npz, tmp_path, run_cli):
    out = tmp_path / "f.zarr"
    args = _args(npz, out, "--grid", "lr=0.1,1e12", epochs=2, seeds=1, sparsity="0")
    r = run_cli(args)
    assert r.returncode == 1
    assert "1 cells failed: lr=1e+12 sparsity=0 seed=0 (training diverged" in r.stderr, r.stderr
    ds = _results(out)
    assert ds["status"].sel(lr=0.1).item() == STATUS["done"]
    assert ds["status"].sel(lr=1e12).item() == STATUS["failed"]
    assert "training diverged" in str(ds["error"].sel(lr=1e12).item())
    assert ds["test_accuracy"].sel(lr=0.1).notnull().all()
    assert run_cli(args).returncode == 1 and _results(out)["cell_runs"].sel(lr=1e12).item() == 1  # not retried
    assert run_cli([*args, "--retry-failed"]).returncode == 1
    again = _results(out)
    assert again["cell_runs"].sel(lr=1e12).item() == 2 and again["cell_runs"].sel(lr=0.1).item() == 1


def test_netcdf_out_is_written_from_the_store_and_resumes_alike(npz, tmp_path, run_cli):
    out = tmp_path / "r.nc"
    assert run_cli(_args(npz, out, epochs=1, seeds=1)).returncode == 0
    store = Path(f"{out}.zarr")
    assert out.is_file() and store.is_dir()
    xr.testing.assert_identical(xr.load_dataset(out), _results(store))
    r = run_cli(_args(npz, out, epochs=1, seeds=1))
    assert r.returncode == 0 and "(0 run now, 2 before)" in r.stderr
    store_runs = _results(store)["cell_runs"].values.copy()
    import shutil

    shutil.rmtree(store)  # the .nc alone still resumes (nothing to run)
    r = run_cli(_args(npz, out, epochs=1, seeds=1))
    assert r.returncode == 0 and "(0 run now, 2 before)" in r.stderr, r.stderr
    np.testing.assert_array_equal(xr.load_dataset(out)["cell_runs"].values, store_runs)
    r = run_cli(_args(npz, out, "--lr", "0.05", epochs=1, seeds=1))
    assert r.returncode == 1 and "another config (train.lr" in r.stderr


def test_bad_sweep_options_are_one_line(npz, tmp_path, run_cli):
    for extra, phrase in ((["--grid", "depth=1,2"], "unknown grid axis 'depth'"),
                          (["--grid", "lr"], "--grid takes KEY=V1,V2"),
                          (["--grid", "lr=0.1,0.1"], "repeats a value"),
                          (["--grid", "sparsity=0.1"], "have options of their own"),
                          (["--workers", "0"], "workers must be at least 1")):
        r = run_cli(_args(npz, tmp_path / "x.zarr", *extra, epochs=1, seeds=1))
        assert r.returncode == 1 and phrase in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_cli(_args(npz, tmp_path / "x.csv", epochs=1, seeds=1))
    assert r.returncode == 1 and "--out must end in .zarr" in r.stderr


grid_values = {
    "width": st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]), min_size=1, max_size=3, unique=True),
    "lr": st.lists(st.floats(1e-4, 1.0, allow_nan=False), min_size=1, max_size=3, unique=True),
    "optimizer": st.lists(st.sampled_from(["sgd", "adam"]), min_size=1, max_size=2, unique=True),
    "batch_size": st.lists(st.integers(1, 512), min_size=1, max_size=3, unique=True),
    "prune_at": st.lists(st.sampled_from(["init", "after", "iterative"]), min_size=1, max_size=3, unique=True),
}


@st.composite
def grids(draw):
    keys = draw(st.lists(st.sampled_from(sorted(grid_values)), max_size=3, unique=True))
    return tuple((k, tuple(draw(grid_values[k]))) for k in keys)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grid=grids(), filled=st.integers(0, 2**16))
def test_any_grid_round_trips_through_the_store(tmp_path, grid, filled):
    cfg = SweepConfig(arch_params={"widths": [4]}, sparsities=(0.0, 0.5), seeds=(0,), train=TrainConfig(epochs=1),
                      thresholds=(0.05,), grid=grid)
    store = SweepStore.create(tmp_path / f"g{filled}.zarr", empty_sweep(cfg, ["input", "1"], {"config":
                                                                                             cfg.to_json()}),
                              cfg.cell_dims)
    cells = list(cfg.indices())
    rng = np.random.default_rng(filled)
    from emergence.experiments.cell import CellResult

    for index in [cells[i] for i in rng.permutation(len(cells))[: rng.integers(0, len(cells) + 1)]]:
        store.write(CellResult(index, {"test_accuracy": rng.random(2)}, ["input", "1"], None, 1.0,
                               {"train": 1.0, "probe": 0.1, "epochs": 1, "probes": 2, "landscape": 0.0}))
    ds = _results(store.path)  # mid-sweep: a valid Dataset
    assert SweepConfig.from_json(ds.attrs["config"]) == cfg
    assert ds["test_accuracy"].dims == (*cfg.cell_dims, "epoch")
    for key, values in grid:
        assert list(ds[key].values) == list(values)
    done = ds["status"].values == STATUS["done"]
    assert np.isfinite(ds["test_accuracy"].values[done]).all() and np.isnan(ds["test_accuracy"].values[~done]).all()
    reopened = SweepStore.open(store.path, cfg.to_json(), cfg.cell_dims)
    np.testing.assert_array_equal(reopened.status(), ds["status"].values)


def test_grid_parsing_and_every_key_applies():
    assert parse_grid(["width=0.5,1", "optimizer=sgd,adam"]) == (("width", (0.5, 1.0)), ("optimizer", ("sgd", "adam")))
    for key, axis in GRID_AXES.items():
        value = {"str": {"optimizer": "adam", "prune_at": "after", "prune_scope": "global",
                         "prune_structure": "structured"}.get(key), "float": 0.3, "int": 3}[axis.kind.__name__]
        params = {"init": "emergence"} if key == "init_alpha" else {}
        cfg = SweepConfig(grid=((key, (value,)),), sparsities=(0.5,), seeds=(0,), arch_params=params)
        from emergence.experiments.cell import _cell_settings

        one, _, _ = _cell_settings(cfg, (0, 0, 0))
        section = {"train": one.train, "prune": one.prune}.get(axis.section)
        got = one.arch_params[axis.field] if axis.section == "arch" else getattr(section, axis.field)
        assert got == value, key
    with pytest.raises(ConfigError, match="optimizer must be"):
        SweepConfig(grid=(("optimizer", ("sgd", "lbfgs")),))
    with pytest.raises(ConfigError, match="only applies to --init emergence"):
        SweepConfig(grid=(("init_alpha", (1.0, 2.0)),))


def test_width_axis_end_to_end(npz, tmp_path, run_cli):
    out = tmp_path / "size.zarr"
    r = run_cli(_args(npz, out, "--grid", "width=0.5,1,2", seeds=2, sparsity="0"))
    assert r.returncode == 0, r.stderr
    ds = _results(out)
    assert ds["test_accuracy"].dims == ("width", "sparsity", "seed", "epoch")
    assert list(ds.width.values) == [0.5, 1.0, 2.0]
    edges = ds["n_edges"].sel(sparsity=0.0, seed=0).values
    assert edges[0] < edges[1] < edges[2]  # wider nets have more edges
    md = tmp_path / "report.md"
    r = run_cli(["report", str(out), "--markdown", str(md)])
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert "size study (width)" in text and "ρ(width, log10 E (final))" in text and "n = 6 runs" in text
    assert text.count("## ") >= 4  # one report per width, then the size study
    r = run_cli(["report", str(out), "--sel", "width=2"])
    assert r.returncode == 0 and "size study" not in r.stdout
    figs = tmp_path / "figs"
    r = run_cli(["plot", str(out), "--out", str(figs)])
    assert r.returncode == 0, r.stderr
    assert (figs / "size_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in figs.iterdir() if p.is_dir()) == ["width=0.5", "width=1", "width=2"]
    r = run_cli(["report", str(out), "--sel", "lr=1"])
    assert r.returncode == 1 and "no axis 'lr'" in r.stderr
