"""Filter-normalized loss slices (1-D and 2-D) through the current weights, and their ruggedness.

Directions are seeded Gaussian vectors normalized per filter as in Li et al. (2018);
biases and normalization parameters get no component by default, and pruned weights
(``masks``, see :mod:`emergence.experiments.prune`) never do. The model's weights and
mode are restored afterwards.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (claim: emergence goes with a rugged landscape).
.. [2] H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape of
   Neural Nets", NeurIPS 2018 (filter normalization).
.. [3] Z. Yao, A. Gholami, K. Keutzer, M. Mahoney, "PyHessian: Neural Networks Through the
   Lens of the Hessian", 2020 (power iteration, Hutchinson's trace estimator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from emergence.errors import ConfigError
from emergence.landscape._model import LossFn, _evaluating, _loss, _params
from emergence.landscape.progress import StepProgress, step

__all__ = ["random_direction", "slice_1d", "slice_2d", "ruggedness"]


def _is_norm_or_bias(model: nn.Module, name: str, p: torch.Tensor) -> bool:
    if p.dim() <= 1:
        return True  # biases, batch-norm and layer-norm parameters
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return isinstance(owner, nn.modules.batchnorm._NormBase)


def random_direction(
    model: nn.Module,
    *,
    seed: int = 0,
    normalization: str = "filter",
    masks: dict[str, torch.Tensor] | None = None,
    include_bias_and_norm: bool = False,
) -> dict[str, torch.Tensor]:
    """A seeded Gaussian direction in weight space, normalized per filter as in Li et al. (2018).

    With ``normalization="filter"`` each filter (a row of a dense weight, an output channel
    of a conv) of the direction gets the norm of the same filter of the weights;
    ``"layer"`` does the same per tensor; ``"none"`` keeps the raw direction. Biases and
    normalization parameters get no component unless ``include_bias_and_norm``; pruned
    weights never do.

    Examples
    --------
    >>> _ = torch.manual_seed(0); net = nn.Linear(3, 2)
    >>> d = random_direction(net)
    >>> bool(torch.allclose(d["weight"].norm(dim=1), net.weight.norm(dim=1))), bool((d["bias"] == 0).all())
    (True, True)
    """
    if normalization not in ("filter", "layer", "none"):
        raise ConfigError(f"normalization must be 'filter', 'layer' or 'none'; got {normalization!r}")
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in _params(model):
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        w = p.detach().double().cpu()
        if masks and name in masks:
            d = d * masks[name].cpu()
        if not include_bias_and_norm and _is_norm_or_bias(model, name, p):
            d = torch.zeros_like(d)
        elif normalization == "filter" and p.dim() > 1:
            dn = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            wn = w.reshape(w.shape[0], -1).norm(dim=1)
            d = d * (wn / dn).reshape(-1, *([1] * (d.dim() - 1)))
        elif normalization != "none":
            d = d * (w.norm() / d.norm().clamp_min(1e-12))
        out[name] = d.to(p.device, p.dtype)
    return out


@torch.no_grad()
def _losses_along(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                  dirs: list[dict[str, torch.Tensor]], grid: list[np.ndarray],
                  progress: StepProgress | None = None, stage: str = "1-D slice") -> np.ndarray:
    params = dict(_params(model))
    base = {n: p.detach().clone() for n, p in params.items()}
    out = np.empty([g.size for g in grid])
    try:
        with _evaluating(model):
            for idx in np.ndindex(*out.shape):
                for n, p in params.items():
                    p.copy_(base[n])
                    for d, g, i in zip(dirs, grid, idx, strict=False):
                        p.add_(d[n], alpha=float(g[i]))
                out[idx] = float(_loss(model, loss_fn, x, y))
                step(progress, stage, int(np.ravel_multi_index(idx, out.shape)) + 1, out.size)
    finally:
        for n, p in params.items():
            p.copy_(base[n])
    return out


def _grid(steps: int, span: float) -> np.ndarray:
    if steps < 2:
        raise ConfigError(f"steps must be at least 2, got {steps}")
    grid = np.linspace(-span, span, steps)
    if steps % 2:
        grid[steps // 2] = 0.0  # exactly the current weights
    return grid


def slice_1d(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 41,
    span: float = 1.0,
    normalization: str = "filter",
    *,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    include_bias_and_norm: bool = False,
    progress: StepProgress | None = None,
) -> Any:
    """Losses at ``theta + alpha * d`` for ``alpha`` in ``linspace(-span, span, steps)``.

    ``progress("1-D slice", done, steps)`` is called after each point (see :mod:`emergence.landscape.progress`).

    Returns
    -------
    xarray.DataArray
        Dim ``alpha``; attrs ``seed``, ``normalization``, ``span``.

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> _ = torch.manual_seed(0); net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> x, y = torch.rand(8, 3), torch.randint(0, 2, (8,))
    >>> s = slice_1d(net, F.cross_entropy, x, y, steps=5)
    >>> float(s.sel(alpha=0.0)) == float(F.cross_entropy(net(x), y))
    True
    """
    import xarray as xr

    alpha = _grid(steps, span)
    d = random_direction(model, seed=seed, normalization=normalization, masks=masks,
                         include_bias_and_norm=include_bias_and_norm)
    vals = _losses_along(model, loss_fn, x, y, [d], [alpha], progress, "1-D slice")
    return xr.DataArray(vals, coords={"alpha": alpha}, dims=["alpha"], name="loss",
                        attrs={"seed": seed, "normalization": normalization, "span": span})


def slice_2d(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 21,
    span: float = 1.0,
    normalization: str = "filter",
    *,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    include_bias_and_norm: bool = False,
    progress: StepProgress | None = None,
) -> Any:
    """Losses on the plane ``theta + alpha * d1 + beta * d2`` (directions seeded ``seed`` and ``seed + 1``).

    Returns
    -------
    xarray.DataArray
        Dims ``alpha``, ``beta``; attrs ``seed``, ``normalization``, ``span``.
    """
    import xarray as xr

    grid = _grid(steps, span)
    opts = dict(normalization=normalization, masks=masks, include_bias_and_norm=include_bias_and_norm)
    d1 = random_direction(model, seed=seed, **opts)
    d2 = random_direction(model, seed=seed + 1, **opts)
    vals = _losses_along(model, loss_fn, x, y, [d1, d2], [grid, grid], progress, "2-D slice")
    return xr.DataArray(vals, coords={"alpha": grid, "beta": grid.copy()}, dims=["alpha", "beta"], name="loss",
                        attrs={"seed": seed, "normalization": normalization, "span": span})


def ruggedness(losses: Any) -> dict[str, float]:
    """Ruggedness figures of a slice (1-D or 2-D DataArray or array).

    * ``minima`` -- strict local minima (interior points below all their axis neighbours);
    * ``roughness`` -- total variation divided by the loss range (1 for a monotone 1-D
      slice, 2 for a clean valley; every extra bump adds); on a 2-D grid, the mean over
      its rows and columns;
    * ``curvature`` -- mean squared second difference divided by the squared range;
    * ``gap`` -- loss at the centre minus the slice minimum (0 when the centre is lowest).

    Examples
    --------
    >>> bowl = ruggedness(np.array([4.0, 1.0, 0.0, 1.0, 4.0]))
    >>> bowl["minima"], bowl["roughness"]
    (1.0, 2.0)
    >>> ruggedness(np.array([3.0, 1.0, 2.0, 0.5, 2.0, 1.0, 3.0]))["minima"]
    3.0
    """
    a = np.asarray(losses, dtype=float)
    if a.ndim not in (1, 2) or min(a.shape) < 3:
        raise ConfigError(f"a slice must be 1-D or 2-D with at least 3 points per axis; got shape {a.shape}")
    rng = float(np.nanmax(a) - np.nanmin(a))
    minima = np.ones(tuple(s - 2 for s in a.shape), dtype=bool)
    tv = 0.0
    curv = []
    for ax in range(a.ndim):
        d = np.diff(a, axis=ax)
        tv += float(np.abs(d).sum())
        curv.append(np.diff(a, n=2, axis=ax).ravel())
        centre = tuple(slice(1, -1) for _ in range(a.ndim))
        lo = tuple(slice(0, -2) if i == ax else slice(1, -1) for i in range(a.ndim))
        hi = tuple(slice(2, None) if i == ax else slice(1, -1) for i in range(a.ndim))
        minima &= (a[centre] < a[lo]) & (a[centre] < a[hi])
    centre_val = a[tuple(s // 2 for s in a.shape)]
    if rng <= 0:
        return {"minima": float(minima.sum()), "roughness": 0.0, "curvature": 0.0,
                "gap": float(centre_val - np.nanmin(a))}
    lines = 1 if a.ndim == 1 else a.shape[0] + a.shape[1]  # a 2-D grid: mean over its rows and columns
    return {
        "minima": float(minima.sum()),
        "roughness": tv / rng / lines,
        "curvature": float(np.mean(np.concatenate(curv) ** 2)) / rng**2,
        "gap": float(centre_val - np.nanmin(a)),
    }
