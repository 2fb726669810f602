"""Shared helpers of the landscape probes: trainable parameters, masks, eval mode, a guarded loss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from emergence.errors import InputShapeError, first_line

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _mask_list(params: list[tuple[str, nn.Parameter]], masks: dict[str, torch.Tensor] | None) -> list[Any]:
    masks = masks or {}
    return [masks[n].to(p.device, p.dtype) if n in masks else None for n, p in params]


def _set_mode(model: nn.Module, training: bool) -> None:
    with contextlib.suppress(NotImplementedError):  # modules unlifted from torch.export have their mode baked in
        model.train(training)


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
                              f"{msg}") from exc
