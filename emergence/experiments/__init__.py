"""The experiment layer: train, prune and measure networks over grids of settings, then report.

Built on the core (:mod:`emergence`) and :mod:`adapters`; nothing below imports it.

* :mod:`emergence.experiments.prune` -- magnitude pruning (global/layerwise, unstructured/structured,
  at init, after training, iterative with rewinding);
* :mod:`emergence.experiments.train` -- seeded training loops and evaluation;
* :mod:`emergence.experiments.sweep` -- :class:`~emergence.experiments.sweep.SweepConfig` and
  :func:`~emergence.experiments.sweep.run_sweep`;
* :mod:`emergence.experiments.results` -- the results Dataset (xarray) and its files;
* :mod:`emergence.experiments.report` -- statistics and the paper's claims;
* :mod:`emergence.experiments.plot` -- the figures of a sweep;
* :mod:`emergence.experiments.reproduce` -- the paper's MLP experiment in one call;
* :mod:`emergence.experiments.landscape_report` -- the loss landscape of a model file;
* :mod:`emergence.experiments.console` -- rich tables and progress bars for the CLI.

Submodules are imported where they are used, so importing this package is cheap.
"""
