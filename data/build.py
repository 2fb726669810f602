"""Build the files in data/ from their sources (run from the repository root: python data/build.py).

* ``example.graphml`` -- a small 8-6-4-3 MLP-shaped graph with seeded random weights,
  a few pruned (zero) weights removed, and a random activity mask.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import emergence  # noqa: E402
from adapters.graphfile import write_graph  # noqa: E402


def build_example(path: Path = HERE / "example.graphml") -> Path:
    gen = torch.Generator().manual_seed(2024)
    widths = [8, 6, 4, 3]
    mats = []
    for a, b in zip(widths[:-1], widths[1:]):
        w = torch.randn(b, a, generator=gen, dtype=torch.float64)
        w[torch.rand(b, a, generator=gen) < 0.25] = 0.0  # pruned connections are not edges
        mats.append(w.round(decimals=4))
    active = [torch.rand(n, generator=gen) < 0.55 for n in widths]
    g = emergence.from_layers(mats, active, layer_names=["in", "h1", "h2", "out"])
    return write_graph(g, path)


if __name__ == "__main__":
    print(build_example())
