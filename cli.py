"""The ``emergence`` command line: a thin Typer layer over the library.

Every command calls library functions, prints their result, and turns an
``EmergenceError`` into one sentence on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from emergence.defaults import (
    DEFAULT_AGGREGATION,
    DEFAULT_GRANULARITY,
    DEFAULT_OUTPUTS,
    DEFAULT_THRESHOLD,
    SWEEP_THRESHOLDS,
)


class _PlainHelp:
    """Help that reads as a user types it: ``--help`` without a ``<bool>`` type, arguments shown by their
    name alone (``PATH``, not ``PATH <path>``), and required arguments in the usage line as ``PATH``
    rather than ``{PATH}``."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if p.name == "help":
                p.metavar = ""
            elif getattr(p, "param_type_name", "") == "argument" and hasattr(p, "display_type_rich"):
                p.display_type_rich = lambda ctx: None  # the metavar names it already
        return params

    def collect_usage_pieces(self, ctx):  # type: ignore[no-untyped-def]
        pieces = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        return [p[1:-1] if len(p) > 2 and p[0] == "{" and p[-1] == "}" else p for p in pieces]


class _Command(_PlainHelp, TyperCommand):
    """Every command of the app (see :class:`_PlainHelp`)."""


class _OneLineErrors(_PlainHelp, TyperGroup):
    """Usage errors (an unknown choice, a missing option) as one line on stderr and exit status 1.

    Typer would draw a boxed panel and exit with 2; the toolkit's rule is one sentence and 1.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        except Exception as exc:
            # click's exceptions (vendored inside typer in recent releases, so matched by name)
            names = {c.__name__ for c in type(exc).__mro__}
            if "NoArgsIsHelpError" in names:
                exc.show()  # type: ignore[attr-defined]
                sys.exit(0)
            if "ClickException" in names:
                typer.echo(f"error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
                sys.exit(1)
            if debug:
                raise
            # Not one of ours: a bug, but the user still gets one line (and --debug shows the traceback).
            from emergence.errors import first_line

            typer.echo(f"error: unexpected {type(exc).__name__}: {first_line(exc)} (a bug in emergence; "
                       "rerun with --debug for the traceback and report it)", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Measure emergence (paths from inactive to active nodes) in neural networks and directed graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)



# Choices as Enums so that --help lists them. The library keeps the tables (METHODS,
# AGGREGATIONS, ARCHITECTURES, OPTIMIZERS, PRUNE_*); tests/test_cli_choices.py checks that
# these match, and the CLI stays importable without torch for a fast --help.
_OUTPUTS_HELP = ("How output units (logits) count: exclude (not nodes: logits have no nonlinearity, and shifting "
                 "all logits changes no prediction), logits (raw value > threshold, the old rule) or softmax "
                 "(mean probability > threshold).")


def _flag(name: str, help: str, **extra: object) -> object:
    """A boolean option that is a plain flag: ``--json``, shown without a type or a ``--no-`` twin."""
    return typer.Option(name, metavar="", help=help, **extra)


def _igraph_without_drawing() -> None:
    """Import igraph without its drawing backends: igraph imports ``matplotlib.pyplot`` when it is
    installed (about 0.4 s, a third of a small ``emergence graph`` run) only to draw graphs, which the
    command line never does. Matplotlib stays importable afterwards (``emergence plot`` needs it)."""
    if "igraph" in sys.modules or "matplotlib" in sys.modules:
        return
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # makes `import matplotlib` fail inside igraph
    try:
        import igraph  # noqa: F401
    except ImportError:
        pass  # reported where a graph file is read
    finally:
        del sys.modules["matplotlib"]


def _init_params(params: dict, init: Init, alpha: float) -> dict:
    """Architecture parameters with the initialization recorded (nothing added for the default)."""
    if init is Init.default and alpha == 1.0:
        return params
    return {**params, "init": init.value, "init_alpha": alpha}


class Method(str, Enum):
    auto = "auto"
    exact = "exact"
    log = "log"


class Aggregation(str, Enum):
    mean = "mean"
    absmean = "absmean"
    frac = "frac"


class Granularity(str, Enum):
    channel = "channel"
    neuron = "neuron"


class Outputs(str, Enum):
    exclude = "exclude"
    logits = "logits"
    softmax = "softmax"


#: The library's defaults (:mod:`emergence.defaults`) as the CLI's choices.
_AGGREGATION, _GRANULARITY, _OUTPUTS = (Aggregation(DEFAULT_AGGREGATION), Granularity(DEFAULT_GRANULARITY),
                                        Outputs(DEFAULT_OUTPUTS))
_SWEEP_THRESHOLDS = ",".join(f"{t:g}" for t in SWEEP_THRESHOLDS)


class Condense(str, Enum):
    any = "any"
    all = "all"


class Init(str, Enum):
    default = "default"
    emergence = "emergence"


class Arch(str, Enum):
    mlp = "mlp"
    cnn = "cnn"
    vgg = "vgg"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"


class PruneAt(str, Enum):
    init = "init"
    after = "after"
    iterative = "iterative"


class PruneScope(str, Enum):
    layerwise = "layerwise"
    global_ = "global"


class PruneStructure(str, Enum):
    unstructured = "unstructured"
    structured = "structured"


class GraphFormat(str, Enum):
    graphml = "graphml"
    gml = "gml"
    edgelist = "edgelist"
    ncol = "ncol"
    lgl = "lgl"
    pajek = "pajek"
    dl = "dl"
    torch = "torch"


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"emergence {version('emergence')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            from emergence import __version__

            typer.echo(f"emergence {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, _flag("--debug", "Show the Python traceback of an error, with the errors that caused "
                                            "it.")] = False,
    version: Annotated[bool, _flag("--version", "Print the version and exit.", callback=_show_version,
                                   is_eager=True)] = False,
) -> None:
    """Measure emergence (paths from inactive to active nodes) in neural networks and directed graphs."""


def _debug() -> bool:
    """Whether ``emergence --debug ...`` was given (read from the running command's root context)."""
    try:
        from typer._click.globals import get_current_context  # typer >= 0.20 vendors click
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import get_current_context
    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


@contextmanager
def _errors() -> Iterator[None]:
    from emergence.errors import EmergenceError

    try:
        yield
    except EmergenceError as exc:
        if _debug():  # the traceback with its chain of causes, then the usual line
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command(cls=_Command)
def graph(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Graph file: GraphML, GML, edge list, NCOL, LGL, "
                                                              "Pajek or DL.")],
    active_attr: Annotated[str, typer.Option(help="Node attribute holding the activity flags.")] = "active",
    weight_attr: Annotated[str, typer.Option(help="Edge attribute holding the weights.")] = "weight",
    weighted: Annotated[bool, _flag("--weighted", "Weight each path by the product of |w| along it.")] = False,
    json: Annotated[bool, _flag("--json", "Print one JSON object on stdout and nothing else.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Device for the log-space count, e.g. cpu or cuda.")] = None,
    method: Annotated[Method, typer.Option(help="auto (exact up to a size limit), exact (integers) or log "
                                                "(log space).")] = Method.auto,
    format: Annotated[Optional[GraphFormat], typer.Option(help="File format, when the file ending does not "
                                                               "tell.")] = None,
    active_nodes: Annotated[
        Optional[Path], typer.Option(help="Text file of active node names or indices (for edge lists).")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="How many inactive nodes to list by their share of E.")] = 10,
    condense: Annotated[Optional[Condense], typer.Option(
        help="Replace each strongly connected component by one node first, active if any (or all) of its "
             "members are: a graph whose active nodes form cycles becomes countable.")] = None,
    max_length: Annotated[Optional[int], typer.Option(
        min=1, help="Count emergent walks of at most this many edges (finite on any graph; on a DAG the "
                    "paths of at most K edges).")] = None,
) -> None:
    """Count emergent paths in a graph file (active nodes come from a node attribute).

    Cycles among inactive nodes do not matter; where active nodes form cycles, E is infinite: --condense or
    --max-length make it finite.
    """
    _igraph_without_drawing()
    from emergence.adapters.graphfile import read_graph, read_node_list
    from emergence.cycles import condense as condensed
    from emergence.measure import measure

    with _errors():
        active = read_node_list(active_nodes) if active_nodes is not None else None
        g = read_graph(path, format=format.value if format else None, active_attr=active_attr,
                       weight_attr=weight_attr, active=active)
        if condense is not None:
            g = condensed(g, condense.value)
        result = measure(g, weighted=weighted, method=method.value, device=device,  # type: ignore[arg-type]
                         max_length=max_length)
    if json:
        typer.echo(result.to_json())
        return
    from rich.console import Console

    from emergence.experiments.console import result_table

    Console().print(result_table(result, title=f"Emergence of {path.name}", top=top))


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from emergence.errors import ConfigError

    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--thresholds takes numbers separated by commas, got {text!r}") from None


