"""Rank correlations across independent runs, with permutation p-values that keep their level at small n.

A sweep has few runs per setting (2-5 seeds per sparsity level) and many ties (four sparsity levels
shared by all runs). Asymptotic p-values are wrong there: a partial rank correlation given a
categorical covariate with 2 runs per level can read r = +1 and a t-distribution p of 1e-39 when
only 16 orderings are possible. So:

* :func:`spearman_permutation` permutes one side against the other (ties kept); exact when every
  permutation can be enumerated.
* :func:`stratified_spearman` is the rank correlation *within strata* (the ranks of both sides
  centred in each stratum: the partial correlation given the stratum as a factor), with the p of
  permuting one side within each stratum -- the null "no relation beyond the stratum". Exact
  (every within-stratum permutation) when there are few enough of them, as with 2 runs per level
  (``2**4 = 16`` orderings for 4 levels: the smallest p is ``2/16``).
* Their intervals are Fisher-z intervals of the rank correlation with the Bonett-Wright variance
  ``(1 + r**2 / 2) / (n - 3 - k)`` (``k`` covariates), which lie inside ``[-1, 1]``;
  ``tests/test_stats.py`` checks their coverage and the tests' level by simulation at the sample
  sizes sweeps have.

References
----------
.. [1] D. G. Bonett, T. A. Wright, "Sample size requirements for estimating Pearson, Kendall and
   Spearman correlations", Psychometrika 65, 2000.
.. [2] P. Good, *Permutation, Parametric and Bootstrap Tests of Hypotheses*, 3rd ed., 2005
   (restricted randomization within strata).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from emergence.experiments.stats import Estimate, detectable_correlation, spearman, tost_correlation

__all__ = ["spearman_ci", "spearman_permutation", "stratified_spearman"]

_Z975 = 1.959963984540054


def spearman_ci(r: float, n: int, covariates: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a (partial) Spearman correlation, Bonett-Wright variance; NaN when ``n - 3 - k < 1``.

    Examples
    --------
    >>> lo, hi = spearman_ci(0.5, 20)
    >>> round(lo, 3), round(hi, 3)
    (0.045, 0.783)
    >>> spearman_ci(1.0, 8)
    (1.0, 1.0)
    """
    from scipy import stats

    df = n - 3 - covariates
    if not math.isfinite(r) or df < 1:
        return math.nan, math.nan
    if abs(r) >= 1:  # every run in the same order: the interval is the point (it cannot leave the range)
        return float(r), float(r)
    z = math.atanh(r)
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt((1 + r * r / 2) / df)
    return math.tanh(z - half), math.tanh(z + half)


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``b`` with ``a`` (or row by row when both are 2-D); NaN for constant rows."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _ranked_pairs(x: np.ndarray, y: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
    """The pairs where no side is NaN (``-inf``, e.g. log10 of E = 0, is data: it ranks lowest)."""
    arrs = [np.asarray(a, dtype=float).ravel() for a in (x, y, *more)]
    ok = np.all([~np.isnan(a) for a in arrs], axis=0)
    return [a[ok] for a in arrs]


def _p_value(null: np.ndarray, observed: float, exact: bool) -> float:
    hits = int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
    return min(1.0, hits / null.size if exact else (hits + 1) / (null.size + 1))


def spearman_permutation(x: np.ndarray, y: np.ndarray, *, resamples: int = 100_000, seed: int = 0) -> Estimate:
    """Spearman's rho across independent units: permutation p (ties kept) and a Fisher-z interval.

    The p is exact (every permutation) when ``n! <= resamples``, else Monte Carlo with ``resamples``
    seeded draws, ``(k + 1) / (resamples + 1)``. NaN pairs are left out; ``-inf`` ranks lowest.

    Examples
    --------
    >>> e = spearman_permutation(np.arange(6.0), np.arange(6.0))
    >>> e.value, round(e.p, 4), e.test, (e.low, e.high)
    (1.0, 0.0028, 'exact permutation', (1.0, 1.0))
    """
    from scipy import stats

    x, y = _ranked_pairs(x, y)
    rho = spearman(x, y)
    if not math.isfinite(rho):
        return Estimate(rho, math.nan, math.nan, math.nan, int(x.size), "")
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    exact = math.factorial(x.size) <= resamples
    if exact:
        perms = ry[np.array(list(itertools.permutations(range(x.size))))]
    else:
        perms = np.random.default_rng(seed).permuted(np.broadcast_to(ry, (resamples, x.size)), axis=1)
    p = _p_value(_rowwise_corr(rx, perms), rho, exact)
    n = int(x.size)
    lo, hi = spearman_ci(rho, n)
    return Estimate(rho, lo, hi, p, n, "exact permutation" if exact else f"permutation ({resamples:,} draws)",
                    detectable_correlation(n), tost_correlation(rho, n))


