"""Datasets and probe batches: bundled datasets by name, ``.npz`` files, CIFAR-10 folders, random batches.

Bundled datasets (``mnist``, ``fashion-mnist``) are ``.npz`` files in the repository's
``data/`` folder (see ``data/README.md``), registered in :data:`DATASETS` (name ->
loader); a loader returns ``(x, y)`` for a split, with ``x`` float images in ``[0, 1]``
of shape ``[N, C, H, W]``. Nothing is ever downloaded. CIFAR-10's python batches are
read from a user's folder (``cifar10:PATH``) with an unpickler that only rebuilds
numpy arrays, so no pickled code runs.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emergence.adapters.bounded import check_npz
from emergence.errors import ConfigError, FileFormatError, InputShapeError, NonFiniteError

__all__ = ["DATASETS", "Dataset", "InputSpec", "data_dir", "load_dataset", "register_dataset", "load_npz",
           "probe_inputs",
           "labeled_batch", "load_cifar10"]

Loader = Callable[[str], tuple[torch.Tensor, torch.Tensor]]
#: Bundled datasets: name -> ``loader(split)`` returning ``(x, y)``; ``split`` is "train" or "test".
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Make ``loader`` available by ``name`` (for ``--data NAME`` and the experiments)."""
    DATASETS[name] = loader


def data_dir() -> Path:
    """The folder with the bundled data: ``$EMERGENCE_DATA``, else ``data/`` of the repository.

    Raises
    ------
    FileFormatError
        If the folder does not exist (e.g. the package was installed without its data).
    """
    env = os.environ.get("EMERGENCE_DATA")
    folder = Path(env) if env else Path(__file__).resolve().parent.parent / "data"
    if not folder.is_dir():
        raise FileFormatError(f"bundled data not found in {str(folder)!r}; install from a clone "
                              "(pip install -e .) or set EMERGENCE_DATA to its data/ folder")
    return folder


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset split into train and test, images as floats in [0, 1]."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(int(self.y_train.max()), int(self.y_test.max())) + 1)


#: Classes a labeled dataset may have (the width of a classifier's last layer).
MAX_CLASSES = 100_000


def check_labels(y: torch.Tensor, what: str) -> None:
    """Refuse labels a classifier cannot be trained on: negative, or class ids beyond :data:`MAX_CLASSES`.

    Examples
    --------
    >>> check_labels(torch.tensor([0, 2, 1]), "d.npz")
    >>> check_labels(torch.tensor([0, -1]), "d.npz")
    Traceback (most recent call last):
    ...
    emergence.errors.FileFormatError: 'd.npz': labels must be class ids 0, 1, 2, ...; found -1
    """
    if y.numel() == 0:
        raise FileFormatError(f"{what!r} has no examples")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise FileFormatError(f"{what!r}: labels must be class ids 0, 1, 2, ...; found {lo}")
    if hi >= MAX_CLASSES:
        raise FileFormatError(f"{what!r}: label {hi} would make a classifier with {hi + 1:,} outputs, more than the "
                              f"{MAX_CLASSES:,} allowed; labels must be class ids 0, 1, 2, ...")


