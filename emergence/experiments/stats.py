"""Statistics a referee accepts: one value per independent run, CIs over runs, controlled and corrected tests.

A sweep's runs (one per sparsity x seed x grid point) are independent; its epochs are not
(a run's emergence series has lag-1 autocorrelation ~0.8). So every test across runs here
takes **one value per run**: a per-run statistic (e.g. the Spearman correlation of E with
the next-epoch accuracy gain within the run) and then a test of those values across runs
(a one-sample t-test against 0) with the t-interval of the same distribution. Pooling
epochs of all runs into one test treats n = runs x epochs correlated points as independent;
:func:`pooled_false_positive_rate` shows by simulation how far off that is.

Every report collects its p-values and adjusts them together (:func:`adjust`, Holm's
step-down by default, Benjamini-Hochberg on request); verdicts use the adjusted values.

References
----------
.. [1] S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Stat. 6, 1979.
.. [2] Y. Benjamini, Y. Hochberg, "Controlling the false discovery rate", JRSS B 57, 1995.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emergence.errors import ConfigError, check_choice

__all__ = ["ADJUSTMENTS", "EQUIVALENCE_MARGIN", "POWER", "Estimate", "adjust", "correlate", "detectable_correlation",
           "detectable_mean", "format_p", "mean_ci", "partial_spearman", "pooled_false_positive_rate", "run_level",
           "spearman", "tost_correlation", "tost_mean"]

#: Multiple-comparison adjustments :func:`adjust` knows.
ADJUSTMENTS = ("holm", "bh")


@dataclass(frozen=True)
class Estimate:
    """An effect with its uncertainty and test.

    Attributes
    ----------
    value : float
        The effect (a mean of per-run statistics, a correlation across runs, a difference).
    low, high : float
        Its 95% confidence interval.
    p : float
        Two-sided p-value of "no effect" (NaN when untestable).
    n : int
        Independent units (runs, or pairs of runs) behind it.
    test : str
        Which test gave ``p``.
    detectable : float
        The smallest ``|effect|`` this test detects with 80% power at the 5% level, for these ``n``
        (NaN when undefined): what a "not shown" could still hide.
    equivalence_p : float
        The two one-sided tests' p of ``|effect| >= EQUIVALENCE_MARGIN`` (small: the effect is shown to be
        smaller than the margin).
    """

    value: float
    low: float
    high: float
    p: float
    n: int
    test: str
    detectable: float = math.nan
    equivalence_p: float = math.nan

    def ci(self, digits: int = 3) -> str:
        """``value [low, high]`` as text (— when undefined)."""
        if not math.isfinite(self.value):
            return "—"
        lo = f"{self.low:+.{digits}f}" if math.isfinite(self.low) else "?"
        hi = f"{self.high:+.{digits}f}" if math.isfinite(self.high) else "?"
        return f"{self.value:+.{digits}f} [{lo}, {hi}]"


#: Every claim's effect is a correlation; below this ``|rho|`` it is "at most weak" (the TOST margin).
EQUIVALENCE_MARGIN = 0.3
#: The power at which :attr:`Estimate.detectable` is stated.
POWER = 0.8


def detectable_mean(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest mean a one-sample t-test of ``n`` values with this SD detects with ``power`` (two-sided).

    Examples
    --------
    >>> round(detectable_mean(0.2, 8), 3)
    0.231
    """
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))


def tost_mean(x: np.ndarray, margin: float = EQUIVALENCE_MARGIN) -> float:
    """Two one-sided t-tests of ``|mean| >= margin`` over the values (NaN for fewer than two, or no spread).

    Examples
    --------
    >>> tost_mean(np.array([0.01, -0.02, 0.03, 0.0, 0.02])) < 0.001
    True
    """
    from scipy import stats

    (x,) = _finite(x)
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    m = float(x.mean())
    lower = stats.t.sf((m + margin) / se, x.size - 1)
    upper = stats.t.cdf((m - margin) / se, x.size - 1)
    return float(max(lower, upper))


