"""Hessian spectrum and trace of a loss at the current weights (PyHessian-style, masks respected).

:func:`hessian_eigenvalues` runs power iteration with deflation on Hessian-vector
products; :func:`hessian_trace` is Hutchinson's estimator with Rademacher vectors.
With ``masks`` (name -> bool keep-mask, see :mod:`emergence.experiments.prune`) the
Hessian is taken on the unpruned weights only.

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

import numpy as np
import torch
from torch import nn

from emergence.errors import ConfigError
from emergence.landscape._model import LossFn, _evaluating, _loss, _mask_list, _params
from emergence.landscape.progress import StepProgress, step

__all__ = ["hessian_eigenvalues", "hessian_trace"]


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
        return [t if m is None else t * m for t, m in zip(v, self.masks, strict=False)]

    def __call__(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        dot = sum((g * t).sum() for g, t in zip(self.grads, v, strict=False))
        hv = torch.autograd.grad(dot, [p for _, p in self.params], retain_graph=True, allow_unused=True)
        hv = [torch.zeros_like(p) if h is None else h.detach() for h, (_, p) in zip(hv, self.params, strict=False)]
        return self.project(hv)

    def randn(self, gen: torch.Generator) -> list[torch.Tensor]:
        return self.project([torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for _, p in self.params])


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((u * w).sum() for u, w in zip(a, b, strict=False))


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
    progress: StepProgress | None = None,
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
    progress : callable, optional
        ``progress("top eigenvalue", done, k * iters)`` after each power iteration (see
        :mod:`emergence.landscape.progress`).

    Returns
    -------
    torch.Tensor
        Shape ``[k]``, float64.

    Examples
    --------
    >>> import torch.nn.functional as F
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
        for j in range(k):
            v = _normalize(hvp.randn(gen))
            est = math.nan
            for it in range(iters):
                step(progress, "top eigenvalue", j * iters + it + 1, k * iters)
                hv = hvp(v)
                for lam, u in found:  # deflation
                    c = float(_dot(u, v))
                    hv = [h - lam * c * w for h, w in zip(hv, u, strict=False)]
                new = float(_dot(hv, v))
                v = _normalize(hv)
                if math.isfinite(est) and abs(new - est) <= tol * max(abs(new), 1e-12):
                    est = new
                    step(progress, "top eigenvalue", (j + 1) * iters, k * iters)  # converged early
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
    progress: StepProgress | None = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of the Hessian trace, ``mean(v^T H v)`` over Rademacher ``v``, and its standard error.

    ``progress("trace", done, samples)`` is called after each vector (see :mod:`emergence.landscape.progress`).

    Examples
    --------
    >>> import torch.nn.functional as F
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
        for i in range(samples):
            v = hvp.project([(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p.device, p.dtype)
                             for _, p in hvp.params])
            vals.append(float(_dot(hvp(v), v)))
            step(progress, "trace", i + 1, samples)
    a = np.asarray(vals)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))