def _centred_ranks(v: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    from scipy import stats

    r = stats.rankdata(v)
    for g in groups:
        r[g] -= r[g].mean()
    return r


def stratified_spearman(x: np.ndarray, y: np.ndarray, strata: np.ndarray, *, resamples: int = 20_000,
                        seed: int = 0) -> Estimate:
    """The rank correlation of ``x`` and ``y`` within strata, with a within-stratum permutation p.

    The statistic is the Pearson correlation of the ranks of ``x`` and of ``y`` (over all units), each
    centred within its stratum: the partial rank correlation given the stratum as a factor. Under the
    null that ``y`` relates to ``x`` only through the stratum, every permutation of ``y`` within the
    strata is equally likely; the p counts them (exactly when their number is at most ``resamples``,
    else by seeded Monte Carlo). Strata with a single unit carry no information and are left out.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        One value per independent run (NaN left out; ``-inf`` ranks lowest).
    strata : array-like, shape (n,)
        The categorical covariate (e.g. each run's sparsity level).
    resamples : int, default 20,000
    seed : int, default 0

    Returns
    -------
    Estimate
        With a Fisher-z interval for ``k = strata - 1`` covariates (NaN when too few runs).

    Examples
    --------
    Two runs per level, perfectly ordered within every level: 16 orderings, two as extreme.

    >>> sp = np.repeat([0.0, 0.3, 0.5, 0.7], 2)
    >>> e = stratified_spearman(np.arange(8.0), np.arange(8.0) + 10 * sp, sp)
    >>> e.value, e.p, e.test
    (1.0, 0.125, 'exact stratified permutation')
    """
    x, y, s = _ranked_pairs(x, y, strata)
    levels, codes = np.unique(s, return_inverse=True)
    keep = np.bincount(codes)[codes] > 1
    x, y, codes = x[keep], y[keep], codes[keep]
    groups = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    n = int(x.size)
    undefined = Estimate(math.nan, math.nan, math.nan, math.nan, n, "stratified permutation (undefined: too few "
                         "runs per level, or no spread within them)")
    if n < 3 or not groups:
        return undefined
    ex, ey = _centred_ranks(x, groups), _centred_ranks(y, groups)
    r = float(_rowwise_corr(ex, ey[None, :])[0])
    if not math.isfinite(r):
        return undefined
    count = math.prod(math.factorial(g.size) for g in groups)
    exact = count <= resamples
    if exact:
        orders = itertools.product(*(itertools.permutations(g.tolist()) for g in groups))
        index = np.array([np.concatenate([np.asarray(o) for o in combo]) for combo in orders])
    else:
        rng = np.random.default_rng(seed)
        index = np.concatenate([rng.permuted(np.broadcast_to(g, (resamples, g.size)), axis=1) for g in groups], 1)
    slots = np.concatenate(groups)  # permuted within each stratum: slot i receives unit index[:, i]
    perm = np.empty_like(index)
    perm[:, slots] = index
    p = _p_value(_rowwise_corr(ex, ey[perm]), r, exact)
    k = len(groups) - 1
    lo, hi = spearman_ci(r, n, k)
    return Estimate(r, lo, hi, p, n, "exact stratified permutation" if exact
                    else f"stratified permutation ({resamples:,} draws)", detectable_correlation(n, k),
                    tost_correlation(r, n, covariates=k))
