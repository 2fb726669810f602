"""What a :class:`emergence.Monitor` costs in a training loop, against one eager forward pass of the probe batch.

For each model (random weights, nothing downloaded) and its probe batch this measures, in one process and
interleaved so that the machine's noise hits both alike:

* ``forward`` -- one eager forward pass of the probe batch (``torch.no_grad``, eval mode), median of repeats;
* ``steady`` -- one ``monitor(model)`` call when nothing structural changed (the training-loop case): before
  each call every parameter is multiplied by ``1 + 0.05 N(0, 1)`` (untimed: new values, the same zeros, as an
  optimizer step), then the forward pass through the exported program, the activity sums, the count (skipped
  when no unit changed state: the count would be the same) and the record; median. How many calls saw the
  activity change is shown;
* ``first`` -- the first call (export, walk, forward, count), median over fresh monitors;
* ``rewalk`` -- a call right after in-place pruning of one weight entry (the walk is redone), median.

The goal (issue 21): ``steady <= 1.5 x forward`` at channel level, and ``rewalk <= first``. The neuron-level
steady call is shown as well (no goal: its count runs transposed convolutions over every position).

    python benchmarks/bench_monitor.py [--threads 2] [--repeats 30] [--out benchmarks/bench_monitor_results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _models() -> list[tuple[str, Callable[[], tuple[object, object]]]]:
    import torch

    def mlp(samples):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        return net, torch.rand(samples, 1, 28, 28)

    def cnn():
        torch.manual_seed(0)
        c = torch.nn
        net = c.Sequential(c.Conv2d(3, 32, 3, padding=1), c.BatchNorm2d(32), c.ReLU(), c.MaxPool2d(2),
                           c.Conv2d(32, 64, 3, padding=1), c.BatchNorm2d(64), c.ReLU(), c.MaxPool2d(2),
                           c.Conv2d(64, 128, 3, padding=1), c.BatchNorm2d(128), c.ReLU(), c.AdaptiveAvgPool2d(1),
                           c.Flatten(), c.Linear(128, 10))
        return net, torch.rand(256, 3, 32, 32)

    def gpt2():
        import transformers

        torch.manual_seed(0)
        cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=64)
        model = transformers.GPT2LMHeadModel(cfg).eval()

        class Logits(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, ids):
                return self.m(input_ids=ids).logits

        return Logits(model), torch.randint(0, 1000, (64, 32))

    return [("MLP 784-256-256-10, 512 images", lambda: mlp(512)),
            ("MLP 784-256-256-10, 4096 images", lambda: mlp(4096)), ("CNN 3 conv + BN, 256 images 32x32", cnn),
            ("GPT-2 2 x 128 (transformers), 64 x 32 tokens", gpt2)]


def _time(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def one(name: str, make: Callable[[], tuple[object, object]], repeats: int) -> dict:
    import torch

    import emergence

    net, x = make()
    net.eval()

    def forward():
        with torch.no_grad():
            net(x)

    firsts = []
    for _ in range(3):
        monitor = None

        def first():
            nonlocal monitor
            monitor = emergence.Monitor(net, x)
            monitor(net)

        firsts.append(_time(first))
    forward()
    monitor(net)
    params = [p for p in net.parameters() if p.is_floating_point()]
    gen = torch.Generator().manual_seed(0)

    def step():  # what an optimizer step does to the monitor's view: new values, the same zeros
        with torch.no_grad():
            for p in params:
                p.mul_(1 + 0.05 * torch.randn(p.shape, generator=gen))

    fw, steady, changed = [], [], 0
    for _ in range(repeats):
        step()
        fw.append(_time(forward))
        before = monitor.history[-1].active_fraction
        steady.append(_time(lambda: monitor(net)))
        changed += monitor.history[-1].active_fraction != before
        assert monitor.history[-1].structure == ""
    rewalks = []
    weight = next(p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() >= 2)
    for i in range(3):
        with torch.no_grad():
            weight.view(-1)[i] = 0.0
        rewalks.append(_time(lambda: monitor(net)))
        assert monitor.history[-1].structure == "walk"
    row = dict(model=name, forward_ms=1e3 * statistics.median(fw), steady_ms=1e3 * statistics.median(steady),
               first_ms=1e3 * statistics.median(firsts), rewalk_ms=1e3 * statistics.median(rewalks))
    row["activity_changed"] = f"{changed} of {repeats}"
    row["steady_over_forward"] = row["steady_ms"] / row["forward_ms"]
    row["rewalk_over_first"] = row["rewalk_ms"] / row["first_ms"]
    row["goal_met"] = row["steady_over_forward"] <= 1.5 and row["rewalk_over_first"] <= 1.0
    if "CNN" in name:
        neuron = emergence.Monitor(net, x, granularity="neuron")
        neuron(net)
        row["neuron_steady_ms"] = 1e3 * statistics.median(_time(lambda: neuron(net)) for _ in range(5))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bench_monitor_results.json")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for name, make in _models():
        try:
            rows.append(one(name, make, args.repeats))
        except ImportError as exc:  # transformers is a test extra
            print(f"skipped {name}: {exc}", file=sys.stderr)
    print("| model | forward | monitor, steady | ratio | activity changed | first call | re-walk |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['forward_ms']:.2f} ms | {r['steady_ms']:.2f} ms | "
              f"{r['steady_over_forward']:.2f}x | {r['activity_changed']} | {r['first_ms']:.0f} ms | "
              f"{r['rewalk_ms']:.0f} ms |")
    for r in rows:
        if "neuron_steady_ms" in r:
            print(f"neuron level, {r['model']}: steady {r['neuron_steady_ms']:.1f} ms")
    args.out.write_text(json.dumps(dict(machine=platform.platform(), python=platform.python_version(),
                                        torch=torch.__version__, threads=args.threads, rows=rows), indent=2) + "\n")
    return 0 if all(r["goal_met"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
