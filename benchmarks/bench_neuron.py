"""Neuron-level emergence of full-size conv nets: the implicit count against one forward pass.

VGG-11 (32x32) and ResNet-18 (32x32 and 224x224) are built from ``tests/model_zoo.py`` (random weights,
nothing downloaded). For each: nodes, implicit edges (routes), the time to walk the model, the time of
one count (median of repeats) and of one forward pass of the same net at batch 1 (median), their ratio,
and the peak resident memory of a fresh process that does only this net. Each net runs in its own
subprocess so the memory figures do not mix.

    python benchmarks/bench_neuron.py                 # CPU, 1 torch thread
    python benchmarks/bench_neuron.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETS = [("VGG-11", "vgg11", 32), ("ResNet-18", "resnet18", 32), ("ResNet-18", "resnet18", 224)]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one(key: str, size: int, device: str, threads: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import model_zoo

    from emergence.adapters.model_files import model_graph

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = (model_zoo.VGG11() if key == "vgg11" else model_zoo.ResNet18()).eval()
    x = torch.randn(8, 3, size, size)
    t = time.perf_counter()
    mg = model_graph(net, x, granularity="neuron", device=device)
    walk = time.perf_counter() - t
    rss_walk = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    counts = []
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        r = mg.counter.count(mg.graph.active)
        _sync(device)
        counts.append(time.perf_counter() - t)
    net = net.to(device)
    x1 = x[:1].to(device)
    fwd = []
    with torch.no_grad():
        for _ in range(repeats + 3):
            _sync(device)
            t = time.perf_counter()
            net(x1)
            _sync(device)
            fwd.append(time.perf_counter() - t)
    count, forward = statistics.median(counts[1:]), statistics.median(fwd[2:])
    return dict(nodes=mg.graph.num_nodes, edges=mg.counter.num_edges, walk_s=walk, count_s=count,
                forward_s=forward, ratio=count / forward, log10_E=r.log10,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, rss_after_walk_mib=rss_walk)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "bench_neuron_results.json"))
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.device, a.threads, a.repeats)))
        return
    rows = []
    for name, key, size in NETS:
        out = subprocess.run([sys.executable, __file__, "--one", key, str(size), "--device", a.device, "--threads",
                              str(a.threads), "--repeats", str(a.repeats)], check=True, capture_output=True,
                             text=True, cwd=ROOT)
        row = dict(net=name, input=f"{size}x{size}", **json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append(row)
        print(f"| {name} | {size}x{size} | {row['nodes']:,} | {row['edges']:.2e} | {row['walk_s']:.1f} s | "
              f"{row['count_s'] * 1e3:.0f} ms | {row['forward_s'] * 1e3:.1f} ms | {row['ratio']:.1f}x | "
              f"{row['peak_rss_mib']:,.0f} MiB |", flush=True)
    import torch

    meta = dict(device=a.device, threads=a.threads, repeats=a.repeats, machine=platform.platform(),
                python=platform.python_version(), torch=torch.__version__)
    Path(a.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
