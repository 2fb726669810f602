"""Devices named by users (``"cpu"``, ``"cuda:1"``), checked once where a call begins."""

from __future__ import annotations

import torch

from emergence.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None, default: torch.device | None = None, *,
                   check_available: bool = True) -> torch.device:
    """The ``torch.device`` for ``device``, checked to be usable on this machine.

    Parameters
    ----------
    device : str, torch.device or None
        E.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``; None gives ``default``.
    default : torch.device, optional
        The device for None (CPU when not given).
    check_available : bool, default True
        Also check that this machine has the device (False: only that torch knows the name,
        e.g. for a cluster whose workers have the GPUs).

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        For a name torch does not know, or a device this machine lacks (CUDA without a GPU).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("bogus")
    Traceback (most recent call last):
    ...
    emergence.errors.ConfigError: device 'bogus' is not a device name torch knows; use cpu, cuda or cuda:N
    """
    if device is None:
        return default if default is not None else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(device)!r} is not a device name torch knows; use cpu, cuda or cuda:N") \
            from None
    if not check_available:
        return dev
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} needs CUDA, and this machine has no usable CUDA GPU (or torch "
                          "was built without CUDA); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"device {str(device)!r} is not usable here ({str(exc).splitlines()[0]}); try 'cpu'") \
            from exc
    return dev
