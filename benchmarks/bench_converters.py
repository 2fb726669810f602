"""Graphs as they come, at the size of a package archive (6.3·10⁴ nodes, 2.6·10⁵ edges, named nodes).

One random directed graph with cycles (node names like ``pkg123``), in one process, best of ``--repeat``:

* converters -- ``from_edges`` (the floor: integer pairs as an array and the names; and the same pairs as a
  Python list, which is what any converter from a Python graph library starts from) against ``from_networkx``
  (a ``DiGraph``), ``from_igraph`` and ``from_rustworkx`` of the same graph (building those is not timed);
* cycles -- a first ``measure`` of the graph when only inactive nodes form cycles (counted exactly as the
  DAG it is for emergent paths), the same graph refused because active nodes form cycles (the one-line
  error with its summary of strongly connected components), against a first ``measure`` of a DAG of the
  same size; and ``condense`` of the graph.

The goals (issue 22): each converter within 3× of ``from_edges``; finding the active cycles within 2× of a
count.

    python benchmarks/bench_converters.py [--nodes 63000] [--edges 264000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _best(f: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=63_000)
    ap.add_argument("--edges", type=int, default=264_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bench_converters_results.json")
    args = ap.parse_args(argv)
    import igraph as ig
    import networkx as nx
    import numpy as np
    import rustworkx as rx
    import torch

    import emergence
    from emergence.adapters import from_igraph, from_networkx, from_rustworkx
    from emergence.errors import NotADAGError

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    n, e = args.nodes, args.edges
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    names = [f"pkg{i}" for i in range(n)]
    pairs = np.stack([src, dst], 1)
    active = rng.random(n) < 0.3

    h = nx.DiGraph()
    h.add_nodes_from(names)
    h.add_edges_from((names[a], names[b]) for a, b in pairs.tolist())
    on = [names[i] for i in np.flatnonzero(active)]
    gi = ig.Graph(n=n, edges=pairs.tolist(), directed=True)
    gi.vs["name"] = names
    gr = rx.PyDiGraph(multigraph=True)
    gr.add_nodes_from([{"name": s} for s in names])
    gr.add_edges_from_no_data([tuple(p) for p in pairs.tolist()])

    floor = _best(lambda: emergence.from_edges(pairs, n, active, names=names), args.repeat)
    listed = pairs.tolist()  # what a converter starts from: Python objects, not an array
    rows = [("from_edges (floor)", floor),
            ("from_edges, pairs as a Python list", _best(lambda: emergence.from_edges(listed, n, active, names=names),
                                                         args.repeat))]
    rows.append(("from_networkx", _best(lambda: from_networkx(h, active=on), args.repeat)))
    rows.append(("from_igraph", _best(lambda: from_igraph(gi, active=on), args.repeat)))
    rows.append(("from_rustworkx", _best(lambda: from_rustworkx(gr, active=on), args.repeat)))

    # cycles: all active nodes sorted by id and the edges between them kept acyclic (low -> high), so only
    # inactive nodes sit on cycles; then one back edge between active nodes makes an active cycle
    a_src, a_dst = active[src], active[dst]
    ok = ~(a_src & a_dst) | (src < dst)
    s2, d2 = src[ok], dst[ok]
    inactive_cycles = emergence.from_edges(np.stack([s2, d2], 1), n, active)
    act_ids = np.flatnonzero(active)
    u, v = int(act_ids[0]), int(act_ids[-1])
    cyclic = emergence.from_edges(np.stack([np.r_[s2, v, u], np.r_[d2, u, v]], 1), n, active)
    dag_ok = src < dst
    dag = emergence.from_edges(np.stack([src[dag_ok], dst[dag_ok]], 1), n, active)

    def fresh(g):  # a first count: a new edge_index tensor, so nothing is cached
        return emergence.graph(g.edge_index.clone(), g.num_nodes, g.active)

    def refuse():
        try:
            emergence.measure(fresh(cyclic))
        except NotADAGError:
            return
        raise AssertionError("not refused")

    count_dag = _best(lambda: emergence.measure(fresh(dag)), args.repeat)
    rows_cycles = [("measure, a DAG (the floor)", count_dag),
                   ("measure, cycles among inactive nodes only", _best(lambda: emergence.measure(
                       fresh(inactive_cycles)), args.repeat)),
                   ("measure refused: active nodes form cycles", _best(refuse, args.repeat)),
                   ("condense", _best(lambda: emergence.condense(cyclic), args.repeat))]

    print(f"{n:,} nodes, {e:,} edges")
    print("| converter | seconds | × from_edges |")
    print("|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / floor:.1f}× |")
    print()
    print("| cycles | seconds | × a DAG's count |")
    print("|---|---:|---:|")
    for name, t in rows_cycles:
        print(f"| {name} | {t:.3f} | {t / count_dag:.1f}× |")
    args.out.write_text(json.dumps(dict(machine=platform.platform(), nodes=n, edges=e,
                                        converters=dict(rows), cycles=dict(rows_cycles)), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
