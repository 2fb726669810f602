"""Sweeps with grid axes, one setting at a time: ``--sel KEY=VALUE`` and facets over what is left.

The per-sparsity tables and figures describe a (sparsity, seed, epoch) block. A sweep with
grid axes (``width``, ``lr``, ...) holds one such block per grid point: :func:`facets` splits
it into them (after :func:`select` fixed the axes the user named), and :func:`size_study`
compares the blocks along ``width`` -- the paper's claim that larger networks have more
emergence, tested with one value per run.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emergence.errors import ConfigError
from emergence.experiments.results import recorded_threshold

__all__ = ["STANDARD_DIMS", "grid_dims", "parse_sel", "select", "facets", "size_study"]

#: Dimensions every sweep has; any other dimension is a grid axis.
STANDARD_DIMS = ("sparsity", "seed", "epoch", "threshold", "layer")


def grid_dims(ds: Any) -> list[str]:
    """The grid axes of a results Dataset, in dimension order."""
    return [d for d in ds.dims if d not in STANDARD_DIMS]


def parse_sel(specs: Sequence[str] | None) -> dict[str, str]:
    """``["width=2", "lr=0.1"]`` -> ``{"width": "2", "lr": "0.1"}``.

    Raises
    ------
    ConfigError
        For text without ``=``.

    Examples
    --------
    >>> parse_sel(["width=2"])
    {'width': '2'}
    """
    out = {}
    for spec in specs or ():
        key, sep, value = str(spec).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--sel takes KEY=VALUE (e.g. width=2); got {spec!r}")
        out[key.strip()] = value.strip()
    return out


def select(ds: Any, sel: dict[str, str] | None) -> Any:
    """Fix the named grid axes at the given values (dropping those dimensions).

    Raises
    ------
    ConfigError
        For an axis the results do not have, or a value not on it (listing the values).
    """
    for key, text in (sel or {}).items():
        if key not in ds.dims:
            raise ConfigError(f"the results have no axis {key!r}; axes: {', '.join(map(str, ds.dims))}")
        coord = ds[key].values
        if coord.dtype.kind in "fiu":
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"{key} takes a number; got {text!r}") from None
            hits = np.flatnonzero(np.isclose(coord.astype(float), value))
        else:
            hits = np.flatnonzero(coord.astype(str) == text)
        if hits.size == 0:
            raise ConfigError(f"{key}={text} is not in the results; {key} is one of "
                              f"{', '.join(f'{v:g}' if coord.dtype.kind == 'f' else str(v) for v in coord)}")
        ds = ds.isel({key: int(hits[0])})
    return ds


def _fmt(v: Any) -> str:
    return f"{float(v):g}" if np.asarray(v).dtype.kind in "fiu" else str(v)


def facets(ds: Any, keep: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``(label, block)`` for every combination of the grid axes not in ``keep`` (one unlabelled block if none)."""
    dims = [d for d in grid_dims(ds) if d not in keep]
    if not dims:
        return [("", ds)]
    out = []
    for values in itertools.product(*(ds[d].values for d in dims)):
        point = dict(zip(dims, values, strict=False))
        out.append((" ".join(f"{d}={_fmt(v)}" for d, v in point.items()), ds.sel(point)))
    return out


_SIZE_QUANTITIES = ("log10 E (epoch 0)", "log10 E (final)", "final accuracy")


@dataclass(frozen=True)
class WidthCorrelation:
    """Spearman's ρ across runs of width against one quantity (``"n/a"`` where it is undefined).

    Attributes
    ----------
    quantity : str
        One of ``log10 E (epoch 0)``, ``log10 E (final)``, ``final accuracy``.
    rho, p : float
        NaN when fewer than 3 runs have it, or width or the quantity does not vary.
    """

    quantity: str
    rho: float
    p: float

    def text(self) -> tuple[str, str]:
        """ρ and p as the tables show them."""
        if not math.isfinite(self.rho):
            return "n/a", "n/a"
        return f"{self.rho:+.3f}", f"{self.p:.3g}"