@app.command("measure", cls=_Command)
def measure_cmd(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file: .pt2, .onnx, TorchScript .pt/.jit, a "
                                                                "state_dict or .safetensors of a built-in "
                                                                "architecture, or a trusted pickle.")],
    data: Annotated[Optional[str], typer.Option(help="Probe inputs (required): a bundled dataset name, an .npz "
                                                     "file (array x, optional y), or 'random' for a seeded random "
                                                     "batch shaped like the model's inputs.")] = None,
    samples: Annotated[int, typer.Option(help="Probe batch size.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the random batch.")] = 0,
    threshold: Annotated[float, typer.Option(help="A unit is active when its statistic exceeds this.")] = (
        DEFAULT_THRESHOLD),
    thresholds: Annotated[Optional[str], typer.Option(help="More thresholds, comma-separated (one forward pass "
                                                           "serves all).")] = None,
    aggregation: Annotated[Aggregation, typer.Option(help="mean, absmean, or frac (fraction of samples above the "
                                                          "threshold).")] = _AGGREGATION,
    weighted: Annotated[bool, _flag("--weighted", "Weight paths by |w| of the effective weights.")] = False,
    granularity: Annotated[Granularity, typer.Option(
        help="channel: one node per channel of a conv layer (activity averaged over positions); neuron: one node "
             "per (channel, position) activation, counted by transposed convolutions without an edge "
             "list.")] = _GRANULARITY,
    outputs: Annotated[Outputs, typer.Option(help=_OUTPUTS_HELP)] = _OUTPUTS,
    json: Annotated[bool, _flag("--json", "Print one JSON object on stdout and nothing else.")] = False,
    save_graph: Annotated[Optional[Path], typer.Option(help="Also save the graph: .pt (plain tensors), .graphml "
                                                             "or .gml (with activity and layer attributes); at neuron "
                                                             "level only up to 10^7 edges.")] = None,
    device: Annotated[Optional[str], typer.Option(help="Device for the forward pass and the count.")] = None,
    trust_pickle: Annotated[bool, _flag("--trust-pickle", "Allow unpickling a whole-model file (runs its code).")] = \
        False,
    timeout: Annotated[float, typer.Option(help="Seconds the model's forward passes may take in all; foreign code "
                                                "that runs longer is stopped.")] = 600.0,
) -> None:
    """Measure emergence of a saved model on a probe batch, layer by layer."""
    from emergence.adapters.graphfile import write_graph
    from emergence.adapters.model_measure import measure_model

    with _errors():
        if data is None:
            from emergence.errors import ConfigError

            raise ConfigError("measure needs a probe batch: --data NAME (a bundled dataset), --data PATH (an .npz "
                              "file), or --data random for a seeded random batch shaped like the model's inputs")
        m = measure_model(model, data, samples=samples, seed=seed, threshold=threshold,
                          thresholds=_floats(thresholds), aggregation=aggregation.value, weighted=weighted,
                          device=device, trust_pickle=trust_pickle, granularity=granularity.value,
                          outputs=outputs.value, timeout=timeout)
        if save_graph is not None:
            write_graph(m.explicit_graph(), save_graph)
    if json:
        typer.echo(m.to_json())
        return
    from rich.console import Console

    from emergence.experiments.console import model_table

    Console().print(model_table(m, title=f"Emergence of {model.name}"))


