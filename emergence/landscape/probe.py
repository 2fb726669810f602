"""All landscape figures of a model in one call, with the settings sweeps and the CLI store."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emergence.errors import ConfigError
from emergence.landscape._model import LossFn
from emergence.landscape.hessian import hessian_eigenvalues, hessian_trace
from emergence.landscape.progress import StepProgress
from emergence.landscape.slices import ruggedness, slice_1d

__all__ = ["LandscapeConfig", "cross_entropy", "probe_landscape"]


@dataclass(frozen=True)
class LandscapeConfig:
    """Settings of the landscape probes used by sweeps and the CLI.

    Attributes
    ----------
    every : int
        Probe every ``every`` epochs (0: only the final epoch).
    samples : int
        Training examples in the fixed landscape batch.
    iters : int
        Power iterations for the top Hessian eigenvalue.
    trace_samples : int
        Rademacher vectors for Hutchinson's trace estimate.
    steps : int
        Points of the 1-D slice.
    span : float
        The slice covers ``alpha`` in ``[-span, span]``.
    seed : int
        Seed of the random vectors and directions.
    """

    every: int = 0
    samples: int = 512
    iters: int = 50
    trace_samples: int = 30
    steps: int = 41
    span: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every < 0 or self.samples < 1 or self.iters < 1 or self.trace_samples < 2 or self.steps < 3:
            raise ConfigError("landscape settings: need every >= 0, samples >= 1, iters >= 1, trace_samples >= 2, "
                              f"steps >= 3; got {self}")
        if not self.span > 0:
            raise ConfigError(f"landscape span must be > 0; got {self.span}")


def probe_landscape(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: LandscapeConfig | None = None,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    progress: StepProgress | None = None,
) -> dict[str, float]:
    """All scalar landscape figures at once: top eigenvalue, trace (± error), 1-D slice minima and roughness.

    Returns
    -------
    dict
        Keys ``hessian_top``, ``hessian_trace``, ``hessian_trace_stderr``, ``slice_minima``,
        ``slice_roughness``, ``slice_curvature``, ``slice_gap``.

    ``progress(stage, done, total)``, when given, follows each probe step by step (stages
    ``"top eigenvalue"``, ``"trace"``, ``"1-D slice"``; see :mod:`emergence.landscape.progress`).
    """
    cfg = config or LandscapeConfig()
    rng = torch.get_rng_state()
    top = float(hessian_eigenvalues(model, loss_fn, x, y, k=1, iters=cfg.iters, seed=cfg.seed, masks=masks,
                                  progress=progress)[0])
    tr, err = hessian_trace(model, loss_fn, x, y, samples=cfg.trace_samples, seed=cfg.seed, masks=masks,
                           progress=progress)
    r = ruggedness(slice_1d(model, loss_fn, x, y, steps=cfg.steps, span=cfg.span, seed=cfg.seed, masks=masks,
                            progress=progress))
    torch.set_rng_state(rng)
    return {"hessian_top": top, "hessian_trace": tr, "hessian_trace_stderr": err, "slice_minima": r["minima"],
            "slice_roughness": r["roughness"], "slice_curvature": r["curvature"], "slice_gap": r["gap"]}


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The classification loss used by sweeps and the CLI."""
    return F.cross_entropy(outputs, targets)
