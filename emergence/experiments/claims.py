"""The paper's claims as tests on a sweep, one verdict per setting, on run-level statistics.

A *setting* is one block of a sweep (a dataset, optimizer, pruning schedule, ... with its
sparsity x seed runs) at one activity threshold. Each claim is reduced to one number per
independent run, or to one correlation across runs, so that no test counts a run's epochs
as independent observations (see :mod:`emergence.experiments.stats`). The claims are
:class:`Claim` objects in one registry, :data:`CLAIMS`; the report, the robustness grid and this
table read their attributes, so a claim is added in one place:

{table}

A verdict is ``holds`` when the effect has the claimed sign and its *adjusted* p is below :data:`ALPHA`
(in a report: Holm over the pre-specified primary family, one test per claim as the paper states it,
:attr:`Claim.primary`; Benjamini-Hochberg over the rest; :func:`adjust_families`), ``opposite`` when it is
significant with the other sign, and ``not shown`` otherwise; a "not shown" carries the smallest effect the
runs detect with 80% power and an equivalence test (TOST) at ``|rho| <``
:data:`~emergence.experiments.stats.EQUIVALENCE_MARGIN`. Per-run correlations are tested with a one-sample
t-test across runs (its t-interval, clipped to [-1, 1]; an exact sign test when every run gives
the same value); correlations across runs with a permutation test (ties kept), and those given
sparsity with a permutation within sparsity levels (:mod:`emergence.experiments.permutation`;
Fisher-z intervals).

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the claims).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emergence.experiments.permutation import spearman_permutation, stratified_spearman
from emergence.experiments.results import recorded_threshold
from emergence.experiments.stats import (
    EQUIVALENCE_MARGIN,
    Estimate,
    adjust,
    format_p,
    partial_spearman,
    run_level,
    spearman,
)

__all__ = ["ACCURACY_CLAIMS", "ALPHA", "CLAIMS", "LANDSCAPE_CLAIMS", "Claim", "ClaimData", "ClaimTest", "adjust_all",
           "adjust_families",
           "claim_tests", "claims_table", "epochs_to_fraction", "landscape_tests", "verdict"]

#: The significance level of every verdict (adjusted p below it).
ALPHA = 0.05


@dataclass(frozen=True)
class ClaimData:
    """What the claims of one sweep block are tested on, as ``[sparsity, seed, epoch]`` arrays (by dimension name).

    Attributes
    ----------
    accuracy : numpy.ndarray
        Test accuracy.
    log10 : numpy.ndarray
        log10 E at the threshold.
    relative_log10 : numpy.ndarray
        log10 (E / edges).
    hidden_log10 : numpy.ndarray or None
        log10 of E from hidden sources; None when the results lack it.
    sparsity : numpy.ndarray
        ``[sparsity, seed]``: each run's target sparsity.
    """

    accuracy: np.ndarray
    log10: np.ndarray
    relative_log10: np.ndarray
    hidden_log10: np.ndarray | None
    sparsity: np.ndarray

    @classmethod
    def of(cls, block: Any, tau: float) -> ClaimData:
        """The arrays of ``block`` at the recorded threshold ``tau``."""
        dims = ("sparsity", "seed", "epoch")
        at = lambda v: block[v].sel(threshold=tau).transpose(*dims).values  # noqa: E731
        acc = block.test_accuracy.transpose(*dims).values
        hidden = at("emergence_hidden_log10") if "emergence_hidden_log10" in block else None
        sp = np.broadcast_to(block.sparsity.values[:, None], acc.shape[:2])
        return cls(acc, at("emergence_log10"), at("relative_emergence_log10"), hidden, sp)

    @property
    def epochs(self) -> int:
        """Recorded epochs per run (epoch 0 included)."""
        return self.accuracy.shape[-1]

    @property
    def sparsities(self) -> int:
        return self.accuracy.shape[0]

    @property
    def gain(self) -> np.ndarray:
        """Accuracy gain from epoch t to t+1: ``[sparsity, seed, epoch - 1]``."""
        return np.diff(self.accuracy, axis=-1)

    @property
    def first(self) -> int:
        """The index of epoch 1 (0 when only epoch 0 was recorded)."""
        return min(1, self.epochs - 1)

    @property
    def to_own_90(self) -> np.ndarray:
        """``[sparsity, seed]``: the first epoch at which each run reaches 90% of its own final accuracy."""
        return epochs_to_fraction(self.accuracy, 0.9)

    @property
    def curve_area(self) -> np.ndarray:
        """``[sparsity, seed]``: the learning curve's area relative to the run's own final accuracy (mean of
        ``accuracy / final`` over the epochs; 1 for a run that starts where it ends)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.accuracy / self.accuracy[..., -1:]).mean(-1)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, and how it is tested.

    Attributes
    ----------
    id : str
        ``"C1"``, ``"C2a"``, ...
    statement : str
        The claim in words.
    sign : int
        The claimed sign of the effect (+1 or -1).
    effect : str
        What the effect is (one value per run, or across runs).
    test : callable or None
        ``test(data: ClaimData) -> Estimate``; None for the landscape claims (see ``landscape``).
    threshold_free : bool
        A claim about accuracy alone: tested once per setting, not at every threshold.
    min_epochs : int
        Recorded epochs (epoch 0 included) a run needs for the test.
    min_sparsities : int
        Sparsity levels the block needs.
    needs : str
        A variable the block must hold (empty: none beyond the required ones).
    landscape : str
        The landscape variable of a C4 claim (tested by :func:`landscape_tests`); empty for the others.
    threshold_table : bool
        Shown in the report's threshold-sensitivity table.
    robustness : bool
        Tested in the robustness grid (whose runs are short).
    primary : bool
        In the pre-specified primary family: the one test of the claim as the paper states it, adjusted
        with Holm over the primary tests of a report; every other test is secondary (Benjamini-Hochberg).
    """

    id: str
    statement: str
    sign: int
    effect: str
    test: Callable[[ClaimData], Estimate] | None = None
    threshold_free: bool = False
    min_epochs: int = 0
    min_sparsities: int = 1
    needs: str = ""
    landscape: str = ""
    threshold_table: bool = False
    robustness: bool = True
    primary: bool = False

    def applies(self, block: Any, data: ClaimData) -> bool:
        """Whether ``block`` has what the test needs (epochs, sparsity levels, variables)."""
        return (self.test is not None and data.epochs >= self.min_epochs and data.sparsities >= self.min_sparsities
                and (not self.needs or self.needs in block))


def _per_run(fn: Any, *series: np.ndarray) -> np.ndarray:
    """``fn`` applied to each run's series (arrays ``[S, R, E]``): ``[S * R]``."""
    flat = [s.reshape(-1, s.shape[-1]) for s in series]
    return np.array([fn(*(f[i] for f in flat)) for i in range(flat[0].shape[0])])


