"""Probe batches: bundled datasets by name, ``.npz`` files, or a seeded random batch.

Bundled datasets are registered in :data:`DATASETS` (name -> loader); a loader
returns ``(x, y)`` with ``x`` as float images in ``[0, 1]``, shape ``[N, C, H, W]``.
Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from emergence.errors import ConfigError, FileFormatError, InputShapeError, NonFiniteError

__all__ = ["DATASETS", "register_dataset", "load_npz", "probe_inputs"]

Loader = Callable[[str], tuple[torch.Tensor, torch.Tensor]]
#: Bundled datasets: name -> ``loader(split)`` returning ``(x, y)``; ``split`` is "train" or "test".
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Make ``loader`` available by ``name`` (for ``--data NAME`` and the experiments)."""
    DATASETS[name] = loader


def _as_float_images(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def load_npz(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read inputs ``x`` (and optional labels ``y``) from an ``.npz`` file without unpickling.

    ``uint8`` inputs are scaled to ``[0, 1]``; 3-D ``uint8`` arrays ``[N, H, W]`` get a channel axis.

    Raises
    ------
    FileFormatError
        If the file is missing, not an npz archive, has no ``x``, or holds pickled objects.

    Examples
    --------
    >>> import tempfile
    >>> f = tempfile.mkdtemp() + "/batch.npz"
    >>> np.savez(f, x=np.zeros((3, 4), dtype=np.float32))
    >>> load_npz(f)[0].shape
    torch.Size([3, 4])
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"no such file: {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z.files:
                raise FileFormatError(f"{p.name!r} has no array 'x' (arrays: {', '.join(z.files) or 'none'})")
            x = z["x"]
            y = z["y"] if "y" in z.files else None
    except FileFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise FileFormatError(f"{p.name!r} holds pickled objects, which are refused") from None
        raise FileFormatError(f"could not read {p.name!r} as an .npz archive: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError ...
        raise FileFormatError(f"could not read {p.name!r} as an .npz archive: {exc}") from None
    if not isinstance(x, np.ndarray):
        raise FileFormatError(f"{p.name!r}: 'x' is not a valid array")
    if x.dtype == np.uint8 and x.ndim == 3:
        x = x[:, None]
    if not np.issubdtype(x.dtype, np.number):
        raise FileFormatError(f"{p.name!r}: 'x' has dtype {x.dtype}; expected numbers")
    return _as_float_images(x), None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))


def _fit(x: torch.Tensor, shape: Sequence[int] | None, what: str) -> torch.Tensor:
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    if x[0].numel() == int(np.prod(shape)):
        return x.reshape(x.shape[0], *shape)
    raise InputShapeError(f"{what} has samples of shape {tuple(x.shape[1:])}, but the model takes {tuple(shape)}")


def probe_inputs(
    data: str | os.PathLike[str] | None,
    *,
    samples: int = 256,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    split: str = "train",
) -> torch.Tensor:
    """A probe batch: the first ``samples`` of a bundled dataset or ``.npz`` file, or a random batch.

    Parameters
    ----------
    data : str, path-like or None
        A name in :data:`DATASETS`, a path to an ``.npz`` file, or ``"random"`` / None.
    samples : int, default 256
        Batch size (all of the data when it has fewer).
    seed : int, default 0
        Seed of the random batch (uniform in ``[0, 1)``).
    input_shape : sequence of int, optional
        The model's per-sample input shape; required for a random batch, and used to
        reshape data of the same size (e.g. ``[1, 28, 28]`` images for a ``[784]`` input).
    split : str, default "train"
        Which split of a bundled dataset.

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ConfigError, FileFormatError, InputShapeError, NonFiniteError

    Examples
    --------
    >>> probe_inputs("random", samples=4, input_shape=(1, 28, 28)).shape
    torch.Size([4, 1, 28, 28])
    """
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if data is None or str(data) == "random":
        if input_shape is None:
            raise ConfigError("this model does not declare its input shape, so a random batch cannot be made; "
                              "pass a probe batch (--data NAME|PATH; library: inputs=...)")
        gen = torch.Generator().manual_seed(int(seed))
        return torch.rand(samples, *input_shape, generator=gen)
    key = str(data)
    if key in DATASETS:
        x, _ = DATASETS[key](split)
        what = f"dataset {key!r}"
    elif key.endswith(".npz") or Path(key).is_file():
        x, _ = load_npz(key)
        what = Path(key).name
    else:
        names = ", ".join(sorted(DATASETS)) or "none bundled"
        raise ConfigError(f"data {key!r} is neither a bundled dataset ({names}), an .npz file, nor 'random'")
    x = _fit(x[:samples], input_shape, what)
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{what} contains NaN or infinite inputs")
    return x
