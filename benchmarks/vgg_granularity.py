"""Channel vs neuron level on the same VGG sweep: do they rank the sparsities the same way?

Reads two stores of the same sweep run at both granularities, e.g.

    emergence sweep --arch vgg --dataset fashion-mnist --sparsity 0,0.5,0.8,0.95 --seeds 2 --epochs 3 \\
        --thresholds 0.05 --granularity neuron --out vgg_neuron.zarr
    (the same with --granularity channel --out vgg_channel.zarr)
    python benchmarks/vgg_granularity.py vgg_channel.zarr vgg_neuron.zarr --figure docs/vgg_granularity.png

and prints, per epoch, the mean log10 E per sparsity at both levels, the rank order of the sparsities,
and Kendall's tau between the two levels' per-run values (one value per run and epoch); the figure
shows log10 E against epoch, one line per sparsity, one panel per level.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr
    from scipy.stats import false_discovery_control, kendalltau

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("channel")
    p.add_argument("neuron")
    p.add_argument("--figure")
    a = p.parse_args()
    ds = {g: xr.open_zarr(path).isel(threshold=0).load() for g, path in (("channel", a.channel),
                                                                          ("neuron", a.neuron))}
    for g, d in ds.items():
        if d.attrs.get("granularity", "channel") != g:
            raise SystemExit(f"{g} store has granularity {d.attrs.get('granularity')!r}")
    sp = ds["channel"].sparsity.values
    print("| epoch | sparsity | log10 E channel | log10 E neuron | test accuracy |")
    print("|---:|---:|---:|---:|---:|")
    for ep in ds["channel"].epoch.values:
        for s in sp:
            c = ds["channel"].emergence_log10.sel(epoch=ep, sparsity=s)
            n = ds["neuron"].emergence_log10.sel(epoch=ep, sparsity=s)
            acc = ds["neuron"].test_accuracy.sel(epoch=ep, sparsity=s)
            print(f"| {ep} | {s:g} | {float(c.mean()):.2f} ± {float(c.std(ddof=1)):.2f} | "
                  f"{float(n.mean()):.2f} ± {float(n.std(ddof=1)):.2f} | {float(acc.mean()):.3f} |")
    print()
    # One value per run (a run is one (sparsity, seed) cell, trained once and measured at both levels),
    # one test per epoch; the p-values are adjusted over the epochs (Benjamini-Hochberg).
    rows = []
    for ep in ds["channel"].epoch.values:
        c = ds["channel"].emergence_log10.sel(epoch=ep)
        n = ds["neuron"].emergence_log10.sel(epoch=ep)
        order = [" > ".join(f"{sp[i]:g}" for i in np.argsort(-x.mean("seed").values)) for x in (c, n)]
        tau, pv = kendalltau(c.values.ravel(), n.values.ravel())
        rows.append((ep, order, tau, pv))
    adjusted = false_discovery_control([r[3] for r in rows])
    print("| epoch | sparsities by mean log10 E, channel (high → low) | neuron | Kendall τ over runs | p | p (BH) |")
    print("|---:|---|---|---:|---:|---:|")
    for (ep, order, tau, pv), adj in zip(rows, adjusted, strict=True):
        print(f"| {ep} | {order[0]} | {order[1]} | {tau:.2f} | {pv:.2g} | {adj:.2g} |")
    if a.figure:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, (g, d) in zip(axes, ds.items(), strict=True):
            for s in sp:
                y = d.emergence_log10.sel(sparsity=s)
                ax.errorbar(d.epoch.values, y.mean("seed"), yerr=y.std("seed", ddof=1), marker="o", capsize=3,
                            label=f"sparsity {s:g}")
            ax.set_title(f"VGG on Fashion-MNIST, {g} level")
            ax.set_xlabel("epoch")
            ax.set_xticks(d.epoch.values)
            ax.set_ylabel("log10 E")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.figure, dpi=120)


if __name__ == "__main__":
    main()
