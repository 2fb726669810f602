"""Report statistics against scipy on data with known answers."""

import numpy as np
import pytest
from scipy import stats

from emergence.experiments.report import correlate, epochs_to_fraction, summarize, to_markdown
from emergence.experiments.results import empty_results


def _known(seed=0):
    rng = np.random.default_rng(seed)
    ds = empty_results([0.0, 0.5, 0.9], [0, 1, 2], 5, [0.01, 0.05], ["input", "fc"], {"dataset": "known"})
    acc = np.cumsum(rng.random((3, 3, 6)) * 0.1, axis=-1)
    ds["test_accuracy"].values[...] = acc
    ds["emergence_log10"].values[...] = rng.normal(5, 1, (3, 3, 6, 2))
    ds["emergence_log10"].values[0, 0, 2, 1] = np.nan  # not measured somewhere: the pair is left out
    ds["relative_emergence_log10"].values[...] = rng.normal(0, 1, (3, 3, 6, 2)) + np.array([0, 5, 10])[:, None, None,
                                                                                                 None]
    ds["active_fraction"].values[...] = rng.random((3, 3, 6, 2, 2))
    ds["actual_sparsity"].values[...] = np.array([0.0, 0.5, 0.9])[:, None]
    for v in ("train_loss", "train_accuracy", "test_loss"):
        ds[v].values[...] = rng.random((3, 3, 6))
    return ds


def test_pooled_description_matches_scipy_and_carries_no_p_value():
    ds = _known()
    rep = summarize(ds, threshold=0.05)
    e = ds.emergence_log10.sel(threshold=0.05).values[..., :-1].ravel()
    g = np.diff(ds.test_accuracy.values, axis=-1).ravel()
    ok = np.isfinite(e)
    s, p = stats.spearmanr(e[ok], g[ok]), stats.pearsonr(e[ok], g[ok])
    pooled = rep.correlations[0]
    assert pooled["group"] == "pooled" and pooled["points (runs x epochs)"] == 3 * 3 * 5 - 1
    assert float(pooled["Spearman ρ"]) == pytest.approx(s.statistic, abs=5e-4)
    assert float(pooled["Pearson r"]) == pytest.approx(p.statistic, abs=5e-4)
    assert not any(k == "p" or k.startswith("p (") for k in pooled)  # description only
    e1 = ds.emergence_log10.sel(threshold=0.05, sparsity=0.5).values[..., :-1].ravel()
    g1 = np.diff(ds.test_accuracy.sel(sparsity=0.5).values, axis=-1).ravel()
    assert float(rep.correlations[2]["Spearman ρ"]) == pytest.approx(stats.spearmanr(e1, g1).statistic, abs=5e-4)


def test_claims_are_run_level_and_adjusted_together():
    ds = _known()
    rep = summarize(ds, threshold=0.05)
    c1 = rep.claim("C1")
    per_run = [stats.spearmanr(ds.emergence_log10.sel(threshold=0.05).values[i, j, :-1],
                               np.diff(ds.test_accuracy.values[i, j])).statistic
               for i in range(3) for j in range(3) if not (i == 0 and j == 0)]
    assert c1.estimate.n == 9 and c1.estimate.test == "t over runs"
    raw = [t.estimate.p for t in rep.claims]
    assert c1.p_adjusted >= c1.estimate.p and len(raw) > 10
    from emergence.experiments.claims import CLAIMS
    from emergence.experiments.stats import adjust

    primary = [t for t in rep.claims if t.family == "primary"]
    secondary = [t for t in rep.claims if t.family == "secondary"]
    assert len(primary) + len(secondary) == len(rep.claims)
    assert sorted(t.claim for t in primary) == sorted(c for c, claim in CLAIMS.items() if claim.primary
                                                      and not claim.landscape)  # one test per claim, at τ
    assert all(t.threshold in (None, 0.05) and t.group == "across runs" for t in primary)
    np.testing.assert_allclose([t.p_adjusted for t in primary], adjust([t.estimate.p for t in primary]))
    np.testing.assert_allclose([t.p_adjusted for t in secondary], adjust([t.estimate.p for t in secondary], "bh"))
    assert np.isfinite(per_run).sum() >= 8


def test_correlate_matches_scipy_exactly():
    rng = np.random.default_rng(1)
    x, y = rng.random(50), rng.random(50)
    c = correlate(x, y)
    assert c["spearman"] == stats.spearmanr(x, y).statistic and c["pearson_p"] == stats.pearsonr(x, y).pvalue
    assert np.isnan(correlate(np.ones(5), np.arange(5.0))["spearman"])  # constant input: undefined


