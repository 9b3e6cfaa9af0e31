"""The diffusion modules on a CUDA GPU against the CPU (the `cuda` cases are skipped without a GPU).

Every test body takes `device` and runs twice: "cpu" runs everywhere and takes the same code path with a CPU
generator; "cuda" (marked `cuda`) uses a CUDA generator, so its random numbers are drawn on the GPU and are *other
numbers* than the CPU's, from the same distributions. A CUDA result is therefore compared with CPU runs
statistically (over a few seeds, with the tolerance justified beside it), never bit for bit; deterministic closed
forms (metrics, quadratures, the grid laws of the samplers) are compared to rounding. Every output is checked to
live on the device.
"""
import math

import pytest
import torch

from devices import DEVICES, device_generator as _gen, on_device as _on
from learnthy_nb.core import gaussian, haar_orthogonal, uniform
from learnthy_nb.diffusion import (GaussianMixture, LacunaryDensity, histogram_sample, histogram_tv, kde_tv,
                                   minimax_times, ode_density_1d, ou_mean_std, ou_time_from_std, reflect_into, sample,
                                   sde_density_1d, train_score_model, tv_binned, tv_density_1d, w1_1d, w1_pot)
from learnthy_nb.diffusion_lowdim import embed_on_axis, kde_sample, quadrature_score_1d
from learnthy_nb.diffusion_structure import (circle_coordinate, distance_to_circle, embed_on_circle,
                                             memorised_fraction, nearest_distance, principal_frame)





def _assert_agrees(run, device: str, tolerances: tuple[float, ...]) -> None:
    """Means over training seeds 1, 2, 3 of `run(device, seed)` (a tuple of statistics) against the means over seeds
    101, 102, 103 on the CPU: each statistic within its tolerance. For device "cpu" both sides are CPU runs with
    different seeds, which is how the tolerances were set (see each caller)."""
    dev = [run(device, seed) for seed in (1, 2, 3)]
    cpu = [run("cpu", seed) for seed in (101, 102, 103)]
    for i, tol in enumerate(tolerances):
        diff = sum(r[i] for r in dev) / 3 - sum(r[i] for r in cpu) / 3
        assert abs(diff) < tol, f"statistic {i}: {device} and CPU means differ by {diff:.4g} (tolerance {tol})"


# ---------------------------------------------------------------- diffusion: samplers with an exact score
@pytest.mark.parametrize("device", DEVICES)
def test_exact_score_samplers_on_device(device):
    means, w = torch.tensor([[-1.0], [0.5]], dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64)
    gm_cpu, gm = GaussianMixture(means, 0.3, w), GaussianMixture(means.to(device), 0.3, w.to(device))
    m, s = (float(v) for v in ou_mean_std(torch.tensor(1e-3, dtype=torch.float64)))
    target = GaussianMixture(m * means, math.sqrt(m**2 * 0.09 + s**2), w)
    floor = w1_1d(target.sample(20_000, _gen("cpu", 3), device="cpu"), target)
    for ode in (False, True):
        y = sample(gm, 20_000, 1e-3, 4.0, n_steps=100, ode=ode, generator=_gen(device, 2))
        assert _on(y, device) and y.shape == (20_000, 1)
        # the tolerance of the CPU test (tests/test_diffusion.py): twice the Monte-Carlo W1 of 20000 exact draws
        # plus 0.01 of discretisation; a sampler with the wrong law (t_max = 0.3) fails it there
        assert w1_1d(y, target) < 2 * floor + 0.01
    # the laws on the grid are deterministic: the device's equal the CPU's to rounding
    for fn, kw in ((sde_density_1d, dict(cells=400)), (ode_density_1d, dict(grid_size=400, n_start=2**10))):
        grid, q = fn(gm, 1e-2, 3.0, n_steps=30, low=-2.0, high=2.0, **kw)
        grid_c, q_c = fn(gm_cpu, 1e-2, 3.0, n_steps=30, low=-2.0, high=2.0, **kw)
        assert _on(q, device) and _on(grid, device)
        assert torch.allclose(q.cpu(), q_c, atol=1e-9) and torch.allclose(grid.cpu(), grid_c)


