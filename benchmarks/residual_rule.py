"""The residual rule on a trained ResNet: where each block's second conv is judged, and what E becomes.

Trains a small ResNet-18 (``tests/model_zoo.ResNet18``, width 8, seeded) for one epoch on the bundled
MNIST (grey images repeated to 3 channels), then measures it at channel level on 256 training images at
τ = 0.05 and prints, per block, the second conv's active units and log10 E. Run it on two versions of the
toolkit to compare the rules (the README shows both): ``python benchmarks/residual_rule.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from model_zoo import ResNet18  # noqa: E402

import emergence  # noqa: E402
from emergence.adapters.datasets import load_dataset  # noqa: E402
from emergence.adapters.model_files import model_graph  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    data = load_dataset("mnist")
    x, y = data.x_train.repeat(1, 3, 1, 1), data.y_train
    net = ResNet18(classes=10, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for idx in torch.randperm(x.shape[0], generator=gen).split(64):
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    net.eval()
    mg = model_graph(net, x[:256], threshold=0.05)
    r = emergence.measure(mg.graph, method="log")
    rows = []
    offset = 0
    for lay in mg.layers:
        units = mg.graph.active[offset:offset + lay.units]
        if lay.name.endswith(".c2"):
            rows.append({"layer": lay.name, "units": lay.units, "active": int(units.sum())})
        offset += lay.units
    print(json.dumps({"log10_E": r.log10, "edges": mg.graph.num_edges, "conv2": rows}))


if __name__ == "__main__":
    main()
