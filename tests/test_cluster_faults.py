"""When the cluster itself fails: a real `dask scheduler` and `dask worker` on 127.0.0.1, killed with SIGKILL
mid-sweep; missing and garbled scheduler files; reports on stores with pending cells.

An infrastructure fault leaves the affected cells pending (never failed), the command says so in one
line, and a plain rerun completes the sweep bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from emergence.experiments.store import STATUS

ROOT = Path(__file__).resolve().parent.parent


def _args(npz, out, *extra, epochs=6, seeds=3):
    return ["sweep", "--dataset", str(npz), "--arch-params", '{"widths": [64]}', "--sparsity", "0,0.5",
            "--seeds", str(seeds), "--epochs", str(epochs), "--probe-samples", "32", "--thresholds", "0.05",
            "--out", str(out), "--quiet", "--threads", "1", *extra]


def _status(out: Path) -> np.ndarray:
    import zarr

    try:
        return np.asarray(zarr.open_group(out, mode="r", zarr_format=2)["status"][...])
    except Exception:  # not made yet
        return np.zeros(0)


def _start_cluster(tmp_path: Path) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    sf = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    dask = str(Path(sys.executable).parent / "dask")
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sf),
                              "--dashboard-address", ":0"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not sf.exists() and time.time() < deadline:
        time.sleep(0.1)
    address = json.loads(sf.read_text())["address"]
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sched, worker, str(sf)


def test_scheduler_killed_mid_sweep_leaves_cells_pending_and_a_rerun_completes(npz, tmp_path, run_cli, science):
    out = tmp_path / "run.zarr"
    sched, worker, sf = _start_cluster(tmp_path)
    try:
        p = subprocess.Popen([sys.executable, "-m", "emergence.cli", *_args(npz, out, "--scheduler", sf)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and (_status(out) == STATUS["done"]).sum() < 1 and p.poll() is None:
            time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()
        sched.send_signal(signal.SIGKILL)  # mid-sweep: one cell done, the next one running
        _, err = p.communicate(timeout=240)
    finally:
        for proc in (worker, sched):
            proc.kill()
            proc.wait(30)
    lines = err.strip().splitlines()
    assert p.returncode == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: the Dask cluster failed"), err
    assert "stay pending: rerun the same command" in lines[0]
    status = _status(out)
    assert (status == STATUS["failed"]).sum() == 0  # an infrastructure fault is never the cell's failure
    assert (status == STATUS["done"]).sum() >= 1 and (status == STATUS["pending"]).sum() >= 1
    r = run_cli(_args(npz, out), timeout=600)
    assert r.returncode == 0, r.stderr  # a plain rerun, no --retry-failed
    with xr.open_zarr(out) as ds:
        assert (ds["cell_runs"].values == 1).all()  # every cell computed once: the interrupted ones were not written
    ref = tmp_path / "ref.zarr"
    assert run_cli(_args(npz, ref), timeout=600).returncode == 0
    xr.testing.assert_identical(science(out).drop_attrs(), science(ref).drop_attrs())


@pytest.mark.parametrize("content, phrase", [(None, "does not exist"), ("garbage{", "is not a Dask scheduler file"),
                                             ('{"id": 1}', "has no 'address'")])
def test_a_bad_scheduler_file_is_one_sentence_at_once(npz, tmp_path, content, phrase, run_cli):
    sf = tmp_path / "sched.json"
    if content is not None:
        sf.write_text(content)
    start = time.monotonic()
    args = _args(npz, tmp_path / "r.zarr", "--scheduler", str(sf))
    r = run_cli(args, timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert phrase in r.stderr
    assert time.monotonic() - start < 35  # within the timeout of an unreachable address


def test_report_uses_done_cells_only_and_says_so(npz, tmp_path, run_cli):
    """Kill a sweep after its first cell: the report covers that cell alone and names what it leaves out."""
    out = tmp_path / "run.zarr"
    p = subprocess.Popen([sys.executable, "-m", "emergence.cli", *_args(npz, out, epochs=20)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and (_status(out) == STATUS["done"]).sum() < 1:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = int((_status(out) == STATUS["done"]).sum())
    assert 1 <= done < 6
    r = run_cli(["report", out])
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"note: the report uses the {done} done cells of 6; {6 - done} pending and 0 failed " \
                               "are left out"
    assert "0.0 ± 0.0" not in r.stdout  # pending cells are no runs


def test_a_store_with_no_done_cell_is_one_sentence(npz, tmp_path, run_cli):
    from emergence.experiments.results import open_results
    from emergence.experiments.runner import _layers, _sweep
    from emergence.experiments.store import SweepStore
    from emergence.experiments.sweep import SweepConfig, empty_sweep, sweep_attrs
    from emergence.experiments.train import TrainConfig

    cfg = SweepConfig(dataset=str(npz), arch_params={"widths": [8]}, sparsities=(0.0,), seeds=(0,),
                      train=TrainConfig(epochs=1), thresholds=(0.05,), probe_samples=8)
    data = _sweep.load_dataset(cfg.dataset)
    SweepStore.create(tmp_path / "empty.zarr", empty_sweep(cfg, _layers(cfg, data), sweep_attrs(cfg, data)),
                      cfg.cell_dims)
    from emergence.errors import FileFormatError

    with pytest.raises(FileFormatError, match="has no done cell yet"):
        open_results(tmp_path / "empty.zarr")
    r = run_cli(["report", tmp_path / "empty.zarr"])
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "has no done cell yet (1 pending, 0 failed)" in r.stderr