def _ints(text: str, what: str) -> list[int]:
    from emergence.errors import ConfigError

    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what} takes integers separated by commas, got {text!r}") from None


def _json_object(text: str | None, what: str) -> dict:
    import json as _json

    from emergence.errors import ConfigError

    if not text:
        return {}
    try:
        value = _json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} must be a JSON object such as '{{\"widths\": [256, 128]}}': {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, got {text!r}")
    return value


@app.command(cls=_Command)
def sweep(
    out: Annotated[Path, typer.Option(help="Where results go: a Zarr store (.zarr), written cell by cell, or "
                                           "NetCDF (.nc), written from the store <out>.zarr at the end. Run "
                                           "the same command again to resume.")],
    arch: Annotated[Arch, typer.Option(rich_help_panel="Model and data", help="Architecture.")] = Arch.mlp,
    arch_params: Annotated[Optional[str], typer.Option(rich_help_panel="Model and data",
                                                       help="Architecture parameters as JSON, e.g. "
                                                            "'{\"widths\": [256, 128]}' or '{\"depth\": 11}'.")] = None,
    dataset: Annotated[str, typer.Option(rich_help_panel="Model and data",
                                         help="mnist, fashion-mnist, an .npz file (x, y[, is_test]) or "
                                              "cifar10:FOLDER.")] = "mnist",
    sparsity: Annotated[str, typer.Option(rich_help_panel="Pruning",
                                          help="Target sparsities, comma-separated.")] = "0,0.3,0.5,0.7",
    seeds: Annotated[int, typer.Option(rich_help_panel="Training", help="Number of seeds (0, 1, ...).")] = 3,
    epochs: Annotated[int, typer.Option(rich_help_panel="Training", help="Training epochs per run.")] = 20,
    lr: Annotated[float, typer.Option(rich_help_panel="Training", help="Constant learning rate.")] = 0.1,
    optimizer: Annotated[Optimizer, typer.Option(rich_help_panel="Training", help="Optimizer.")] = Optimizer.sgd,
    momentum: Annotated[float, typer.Option(rich_help_panel="Training", help="SGD momentum.")] = 0.0,
    batch_size: Annotated[int, typer.Option(rich_help_panel="Training", help="Batch size.")] = 64,
    weight_decay: Annotated[float, typer.Option(rich_help_panel="Training", help="Weight decay.")] = 0.0,
    prune_at: Annotated[PruneAt, typer.Option(rich_help_panel="Pruning",
                                              help="init, after (train, prune, fine-tune) or iterative (lottery "
                                                   "ticket with rewinding).")] = PruneAt.init,
    prune_scope: Annotated[PruneScope, typer.Option(rich_help_panel="Pruning",
                                                    help="Rank weights by magnitude within each layer or across "
                                                         "all layers.")] = PruneScope.layerwise,
    prune_structure: Annotated[PruneStructure, typer.Option(rich_help_panel="Pruning",
                                                            help="Prune single weights or whole units.")] =
    PruneStructure.unstructured,
    prune_fraction: Annotated[float, typer.Option(rich_help_panel="Pruning",
                                                  help="Iterative pruning: fraction of remaining weights per "
                                                       "round.")] = 0.2,
    pretrain_epochs: Annotated[int, typer.Option(rich_help_panel="Pruning",
                                                 help="Dense epochs before pruning (after), or per round "
                                                      "(iterative).")] = 1,
    thresholds: Annotated[str, typer.Option(rich_help_panel="Measurement",
                                            help="Activity thresholds, comma-separated.")] = _SWEEP_THRESHOLDS,
    aggregation: Annotated[Aggregation, typer.Option(rich_help_panel="Measurement",
                                                     help="How activations are aggregated over the probe "
                                                          "batch.")] = _AGGREGATION,
    probe_samples: Annotated[int, typer.Option(rich_help_panel="Measurement",
                                               help="Training images in the probe batch.")] = 256,
    weighted: Annotated[bool, _flag("--weighted", "Record weighted emergence (|w|) instead of path counts.",
                                    rich_help_panel="Measurement")] = False,
    granularity: Annotated[Granularity, typer.Option(rich_help_panel="Measurement", 
        help="Graph of a conv net: one node per channel, or per (channel, position) neuron (counted by transposed "
             "convolutions).")] = _GRANULARITY,
    outputs: Annotated[Outputs, typer.Option(rich_help_panel="Measurement", help=_OUTPUTS_HELP)] = _OUTPUTS,
    init: Annotated[Init, typer.Option(rich_help_panel="Model and data",
                                       help="default: the architecture's own initialization; emergence: then "
                                            "rescale layer i by alpha**(i - (L-1)/2) (Li, George, Silva "
                                            "2024).")] = Init.default,
    init_alpha: Annotated[float, typer.Option(rich_help_panel="Model and data",
                                              help="alpha of --init emergence (1 = no change); a grid axis "
                                                   "too: --grid init_alpha=1,2,4.")] = 1.0,
    device: Annotated[Optional[str], typer.Option(rich_help_panel="Grid, cluster and store",
                                                  help="Device to train and measure on.")] = None,
    landscape: Annotated[bool, _flag("--landscape", "Also probe the loss landscape (Hessian, slices).",
                                     rich_help_panel="Landscape")] = False,
    landscape_every: Annotated[int, typer.Option(rich_help_panel="Landscape",
                                                 help="Probe the landscape every K epochs (0: final epoch "
                                                      "only).")] = 0,
    landscape_samples: Annotated[int, typer.Option(rich_help_panel="Landscape",
                                                   help="Training examples in the landscape batch.")] = 512,
    grid: Annotated[Optional[list[str]], typer.Option(help="An extra grid axis, KEY=V1,V2,... (repeatable): width, "
                                                          "init_alpha, lr, optimizer, momentum, weight_decay, "
                                                          "batch_size, "
                                                          "prune_at, prune_scope, prune_structure, prune_fraction, "
                                                          "pretrain_epochs.")] = None,
    workers: Annotated[int, typer.Option(rich_help_panel="Grid, cluster and store",
                                         help="Worker processes of a local Dask cluster (1: run cells in this "
                                              "process).")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(rich_help_panel="Grid, cluster and store",
                                                     help="Run cells on an existing Dask cluster: its address "
                                                          "(tcp://host:8786) or scheduler file.")] = None,
    threads: Annotated[int, typer.Option(rich_help_panel="Grid, cluster and store",
                                         help="Torch threads per cell. Results are bitwise identical for any "
                                              "--workers at the same --threads.")] = 1,
    overwrite: Annotated[bool, _flag("--overwrite", "Replace an existing store of another config.",
                                     rich_help_panel="Grid, cluster and store")] = False,
    retry_failed: Annotated[bool, _flag("--retry-failed", "Run failed cells again.",
                                        rich_help_panel="Grid, cluster and store")] = False,
    quiet: Annotated[bool, _flag("--quiet", "No progress bars.", rich_help_panel="Grid, cluster and store")] = False,
) -> None:
    """Train pruned networks over a grid (sparsity x seed x any --grid axis), recording emergence every epoch.

    Every finished cell is on disk at once; a killed sweep resumes when the same command runs again.
    """
    from emergence.experiments.console import SweepProgress
    from emergence.experiments.grid import parse_grid
    from emergence.experiments.prune import PruneConfig
    from emergence.experiments.runner import run_stored_sweep
    from emergence.experiments.sweep import SweepConfig
    from emergence.experiments.train import TrainConfig
    from emergence.landscape import LandscapeConfig

    with _errors():
        cfg = SweepConfig(
            arch=arch.value, arch_params=_init_params(_json_object(arch_params, "--arch-params"), init, init_alpha),
            dataset=dataset,
            sparsities=tuple(_floats(sparsity) or []), seeds=tuple(range(seeds)),
            train=TrainConfig(epochs=epochs, optimizer=optimizer.value, lr=lr, momentum=momentum,
                              weight_decay=weight_decay, batch_size=batch_size),
            prune=PruneConfig(when=prune_at.value, scope=prune_scope.value, structure=prune_structure.value,
                              fraction=prune_fraction,
                              pretrain_epochs=pretrain_epochs),
            thresholds=tuple(_floats(thresholds) or []), aggregation=aggregation.value, probe_samples=probe_samples,
            weighted=weighted, device=device,
            landscape=LandscapeConfig(every=landscape_every, samples=landscape_samples) if landscape else None,
            grid=parse_grid(grid), threads=threads, granularity=granularity.value, outputs=outputs.value,
        )
        _warn_oversubscription(workers, threads, scheduler)
        with _interruptible(out):
            outcome = run_stored_sweep(cfg, out, workers=workers, scheduler=scheduler, overwrite=overwrite,
                                       retry_failed=retry_failed, progress=SweepProgress(enabled=not quiet))
    _finish(outcome, cfg.cells)


@contextmanager
def _interruptible(out: Path) -> Iterator[None]:
    """Ctrl-C: one line saying what is kept and that the same command resumes; exit status 130."""
    try:
        yield
    except KeyboardInterrupt:
        from emergence.experiments.runner import saved_cells

        done, cells = saved_cells(out) if out.suffix in (".zarr", ".nc") else (0, 0)
        kept = (f"{done} of {cells} cells are saved in {str(out)!r}" if cells
                else f"finished cells are kept in {str(out)!r}")
        typer.echo(f"interrupted: {kept}; run the same command again to resume", err=True)
        raise typer.Exit(130) from None


def _warn_oversubscription(workers: int, threads: int, scheduler: str | None) -> None:
    import os

    cores = os.cpu_count() or 1
    if scheduler is None and workers * threads > cores:
        typer.echo(f"warning: {workers} workers x {threads} threads exceed the {cores} cores here; "
                   "cells will slow each other down", err=True)


def _finish(outcome, cells: int) -> None:
    """One summary line on stderr; exit status 1 when cells failed (named) or are pending."""
    done = cells - len(outcome.failed) - outcome.pending
    typer.echo(f"wrote {outcome.path}: {done} of {cells} done ({outcome.ran} run now, {outcome.skipped} before), "
               f"{len(outcome.failed)} failed", err=True)
    if outcome.failed:
        names = "; ".join(f"{label} ({error})" for label, error in outcome.failed[:5])
        more = f" and {len(outcome.failed) - 5} more" if len(outcome.failed) > 5 else ""
        typer.echo(f"error: {len(outcome.failed)} cells failed: {names}{more}; fix the cause and rerun with "
                   "--retry-failed", err=True)
        raise typer.Exit(1)


@app.command(cls=_Command)
def plot(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Results from 'emergence sweep': a .zarr store or a .nc "
                                                            "file.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG figures.")],
    threshold: Annotated[float, typer.Option(help="Threshold of the per-epoch figures.")] = DEFAULT_THRESHOLD,
    sel: Annotated[Optional[list[str]], typer.Option(help="Fix a grid axis, KEY=VALUE (repeatable), e.g. "
                                                         "width=2.")] = None,
) -> None:
    """Draw the figures of a sweep (accuracy, emergence, relative emergence, correlations, thresholds).

    With grid axes, one folder of figures per setting (KEY=VALUE) and a size-study figure over width.
    """
    from emergence.experiments.facets import parse_sel
    from emergence.experiments.plot import plot_sweeps
    from emergence.experiments.results import cells_note, open_results

    with _errors():
        ds = open_results(run)
        paths = plot_sweeps(ds, out, threshold=threshold, sel=parse_sel(sel))
    if cells_note(ds):
        typer.echo(f"note: the figures {cells_note(ds)}", err=True)
    for p in paths:
        typer.echo(str(p))


