"""Start-up time of the command line and of ``import emergence``, against ``python -c "import torch"``.

Every case runs in a fresh interpreter (``python -c ...`` or ``python -m emergence.cli ...``); the
cases are interleaved round by round, so that a slow moment of the machine touches all of them, and
each row reports the median over the rounds and its ratio to the floor's median of the same run.
The target (issue 19): ``import emergence`` and ``emergence graph`` of a small file within 1.3x of
the floor.

Run: ``python benchmarks/bench_startup.py [--rounds 15]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "data" / "example.graphml"

CASES = [
    ("floor: python -c 'import torch'", ["-c", "import torch"]),
    ("python -c 'import emergence'", ["-c", "import emergence"]),
    ("emergence graph example.graphml (21 nodes)", ["-m", "emergence.cli", "graph", str(SMALL)]),
    ("emergence graph example.graphml --json", ["-m", "emergence.cli", "graph", str(SMALL), "--json"]),
    ("emergence --help", ["-m", "emergence.cli", "--help"]),
    ("emergence --version", ["-m", "emergence.cli", "--version"]),
]


def once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="Fresh processes per case (interleaved).")
    a = ap.parse_args()
    for _, args in CASES:  # warm the file cache once
        once(args)
    times: dict[str, list[float]] = {name: [] for name, _ in CASES}
    for _ in range(a.rounds):
        for name, args in CASES:
            times[name].append(once(args))
    floor = statistics.median(times[CASES[0][0]])
    print(f"{a.rounds} rounds, Python {sys.version.split()[0]}\n")
    print("| command | median s | min s | × floor |")
    print("|---|---:|---:|---:|")
    for name, _ in CASES:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.2f} | {min(times[name]):.2f} | {med / floor:.2f} |")


if __name__ == "__main__":
    main()
