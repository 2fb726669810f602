"""Terminal rendering of results with rich (tables for people; JSON lives on the results)."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table

from emergence.result import EmergenceResult

__all__ = ["result_table"]


def _num(v: int | float | None, digits: int = 6) -> str:
    if v is None:
        return "—"
    if isinstance(v, int):
        s = str(v) if v.bit_length() < 200 else f"≈10^{math.log10(v):.3f}"
        return s
    if math.isinf(v):
        return "inf (see log10)"
    return f"{v:.{digits}g}"


def result_table(result: EmergenceResult, *, title: str = "Emergence", top: int = 10) -> Group:
    """A summary table of one measurement, followed by its top inactive nodes.

    Parameters
    ----------
    result : EmergenceResult
        The measurement.
    title : str
        Table title (e.g. the file name).
    top : int, default 10
        How many inactive nodes to list by their share of E (0 for none).

    Returns
    -------
    rich.console.Group
        Print it with ``rich.console.Console().print``.

    Examples
    --------
    >>> import io
    >>> from rich.console import Console
    >>> from emergence import graph, measure
    >>> console = Console(width=80, record=True, file=io.StringIO())
    >>> console.print(result_table(measure(graph([[0], [1]], 2, [False, True]))))
    >>> "relative emergence" in console.export_text()
    True
    """
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("quantity", style="bold")
    t.add_column("value", justify="right")
    t.add_row("emergence E", _num(result.value))
    t.add_row("log10 E", _num(result.log10))
    t.add_row("relative emergence (E / edges)", _num(result.relative))
    t.add_row("log10 relative", _num(result.log10_relative))
    t.add_row("counted", "exactly (integers)" if result.exact else "in log space (float64)")
    t.add_row("weighted", "yes (|w|)" if result.weighted else "no")
    t.add_row("nodes / edges", f"{result.num_nodes:,} / {result.num_edges:,}")
    frac = result.num_active / result.num_nodes if result.num_nodes else 0.0
    t.add_row("active nodes", f"{result.num_active:,} ({frac:.1%})")
    parts: list[Table] = [t]
    nodes = result.top_nodes(top) if top > 0 else []
    if nodes:
        tn = Table(title=f"Top {len(nodes)} inactive nodes by emergent paths", title_justify="left")
        tn.add_column("node", justify="right")
        tn.add_column("name")
        tn.add_column("log10 paths", justify="right")
        tn.add_column("share of E", justify="right")
        for c in nodes:
            tn.add_row(str(c.index), c.name, f"{c.log10:.4f}", f"{c.share:.2%}")
        parts.append(tn)
    if result.layer_log10:
        tl = Table(title="Emergent paths by the layer they start in", title_justify="left")
        tl.add_column("layer", justify="right")
        tl.add_column("log10 paths", justify="right")
        tl.add_column("share of E", justify="right")
        for layer, lg in sorted(result.layer_log10.items()):
            share = "—" if lg is None or result.log10 is None else f"{10.0 ** (lg - result.log10):.2%}"
            tl.add_row(str(layer), "—" if lg is None else f"{lg:.4f}", share)
        parts.append(tl)
    return Group(*parts)