def _partial_given_epoch(e: np.ndarray, g: np.ndarray) -> float:
    return partial_spearman(e, g, np.arange(e.size, dtype=float))[0]


def _across_runs(fn: Any, *series: np.ndarray) -> Estimate:
    """A per-run correlation (``fn`` of each run's series) tested across runs, its interval within [-1, 1]."""
    return run_level(_per_run(fn, *series), bounds=(-1.0, 1.0))


def _trend(e: np.ndarray) -> float:
    return spearman(np.arange(e.size, dtype=float), e)


def _register(*claims: Claim) -> dict[str, Claim]:
    return {c.id: c for c in claims}


#: Every claim, by id, in report order.
CLAIMS: dict[str, Claim] = _register(
    Claim("C1", "higher E goes with a larger next-epoch accuracy gain", +1,
          "per-run Spearman of log10 E at epoch t with the accuracy gain from t to t+1; mean over runs",
          lambda d: _across_runs(spearman, d.log10[..., :-1], d.gain), min_epochs=3, threshold_table=True),
    Claim("C1 runs", "runs with higher E at epoch 0 reach a higher final accuracy (as the paper states C1)", +1,
          "rank correlation across runs of log10 E at epoch 0 with final accuracy, within sparsity levels",
          lambda d: stratified_spearman(d.log10[..., 0], d.accuracy[..., -1], d.sparsity), min_epochs=2,
          primary=True),
    Claim("C1 speed", "runs with higher E at epoch 0 converge faster (fewer epochs to 90% of their own final)", -1,
          "rank correlation across runs of log10 E at epoch 0 with epochs to 90% of own final, within sparsity",
          lambda d: stratified_spearman(d.log10[..., 0], d.to_own_90, d.sparsity), min_epochs=2),
    Claim("C1|t", "... controlled for epoch (per-run partial rank correlation)", +1,
          "per-run partial rank correlation given epoch",
          lambda d: _across_runs(_partial_given_epoch, d.log10[..., :-1], d.gain), min_epochs=6,
          robustness=False),
    Claim("C2a", "pruning speeds up convergence (fewer epochs to 90% of the run's own final accuracy)", -1,
          "Spearman across runs: sparsity vs epochs to 90% of own final accuracy",
          lambda d: spearman_permutation(d.sparsity, d.to_own_90), threshold_free=True, min_epochs=2,
          min_sparsities=2, primary=True),
    Claim("C2a area", "pruning speeds up convergence (a larger learning-curve area relative to own final)", +1,
          "Spearman across runs: sparsity vs mean of accuracy / own final accuracy over the epochs",
          lambda d: spearman_permutation(d.sparsity, d.curve_area), threshold_free=True, min_epochs=2,
          min_sparsities=2),
    Claim("C2a@1", "pruning speeds up early training (accuracy after epoch 1 rises with sparsity)", +1,
          "Spearman across runs: sparsity vs accuracy after epoch 1",
          lambda d: spearman_permutation(d.sparsity, d.accuracy[..., d.first]), threshold_free=True,
          min_sparsities=2),
    Claim("C2b", "pruning lowers final accuracy", -1, "Spearman across runs: sparsity vs final accuracy",
          lambda d: spearman_permutation(d.sparsity, d.accuracy[..., -1]), threshold_free=True, min_sparsities=2,
          primary=True),
    Claim("C2c", "pruned networks have higher relative emergence (final epoch)", +1,
          "Spearman across runs: sparsity vs final log10 E/edges",
          lambda d: spearman_permutation(d.sparsity, d.relative_log10[..., -1]), min_sparsities=2,
          threshold_table=True, primary=True),
    Claim("C3", "E decreases during training", -1, "per-run Spearman of log10 E with epoch; mean over runs",
          lambda d: _across_runs(_trend, d.log10), min_epochs=3, threshold_table=True, primary=True),
    Claim("C3h", "E from hidden sources (inputs excluded) decreases during training", -1,
          "the same for E without input sources",
          lambda d: _across_runs(_trend, d.hidden_log10), min_epochs=3, needs="emergence_hidden_log10"),
    *(Claim(f"C4 {short}", f"higher E goes with {what}", +1,
            f"partial Spearman across runs of log10 E with the {var}, given sparsity (which drives both); and "
            "within each sparsity level", landscape=var, primary=short == "top")
      for short, what, var in (("top", "a larger top Hessian eigenvalue", "hessian_top"),
                               ("trace", "a larger Hessian trace", "hessian_trace"),
                               ("rough", "a rougher 1-D loss slice", "slice_roughness"))),
)
#: Claims about accuracy alone: they do not depend on the threshold.
ACCURACY_CLAIMS = tuple(c.id for c in CLAIMS.values() if c.threshold_free)
#: Landscape variable of each C4 claim.
LANDSCAPE_CLAIMS = {c.id: c.landscape for c in CLAIMS.values() if c.landscape}


