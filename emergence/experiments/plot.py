"""Figures of a sweep (PNG, matplotlib's Agg backend: no display needed).

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (figures of accuracy and emergence vs epoch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from emergence.defaults import DEFAULT_THRESHOLD
from emergence.errors import FileFormatError
from emergence.experiments.results import recorded_threshold
from emergence.experiments.stats import correlate
from emergence.experiments.writers import save_figure

__all__ = ["plot_sweep", "save_figure"]


def _without_zeros(runs: np.ndarray) -> np.ndarray:
    """log10 values with E = 0 (``-inf``) as NaN, for means and spreads: those runs are marked apart (see
    :func:`_zero_marks`)."""
    return np.where(np.isneginf(runs), np.nan, runs)


def _band(ax: Any, x: np.ndarray, runs: np.ndarray, label: str, color: Any) -> None:
    runs = _without_zeros(runs)
    m, s = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
    ax.plot(x, m, color=color, label=label, marker="o", ms=3)
    ax.fill_between(x, m - s, m + s, color=color, alpha=0.2)


#: Legend text of the marks for E = 0 (log10 E is undefined there, so no curve can pass through it).
_ZERO_LABEL = "E = 0 in a run (marked at the bottom,\none row per sparsity; the curve\naverages the other runs)"


def _zero_marks(ax: Any, x: np.ndarray, runs: np.ndarray, color: Any, row: int = 0) -> bool:
    """Mark, at the bottom of the axes (row ``row`` of marks, so that groups do not hide each other), every x
    where some run has E = 0 (log10 E stored as -inf; NaN in a done cell of files written before -inf); returns
    whether there was one."""
    zero = (np.isnan(runs) | np.isneginf(runs)).any(axis=0)
    if zero.any():
        ax.plot(np.asarray(x)[zero], np.full(int(zero.sum()), 0.03 + 0.04 * row), transform=ax.get_xaxis_transform(),
                ls="none", marker="v", ms=6, color=color, clip_on=False)
    return bool(zero.any())


#: The gain plot's variant: E = 0 at epoch t is marked at the left edge.
_ZERO_LEFT_LABEL = "E = 0 at epoch t (marked at\nthe left edge, one column per\nsparsity; not in the correlation)"

#: Legends sit beside the axes, never on data.
_BESIDE = dict(loc="center left", bbox_to_anchor=(1.01, 0.5))


def _legend(ax: Any, zero: bool, *, label: str = _ZERO_LABEL, marker: str = "v", mfc: str | None = None,
            **legend: Any) -> None:
    """The legend beside the axes, with one entry explaining the E = 0 marks when there are some."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if zero:
        handles.append(Line2D([], [], ls="none", marker=marker, mfc=mfc, color="grey", ms=6))
        labels.append(label)
    ax.legend(handles, labels, **_BESIDE, **legend)


def _corr_text(c: dict[str, float], pearson: bool = True) -> str:
    """A pooled correlation as description only: the points are repeated measures of a few runs, so no
    p-value is shown (the report tests each claim with one value per run)."""
    if not np.isfinite(c["spearman"]):
        return f"correlation undefined (a constant), {c['n']} points"
    text = f"pooled Spearman ρ = {c['spearman']:+.2f}"
    if pearson:
        text += f", Pearson r = {c['pearson']:+.2f}"
    return text + f" over {c['n']} points\n(descriptive; run-level tests in the report)"


def plot_sweeps(ds: Any, out: str | os.PathLike[str], *, threshold: float = DEFAULT_THRESHOLD,
                sel: dict[str, str] | None = None) -> list[Path]:
    """The figures of a sweep with any grid axes: :func:`plot_sweep` per setting, and the size study.

    After ``sel`` fixed some grid axes (see :func:`emergence.experiments.facets.select`), each
    combination of the remaining ones gets a folder ``out/KEY=VALUE_...``; with a ``width``
    axis, ``out/size_study.png`` shows log10 E and final accuracy against width per sparsity.

    Raises
    ------
    ConfigError, FileFormatError
    """
    from emergence.experiments.facets import facets, select

    ds = select(ds, sel)
    paths: list[Path] = []
    for label, block in facets(ds):
        paths += plot_sweep(block, Path(out) / label.replace(" ", "_") if label else out, threshold=threshold)
    if "width" in ds.dims and ds.sizes["width"] > 1:
        paths.append(_size_figure(ds, Path(out), threshold))
    return paths


