"""Loss-landscape probes: Hessian spectrum and trace, filter-normalized slices, and ruggedness.

All functions take ``(model, loss_fn, x, y)``, run in eval mode (the model's mode and
weights are restored afterwards), are seeded, and respect pruning masks: with
``masks`` (name -> bool keep-mask, see :mod:`emergence.prune`) the Hessian is taken on
the unpruned weights only and every slice direction is zero on pruned weights.

References
----------
.. [1] F. AlShinaifi et al., arXiv:2409.01568, 2024 (claim: emergence goes with a rugged landscape).
.. [2] H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape of
   Neural Nets", NeurIPS 2018 (filter normalization).
.. [3] Z. Yao, A. Gholami, K. Keutzer, M. Mahoney, "PyHessian: Neural Networks Through the
   Lens of the Hessian", 2020 (power iteration, Hutchinson's trace estimator).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emergence.errors import ConfigError, InputShapeError, first_line

__all__ = [
    "LandscapeConfig",
    "hessian_eigenvalues",
    "hessian_trace",
    "random_direction",
    "slice_1d",
    "slice_2d",
    "ruggedness",
    "probe_landscape",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def _params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _mask_list(params: list[tuple[str, nn.Parameter]], masks: dict[str, torch.Tensor] | None) -> list[Any]:
    masks = masks or {}
    return [masks[n].to(p.device, p.dtype) if n in masks else None for n, p in params]


def _set_mode(model: nn.Module, training: bool) -> None:
    try:
        model.train(training)
    except NotImplementedError:  # modules unlifted from torch.export have their mode baked in
        pass


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    was = model.training
    _set_mode(model, False)
    try:
        yield
    finally:
        _set_mode(model, was)


def _loss(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    try:
        out = model(x)
        return loss_fn(out, y)
    except (RuntimeError, ValueError, IndexError) as exc:
        msg = first_line(exc)
        raise InputShapeError(f"the model and loss reject inputs {tuple(x.shape)} / targets {tuple(y.shape)}: "
                              f"{msg}") from None


class _HVP:
    """Hessian-vector products of the loss at the current weights (gradient graph built once)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 masks: dict[str, torch.Tensor] | None) -> None:
        self.params = _params(model)
        if not self.params:
            raise ConfigError("the model has no trainable parameters")
        self.masks = _mask_list(self.params, masks)
        loss = _loss(model, loss_fn, x, y)
        self.grads = torch.autograd.grad(loss, [p for _, p in self.params], create_graph=True)

    def project(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t if m is None else t * m for t, m in zip(v, self.masks)]

    def __call__(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        dot = sum((g * t).sum() for g, t in zip(self.grads, v))
        hv = torch.autograd.grad(dot, [p for _, p in self.params], retain_graph=True, allow_unused=True)
        hv = [torch.zeros_like(p) if h is None else h.detach() for h, (_, p) in zip(hv, self.params)]
        return self.project(hv)

    def randn(self, gen: torch.Generator) -> list[torch.Tensor]:
        return self.project([torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for _, p in self.params])


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((u * w).sum() for u, w in zip(a, b))


def _normalize(v: list[torch.Tensor]) -> list[torch.Tensor]:
    n = math.sqrt(float(_dot(v, v)))
    return [t / n for t in v] if n > 0 else v


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 1,
    iters: int = 100,
    tol: float = 1e-6,
    *,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Top-``k`` Hessian eigenvalues (largest in magnitude first) by power iteration with deflation.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable
        ``loss_fn(model(x), y)`` returns a scalar.
    x, y : torch.Tensor
        The batch the loss is taken on.
    k : int, default 1
        How many eigenvalues.
    iters : int, default 100
        Most power iterations per eigenvalue.
    tol : float, default 1e-6
        Stop when the estimate changes by less than ``tol`` relative.
    seed : int, default 0
        Seed of the starting vectors.
    masks : dict, optional
        Pruning masks: the Hessian is restricted to unpruned weights.

    Returns
    -------
    torch.Tensor
        Shape ``[k]``, float64.

    Examples
    --------
    >>> lin = nn.Linear(2, 1, bias=False)
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    >>> ev = hessian_eigenvalues(lin, F.mse_loss, x, torch.zeros(2, 1), k=2)
    >>> [round(float(v), 4) for v in ev]  # 2/n X^T X = diag(1, 9)
    [9.0, 1.0]
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    gen = torch.Generator().manual_seed(seed)
    found: list[tuple[float, list[torch.Tensor]]] = []
    with _evaluating(model):
        hvp = _HVP(model, loss_fn, x, y, masks)
        for _ in range(k):
            v = _normalize(hvp.randn(gen))
            est = math.nan
            for _ in range(iters):
                hv = hvp(v)
                for lam, u in found:  # deflation
                    c = float(_dot(u, v))
                    hv = [h - lam * c * w for h, w in zip(hv, u)]
                new = float(_dot(hv, v))
                v = _normalize(hv)
                if math.isfinite(est) and abs(new - est) <= tol * max(abs(new), 1e-12):
                    est = new
                    break
                est = new
            found.append((est, v))
    return torch.tensor([lam for lam, _ in found], dtype=torch.float64)


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    samples: int = 100,
    *,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of the Hessian trace, ``mean(v^T H v)`` over Rademacher ``v``, and its standard error.

    Examples
    --------
    >>> lin = nn.Linear(2, 1, bias=False)
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    >>> tr, err = hessian_trace(lin, F.mse_loss, x, torch.zeros(2, 1), samples=50)
    >>> abs(tr - 10.0) <= 3 * err + 1e-9
    True
    """
    if samples < 2:
        raise ConfigError(f"samples must be at least 2, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    vals = []
    with _evaluating(model):
        hvp = _HVP(model, loss_fn, x, y, masks)
        for _ in range(samples):
            v = hvp.project([(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p.device, p.dtype)
                             for _, p in hvp.params])
            vals.append(float(_dot(hvp(v), v)))
    a = np.asarray(vals)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


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
                  dirs: list[dict[str, torch.Tensor]], grid: list[np.ndarray]) -> np.ndarray:
    params = dict(_params(model))
    base = {n: p.detach().clone() for n, p in params.items()}
    out = np.empty([g.size for g in grid])
    try:
        with _evaluating(model):
            for idx in np.ndindex(*out.shape):
                for n, p in params.items():
                    p.copy_(base[n])
                    for d, g, i in zip(dirs, grid, idx):
                        p.add_(d[n], alpha=float(g[i]))
                out[idx] = float(_loss(model, loss_fn, x, y))
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
) -> Any:
    """Losses at ``theta + alpha * d`` for ``alpha`` in ``linspace(-span, span, steps)``.

    Returns
    -------
    xarray.DataArray
        Dim ``alpha``; attrs ``seed``, ``normalization``, ``span``.

    Examples
    --------
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
    vals = _losses_along(model, loss_fn, x, y, [d], [alpha])
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
    vals = _losses_along(model, loss_fn, x, y, [d1, d2], [grid, grid])
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
    >>> ruggedness(np.array([4.0, 1.0, 0.0, 1.0, 4.0]))["minima"], ruggedness(np.array([4.0, 1.0, 0.0, 1.0, 4.0]))["roughness"]
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


def probe_landscape(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: LandscapeConfig | None = None,
    *,
    masks: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """All scalar landscape figures at once: top eigenvalue, trace (± error), 1-D slice minima and roughness.

    Returns
    -------
    dict
        Keys ``hessian_top``, ``hessian_trace``, ``hessian_trace_stderr``, ``slice_minima``,
        ``slice_roughness``, ``slice_curvature``, ``slice_gap``.
    """
    cfg = config or LandscapeConfig()
    rng = torch.get_rng_state()
    top = float(hessian_eigenvalues(model, loss_fn, x, y, k=1, iters=cfg.iters, seed=cfg.seed, masks=masks)[0])
    tr, err = hessian_trace(model, loss_fn, x, y, samples=cfg.trace_samples, seed=cfg.seed, masks=masks)
    r = ruggedness(slice_1d(model, loss_fn, x, y, steps=cfg.steps, span=cfg.span, seed=cfg.seed, masks=masks))
    torch.set_rng_state(rng)
    return {"hessian_top": top, "hessian_trace": tr, "hessian_trace_stderr": err, "slice_minima": r["minima"],
            "slice_roughness": r["roughness"], "slice_curvature": r["curvature"], "slice_gap": r["gap"]}


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The classification loss used by sweeps and the CLI."""
    return F.cross_entropy(outputs, targets)
