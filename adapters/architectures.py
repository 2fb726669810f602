"""The toolkit's own architectures, by name, and saving/loading them with their spec.

Each saved model carries its :class:`ArchSpec` (as JSON), so ``emergence measure``
can rebuild it from a state_dict (``.pt``, loaded with ``weights_only=True``) or a
``.safetensors`` file without running any pickled code.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emergence.adapters.atomic import atomic_path
from emergence.errors import ConfigError, FileFormatError, first_line

__all__ = ["ARCHITECTURES", "FORMAT_TAG", "ArchSpec", "build", "cnn", "from_checkpoint", "load_model_file", "mlp",
           "save_model", "vgg"]

FORMAT_TAG = "emergence-model/1"


#: Units (or channels) one layer of a built-in architecture may have.
MAX_UNITS = 1 << 20
#: Parameters a built-in architecture may have.
MAX_PARAMETERS = 1 << 30


def _scaled(n: int, width: float) -> int:
    if not (isinstance(width, (int, float)) and 0 < width < float("inf")):
        raise ConfigError(f"width multiplier must be a positive number; got {width!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_UNITS:
        raise ConfigError(f"layer sizes must be whole numbers from 1 to {MAX_UNITS:,}; got {n!r}")
    out = max(1, round(int(n) * float(width)))
    if out > MAX_UNITS:
        raise ConfigError(f"a layer of {n} units x width {width:g} = {out:,} units, more than the {MAX_UNITS:,} "
                          "allowed")
    return out


def mlp(
    input_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (256, 128), width: float = 1.0
) -> nn.Sequential:
    """A multilayer perceptron: flatten, then Linear + ReLU per hidden width, then a Linear head.

    ``width`` multiplies every hidden width (rounded, at least 1): the axis of a size study.

    Examples
    --------
    >>> mlp((1, 28, 28), 10, widths=(64,), width=0.5)
    Sequential(
      (0): Flatten(start_dim=1, end_dim=-1)
      (1): Linear(in_features=784, out_features=32, bias=True)
      (2): ReLU()
      (3): Linear(in_features=32, out_features=10, bias=True)
    )
    """
    n_in = math.prod(int(d) for d in input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for w in widths:
        w = _scaled(w, width)
        layers += [nn.Linear(n_in, w), nn.ReLU()]
        n_in = w
    layers.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*layers)


def cnn(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32), hidden: int = 64,
    width: float = 1.0,
) -> nn.Sequential:
    """A small CNN: (Conv3x3 + ReLU + MaxPool2) per channel count, then Linear + ReLU + Linear.

    ``width`` multiplies the channel counts and the hidden width.

    Examples
    --------
    >>> cnn((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    c, h, w = (int(s) for s in input_shape)
    layers: list[nn.Module] = []
    for out in channels:
        out = _scaled(out, width)
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = out, h // 2, w // 2
    hidden = _scaled(hidden, width)
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


_VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg(
    input_shape: Sequence[int], num_classes: int, depth: int = 11, width: float = 0.25, hidden: int = 128
) -> nn.Sequential:
    """A VGG-style net (Conv3x3 + BatchNorm + ReLU blocks, max pooling) for 28x28 or 32x32 inputs.

    ``depth`` picks the layout of VGG-11/13/16/19 and ``width`` scales its channels (1.0 is
    the original 64..512). A pooling step is skipped once the feature map is 1 pixel wide, and
    a global average pool feeds the classifier, so any input of at least 8x8 fits.

    Examples
    --------
    >>> vgg((3, 32, 32), 10, depth=11, width=0.125)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> vgg((1, 28, 28), 10, depth=19, width=0.125)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    if depth not in _VGG_CONFIGS:
        raise ConfigError(f"vgg depth must be one of {sorted(_VGG_CONFIGS)}, got {depth}")
    c, size = int(input_shape[0]), min(int(input_shape[1]), int(input_shape[2]))
    hidden = _scaled(hidden, 1.0)
    _scaled(1, width)  # checks the multiplier
    layers: list[nn.Module] = []
    for item in _VGG_CONFIGS[depth]:
        if item == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            continue
        out = max(4, round(int(item) * width))  # an int: "M" was handled above
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(), nn.Dropout(0.5),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


#: Architecture builders by name: ``fn(input_shape, num_classes, **params) -> nn.Module``.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "vgg": vgg}


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild one of the toolkit's architectures.

    Examples
    --------
    >>> spec = ArchSpec("mlp", (1, 28, 28), 10, {"widths": [64]})
    >>> ArchSpec.from_json(spec.to_json()) == spec
    True
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            d = json.loads(text)
            return cls(str(d["name"]), tuple(int(s) for s in d["input_shape"]), int(d["num_classes"]),
                       dict(d.get("params", {})))
        except (ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(f"the architecture spec is malformed: {exc}") from exc


def check_arch_params(name: str, params: dict[str, Any]) -> None:
    """Check the layer sizes of an architecture's parameters before anything is built or stored.

    Raises
    ------
    ConfigError
        For an unknown architecture, a layer size that is not a whole number from 1 to
        :data:`MAX_UNITS`, or a width multiplier that is not positive.

    Examples
    --------
    >>> check_arch_params("mlp", {"widths": [64, 32]})
    >>> check_arch_params("mlp", {"widths": [-5]})
    Traceback (most recent call last):
    ...
    emergence.errors.ConfigError: layer sizes must be whole numbers from 1 to 1,048,576; got -5
    """
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")
    width = params.get("width", 1.0)
    for key in ("widths", "channels"):
        if key in params:
            if not isinstance(params[key], (list, tuple)):
                raise ConfigError(f"{key} must be a list of layer sizes, got {params[key]!r}")
            for n in params[key]:
                _scaled(n, width)
    if "hidden" in params:
        _scaled(params["hidden"], width)
    _scaled(1, width)


def build(spec: ArchSpec) -> nn.Module:
    """Instantiate ``spec`` (weights drawn from torch's global generator: seed it first).

    Two parameters apply to every architecture: ``init`` (``"default"`` or ``"emergence"``) and
    ``init_alpha`` (the emergence-promoting rescaling of :func:`emergence.adapters.init.emergence_init`).

    Raises
    ------
    ConfigError
        For an unknown architecture or parameters it does not take.

    Examples
    --------
    >>> type(build(ArchSpec("cnn", (1, 28, 28), 10))).__name__
    'Sequential'
    """
    if spec.name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {spec.name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")
    from emergence.adapters.init import check_init, emergence_init

    params = dict(spec.params)
    init, alpha = check_init(params.pop("init", "default"), params.pop("init_alpha", 1.0))
    try:
        with torch.device("meta"):  # size it first: nothing is allocated on the meta device
            sized = ARCHITECTURES[spec.name](spec.input_shape, spec.num_classes, **params)
        count = sum(p.numel() for p in sized.parameters())
        if count > MAX_PARAMETERS:
            raise ConfigError(f"architecture {spec.name!r} with {params} has {count:,} parameters, more than the "
                              f"{MAX_PARAMETERS:,} allowed; choose smaller layers")
        model = ARCHITECTURES[spec.name](spec.input_shape, spec.num_classes, **params)
    except TypeError as exc:
        raise ConfigError(f"architecture {spec.name!r} does not take these parameters: {exc}") from exc
    return emergence_init(model, alpha) if init == "emergence" else model


def save_model(model: nn.Module, spec: ArchSpec, path: str | os.PathLike[str]) -> Path:
    """Save weights with their spec: ``.safetensors`` (spec in the metadata) or a ``.pt`` dict.

    Examples
    --------
    >>> import tempfile
    >>> spec = ArchSpec("mlp", (4,), 2, {"widths": [3]})
    >>> p = save_model(build(spec), spec, tempfile.mkdtemp() + "/m.pt")
    >>> load_model_file(p)[1] == spec
    True
    """
    p = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(p) as tmp:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"format": FORMAT_TAG, "arch": spec.to_json()})
        else:
            torch.save({"format": FORMAT_TAG, "arch": spec.to_json(), "state_dict": state}, tmp)
    return p


def _from_state(spec: ArchSpec, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    model = build(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FileFormatError(f"{where}: weights do not fit architecture {spec.name!r}: "
                              f"{first_line(exc)}") from exc
    return model.eval()


def load_model_file(path: str | os.PathLike[str]) -> tuple[nn.Module, ArchSpec]:
    """Rebuild a model saved by :func:`save_model` (no pickled code is run).

    Raises
    ------
    FileFormatError
        If the file is not such a model.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(p), "pt") as fh:
                meta = fh.metadata() or {}
            state = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FileFormatError(f"could not read {p.name!r} as safetensors: {exc}") from exc
        if "arch" not in meta:
            raise FileFormatError(
                f"{p.name!r} has no architecture metadata; only models saved by emergence can be rebuilt "
                "from safetensors (export yours to .pt2 or ONNX instead)"
            )
        spec = ArchSpec.from_json(meta["arch"])
        return _from_state(spec, state, p.name), spec
    from emergence.adapters.bounded import load_weights

    try:
        obj = load_weights(str(p), p.name)
    except FileFormatError:
        raise
    except Exception as exc:  # the weights-only unpickler raises UnpicklingError, RuntimeError ...
        raise FileFormatError(f"could not read {p.name!r} as a saved state_dict: {exc}") from exc
    return from_checkpoint(obj, p.name)


def from_checkpoint(obj: Any, where: str) -> tuple[nn.Module, ArchSpec]:
    """The model of a checkpoint :func:`save_model` wrote (``{"arch": ..., "state_dict": ...}``), already read.

    This is the one state-dict loader: :func:`load_model_file` and
    :func:`emergence.adapters.model_files.load_model` both rebuild through it.

    Raises
    ------
    FileFormatError
        For a state_dict without an architecture, or weights that do not fit it (``where`` names the file).
    """
    if not isinstance(obj, dict) or "arch" not in obj or "state_dict" not in obj:
        raise FileFormatError(
            f"{where!r} is a state_dict without an architecture; emergence rebuilds only its own architectures "
            "(saved with emergence.adapters.architectures.save_model); export other models to .pt2 or ONNX"
        )
    spec = ArchSpec.from_json(obj["arch"])
    return _from_state(spec, obj["state_dict"], where), spec
