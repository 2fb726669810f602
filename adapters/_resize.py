"""Which input positions each output position of a resize reads, per spatial dim (the neuron-level resize).

``interpolate`` / ``upsample`` / ONNX ``Resize`` map output index ``o`` of a dim to a source coordinate
``src(o)`` and read the nearest input (``nearest``) or the two around it (``linear``, weighted by their
distance). :func:`taps` gives, per output index, the input indices read and their weights (a weight that is
exactly 0 reads nothing, so it is left out), which :meth:`NeuronGraphBuilder.resize` combines over dims.

References
----------
.. [1] ONNX operator ``Resize`` (coordinate_transformation_mode, nearest_mode), opset 19.
"""

from __future__ import annotations

import math

import torch

from emergence.errors import UnsupportedOpError

__all__: list[str] = []

#: coordinate transformations (ONNX's names; PyTorch's align_corners=False is "pytorch_half_pixel")
TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")


def _source(o: torch.Tensor, size_in: int, size_out: int, scale: float | None, transform: str) -> torch.Tensor:
    """The source coordinate of output indices ``o`` (float64)."""
    inv = 1.0 / scale if scale else size_in / size_out  # a given scale factor is used as given
    if transform == "align_corners":
        return o * ((size_in - 1) / (size_out - 1) if size_out > 1 else 0.0)
    if transform == "asymmetric":
        return o * inv
    if transform == "pytorch_half_pixel" and size_out == 1:
        return torch.zeros_like(o)
    if transform in ("half_pixel", "pytorch_half_pixel"):
        return (o + 0.5) * inv - 0.5
    raise UnsupportedOpError(f"resizing with coordinate transformation {transform!r} has no neuron graph here; "
                             f"those that do: {', '.join(TRANSFORMS)}")


def taps(mode: str, size_in: int, size_out: int, *, scale: float | None = None, transform: str = "asymmetric",
         nearest: str = "floor") -> tuple[torch.Tensor, torch.Tensor]:
    """Input indices ``[O, k]`` (-1: none) and weights ``[O, k]`` that each output index of one dim reads.

    Parameters
    ----------
    mode : {"nearest", "linear"}
    size_in, size_out : int
    scale : float, optional
        The scale factor, when the op was given one (``out / in`` otherwise).
    transform : str
        One of :data:`TRANSFORMS`.
    nearest : {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
        How ``nearest`` rounds the source coordinate.

    Examples
    --------
    >>> idx, w = taps("nearest", 2, 4)
    >>> idx[:, 0].tolist()
    [0, 0, 1, 1]
    >>> idx, w = taps("linear", 2, 4, transform="pytorch_half_pixel")
    >>> idx.tolist(), w.tolist()
    ([[0, -1], [0, 1], [0, 1], [1, -1]], [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [1.0, 0.0]])
    """
    o = torch.arange(size_out, dtype=torch.float64)
    src = _source(o, size_in, size_out, scale, transform)
    if mode == "nearest":
        rounding = {"floor": torch.floor, "ceil": torch.ceil,
                    "round_prefer_floor": lambda v: torch.ceil(v - 0.5),
                    "round_prefer_ceil": lambda v: torch.floor(v + 0.5)}.get(nearest)
        if rounding is None:
            raise UnsupportedOpError(f"nearest-neighbour rounding {nearest!r} is not known")
        i = rounding(src).clamp(0, size_in - 1).long()
        return i.unsqueeze(1), torch.ones(size_out, 1, dtype=torch.float64)
    if mode != "linear":
        raise UnsupportedOpError(f"resizing by {mode!r} interpolation has no neuron graph here; nearest and "
                                 "(bi/tri)linear do")
    src = src.clamp(min=0.0)
    i0 = torch.floor(src).clamp(max=size_in - 1)
    frac = (src - i0).clamp(0.0, 1.0)
    i1 = (i0 + 1).clamp(max=size_in - 1)
    idx = torch.stack([i0, i1], 1).long()
    w = torch.stack([1.0 - frac, frac], 1)
    same = idx[:, 1] == idx[:, 0]  # at the border both taps are one input: one tap of weight 1
    w[same, 0] = 1.0
    w[same, 1] = 0.0
    return torch.where(w > 0, idx, torch.full_like(idx, -1)), torch.where(w > 0, w, torch.zeros_like(w))


def scale_of(v: object) -> float | None:
    """A scale factor as a float (None when absent or not positive)."""
    try:
        s = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return s if s > 0 and math.isfinite(s) else None
