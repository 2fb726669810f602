"""Verdicts per setting across the robustness grid, and the emergence-promoting initialization against the default.

:func:`robustness_report` tests every claim of :mod:`emergence.experiments.claims` in every
(dataset, optimizer, pruning schedule, threshold) setting, adjusts all p-values together
(Holm) and summarizes, per claim, where it holds. :func:`init_report` compares runs started
with ``init_alpha`` = alpha against alpha = 1 (the default initialization) on the same seeds:
paired differences with t-intervals and paired t-tests, Holm-adjusted.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
.. [2] J. Li, T. George, C. Silva, "Emergence-promoting initialization", arXiv:2407.19044, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from emergence.defaults import DEFAULT_THRESHOLD, with_default_threshold
from emergence.experiments.claims import (
    ACCURACY_CLAIMS,
    ALPHA,
    CLAIMS,
    ClaimTest,
    adjust_all,
    claim_tests,
    epochs_to_fraction,
)
from emergence.experiments.facets import facets
from emergence.experiments.results import recorded_threshold
from emergence.experiments.stats import Estimate, adjust, format_p, mean_ci
from emergence.experiments.writers import table_md

__all__ = ["init_report", "robustness_report"]

_THRESHOLDS = with_default_threshold(0.0, 0.1)


def robustness_tests(sweeps: Sequence[tuple[str, Any]], thresholds: Sequence[float] = _THRESHOLDS) -> list[ClaimTest]:
    """Every claim in every setting of ``sweeps`` (``(name, Dataset)`` pairs), Holm-adjusted together.

    The accuracy claims are tested once per setting, the emergence claims at every threshold; claims
    marked ``robustness=False`` (C1 controlled for epoch) are left out (the grid's runs are too short for them).
    """
    once = [c.id for c in CLAIMS.values() if c.robustness and c.threshold_free]
    per_tau = [c.id for c in CLAIMS.values() if c.robustness and not c.threshold_free]
    tests: list[ClaimTest] = []
    for name, ds in sweeps:
        for label, block in facets(ds):
            setting = f"{name}, {label}" if label else name
            for i, tau in enumerate(thresholds):
                tests += claim_tests(block, tau, setting, include=[*once, *per_tau] if i == 0 else per_tau)
    return adjust_all(tests)


def robustness_report(sweeps: Sequence[tuple[str, Any]], thresholds: Sequence[float] = _THRESHOLDS) -> str:
    """Markdown: a verdict matrix (claim x setting), a one-line summary per claim, and every test in full.

    Parameters
    ----------
    sweeps : sequence of (str, xarray.Dataset)
        Named sweeps (e.g. ``"mnist-adam"``), each possibly with grid axes (e.g. ``prune_at``).
    thresholds : sequence of float
    """
    tests = robustness_tests(sweeps, thresholds)
    mark = {"holds": "✓", "opposite": "✗", "not shown": "·"}
    settings = list(dict.fromkeys(t.setting for t in tests))
    claims = list(dict.fromkeys(t.claim for t in tests))
    matrix = [{"claim": claim, **{s: " ".join(mark[t.verdict] for t in tests if t.claim == claim and t.setting == s)
                                  for s in settings}} for claim in claims]
    lines = ["## Robustness: each claim's verdict per setting", "",
             f"{len(tests)} tests (one value per run; Holm-adjusted together). Cells: ✓ holds, ✗ significant "
             f"in the opposite direction, · not shown; for the emergence claims one mark per threshold "
             f"({', '.join(f'τ={t:g}' for t in thresholds)}), for the accuracy claims "
             f"{'/'.join(ACCURACY_CLAIMS)} one mark.", "",
             table_md(matrix), "", "### Where each claim holds", ""]
    for claim in claims:
        mine = [t for t in tests if t.claim == claim]
        held = [t.where for t in mine if t.verdict == "holds"]
        opp = [t.where for t in mine if t.verdict == "opposite"]
        summary = (f"holds in {len(held)} of {len(mine)} settings" + (f" ({'; '.join(held)})" if held else "")
                   + (f"; significantly opposite in {len(opp)}" if opp else ""))
        lines.append(f"- **{claim}** — {CLAIMS[claim].statement}: {summary}.")
    lines += ["", "### Every test", "", table_md([t.row() for t in tests]), ""]
    return "\n".join(lines)


def _paired(x: np.ndarray, y: np.ndarray) -> Estimate:
    """Mean of the paired differences ``y - x`` with a 95% t-interval and the paired t-test p."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    d = (y - x)[ok]
    m, _, lo, hi = mean_ci(d)
    p = math.nan
    if d.size >= 2 and np.ptp(d) > 0:
        p = float(stats.ttest_rel(y[ok], x[ok]).pvalue)
    elif d.size >= 2 and np.all(d == 0):
        p = 1.0
    return Estimate(m, lo, hi, p, int(d.size), "paired t over seeds")


def init_report(sweeps: Sequence[tuple[str, Any]], threshold: float = DEFAULT_THRESHOLD) -> str:
    """Markdown: the emergence-promoting init (``init_alpha`` axis) against alpha = 1, per dataset.

    For each alpha: log10 E (and E from hidden sources) at epoch 0, accuracy after epochs 1 and
    5, epochs to 95% of final, final accuracy (mean ± SD [95% CI] over seeds); then each
    alpha != 1 minus alpha = 1 on the same seeds, with Holm-adjusted paired t-tests.
    """
    rows, diffs = [], []
    for name, ds in sweeps:
        if "init_alpha" not in ds.dims:
            continue
        tau = recorded_threshold(ds, threshold)
        d0 = ds.isel(sparsity=0)
        dims = ("init_alpha", "seed", "epoch")
        acc = d0.test_accuracy.transpose(*dims).values
        e0 = d0.emergence_log10.sel(threshold=tau).transpose(*dims).values[..., 0]
        h0 = (d0.emergence_hidden_log10.sel(threshold=tau).transpose(*dims).values[..., 0]
              if "emergence_hidden_log10" in d0 else np.full_like(e0, np.nan))
        last = acc.shape[-1] - 1
        metrics = {"log10 E (epoch 0)": e0, "log10 E hidden (epoch 0)": h0,
                   "accuracy after epoch 1": acc[..., min(1, last)], "accuracy after epoch 5": acc[..., min(5, last)],
                   "epochs to 95% of final": epochs_to_fraction(acc).astype(float), "final accuracy": acc[..., -1]}
        alphas = [float(a) for a in ds.init_alpha.values]
        for i, a in enumerate(alphas):
            row = {"dataset": name, "alpha": f"{a:g}", "seeds": acc.shape[1]}
            for k, v in metrics.items():
                m, sd, lo, hi = mean_ci(v[i])
                row[k] = "—" if not math.isfinite(m) else f"{m:.3f} ± {sd:.3f} [{lo:.3f}, {hi:.3f}]"
            rows.append(row)
        base = alphas.index(1.0) if 1.0 in alphas else None
        if base is None:
            continue
        for i, a in enumerate(alphas):
            if i != base:
                for k, v in metrics.items():
                    diffs.append((name, a, k, _paired(v[base], v[i])))
    if not rows:
        return ""
    adj = adjust([e.p for *_, e in diffs])
    drows = []
    for (name, a, k, e), pa in zip(diffs, adj, strict=False):
        drows.append({"dataset": name, "alpha": f"{a:g}", "quantity": k, "alpha minus default [95% CI]": e.ci(),
                      "n": e.n, "p": format_p(e.p), "p adj. (Holm)": format_p(pa),
                      "significant": "yes" if math.isfinite(pa) and pa < ALPHA else "no"})
    return "\n".join(["## Emergence-promoting initialization (Li, George, Silva 2024) against the default", "",
                      f"Dense MLPs, τ = {threshold:g}; alpha = 1 is the default initialization; the same seeds "
                      "give the same standard initialization before the rescaling, so comparisons are paired "
                      "by seed.", "", table_md(rows), "", "### alpha against the default, paired by seed", "",
                      table_md(drows), ""])
