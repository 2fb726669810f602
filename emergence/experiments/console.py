"""Terminal rendering of results with rich (tables for people; JSON lives on the results)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table

from emergence.result import EmergenceResult

__all__ = ["result_table", "model_table", "report_tables", "SweepProgress", "StepBars"]


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
        tl = Table(title="Emergent paths by start layer", title_justify="left")
        tl.add_column("layer", justify="right")
        tl.add_column("log10 paths", justify="right")
        tl.add_column("share of E", justify="right")
        shares = result.layer_shares()
        for layer, lg in sorted(result.layer_log10.items()):
            tl.add_row(str(layer), "—" if lg is None else f"{lg:.4f}", "—" if lg is None else f"{shares[layer]:.2%}")
        parts.append(tl)
    return Group(*parts)


def model_table(m: Any, *, title: str = "") -> Group:
    """A torchinfo-style per-layer table of a :class:`~emergence.adapters.model_measure.ModelMeasurement`, then totals.

    Examples
    --------
    >>> import io, torch
    >>> from rich.console import Console
    >>> from emergence.adapters.model_measure import measure_model
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> console = Console(width=120, record=True, file=io.StringIO())
    >>> console.print(model_table(measure_model(net, torch.rand(16, 4))))
    >>> "Total" in console.export_text()
    True
    """
    r = m.result
    t = Table(title=title or f"Emergence of {m.model_graph.source}", title_justify="left",
              caption="edges: incoming, nonzero; log10 E, share: emergent paths that start in the layer",
              caption_justify="left")
    for col, just in (("layer", "left"), ("kind", "left"), ("units", "right"), ("active", "right"),
                      ("active %", "right"), ("edges", "right"), ("log10 E", "right"), ("share", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in m.layers.itertuples():
        lg = row.log10_emergence
        t.add_row(str(row.layer), str(row.kind), f"{row.units:,}", f"{row.active:,}", f"{row.active_fraction:.1%}",
                  f"{row.edges:,}", "—" if lg is None or lg != lg else f"{lg:.3f}", f"{row.share:.1%}")
    frac = r.num_active / r.num_nodes if r.num_nodes else 0.0
    t.add_section()
    t.add_row("Total", "", f"{r.num_nodes:,}", f"{r.num_active:,}", f"{frac:.1%}", f"{r.num_edges:,}",
              _num(r.log10, 4), "100%" if r.log10 is not None else "—")
    s = Table(show_header=False, box=None)
    s.add_column(style="bold")
    s.add_column(justify="right")
    s.add_row("emergence E", _num(r.value))
    s.add_row("log10 E", _num(r.log10))
    s.add_row("relative emergence (E / edges)", _num(r.relative))
    s.add_row("log10 relative", _num(r.log10_relative))
    s.add_row("active fraction", f"{frac:.1%}")
    s.add_row("granularity", "neuron (every channel × position)" if m.granularity == "neuron" else "channel")
    s.add_row("probe", f"{m.samples} samples, {m.aggregation} activation > {m.threshold:g}"
              + (" (weighted paths)" if r.weighted else ""))
    parts: list[Any] = [t, s]
    if m.thresholds:
        th = Table(title="By threshold (one forward pass)", title_justify="left")
        for col in ("threshold", "active", "log10 E", "log10 relative E"):
            th.add_column(col, justify="right")
        for tau, res in m.thresholds:
            th.add_row(f"{tau:g}", f"{res.num_active:,}", _num(res.log10, 5), _num(res.log10_relative, 5))
        parts.append(th)
    return Group(*parts)


def report_tables(rep: Any, *, width: int | None = None) -> Group:
    """A :class:`~emergence.experiments.report.SweepReport` as rich tables followed by its findings.

    A table wider than ``width`` columns is drawn vertically, one block of ``column  value`` lines per
    row, so that no number or interval is ever broken across lines (a terminal of 80 columns reads all).
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.text import Text

    wide = Console(width=100_000)  # measures the width a table needs without wrapping anything
    parts: list[Any] = []
    sections = [(f"{rep.title} — by sparsity (mean ± SD [95% CI] over runs, τ={rep.threshold:g})", rep.per_sparsity),
                ("Emergence at epoch t vs test-accuracy gain from t to t+1", rep.correlations),
                ("Threshold sensitivity", rep.thresholds), *rep.extra]
    for title, rows in sections:
        if not rows:
            continue
        t = Table(title=title, title_justify="left")
        for k in rows[0]:
            t.add_column(k.strip(), justify="left" if k in ("group",) else "right", no_wrap=True)
        for r in rows:
            t.add_row(*(str(v) for v in r.values()))
        if width is not None and Measurement.get(wide, wide.options, t).maximum > width:
            t = _vertical(title, rows)
        parts.append(t)
    parts.append(Text("Findings:", style="bold"))
    parts += [Text(f"• {f}") for f in rep.findings]
    return Group(*parts)


