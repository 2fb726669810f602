"""What both callbacks share: checking their options and moving the probe batch."""

from __future__ import annotations

from typing import Any

import torch

from emergence.errors import ConfigError

__all__ = ["check_every", "on_device"]


def on_device(probe: Any, device: torch.device) -> Any:
    """A probe batch (a tensor or a tuple of them) on ``device``."""
    return probe.to(device) if isinstance(probe, torch.Tensor) else tuple(t.to(device) for t in probe)


def check_every(every_n_epochs: int) -> int:
    """``every_n_epochs`` if it is an integer >= 1, else :class:`~emergence.errors.ConfigError`.

    Examples
    --------
    >>> check_every(2)
    2
    """
    if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
        raise ConfigError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
    return every_n_epochs