def _size_figure(ds: Any, folder: Path, threshold: float) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from emergence.experiments.facets import facets

    tau = recorded_threshold(ds, threshold)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, block in facets(ds, keep=("width",)):
        for s in block.sparsity.values:
            b = block.sel(sparsity=s)
            w = b.width.values
            name = " ".join(x for x in (label, f"sparsity {float(s):g}") if x)
            for ax, da in ((axes[0], b.emergence_log10.sel(threshold=tau).isel(epoch=-1)),
                           (axes[1], b.test_accuracy.isel(epoch=-1))):
                runs = _without_zeros(da.transpose("width", "seed").values)
                ax.errorbar(w, np.nanmean(runs, 1), yerr=np.nanstd(runs, 1, ddof=1) if runs.shape[1] > 1 else None,
                            marker="o", capsize=3, label=name)
    for ax, ylabel in zip(axes, (f"log10 E (final epoch, τ={tau:g})", "final test accuracy"), strict=False):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width multiplier")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{ds.attrs.get('dataset', '')}: size study (mean ± sd over seeds)")
    folder.mkdir(parents=True, exist_ok=True)
    path = save_figure(fig, folder / "size_study.png")
    plt.close(fig)
    return path


def plot_sweep(ds: Any, out: str | os.PathLike[str], *, threshold: float = DEFAULT_THRESHOLD) -> list[Path]:
    """Write the standard figures of a sweep into ``out`` and return their paths.

    * ``accuracy_vs_epoch.png`` -- test accuracy per sparsity (mean ± std over seeds);
    * ``emergence_vs_epoch.png`` -- log10 E per sparsity;
    * ``relative_emergence_vs_epoch.png`` -- log10 (E / edges) per sparsity;
    * ``gain_vs_emergence.png`` -- accuracy gain from t to t+1 against log10 E at t,
      with the Spearman and Pearson correlations printed on the plot;
    * ``threshold_sensitivity.png`` -- log10 E at the first and last epoch against the threshold;
    * ``active_fraction.png`` -- fraction of active units per layer over training;
    * ``emergence_vs_landscape.png`` -- when the sweep probed the loss landscape: slice
      minima, slice roughness and the top Hessian eigenvalue against log10 E.

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep result.
    out : str or path-like
        Folder (created if missing).
    threshold : float, default ``DEFAULT_THRESHOLD``
        The threshold of the per-epoch figures (the nearest recorded).

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    FileFormatError
        If the folder cannot be created.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns where E = 0
        return _plot_all(ds, out, threshold)


def _plot_all(ds: Any, out: str | os.PathLike[str], threshold: float) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create {str(folder)!r}: {exc}") from exc
    tau = recorded_threshold(ds, threshold)
    epochs = ds.epoch.values
    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["sparsity"]))
    name = ds.attrs.get("dataset", "")
    paths = []
    for var, ylabel, fname in (
        ("test_accuracy", "test accuracy", "accuracy_vs_epoch.png"),
        ("emergence_log10", f"log10 emergence (τ={tau:g})", "emergence_vs_epoch.png"),
        ("relative_emergence_log10", f"log10 relative emergence (τ={tau:g})", "relative_emergence_vs_epoch.png"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        da = ds[var].sel(threshold=tau) if "threshold" in ds[var].dims else ds[var]
        zero = False
        for i, s in enumerate(ds.sparsity.values):
            _band(ax, epochs, da.isel(sparsity=i).values, f"sparsity {s:g}", colors[i])
            if var != "test_accuracy":
                zero |= _zero_marks(ax, epochs, da.isel(sparsity=i).values, colors[i], row=i)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name}: {ylabel} (mean ± std over {ds.sizes['seed']} seeds)", fontsize=9)
        _legend(ax, zero, fontsize=7)
        paths.append(save_figure(fig, folder / fname))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    elog = ds.emergence_log10.sel(threshold=tau).values
    gain = np.diff(ds.test_accuracy.values, axis=-1)
    zero = False
    for i, s in enumerate(ds.sparsity.values):
        ax.scatter(elog[i, :, :-1].ravel(), gain[i].ravel(), s=12, color=colors[i], label=f"sparsity {s:g}")
        z = ~np.isfinite(elog[i, :, :-1].ravel()) & np.isfinite(gain[i].ravel())
        if z.any():  # E = 0 at epoch t: at the left edge, since log10 E is undefined
            zero = True
            ax.plot(np.full(int(z.sum()), 0.012 + 0.03 * i), gain[i].ravel()[z], transform=ax.get_yaxis_transform(),
                    ls="none", marker="<", ms=6, mfc="none", color=colors[i], clip_on=False)
    c = correlate(elog[..., :-1], gain)
    ax.set_xlabel(f"log10 emergence at epoch t (τ={tau:g})\n{_corr_text(c)}", fontsize=8)  # below, never on data
    ax.set_ylabel("test accuracy gain from t to t+1")
    ax.set_title(f"{name}: accuracy change vs emergence", fontsize=9)
    _legend(ax, zero, label=_ZERO_LEFT_LABEL, marker="<", mfc="none", fontsize=8)
    paths.append(save_figure(fig, folder / "gain_vs_emergence.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    th = ds.threshold.values
    zero = False
    for i, s in enumerate(ds.sparsity.values):
        for e, style in ((0, "--"), (int(epochs[-1]), "-")):
            runs = ds.emergence_log10.isel(sparsity=i).sel(epoch=e).values  # [seed, threshold]
            zero |= _zero_marks(ax, th, runs, colors[i], row=i)
            kept = _without_zeros(runs)
            ax.errorbar(th, np.nanmean(kept, 0), yerr=np.nanstd(kept, 0), color=colors[i], ls=style,
                        marker="o" if e == 0 else "s", ms=3,
                        label=f"sparsity {s:g}, {'epoch 0 (dashed)' if e == 0 else f'epoch {e} (solid)'}")
    positive = th[th > 0]
    if positive.size and (th <= 0).any():  # a log axis would drop τ = 0: linear near 0, logarithmic above
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    elif positive.size == th.size:
        ax.set_xscale("log")
    ax.set_xlabel("activity threshold τ")
    ax.set_ylabel("log10 emergence")
    ax.set_title(f"{name}: threshold sensitivity", fontsize=9)
    _legend(ax, zero, fontsize=7)
    paths.append(save_figure(fig, folder / "threshold_sensitivity.png"))
    plt.close(fig)

    layers = list(ds.layer.values)
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 3), sharey=True, squeeze=False)
    for k, layer in enumerate(layers):
        ax = axes[0, k]
        for i, s in enumerate(ds.sparsity.values):
            runs = ds.active_fraction.sel(threshold=tau, layer=layer).isel(sparsity=i).values
            _band(ax, epochs, runs, f"{s:g}", colors[i])
        ax.set_title(str(layer), fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel(f"active fraction (τ={tau:g})")
    axes[0, -1].legend(title="sparsity", fontsize=7)
    paths.append(save_figure(fig, folder / "active_fraction.png"))
    plt.close(fig)
    if "hessian_top" in ds:
        paths.append(_landscape_figure(plt, ds, tau, colors, folder, name))
    return paths


def _landscape_figure(plt: Any, ds: Any, tau: float, colors: Any, folder: Path, name: str) -> Path:
    elog = ds.emergence_log10.sel(threshold=tau).values
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, var, label in zip(axes, ("slice_minima", "slice_roughness", "hessian_top"),
                              ("local minima on a 1-D slice", "slice roughness (TV / range)", "top Hessian eigenvalue"),
                              strict=False):
        v = ds[var].values
        for i, s in enumerate(ds.sparsity.values):
            ok = np.isfinite(v[i]) & np.isfinite(elog[i])
            ax.scatter(elog[i][ok], v[i][ok], s=14, color=colors[i], label=f"sparsity {s:g}")
        c = correlate(elog[np.isfinite(v)], v[np.isfinite(v)])
        ax.set_xlabel(f"log10 emergence (τ={tau:g})\n{_corr_text(c, pearson=False)}", fontsize=7)
        ax.set_ylabel(label)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the data, not on it
    fig.suptitle(f"{name}: emergence vs loss-landscape ruggedness", fontsize=10)
    path = save_figure(fig, folder / "emergence_vs_landscape.png")
    plt.close(fig)
    return path
