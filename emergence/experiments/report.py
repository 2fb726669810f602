"""Statistics of a sweep, and the paper's claims checked against them with run-level tests.

All accuracies are test accuracies. The *accuracy gain* at epoch t is
``acc[t + 1] - acc[t]``; convergence speed is the first epoch reaching 95% of the final
accuracy. Means over runs come with the sample SD (ddof = 1) and a 95% t-interval.

Inference uses one value per independent run (:mod:`emergence.experiments.claims`,
:mod:`emergence.experiments.stats`); the pre-specified primary family (one test per claim as the paper
states it, at the report's threshold) is Holm-adjusted, every other test Benjamini-Hochberg-adjusted, and
the verdicts use the adjusted values; every "not shown" comes with the smallest effect the runs could
detect and an equivalence test. Correlations that pool all epochs of all runs are
shown only as *description* (no p-value): a run's epochs are not independent.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the claims).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emergence.defaults import DEFAULT_THRESHOLD
from emergence.experiments.baselines import what_e_adds
from emergence.experiments.claims import (
    CLAIMS,
    ClaimData,
    ClaimTest,
    adjust_families,
    claim_tests,
    epochs_to_fraction,
    landscape_tests,
)
from emergence.experiments.results import cells_note, recorded_threshold
from emergence.experiments.stats import correlate, format_p, partial_spearman
from emergence.experiments.writers import mean_sd_ci, signed, table_md

#: The claims of the threshold-sensitivity table (see :attr:`~emergence.experiments.claims.Claim.threshold_table`).
_THRESHOLD_TABLE = tuple(c.id for c in CLAIMS.values() if c.threshold_table)

__all__ = ["SweepReport", "correlate", "epochs_to_fraction", "summarize", "summarize_sweep", "table_md", "to_markdown"]
# correlate and table_md are re-exported from .stats and .writers, where they live


@dataclass
class SweepReport:
    """Tables (lists of rows), claim tests and plain-language findings of one sweep."""

    title: str
    threshold: float
    per_sparsity: list[dict[str, Any]] = field(default_factory=list)
    correlations: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    extra: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    claims: list[ClaimTest] = field(default_factory=list)

    def claim(self, claim: str, threshold: float | None = None) -> ClaimTest | None:
        """The test of ``claim`` across runs at ``threshold`` (default: the report's; accuracy claims have
        none)."""
        tau = self.threshold if threshold is None else threshold
        for t in self.at(tau):
            if t.claim == claim and t.group == "across runs":
                return t
        return None

    def at(self, threshold: float) -> list[ClaimTest]:
        """The claim tests that hold at ``threshold``: those made at it, and the threshold-free ones."""
        order = list(CLAIMS)
        return sorted((t for t in self.claims if t.threshold is None or t.threshold == threshold),
                      key=lambda t: order.index(t.claim))


def summarize_sweep(ds: Any, *, threshold: float = DEFAULT_THRESHOLD, sel: dict[str, str] | None = None,
                    title: str = "") -> list[SweepReport]:
    """Reports of a sweep with any grid axes: one per grid setting (after ``sel``), and a size study.

    Parameters
    ----------
    ds : xarray.Dataset
    threshold : float, default ``DEFAULT_THRESHOLD``
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
    note = cells_note(ds)
    base = (title or f"{ds.attrs.get('dataset', '?')} sweep") + (f" ({note})" if note else "")
    reports = [summarize(block, threshold=threshold, title=f"{base} — {label}" if label else base)
               for label, block in facets(ds)]
    if "width" in ds.dims and ds.sizes["width"] > 1:
        means, corrs = size_study(ds, threshold)
        rep = SweepReport(f"{base} — size study (width)", recorded_threshold(ds, threshold))
        rep.extra = [("Emergence and accuracy by width (means over seeds)", means),
                     ("Spearman ρ across runs: width vs emergence and accuracy", [c.row() for c in corrs])]
        rep.findings += [c.finding() for c in corrs]
        reports.append(rep)
    return reports


