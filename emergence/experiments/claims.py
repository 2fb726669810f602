"""The paper's claims as tests on a sweep, one verdict per setting, on run-level statistics.

A *setting* is one block of a sweep (a dataset, optimizer, pruning schedule, ... with its
sparsity x seed runs) at one activity threshold. Each claim is reduced to one number per
independent run, or to one correlation across runs, so that no test counts a run's epochs
as independent observations (see :mod:`emergence.experiments.stats`):

=====  =======================================================  ================================================
claim  statement                                                effect (one value per run, or across runs)
=====  =======================================================  ================================================
C1     higher E goes with faster learning                       per-run Spearman of log10 E at epoch t with the
                                                                accuracy gain from t to t+1; mean over runs
C1|t   ... beyond what the epoch alone explains                 per-run partial rank correlation given epoch
C2a    pruning speeds up early training                         Spearman across runs: sparsity vs accuracy after
                                                                epoch 1
C2b    pruning lowers final accuracy (a little)                 Spearman across runs: sparsity vs final accuracy
C2c    pruned networks have higher relative emergence           Spearman across runs: sparsity vs final log10 E/edges
C3     E decreases during training                              per-run Spearman of log10 E with epoch; mean
C3h    ... also E from hidden sources only                      the same for E without input sources
C4     higher E goes with a sharper, rougher loss landscape     partial Spearman across runs of log10 E with the
                                                                top Hessian eigenvalue / trace / slice roughness,
                                                                given sparsity (which drives both); and within
                                                                each sparsity level
=====  =======================================================  ================================================

A verdict is ``holds`` when the effect has the claimed sign and its *adjusted* p (Holm over
every p-value of the report) is below 0.05, ``opposite`` when it is significant with the
other sign, and ``not shown`` otherwise. Per-run correlations are tested with a one-sample
t-test across runs (bootstrap CI over runs); correlations across runs with a
permutation test (ties kept; bootstrap CI).

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the claims).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emergence.experiments.results import recorded_threshold
from emergence.experiments.stats import (
    Estimate,
    adjust,
    format_p,
    partial_spearman,
    run_level,
    spearman,
    spearman_permutation,
)

__all__ = ["ALPHA", "ACCURACY_CLAIMS", "CLAIMS", "LANDSCAPE_CLAIMS", "ClaimTest", "adjust_all", "claim_tests",
           "epochs_to_fraction", "landscape_tests", "verdict"]

#: The significance level of every verdict (adjusted p below it).
ALPHA = 0.05
#: Claim id -> (statement, claimed sign of the effect).
CLAIMS: dict[str, tuple[str, int]] = {
    "C1": ("higher E goes with a larger next-epoch accuracy gain", +1),
    "C1|t": ("... controlled for epoch (per-run partial rank correlation)", +1),
    "C2a": ("pruning speeds up early training (accuracy after epoch 1 rises with sparsity)", +1),
    "C2b": ("pruning lowers final accuracy", -1),
    "C2c": ("pruned networks have higher relative emergence (final epoch)", +1),
    "C3": ("E decreases during training", -1),
    "C3h": ("E from hidden sources (inputs excluded) decreases during training", -1),
    "C4 top": ("higher E goes with a larger top Hessian eigenvalue", +1),
    "C4 trace": ("higher E goes with a larger Hessian trace", +1),
    "C4 rough": ("higher E goes with a rougher 1-D loss slice", +1),
}
#: Claims about accuracy alone: they do not depend on the threshold.
ACCURACY_CLAIMS = ("C2a", "C2b")
#: Landscape variable of each C4 claim.
LANDSCAPE_CLAIMS = {"C4 top": "hessian_top", "C4 trace": "hessian_trace", "C4 rough": "slice_roughness"}


@dataclass(frozen=True)
class ClaimTest:
    """One claim tested in one setting.

    Attributes
    ----------
    claim : str
        A key of :data:`CLAIMS`.
    setting : str
        The block of the sweep (e.g. ``"mnist-sgd, prune_at=init"``; empty for a whole sweep).
    threshold : float or None
        The activity threshold (None for the accuracy claims, which do not depend on it).
    group : str
        ``"across runs"``, or the subset tested (``"sparsity 0.5"``).
    estimate : Estimate
    p_adjusted : float
        Filled by :func:`adjust_all`.
    """

    claim: str
    setting: str
    threshold: float | None
    estimate: Estimate
    group: str = "across runs"
    p_adjusted: float = math.nan

    @property
    def verdict(self) -> str:
        return verdict(self.estimate.value, self.p_adjusted, CLAIMS[self.claim][1])

    @property
    def where(self) -> str:
        """Setting, threshold and group as one label."""
        parts = [self.setting] if self.setting else []
        parts.append("any τ" if self.threshold is None else f"τ={self.threshold:g}")
        if self.group != "across runs":
            parts.append(self.group)
        return ", ".join(parts)

    def row(self) -> dict[str, Any]:
        e = self.estimate
        return {"claim": self.claim, "setting": self.where, "effect [95% CI]": e.ci(), "n": e.n,
                "test": e.test, "p": format_p(e.p), "p adj.": format_p(self.p_adjusted), "verdict": self.verdict}


def verdict(effect: float, p_adjusted: float, sign: int, alpha: float = ALPHA) -> str:
    """``holds``, ``opposite`` or ``not shown`` (see the module docs).

    Examples
    --------
    >>> verdict(0.4, 0.01, +1), verdict(-0.4, 0.01, +1), verdict(0.4, 0.2, +1)
    ('holds', 'opposite', 'not shown')
    """
    if not (math.isfinite(effect) and math.isfinite(p_adjusted)) or p_adjusted >= alpha or effect == 0:
        return "not shown"
    return "holds" if np.sign(effect) == sign else "opposite"


def adjust_all(tests: list[ClaimTest], method: str = "holm") -> list[ClaimTest]:
    """The tests with ``p_adjusted`` set, all adjusted together."""
    adj = adjust([t.estimate.p for t in tests], method)
    return [replace(t, p_adjusted=float(a)) for t, a in zip(tests, adj, strict=False)]


def epochs_to_fraction(acc: np.ndarray, fraction: float = 0.95) -> np.ndarray:
    """First epoch at which accuracy reaches ``fraction`` of its final value (last axis = epoch).

    Examples
    --------
    >>> int(epochs_to_fraction(np.array([0.1, 0.5, 0.96, 0.92, 1.0])))
    2
    """
    final = acc[..., -1:]
    reached = acc >= fraction * final
    out = np.argmax(reached, axis=-1).astype(float)
    return np.where(np.isnan(acc).any(axis=-1), np.nan, out)  # a run without data has no such epoch


def _per_run(fn: Any, *series: np.ndarray) -> np.ndarray:
    """``fn`` applied to each run's series (arrays ``[S, R, E]``): ``[S * R]``."""
    flat = [s.reshape(-1, s.shape[-1]) for s in series]
    return np.array([fn(*(f[i] for f in flat)) for i in range(flat[0].shape[0])])


