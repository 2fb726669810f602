"""Loss-landscape probes: Hessian spectrum and trace, filter-normalized slices, and ruggedness.

This package sits in the experiment layer and needs only the core: every function takes
``(model, loss_fn, x, y)``, runs in eval mode (the model's mode and weights are restored
afterwards), is seeded, and respects pruning masks: with ``masks`` (name -> bool
keep-mask, see :mod:`emergence.experiments.prune`) the Hessian is taken on the unpruned
weights only and every slice direction is zero on pruned weights.

* :mod:`emergence.landscape.hessian` -- top eigenvalues, Hutchinson trace;
* :mod:`emergence.landscape.slices` -- random directions, 1-D / 2-D slices, ruggedness;
* :mod:`emergence.landscape.probe` -- :class:`LandscapeConfig` and :func:`probe_landscape`.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (claim: emergence goes with a rugged landscape).
.. [2] H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape of
   Neural Nets", NeurIPS 2018 (filter normalization).
.. [3] Z. Yao, A. Gholami, K. Keutzer, M. Mahoney, "PyHessian: Neural Networks Through the
   Lens of the Hessian", 2020 (power iteration, Hutchinson's trace estimator).
"""

from emergence.landscape.hessian import hessian_eigenvalues, hessian_trace
from emergence.landscape.probe import LandscapeConfig, cross_entropy, probe_landscape
from emergence.landscape.slices import random_direction, ruggedness, slice_1d, slice_2d

__all__ = [
    "LandscapeConfig",
    "cross_entropy",
    "hessian_eigenvalues",
    "hessian_trace",
    "probe_landscape",
    "random_direction",
    "ruggedness",
    "slice_1d",
    "slice_2d",
]