def claims_table() -> str:
    """:data:`CLAIMS` as a reStructuredText table (id, statement, sign, effect).

    Examples
    --------
    >>> claims_table().splitlines()[3].split()[:2]
    ['C1', 'higher']
    """
    head = ("claim", "statement", "sign", "effect (one value per run, or across runs)")
    rows = [(c.id, c.statement, f"{c.sign:+d}", c.effect) for c in CLAIMS.values()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([rule, line(head), rule, *map(line, rows), rule])


if __doc__ is not None:  # None under python -OO
    __doc__ = __doc__.replace("{table}", claims_table())


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
        Filled by :func:`adjust_all` or :func:`adjust_families`.
    family : str
        ``"primary"`` (Holm) or ``"secondary"`` (Benjamini-Hochberg) after :func:`adjust_families`;
        ``"all"`` when every test was adjusted together.
    """

    claim: str
    setting: str
    threshold: float | None
    estimate: Estimate
    group: str = "across runs"
    p_adjusted: float = math.nan
    family: str = "all"

    @property
    def verdict(self) -> str:
        return verdict(self.estimate.value, self.p_adjusted, CLAIMS[self.claim].sign)

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
        det = f"±{e.detectable:.2f}" if math.isfinite(e.detectable) else "—"
        return {"claim": self.claim, "setting": self.where, "effect [95% CI]": e.ci(), "n": e.n,
                "test": e.test, "p": format_p(e.p), "family": self.family, "p adj.": format_p(self.p_adjusted),
                "verdict": self.verdict, "detectable (80%)": det,
                f"TOST p (|ρ| < {EQUIVALENCE_MARGIN:g})": format_p(e.equivalence_p)}

    def sensitivity(self) -> str:
        """What a "not shown" could still hide: the smallest detectable effect and the equivalence test."""
        e = self.estimate
        parts = []
        if math.isfinite(e.detectable):
            parts.append(f"the smallest effect these {e.n} runs detect with 80% power is ±{e.detectable:.2f}")
        if math.isfinite(e.equivalence_p):
            shown = "shown" if e.equivalence_p < ALPHA else "not shown"
            parts.append(f"equivalence within ±{EQUIVALENCE_MARGIN:g} {shown} (TOST p = {format_p(e.equivalence_p)})")
        return "; ".join(parts)


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


def adjust_families(tests: list[ClaimTest], threshold: float) -> list[ClaimTest]:
    """The pre-specified families: the primary test of each claim (its :attr:`Claim.primary` test across runs,
    at ``threshold`` or threshold-free) Holm-adjusted together; every other test Benjamini-Hochberg-adjusted.

    Examples
    --------
    >>> from emergence.experiments.stats import Estimate
    >>> e = Estimate(0.5, 0.1, 0.8, 0.01, 20, "t")
    >>> out = adjust_families([ClaimTest("C3", "", 0.05, e), ClaimTest("C2b", "", None, e),
    ...                        ClaimTest("C3h", "", 0.05, e)], 0.05)
    >>> [(t.family, round(t.p_adjusted, 3)) for t in out]
    [('primary', 0.02), ('primary', 0.02), ('secondary', 0.01)]
    """
    def primary(t: ClaimTest) -> bool:
        return CLAIMS[t.claim].primary and t.group == "across runs" and t.threshold in (None, threshold)

    first = [i for i, t in enumerate(tests) if primary(t)]
    rest = [i for i in range(len(tests)) if i not in set(first)]
    out = list(tests)
    for family, index, method in (("primary", first, "holm"), ("secondary", rest, "bh")):
        adj = adjust([tests[i].estimate.p for i in index], method) if index else []
        for i, a in zip(index, adj, strict=True):
            out[i] = replace(tests[i], p_adjusted=float(a), family=family)
    return out


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


def claim_tests(block: Any, threshold: float, setting: str = "", *,
                include: Collection[str] | None = None) -> list[ClaimTest]:
    """Every claim of :data:`CLAIMS` with a test, on one sweep block (no grid dims left) at ``threshold``.

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
        ``p_adjusted`` not yet set: adjust over the whole report with :func:`adjust_families` (or
        :func:`adjust_all`).
    """
    tau = recorded_threshold(block, threshold)
    data = ClaimData.of(block, tau)
    return [ClaimTest(c.id, setting, None if c.threshold_free else tau, c.test(data))
            for c in CLAIMS.values()
            if (include is None or c.id in include) and c.applies(block, data) and c.test is not None]


def landscape_tests(block: Any, threshold: float, setting: str = "") -> list[ClaimTest]:
    """C4 on a block with landscape figures: one value per run (its last probed epoch).

    Across sparsities both E and the landscape follow the number of weights, so the test across
    runs is the rank correlation within sparsity levels, with the p of permuting the runs within
    each level (exact for few seeds; :func:`~emergence.experiments.permutation.stratified_spearman`);
    within each sparsity level it is a plain Spearman over the seeds (permutation p).
    """
    if "hessian_top" not in block:
        return []
    tau = recorded_threshold(block, threshold)
    data = ClaimData.of(block, tau)
    elog, sp = data.log10, data.sparsity
    out = []
    for claim, var in LANDSCAPE_CLAIMS.items():
        v = block[var].transpose("sparsity", "seed", "epoch").values
        probed = np.isfinite(v)
        last = np.where(probed.any(-1), v.shape[-1] - 1 - np.argmax(probed[..., ::-1], axis=-1), -1)
        at = np.maximum(last, 0)[..., None]
        fig = np.where(last >= 0, np.take_along_axis(v, at, -1)[..., 0], np.nan)
        e = np.where(last >= 0, np.take_along_axis(elog, at, -1)[..., 0], np.nan)
        out.append(ClaimTest(claim, setting, tau, stratified_spearman(e.ravel(), fig.ravel(), sp.ravel())))
        out += [ClaimTest(claim, setting, tau, spearman_permutation(e[i], fig[i]), f"sparsity {float(s):g}")
                for i, s in enumerate(block.sparsity.values)]
    return out
