"""Statistics of a sweep, and the paper's claims checked against them.

All accuracies are test accuracies. The *accuracy gain* at epoch t is
``acc[t + 1] - acc[t]``; correlations pair it with ``log10 E`` at epoch t (NaN when
E = 0, such pairs are left out), pooled over sparsities, seeds and epochs, and per
sparsity. Convergence speed is the first epoch reaching 95% of the final accuracy.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SweepReport", "correlate", "epochs_to_fraction", "summarize", "to_markdown"]


def correlate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlations with two-sided p-values over the finite pairs.

    Examples
    --------
    >>> c = correlate(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 5, 9]))
    >>> c["spearman"], c["n"]
    (1.0, 4)
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(x.size), "spearman": math.nan, "spearman_p": math.nan, "pearson": math.nan, "pearson_p": math.nan}
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        s = stats.spearmanr(x, y)
        p = stats.pearsonr(x, y)
        out.update(spearman=float(s.statistic), spearman_p=float(s.pvalue), pearson=float(p.statistic),
                   pearson_p=float(p.pvalue))
    return out


def epochs_to_fraction(acc: np.ndarray, fraction: float = 0.95) -> np.ndarray:
    """First epoch at which accuracy reaches ``fraction`` of its final value (last axis = epoch).

    Examples
    --------
    >>> int(epochs_to_fraction(np.array([0.1, 0.5, 0.96, 0.92, 1.0])))
    2
    """
    final = acc[..., -1:]
    reached = acc >= fraction * final
    return np.argmax(reached, axis=-1)


def _mean_std(a: np.ndarray, axis: int = -1) -> tuple[float, float]:
    a = np.asarray(a, dtype=float)
    if not np.isfinite(a).any():
        return math.nan, math.nan
    return float(np.nanmean(a, axis=axis)), float(np.nanstd(a, axis=axis))


def _pm(m: float, s: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _p(v: float) -> str:
    return "—" if not math.isfinite(v) else (f"{v:.2g}" if v >= 1e-4 else f"{v:.1e}")


def _r(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:+.3f}"


@dataclass
class SweepReport:
    """Tables (lists of rows) and plain-language findings of one sweep."""

    title: str
    threshold: float
    per_sparsity: list[dict[str, Any]] = field(default_factory=list)
    correlations: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    extra: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


def summarize_sweep(ds: Any, *, threshold: float = 0.05, sel: dict[str, str] | None = None,
                    title: str = "") -> list[SweepReport]:
    """Reports of a sweep with any grid axes: one per grid setting (after ``sel``), and a size study.

    Parameters
    ----------
    ds : xarray.Dataset
    threshold : float, default 0.05
    sel : dict, optional
        Grid axes to fix, ``{"width": "2"}`` (see :func:`emergence.experiments.facets.select`).
    title : str

    Returns
    -------
    list of SweepReport
        One per combination of the remaining grid axes; then, when a ``width`` axis remains,
        the size study (log10 E and final accuracy against width, Spearman ρ across runs).

    Raises
    ------
    ConfigError
        For a ``sel`` key or value the results do not have.
    """
    from emergence.experiments.facets import facets, select, size_study

    ds = select(ds, sel)
    base = title or f"{ds.attrs.get('dataset', '?')} sweep"
    reports = [summarize(block, threshold=threshold, title=f"{base} — {label}" if label else base)
               for label, block in facets(ds)]
    if "width" in ds.dims and ds.sizes["width"] > 1:
        means, corrs = size_study(ds, threshold)
        rep = SweepReport(f"{base} — size study (width)", float(ds.threshold.sel(threshold=threshold,
                                                                                  method="nearest")))
        rep.extra = [("Emergence and accuracy by width (means over seeds)", means),
                     ("Spearman ρ across runs: width vs emergence and accuracy", corrs)]
        for row in corrs:
            rep.findings.append(
                f"{row['setting']}: width vs log10 E at epoch 0 ρ = {row['ρ(width, log10 E (epoch 0))']} "
                f"(p = {row['p (log10 E (epoch 0))']}), final ρ = {row['ρ(width, log10 E (final))']} "
                f"(p = {row['p (log10 E (final))']}); width vs final accuracy ρ = "
                f"{row['ρ(width, final accuracy)']} (p = {row['p (final accuracy)']}); n = {row['n runs']} runs.")
        reports.append(rep)
    return reports


def summarize(ds: Any, *, threshold: float = 0.05, title: str = "") -> SweepReport:
    """Compute the report of a sweep Dataset (see the module docstring for the definitions).

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep result.
    threshold : float, default 0.05
        The activity threshold the tables use (the nearest one recorded).
    title : str

    Returns
    -------
    SweepReport
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices where E = 0
        return _summarize(ds, threshold, title)


