"""Numbers, Markdown tables and figures as the reports show and write them.

The text side of the experiment layer: how a mean with its interval or a correlation is printed
(:func:`mean_sd_ci`, :func:`signed`), rows as a Markdown table (:func:`table_md`), and a matplotlib figure
written atomically as PNG (:func:`save_figure`). Nothing here computes a statistic
(:mod:`emergence.experiments.stats` does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from emergence.experiments.stats import mean_ci

__all__ = ["mean_sd_ci", "save_figure", "signed", "table_md"]


def mean_sd_ci(a: np.ndarray, digits: int = 3) -> str:
    """``mean ± SD [low, high]`` over the finite values (SD with ddof = 1, 95% t-interval); ``—`` for none.

    Examples
    --------
    >>> mean_sd_ci(np.array([1.0, 2.0, 3.0]), 1)
    '2.0 ± 1.0 [-0.5, 4.5]'
    """
    m, sd, lo, hi = mean_ci(np.asarray(a, dtype=float))
    if not math.isfinite(m):
        return "—"
    if not math.isfinite(sd):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sd:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def signed(v: float) -> str:
    """A correlation with its sign, ``—`` when undefined.

    Examples
    --------
    >>> signed(0.25), signed(float("nan"))
    ('+0.250', '—')
    """
    return "—" if not math.isfinite(v) else f"{v:+.3f}"


def table_md(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts with the same keys) as a Markdown table; empty text for no rows.

    Examples
    --------
    >>> print(table_md([{"a": 1, "b": "x"}]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(k.strip() for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    from emergence.adapters.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path
