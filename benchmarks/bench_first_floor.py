"""Where the time of a *first* measurement goes, and how low a compiled implementation gets.

On the random DAG of ``bench_measure.py`` (N = E/10 nodes, shuffled ids, unsorted edges) this prints,
against one scipy CSR mat-vec over the same edges (SpMV, the floor):

* ``measure(method="log")`` as shipped: first (topological levels included) and repeat, and the peak
  extra resident memory of the first call per edge (the process's peak RSS is reset just before it,
  through ``/proc/self/clear_refs``; Linux only);
* each phase a first measurement must do, written as single-threaded compiled loops (numba): a
  bucket + counting sort of the edges by source, Kahn's topological order, relabelling the edges to
  topological positions and sorting them again (so that the count reads rows in order), and the count
  itself in topological positions (what a repeat would cost).

Needs numba for the second part (``pip install numba``; not a dependency of the package: these loops
are a measurement of the floor, not the shipped code path). The sum of the compiled phases is the
answer to "how fast could the first measurement be on this machine"; see the README's Performance
section for the numbers and what they mean for the ≤ 12× goal.

    python benchmarks/bench_first_floor.py [--sizes 1e7,2e7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def _kernels():
    import numba as nb

    @nb.njit(cache=True, nogil=True)
    def csr(key, val, n, lo_bits):
        """CSR (ptr, values) of ``key -> val``: a partition by the key's high bits (one streaming
        pass), then a counting sort whose writes stay inside each bucket."""
        e = key.size
        nb_hi = (n >> lo_bits) + 1
        cnt = np.zeros(nb_hi + 1, np.int64)
        for i in range(e):
            cnt[(key[i] >> lo_bits) + 1] += 1
        for b in range(nb_hi):
            cnt[b + 1] += cnt[b]
        fill = cnt[:-1].copy()
        tk = np.empty(e, np.int32)
        tv = np.empty(e, np.int32)
        for i in range(e):
            b = key[i] >> lo_bits
            j = fill[b]
            tk[j] = key[i]
            tv[j] = val[i]
            fill[b] = j + 1
        ptr = np.zeros(n + 1, np.int64)
        for i in range(e):
            ptr[tk[i] + 1] += 1
        for v in range(n):
            ptr[v + 1] += ptr[v]
        out = np.empty(e, np.int32)
        f2 = ptr[:-1].copy()
        for i in range(e):
            j = f2[tk[i]]
            out[j] = tv[i]
            f2[tk[i]] = j + 1
        return ptr, out

    @nb.njit(cache=True, nogil=True)
    def kahn(ptr, dst, n):
        indeg = np.zeros(n, np.int32)
        for i in range(dst.size):
            indeg[dst[i]] += 1
        order = np.empty(n, np.int32)
        tail = 0
        for v in range(n):
            if indeg[v] == 0:
                order[tail] = v
                tail += 1
        head = 0
        while head < tail:
            v = order[head]
            head += 1
            for j in range(ptr[v], ptr[v + 1]):
                t = dst[j]
                indeg[t] -= 1
                if indeg[t] == 0:
                    order[tail] = t
                    tail += 1
        return order

    @nb.njit(cache=True, nogil=True)
    def relabel(src, dst, order):
        n = order.size
        rank = np.empty(n, np.int32)
        for i in range(n):
            rank[order[i]] = i
        a = np.empty(src.size, np.int32)
        b = np.empty(src.size, np.int32)
        for i in range(src.size):
            a[i] = rank[src[i]]
            b[i] = rank[dst[i]]
        return a, b

    @nb.njit(cache=True, nogil=True)
    def count(ptr, dst, active_pos):
        n = ptr.size - 1
        p = np.empty(n)
        total = 0.0
        for i in range(n - 1, -1, -1):
            s = 0.0
            for j in range(ptr[i], ptr[i + 1]):
                s += p[dst[j]]
            if active_pos[i]:
                p[i] = 1.0 + s
            else:
                p[i] = 0.0
                total += s
        return total

    return csr, kahn, relabel, count


def _peak_extra(e: int) -> dict:
    """In a fresh process: the first ``measure`` on the random DAG, its time and peak extra RSS."""
    import torch

    sys.path.insert(0, str(ROOT))
    from bench_measure import random_dag

    import emergence

    g = random_dag(e)
    fresh = emergence.graph(g.edge_index.clone(), g.num_nodes, g.active)
    del g
    status = Path("/proc/self/status")

    def rss(field: str) -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith(field))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak resident set
    before = rss("VmRSS:")
    t = time.perf_counter()
    r = emergence.measure(fresh, method="log")
    first = time.perf_counter() - t
    return dict(first_s=first, peak_extra_bytes=rss("VmHWM:") - before, log10=r.log10,
                threads=torch.get_num_threads())


def bench(e: int, repeat: int) -> dict:
    import scipy.sparse as sp
    import torch

    sys.path.insert(0, str(ROOT))
    from bench_measure import random_dag

    import emergence

    g = random_dag(e)
    n = g.num_nodes
    src, dst = g.edge_index[0].numpy(), g.edge_index[1].numpy()
    a = sp.csr_array((np.ones(e), (src, dst)), shape=(n, n))
    x = np.random.default_rng(0).random(n)
    spmv = min(_timed(lambda: a @ x)[0] for _ in range(max(repeat, 5)))
    row = dict(edges=e, nodes=n, spmv_s=spmv)
    mem = json.loads(subprocess.run([sys.executable, __file__, "--peak", str(e)], check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1])
    row.update(first_s=mem["first_s"], peak_extra_b_per_edge=mem["peak_extra_bytes"] / e, threads=mem["threads"])
    emergence.measure(g, method="log")
    flips = [torch.rand(n, generator=torch.Generator().manual_seed(i)) < 0.5 for i in range(repeat)]

    def again() -> None:
        g.active = flips.pop()
        emergence.measure(g, method="log")

    row["repeat_s"] = min(_timed(again)[0] for _ in range(repeat))
    try:
        csr, kahn, relabel, count = _kernels()
    except ImportError:
        return row
    s32, d32 = src.astype(np.int32), dst.astype(np.int32)
    act = g.active.numpy()
    ptr, d = csr(s32[:100], d32[:100], n, 10)  # compile (cached on disk afterwards)
    count(*csr(*relabel(s32[:100], d32[:100], kahn(ptr, d, n)), n, 10), act)
    best: dict[str, float] = {}
    for _ in range(repeat):
        t_sort, (ptr, d) = _timed(lambda: csr(s32, d32, n, 10))
        t_kahn, order = _timed(lambda ptr=ptr, d=d: kahn(ptr, d, n))
        t_rel, (ptr2, d2) = _timed(lambda order=order: csr(*relabel(s32, d32, order), n, 10))
        active_pos = act[order]
        t_count, total = _timed(lambda ptr2=ptr2, d2=d2, active_pos=active_pos: count(ptr2, d2, active_pos))
        for k, v in dict(sort=t_sort, kahn=t_kahn, relabel=t_rel, count=t_count).items():
            best[k] = min(best.get(k, float("inf")), v)
    row.update({f"{k}_s": v for k, v in best.items()})
    row["compiled_log10"] = float(np.log10(total))
    row["shipped_log10"] = mem["log10"]
    return row


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e7,2e7")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--peak", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "bench_first_floor_results.json"))
    a = p.parse_args()
    if a.peak:
        print(json.dumps(_peak_extra(a.peak)))
        return
    rows = []
    print("| edges | spmv ms | first (shipped) | repeat (shipped) | peak extra B/edge | sort | Kahn order "
          "| relabel + sort | count | compiled sum |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in (int(float(s)) for s in a.sizes.split(",")):
        r = bench(e, a.repeat)
        rows.append(r)
        sp_ = r["spmv_s"]

        def x(key: str, r: dict = r, sp_: float = sp_) -> str:
            return f"{r[key] * 1e3:.0f} ms ({r[key] / sp_:.1f}×)" if key in r else "—"

        phases = [k for k in ("sort_s", "kahn_s", "relabel_s", "count_s") if k in r]
        total = sum(r[k] for k in phases)
        print(f"| {e:,} | {sp_ * 1e3:.1f} | {x('first_s')} | {x('repeat_s')} | {r['peak_extra_b_per_edge']:.1f} "
              f"| {x('sort_s')} | {x('kahn_s')} | {x('relabel_s')} | {x('count_s')} | "
              f"{f'{total * 1e3:.0f} ms ({total / sp_:.1f}×)' if phases else '—'} |", flush=True)
    import torch

    meta = dict(machine=platform.platform(), python=platform.python_version(), torch=torch.__version__)
    Path(a.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