# ---------------------------------------------------------------- diffusion: targets and metrics
@pytest.mark.parametrize("device", DEVICES)
def test_targets_and_metrics_on_device(device):
    dens = LacunaryDensity(0.5, seed=1)
    x = dens.sample(20_000, _gen(device, 0), device=device)
    assert _on(x, device) and x.dtype == torch.float64
    xs = torch.sort(x[:, 0]).values
    ks = float((torch.arange(1, xs.numel() + 1, dtype=torch.float64, device=device) / xs.numel() - dens.cdf(xs)).abs().max())
    assert ks < 1.95 / math.sqrt(xs.numel())                 # Kolmogorov-Smirnov at the 0.1% level
    # deterministic metrics of the same points: the device's value equals the CPU's
    xc = x.cpu()
    for f in (lambda z: tv_binned(z, dens, 32), lambda z: kde_tv(z[:2000], dens, 0.05), lambda z: histogram_tv(z, dens, 16),
              lambda z: w1_1d(z, dens), lambda z: w1_pot(z[:300], z[300:600])):
        assert abs(f(x) - f(xc)) < 1e-9
    dens2 = LacunaryDensity(1.0, d=2)
    x2 = dens2.sample(3000, _gen(device, 1), device=device)
    assert _on(x2, device)
    assert abs(kde_tv(x2, dens2, 0.1, grid_size=64**2) - kde_tv(x2.cpu(), dens2, 0.1, grid_size=64**2)) < 1e-9
    assert abs(tv_binned(x2, dens2, 8) - tv_binned(x2.cpu(), dens2, 8)) < 1e-9
    assert abs(histogram_tv(x2, dens2, 4, sub=8) - histogram_tv(x2.cpu(), dens2, 4, sub=8)) < 1e-9
    # samplers of the baselines with a device generator: right law (standard errors below 0.004 at 20000 draws)
    h = histogram_sample(x[:500], 8, 20_000, generator=_gen(device, 2))
    assert _on(h, device)
    freq = torch.histc(h[:, 0], bins=8, min=-1, max=1) / 20_000
    counts = torch.histc(x[:500, 0], bins=8, min=-1, max=1) / 500
    assert float((freq - counts).abs().max()) < 0.015
    gm = GaussianMixture(torch.tensor([[-0.5], [0.4]], dtype=torch.float64, device=device), 0.2)
    g = gm.sample(20_000, _gen(device, 3), device=device)
    assert _on(g, device) and abs(float(g.mean()) + 0.05) < 0.015 and abs(float(g.std()) - math.sqrt(0.04 + 0.2025)) < 0.015
    grid = torch.linspace(-0.99, 0.99, 100, dtype=torch.float64, device=device)
    assert _on(tv_density_1d(grid, dens.pdf(grid[:, None])[None], dens), device)


# ---------------------------------------------------------------- diffusion: the rate experiment, quick scale
def _rate_run(device: str, seed: int, s: float = 1.0) -> tuple[float, float]:
    """Chapter 10's quick configuration for one smoothness: (mean exact TV of the SDE sampler's law over the
    ns = (100, 200, 400) models, mean training loss over the last 50 steps). The data are the same on every device
    (a CPU generator seeded 10 s); the training and its draws use `seed` on `device`."""
    dens = LacunaryDensity(s)
    data_gen = _gen("cpu", int(10 * s))
    data = [dens.sample(n, data_gen, device=device) for n in (100, 200, 400)]
    _, t_min, t_max = zip(*(minimax_times(x.shape[0], s, 1, 0.7) for x in data))
    model = train_score_model([x.float() for x in data], t_min, t_max, n_steps=200, batch_size=128, lr=3e-3, width=32,
                              n_freq=8, generator=_gen(device, seed), device=device, quiet=True)
    assert all(_on(p, device) for p in model.parameters())
    grid, q = sde_density_1d(model, t_min, t_max, n_steps=20, cells=512)
    assert _on(q, device) and _on(grid, device)
    return float(tv_density_1d(grid, q, dens).mean()), float(model.loss_history[-50:].mean())


@pytest.mark.parametrize("device", DEVICES)
def test_rate_quick_config_agrees_with_cpu(device):
    # three training seeds on the device against three other seeds on the CPU. Measured on the CPU over 8 seeds: the seed-to-seed standard deviation
    # of the mean TV is 0.0046 around 0.123 and of the final loss 0.0033 around 0.287, so the difference of two
    # means of 3 seeds has a standard deviation of 0.0037 (TV) and 0.0027 (loss). The tolerances are five of
    # those (a standard deviation estimated from 8 seeds is uncertain by about 25%).
    _assert_agrees(_rate_run, device, (0.019, 0.014))


# ---------------------------------------------------------------- diffusion_lowdim
@pytest.mark.parametrize("device", DEVICES)
def test_lowdim_tools_on_device(device):
    dens = LacunaryDensity(0.5)
    t = 1e-2
    m, s = (float(v) for v in ou_mean_std(torch.tensor(t, dtype=torch.float64)))
    y = m * dens.sample(300, _gen(device, 0), device=device) + s * gaussian((300, 1), generator=_gen(device, 5),
                                                                              device=device, dtype=torch.float64)
    q = quadrature_score_1d(dens, y, t, grid_size=2048)
    assert _on(q, device) and torch.allclose(q.cpu(), quadrature_score_1d(dens, y.cpu(), t, grid_size=2048), atol=1e-8)
    x = torch.tensor([[-0.5], [0.25], [0.5]], dtype=torch.float64, device=device)
    k = kde_sample(x, 0.1, 60_000, generator=_gen(device, 1), reflect=(-1.0, 1.0))
    # mean and variance of a KDE draw: those of x, plus h^2; standard errors at 60000 draws are below 0.002
    assert _on(k, device) and abs(float(k.mean()) - float(x.mean())) < 0.01
    assert abs(float(k.var()) - (float(x.var(unbiased=False)) + 0.01)) < 0.01
    assert _on(embed_on_axis(k[:5], 4), device)