def _partial_given_epoch(e: np.ndarray, g: np.ndarray) -> float:
    return partial_spearman(e, g, np.arange(e.size, dtype=float))[0]


def claim_tests(block: Any, threshold: float, setting: str = "", *,
                include: Collection[str] | None = None) -> list[ClaimTest]:
    """The claims C1-C3 tested on one sweep block (no grid dims left) at ``threshold`` (see module docs).

    Parameters
    ----------
    block : xarray.Dataset
        Dims ``sparsity``, ``seed``, ``epoch``, ``threshold`` (and ``layer``).
    threshold : float
        The recorded threshold to use (nearest).
    setting : str
        Label of the setting.
    include : collection of str, optional
        Test only these claims (default: all that the block supports). The accuracy claims
        (:data:`ACCURACY_CLAIMS`) do not depend on the threshold: include them at one threshold only.

    Returns
    -------
    list of ClaimTest
        ``p_adjusted`` not yet set: adjust over the whole report with :func:`adjust_all`.
    """
    tau = recorded_threshold(block, threshold)
    acc = block.test_accuracy.values
    elog = block.emergence_log10.sel(threshold=tau).values
    rlog = block.relative_emergence_log10.sel(threshold=tau).values
    sp = np.broadcast_to(block.sparsity.values[:, None], acc.shape[:2])
    gain = np.diff(acc, axis=-1)
    epochs = np.arange(acc.shape[-1], dtype=float)
    one = min(1, acc.shape[-1] - 1)
    trend = lambda e: spearman(epochs, e)  # noqa: E731
    tests: dict[str, Any] = {}  # claim -> the computation, run only when included
    if acc.shape[-1] >= 3:
        tests["C1"] = lambda: run_level(_per_run(spearman, elog[..., :-1], gain))
        if acc.shape[-1] >= 6:
            tests["C1|t"] = lambda: run_level(_per_run(_partial_given_epoch, elog[..., :-1], gain))
    if block.sizes["sparsity"] > 1:
        tests["C2a"] = lambda: spearman_permutation(sp, acc[..., one])
        tests["C2b"] = lambda: spearman_permutation(sp, acc[..., -1])
        tests["C2c"] = lambda: spearman_permutation(sp, rlog[..., -1])
    if acc.shape[-1] >= 3:
        tests["C3"] = lambda: run_level(_per_run(trend, elog))
        if "emergence_hidden_log10" in block:
            tests["C3h"] = lambda: run_level(_per_run(trend, block.emergence_hidden_log10.sel(threshold=tau).values))
    return [ClaimTest(c, setting, None if c in ACCURACY_CLAIMS else tau, run())
            for c, run in tests.items() if include is None or c in include]