def _summarize(ds: Any, threshold: float, title: str) -> SweepReport:
    tau = float(ds.threshold.sel(threshold=threshold, method="nearest"))
    acc = ds.test_accuracy.values  # [S, R, E+1]
    elog = ds.emergence_log10.sel(threshold=tau).values
    rlog = ds.relative_emergence_log10.sel(threshold=tau).values
    sp = ds.sparsity.values
    rep = SweepReport(title or f"{ds.attrs.get('dataset', '?')} sweep", tau)
    to95 = epochs_to_fraction(acc)
    gain = np.diff(acc, axis=-1)
    decreasing = np.full(acc.shape[:2], np.nan)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            c = correlate(np.arange(elog.shape[-1]), elog[i, j])
            decreasing[i, j] = c["spearman"]
    for i, s in enumerate(sp):
        rep.per_sparsity.append({
            "sparsity": float(s),
            "actual sparsity": _pm(*_mean_std(ds.actual_sparsity.values[i]), 3),
            "final accuracy": _pm(*_mean_std(acc[i, :, -1])),
            "accuracy at epoch 1": _pm(*_mean_std(acc[i, :, min(1, acc.shape[-1] - 1)])),
            "epochs to 95% of final": _pm(*_mean_std(to95[i]), 1),
            "log10 E (epoch 0)": _pm(*_mean_std(elog[i, :, 0]), 2),
            "log10 E (final)": _pm(*_mean_std(elog[i, :, -1]), 2),
            "log10 relative E (epoch 0)": _pm(*_mean_std(rlog[i, :, 0]), 2),
            "log10 relative E (final)": _pm(*_mean_std(rlog[i, :, -1]), 2),
            "runs where E falls (Spearman vs epoch < 0)": f"{int(np.nansum(decreasing[i] < 0))}/{acc.shape[1]}",
        })
    groups = [("pooled", slice(None))] + [(f"sparsity {float(s):g}", slice(i, i + 1)) for i, s in enumerate(sp)]
    for name, sl in groups:
        c = correlate(elog[sl][..., :-1], gain[sl])
        rep.correlations.append({"group": name, "n": c["n"], "Spearman ρ": _r(c["spearman"]),
                                 "p (Spearman)": _p(c["spearman_p"]), "Pearson r": _r(c["pearson"]),
                                 "p (Pearson)": _p(c["pearson_p"])})
    for t in ds.threshold.values:
        e = ds.emergence_log10.sel(threshold=t).values
        c = correlate(e[..., :-1], gain)
        rel_s = correlate(np.broadcast_to(sp[:, None], rlog.shape[:2]),
                          ds.relative_emergence_log10.sel(threshold=t).values[..., -1])
        rep.thresholds.append({"threshold": float(t), "active fraction (final)":
                               _pm(*_mean_std(ds.active_fraction.sel(threshold=t).values[..., -1, :].mean(-1).ravel())),
                               "ρ(log10 E, gain)": _r(c["spearman"]), "p": _p(c["spearman_p"]),
                               "ρ(sparsity, log10 rel. E)": _r(rel_s["spearman"]), "p ": _p(rel_s["spearman_p"])})
    _findings(rep, ds, acc, elog, rlog, to95, decreasing, sp)
    _landscape(rep, ds, elog, rlog)
    return rep


_LANDSCAPE_NAMES = {"hessian_top": "top Hessian eigenvalue", "hessian_trace": "Hessian trace",
                    "slice_minima": "local minima on a 1-D slice", "slice_roughness": "slice roughness (TV / range)"}


