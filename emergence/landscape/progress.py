"""Progress of the landscape probes: a callback told how far each stage has come.

A probe that runs for minutes (a power iteration, a trace estimate, a slice of 41 points) calls
``progress(stage, done, total)`` after each step, with ``stage`` one of :data:`STAGES`; the CLI draws
bars from it, library users may log it. ``None`` (the default everywhere) reports nothing.

Examples
--------
>>> seen = []
>>> step(lambda *a: seen.append(a), "trace", 1, 30)
>>> step(None, "trace", 2, 30)
>>> seen
[('trace', 1, 30)]
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["STAGES", "StepProgress", "step"]

#: The stages a probe reports, in the order :func:`~emergence.landscape.probe_landscape` runs them.
STAGES = ("top eigenvalue", "trace", "1-D slice", "2-D slice")

#: ``progress(stage, done, total)``; ``total`` is the most steps the stage can take (a power
#: iteration may stop early when it has converged: it then reports ``done == total`` once).
StepProgress = Callable[[str, int, int], None]


def step(progress: StepProgress | None, stage: str, done: int, total: int) -> None:
    """Report one step to ``progress`` (nothing when it is ``None``)."""
    if progress is not None:
        progress(stage, done, total)