def _fisher(r: float, p: float, n: int, k: int, test: str) -> Estimate:
    """A (partial) correlation with its Fisher-z 95% interval."""
    if not math.isfinite(r) or n - 3 - k < 1:
        return Estimate(r, math.nan, math.nan, p, n, test)
    z, half = math.atanh(min(max(r, -0.999999), 0.999999)), 1.959964 / math.sqrt(n - 3 - k)
    return Estimate(r, math.tanh(z - half), math.tanh(z + half), p, n, test)


def landscape_tests(block: Any, threshold: float, setting: str = "") -> list[ClaimTest]:
    """C4 on a block with landscape figures: one value per run (its last probed epoch).

    Across sparsities both E and the landscape follow the number of weights, so the test across
    runs is the partial rank correlation given sparsity; within each sparsity level it is a plain
    Spearman over the seeds (permutation p).
    """
    if "hessian_top" not in block:
        return []
    tau = recorded_threshold(block, threshold)
    elog = block.emergence_log10.sel(threshold=tau).values
    sp = np.broadcast_to(block.sparsity.values[:, None], elog.shape[:2])
    out = []
    for claim, var in LANDSCAPE_CLAIMS.items():
        v = block[var].values
        probed = np.isfinite(v)
        last = np.where(probed.any(-1), v.shape[-1] - 1 - np.argmax(probed[..., ::-1], axis=-1), -1)
        at = np.maximum(last, 0)[..., None]
        fig = np.where(last >= 0, np.take_along_axis(v, at, -1)[..., 0], np.nan)
        e = np.where(last >= 0, np.take_along_axis(elog, at, -1)[..., 0], np.nan)
        r, p, n = partial_spearman(e.ravel(), fig.ravel(), sp.ravel())
        out.append(ClaimTest(claim, setting, tau, _fisher(r, p, n, 1, "partial Spearman given sparsity (t)")))
        out += [ClaimTest(claim, setting, tau, spearman_permutation(e[i], fig[i]), f"sparsity {float(s):g}")
                for i, s in enumerate(block.sparsity.values)]
    return out
