"""Run-level statistics against scipy and brute force, on data with known answers."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from emergence.errors import ConfigError
from emergence.experiments.claims import adjust_all, claim_tests, verdict
from emergence.experiments.permutation import spearman_ci, spearman_permutation, stratified_spearman
from emergence.experiments.results import empty_results
from emergence.experiments.stats import (
    adjust,
    detectable_correlation,
    detectable_mean,
    mean_ci,
    partial_spearman,
    pooled_false_positive_rate,
    run_level,
    spearman,
    tost_correlation,
    tost_mean,
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


def test_run_level_is_a_t_test_over_runs_with_the_t_interval_beside_it():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.2, 12)
    e = run_level(x)
    assert e.p == pytest.approx(stats.ttest_1samp(x, 0).pvalue) and e.n == 12
    assert (e.low, e.high) == pytest.approx(mean_ci(x)[2:])
    for _ in range(200):  # interval and p from one method: the interval excludes 0 exactly when p < 0.05
        y = rng.normal(0.1, 0.3, 5)
        r = run_level(y)
        assert (r.p < 0.05) == (r.low > 0 or r.high < 0)


def _coverage(n, draw, truth, trials=2000, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        e = run_level(draw(rng, n), bounds=(-1.0, 1.0))
        hits += e.low <= truth <= e.high
    return hits / trials


@pytest.mark.parametrize("n, floor", [(4, 0.90), (8, 0.93)])
def test_run_level_intervals_cover_at_the_sample_sizes_sweeps_have(n, floor):
    """Coverage by simulation (seeded): normal per-run statistics, and skewed per-run correlations near +1."""
    assert _coverage(n, lambda rng, k: rng.normal(0.3, 0.2, k), 0.3) >= floor
    # per-run Spearman rho of 8-epoch series with a strong common trend: a skewed distribution bounded by 1
    t = np.arange(8.0)

    def rhos(rng, k):
        return np.array([spearman(t, t + rng.normal(0, 3.0, 8)) for _ in range(k)])

    truth = float(np.mean(rhos(np.random.default_rng(99), 20000)))
    assert _coverage(n, rhos, truth, trials=1000) >= floor


def test_a_constant_per_run_statistic_gets_the_exact_sign_test_never_zero():
    e = run_level(np.ones(4))
    assert e.p == pytest.approx(stats.binomtest(4, 4, 0.5).pvalue) == 0.125 and e.value == 1.0
    assert run_level(np.ones(12)).p == pytest.approx(2 * 0.5 ** 12) and run_level(np.zeros(5)).p == 1.0
    assert run_level(np.array([-1.0, -1.0, -1.0])).p == 0.25


def test_intervals_stay_in_the_statistics_range():
    e = run_level(np.array([0.95, 1.0, 0.9]), bounds=(-1.0, 1.0))
    assert -1 <= e.low <= e.high <= 1 and e.high == 1.0
    for r, n in ((0.99, 5), (-0.97, 6), (0.3, 4)):
        lo, hi = spearman_ci(r, n)
        assert -1 <= lo <= r <= hi <= 1


def test_spearman_intervals_cover_across_runs():
    """Fisher-z with the Bonett-Wright variance, bivariate normal runs (rho_s = 6/pi asin(rho/2)), seeded."""
    rng = np.random.default_rng(4)
    rho = 0.5
    truth = 6 / math.pi * math.asin(rho / 2)
    for n, floor in ((8, 0.93), (12, 0.93)):
        hits = 0
        for _ in range(2000):
            z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
            lo, hi = spearman_ci(spearman(z[:, 0], z[:, 1]), n)
            hits += lo <= truth <= hi
        assert hits / 2000 >= floor, n


def test_stratified_permutation_is_exact_for_two_runs_per_level():
    """The audit's case: 2 runs per sparsity level, E and the landscape in the same order within every level.
    The t-distribution p of the partial correlation was 1e-39; 16 within-level orderings allow p = 2/16."""
    sp = np.repeat([0.0, 0.3, 0.5, 0.7], 2)
    e = np.array([5.0, 5.1, 4.2, 4.3, 3.1, 3.4, 2.0, 2.2])
    fig = np.array([10.0, 11.0, 7.0, 8.0, 4.0, 6.0, 1.0, 3.0])
    assert partial_spearman(e, fig, sp)[1] < 1e-10  # what the old test said
    est = stratified_spearman(e, fig, sp)
    assert est.value == 1.0 and est.p == 0.125 and est.test == "exact stratified permutation"
    orders = itertools.product(*(itertools.permutations(range(2 * i, 2 * i + 2)) for i in range(4)))
    brute = [stratified_spearman(e, fig[np.concatenate(o)], sp).value for o in orders]
    assert est.p == pytest.approx(np.mean(np.abs(brute) >= 1 - 1e-12))


@pytest.mark.parametrize("runs", [2, 3, 5])
def test_stratified_permutation_keeps_its_level(runs):
    """Null simulation (seeded): E and the figure both follow sparsity, with no relation within a level.
    The audit saw the t-distribution p reject 10.6% / 10.0% / 6.1% at nominal 5%; this test may not exceed it."""
    rng = np.random.default_rng(runs)
    sp = np.repeat([0.0, 0.3, 0.5, 0.7], runs)
    trials, rejected = 400, 0
    for _ in range(trials):
        e = -3 * sp + rng.normal(0, 0.3, sp.size)
        fig = -5 * sp + rng.normal(0, 0.3, sp.size)
        rejected += stratified_spearman(e, fig, sp, resamples=2000).p < 0.05
    assert rejected / trials <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / trials)


def test_e_zero_ranks_lowest_and_only_nan_is_left_out():
    x = np.array([1.0, 2, 3, 4, 5])
    y = np.array([-np.inf, 0.5, 0.7, np.nan, 0.9])
    assert spearman(x, y) == 1.0  # four pairs: the NaN one is out, the E = 0 one ranks lowest
    assert spearman_permutation(x, y).n == 4
    assert run_level(np.array([0.2, np.nan, 0.3])).n == 2


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


def test_tost_agrees_with_the_90_percent_interval_and_the_detectable_effect_has_its_power():
    rng = np.random.default_rng(6)
    for _ in range(300):  # TOST at 5% is "the 90% t-interval lies inside the margin"
        x = rng.normal(rng.uniform(-0.4, 0.4), 0.2, int(rng.integers(4, 13)))
        lo, hi = stats.t.interval(0.90, x.size - 1, loc=x.mean(), scale=stats.sem(x))
        assert (tost_mean(x, 0.3) < 0.05) == (lo > -0.3 and hi < 0.3)
    n, sd = 8, 0.2  # a true mean of detectable_mean(sd, n) is found in about 80% of runs (t-test, 5%)
    d = detectable_mean(sd, n)
    power = np.mean([stats.ttest_1samp(rng.normal(d, sd, n), 0).pvalue < 0.05 for _ in range(4000)])
    assert 0.76 <= power <= 0.84
    # correlations: the Fisher-z power at detectable_correlation(n), bivariate normal, Spearman test
    r = detectable_correlation(30)
    rho = 2 * math.sin(math.pi * r / 6)  # the Pearson rho whose Spearman rho is r
    hits = [stats.spearmanr(*rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], 30).T).pvalue < 0.05
            for _ in range(2000)]
    assert 0.72 <= np.mean(hits) <= 0.86
    assert tost_correlation(0.0, 60) < 0.05 < tost_correlation(0.0, 20) and math.isnan(tost_correlation(0.1, 3))


def test_families_holm_for_primary_bh_for_the_rest():
    from emergence.experiments.claims import ClaimTest, adjust_families
    from emergence.experiments.stats import Estimate

    ps = [0.01, 0.02, 0.03, 0.04, 0.001]
    tests = [ClaimTest(c, "", tau, Estimate(0.5, 0.1, 0.9, p, 10, "t"))
             for c, tau, p in zip(["C3", "C2b", "C3h", "C3", "C1|t"], [0.05, None, 0.05, 0.1, 0.05], ps, strict=True)]
    out = adjust_families(tests, 0.05)
    assert [t.family for t in out] == ["primary", "primary", "secondary", "secondary", "secondary"]
    np.testing.assert_allclose([t.p_adjusted for t in out[:2]], adjust(ps[:2]))
    np.testing.assert_allclose([t.p_adjusted for t in out[2:]], adjust(ps[2:], "bh"))


def test_path_norm_is_the_sum_over_paths_of_the_product_of_absolute_weights():
    """Against brute force: every input -> hidden -> hidden -> output path of a small MLP, enumerated."""
    import torch
    from torch import nn

    from emergence.experiments.baselines import path_norm_log10, weight_norm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2))
    w = [net[i].weight.detach().double().abs().numpy() for i in (0, 2, 4)]
    brute = sum(w[0][a, i] * w[1][b, a] * w[2][o, b]
                for i in range(3) for a in range(4) for b in range(2) for o in range(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    assert 10 ** path_norm_log10(net, torch.rand(5, 3)) == pytest.approx(brute, rel=1e-6)  # a float32 pass
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
    assert weight_norm(net) == pytest.approx(math.sqrt(sum(float((v ** 2).sum()) for v in w)))
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).eval()
    with torch.no_grad():
        bn[1].running_var.fill_(4.0)
        bn[1].weight.fill_(-3.0)
    scale = 3.0 / math.sqrt(4.0 + bn[1].eps)  # batch norm counts as its scale |gamma| / sigma
    want = sum(abs(float(bn[0].weight[a, i])) * scale * abs(float(bn[3].weight[0, a]))
               for i in range(3) for a in range(4))
    assert 10 ** path_norm_log10(bn, torch.rand(2, 3)) == pytest.approx(want, rel=1e-6)


def test_what_e_adds_matches_ols_residuals_and_keeps_its_level():
    from emergence.experiments.baselines import what_e_adds

    rng = np.random.default_rng(7)
    sp = np.repeat([0.0, 0.5, 0.8, 0.95], 5)
    count = rng.normal(size=20) - 2 * sp
    outcome, e = count + rng.normal(size=20), count + rng.normal(size=20)
    rows = what_e_adds(outcome, e, sp, {"count": count}, resamples=2000)
    assert [r.baseline for r in rows] == ["nothing else", "count"]
    design = np.column_stack([np.ones(20), *((sp == v).astype(float) for v in (0.5, 0.8, 0.95)),
                              stats.rankdata(count)])

    def resid(v):
        r = stats.rankdata(v)
        return r - design @ np.linalg.lstsq(design, r, rcond=None)[0]

    assert rows[1].rho == pytest.approx(np.corrcoef(resid(outcome), resid(e))[0, 1], abs=1e-10)
    rejected = 0
    for _ in range(300):  # E relates to the outcome only through the count: "E adds nothing" at about 5%
        count = rng.normal(size=20) - 2 * sp
        outcome, e = count + rng.normal(size=20), count + rng.normal(size=20)
        rejected += what_e_adds(outcome, e, sp, {"count": count}, resamples=500)[1].p < 0.05
    assert rejected / 300 <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 300)