def detectable_correlation(n: int, covariates: int = 0, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest ``|rho|`` a test of ``n`` pairs detects with ``power`` (Fisher z; NaN when ``n - 3 - k < 1``).

    Examples
    --------
    >>> round(detectable_correlation(20), 2), round(detectable_correlation(12, 1), 2)
    (0.59, 0.76)
    """
    from scipy import stats

    df = n - 3 - covariates
    if df < 1:
        return math.nan
    return math.tanh((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / math.sqrt(df))


def tost_correlation(r: float, n: int, margin: float = EQUIVALENCE_MARGIN, covariates: int = 0) -> float:
    """Two one-sided Fisher-z tests of ``|rho| >= margin`` (Bonett-Wright variance; NaN when undefined).

    Examples
    --------
    >>> round(tost_correlation(0.0, 60), 3), tost_correlation(0.5, 60) > 0.5
    (0.01, True)
    """
    from scipy import stats

    df = n - 3 - covariates
    if not math.isfinite(r) or df < 1 or abs(r) >= 1:
        return math.nan if not math.isfinite(r) or df < 1 else 1.0
    z, se, zm = math.atanh(r), math.sqrt((1 + r * r / 2) / df), math.atanh(margin)
    return float(max(stats.norm.sf((z + zm) / se), stats.norm.cdf((z - zm) / se)))


_NAN = Estimate(math.nan, math.nan, math.nan, math.nan, 0, "")


def _finite(*arrays: np.ndarray) -> list[np.ndarray]:
    arrs = [np.asarray(a, dtype=float).ravel() for a in arrays]
    ok = np.all([np.isfinite(a) for a in arrs], axis=0)
    return [a[ok] for a in arrs]


def format_p(p: float) -> str:
    """A p-value as text: two significant digits, scientific below 1e-4, ``—`` when undefined.

    Examples
    --------
    >>> format_p(0.01234), format_p(3.2e-7), format_p(float("nan"))
    ('0.012', '3.2e-07', '—')
    """
    return "—" if not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def adjust(p: np.ndarray | list[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values (Holm step-down, or Benjamini-Hochberg), NaN entries left out and kept NaN.

    Parameters
    ----------
    p : array-like of float
    method : {"holm", "bh"}

    Returns
    -------
    numpy.ndarray
        Same shape; each adjusted value is >= its raw value and <= 1.

    Examples
    --------
    >>> adjust([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.06, 0.06, nan]
    >>> adjust([0.01, 0.04, 0.03], "bh").round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    check_choice("p-value adjustment", method, ADJUSTMENTS)
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat, res = p.ravel(), out.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    m = ok.size
    if m == 0:
        return out
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        raise ConfigError("p-values must lie in [0, 1]")
    order = ok[np.argsort(flat[ok], kind="stable")]
    sorted_p = flat[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * sorted_p))
    else:
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * sorted_p)[::-1])[::-1]
        adj = np.minimum(adj, 1.0)
    res[order] = adj
    return out


def mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample SD (ddof = 1) and the t-interval of the mean over the finite values.

    Returns ``(mean, sd, low, high)``; SD and interval are NaN for fewer than two values.

    Examples
    --------
    >>> [round(v, 3) for v in mean_ci(np.array([1.0, 2.0, 3.0]))]
    [2.0, 1.0, -0.484, 4.484]
    """
    from scipy import stats

    (x,) = _finite(x)
    if x.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return m, sd, m - half, m + half


def run_level(per_run: np.ndarray, *, bounds: tuple[float, float] | None = None) -> Estimate:
    """Test one statistic per run across runs: the mean, its t-interval, and the one-sample t-test p (vs 0).

    Interval and p come from the same t distribution, so the interval excludes 0 exactly when p < 0.05
    (and it covers at its level for normal data at any n; ``tests/test_stats.py`` checks n = 4 and 8).
    The t-test, not Wilcoxon's signed-rank test: with n runs the exact Wilcoxon p cannot fall below
    ``2 / 2**n`` (5e-4 for 12 runs), which no Holm-adjusted family of a hundred tests could pass.
    When every run gives the same value (all ρ = +1, say) the t statistic is undefined: the p is then
    the exact sign test's, ``2 / 2**n`` (never 0), and the interval the value itself.

    Parameters
    ----------
    per_run : array-like
        One value per independent run (NaN values are left out).
    bounds : (float, float), optional
        The statistic's range (``(-1, 1)`` for a correlation): the interval is clipped to it.

    Examples
    --------
    >>> e = run_level(np.array([0.5, 0.4, 0.6, 0.7, 0.3, 0.5, 0.45, 0.55]))
    >>> round(e.value, 3), e.n, e.p < 0.01, e.test
    (0.5, 8, True, 't over runs')
    >>> e = run_level(np.ones(4), bounds=(-1, 1))
    >>> e.p, (e.low, e.high), e.test
    (0.125, (1.0, 1.0), 'sign test (every run alike)')
    """
    from scipy import stats

    (x,) = _finite(per_run)
    if x.size < 2:
        return Estimate(float(x.mean()) if x.size else math.nan, math.nan, math.nan, math.nan, int(x.size), "")
    if np.ptp(x) == 0:
        value = float(x[0])
        p = 1.0 if value == 0 else min(1.0, 2.0 * 0.5 ** x.size)
        return Estimate(value, value, value, p, int(x.size), "sign test (every run alike)")
    m, sd, lo, hi = mean_ci(x)
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Estimate(m, lo, hi, float(stats.ttest_1samp(x, 0.0).pvalue), int(x.size), "t over runs",
                    detectable_mean(sd, int(x.size)), tost_mean(x))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho over the pairs without NaN (``-inf`` ranks lowest; NaN for fewer than 3 pairs or a
    constant side).

    Examples
    --------
    >>> round(spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])), 6)
    0.8
    >>> spearman(np.array([1.0, 2, 3]), np.array([-np.inf, 0.0, 1.0]))
    1.0
    """
    from scipy import stats

    x, y = (np.asarray(a, dtype=float).ravel() for a in (x, y))
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)  # ranks: -inf is the lowest value


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> tuple[float, float, int]:
    """Partial rank correlation of ``x`` and ``y`` given ``covariates``: Pearson r of the residuals of the
    ranks of x and y after a least-squares fit on the ranks of the covariates (with intercept).

    Returns ``(r, p, n)``, p from the t distribution with ``n - 2 - k`` degrees of freedom: for large n
    and continuous covariates only (descriptive use in the reports); across a few runs with a
    categorical covariate use :func:`emergence.experiments.permutation.stratified_spearman`.

    Parameters
    ----------
    x, y : array-like, shape (n,)
    covariates : array-like, shape (n,) or (n, k)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=500)
    >>> x, y = z + 0.3 * rng.normal(size=500), z + 0.3 * rng.normal(size=500)
    >>> spearman(x, y) > 0.8, abs(partial_spearman(x, y, z)[0]) < 0.1
    (True, True)
    """
    from scipy import stats

    c = np.asarray(covariates, dtype=float)
    c = c.reshape(len(c), -1)
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ok = ~np.isnan(x) & ~np.isnan(y) & np.all(np.isfinite(c), axis=1)  # -inf (log10 of E = 0) ranks lowest
    x, y, c = x[ok], y[ok], c[ok]
    k = c.shape[1]
    n = x.size
    if n < k + 4:
        return math.nan, math.nan, n
    design = np.column_stack([np.ones(n), *(stats.rankdata(c[:, j]) for j in range(k))])

    def resid(v: np.ndarray) -> np.ndarray:
        r = stats.rankdata(v)
        return r - design @ np.linalg.lstsq(design, r, rcond=None)[0]

    ex, ey = resid(x), resid(y)
    if np.allclose(ex, 0) or np.allclose(ey, 0):
        return math.nan, math.nan, n
    r = float(np.clip(np.corrcoef(ex, ey)[0, 1], -1, 1))
    df = n - 2 - k
    t = r * math.sqrt(df / max(1e-300, 1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), df)), n


def pooled_false_positive_rate(*, runs: int = 20, epochs: int = 20, phi: float = 0.84, trials: int = 200,
                               alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Simulate independent AR(1) series pairs (no relation) and return how often each approach rejects.

    Returns ``(pooled, run_level)``: the rejection rates at ``alpha`` of one Spearman test over
    all ``runs x epochs`` pairs, and of the run-level t-test over per-run Spearman correlations.
    The nominal rate is ``alpha``; with autocorrelated series the pooled test exceeds it.

    Examples
    --------
    >>> pooled, per_run = pooled_false_positive_rate(trials=40)
    >>> bool(pooled > 0.1), bool(per_run < 0.15)
    (True, True)
    """
    from scipy import stats

    rng = np.random.default_rng(seed)
    check = (0 <= phi < 1) and runs >= 3 and epochs >= 3
    if not check:
        raise ConfigError("need 0 <= phi < 1 and at least 3 runs and 3 epochs")

    def ar1(shape: tuple[int, ...]) -> np.ndarray:
        e = rng.normal(size=shape)
        x = np.empty(shape)
        x[..., 0] = rng.normal(size=shape[:-1]) / math.sqrt(1 - phi * phi)  # stationary start
        for t in range(1, shape[-1]):
            x[..., t] = phi * x[..., t - 1] + e[..., t]
        return x

    pooled = per_run = 0
    for _ in range(trials):
        a, b = ar1((runs, epochs)), ar1((runs, epochs))
        pooled += stats.spearmanr(a.ravel(), b.ravel()).pvalue < alpha
        rhos = np.array([stats.spearmanr(a[i], b[i]).statistic for i in range(runs)])
        per_run += run_level(rhos).p < alpha
    return float(pooled / trials), float(per_run / trials)


def correlate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlations with two-sided p-values over the finite pairs.

    The p-values assume independent pairs; the reports use this only for description or for
    one value per run.

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
