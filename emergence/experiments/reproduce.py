"""The paper's MLP experiment, end to end: sweeps on bundled MNIST and Fashion-MNIST, figures, report.

An MLP (784-256-128-10, ReLU) is magnitude-pruned at initialization (layerwise, so no
layer is emptied) to four sparsities and trained with plain constant-rate SGD for
several seeds; emergence is recorded every epoch on a fixed probe batch of training
images, and the loss landscape (Hessian, filter-normalized slice) at the final epoch.
The full reproduction adds a robustness grid (optimizer x pruning schedule x dataset, every
claim's verdict per setting and threshold, :mod:`emergence.experiments.robustness`) and the
emergence-promoting initialization against the default. ``quick`` runs the main sweeps only,
with fewer seeds and epochs (a smoke run of the pipeline).

It runs through :func:`emergence.experiments.runner.run_stored_sweep`: every cell is written
to ``<dataset>.nc.zarr`` as it finishes, so an interrupted reproduction continues where it
stopped when it is run again, and ``workers`` spreads the cells over a local Dask cluster.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emergence.adapters.atomic import write_text
from emergence.defaults import with_default_threshold
from emergence.errors import EmergenceError, FileFormatError
from emergence.experiments.config import Progress, SweepConfig
from emergence.experiments.plot import plot_sweep
from emergence.experiments.prune import PruneConfig
from emergence.experiments.report import summarize, to_markdown
from emergence.experiments.results import open_results
from emergence.experiments.robustness import init_report, robustness_report
from emergence.experiments.runner import run_stored_sweep
from emergence.experiments.train import TrainConfig
from emergence.landscape import LandscapeConfig

__all__ = ["Reproduction", "init_configs", "reproduce", "reproduce_configs", "robustness_configs"]

DATASETS = ("mnist", "fashion-mnist")
SPARSITIES = (0.0, 0.5, 0.8, 0.95)
#: Thresholds recorded by every sweep of the reproduction (tau = 0: active means a positive mean).
THRESHOLDS = with_default_threshold(0.0, 0.01, 0.1, 0.2)
#: Optimizers of the robustness grid, each with a learning rate that trains it.
OPTIMIZERS = (("sgd", 0.1), ("adam", 0.001))
#: alpha values of the emergence-promoting initialization (1 = the default initialization).
INIT_ALPHAS = (1.0, 1.5, 2.0, 3.0)


def _mlp(dataset: str, arch_params: dict[str, Any] | None = None, **kw: Any) -> SweepConfig:
    """The reproduction's MLP (784-256-128-10) on ``dataset`` with every threshold recorded."""
    return SweepConfig(arch="mlp", arch_params={"widths": [256, 128], **(arch_params or {})}, dataset=dataset,
                       thresholds=THRESHOLDS, **kw)


def reproduce_configs(quick: bool = False) -> list[SweepConfig]:
    """The sweep configs of the reproduction, one per dataset.

    Examples
    --------
    >>> [c.dataset for c in reproduce_configs(quick=True)]
    ['mnist', 'fashion-mnist']
    """
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    epochs = 4 if quick else 20
    return [
        _mlp(d, sparsities=SPARSITIES, seeds=seeds, train=TrainConfig(epochs=epochs),
             prune=PruneConfig(when="init", scope="layerwise"),
             landscape=LandscapeConfig(every=0, samples=512, iters=30, trace_samples=20))
        for d in DATASETS
    ]


def robustness_configs(quick: bool = False) -> list[tuple[str, SweepConfig]]:
    """The robustness grid: dataset x optimizer sweeps, each over the three pruning schedules.

    Every sweep records the thresholds of :data:`THRESHOLDS` (0, the default one and 0.1 among them),
    so a claim's verdict can be given per (dataset, optimizer, schedule, threshold). Iterative pruning
    removes half of the remaining weights per round (one epoch each) and rewinds; ``after`` prunes
    after one dense epoch.

    Examples
    --------
    >>> [name for name, _ in robustness_configs(quick=True)]
    ['mnist-sgd', 'mnist-adam', 'fashion-mnist-sgd', 'fashion-mnist-adam']
    """
    seeds = (0, 1) if quick else (0, 1, 2)
    epochs = 2 if quick else 5
    return [
        (f"{d}-{opt}", _mlp(d, sparsities=SPARSITIES, seeds=seeds,
                            train=TrainConfig(epochs=epochs, optimizer=opt, lr=lr),
                            prune=PruneConfig(when="init", scope="layerwise", fraction=0.5, pretrain_epochs=1),
                            grid=(("prune_at", ("init", "after", "iterative")),)))
        for d in DATASETS for opt, lr in OPTIMIZERS
    ]


