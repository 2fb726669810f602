"""Window geometry of convolutions and pools (kernel, stride, padding, dilation, adaptive windows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Window", "gather_windows"]


@dataclass(frozen=True)
class Window:
    """Geometry of a convolution or pool over the trailing spatial dims.

    Attributes
    ----------
    kernel, stride, dilation, pad : tuple of int
        One entry per spatial dim; ``pad`` is the padding *before* each dim (the padding after
        it only matters for the output size, which is known).
    adaptive : bool
        An adaptive pool: window ``i`` of ``n`` over ``L`` cells is ``floor(iL/n) .. ceil((i+1)L/n)``;
        ``kernel`` and the rest are unused.
    """

    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    adaptive: bool = False

    @staticmethod
    def of(kernel: Sequence[int], stride: Sequence[int] | None = None, pad: Sequence[int] | None = None,
           dilation: Sequence[int] | None = None) -> Window:
        """A window with PyTorch's defaults: ``stride`` = ``kernel`` when empty, padding 0, dilation 1."""
        k = tuple(int(v) for v in kernel)
        n = len(k)

        def per_dim(v: Sequence[int] | None, default: tuple[int, ...]) -> tuple[int, ...]:
            v = tuple(int(a) for a in (v or ()))
            if not v:
                return default
            return v * n if len(v) == 1 else v[:n]

        return Window(k, per_dim(stride, k), per_dim(dilation, (1,) * n), per_dim(pad, (0,) * n))

    def taps(self, dim: int, size: int, out: int) -> torch.Tensor:
        """``[out, K]`` input index of each output position's taps along spatial ``dim`` (-1: outside)."""
        if self.adaptive:
            start = (torch.arange(out) * size) // out
            end = -((-(torch.arange(out) + 1) * size) // out)
            width = int((end - start).max()) if out else 0
            idx = start.unsqueeze(1) + torch.arange(width)
            return torch.where(idx < end.unsqueeze(1), idx, torch.full_like(idx, -1))
        o = torch.arange(out).unsqueeze(1)
        idx = o * self.stride[dim] - self.pad[dim] + torch.arange(self.kernel[dim]) * self.dilation[dim]
        return torch.where((idx >= 0) & (idx < size), idx, torch.full_like(idx, -1))


def gather_windows(prov: torch.Tensor, idx: Sequence[torch.Tensor]) -> torch.Tensor:
    """Provenance of every window: ``prov`` ``[C, *S]`` and per-dim taps ``[O_d, K_d]`` give
    ``[C, *O, *K]`` (-1 where a tap falls outside, or on padding)."""
    t = prov
    for d, taps in enumerate(idx):
        axis = 1 + d
        size = t.shape[axis]
        pad_shape = list(t.shape)
        pad_shape[axis] = 1
        t = torch.cat([t, torch.full(pad_shape, -1, dtype=t.dtype)], dim=axis)
        j = torch.where(taps < 0, torch.full_like(taps, size), taps)
        t = t.index_select(axis, j.reshape(-1))
        t = t.reshape(*t.shape[:axis], taps.shape[0], taps.shape[1], *t.shape[axis + 1:])
        t = t.movedim(axis + 1, -1)
    return t
