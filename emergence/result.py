"""The result of one emergence measurement."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["EmergenceResult", "NodeContribution"]


class NodeContribution(NamedTuple):
    """One inactive node's emergent paths: ``log10`` of their count and their ``share`` of E."""

    index: int  # type: ignore[assignment]  # the node's index, shadowing tuple.index (public name kept)
    name: str
    log10: float
    share: float


def _log10_int(v: int) -> float | None:
    return math.log10(v) if v > 0 else None


def _finite_or_none(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


#: Significant digits a log-space count carries: float64 log-sum-exp over many levels keeps a
#: relative error of about 1e-14, so digits past the 12th are rounding noise.
LOG_SPACE_DIGITS = 12


def _significant(v: float | None, digits: int = LOG_SPACE_DIGITS) -> float | None:
    """``v`` rounded to ``digits`` significant digits (None and non-finite values become None).

    Examples
    --------
    >>> _significant(66517593.999999955)
    66517594.0
    >>> _significant(1.2345678901234567e-300)
    1.23456789012e-300
    """
    v = _finite_or_none(v)
    return None if v is None else float(f"{v:.{digits}g}")


@dataclass(frozen=True, eq=False)
class EmergenceResult:
    """Emergence of one graph under one activity mask.

    Attributes
    ----------
    value : int or float
        E, the number (or weighted sum) of paths that leave an inactive node and then
        run on through active nodes. A Python ``int`` when ``exact``; a float otherwise,
        ``inf`` when it exceeds float64.
    log10 : float or None
        ``log10(E)``; ``None`` when E = 0.
    relative : float
        E per edge (``value / num_edges``; 0.0 for a graph without edges).
    log10_relative : float or None
        ``log10(relative)``; ``None`` when E = 0.
    exact : bool
        Whether ``value`` was counted with integers.
    weighted : bool
        Whether paths were weighted by ``|w|``.
    num_nodes, num_edges, num_active : int
        Graph counts; ``num_edges`` counts edges of nonzero weight.
    node_log10 : torch.Tensor
        ``[N]`` float64, ``log10`` of the emergent paths that start at each node
        (``-inf`` for active nodes and for inactive nodes with no active successor).
    layer_log10 : dict of int to float or None, or None
        Per layer id (when the graph has ``layer``): ``log10`` of the emergent paths
        that start in that layer, ``None`` for none.
    names : list of str or None
        Node names, when the graph has them.
    """

    value: int | float
    log10: float | None
    relative: float
    log10_relative: float | None
    exact: bool
    weighted: bool
    num_nodes: int
    num_edges: int
    num_active: int
    node_log10: torch.Tensor
    layer_log10: dict[int, float | None] | None = None
    names: list[str] | None = None

    @classmethod
    def from_counts(
        cls, node_counts: np.ndarray, *, layer: torch.Tensor | None = None, **common: Any
    ) -> EmergenceResult:
        """Build an exact result from per-node integer counts (numpy object array, node order)."""
        total = int(node_counts.sum()) if node_counts.size else 0
        node_log10 = torch.tensor(
            [math.log10(c) if c > 0 else -math.inf for c in node_counts.tolist()], dtype=torch.float64
        )
        layer_log10 = None
        if layer is not None:
            ids, inv = np.unique(layer.cpu().numpy(), return_inverse=True)
            sums = np.zeros(ids.size, dtype=object)
            np.add.at(sums, inv, node_counts)
            layer_log10 = {int(i): _log10_int(int(s)) for i, s in zip(ids, sums, strict=False)}
        m = common["num_edges"]
        try:
            relative = total / m if m else 0.0
        except OverflowError:
            relative = math.inf
        log10 = _log10_int(total)
        return cls(
            value=total,
            log10=log10,
            relative=relative,
            log10_relative=None if log10 is None else log10 - math.log10(m),
            exact=True,
            node_log10=node_log10,
            layer_log10=layer_log10,
            **common,
        )

    @classmethod
    def from_log10(
        cls,
        total_log10: float,
        node_log10: torch.Tensor,
        *,
        layer_log10: dict[int, float | None] | None = None,
        **common: Any,
    ) -> EmergenceResult:
        """Build a floating-point result from ``log10`` of the total and of each node's share."""
        log10 = _finite_or_none(total_log10)
        m = common["num_edges"]
        value = 0.0 if log10 is None else (10.0**log10 if log10 < 308.25 else math.inf)
        log10_rel = None if log10 is None else log10 - math.log10(m)
        relative = 0.0 if log10_rel is None else (10.0**log10_rel if log10_rel < 308.25 else math.inf)
        return cls(
            value=value if math.isfinite(value) else math.inf,
            log10=log10,
            relative=relative if math.isfinite(relative) else math.inf,
            log10_relative=log10_rel,
            exact=False,
            node_log10=node_log10,
            layer_log10=layer_log10,
            **common,
        )

    def top_nodes(self, k: int = 10) -> list[NodeContribution]:
        """The ``k`` inactive nodes from which the most emergent paths start.

        Parameters
        ----------
        k : int, default 10
            How many nodes to return.

        Returns
        -------
        list of NodeContribution
            Largest first; nodes with no emergent paths are left out.

        Examples
        --------
        >>> from emergence import graph, measure
        >>> r = measure(graph([[0, 1], [2, 2]], 3, [False, False, True], names=["a", "b", "c"]))
        >>> [(c.name, c.share) for c in r.top_nodes(1)]
        [('a', 0.5)]
        """
        finite = torch.isfinite(self.node_log10)
        idx = finite.nonzero().flatten()
        if idx.numel() == 0 or self.log10 is None:
            return []
        vals = self.node_log10[idx]
        order = torch.argsort(vals, descending=True, stable=True)[: max(int(k), 0)]
        out = []
        for i in idx[order].tolist():
            lg = float(self.node_log10[i])
            name = self.names[i] if self.names is not None else str(i)
            out.append(NodeContribution(i, name, lg, 10.0 ** (lg - self.log10)))
        return out

    def layer_shares(self) -> dict[int, float]:
        """Each layer's share of E (emergent paths that start in it); empty without layers.

        Examples
        --------
        >>> from emergence import graph, measure
        >>> measure(graph([[0, 1], [2, 2]], 3, [False, False, True], layer=[0, 1, 1])).layer_shares()
        {0: 0.5, 1: 0.5}
        """
        if not self.layer_log10:
            return {}
        return {k: 0.0 if v is None or self.log10 is None else 10.0 ** (v - self.log10)
                for k, v in self.layer_log10.items()}

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values (non-finite floats become ``None``).

        Exact counts stay Python integers; log-space counts are rounded to the
        :data:`LOG_SPACE_DIGITS` significant digits they carry (``66517594.0``, not
        ``66517593.999999955``).

        Returns
        -------
        dict
            Keys ``emergence``, ``log10_emergence``, ``relative_emergence``,
            ``log10_relative_emergence``, ``exact``, ``weighted``, ``nodes``, ``edges``,
            ``active`` and, when the graph has layers, ``layers`` (layer id to log10).

        Examples
        --------
        >>> from emergence import graph, measure
        >>> measure(graph([[0], [1]], 2, [False, True])).to_dict()["emergence"]
        1
        >>> measure(graph([[0], [1]], 2, [False, True]), method="log").to_dict()["emergence"]
        1.0
        """
        value: int | float | None = self.value
        relative: float | None = _finite_or_none(float(self.relative))
        if not self.exact:  # a log-space count: print the digits it carries, not float noise
            value, relative = _significant(None if value is None else float(value)), _significant(relative)
        out: dict[str, Any] = {
            "emergence": value,
            "log10_emergence": self.log10,
            "relative_emergence": relative,
            "log10_relative_emergence": self.log10_relative,
            "exact": self.exact,
            "weighted": self.weighted,
            "nodes": self.num_nodes,
            "edges": self.num_edges,
            "active": self.num_active,
        }
        if self.layer_log10 is not None:
            out["layers"] = {str(k): v for k, v in self.layer_log10.items()}
        return out

    def to_json(self, **kwargs: Any) -> str:
        """The result as one strict JSON object (exact integers of any size are kept).

        Parameters
        ----------
        **kwargs
            Passed to :func:`json.dumps` (e.g. ``indent=2``).

        Returns
        -------
        str

        Examples
        --------
        >>> from emergence import graph, measure
        >>> measure(graph([[0], [1]], 2, [False, True])).to_json()[:15]
        '{"emergence": 1'
        """
        limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)  # an exact count may have more than 4300 digits
        try:
            return json.dumps(self.to_dict(), allow_nan=False, **kwargs)
        finally:
            sys.set_int_max_str_digits(limit)

    def __repr__(self) -> str:
        lg = "None" if self.log10 is None else f"{self.log10:.6g}"
        return (
            f"EmergenceResult(log10={lg}, relative={self.relative:.6g}, exact={self.exact}, "
            f"weighted={self.weighted}, nodes={self.num_nodes}, edges={self.num_edges}, active={self.num_active})"
        )