def summarize(ds: Any, *, threshold: float = DEFAULT_THRESHOLD, title: str = "") -> SweepReport:
    """Compute the report of a sweep Dataset (see the module docstring for the definitions).

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep result.
    threshold : float, default ``DEFAULT_THRESHOLD``
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
    tau = recorded_threshold(ds, threshold)
    data = ClaimData.of(ds, tau)  # [sparsity, seed, epoch], by dimension name
    acc, elog, rlog, hid = data.accuracy, data.log10, data.relative_log10, data.hidden_log10
    sp = ds.sparsity.values
    rep = SweepReport(title or f"{ds.attrs.get('dataset', '?')} sweep", tau)
    to95 = epochs_to_fraction(acc)
    gain = np.diff(acc, axis=-1)
    one = min(1, acc.shape[-1] - 1)
    tests = [t for i, th in enumerate(ds.threshold.values) for t in claim_tests(
        ds, float(th), include=None if i == 0 else [c.id for c in CLAIMS.values() if not c.threshold_free])]
    tests += landscape_tests(ds, tau)
    rep.claims = adjust_families(tests, tau)
    for i, s in enumerate(sp):
        row = {"sparsity": float(s), "runs": int(np.isfinite(acc[i, :, -1]).sum()),
               "final accuracy": mean_sd_ci(acc[i, :, -1]), "accuracy at epoch 1": mean_sd_ci(acc[i, :, one]),
               "epochs to 95% of final": mean_sd_ci(to95[i], 1),
               "log10 E (epoch 0)": _log_pm(elog[i, :, 0]), "log10 E (final)": _log_pm(elog[i, :, -1]),
               "log10 relative E (final)": _log_pm(rlog[i, :, -1])}
        if hid is not None:
            row["log10 E, hidden sources (epoch 0)"] = _log_pm(hid[i, :, 0])
            row["log10 E, hidden sources (final)"] = _log_pm(hid[i, :, -1])
        rep.per_sparsity.append(row)
    groups = [("pooled", slice(None))] + [(f"sparsity {float(s):g}", slice(i, i + 1)) for i, s in enumerate(sp)]
    for name, sl in groups:
        c = correlate(elog[sl][..., :-1], gain[sl])
        rep.correlations.append({"group": name, "points (runs x epochs)": c["n"], "Spearman ρ": signed(c["spearman"]),
                                 "Pearson r": signed(c["pearson"])})
    ep = np.broadcast_to(np.arange(gain.shape[-1], dtype=float), gain.shape)
    spg = np.broadcast_to(sp[:, None, None].astype(float), gain.shape)
    r, _, n = partial_spearman(elog[..., :-1].ravel(), gain.ravel(), np.column_stack([ep.ravel(), spg.ravel()]))
    rep.correlations.append({"group": "pooled, partial given epoch and sparsity", "points (runs x epochs)": n,
                             "Spearman ρ": signed(r), "Pearson r": "—"})
    c = correlate(ep, gain)
    rep.correlations.append({"group": "epoch instead of E (pooled)", "points (runs x epochs)": c["n"],
                             "Spearman ρ": signed(c["spearman"]), "Pearson r": signed(c["pearson"])})
    for t in ds.threshold.values:
        row = {"threshold": float(t), "active fraction (final)":
               mean_sd_ci(ds.active_fraction.sel(threshold=t).values[..., -1, :].mean(-1).ravel())}
        for cid in _THRESHOLD_TABLE:
            ct = rep.claim(cid, float(t))
            if ct is not None:
                row[f"{cid} effect [95% CI]"] = ct.estimate.ci()
                row[f"{cid} p adj."] = format_p(ct.p_adjusted)
                row[f"{cid}"] = ct.verdict
        rep.thresholds.append(row)
    rep.extra.append(("Claims at this threshold (one value per run; primary family Holm, the rest Benjamini-Hochberg)",
                      [t.row() | {"statement": CLAIMS[t.claim].statement} for t in rep.at(tau)]))
    _sources(rep, ds, tau)
    _what_e_adds(rep, ds, tau, data)
    _findings(rep, acc, to95, one, sp)
    note = _zero_epochs(elog)
    if note:
        rep.findings.append(note)
    return rep


def _baselines_at(ds: Any, tau: float, epoch: np.ndarray) -> dict[str, np.ndarray]:
    """Per run (``[sparsity * seed]``), the simpler quantities at each run's ``epoch`` index: active units per
    hidden layer, the mean active fraction, the weight norm and the path norm (those the results hold)."""
    dims = ("sparsity", "seed", "epoch")
    at = epoch.reshape(-1)

    def pick(v: np.ndarray) -> np.ndarray:  # [S, R, E, ...] -> [S * R, ...] at each run's epoch
        flat = v.reshape(-1, *v.shape[2:])
        return flat[np.arange(flat.shape[0]), at]

    layers = [str(v) for v in ds.layer.values]
    hidden = [j for j, name in enumerate(layers) if not name.startswith("input")]
    out: dict[str, np.ndarray] = {}
    if "active_count" in ds and hidden:
        out["active units per layer"] = pick(ds.active_count.sel(threshold=tau).transpose(*dims, "layer").values)[
            :, hidden]
    out["active fraction"] = pick(ds.active_fraction.sel(threshold=tau).transpose(*dims, "layer").values).mean(-1)
    for var, name in (("weight_norm", "weight norm"), ("path_norm_log10", "l1 path norm")):
        if var in ds and np.isfinite(ds[var].values).any():
            out[name] = pick(ds[var].transpose(*dims).values)
    return out


def _what_e_adds(rep: SweepReport, ds: Any, tau: float, data: ClaimData) -> None:
    """The table "what E adds": for the predictive claims, E's partial rank correlation with the outcome beyond
    each simpler quantity (and all of them), given the sparsity level, across runs."""
    runs = data.accuracy.shape[0] * data.accuracy.shape[1]
    if runs < 6 or data.epochs < 2:
        return
    rows = []
    zero = np.zeros(data.accuracy.shape[:2], dtype=int)
    adds = what_e_adds(data.accuracy[..., -1], data.log10[..., 0], data.sparsity, _baselines_at(ds, tau, zero))
    rows += [a.row("final accuracy (C1 runs: E at epoch 0)") for a in adds]
    if "hessian_top" in ds:
        v = ds.hessian_top.transpose("sparsity", "seed", "epoch").values
        probed = np.isfinite(v)
        if probed.any():
            last = np.where(probed.any(-1), v.shape[-1] - 1 - np.argmax(probed[..., ::-1], axis=-1), 0)
            fig = np.take_along_axis(v, last[..., None], -1)[..., 0]
            e = np.take_along_axis(data.log10, last[..., None], -1)[..., 0]
            adds = what_e_adds(fig, e, data.sparsity, _baselines_at(ds, tau, last))
            rows += [a.row("top Hessian eigenvalue (C4 top: E at the probed epoch)") for a in adds]
    rep.extra.append(("What E adds: partial rank correlation across runs of each outcome with log10 E, given the "
                      "sparsity level and the simpler quantity named (permutation p of E's residuals)", rows))


def _log_pm(a: np.ndarray, digits: int = 2) -> str:
    """:func:`mean_sd_ci` of the runs with E > 0, and how many runs had E = 0 (log10 E = -inf) when some did."""
    a = np.asarray(a, dtype=float)
    zero, measured = int(np.isneginf(a).sum()), int((~np.isnan(a)).sum())
    text = mean_sd_ci(np.where(np.isneginf(a), np.nan, a), digits)
    return text + (f" (E = 0 in {zero} of {measured} runs)" if zero else "")


def _zero_epochs(elog: np.ndarray) -> str | None:
    """One finding: at how many measured (run, epoch) points E = 0, and how the tests treat them."""
    zero, measured = int(np.isneginf(elog).sum()), int((~np.isnan(elog)).sum())
    if not zero:
        return None
    return (f"E = 0 at {zero} of {measured} measured epochs (runs × epochs): log10 E = -inf there, ranked lowest in "
            "every rank test and left out of the means.")


def _sources(rep: SweepReport, ds: Any, tau: float) -> None:
    """Where E comes from: the input layers' share, and active units per layer at epoch 0 and at the end."""
    dims = ("sparsity", "seed", "epoch", "layer")
    share = ds.emergence_share.sel(threshold=tau).transpose(*dims).values
    layers = [str(v) for v in ds.layer.values]
    inputs = [j for j, name in enumerate(layers) if name == "input" or name.startswith("input")]
    rows = []
    for i, s in enumerate(ds.sparsity.values):
        row = {"sparsity": float(s)}
        if inputs:
            row["share of E from inputs (final)"] = mean_sd_ci(share[i, :, -1][..., inputs].sum(-1), 4)
        if "active_count" in ds:
            cnt = ds.active_count.sel(threshold=tau).transpose(*dims).values[i]  # [seed, epoch, layer]
            for j, name in enumerate(layers):
                if j not in inputs:
                    row[f"active in {name}: epoch 0 → final"] = (f"{np.nanmean(cnt[:, 0, j]):.1f} → "
                                                                f"{np.nanmean(cnt[:, -1, j]):.1f}")
        rows.append(row)
    rep.extra.append(("Where E comes from (means over runs)", rows))


