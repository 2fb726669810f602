"""The loss landscape of a saved model: load it, probe it on labeled data, and draw its slices."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emergence.adapters.deadline import DEFAULT_TIMEOUT, Deadline
from emergence.errors import ConfigError, FileFormatError
from emergence.landscape import LandscapeConfig, cross_entropy, probe_landscape, slice_1d, slice_2d
from emergence.landscape.progress import StepProgress

__all__ = ["LandscapeReport", "differentiable_model", "landscape_of", "plot_slices"]


@dataclass
class LandscapeReport:
    """Landscape figures of one model (see :func:`emergence.landscape.probe_landscape`) and any figure files."""

    figures: dict[str, float]
    samples: int
    plots: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.figures, "samples": self.samples, "plots": [str(p) for p in self.plots]}


def differentiable_model(model: Any, *, trust_pickle: bool = False) -> tuple[torch.nn.Module, tuple[int, ...] | None]:
    """A PyTorch module to differentiate, from an ``nn.Module`` or any PyTorch model file.

    Raises
    ------
    UnsupportedOpError
        For ONNX models, which cannot be differentiated here.
    """
    from emergence.adapters.model_files import LoadedModel, differentiable, load_model

    if isinstance(model, torch.nn.Module):
        return model, None
    loaded = model if isinstance(model, LoadedModel) else load_model(model, trust_pickle=trust_pickle)
    return differentiable(loaded), loaded.input_shape


def plot_slices(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, out: str | os.PathLike[str], *,
                seed: int = 0, span: float = 1.0, steps_1d: int = 41, steps_2d: int = 21,
                progress: StepProgress | None = None) -> list[Path]:
    """Write ``landscape_1d.png`` (a filter-normalized 1-D slice) and ``landscape_2d.png`` (a contour plot)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from emergence.experiments.writers import save_figure

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create {str(folder)!r}: {exc}") from exc
    s1 = slice_1d(model, cross_entropy, x, y, steps=steps_1d, span=span, seed=seed)
    s2 = slice_2d(model, cross_entropy, x, y, steps=steps_2d, span=span, seed=seed, progress=progress)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(s1.alpha, s1.values, marker="o", ms=3)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("alpha (filter-normalized direction)")
    ax.set_ylabel("loss")
    ax.set_title(f"1-D loss slice (seed {seed})", fontsize=9)
    paths.append(save_figure(fig, folder / "landscape_1d.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    a, b = np.meshgrid(s2.alpha, s2.beta, indexing="ij")
    cs = ax.contourf(a, b, s2.values, levels=30, cmap="viridis")
    ax.contour(a, b, s2.values, levels=15, colors="white", linewidths=0.4)
    ax.plot([0], [0], marker="*", color="red", ms=10)
    fig.colorbar(cs, ax=ax, label="loss")
    ax.set_xlabel("alpha")
    ax.set_ylabel("beta")
    ax.set_title(f"2-D loss surface, filter-normalized (seeds {seed}, {seed + 1})", fontsize=9)
    paths.append(save_figure(fig, folder / "landscape_2d.png"))
    plt.close(fig)
    return paths


def landscape_of(
    model: Any,
    data: str | os.PathLike[str],
    *,
    samples: int = 512,
    config: LandscapeConfig | None = None,
    plot: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    progress: StepProgress | None = None,
) -> LandscapeReport:
    """Probe the loss landscape of a model (object or file) on the first ``samples`` labeled training examples.

    The loss is cross-entropy on the labels of a bundled dataset or an ``.npz`` (``x``, ``y``).
    A TorchScript file is first run once on the batch in a child process killed after ``timeout``
    seconds, so a module that never returns is refused before the in-process probes start.
    ``progress(stage, done, total)`` follows every probe step by step (see
    :mod:`emergence.landscape.progress`).

    Raises
    ------
    EmergenceError
        A subclass naming the problem (bad file, ONNX model, data without labels, shapes, a
        TorchScript module that does not finish within ``timeout``).
    """
    from emergence.adapters.datasets import labeled_batch
    from emergence.adapters.model_files import LoadedModel, ensure_terminates, load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, trust_pickle=trust_pickle)
    deadline = Deadline(timeout, f"the forward pass of {getattr(model, 'source', 'the model')!r}")
    net, shape = differentiable_model(model, trust_pickle=trust_pickle)
    cfg = config or LandscapeConfig(samples=samples)
    x, y = labeled_batch(data, samples=samples, input_shape=shape)
    if y.dtype != torch.int64:
        raise ConfigError("cross-entropy needs integer class labels in y")
    if isinstance(model, LoadedModel):
        ensure_terminates(model, x[:2], deadline)
    figures = probe_landscape(net, cross_entropy, x, y, cfg, progress=progress)
    plots = plot_slices(net, x, y, plot, seed=cfg.seed, span=cfg.span, steps_1d=cfg.steps,
                        progress=progress) if plot else []
    return LandscapeReport(figures, int(x.shape[0]), plots)
