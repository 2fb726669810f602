"""The ``emergence`` command line: a thin Typer layer over the library.

Every command calls library functions, prints their result, and turns an
``EmergenceError`` into one sentence on stderr and exit status 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="Measure emergence (paths from inactive to active nodes) in neural networks and directed graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _main() -> None:
    """Measure emergence (paths from inactive to active nodes) in neural networks and directed graphs."""


@contextmanager
def _errors() -> Iterator[None]:
    from emergence.errors import EmergenceError

    try:
        yield
    except EmergenceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def graph(
    path: Annotated[Path, typer.Argument(help="Graph file: GraphML, GML, edge list, NCOL, LGL, Pajek or DL.")],
    active_attr: Annotated[str, typer.Option(help="Node attribute holding the activity flags.")] = "active",
    weight_attr: Annotated[str, typer.Option(help="Edge attribute holding the weights.")] = "weight",
    weighted: Annotated[bool, typer.Option(help="Weight each path by the product of |w| along it.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Device for the log-space count, e.g. cpu or cuda.")] = None,
    method: Annotated[str, typer.Option(help="auto, exact (integers) or log (log space).")] = "auto",
    format: Annotated[Optional[str], typer.Option(help="File format, when the file ending does not tell.")] = None,
    active_nodes: Annotated[
        Optional[Path], typer.Option(help="Text file of active node names or indices (for edge lists).")
    ] = None,
    top: Annotated[int, typer.Option(help="How many inactive nodes to list by their share of E.")] = 10,
) -> None:
    """Count emergent paths in a graph file (active nodes come from a node attribute)."""
    from adapters.graphfile import read_graph, read_node_list
    from emergence.measure import measure

    with _errors():
        active = read_node_list(active_nodes) if active_nodes is not None else None
        g = read_graph(path, format=format, active_attr=active_attr, weight_attr=weight_attr, active=active)
        result = measure(g, weighted=weighted, method=method, device=device)  # type: ignore[arg-type]
    if json:
        typer.echo(result.to_json())
        return
    from rich.console import Console

    from emergence.console import result_table

    Console().print(result_table(result, title=f"Emergence of {path.name}", top=top))


if __name__ == "__main__":
    app()
