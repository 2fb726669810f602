"""Peak memory and time of hostile inputs through the real CLI (the bombs and endless loops of tests/test_hostile.py).

Each case runs ``python -m emergence.cli ...`` in a fresh process; the peak resident set (``ru_maxrss``) and
wall time are read from that process alone. The floor is ``emergence measure`` of a good 3-layer ``.pt2``
on a random batch in the same run: everything above it is what the hostile file cost.

Run: ``python benchmarks/bench_hostile.py [--out FOLDER]`` (writes the files it needs, about 7 GB
declared but a few MB on disk). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hostile_files as H  # noqa: E402 -- the makers live beside the tests that use them


def run(args: list[str]) -> tuple[int, float, float, str]:
    start = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "emergence.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace").strip().splitlines()
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, time.monotonic() - start, \
        (err[-1] if err else "")[:90]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Folder for the hostile files (default: a temp dir).")
    a = ap.parse_args()
    d = a.out or Path(tempfile.mkdtemp(prefix="emergence-hostile-"))
    d.mkdir(parents=True, exist_ok=True)
    good = H.good_pt2(d / "good.pt2")
    H.pt2_zip_bomb(good, d / "bomb.pt2", 3 << 30)
    H.npz_bomb(d / "bomb.npz", 4 << 30)
    H.torchscript_loop(d / "forever.jit")
    H.onnx_loop(d / "loop.onnx")
    H.onnx_huge_constant(d / "const.onnx")
    H.graphml_entity_bomb(d / "laughs.graphml")
    import numpy as np

    np.savez(d / "x4.npz", x=np.random.default_rng(0).random((8, 4)).astype(np.float32))
    cases = [
        ("floor: good .pt2, random batch", ["measure", str(good), "--data", "random"]),
        (".pt2 zip bomb (3 GiB declared)", ["measure", str(d / "bomb.pt2"), "--data", "random"]),
        (".npz bomb (4 GiB declared)", ["measure", str(good), "--data", str(d / "bomb.npz")]),
        ("TorchScript while True, --timeout 10", ["measure", str(d / "forever.jit"), "--data", str(d / "x4.npz"),
                                                  "--timeout", "10"]),
        ("ONNX Loop of 2^62 trips", ["measure", str(d / "loop.onnx"), "--data", "random"]),
        ("ONNX ConstantOfShape 10^12", ["measure", str(d / "const.onnx"), "--data", "random"]),
        ("GraphML entity expansion", ["graph", str(d / "laughs.graphml")]),
    ]
    print("| case | exit | peak RSS (MB) | seconds | message |")
    print("|---|---:|---:|---:|---|")
    for name, args in cases:
        rc, rss, sec, msg = run(args)
        print(f"| {name} | {rc} | {rss:.0f} | {sec:.1f} | {msg.replace('|', '/')} |")


if __name__ == "__main__":
    main()
