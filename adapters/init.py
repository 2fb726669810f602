"""Emergence-promoting initialization: rescale the weights of a freshly initialized network by powers of alpha.

Li, George and Silva [1]_ propose, after the standard initialization, to scale the
weights of the layers before the middle of the network *down* and those after it *up*:
with the weight layers numbered ``i = 0 .. L-1`` and ``n = i - (L - 1) / 2`` the signed
distance from the middle,

    W̃_i = W_i · alpha ** n

so for an odd number of layers the middle layer keeps its weights, the one before it is
divided by alpha and the one after it multiplied by alpha, and so on outwards. For an even
number of layers the middle lies between two layers and the distances are half-integers
(``alpha ** ±0.5`` for the two central layers). Biases are left alone. Weight layers are the
modules with a ``weight`` of two or more dimensions (linear and convolutional layers), in
the order the module registers them; normalization layers are not scaled.

alpha = 1 is the standard initialization. Without biases a ReLU network's output is only
scaled by the product of the factors (1 for any L), but the activations of hidden layer k are
scaled by the partial product up to k, so which units exceed the activity threshold -- and so
the emergence at epoch 0 -- changes; with biases the function itself changes too.

References
----------
.. [1] J. Li, T. George, C. Silva, "Emergence-promoting initialization", arXiv:2407.19044, 2024.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emergence.errors import ConfigError, check_choice

__all__ = ["INITS", "check_init", "emergence_init", "weight_layers"]

#: Initializations a sweep may name: the architecture's own, or the emergence-promoting rescaling.
INITS = ("default", "emergence")


def check_init(init: str, alpha: float) -> tuple[str, float]:
    """Validate an (init, alpha) pair; returns it with alpha as a float.

    Raises
    ------
    ConfigError
        For an unknown init, a non-positive or non-finite alpha, or an alpha other than 1 with
        the default init (which would be silently ignored).

    Examples
    --------
    >>> check_init("emergence", 2)
    ('emergence', 2.0)
    """
    check_choice("init", init, INITS)
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"init alpha must be a number; got {alpha!r}") from None
    if not (math.isfinite(a) and a > 0):
        raise ConfigError(f"init alpha must be a finite number > 0; got {alpha!r}")
    if init == "default" and a != 1.0:
        raise ConfigError(f"init alpha {a:g} only applies to --init emergence; add --init emergence or drop "
                          "--init-alpha")
    return init, a


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose ``weight`` has two or more dimensions (linear, conv), in registration order.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2))
    >>> [type(m).__name__ for m in weight_layers(net)]
    ['Linear', 'Linear']
    """
    return [m for m in model.modules()
            if isinstance(w := getattr(m, "weight", None), torch.Tensor) and w.dim() >= 2]


@torch.no_grad()
def emergence_init(model: nn.Module, alpha: float) -> nn.Module:
    """Rescale ``model``'s weight layers in place by ``alpha ** (i - (L - 1) / 2)`` (see the module docs).

    Parameters
    ----------
    model : nn.Module
        A freshly initialized network.
    alpha : float
        The scale factor (> 0; 1 leaves the model unchanged).

    Returns
    -------
    nn.Module
        ``model`` itself.

    Raises
    ------
    ConfigError
        For alpha <= 0 or not finite, or a model without weight layers.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> before = [m.weight.clone() for m in weight_layers(net)]
    >>> after = [m.weight for m in weight_layers(emergence_init(net, 2.0))]
    >>> [round(float(a[0, 0].detach() / b[0, 0]), 3) for a, b in zip(after, before)]
    [0.5, 1.0, 2.0]

    References
    ----------
    .. [1] J. Li, T. George, C. Silva, arXiv:2407.19044, 2024.
    """
    check_init("emergence", alpha)
    layers = weight_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no linear or conv layers to rescale")
    middle = (len(layers) - 1) / 2
    for i, m in enumerate(layers):
        getattr(m, "weight").mul_(float(alpha) ** (i - middle))  # noqa: B009 -- a Module attribute, not a method
    return model
