"""The paper's MLP experiment, end to end: sweeps on bundled MNIST and Fashion-MNIST, figures, report.

An MLP (784-256-128-10, ReLU) is magnitude-pruned at initialization (layerwise, so no
layer is emptied) to four sparsities and trained with plain constant-rate SGD for
several seeds; emergence is recorded every epoch on a fixed probe batch of training
images, and the loss landscape (Hessian, filter-normalized slice) at the final epoch.
``quick`` uses fewer seeds and epochs (a smoke run of the whole pipeline).

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

from adapters.atomic import write_text
from emergence.errors import EmergenceError, FileFormatError
from emergence.experiments.plot import plot_sweep
from emergence.experiments.prune import PruneConfig
from emergence.experiments.report import summarize, to_markdown
from emergence.experiments.results import open_results
from emergence.experiments.runner import run_stored_sweep
from emergence.experiments.sweep import Progress, SweepConfig
from emergence.experiments.train import TrainConfig
from emergence.landscape import LandscapeConfig

__all__ = ["reproduce_configs", "reproduce", "Reproduction"]

DATASETS = ("mnist", "fashion-mnist")
SPARSITIES = (0.0, 0.5, 0.8, 0.95)


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
        SweepConfig(arch="mlp", arch_params={"widths": [256, 128]}, dataset=d, sparsities=SPARSITIES, seeds=seeds,
                    train=TrainConfig(epochs=epochs), prune=PruneConfig(when="init", scope="layerwise"),
                    landscape=LandscapeConfig(every=0, samples=512, iters=30, trace_samples=20))
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
              scheduler: str | None = None) -> Reproduction:
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
        raise FileFormatError(f"cannot create {str(folder)!r}: {exc}") from None
    done = Reproduction()
    sections = ["# Reproduction of AlShinaifi et al. (2024), MLP experiment", "",
                "MLP 784-256-128-10 (ReLU), magnitude pruning at initialization (layerwise), plain SGD with a "
                "constant learning rate; emergence on 256 training images after every epoch; loss landscape "
                "(top Hessian eigenvalue, Hessian trace, a filter-normalized 1-D slice) on 512 training images at "
                "the final epoch.", ""]
    for cfg in configs or reproduce_configs(quick):
        outcome = run_stored_sweep(cfg, folder / f"{cfg.dataset}.nc", workers=workers, scheduler=scheduler,
                                   progress=progress)
        if outcome.failed:
            names = "; ".join(f"{label} ({error})" for label, error in outcome.failed[:3])
            raise EmergenceError(f"{len(outcome.failed)} cells of the {cfg.dataset} sweep failed: {names}")
        ds = open_results(outcome.path)
        done.results.append(outcome.path)
        done.figures += plot_sweep(ds, folder / cfg.dataset)
        sections.append(to_markdown(summarize(ds, title=f"{cfg.dataset}: {len(cfg.seeds)} seeds, "
                                                         f"{cfg.train.epochs} epochs")))
        sections += [f"![accuracy]({cfg.dataset}/accuracy_vs_epoch.png)",
                     f"![emergence]({cfg.dataset}/emergence_vs_epoch.png)",
                     f"![landscape]({cfg.dataset}/emergence_vs_landscape.png)", ""]
    done.report = write_text(folder / "report.md", "\n".join(sections))
    return done
