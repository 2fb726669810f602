"""Magnitude pruning: exact sparsity, structure, masks that survive training, rewinding."""

import copy

import pytest
import torch
from torch import nn

from emergence import ConfigError
from emergence.experiments.prune import (
    apply_masks,
    iterative_levels,
    magnitude_masks,
    prunable,
    rewind,
    sparsity,
)
from emergence.experiments.train import TrainConfig, train


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10), nn.ReLU(), nn.Linear(10, 3))


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.77, 0.95])
def test_unstructured_sparsity_is_exact(scope, target):
    net = _net()
    masks = magnitude_masks(net, target, scope=scope)
    apply_masks(net, masks)
    sizes = [p.numel() for _, p in prunable(net)]
    total = sum(sizes)
    expected = round(target * total) if scope == "global" else sum(round(target * n) for n in sizes)
    assert sparsity(net) == pytest.approx(expected / total, abs=1e-12)
    if scope == "layerwise":
        for _, p in prunable(net):
            assert float((p == 0).float().mean()) == pytest.approx(round(target * p.numel()) / p.numel())


def test_global_prunes_the_smallest_weights_anywhere():
    net = _net()
    with torch.no_grad():
        net[1].weight.mul_(0.01)  # layer 1 is now much smaller than the rest
    apply_masks(net, magnitude_masks(net, 0.5, scope="global"))
    assert int((net[1].weight == 0).sum()) >= 0.95 * round(0.5 * 930)  # nearly all from the small layer
    net2 = _net()
    with torch.no_grad():
        net2[1].weight.mul_(0.01)
    apply_masks(net2, magnitude_masks(net2, 0.5, scope="layerwise"))
    assert float((net2[1].weight == 0).float().mean()) == pytest.approx(0.5)


def test_pruned_weights_are_the_smallest():
    net = _net()
    before = {n: p.detach().abs().clone() for n, p in prunable(net)}
    masks = magnitude_masks(net, 0.4, scope="layerwise")
    for n, m in masks.items():
        assert float(before[n][~m].max()) <= float(before[n][m].min())


def test_structured_pruning_removes_whole_units_and_keeps_the_output_layer():
    net = _net()
    masks = magnitude_masks(net, 0.5, structure="structured", scope="layerwise")
    apply_masks(net, masks)
    for _, p in list(prunable(net))[:-1]:
        rows = (p.reshape(p.shape[0], -1) == 0).all(1)
        assert 0 < int(rows.sum()) < p.shape[0]
        assert bool(((p.reshape(p.shape[0], -1) == 0).all(1) | (p.reshape(p.shape[0], -1) != 0).all(1)).all())
    assert bool((list(prunable(net))[-1][1] != 0).all())
    with pytest.raises(ConfigError, match="two prunable layers"):
        magnitude_masks(nn.Linear(3, 2), 0.5, structure="structured")


def test_masks_survive_training():
    net = _net()
    masks = magnitude_masks(net, 0.6)
    x, y = torch.rand(64, 20), torch.randint(0, 3, (64,))
    train(net, x, y, TrainConfig(epochs=3, lr=0.5, momentum=0.9), generator=torch.Generator().manual_seed(0),
          masks=masks)
    for name, p in prunable(net):
        assert bool((p[~masks[name]] == 0).all())
        assert bool((p[masks[name]] != 0).all())
    assert sparsity(net) == pytest.approx(0.6, abs=1e-3)
    train(net, x, y, TrainConfig(epochs=1, optimizer="adam", lr=0.01), generator=torch.Generator().manual_seed(1),
          masks=masks)
    assert sparsity(net) == pytest.approx(0.6, abs=1e-3)


def test_rewinding_restores_initial_weights_under_the_mask():
    net = _net()
    initial = copy.deepcopy(net.state_dict())
    train(net, torch.rand(32, 20), torch.randint(0, 3, (32,)), TrainConfig(epochs=2),
          generator=torch.Generator().manual_seed(0))
    masks = magnitude_masks(net, 0.5)
    rewind(net, initial, masks)
    for name, p in prunable(net):
        assert torch.equal(p[masks[name]], initial[name][masks[name]])
        assert bool((p[~masks[name]] == 0).all())
    assert torch.equal(net[1].bias, initial["1.bias"])


def test_iterative_levels_end_exactly_at_the_target():
    for target, frac in ((0.5, 0.2), (0.9, 0.2), (0.2, 0.2), (0.99, 0.5)):
        levels = iterative_levels(target, frac)
        assert levels[-1] == pytest.approx(target)
        assert all(b > a for a, b in zip(levels, levels[1:], strict=False))
        rate = 1 - (1 - levels[0])
        assert rate <= frac + 1e-12
    assert iterative_levels(0.0, 0.2) == []


def test_bad_targets_are_refused():
    with pytest.raises(ConfigError, match="sparsity must be in"):
        magnitude_masks(_net(), 1.0)
    with pytest.raises(ConfigError, match="scope"):
        magnitude_masks(_net(), 0.5, scope="everywhere")