def init_configs(quick: bool = False) -> list[tuple[str, SweepConfig]]:
    """Emergence-promoting initialization against the default (alpha = 1), dense MLPs, one sweep per dataset.

    Runs with the same seed share their standard initialization before the rescaling, so the
    comparison with alpha = 1 is paired by seed.

    Examples
    --------
    >>> [c.grid for _, c in init_configs(quick=True)][0]
    (('init_alpha', (1.0, 1.5, 2.0, 3.0)),)
    """
    seeds = (0, 1) if quick else tuple(range(8))
    epochs = 2 if quick else 10
    return [
        (d, _mlp(d, arch_params={"init": "emergence"}, sparsities=(0.0,), seeds=seeds,
                 train=TrainConfig(epochs=epochs), grid=(("init_alpha", INIT_ALPHAS),)))
        for d in DATASETS
    ]


@dataclass
class Reproduction:
    """Files written by :func:`reproduce`."""

    results: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    report: Path | None = None


def reproduce(out: str | os.PathLike[str], *, quick: bool = False, progress: Progress | None = None,
              configs: list[SweepConfig] | None = None, workers: int = 1,
              scheduler: str | None = None, robustness: list[tuple[str, SweepConfig]] | None = None,
              inits: list[tuple[str, SweepConfig]] | None = None) -> Reproduction:
    """Run (or resume) the reproduction into ``out``: ``<dataset>.nc``, ``<dataset>/*.png`` and ``report.md``.

    Parameters
    ----------
    out : str or path-like
        The folder.
    quick : bool, default False
        2 seeds x 4 epochs instead of 5 seeds x 20 epochs.
    progress : callable, optional
        Receives the sweeps' progress events.
    configs : list of SweepConfig, optional
        Run these instead of :func:`reproduce_configs`.
    robustness, inits : list of (name, SweepConfig), optional
        The robustness grid (``robustness/<name>.nc``) and the initialization comparison
        (``init/<name>.nc``); by default :func:`robustness_configs` and :func:`init_configs` for
        the full reproduction, none for ``quick``; pass ``[]`` to skip.
    workers, scheduler
        As in :func:`emergence.experiments.runner.run_stored_sweep`.

    Raises
    ------
    FileFormatError
        If ``out`` cannot be created.
    EmergenceError
        If cells failed (named; the others are kept, and a rerun retries nothing unless asked).
    """
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create {str(folder)!r}: {exc}") from exc
    done = Reproduction()
    sections = ["# Reproduction of AlShinaifi et al. (2024), MLP experiment", "",
                "MLP 784-256-128-10 (ReLU), magnitude pruning at initialization (layerwise), plain SGD with a "
                "constant learning rate; emergence on 256 training images after every epoch; loss landscape "
                "(top Hessian eigenvalue, Hessian trace, a filter-normalized 1-D slice) on 512 training images at "
                "the final epoch. Output units are not nodes (`--outputs exclude`); thresholds "
                f"{', '.join(f'{t:g}' for t in THRESHOLDS[:-1])} and {THRESHOLDS[-1]:g} are recorded. Every test "
                "takes one value per independent run, and every p-value of a section is Holm-adjusted with the "
                "others.", ""]

    def run(cfg: SweepConfig, path: Path) -> Any:
        path.parent.mkdir(parents=True, exist_ok=True)
        outcome = run_stored_sweep(cfg, path, workers=workers, scheduler=scheduler, progress=progress)
        if outcome.failed:
            names = "; ".join(f"{label} ({error})" for label, error in outcome.failed[:3])
            raise EmergenceError(f"{len(outcome.failed)} cells of the sweep {str(path)!r} failed: {names}")
        done.results.append(outcome.path)
        return open_results(outcome.path)

    for cfg in configs or reproduce_configs(quick):
        ds = run(cfg, folder / f"{cfg.dataset}.nc")
        done.figures += plot_sweep(ds, folder / cfg.dataset)
        sections.append(to_markdown(summarize(ds, title=f"{cfg.dataset}: {len(cfg.seeds)} seeds, "
                                                         f"{cfg.train.epochs} epochs")))
        sections += [f"![accuracy]({cfg.dataset}/accuracy_vs_epoch.png)",
                     f"![emergence]({cfg.dataset}/emergence_vs_epoch.png)",
                     f"![landscape]({cfg.dataset}/emergence_vs_landscape.png)", ""]
    grid = robustness if robustness is not None else ([] if quick else robustness_configs())
    if grid:
        sweeps = [(name, run(cfg, folder / "robustness" / f"{name}.nc")) for name, cfg in grid]
        sections.append(robustness_report(sweeps))
    for_init = inits if inits is not None else ([] if quick else init_configs())
    if for_init:
        sweeps = [(name, run(cfg, folder / "init" / f"{name}.nc")) for name, cfg in for_init]
        sections.append(init_report(sweeps))
    done.report = write_text(folder / "report.md", "\n".join(sections))
    return done