def _lowdim_run(device: str, seed: int, D: int = 8) -> tuple[float, float]:
    """Chapter 11's quick line experiment in R^D for n = 100 and 400: (mean binned TV of the projected samples,
    mean distance of the samples to the line). Data from a CPU generator; training and sampling draw with `seed`."""
    dens = LacunaryDensity(0.5)
    us = [dens.sample(n, _gen("cpu", 100 + D), device=device) for n in (100, 400)]
    _, t_min, t_max = zip(*(minimax_times(u.shape[0], 0.5, 1, 0.7) for u in us))
    g = _gen(device, seed)
    model = train_score_model([embed_on_axis(u, D).float() for u in us], t_min, t_max, n_steps=100, batch_size=128,
                              lr=3e-3, width=16, n_freq=8, generator=g, device=device, quiet=True)
    y = sample(model, 2000, t_min, t_max, n_steps=10, generator=g).double()
    assert _on(y, device)
    tv = sum(tv_binned(reflect_into(y[b, :, :1]), dens, 16) for b in range(2)) / 2
    return tv, float(y[:, :, 1:].pow(2).sum(-1).mean().sqrt())


@pytest.mark.parametrize("device", DEVICES)
def test_lowdim_quick_config_agrees_with_cpu(device):
    # measured on the CPU over 8 seeds: the standard deviation over seeds of the mean binned TV is 0.0076 (around
    # 0.092) and of the distance to the line 0.20 (around 10.9: 100 steps do not yet learn the normal directions);
    # means of 3 seeds differ by a standard deviation of 0.0062 and 0.16; the tolerances are five of those
    _assert_agrees(_lowdim_run, device, (0.031, 0.8))


# ---------------------------------------------------------------- diffusion_structure
@pytest.mark.parametrize("device", DEVICES)
def test_structure_tools_on_device(device):
    frame = haar_orthogonal(8, 2, generator=_gen(device, 0), device=device)
    assert _on(frame, device)
    u = 2 * uniform((500,), generator=_gen(device, 1), device=device, dtype=torch.float64) - 1
    circ = embed_on_circle(u, frame.cpu())                    # a CPU frame with device points: the points' device
    assert _on(circ, device)
    assert torch.allclose(circle_coordinate(circ, frame.cpu())[:, 0], u) and float(distance_to_circle(circ, frame).max()) < 1e-12
    rot = principal_frame(circ)
    assert _on(rot, device) and torch.allclose(rot[:, :2] @ rot[:, :2].T @ frame, frame, atol=1e-8)
    # memorisation with the exact empirical score: stopped at sigma = 1e-3, (nearly) every sample is a training point
    x = LacunaryDensity(1.0).sample(8, _gen("cpu", 0), device=device)
    y = sample(GaussianMixture(x, 0.0), 500, ou_time_from_std(1e-3), 3.0, n_steps=50, generator=_gen(device, 2))
    assert _on(y, device) and _on(nearest_distance(y, x.cpu()), device)
    assert memorised_fraction(y, x, 0.01) > 0.95              # measured 1.0 on the CPU


def _curve_run(device: str, seed: int, D: int = 8) -> tuple[float, float]:
    """Chapter 12's quick circle experiment in R^D (skip path) for n = 100 and 400: (mean binned TV of the intrinsic
    coordinate, mean RMS distance of the samples to the circle). Data and frame from CPU generators."""
    dens = LacunaryDensity(0.5)
    gc = _gen("cpu", 200 + D)
    frame = haar_orthogonal(D, 2, generator=gc, device=device)
    us = [dens.sample(n, gc, device=device) for n in (100, 400)]
    xs = [embed_on_circle(u, frame) for u in us]
    rots = [principal_frame(x) for x in xs]
    _, t_min, t_max = zip(*(minimax_times(u.shape[0], 0.5, 1, 0.7) for u in us))
    g = _gen(device, seed)
    model = train_score_model([(x @ r).float() for x, r in zip(xs, rots)], t_min, t_max, n_steps=100, batch_size=128,
                              lr=3e-3, width=16, n_freq=4, skip=True, generator=g, device=device, quiet=True)
    y = sample(model, 1000, t_min, t_max, n_steps=10, generator=g).double()
    assert _on(y, device)
    samples = [y[b] @ rots[b].T for b in range(2)]
    tv = sum(tv_binned(reflect_into(circle_coordinate(p, frame)), dens, 16) for p in samples) / 2
    dist = sum(float(distance_to_circle(p, frame).pow(2).mean().sqrt()) for p in samples) / 2
    return tv, dist


@pytest.mark.parametrize("device", DEVICES)
def test_curve_quick_config_agrees_with_cpu(device):
    # measured on the CPU over 8 seeds: the standard deviation over seeds of the mean binned TV is 0.015 (around
    # 0.114) and of the distance to the circle 0.13 (around 4.7); means of 3 seeds differ by a standard deviation
    # of 0.012 and 0.11; the tolerances are five of those
    _assert_agrees(_curve_run, device, (0.061, 0.53))