def _landscape(rep: SweepReport, ds: Any, elog: np.ndarray, rlog: np.ndarray) -> None:
    """Correlations of emergence with the landscape figures, where the sweep probed them."""
    if "hessian_top" not in ds:
        return
    rows = []
    for var, label in _LANDSCAPE_NAMES.items():
        v = ds[var].values
        probed = np.isfinite(v)
        for what, e in (("log10 E", elog), ("log10 relative E", rlog)):
            c = correlate(e[probed], v[probed])
            rows.append({"landscape figure": label, "vs": what, "n": c["n"], "Spearman ρ": _r(c["spearman"]),
                         "p (Spearman)": _p(c["spearman_p"]), "Pearson r": _r(c["pearson"]),
                         "p (Pearson)": _p(c["pearson_p"])})
    rep.extra.append(("Emergence vs loss-landscape ruggedness (across sparsities, seeds and probed epochs)", rows))
    by = {(r["landscape figure"], r["vs"]): r for r in rows}

    def verdict(vars_: tuple[str, ...]) -> str:
        cells = [by[(_LANDSCAPE_NAMES[v], "log10 E")] for v in vars_]
        sig = [c for c in cells if c["p (Spearman)"] != "—" and float(c["p (Spearman)"]) < 0.05]
        if not sig:
            return "no significant relation"
        signs = {float(c["Spearman ρ"]) > 0 for c in sig}
        return "rises with emergence" if signs == {True} else ("falls with emergence" if signs == {False}
                                                                 else "mixed")

    parts = [f"{_LANDSCAPE_NAMES[v]}: ρ = {by[(_LANDSCAPE_NAMES[v], 'log10 E')]['Spearman ρ']} "
             f"(p = {by[(_LANDSCAPE_NAMES[v], 'log10 E')]['p (Spearman)']})"
             for v in ("hessian_top", "hessian_trace", "slice_minima", "slice_roughness")]
    rep.findings.append(
        f"Emergence vs landscape (claim 4; n = {rows[0]['n']}): " + "; ".join(parts)
        + f". Sharpness (Hessian) {verdict(('hessian_top', 'hessian_trace'))}; ruggedness (slice minima, "
        f"roughness) {verdict(('slice_minima', 'slice_roughness'))}. Across sparsities both emergence and the "
        "landscape follow the number of weights, so these are not causal."
    )


def _findings(rep: SweepReport, ds: Any, acc: np.ndarray, elog: np.ndarray, rlog: np.ndarray,
              to95: np.ndarray, decreasing: np.ndarray, sp: np.ndarray) -> None:
    pooled = rep.correlations[0]
    rel = correlate(np.broadcast_to(sp[:, None], rlog.shape[:2]), rlog[..., -1])
    rep.findings.append(
        f"Relative emergence vs sparsity (final epoch, τ={rep.threshold:g}): Spearman ρ = {_r(rel['spearman'])} "
        f"(p = {_p(rel['spearman_p'])}, n = {rel['n']}) — "
        + ("pruned networks have higher relative emergence." if rel["spearman"] > 0 and rel["spearman_p"] < 0.05
           else "no significant increase of relative emergence with pruning.")
    )
    e1 = acc[:, :, min(1, acc.shape[-1] - 1)].mean(1)
    fin = acc[:, :, -1].mean(1)
    spd = to95.mean(1)
    rep.findings.append(
        "Early training (accuracy after epoch 1, by sparsity): "
        + ", ".join(f"{float(s):g}: {a:.3f}" for s, a in zip(sp, e1))
        + "; epochs to 95% of final: " + ", ".join(f"{float(s):g}: {v:.1f}" for s, v in zip(sp, spd))
        + "; final accuracy: " + ", ".join(f"{float(s):g}: {a:.3f}" for s, a in zip(sp, fin)) + "."
    )
    falls = int(np.nansum(decreasing < 0))
    change = np.nanmean(elog[..., -1] - elog[..., 0])
    rep.findings.append(
        f"Emergence during training: falls (Spearman vs epoch < 0) in {falls} of {decreasing.size} runs; "
        f"mean change of log10 E from epoch 0 to the end: {change:+.2f}."
    )
    rep.findings.append(
        f"Emergence at epoch t vs accuracy gain from t to t+1 (pooled): Spearman ρ = {pooled['Spearman ρ']} "
        f"(p = {pooled['p (Spearman)']}), Pearson r = {pooled['Pearson r']} (p = {pooled['p (Pearson)']}), "
        f"n = {pooled['n']}."
    )


def _table_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(k.strip() for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(rep: SweepReport) -> str:
    """The report as Markdown (tables and findings; empty tables are left out)."""
    parts = [f"## {rep.title}", "", f"Activity threshold τ = {rep.threshold:g}; accuracies are test accuracies.", ""]
    for title, rows in [("By sparsity (mean ± std over seeds)", rep.per_sparsity),
                        ("Emergence at epoch t vs accuracy gain from t to t+1", rep.correlations),
                        ("Threshold sensitivity", rep.thresholds), *rep.extra]:
        if rows:
            parts += [f"### {title}", "", _table_md(rows), ""]
    parts += ["### Findings", ""] + [f"- {f}" for f in rep.findings] + [""]
    return "\n".join(parts)
