"""Sweep benchmark: `emergence reproduce` with --workers 1 and --workers 2, and the cost of durable writes.

Runs the whole reproduction (or ``--quick``) twice in fresh folders, back to back on the
same machine, and reports the wall time of each, the speed-up, and from the stores the time
spent writing each finished cell against the cell's own compute time. The results of the two
runs are compared bit for bit (bookkeeping variables aside).

    python benchmarks/bench_sweep.py            # full reproduction (about 10 minutes on 2 cores)
    python benchmarks/bench_sweep.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run(workers: int, quick: bool, folder: Path) -> float:
    cmd = [sys.executable, "-m", "emergence.cli", "reproduce", "--out", str(folder), "--workers", str(workers),
           "--quiet"]
    if quick:
        cmd.append("--quick")
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def overhead(folder: Path) -> dict[str, float]:
    import xarray as xr

    from emergence.experiments.store import BOOKKEEPING

    writes, cells, ratios = [], [], []
    science = {}
    for store in sorted(folder.glob("*.nc.zarr")):
        with xr.open_zarr(store) as ds:
            ds = ds.load()
        w, c = ds["cell_write_seconds"].values.ravel(), ds["cell_seconds"].values.ravel()
        writes += list(w)
        cells += list(c)
        ratios += list(w / c)
        science[store.name] = ds.drop_vars([v for v in BOOKKEEPING if v in ds])
    return dict(write_ms_median=1000 * float(np.median(writes)), cell_s_median=float(np.median(cells)),
                overhead_pct_median=100 * float(np.median(ratios)), overhead_pct_max=100 * float(np.max(ratios)),
                overhead_pct_total=100 * float(np.sum(writes) / np.sum(cells))), science


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds x 4 epochs instead of the full reproduction")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "w1", Path(tmp) / "w2"
        t1 = run(1, args.quick, one)
        t2 = run(2, args.quick, two)
        o1, s1 = overhead(one)
        o2, s2 = overhead(two)
        identical = all(
            all(np.array_equal(s1[k][v].values, s2[k][v].values, equal_nan=True) for v in s1[k].data_vars)
            for k in s1)
    out = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores", quick=args.quick,
               workers_1_s=round(t1, 1), workers_2_s=round(t2, 1), speedup=round(t1 / t2, 2),
               identical_results=identical, overhead_workers_1=o1, overhead_workers_2=o2)
    print("| run | --workers 1 | --workers 2 | speed-up | identical |")
    print("|---|---:|---:|---:|---|")
    print(f"| reproduce{' --quick' if args.quick else ''} | {t1:.1f} s | {t2:.1f} s | {t1 / t2:.2f}× | "
          f"{'yes' if identical else 'NO'} |")
    print()
    print("| durable writes | median write | median cell | median overhead | max overhead | total |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, o in (("--workers 1", o1), ("--workers 2", o2)):
        print(f"| {name} | {o['write_ms_median']:.1f} ms | {o['cell_s_median']:.2f} s | "
              f"{o['overhead_pct_median']:.2f}% | {o['overhead_pct_max']:.2f}% | {o['overhead_pct_total']:.2f}% |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