def _stratified_test_mask(y: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(y.size, dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        mask[rng.choice(idx, size=int(round(idx.size * fraction)), replace=False)] = True
    return mask


def _npz_dataset(path: Path, name: str) -> Dataset:
    x, y = load_npz(path)
    if y is None:
        raise FileFormatError(f"{path.name!r} has no labels 'y'; a dataset for training needs them")
    if isinstance(x, tuple):
        raise FileFormatError(f"{path.name!r} holds several inputs (x0, x1, ...); a dataset for training takes "
                              "one array 'x'")
    with np.load(path, allow_pickle=False) as z:
        split = z["is_test"].astype(bool) if "is_test" in z.files else _stratified_test_mask(y.numpy())
    if split.shape != (x.shape[0],) or y.shape != (x.shape[0],):
        raise FileFormatError(f"{path.name!r}: x, y and is_test disagree in length")
    check_labels(y, path.name)
    test = torch.from_numpy(split)
    return Dataset(name, x[~test], y[~test], x[test], y[test])


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays; refuses every other global (no code runs)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def load_cifar10(folder: str | os.PathLike[str]) -> Dataset:
    """CIFAR-10 from its python batches (``data_batch_1..5``, ``test_batch``) in ``folder``.

    Raises
    ------
    FileFormatError
        If a batch is missing or holds anything but arrays and labels.
    """
    root = Path(folder)
    parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, names in parts.items():
        xs, ys = [], []
        for n in names:
            f = root / n
            if not f.is_file():
                raise FileFormatError(f"CIFAR-10 batch {str(f)!r} not found")
            try:
                with open(f, "rb") as fh:
                    d = _ArraysOnly(fh, encoding="bytes").load()
                xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d[b"labels"], dtype=np.int64))
            except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as exc:
                raise FileFormatError(f"{n!r} is not a CIFAR-10 python batch: {exc}") from exc
        out[split] = (_as_float_images(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    return Dataset("cifar10", out["train"][0], out["train"][1], out["test"][0], out["test"][1])


def load_dataset(name: str) -> Dataset:
    """A dataset by name: ``mnist``, ``fashion-mnist``, an ``.npz`` path, or ``cifar10:FOLDER``.

    Raises
    ------
    ConfigError, FileFormatError

    Examples
    --------
    >>> d = load_dataset("mnist")
    >>> d.input_shape, d.num_classes, len(d.y_train), len(d.y_test)
    ((1, 28, 28), 10, 8000, 2000)
    """
    if name in ("mnist", "fashion-mnist"):
        return _npz_dataset(data_dir() / f"{name}.npz", name)
    if name.startswith("cifar10:"):
        return load_cifar10(name.split(":", 1)[1])
    if name.endswith(".npz"):
        return _npz_dataset(Path(name), Path(name).stem)
    raise ConfigError(f"unknown dataset {name!r}: use mnist, fashion-mnist, an .npz file or cifar10:FOLDER")


def _bundled(name: str) -> Loader:
    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = load_dataset(name)
        return (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)

    return load


for _name in ("mnist", "fashion-mnist"):
    register_dataset(_name, _bundled(_name))


def _as_float_images(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def _as_inputs(x: np.ndarray) -> torch.Tensor:
    """``uint8`` images scaled to [0, 1]; other integers (token ids, indices) kept as int64; floats as float32."""
    if x.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype != np.uint8 and np.issubdtype(x.dtype, np.integer):
        return torch.from_numpy(np.ascontiguousarray(x).astype(np.int64))
    return _as_float_images(x)


def load_npz(path: str | os.PathLike[str]) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], torch.Tensor | None]:
    """Read inputs ``x`` (and optional labels ``y``) from an ``.npz`` file without unpickling.

    ``uint8`` inputs are scaled to ``[0, 1]``; 3-D ``uint8`` arrays ``[N, H, W]`` get a channel axis;
    other integer inputs (token ids) stay integers (int64); floats become float32.

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
    with open(p, "rb") as fh:
        if fh.read(6) == b"\x93NUMPY":
            raise FileFormatError(f"{p.name!r} is a single .npy array, not an .npz archive with an array 'x'; "
                                  "save it with numpy.savez(path, x=array)")
    try:
        with np.load(p, allow_pickle=False) as z:
            check_npz(z, p.name)
            if "x" in z.files:
                x = z["x"]
            elif "x0" in z.files:  # several model inputs: x0, x1, ... in the model's order
                x = tuple(z[f"x{i}"] for i in range(len(z.files)) if f"x{i}" in z.files)
            else:
                raise FileFormatError(f"{p.name!r} has no array 'x' (nor x0, x1, ... for several inputs; arrays: "
                                      f"{', '.join(z.files) or 'none'})")
            y = z["y"] if "y" in z.files else None
    except FileFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise FileFormatError(f"{p.name!r} holds pickled objects, which are refused") from exc
        raise FileFormatError(f"could not read {p.name!r} as an .npz archive: {exc}") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError ...
        raise FileFormatError(f"could not read {p.name!r} as an .npz archive: {exc}") from exc
    arrays = x if isinstance(x, tuple) else (x,)
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise FileFormatError(f"{p.name!r}: 'x' is not a valid array")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise FileFormatError(f"{p.name!r}: 'x' has dtype {a.dtype}; expected numbers")
    if not isinstance(x, tuple) and x.dtype == np.uint8 and x.ndim == 3:
        x = x[:, None]
    xs = tuple(_as_inputs(a) for a in arrays) if isinstance(x, tuple) else _as_inputs(x)
    return xs, None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))


#: Elements a random probe batch may have (512 MiB of float32).
RANDOM_BATCH_LIMIT = 1 << 27


@dataclass(frozen=True)
class InputSpec:
    """One model input as a random probe batch needs it.

    Attributes
    ----------
    shape : tuple of int, or None
        Per-sample shape (None when the model does not fix it).
    kind : {"float", "int", "bool"}
    high : int or None
        For integer inputs that index an embedding table: its number of rows (random ids are drawn
        below it); other integer and boolean inputs (masks) are all ones in a random batch.
    """

    shape: tuple[int, ...] | None
    kind: str = "float"
    high: int | None = None

    def random(self, samples: int, gen: torch.Generator) -> torch.Tensor:
        if self.shape is None:
            raise ConfigError("this model does not declare its input shape, so a random batch cannot be made; "
                              "pass a probe batch (--data NAME|PATH; library: inputs=...)")
        n = samples * math.prod(self.shape)
        if n > RANDOM_BATCH_LIMIT:
            raise ConfigError(f"a random batch of {samples:,} samples of shape {self.shape} has {n:,} elements, more "
                              f"than the {RANDOM_BATCH_LIMIT:,} allowed; use fewer --samples (or a model that "
                              "declares a sensible input shape)")
        if self.kind == "float":
            return torch.rand(samples, *self.shape, generator=gen)
        if self.kind == "int" and self.high:
            return torch.randint(0, self.high, (samples, *self.shape), generator=gen)
        return torch.ones(samples, *self.shape, dtype=torch.bool if self.kind == "bool" else torch.long)


def _fit(x: torch.Tensor, shape: Sequence[int] | None, what: str) -> torch.Tensor:
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    if x[0].numel() == int(np.prod(shape)):
        return x.reshape(x.shape[0], *shape)
    raise InputShapeError(f"{what} has samples of shape {tuple(x.shape[1:])}, but the model takes {tuple(shape)}")


def _from_data(
    key: str, samples: int, input_shape: Sequence[Any] | None, *, labels: bool
) -> tuple[Any, torch.Tensor | None]:
    """The first ``samples`` training examples of a bundled dataset or an ``.npz`` (labels if asked)."""
    x: torch.Tensor | tuple[torch.Tensor, ...]
    y: torch.Tensor | None
    if key in DATASETS:
        x, y = DATASETS[key]("train")
        what = f"dataset {key!r}"
    elif key.endswith(".npz") or Path(key).is_file():
        x, y = load_npz(key)
        what = Path(key).name
        if labels and y is None:
            raise FileFormatError(f"{what} has no labels 'y'; a loss needs them")
    else:
        names = ", ".join(sorted(DATASETS)) or "none bundled"
        extra = "" if labels else ", nor 'random'"
        raise ConfigError(f"data {key!r} is neither a bundled dataset ({names}), an .npz file{extra}")
    if isinstance(x, tuple):
        shapes = list(input_shape) if input_shape is not None and not isinstance(input_shape[0], int) else \
            [None] * len(x)
        x = tuple(_fit(t[:samples], s, what) for t, s in zip(x, shapes, strict=False))
    else:
        x = _fit(x[:samples], input_shape, what)
    if not all(bool(torch.isfinite(t).all()) for t in (x if isinstance(x, tuple) else (x,))):
        raise NonFiniteError(f"{what} contains NaN or infinite inputs")
    return x, None if y is None else y[:samples]


def labeled_batch(
    data: str | os.PathLike[str], *, samples: int = 512, input_shape: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``samples`` training inputs and labels of a bundled dataset or an ``.npz`` with ``y``.

    Raises
    ------
    ConfigError, FileFormatError, InputShapeError, NonFiniteError
        Also when the data carry no labels (a random batch has none).

    Examples
    --------
    >>> x, y = labeled_batch("mnist", samples=8)
    >>> x.shape, y.shape
    (torch.Size([8, 1, 28, 28]), torch.Size([8]))
    """
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if str(data) == "random":
        raise ConfigError("a loss needs labels, and a random batch has none; pass a dataset name or an .npz with y")
    x, y = _from_data(str(data), samples, input_shape, labels=True)
    assert y is not None
    return x, y


def probe_inputs(
    data: str | os.PathLike[str] | None,
    *,
    samples: int = 256,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    input_specs: Sequence[InputSpec] | None = None,
) -> Any:
    """A probe batch: the first ``samples`` training examples of a bundled dataset or ``.npz`` file, or a random batch.

    A model with several inputs (token ids and an attention mask, say) gets a tuple: from an
    ``.npz`` with arrays ``x0``, ``x1``, ... in the model's input order, or random from
    ``input_specs`` (valid token ids below each embedding table's size; masks of ones).

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
    input_specs : sequence of InputSpec, optional
        Every input of the model (takes precedence over ``input_shape`` for a random batch).

    Returns
    -------
    torch.Tensor, or a tuple of them (one per model input)

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
        gen = torch.Generator().manual_seed(int(seed))
        specs = list(input_specs) if input_specs else [InputSpec(None if input_shape is None else tuple(input_shape))]
        batch = tuple(s.random(samples, gen) for s in specs)
        return batch[0] if len(batch) == 1 else batch
    shapes = [s.shape for s in input_specs] if input_specs and len(input_specs) > 1 else input_shape
    return _from_data(str(data), samples, shapes, labels=False)[0]
