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


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from emergence.errors import ConfigError

    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--thresholds takes numbers separated by commas, got {text!r}") from None


@app.command("measure")
def measure_cmd(
    model: Annotated[Path, typer.Argument(help="Model file: .pt2, .onnx, TorchScript .pt/.jit, a state_dict or "
                                               ".safetensors of a built-in architecture, or a trusted pickle.")],
    data: Annotated[Optional[str], typer.Option(help="Probe inputs: a bundled dataset name, an .npz file "
                                                     "(array x, optional y), or 'random'.")] = None,
    samples: Annotated[int, typer.Option(help="Probe batch size.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the random batch.")] = 0,
    threshold: Annotated[float, typer.Option(help="A unit is active when its statistic exceeds this.")] = 0.05,
    thresholds: Annotated[Optional[str], typer.Option(help="More thresholds, comma-separated (one forward pass "
                                                           "serves all).")] = None,
    aggregation: Annotated[str, typer.Option(help="mean, absmean, or frac (fraction of samples above the "
                                                  "threshold).")] = "mean",
    weighted: Annotated[bool, typer.Option(help="Weight paths by |w| of the effective weights.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
    save_graph: Annotated[Optional[Path], typer.Option(help="Also save the graph: .pt (torch-geometric), .graphml "
                                                             "or .gml (with activity and layer attributes).")] = None,
    device: Annotated[Optional[str], typer.Option(help="Device for the forward pass and the count.")] = None,
    trust_pickle: Annotated[bool, typer.Option(help="Allow unpickling a whole-model file (runs its code).")] = False,
) -> None:
    """Measure emergence of a saved model on a probe batch, layer by layer."""
    from adapters.graphfile import write_graph
    from emergence.probe import measure_model

    with _errors():
        m = measure_model(model, data, samples=samples, seed=seed, threshold=threshold,
                          thresholds=_floats(thresholds), aggregation=aggregation, weighted=weighted,
                          device=device, trust_pickle=trust_pickle)
        if save_graph is not None:
            write_graph(m.model_graph.graph, save_graph)
    if json:
        typer.echo(m.to_json())
        return
    from rich.console import Console

    from emergence.console import model_table

    Console().print(model_table(m, title=f"Emergence of {model.name}"))


if __name__ == "__main__":
    app()
