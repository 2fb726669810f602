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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emergence.experiments.stats import (
    Estimate,
    adjust,
    format_p,
    partial_spearman,
    run_level,
    spearman,
    spearman_permutation,
)

__all__ = ["CLAIMS", "LANDSCAPE_CLAIMS", "ClaimTest", "adjust_all", "claim_tests", "epochs_to_fraction",
           "landscape_tests", "verdict"]

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
        Where (e.g. ``"mnist, sgd, prune init, τ=0.05"``).
    estimate : Estimate
    p_adjusted : float
        Filled by :func:`adjust_all`.
    """

    claim: str
    setting: str
    estimate: Estimate
    p_adjusted: float = math.nan

    @property
    def verdict(self) -> str:
        return verdict(self.estimate.value, self.p_adjusted, CLAIMS[self.claim][1])

    def row(self) -> dict[str, Any]:
        e = self.estimate
        return {"claim": self.claim, "setting": self.setting, "effect [95% CI]": e.ci(), "n": e.n,
                "test": e.test, "p": format_p(e.p), "p adj.": format_p(self.p_adjusted), "verdict": self.verdict}


def verdict(effect: float, p_adjusted: float, sign: int, alpha: float = 0.05) -> str:
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
    return [replace(t, p_adjusted=float(a)) for t, a in zip(tests, adj)]


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


def _per_run(fn: Any, *series: np.ndarray) -> np.ndarray:
    """``fn`` applied to each run's series (arrays ``[S, R, E]``): ``[S * R]``."""
    flat = [s.reshape(-1, s.shape[-1]) for s in series]
    return np.array([fn(*(f[i] for f in flat)) for i in range(flat[0].shape[0])])


def _partial_given_epoch(e: np.ndarray, g: np.ndarray) -> float:
    return partial_spearman(e, g, np.arange(e.size, dtype=float))[0]


def claim_tests(block: Any, threshold: float, setting: str) -> list[ClaimTest]:
    """Every claim tested on one sweep block (no grid dims left) at ``threshold`` (see module docs).

    Parameters
    ----------
    block : xarray.Dataset
        Dims ``sparsity``, ``seed``, ``epoch``, ``threshold`` (and ``layer``).
    threshold : float
        The recorded threshold to use (nearest).
    setting : str
        Label of the setting.

    Returns
    -------
    list of ClaimTest
        ``p_adjusted`` not yet set: adjust over the whole report with :func:`adjust_all`.
    """
    tau = float(block.threshold.sel(threshold=threshold, method="nearest"))
    acc = block.test_accuracy.values
    elog = block.emergence_log10.sel(threshold=tau).values
    rlog = block.relative_emergence_log10.sel(threshold=tau).values
    sp = np.broadcast_to(block.sparsity.values[:, None], acc.shape[:2])
    gain = np.diff(acc, axis=-1)
    epochs = np.arange(acc.shape[-1], dtype=float)
    where = f"{setting}, τ={tau:g}" if setting else f"τ={tau:g}"
    out = []
    if acc.shape[-1] >= 3:
        out.append(ClaimTest("C1", where, run_level(_per_run(spearman, elog[..., :-1], gain))))
        if acc.shape[-1] >= 6:
            out.append(ClaimTest("C1|t", where, run_level(_per_run(_partial_given_epoch, elog[..., :-1], gain))))
    if block.sizes["sparsity"] > 1:
        one = min(1, acc.shape[-1] - 1)
        out += [ClaimTest("C2a", where, spearman_permutation(sp, acc[..., one])),
                ClaimTest("C2b", where, spearman_permutation(sp, acc[..., -1])),
                ClaimTest("C2c", where, spearman_permutation(sp, rlog[..., -1]))]
    if acc.shape[-1] >= 3:
        out.append(ClaimTest("C3", where, run_level(_per_run(lambda e: spearman(epochs, e), elog))))
        if "emergence_hidden_log10" in block:
            hid = block.emergence_hidden_log10.sel(threshold=tau).values
            out.append(ClaimTest("C3h", where, run_level(_per_run(lambda e: spearman(epochs, e), hid))))
    return out


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
    tau = float(block.threshold.sel(threshold=threshold, method="nearest"))
    elog = block.emergence_log10.sel(threshold=tau).values
    sp = np.broadcast_to(block.sparsity.values[:, None], elog.shape[:2])
    out = []
    for claim, var in LANDSCAPE_CLAIMS.items():
        v = block[var].values
        probed = np.isfinite(v)
        last = np.where(probed.any(-1), v.shape[-1] - 1 - np.argmax(probed[..., ::-1], axis=-1), -1)
        pick = np.take_along_axis
        fig = np.where(last >= 0, pick(v, np.maximum(last, 0)[..., None], -1)[..., 0], np.nan)
        e = np.where(last >= 0, pick(elog, np.maximum(last, 0)[..., None], -1)[..., 0], np.nan)
        where = f"{setting}, τ={tau:g}" if setting else f"τ={tau:g}"
        r, p, n = partial_spearman(e.ravel(), fig.ravel(), sp.ravel())
        out.append(ClaimTest(claim, f"{where}, across runs given sparsity", _fisher(r, p, n, 1,
                                                                                    "partial Spearman (t)")))
        for i, s in enumerate(block.sparsity.values):
            out.append(ClaimTest(claim, f"{where}, sparsity {float(s):g}", spearman_permutation(e[i], fig[i])))
    return out