def test_convergence_and_relative_emergence_findings():
    acc = np.array([[0.1, 0.5, 0.8, 0.95, 1.0], [0.1, 0.97, 0.98, 0.99, 1.0]])
    assert epochs_to_fraction(acc).tolist() == [3, 1]
    rep = summarize(_known())
    assert rep.per_sparsity[1]["sparsity"] == 0.5
    c2c = rep.claim("C2c")
    assert c2c.verdict == "holds" and c2c.estimate.test == "permutation (100,000 draws)"  # built in: +5 per level
    assert any(f.startswith("C2c (pruned networks have higher relative emergence") for f in rep.findings)
    assert " ± " in rep.per_sparsity[0]["final accuracy"] and "[" in rep.per_sparsity[0]["final accuracy"]
    md = to_markdown(rep)
    assert "| pooled |" in md and "### Findings" in md and "Holm" in md


def test_e_zero_is_data_counted_in_the_report_and_ranked_lowest():
    """E falls to 0 (log10 E = -inf) at the last epochs of some runs: those epochs stay in the rank tests (as the
    lowest values, so each run's trend is exactly -1) and the report counts them."""
    rng = np.random.default_rng(3)
    ds = empty_results([0.0, 0.5], [0, 1, 2], 5, [0.05], ["input", "fc"], {"dataset": "zero"})
    ds["test_accuracy"].values[...] = np.cumsum(rng.random((2, 3, 6)) * 0.1, axis=-1)
    elog = 6 - np.arange(6.0) + rng.normal(0, 0.01, (2, 3, 6))  # strictly falling in every run
    elog[1, :, -1] = -np.inf  # sparsity 0.5: E = 0 at the last epoch of every run
    ds["emergence_log10"].values[..., 0] = elog
    ds["relative_emergence_log10"].values[..., 0] = elog - 3
    ds["active_fraction"].values[...] = 0.5
    rep = summarize(ds, threshold=0.05)
    c3 = rep.claim("C3")
    assert c3.estimate.value == -1.0 and c3.estimate.n == 6 and c3.estimate.test == "sign test (every run alike)"
    assert "E = 0 in 3 of 3 runs" in rep.per_sparsity[1]["log10 E (final)"]
    assert "E = 0 in" not in rep.per_sparsity[0]["log10 E (final)"]
    assert any(f.startswith("E = 0 at 3 of 36 measured epochs") for f in rep.findings)
    assert "E = 0 at 3 of 36" in to_markdown(rep)
    dropped = ds.copy(deep=True)  # what the old NaN did: the rise from zero left out, the trend weaker
    dropped["emergence_log10"].values[1, :, -1, 0] = np.nan
    assert summarize(dropped, threshold=0.05).claim("C3").estimate.n == 6


def test_claims_as_the_paper_states_them_across_runs():
    """C1 across runs (E at epoch 0 vs final accuracy, within sparsity levels) and C2a as convergence relative to
    each run's own final accuracy, on a synthetic sweep built to have both effects."""
    rng = np.random.default_rng(5)
    sp = np.array([0.0, 0.5, 0.8, 0.95])
    ds = empty_results(sp, list(range(5)), 8, [0.05], ["input", "fc"], {"dataset": "synthetic"})
    e0 = rng.normal(5, 1, (4, 5))
    final = 0.9 - 0.05 * sp[:, None] + 0.02 * (e0 - 5)  # higher E at epoch 0, higher final accuracy
    rate = 0.3 + 2 * sp[:, None] + rng.normal(0, 0.05, (4, 5))  # sparser nets approach their own final faster
    epochs = np.arange(9.0)
    acc = final[..., None] * (1 - np.exp(-rate[..., None] * epochs))
    ds["test_accuracy"].values[...] = acc
    ds["emergence_log10"].values[..., 0] = e0[..., None] + 0.1 * epochs
    ds["relative_emergence_log10"].values[...] = 0.0
    ds["active_fraction"].values[...] = 0.5
    rep = summarize(ds, threshold=0.05)
    c1, c2a = rep.claim("C1 runs"), rep.claim("C2a")
    assert c1.family == "primary" and "stratified permutation" in c1.estimate.test
    assert c1.estimate.value > 0.8 and c1.verdict == "holds"
    assert c2a.estimate.value < -0.7 and c2a.verdict == "holds" and c2a.threshold is None  # epochs are whole: ties
    assert rep.claim("C2a area").estimate.value > 0.8