@app.command(cls=_Command)
def report(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Results from 'emergence sweep': a .zarr store or a .nc "
                                                            "file.")],
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the report as Markdown here.")] = None,
    threshold: Annotated[float, typer.Option(help="Threshold of the tables.")] = DEFAULT_THRESHOLD,
    sel: Annotated[Optional[list[str]], typer.Option(help="Fix a grid axis, KEY=VALUE (repeatable), e.g. "
                                                         "width=2.")] = None,
) -> None:
    """Summarize a sweep: accuracy, convergence, correlations with p-values, and the paper's claims.

    With grid axes, one report per setting (or those --sel picks) and, over width, a size study.
    """
    from rich.console import Console

    from emergence.adapters.atomic import write_text
    from emergence.experiments.console import report_tables
    from emergence.experiments.facets import parse_sel
    from emergence.experiments.report import summarize_sweep, to_markdown
    from emergence.experiments.results import cells_note, open_results

    with _errors():
        ds = open_results(run)
        reps = summarize_sweep(ds, threshold=threshold, sel=parse_sel(sel))
    if cells_note(ds):
        typer.echo(f"note: the report {cells_note(ds)}", err=True)
    with _errors():
        if markdown is not None:
            write_text(markdown, "\n".join(to_markdown(rep) for rep in reps))
    console = Console()
    for rep in reps:
        console.print(report_tables(rep, width=console.width))