def _vertical(title: str, rows: list[dict[str, Any]]) -> Table:
    """Rows as blocks: the first column's value as a heading, then one ``column  value`` line per cell."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column(no_wrap=True)
    t.add_column(justify="right")  # wraps at spaces only when a value (a claim's statement) is long
    keys = list(rows[0])
    for i, r in enumerate(rows):
        if i:
            t.add_section()
        t.add_row(f"[bold]{keys[0].strip()} {r[keys[0]]}[/bold]", "")
        for k in keys[1:]:
            t.add_row(f"  {k.strip()}", str(r[k]))
    return t


class SweepProgress:
    """Rich progress on stderr, fed by sweep events: cells done / running / failed with an ETA, and epochs.

    Works for in-process sweeps (an epoch bar for the running cell) and for Dask sweeps
    (cells across all workers; the ETA comes from the rate at which cells finish).
    """

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=False)
        self._cells = self._epochs = None
        self._epoch_label = "epochs"
        self.running = self.failed = 0

    def _describe(self) -> None:
        self._bar.update(self._cells, description=f"cells (running {self.running}, failed {self.failed})")

    def __call__(self, event: str, **info: Any) -> None:
        if event == "note":  # something the user must read (damaged cells), even with --quiet
            self._bar.console.print(f"note: {info['text']}", markup=False, highlight=False, soft_wrap=True)
            return
        if not self.enabled:
            return
        if event == "start":
            self._bar.start()
            self.failed = info.get("failed", 0)
            self._nepochs = info.get("epochs")
            self._cells = self._bar.add_task("cells", total=info["cells"], completed=info.get("done", 0))
            self._describe()
        elif event == "cell":
            if self._epochs is None:
                self._epochs = self._bar.add_task("epochs", total=None)
            self._epoch_label = f"epochs ({info['label']})"
            self._bar.update(self._epochs, completed=0, total=self._nepochs, description=self._epoch_label)
        elif event == "epoch" and self._epochs is not None:
            self._bar.update(self._epochs, completed=info["epoch"], description=self._epoch_label)
        elif event == "probe" and self._epochs is not None:  # a landscape probe inside the cell, step by step
            self._bar.update(self._epochs, description=f"{self._epoch_label}: {info['stage']} "
                                                       f"{info['done']}/{info['total']}")
        elif event == "running":
            self.running = info["count"]
            self._describe()
        elif event == "cell-done":
            self.failed += info["status"] == "failed"
            self._bar.advance(self._cells)
            self._describe()
        elif event == "done":
            self.running = 0
            self._describe()
            self._bar.stop()


class StepBars:
    """Rich bars on stderr for a ``progress(stage, done, total)`` callback (see
    :mod:`emergence.landscape.progress`): one bar per stage, drawn as the stage starts.

    Use as a context manager; the bars stay on screen when it closes. Disabled, or closed before the
    first step, it draws nothing.
    """

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._tasks: dict[str, Any] = {}
        self._started = False

    def __enter__(self) -> StepBars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if not self._started:  # drawn from the first step on: an error before it prints only its line
            self._bar.start()
            self._started = True
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(stage, total=total)
        self._bar.update(self._tasks[stage], completed=done, total=total)
