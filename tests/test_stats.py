"""Run-level statistics against scipy and brute force, on data with known answers."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from emergence.errors import ConfigError
from emergence.experiments.claims import adjust_all, claim_tests, verdict
from emergence.experiments.results import empty_results
from emergence.experiments.stats import (
    adjust,
    bootstrap_ci,
    mean_ci,
    partial_spearman,
    pooled_false_positive_rate,
    run_level,
    spearman_permutation,
)


def test_holm_and_bh_match_their_definitions_and_scipy():
    rng = np.random.default_rng(0)
    p = rng.random(30) ** 3
    m = p.size
    order = np.argsort(p)
    holm = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):  # step-down: max of (m - rank) p over the smaller ones
        running = max(running, min(1.0, (m - rank) * p[i]))
        holm[i] = running
    np.testing.assert_allclose(adjust(p, "holm"), holm)
    np.testing.assert_allclose(adjust(p, "bh"), stats.false_discovery_control(p, method="bh"))
    assert np.all(adjust(p) >= p) and np.all(adjust(p) <= 1)
    with_nan = np.append(p, np.nan)
    np.testing.assert_allclose(adjust(with_nan)[:-1], holm) and np.isnan(adjust(with_nan)[-1])
    with pytest.raises(ConfigError, match="p-value adjustment"):
        adjust(p, "bonferroni-ish")


def test_mean_ci_uses_the_sample_sd_and_the_t_interval():
    x = np.array([0.91, 0.93, 0.95, 0.96, 0.90])
    _, sd, lo, hi = mean_ci(x)
    assert sd == pytest.approx(np.std(x, ddof=1)) and sd != pytest.approx(np.std(x))
    want = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(want)
    assert all(math.isnan(v) for v in mean_ci(np.array([1.0]))[1:])


def test_run_level_is_a_t_test_over_runs_with_a_bootstrap_ci():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.2, 12)
    e = run_level(x)
    assert e.p == pytest.approx(stats.ttest_1samp(x, 0).pvalue) and e.n == 12
    assert e.low < x.mean() < e.high and (e.low, e.high) == bootstrap_ci(x)


def test_pooled_epochs_are_not_independent_but_runs_are():
    """Autocorrelated series with no relation: the pooled test rejects far above 5%, the run-level one does not."""
    pooled, per_run = pooled_false_positive_rate(runs=20, epochs=20, phi=0.84, trials=100, seed=3)
    assert pooled > 0.2
    assert per_run < 0.1


def test_partial_rank_correlation_matches_the_closed_form_on_ranks():
    rng = np.random.default_rng(2)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), 0.5 * z + rng.normal(size=200) + 0.3 * rng.normal(size=200)
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    rxy, rxz, ryz = (np.corrcoef(a, b)[0, 1] for a, b in ((rx, ry), (rx, rz), (ry, rz)))
    closed = (rxy - rxz * ryz) / math.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    r, p, n = partial_spearman(x, y, z)
    assert r == pytest.approx(closed, abs=1e-12) and n == 200
    t = closed * math.sqrt((n - 3) / (1 - closed ** 2))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), n - 3))


def test_exact_permutation_p_matches_enumeration_with_ties():
    x = np.array([0.0, 0.0, 0.5, 0.5, 0.9, 0.9])
    y = np.array([0.1, 0.3, 0.2, 0.6, 0.5, 0.9])
    e = spearman_permutation(x, y)
    rho = stats.spearmanr(x, y).statistic
    perms = [stats.spearmanr(x, y[list(q)]).statistic for q in itertools.permutations(range(6))]
    brute = np.mean(np.abs(perms) >= abs(rho) - 1e-12)
    assert e.test == "exact permutation" and e.value == pytest.approx(rho) and e.p == pytest.approx(brute)


def _block(rel_slope, e_slope, seed=0):
    """A synthetic sweep: relative E rises with sparsity by ``rel_slope``, E moves with epoch by ``e_slope``."""
    rng = np.random.default_rng(seed)
    ds = empty_results([0.0, 0.5, 0.8, 0.95], list(range(5)), 6, [0.05], ["input", "fc"], {})
    sp = np.array([0.0, 0.5, 0.8, 0.95])[:, None, None, None]
    ep = np.arange(7)[None, None, :, None]
    ds["emergence_log10"].values[...] = 5 + e_slope * ep + rng.normal(0, 0.05, (4, 5, 7, 1))
    ds["emergence_hidden_log10"].values[...] = 3 + rng.normal(0, 0.05, (4, 5, 7, 1))
    ds["relative_emergence_log10"].values[...] = rel_slope * sp + rng.normal(0, 0.05, (4, 5, 7, 1))
    ds["test_accuracy"].values[...] = 1 - np.exp(-np.arange(7))[None, None] * (0.5 + rng.random((4, 5, 1)))
    return ds


def test_claim_verdicts_follow_the_built_in_effects():
    held = {t.claim: t.verdict for t in adjust_all(claim_tests(_block(+3, -0.2), 0.05, "synthetic"))}
    assert held["C2c"] == "holds" and held["C3"] == "holds" and held["C3h"] == "not shown"
    flipped = {t.claim: t.verdict for t in adjust_all(claim_tests(_block(-3, +0.2), 0.05, "synthetic"))}
    assert flipped["C2c"] == "opposite" and flipped["C3"] == "opposite"
    assert verdict(0.5, 0.049, +1) == "holds" and verdict(0.5, 0.051, +1) == "not shown"
