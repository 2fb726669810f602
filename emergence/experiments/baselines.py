"""Simpler quantities than E, and whether E predicts anything beyond them.

For a dense MLP, E is a function of the active-unit counts per layer (an audit found
``E = (784 - a0) a1 (1 + a2) + (256 - a1) a2`` exactly, and sparsity with two hidden counts
explaining log10 E with R² = 0.9997). So for each predictive claim the report asks: once the
*baselines* are known -- sparsity, the active units, the active fraction, the weight norm, the
ℓ1 path norm -- does E still rank the runs' outcomes?

* :func:`weight_norm` and :func:`path_norm_log10` are measured by a sweep's cells every epoch
  (variables ``weight_norm`` and ``path_norm_log10`` of the results schema).
* :func:`what_e_adds` is the nested comparison across runs: the partial rank correlation of the
  outcome with log10 E given the sparsity level (as a factor) and one baseline (or all of them), with
  the p of permuting E's residuals (ter Braak) -- one row per baseline set.

References
----------
.. [1] B. Neyshabur, R. Tomioka, N. Srebro, "Norm-based capacity control in neural networks", COLT 2015
   (the ℓ1 path norm).
.. [2] C. J. F. ter Braak, "Permutation versus bootstrap significance tests in multiple regression and
   ANOVA", 1992 (permuting residuals under the reduced model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emergence.experiments.permutation import spearman_ci
from emergence.experiments.stats import format_p

__all__ = ["Addition", "path_norm_log10", "weight_norm", "what_e_adds"]


def weight_norm(model: nn.Module) -> float:
    """The L2 norm of every dense and conv weight together (biases and batch norm left out).

    Examples
    --------
    >>> net = nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[3.0, 4.0]]))
    >>> weight_norm(net)
    5.0
    """
    from emergence.experiments.prune import prunable

    return float(math.sqrt(sum(float((w.detach().double() ** 2).sum()) for _, w in prunable(model))))


@torch.no_grad()
def path_norm_log10(model: nn.Module, example: torch.Tensor) -> float:
    """log10 of the ℓ1 path norm: the sum of the outputs of the network with every weight replaced by ``|w|``,
    biases zeroed and batch norm reduced to its scale ``|gamma| / sigma``, on an input of ones.

    That is the sum over all input-output paths of the product of ``|w|`` along them (every unit
    passes a nonnegative input, so ReLU, pooling and the like pass it on). The model runs in eval mode on
    one example shaped like ``example``; its parameters and mode are left as they were.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.fill_(-1.0); _ = net[2].weight.fill_(0.5)
    >>> round(10 ** path_norm_log10(net, torch.zeros(3, 2)), 6)  # 4 paths of weight 1 * 0.5
    2.0
    """
    from torch.func import functional_call

    state: dict[str, torch.Tensor] = {}
    for mname, m in model.named_modules():
        prefix = f"{mname}." if mname else ""
        for pname, p in m.named_parameters(recurse=False):
            state[prefix + pname] = torch.zeros_like(p) if pname == "bias" else p.abs()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            state[prefix + "running_mean"] = torch.zeros_like(m.running_mean)
    was = model.training
    model.eval()
    try:
        ones = torch.ones((1, *example.shape[1:]), dtype=example.dtype if example.is_floating_point() else None,
                          device=next(model.parameters()).device)
        total = float(functional_call(model, state, (ones,)).double().sum())
    finally:
        model.train(was)
    return math.log10(total) if total > 0 else -math.inf


@dataclass(frozen=True)
class Addition:
    """What E adds to one baseline set, for one outcome across runs.

    Attributes
    ----------
    baseline : str
        The baseline set (always with the sparsity level as a factor).
    rho : float
        Partial rank correlation of the outcome with log10 E given the baselines.
    low, high : float
        Its Fisher-z 95% interval (NaN with too few runs).
    p : float
        Permutation p of E's residuals (ter Braak).
    n : int
        Runs.
    """

    baseline: str
    rho: float
    low: float
    high: float
    p: float
    n: int

    def row(self, outcome: str) -> dict[str, object]:
        ci = "—" if not math.isfinite(self.rho) else (
            f"{self.rho:+.2f} [{self.low:+.2f}, {self.high:+.2f}]" if math.isfinite(self.low) else f"{self.rho:+.2f}")
        return {"outcome": outcome, "given sparsity and": self.baseline, "partial ρ with log10 E [95% CI]": ci,
                "p (permutation)": format_p(self.p), "runs": self.n}


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy import stats

    return stats.rankdata(v)


def _residual_maker(design: np.ndarray) -> np.ndarray:
    """The matrix ``I - H`` that leaves what ``design`` (with intercept) does not explain."""
    q, _ = np.linalg.qr(design)
    return np.eye(design.shape[0]) - q @ q.T


def what_e_adds(outcome: np.ndarray, e: np.ndarray, strata: np.ndarray, baselines: Mapping[str, np.ndarray], *,
                resamples: int = 5000, seed: int = 0) -> list[Addition]:
    """For each baseline (and all together, and none): does log10 E rank the outcome beyond it?

    Ranks of the outcome and of E are residualized on the stratum dummies (the sparsity level as a
    factor) and the ranks of the baseline(s); the statistic is the correlation of the residuals, its
    p the share of permutations of E's residuals that reach it (``(k + 1) / (resamples + 1)``).

    Parameters
    ----------
    outcome, e : array-like, shape (n,)
        One value per run; log10 E may be ``-inf`` (E = 0 ranks lowest); NaN runs are left out.
    strata : array-like, shape (n,)
        Each run's sparsity level.
    baselines : mapping of str to array-like, shape (n,) or (n, k)
        Named baseline quantities per run (a 2-D one, such as active units per layer, counts as k columns).

    Returns
    -------
    list of Addition
        ``"nothing else"`` first, then one per baseline, then ``"all of them"`` (when there are several).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> count = rng.normal(size=40)
    >>> e = count + 0.01 * rng.normal(size=40)  # E is the count in disguise
    >>> acc = count + 0.5 * rng.normal(size=40)
    >>> rows = what_e_adds(acc, e, np.zeros(40), {"active units": count})
    >>> rows[0].p < 0.01, rows[1].p > 0.05
    (True, True)
    """
    out = np.asarray(outcome, dtype=float).ravel()
    ev = np.asarray(e, dtype=float).ravel()
    s = np.asarray(strata, dtype=float).ravel()
    cols = {k: np.asarray(v, dtype=float).reshape(out.size, -1) for k, v in baselines.items()}
    ok = ~np.isnan(out) & ~np.isnan(ev) & ~np.isnan(s)
    for v in cols.values():
        ok &= np.all(np.isfinite(v), axis=1)
    out, ev, s = out[ok], ev[ok], s[ok]
    cols = {k: v[ok] for k, v in cols.items()}
    n = int(out.size)
    levels = np.unique(s)
    dummies = [np.ones(n)] + [(s == lv).astype(float) for lv in levels[1:]]
    sets: list[tuple[str, list[np.ndarray]]] = [("nothing else", [])]
    sets += [(k, [_ranks(v[:, j]) for j in range(v.shape[1])]) for k, v in cols.items()]
    if len(cols) > 1:
        sets.append(("all of them", [_ranks(v[:, j]) for v in cols.values() for j in range(v.shape[1])]))
    rng = np.random.default_rng(seed)
    ro, re_ = _ranks(out), _ranks(ev)
    rows = []
    for name, extra in sets:
        design = np.column_stack(dummies + extra)
        k = design.shape[1] - 1
        if n - k - 3 < 1:
            rows.append(Addition(name, math.nan, math.nan, math.nan, math.nan, n))
            continue
        m = _residual_maker(design)
        eo, ee = m @ ro, m @ re_
        den = float(np.sqrt((eo @ eo) * (ee @ ee)))
        if den <= 1e-12:
            rows.append(Addition(name, math.nan, math.nan, math.nan, math.nan, n))
            continue
        r = float(eo @ ee) / den
        perms = rng.permuted(np.broadcast_to(ee, (resamples, n)), axis=1) @ m.T  # residuals permuted, re-projected
        null = (perms @ eo) / np.sqrt((perms * perms).sum(1) * (eo @ eo))
        p = (int(np.sum(np.abs(null) >= abs(r) - 1e-12)) + 1) / (resamples + 1)
        lo, hi = spearman_ci(r, n, k)
        rows.append(Addition(name, r, lo, hi, float(p), n))
    return rows