@app.command("landscape", cls=_Command)
def landscape_cmd(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="PyTorch model file: .pt2, TorchScript, a "
                                                                "state_dict or .safetensors of a built-in "
                                                                "architecture, or a trusted pickle.")],
    data: Annotated[str, typer.Option(help="Labeled data: a bundled dataset name or an .npz with x and y.")],
    samples: Annotated[int, typer.Option(help="Examples the loss is taken on.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the random vectors and directions.")] = 0,
    iters: Annotated[int, typer.Option(help="Power iterations for the top Hessian eigenvalue.")] = 50,
    trace_samples: Annotated[int, typer.Option(help="Rademacher vectors for the trace estimate.")] = 30,
    steps: Annotated[int, typer.Option(help="Points of the 1-D slice.")] = 41,
    span: Annotated[float, typer.Option(help="The slices cover [-span, span] along each direction.")] = 1.0,
    json: Annotated[bool, _flag("--json", "Print one JSON object on stdout and nothing else.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Folder for a 1-D slice and a 2-D contour PNG.")] = None,
    trust_pickle: Annotated[bool, _flag("--trust-pickle", "Allow unpickling a whole-model file (runs its code).")] = \
        False,
    timeout: Annotated[float, typer.Option(help="Seconds a TorchScript model's first forward pass may take (run "
                                                "where it can be stopped).")] = 600.0,
    quiet: Annotated[bool, _flag("--quiet", "No progress bars (on stderr, one per probe).")] = False,
) -> None:
    """Measure the loss landscape of a model: Hessian top eigenvalue and trace, slice minima and roughness."""
    import json as _json

    from emergence.experiments.console import StepBars
    from emergence.experiments.landscape_report import landscape_of
    from emergence.landscape import LandscapeConfig

    with _errors():
        cfg = LandscapeConfig(samples=samples, iters=iters, trace_samples=trace_samples, steps=steps, span=span,
                              seed=seed)
        with StepBars(enabled=not quiet) as bars:
            rep = landscape_of(model, data, samples=samples, config=cfg, plot=plot, trust_pickle=trust_pickle,
                               timeout=timeout, progress=bars)
    if json:
        typer.echo(_json.dumps(rep.to_dict(), allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    f = rep.figures
    t = Table(title=f"Loss landscape of {model.name} ({rep.samples} examples)", title_justify="left",
              show_header=False)
    t.add_row("top Hessian eigenvalue", f"{f['hessian_top']:.6g}")
    t.add_row("Hessian trace", f"{f['hessian_trace']:.6g} ± {f['hessian_trace_stderr']:.2g}")
    t.add_row("local minima on the 1-D slice", f"{f['slice_minima']:g}")
    t.add_row("slice roughness (TV / range)", f"{f['slice_roughness']:.4g}")
    t.add_row("slice curvature (mean Δ² / range²)", f"{f['slice_curvature']:.4g}")
    t.add_row("centre loss - slice minimum", f"{f['slice_gap']:.4g}")
    for p in rep.plots:
        t.add_row("figure", str(p))
    Console().print(t)


@app.command(cls=_Command)
def reproduce(
    out: Annotated[Path, typer.Option(help="Folder for the .nc files, figures and report.md.")],
    quick: Annotated[bool, _flag("--quick", "2 seeds x 4 epochs instead of 5 seeds x 20 epochs, and no robustness "
                                             "grid or initialization comparison.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes of a local Dask cluster (1: run cells in this "
                                              "process).")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(help="Run cells on an existing Dask cluster: its address "
                                                          "(tcp://host:8786) or scheduler file.")] = None,
    quiet: Annotated[bool, _flag("--quiet", "No progress bars.")] = False,
) -> None:
    """Run the paper's MLP experiment on bundled MNIST and Fashion-MNIST (four pruning levels, several seeds).

    The full run adds a robustness grid (SGD / Adam x pruning at init / after / iterative, verdicts per
    setting and threshold) and the emergence-promoting initialization against the default.

    Every finished cell is kept; run the same command again to continue an interrupted reproduction.
    """
    from emergence.experiments.console import SweepProgress
    from emergence.experiments.reproduce import reproduce as run_reproduction

    with _errors(), _interruptible(out):
        done = run_reproduction(out, quick=quick, progress=SweepProgress(enabled=not quiet), workers=workers,
                                scheduler=scheduler)
    for p in [*done.results, *done.figures, done.report]:
        typer.echo(str(p))


if __name__ == "__main__":
    app()
