"""Benchmark ``emergence.measure`` against the SpMV floor and a networkx baseline.

Prints a Markdown table over three DAG families from 1e4 to ~2e7 edges:

* ``layered`` -- a dense 6-layer MLP-shaped net (few, wide levels);
* ``deep``    -- a dense net of width 64 and as many layers as the size needs (many narrow levels);
* ``random``  -- a random DAG with N = E / 10 nodes and randomly relabeled node ids (unsorted edges).

Columns: ``spmv`` is one scipy CSR mat-vec over the same edges (each edge read once:
the floor); ``first`` is ``measure(method="log")`` on a fresh graph (topological levels
included); ``repeat`` measures again after changing only ``active`` (levels cached);
``exact`` is ``method="exact"`` (Python integers, small graphs only); ``nx float`` and
``nx log`` are Python dynamic programs over ``networkx.topological_sort``, in plain
floats (overflows) and in log space (the same computation as ``first``).
Times are the minimum over ``--repeat`` runs.

Run: ``python benchmarks/bench_measure.py [--max-edges 2e7] [--nx-max 1e6]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import scipy.sparse as sp
import torch

import emergence


def layered(e: int, depth: int = 6, seed: int = 0):
    width = max(2, round(math.sqrt(e / (depth - 1))))
    return _dense(width, depth, seed)


def deep(e: int, width: int = 64, seed: int = 0):
    return _dense(width, max(2, round(e / width**2) + 1), seed)


def _dense(width: int, depth: int, seed: int):
    n = width * depth
    src = torch.arange(width).repeat_interleave(width)  # within one block: sources sorted
    dst = torch.arange(width).repeat(width)
    blocks = torch.arange(depth - 1).repeat_interleave(width * width) * width
    ei = torch.stack([src.repeat(depth - 1) + blocks, dst.repeat(depth - 1) + blocks + width])
    gen = torch.Generator().manual_seed(seed)
    return emergence.graph(ei, n, torch.rand(n, generator=gen) < 0.5)


def random_dag(e: int, seed: int = 0):
    n = max(10, e // 10)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (int(e * 1.0001) + 10,), generator=gen)
    b = torch.randint(0, n, (a.numel(),), generator=gen)
    keep = a != b
    a, b = a[keep][:e], b[keep][:e]
    perm = torch.randperm(n, generator=gen)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return emergence.graph(torch.stack([perm[lo], perm[hi]]), n, torch.rand(n, generator=gen) < 0.5)


def _best(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _networkx_times(g) -> tuple[float, float]:
    """Seconds for two networkx dynamic programs over ``topological_sort`` (graph building excluded).

    The first uses plain floats (the fastest Python can do, but it overflows past 1e308
    and rounds beyond 2**53); the second computes what ``measure(method="log")`` does:
    log-space sums that never overflow.
    """
    import networkx as nx

    G = nx.DiGraph()
    G.add_nodes_from(range(g.num_nodes))
    G.add_edges_from(g.edge_index.t().tolist())
    active = g.active.tolist()

    def floats() -> float:
        p = [0.0] * g.num_nodes
        total = 0.0
        for v in reversed(list(nx.topological_sort(G))):
            s = sum(p[t] for t in G.successors(v))
            if active[v]:
                p[v] = 1.0 + s
            else:
                total += s
        return total

    def logs() -> float:
        lp = [-math.inf] * g.num_nodes
        contrib = []
        for v in reversed(list(nx.topological_sort(G))):
            terms = [lp[t] for t in G.successors(v) if active[t]]
            s = -math.inf
            if terms:
                m = max(terms)
                s = m + math.log(math.fsum(math.exp(x - m) for x in terms))
            if active[v]:
                lp[v] = s + math.log1p(math.exp(-s)) if s > -math.inf else 0.0
            elif terms:
                contrib.append(s)
        if not contrib:
            return -math.inf
        m = max(contrib)
        return m + math.log(math.fsum(math.exp(x - m) for x in contrib))

    times = []
    for fn in (floats, logs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], times[1]


def bench(family: str, e: int, repeat: int, nx_max: int, exact_max: int) -> dict:
    make = {"layered": layered, "deep": deep, "random": random_dag}[family]
    g = make(e)
    m = g.num_edges
    a = sp.csr_array(
        (np.ones(m), (g.edge_index[0].numpy(), g.edge_index[1].numpy())), shape=(g.num_nodes, g.num_nodes)
    )
    x = np.random.default_rng(0).random(g.num_nodes)
    spmv = _best(lambda: a @ x, max(repeat, 5))

    fresh = [emergence.graph(g.edge_index.clone(), g.num_nodes, g.active) for _ in range(repeat)]

    def first() -> None:  # a new edge_index tensor: nothing cached
        emergence.measure(fresh.pop(), method="log")

    t_first = _best(first, repeat)
    flips = [torch.rand(g.num_nodes, generator=torch.Generator().manual_seed(i)) < 0.5 for i in range(repeat)]
    emergence.measure(g, method="log")

    def again() -> None:
        g.active = flips.pop()
        emergence.measure(g, method="log")

    t_repeat = _best(again, repeat)
    lv = emergence.topological_levels(g.edge_index, g.num_nodes)
    t_exact = _best(lambda: emergence.measure(g, method="exact"), 1) if m <= exact_max else None
    t_nx, t_nx_log = _networkx_times(g) if m <= nx_max else (None, None)
    return dict(
        family=family, edges=m, nodes=g.num_nodes, levels=lv.num_levels, spmv=spmv,
        first=t_first, repeat=t_repeat, exact=t_exact, nx=t_nx, nx_log=t_nx_log,
    )


def _fmt_ms(v: float | None) -> str:
    return "—" if v is None else (f"{v * 1e3:.2f}" if v < 0.1 else f"{v * 1e3:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-edges", type=float, default=2e7)
    ap.add_argument("--nx-max", type=float, default=1e6, help="largest size for the networkx baseline")
    ap.add_argument("--exact-max", type=float, default=1e5, help="largest size for method='exact'")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--families", default="layered,deep,random")
    args = ap.parse_args()
    sizes = [s for s in (10**4, 10**5, 10**6, 10**7, 2 * 10**7) if s <= args.max_edges]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print()
    print("| family | edges | nodes | levels | spmv ms | first ms | repeat ms | first/spmv | repeat/spmv "
          "| exact ms | nx float ms | nx log ms | nx log/first |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for fam in args.families.split(","):
        for e in sizes:
            r = bench(fam, e, args.repeat, int(args.nx_max), int(args.exact_max))
            speed = "—" if r["nx_log"] is None else f"{r['nx_log'] / r['first']:.0f}×"
            print(
                f"| {fam} | {r['edges']:,} | {r['nodes']:,} | {r['levels']:,} | {_fmt_ms(r['spmv'])} "
                f"| {_fmt_ms(r['first'])} | {_fmt_ms(r['repeat'])} | {r['first'] / r['spmv']:.1f}× "
                f"| {r['repeat'] / r['spmv']:.1f}× | {_fmt_ms(r['exact'])} | {_fmt_ms(r['nx'])} "
                f"| {_fmt_ms(r['nx_log'])} | {speed} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