@dataclass(frozen=True)
class SizeRow:
    """One setting of a size study: ρ(width, quantity) for every quantity, over ``runs`` runs."""

    setting: str
    runs: int
    correlations: tuple[WidthCorrelation, ...]

    def of(self, quantity: str) -> WidthCorrelation:
        """The correlation with ``quantity``."""
        return next(c for c in self.correlations if c.quantity == quantity)

    def row(self) -> dict[str, Any]:
        """The row as the report's table shows it."""
        out: dict[str, Any] = {"setting": self.setting, "n runs": self.runs}
        for c in self.correlations:
            out[f"ρ(width, {c.quantity})"], out[f"p ({c.quantity})"] = c.text()
        return out

    def finding(self) -> str:
        """The row in words."""
        (r0, p0), (rf, pf), (ra, pa) = (self.of(q).text() for q in _SIZE_QUANTITIES)
        return (f"{self.setting}: width vs log10 E at epoch 0 ρ = {r0} (p = {p0}), final ρ = {rf} (p = {pf}); "
                f"width vs final accuracy ρ = {ra} (p = {pa}); n = {self.runs} runs.")


def _mean_with_e0(v: np.ndarray) -> float:
    """The mean of log10 E over the runs with E > 0 (-inf only when every run had E = 0)."""
    finite = v[np.isfinite(v)]
    return float(finite.mean()) if finite.size else (-math.inf if np.isneginf(v).any() else math.nan)


def size_study(ds: Any, threshold: float) -> tuple[list[dict[str, Any]], list[SizeRow]]:
    """Emergence and accuracy against ``width``, one value per run, and Spearman's ρ across widths.

    For every sparsity (and every combination of the other grid axes), each run (width,
    seed) contributes its log10 E at epoch 0 and at the final epoch and its final test
    accuracy; ρ and its p-value are taken over those runs (independent: every run has its
    own seed and its own network), with a permutation p (ties kept; runs with E = 0 rank lowest).

    Returns
    -------
    (means, correlations) : list of table rows, list of SizeRow

    Raises
    ------
    ConfigError
        If the results have no ``width`` axis.
    """
    from emergence.experiments.permutation import spearman_permutation

    if "width" not in ds.dims:
        raise ConfigError("a size study needs a width axis (sweep with --grid width=0.5,1,2)")
    tau = recorded_threshold(ds, threshold)
    means: list[dict[str, Any]] = []
    corrs: list[SizeRow] = []
    for label, block in facets(ds, keep=("width",)):  # every combination of the other axes
        for s in block.sparsity.values:
            b = block.sel(sparsity=s)
            e = b.emergence_log10.sel(threshold=tau)  # [width, seed, epoch]
            acc = b.test_accuracy.isel(epoch=-1)  # [width, seed]
            e0, ef = e.isel(epoch=0), e.isel(epoch=-1)
            where = " ".join(x for x in (label, f"sparsity={float(s):g}") if x)
            for w in b.width.values:
                means.append({"setting": where, "width": float(w), "runs": int(b.sizes["seed"]),
                              "log10 E (epoch 0)": f"{_mean_with_e0(e0.sel(width=w).values):.2f}",
                              "log10 E (final)": f"{_mean_with_e0(ef.sel(width=w).values):.2f}",
                              "final accuracy": f"{float(acc.sel(width=w).mean()):.4f}"})
            widths = np.broadcast_to(b.width.values[:, None], acc.shape).ravel()
            found = []
            for name, values in zip(_SIZE_QUANTITIES, (e0, ef, acc), strict=True):
                est = spearman_permutation(widths, values.transpose("width", "seed").values.ravel())
                found.append(WidthCorrelation(name, est.value, est.p))
            corrs.append(SizeRow(where, int(widths.size), tuple(found)))
    return means, corrs
