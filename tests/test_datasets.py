"""Bundled datasets and other loaders."""

import pickle

import numpy as np
import pytest
import torch

from emergence import FileFormatError
from emergence.adapters.datasets import load_dataset, probe_inputs


@pytest.mark.parametrize("name, train, test", [("mnist", 8000, 2000), ("fashion-mnist", 16000, 4000)])
def test_bundled_datasets(name, train, test):
    d = load_dataset(name)
    assert d.x_train.shape == (train, 1, 28, 28) and d.x_test.shape == (test, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) >= 0 and float(d.x_train.max()) <= 1 and float(d.x_train.max()) > 0.9
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28)
    counts_train = torch.bincount(d.y_train, minlength=10)
    counts_test = torch.bincount(d.y_test, minlength=10)
    frac = counts_test.double() / (counts_train + counts_test).double()
    assert bool(((frac - 0.2).abs() < 0.005).all())  # stratified 80/20
    train_rows = {r.numpy().tobytes() for r in (d.x_train * 255).round().to(torch.uint8).reshape(train, -1)}
    test_rows = [r.numpy().tobytes() for r in (d.x_test * 255).round().to(torch.uint8).reshape(test, -1)]
    assert not any(r in train_rows for r in test_rows)  # no overlap
    assert torch.equal(probe_inputs(name, samples=5), d.x_train[:5])


def test_npz_dataset_without_split_gets_a_stratified_one(tmp_path):
    y = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).integers(0, 255, (100, 6, 6), dtype=np.uint8), y=y)
    d = load_dataset(str(tmp_path / "d.npz"))
    assert len(d.y_test) == 20 and torch.bincount(d.y_test).tolist() == [5, 5, 5, 5]
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 2)))
    with pytest.raises(FileFormatError, match="no labels"):
        load_dataset(str(tmp_path / "nolabels.npz"))


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        pickle.dump({b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, n))}, fh)


def test_cifar10_batches_load_without_running_pickled_code(tmp_path):
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 4, i)
    _cifar_batch(tmp_path / "test_batch", 3, 9)
    d = load_dataset(f"cifar10:{tmp_path}")
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)

    class Evil:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(tmp_path / "pwned"),))

    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(FileFormatError, match="refused to load"):
        load_dataset(f"cifar10:{tmp_path}")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(FileFormatError, match="not found"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