def _findings(rep: SweepReport, acc: np.ndarray, to95: np.ndarray, one: int, sp: np.ndarray) -> None:
    for t in rep.at(rep.threshold):
        if t.group != "across runs":
            continue
        e = t.estimate
        rep.findings.append(f"{t.claim} ({CLAIMS[t.claim].statement}): effect {e.ci()}, n = {e.n} ({e.test}), "
                            f"p = {format_p(e.p)}, adjusted p = {format_p(t.p_adjusted)} ({t.family}) — {t.verdict}"
                            + (f"; {t.sensitivity()}." if t.verdict == "not shown" and t.sensitivity() else "."))
    rep.findings.append(
        "Accuracy after epoch 1, by sparsity: " + ", ".join(f"{float(s):g}: {a:.3f}" for s, a in
                                                            zip(sp, acc[:, :, one].mean(1), strict=False))
        + "; epochs to 95% of final: "
        + ", ".join(f"{float(s):g}: {v:.1f}" for s, v in zip(sp, to95.mean(1), strict=False))
        + "; final accuracy: "
        + ", ".join(f"{float(s):g}: {a:.3f}" for s, a in zip(sp, acc[:, :, -1].mean(1), strict=False))
        + "."
    )


def to_markdown(rep: SweepReport) -> str:
    """The report as Markdown (tables and findings; empty tables are left out)."""
    parts = [f"## {rep.title}", "", f"Activity threshold τ = {rep.threshold:g}; accuracies are test accuracies.", ""]
    for title, rows in [("By sparsity (mean ± SD [95% CI] over runs)", rep.per_sparsity),
                        ("Description only: log10 E at epoch t vs accuracy gain from t to t+1, pooled over "
                         "epochs (not a test: a run's epochs are not independent)", rep.correlations),
                        (f"Threshold sensitivity (run-level claims {', '.join(_THRESHOLD_TABLE)}; adjusted p)",
                         rep.thresholds),
                        *rep.extra]:
        if rows:
            parts += [f"### {title}", "", table_md(rows), ""]
    parts += ["### Findings", ""] + [f"- {f}" for f in rep.findings] + [""]
    return "\n".join(parts)
