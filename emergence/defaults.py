"""The toolkit's defaults, each written once: every signature, config and CLI option reads them here.

This module imports nothing, so any layer (the core, the adapters, the experiments, the CLI) may
read it. Change a default here and every entry point follows; ``tests/test_cli_choices.py``
checks that the command line shows the same values.

Examples
--------
>>> from emergence.defaults import DEFAULT_THRESHOLD, DEFAULT_OUTPUTS
>>> DEFAULT_OUTPUTS
'exclude'
>>> DEFAULT_THRESHOLD in SWEEP_THRESHOLDS
True

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (the threshold and the aggregation).
"""

__all__ = ["DEFAULT_AGGREGATION", "DEFAULT_GRANULARITY", "DEFAULT_OUTPUTS", "DEFAULT_THRESHOLD", "SWEEP_THRESHOLDS",
           "with_default_threshold"]

#: The paper's activity threshold: a unit is active when its statistic exceeds it.
DEFAULT_THRESHOLD = 0.05
#: The paper's aggregation: the mean activation over the probe batch.
DEFAULT_AGGREGATION = "mean"
#: How output units are judged: not nodes (logits have no nonlinearity), see :mod:`emergence.activity`.
DEFAULT_OUTPUTS = "exclude"
#: One node per channel of a conv layer (``"neuron"``: one per neuron).
DEFAULT_GRANULARITY = "channel"


def with_default_threshold(*others: float) -> tuple[float, ...]:
    """``others`` and :data:`DEFAULT_THRESHOLD`, sorted and without repeats (the thresholds a sweep records).

    Examples
    --------
    >>> with_default_threshold(0.1, 0.0)[0], len(with_default_threshold(0.1, DEFAULT_THRESHOLD))
    (0.0, 2)
    """
    return tuple(sorted({*map(float, others), DEFAULT_THRESHOLD}))


#: The thresholds a sweep records unless told otherwise (the default one among them, so reports can use it).
SWEEP_THRESHOLDS = with_default_threshold(0.01, 0.1, 0.2)
