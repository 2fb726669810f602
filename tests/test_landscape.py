"""Loss-landscape probes checked on problems with known answers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emergence.experiments.prune import apply_masks, magnitude_masks
from emergence.landscape import (
    LandscapeConfig,
    hessian_eigenvalues,
    hessian_trace,
    probe_landscape,
    random_direction,
    ruggedness,
    slice_1d,
    slice_2d,
)


def _least_squares(n=50, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, d, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    hessian = (2.0 / n * x.T @ x).numpy()
    return model, x, y, hessian


def test_top_eigenvalues_of_least_squares_match_numpy():
    model, x, y, h = _least_squares()
    exact = np.sort(np.linalg.eigvalsh(h))[::-1]
    ev = hessian_eigenvalues(model, F.mse_loss, x, y, k=3, iters=500, tol=1e-12)
    assert ev.shape == (3,)
    np.testing.assert_allclose(ev.numpy(), exact[:3], rtol=1e-4)


def test_trace_estimate_covers_the_exact_trace():
    model, x, y, h = _least_squares()
    tr, err = hessian_trace(model, F.mse_loss, x, y, samples=200, seed=3)
    assert err > 0
    assert abs(tr - np.trace(h)) <= 3 * err


def test_masked_hessian_is_the_submatrix_of_unpruned_weights():
    model, x, y, h = _least_squares()
    keep = torch.tensor([[True, False, True, True, False, True]])
    masks = {"weight": keep}
    sub = h[np.ix_(keep[0].numpy(), keep[0].numpy())]
    ev = hessian_eigenvalues(model, F.mse_loss, x, y, k=1, iters=500, tol=1e-12, masks=masks)
    assert float(ev[0]) == pytest.approx(np.linalg.eigvalsh(sub).max(), rel=1e-4)
    tr, err = hessian_trace(model, F.mse_loss, x, y, samples=200, masks=masks)
    assert abs(tr - np.trace(sub)) <= 3 * err


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def test_slices_pass_through_the_current_loss():
    net = _mlp()
    x, y = torch.rand(30, 5), torch.randint(0, 3, (30,))
    loss = float(F.cross_entropy(net(x), y))
    s1 = slice_1d(net, F.cross_entropy, x, y, steps=11, span=0.5, seed=4)
    assert float(s1.sel(alpha=0.0)) == loss and s1.attrs["seed"] == 4
    s2 = slice_2d(net, F.cross_entropy, x, y, steps=5)
    assert float(s2.sel(alpha=0.0, beta=0.0)) == loss and s2.dims == ("alpha", "beta")
    assert float(F.cross_entropy(net(x), y)) == loss  # weights restored


def test_filter_normalization_makes_slices_invariant_to_relu_rescaling():
    net, scaled = _mlp(), _mlp()
    with torch.no_grad():
        scaled[0].weight.mul_(7.0)
        scaled[0].bias.mul_(7.0)
        scaled[2].weight.div_(7.0)
    x, y = torch.rand(40, 5), torch.randint(0, 3, (40,))
    torch.testing.assert_close(net(x), scaled(x), rtol=1e-5, atol=1e-6)
    a = slice_1d(net, F.cross_entropy, x, y, steps=9, seed=1)
    b = slice_1d(scaled, F.cross_entropy, x, y, steps=9, seed=1)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5)
    raw_a = slice_1d(net, F.cross_entropy, x, y, steps=9, seed=1, normalization="none")
    raw_b = slice_1d(scaled, F.cross_entropy, x, y, steps=9, seed=1, normalization="none")
    assert not np.allclose(raw_a.values, raw_b.values, rtol=1e-3)  # without it, the scale shows


def test_masks_survive_every_probe():
    net = _mlp()
    masks = magnitude_masks(net, 0.5)
    apply_masks(net, masks)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    d = random_direction(net, seed=2, masks=masks)
    for name, m in masks.items():
        assert bool((d[name][~m] == 0).all())
    x, y = torch.rand(20, 5), torch.randint(0, 3, (20,))
    net.train()
    rng = torch.get_rng_state()
    figures = probe_landscape(net, F.cross_entropy, x, y, LandscapeConfig(iters=5, trace_samples=3, steps=5),
                              masks=masks)
    slice_2d(net, F.cross_entropy, x, y, steps=3, masks=masks)
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert set(figures) >= {"hessian_top", "hessian_trace", "hessian_trace_stderr", "slice_minima", "slice_roughness"}


def test_ruggedness_counts_minima_in_two_dimensions():
    a = np.full((5, 5), 3.0)
    a[1, 1] = a[3, 3] = 0.0
    r = ruggedness(a)
    assert r["minima"] == 2.0 and r["gap"] == 3.0
    bowl = np.add.outer(np.linspace(-1, 1, 7) ** 2, np.linspace(-1, 1, 7) ** 2)
    assert ruggedness(bowl)["minima"] == 1.0 and ruggedness(bowl)["gap"] == 0.0
    with pytest.raises(Exception, match="at least 3 points"):
        ruggedness(np.zeros(2))


def test_probes_report_every_step_and_progress_changes_no_number():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.rand(20, 5), torch.randint(0, 3, (20,))
    cfg = LandscapeConfig(iters=6, trace_samples=4, steps=5)
    seen: list[tuple[str, int, int]] = []
    with_bars = probe_landscape(net, F.cross_entropy, x, y, cfg, progress=lambda *a: seen.append(a))
    assert with_bars == probe_landscape(net, F.cross_entropy, x, y, cfg)
    stages = [s for s, _, _ in seen]
    assert sorted(set(stages), key=stages.index) == ["top eigenvalue", "trace", "1-D slice"]
    for stage, total in (("top eigenvalue", 6), ("trace", 4), ("1-D slice", 5)):
        steps = [(d, t) for s, d, t in seen if s == stage]
        assert all(t == total for _, t in steps) and steps[-1][0] == total, (stage, steps)
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)  # never backwards
    grid: list[tuple[str, int, int]] = []
    slice_2d(net, F.cross_entropy, x, y, steps=3, progress=lambda *a: grid.append(a))
    assert grid == [("2-D slice", i, 9) for i in range(1, 10)]
