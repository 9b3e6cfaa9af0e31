"""Unit tests of learnthy_nb.diffusion (quick sizes; about a minute on 2 shared CPU cores)."""
import math

import numpy as np
import pytest
import torch

from learnthy_nb.core import DivergenceError
from learnthy_nb.diffusion import (GaussianMixture, LacunaryDensity, ScoreNet, dsm_loss, histogram_sample,
                                   histogram_tv, kde_tv, minimax_times, ode_density_1d, ou_mean_std, ou_time_from_std,
                                   reflect_into, sample, sde_density_1d, time_grid, train_score_model, tv_binned,
                                   tv_density_1d, UniformDensity as Uniform, w1_1d, w1_pot)


@pytest.fixture(autouse=True)
def cpu_device(monkeypatch):
    """These are CPU tests (tests/test_cuda_diffusion.py runs the GPU): get_device() is the CPU here."""
    monkeypatch.setenv("LEARNTHY_DEVICE", "cpu")


def _mixture_at(gm, t):
    """The OU marginal at time t of a Gaussian mixture, as a GaussianMixture."""
    m, s = (float(v) for v in ou_mean_std(torch.tensor(t, dtype=torch.float64)))
    return GaussianMixture(m * gm.means, math.sqrt(m**2 * gm.std**2 + s**2), gm.weights)


# ---------------------------------------------------------------- forward process
def test_ou_marginals_match_euler_maruyama():
    g = torch.Generator().manual_seed(0)
    x0, dt, n_paths = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64), 1e-3, 20_000
    x = x0.repeat(n_paths, 1)
    for _ in range(500):                                      # t = 0.5
        x = x - x * dt + math.sqrt(2 * dt) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    m, s = ou_mean_std(torch.tensor(0.5, dtype=torch.float64))
    # standard errors: s / sqrt(n_paths) ~ 0.005 for the mean; Euler bias ~ dt
    assert torch.allclose(x.mean(0), m * x0, atol=0.03)
    assert torch.allclose(x.std(0), s.expand(3), atol=0.03)


def test_ou_mean_std_values_and_small_t():
    m, s = ou_mean_std(torch.tensor([1e-12, 1.0], dtype=torch.float64))
    assert torch.allclose(m, torch.exp(-torch.tensor([1e-12, 1.0], dtype=torch.float64)))
    assert abs(float(s[0]) - math.sqrt(2e-12)) < 1e-15          # no cancellation at tiny t
    assert abs(float(s[1]) ** 2 - (1 - math.exp(-2))) < 1e-12


# ---------------------------------------------------------------- targets
@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_lacunary_density_normalised_bounded_below_cdf(s):
    dens = LacunaryDensity(s, seed=3)
    grid = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    vals = dens.pdf(grid[:, None])
    assert abs(float(torch.trapezoid(vals, grid)) - 1) < 1e-8
    assert float(vals.min()) >= dens.lower_bound > 0
    assert float((torch.cumulative_trapezoid(vals, grid) - dens.cdf(grid[1:])).abs().max()) < 1e-8
    assert float(dens.pdf(torch.tensor([[1.5], [-1.01]])).abs().max()) == 0.0


def test_lacunary_samples_follow_cdf():
    dens = LacunaryDensity(0.5, seed=1)
    x = dens.sample(50_000, torch.Generator().manual_seed(2))
    assert x.shape == (50_000, 1) and float(x.abs().max()) <= 1
    xs = torch.sort(x[:, 0]).values
    ks = float((torch.arange(1, xs.numel() + 1, dtype=torch.float64) / xs.numel() - dens.cdf(xs)).abs().max())
    assert ks < 1.63 / math.sqrt(xs.numel())                  # Kolmogorov-Smirnov at the 1% level


def test_lacunary_2d_normalised():
    dens = LacunaryDensity(1.0, d=2, seed=0)
    g = (torch.arange(800, dtype=torch.float64) + 0.5) / 400 - 1
    mesh = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    vals = dens.pdf(mesh)
    assert abs(float(vals.mean()) * 4 - 1) < 1e-3 and float(vals.min()) >= dens.lower_bound
    assert dens.sample(10, torch.Generator().manual_seed(0)).shape == (10, 2)
    # the 2-D sampler follows the density: frequencies of a 4 x 4 grid of cells against the cells' masses
    # (midpoint rule on the mesh above); measured max |z| = 2.0, while the same draws with the coordinates
    # swapped give 15 and uniform draws 8
    n = 40_000
    x = dens.sample(n, torch.Generator().manual_seed(0))
    mass = vals.reshape(4, 200, 4, 200).sum((1, 3)) / 400**2
    cell = ((x + 1) * 2).floor().long().clamp(0, 3)
    freq = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double().reshape(4, 4) / n
    assert float(((freq - mass).abs() / (mass * (1 - mass) / n).sqrt()).max()) < 4.5


# ---------------------------------------------------------------- scores and loss
def test_mixture_score_is_gradient_of_log_density():
    gm = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), 0.4, torch.tensor([0.25, 0.75]))
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (auto,) = torch.autograd.grad(torch.log(gm.pdf(x, t=0.3)).sum(), x)
    assert torch.allclose(auto, gm.score(x.detach(), 0.3), atol=1e-10)


class _ExactEps:
    def __init__(self, mixture, scale=1.0):
        self.mixture, self.scale = mixture, scale

    def eps(self, x, t):
        sigma = ou_mean_std(t)[1]
        score = torch.cat([self.mixture.score(x[:, i:i + 1], float(t[0, i])) for i in range(x.shape[1])], 1)
        return -sigma[..., None] * self.scale * score


def test_dsm_loss_minimised_by_true_score_with_vincent_gap():
    gm = GaussianMixture(torch.tensor([[-1.0], [0.8]]), 0.3, torch.tensor([0.4, 0.6]))
    g = torch.Generator().manual_seed(1)
    n = 3000
    x0 = gm.sample(n, g)[None]
    t = torch.exp(math.log(0.01) + torch.rand(1, n, generator=g, dtype=torch.float64) * math.log(100))
    z = torch.randn(1, n, 1, generator=g, dtype=torch.float64)
    exact = float(dsm_loss(_ExactEps(gm), x0, t, z))
    m, s = ou_mean_std(t)
    xt = m[..., None] * x0 + s[..., None] * z
    score = torch.cat([gm.score(xt[:, i:i + 1], float(t[0, i])) for i in range(n)], 1)
    for scale in (0.8, 1.25):
        wrong = float(dsm_loss(_ExactEps(gm, scale), x0, t, z))
        gap = float((t * (((scale - 1) * score) ** 2).sum(-1)).mean())       # weight t / sigma^2 times sigma^2 |ds|^2
        assert wrong > exact
        assert abs((wrong - exact) - gap) < 0.25 * gap                        # Vincent: gap = explicit SM error


# ---------------------------------------------------------------- samplers
def test_sampler_with_exact_score_reproduces_mixture():
    gm = GaussianMixture(torch.tensor([[-1.0], [0.5]]), 0.3, torch.tensor([0.3, 0.7]))
    t_lo, M = 1e-3, 20_000
    target = _mixture_at(gm, t_lo)
    floor = w1_1d(target.sample(M, torch.Generator().manual_seed(3)), target)   # W1 of M exact draws
    y = sample(gm, M, t_lo, 4.0, n_steps=100, generator=torch.Generator().manual_seed(2))
    assert y.shape == (M, 1)
    # tolerance: twice the Monte-Carlo floor plus 0.01 for discretisation; a sampler started at t_max = 0.3
    # (far from stationarity) must fail it, so the tolerance discriminates.
    tol = 2 * floor + 0.01
    assert w1_1d(y, target) < tol
    y_bad = sample(gm, M, t_lo, 0.3, n_steps=100, generator=torch.Generator().manual_seed(2))
    assert w1_1d(y_bad, target) > tol
    y_ode = sample(gm, M, t_lo, 4.0, n_steps=100, ode=True, generator=torch.Generator().manual_seed(2))
    assert w1_1d(y_ode, target) < tol


def _empirical_score(n, bw=0.08):
    """n draws x of the lacunary density (s = 1), their empirical score (a mixture with std 0), the time t_lo with
    sigma(t_lo) = bw and m = m(t_lo): the reverse process stopped at t_lo samples the KDE GaussianMixture(m x, bw)."""
    x = LacunaryDensity(1.0).sample(n, torch.Generator().manual_seed(5))
    t_lo = ou_time_from_std(bw)
    return x, GaussianMixture(x, 0.0), t_lo, float(ou_mean_std(torch.tensor(t_lo))[0])


def test_empirical_score_sampler_is_gaussian_kde():
    bw = 0.08
    x, emp, t_lo, m = _empirical_score(200, bw)
    kde = GaussianMixture(m * x, bw)
    grid, q = ode_density_1d(emp, t_lo, 4.0, n_steps=100, low=-2.0, high=2.0, grid_size=2000, n_start=2**12)
    tv = float(0.5 * (q[0] - kde.pdf(grid[:, None])).abs().sum() * (grid[1] - grid[0]))
    tv_wrong = float(0.5 * (q[0] - GaussianMixture(m * x, 2 * bw).pdf(grid[:, None])).abs().sum() * (grid[1] - grid[0]))
    assert tv < 0.03 < tv_wrong                                   # equals the KDE of bandwidth sigma(t_lo), not 2x
    y = sample(emp, 10_000, t_lo, 4.0, n_steps=100, generator=torch.Generator().manual_seed(6))
    floor = w1_1d(kde.sample(10_000, torch.Generator().manual_seed(7)), kde)
    assert w1_1d(y, kde) < 2 * floor + 0.01


def test_sde_density_converges_to_kde_with_empirical_score():
    # With the exact empirical score the reverse SDE's law at t_lo is the Gaussian KDE with bandwidth sigma(t_lo)
    # (up to the discretisation error); the grid propagation must reproduce it, better with more steps, and
    # must not match the KDE of twice the bandwidth.
    bw = 0.08
    x, emp, t_lo, m = _empirical_score(100, bw)
    tvs = {}
    for n_steps in (20, 80):
        grid, q = sde_density_1d(emp, t_lo, 4.0, n_steps=n_steps, low=-2.0, high=2.0, cells=800)
        assert abs(float(q.sum() * (grid[1] - grid[0])) - 1) < 1e-9               # a probability density
        tvs[n_steps] = float(0.5 * (q[0] - GaussianMixture(m * x, bw).pdf(grid[:, None])).abs().sum() * (grid[1] - grid[0]))
    wrong = float(0.5 * (q[0] - GaussianMixture(m * x, 2 * bw).pdf(grid[:, None])).abs().sum() * (grid[1] - grid[0]))
    assert tvs[80] < 0.5 * tvs[20] and tvs[80] < 0.01 < wrong      # wrong is about 0.07


def test_sde_density_agrees_with_samples():
    # the grid law and Monte-Carlo samples of the same sampler give the same bin probabilities (within MC noise)
    gm = GaussianMixture(torch.tensor([[-0.5], [0.4]]), 0.2, torch.tensor([0.4, 0.6]))
    grid, q = sde_density_1d(gm, 1e-2, 3.0, n_steps=30, low=-2.0, high=2.0, cells=800)
    y = sample(gm, 100_000, 1e-2, 3.0, n_steps=30, generator=torch.Generator().manual_seed(0))
    freq = torch.histc(reflect_into(y[:, 0].double(), -2.0, 2.0), bins=8, min=-2, max=2) / 100_000
    probs = (q[0] * (grid[1] - grid[0])).reshape(8, 100).sum(-1)
    assert float((freq - probs).abs().max()) < 0.006                               # ~ 4 standard errors


def test_histogram_tv_closed_forms_and_rate_direction():
    u = Uniform()
    centres = (torch.arange(8, dtype=torch.float64)[:, None] + 0.5) / 4 - 1
    assert histogram_tv(centres, u, 8) < 1e-12
    left = -torch.rand(40, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(histogram_tv(left, u, 2) - 0.5) < 1e-12
    assert abs(histogram_tv(left, u, 1) - 0.0) < 1e-12                              # one bin = the uniform itself
    dens = LacunaryDensity(1.0)
    g = torch.Generator().manual_seed(1)
    small, large = (np.mean([histogram_tv(dens.sample(n, g), dens, b) for _ in range(3)]) for n, b in ((200, 8), (20_000, 40)))
    assert large < 0.5 * small
    x2 = LacunaryDensity(1.0, d=2).sample(50, g)
    assert 0 < histogram_tv(x2, LacunaryDensity(1.0, d=2), 4) < 1


def test_histogram_sample_follows_bins():
    x = torch.tensor([[-0.9, -0.9], [-0.9, -0.9], [0.6, 0.1]], dtype=torch.float64)
    y = histogram_sample(x, 4, 30_000, generator=torch.Generator().manual_seed(0))
    assert y.shape == (30_000, 2) and bool(((y >= -1) & (y <= 1)).all())
    in_first = ((y[:, 0] < -0.5) & (y[:, 1] < -0.5)).double().mean()
    in_other = ((y[:, 0] >= 0.5) & (y[:, 1] >= 0.0) & (y[:, 1] < 0.5)).double().mean()
    assert abs(float(in_first) - 2 / 3) < 0.02 and abs(float(in_other) - 1 / 3) < 0.02


def test_time_grid_geometric():
    g = time_grid(1e-3, 1.0, 3)
    assert torch.allclose(g, torch.tensor([1.0, 0.1, 0.01, 1e-3], dtype=torch.float64))
    batched = time_grid([1e-3, 1e-2], 1.0, 4)
    assert batched.shape == (2, 5)
    for row, t_min in zip(batched, (1e-3, 1e-2)):                   # one grid per model, each the scalar grid
        assert torch.allclose(row, time_grid(t_min, 1.0, 4), rtol=1e-12, atol=0)


def test_train_and_sample_batched_quick():
    dens = LacunaryDensity(1.0)
    g = torch.Generator().manual_seed(0)
    xs = [dens.sample(n, g).float() for n in (100, 300)]
    model = train_score_model(xs, [1e-3, 5e-4], 1.5, n_steps=150, batch_size=64, lr=3e-3, width=16, n_freq=4,
                              generator=g, device="cpu", quiet=True)
    assert isinstance(model, ScoreNet) and model.n_models == 2
    y = sample(model, 500, [1e-3, 5e-4], 1.5, n_steps=10, generator=torch.Generator().manual_seed(1))
    assert y.shape == (2, 500, 1) and bool(torch.isfinite(y).all())
    assert float(model(y, torch.tensor([0.1, 0.1])).abs().max()) <= float(model.clip.max()) / math.sqrt(1 - math.exp(-0.2)) + 1e-4
    # determinism: the same generator seed gives the same model
    m2 = train_score_model(xs, [1e-3, 5e-4], 1.5, n_steps=150, batch_size=64, lr=3e-3, width=16, n_freq=4,
                           generator=torch.Generator().manual_seed(0), device="cpu", quiet=True)
    g0 = torch.Generator().manual_seed(0)
    xs0 = [dens.sample(n, g0).float() for n in (100, 300)]
    assert all(torch.equal(a, b) for a, b in zip(xs, xs0))
    m1 = train_score_model(xs, [1e-3, 5e-4], 1.5, n_steps=150, batch_size=64, lr=3e-3, width=16, n_freq=4,
                           generator=torch.Generator().manual_seed(0), device="cpu", quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_training_diverges_loudly():
    x = torch.tensor([[0.0], [1e39]], dtype=torch.float64)     # finite in float64, inf in float32
    with pytest.raises(DivergenceError):
        train_score_model(x, 1e-3, 1.0, n_steps=3, batch_size=8, lr=1e-3, device="cpu", quiet=True)


# ---------------------------------------------------------------- metrics
def test_tv_binned_two_uniforms_exact():
    half = -torch.rand(50_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(tv_binned(half, Uniform(), 20) - 0.5) < 1e-12       # TV(U[-1,0], U[-1,1]) = 1/2


def test_tv_binned_noise_floor_shrinks():
    dens = LacunaryDensity(1.0)
    g = torch.Generator().manual_seed(1)
    small = tv_binned(dens.sample(2_000, g), dens, 32)
    large = tv_binned(dens.sample(200_000, g), dens, 32)
    # floor ~ 0.5 sqrt(2 bins / (pi M)): 0.050 and 0.005
    assert 0.02 < small < 0.09 and large < 0.012


def test_w1_closed_forms():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(100_000, 1, generator=g, dtype=torch.float64)
    assert abs(w1_1d(z + 0.7, GaussianMixture(torch.zeros(1, 1), 1.0)) - 0.7) < 0.02
    u = torch.rand(100_000, generator=g, dtype=torch.float64) - 1        # U[-1, 0] vs U[-1, 1]: W1 = 1/2
    assert abs(w1_1d(u, Uniform()) - 0.5) < 0.01
    pts = torch.rand(200, 3, generator=g, dtype=torch.float64)
    v = torch.tensor([0.3, 0.4, 1.2], dtype=torch.float64)
    assert abs(w1_pot(pts, pts + v) - 1.3) < 1e-9                       # Euclidean, not squared: |v| = 1.3


def test_kde_tv_limits():
    dens = LacunaryDensity(1.0)
    q = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    # exact quantiles of p (a "perfect sample"): inverting the CDF by the density's own table sampler
    grid = torch.linspace(-1, 1, 2**16 + 1, dtype=torch.float64)
    cdf = dens.cdf(grid)
    i = torch.searchsorted(cdf, q).clamp(1, grid.numel() - 1)
    xq = (grid[i - 1] + (q - cdf[i - 1]) / (cdf[i] - cdf[i - 1]) * (grid[i] - grid[i - 1]))[:, None]
    assert kde_tv(xq, dens, 0.005) < 0.01
    assert kde_tv(torch.zeros(5, 1, dtype=torch.float64), dens, 1e-3) > 0.98     # a spike vs a spread density
    assert kde_tv(xq, dens, 0.005, reflect=True) < kde_tv(xq, dens, 0.2, reflect=False)


def test_reflect_into():
    x = torch.tensor([-1.5, -1.0, 0.3, 1.2, 3.5, -3.2], dtype=torch.float64)
    assert torch.allclose(reflect_into(x), torch.tensor([-0.5, -1.0, 0.3, 0.8, -0.5, 0.8], dtype=torch.float64))


# ---------------------------------------------------------------- ValueErrors
def _x():
    return torch.rand(50, 1, generator=torch.Generator().manual_seed(0))


def _gm(d=1):
    return GaussianMixture(torch.zeros(1, d), 1.0)


def _dens():
    return LacunaryDensity(1.0)


_TRAIN = dict(n_steps=1, batch_size=4, lr=1e-3, quiet=True)

BAD_CALLS = [
    pytest.param(lambda: ou_mean_std(torch.tensor([0.1, 0.0])), r"^t must be finite and > 0", id="ou_mean_std-t-zero"),
    pytest.param(lambda: ou_mean_std(-1.0), r"^t must be finite and > 0", id="ou_mean_std-t-negative"),
    pytest.param(lambda: LacunaryDensity(0.0), r"^s must be ", id="LacunaryDensity-s-zero"),
    pytest.param(lambda: LacunaryDensity(-1.0), r"^s must be ", id="LacunaryDensity-s-negative"),
    pytest.param(lambda: LacunaryDensity(1.0, d=0), r"^d must be ", id="LacunaryDensity-d-zero"),
    pytest.param(lambda: LacunaryDensity(1.0, d=2).cdf(torch.zeros(3, 2)),
                 r"^cdf is defined for d = 1 only; this density has d = 2", id="LacunaryDensity.cdf-d2"),
    pytest.param(lambda: LacunaryDensity(1.0).pdf(torch.zeros(3, 2)), r"^x must have shape", id="LacunaryDensity.pdf-x-shape"),
    pytest.param(lambda: LacunaryDensity(1.0).pdf(torch.tensor([[float("nan")]])), r"^x contains NaN",
                 id="LacunaryDensity.pdf-x-nan"),
    pytest.param(lambda: train_score_model(_x(), 1.0, 0.5, **_TRAIN), r"^t_min must be < t_max",
                 id="train_score_model-t_min-above-t_max"),
    pytest.param(lambda: train_score_model(_x(), 0.0, 0.5, **_TRAIN), r"^t_min must be finite and > 0",
                 id="train_score_model-t_min-zero"),
    pytest.param(lambda: train_score_model(torch.tensor([[0.1], [float("nan")]]), 0.1, 0.5, **_TRAIN),
                 r"^x0\[0\] contains NaN", id="train_score_model-x0-nan"),
    pytest.param(lambda: train_score_model(torch.rand(50), 0.1, 0.5, **_TRAIN), r"^x0\[0\] must be a tensor of shape",
                 id="train_score_model-x0-1d"),
    pytest.param(lambda: train_score_model(_x(), 0.1, 0.5, **{**_TRAIN, "n_steps": 0}), r"^n_steps must be ",
                 id="train_score_model-n_steps-zero"),
    pytest.param(lambda: train_score_model(_x(), 0.1, 0.5, **{**_TRAIN, "lr": -1.0}), r"^lr must be ",
                 id="train_score_model-lr-negative"),
    pytest.param(lambda: train_score_model([_x(), _x()], [0.1, 0.2, 0.3], 0.5, **_TRAIN),
                 r"^t_min must be a number or have one entry per data set", id="train_score_model-t_min-length"),
    pytest.param(lambda: sample(_gm(), 10, 1.0, 1.0, n_steps=5), r"^t_min must be < t_max", id="sample-t_min-equals-t_max"),
    pytest.param(lambda: sample(_gm(), 10, -1.0, 1.0, n_steps=5), r"^t_min must be finite and > 0",
                 id="sample-t_min-negative"),
    pytest.param(lambda: sample(_gm(), 10, 0.1, 1.0, n_steps=0), r"^n_steps must be ", id="sample-n_steps-zero"),
    pytest.param(lambda: sample(_gm(), 0, 0.1, 1.0, n_steps=3), r"^n_samples must be ", id="sample-n_samples-zero"),
    pytest.param(lambda: tv_binned(torch.tensor([[0.0], [1.5]]), _dens(), 10), r"^samples must lie in the support",
                 id="tv_binned-samples-outside"),
    pytest.param(lambda: tv_binned(torch.zeros(3, 1), _dens(), 0), r"^bins must be ", id="tv_binned-bins-zero"),
    pytest.param(lambda: tv_binned(torch.zeros(3, 2), _dens(), 4), r"^samples must have shape", id="tv_binned-samples-shape"),
    pytest.param(lambda: w1_1d(torch.zeros(3, 2), _dens()), r"^samples must have shape", id="w1_1d-samples-shape"),
    pytest.param(lambda: w1_pot(torch.zeros(3, 2), torch.zeros(3, 3)), r"^x and y must have the same dimension",
                 id="w1_pot-dimensions"),
    pytest.param(lambda: w1_pot(torch.tensor([[float("nan")]]), torch.zeros(1, 1)), r"^x contains NaN", id="w1_pot-x-nan"),
    pytest.param(lambda: kde_tv(torch.zeros(3, 1), _dens(), 0.0), r"^bandwidth must be ", id="kde_tv-bandwidth-zero"),
    pytest.param(lambda: kde_tv(torch.tensor([[2.0]]), _dens(), 0.1), r"^x0 must lie in the support", id="kde_tv-x0-outside"),
    pytest.param(lambda: GaussianMixture(torch.zeros(2, 1), 1.0, torch.tensor([0.5, 0.6])), r"^weights must be ",
                 id="GaussianMixture-weights-sum"),
    pytest.param(lambda: GaussianMixture(torch.zeros(2, 1), -1.0), r"^std must be ", id="GaussianMixture-std-negative"),
    pytest.param(lambda: histogram_tv(torch.zeros(3, 1), _dens(), 0), r"^bins must be ", id="histogram_tv-bins-zero"),
    pytest.param(lambda: histogram_tv(torch.tensor([[1.5]]), _dens(), 4), r"^x0 must lie in the support",
                 id="histogram_tv-x0-outside"),
    pytest.param(lambda: histogram_tv(torch.zeros(3, 2), _dens(), 4), r"^x0 must have shape", id="histogram_tv-x0-shape"),
    pytest.param(lambda: histogram_sample(torch.zeros(3, 1), 4, 0), r"^n_samples must be ", id="histogram_sample-n_samples-zero"),
    pytest.param(lambda: histogram_sample(torch.zeros(3), 4, 10), r"^x0 must be a tensor", id="histogram_sample-x0-1d"),
    pytest.param(lambda: sde_density_1d(_gm(d=2), 0.1, 1.0, n_steps=3), r"^score_model must model a 1-D distribution .*got dim = 2",
                 id="sde_density_1d-score_model-2d"),
    pytest.param(lambda: ode_density_1d(_gm(d=2), 0.1, 1.0, n_steps=3), r"^score_model must model a 1-D distribution .*got dim = 2",
                 id="ode_density_1d-score_model-2d"),
    pytest.param(lambda: kde_tv(torch.zeros(4, 3), LacunaryDensity(1.0, d=3), 0.1),
                 r"^density must have dimension d <= 2 .*got density.d = 3", id="kde_tv-density-3d"),
    pytest.param(lambda: histogram_tv(torch.zeros(4, 3), LacunaryDensity(1.0, d=3), 4),
                 r"^density must have dimension d <= 2 .*got density.d = 3", id="histogram_tv-density-3d"),
    pytest.param(lambda: sde_density_1d(_gm(), 1.0, 0.5, n_steps=3), r"^t_min must be < t_max",
                 id="sde_density_1d-t_min-above-t_max"),
    pytest.param(lambda: sde_density_1d(_gm(), 0.1, 1.0, n_steps=0), r"^n_steps must be ", id="sde_density_1d-n_steps-zero"),
    pytest.param(lambda: sde_density_1d(_gm(), 0.1, 1.0, n_steps=3, low=1.0, high=-1.0), r"^need low < high; got low=",
                 id="sde_density_1d-low-above-high"),
    pytest.param(lambda: train_score_model(_x(), 0.1, 0.5, **{**_TRAIN, "check_every": 0}), r"^check_every must be ",
                 id="train_score_model-check_every-zero"),
    pytest.param(lambda: time_grid(0.1, 1.0, 0), r"^n_steps must be ", id="time_grid-n_steps-zero"),
    pytest.param(lambda: ou_time_from_std(1.0), r"^sigma must be ", id="ou_time_from_std-sigma-one"),
    pytest.param(lambda: minimax_times(0, 1.0, 1, 0.7), r"^n must be ", id="minimax_times-n-zero"),
    pytest.param(lambda: minimax_times(100, 1.0, 1, 0.0), r"^bandwidth_const must be ", id="minimax_times-bandwidth_const-zero"),
    pytest.param(lambda: Uniform(1.0, 0.0), r"^need low < high", id="UniformDensity-low-above-high"),
    pytest.param(lambda: LacunaryDensity(1.0).sample(0), r"^n must be ", id="LacunaryDensity.sample-n-zero"),
    pytest.param(lambda: dsm_loss(ScoreNet(1, 1, width=4, n_freq=2, device="cpu"), torch.zeros(1, 2, 1),
                                  torch.zeros(1, 2), torch.zeros(1, 2, 1)), r"^t must be finite and > 0", id="dsm_loss-t-zero"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- the device-and-randomness contract
def test_ou_time_from_std_and_minimax_times():
    for sigma in (1e-4, 0.05, 0.9):
        t = ou_time_from_std(sigma)
        assert abs(float(ou_mean_std(torch.tensor(t, dtype=torch.float64))[1]) - sigma) < 1e-12 * max(1, 1 / sigma)
    h, t_min, t_max = minimax_times(1000, 1.0, 1, 0.7)
    assert abs(h - 0.7 * 1000 ** (-1 / 3)) < 1e-15 and t_min == ou_time_from_std(h)
    assert abs(t_max - math.log(1000) / 3) < 1e-12                       # s/(2s+d) log n > 1 here
    assert minimax_times(10, 0.5, 2, 0.7)[2] == 1.0                       # and floored at 1 for small n


def test_generator_none_is_a_fresh_seed_zero_cpu_generator():
    g0 = lambda: torch.Generator().manual_seed(0)
    dens, gm = LacunaryDensity(1.0), GaussianMixture(torch.tensor([[-0.5], [0.5]], dtype=torch.float64), 0.2)
    assert torch.equal(dens.sample(50), dens.sample(50, g0()))
    assert torch.equal(gm.sample(50), gm.sample(50, g0()))
    assert torch.equal(sample(gm, 40, 0.01, 2.0, n_steps=5), sample(gm, 40, 0.01, 2.0, n_steps=5, generator=g0()))
    x = dens.sample(40, g0())
    assert torch.equal(histogram_sample(x, 4, 30), histogram_sample(x, 4, 30, generator=g0()))
    a, b = ScoreNet(2, 1, width=8, n_freq=2, device="cpu"), ScoreNet(2, 1, width=8, n_freq=2, init_generator=g0(), device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    kw = dict(n_steps=5, batch_size=8, lr=1e-3, width=8, n_freq=2, device="cpu", quiet=True)
    m1, m2 = train_score_model(x.float(), 1e-2, 1.0, **kw), train_score_model(x.float(), 1e-2, 1.0, generator=g0(), **kw)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_sampler_without_generator_draws_fresh_noise_every_step():
    # generator=None is resolved once per call: a sampler that re-seeded at each step would reuse one noise vector
    # per sample for all 100 steps, and its law would miss the target by far more than the Monte-Carlo tolerance
    gm = GaussianMixture(torch.tensor([[-1.0], [0.5]], dtype=torch.float64), 0.3, torch.tensor([0.3, 0.7]))
    target = _mixture_at(gm, 1e-3)
    floor = w1_1d(target.sample(20_000, torch.Generator().manual_seed(3)), target)
    assert w1_1d(sample(gm, 20_000, 1e-3, 4.0, n_steps=100), target) < 2 * floor + 0.01


def test_float64_inputs_and_explicit_generators_everywhere():
    g = torch.Generator().manual_seed(11)
    dens = LacunaryDensity(1.0, seed=2)
    x = dens.sample(300, g, device="cpu")
    assert x.dtype == torch.float64 and x.device.type == "cpu"
    gm = GaussianMixture(x[:20], 0.1)
    assert gm.sample(10, g).dtype == torch.float64 and gm.score(x, 0.1).dtype == torch.float64
    assert gm.score(x.float(), 0.1).dtype == torch.float32                  # keeps the dtype of its input
    assert reflect_into(3 * x).dtype == torch.float64 and float(reflect_into(3 * x).abs().max()) <= 1
    assert 0 < tv_binned(x, dens, 8) < 1 and 0 < kde_tv(x, dens, 0.1) < 1 and 0 < histogram_tv(x, dens, 8) < 1
    assert 0 < w1_1d(x, dens) < 1 and 0 < w1_pot(x[:50], x[50:100]) < 1
    h = histogram_sample(x, 8, 100, generator=g)
    assert h.dtype == torch.float64 and h.shape == (100, 1)
    grid, q = sde_density_1d(gm, 0.01, 2.0, n_steps=5, cells=64)
    assert q.dtype == torch.float64 and float(tv_density_1d(grid, q, dens)[0]) < 1
    grid, q = ode_density_1d(gm, 0.01, 2.0, n_steps=5, grid_size=64, n_start=64)
    assert q.dtype == torch.float64 and abs(float(q.sum() * (grid[1] - grid[0])) - 1) < 1e-9
    y = sample(gm, 30, 0.01, 2.0, n_steps=5, generator=g)
    assert y.dtype == torch.float64 and y.shape == (30, 1)
    assert time_grid(0.01, 1.0, 4, device="cpu").dtype == torch.float64
    u = Uniform()
    assert u.cdf(torch.tensor([[0.0]], dtype=torch.float64)).tolist() == [0.5]
    assert u.pdf(torch.tensor([[2.0], [0.0]], dtype=torch.float64)).tolist() == [0.0, 0.5]


def test_training_keeps_a_loss_history_and_checks_every_window():
    dens = LacunaryDensity(1.0)
    x = dens.sample(200, torch.Generator().manual_seed(0)).float()
    model = train_score_model([x, x[:100]], 1e-3, 1.5, n_steps=200, batch_size=64, lr=3e-3, width=16, n_freq=4,
                              generator=torch.Generator().manual_seed(1), device="cpu", check_every=7, quiet=True)
    hist = model.loss_history
    assert hist.shape == (200, 2) and hist.device.type == "cpu" and bool(torch.isfinite(hist).all())
    assert float(hist[-50:].mean()) < float(hist[:10].mean())            # the loss went down
    bad = torch.tensor([[0.0], [1e39]], dtype=torch.float64)              # inf in float32
    with pytest.raises(DivergenceError, match="score-matching loss"):
        train_score_model(bad, 1e-3, 1.0, n_steps=10, batch_size=8, lr=1e-3, check_every=4, device="cpu", quiet=True)


def test_score_net_without_autograd_is_evaluated_in_chunks_with_the_same_numbers():
    # d = 32 and 2 models: 1072 features per row, so a CPU chunk holds 2^20 // (2 * 1072) = 489 rows and 1000 rows
    # take three chunks; each row's score depends on that row alone, so the chunks must give the one-pass numbers
    # (the sampler and every evaluation run without autograd). Bit for bit on the CPU we ran it on (AMD Zen 4); the
    # tolerance, float32 rounding, leaves room for a BLAS that blocks a shorter matrix differently elsewhere, and
    # is a million times below the error of a misplaced row or time
    net = ScoreNet(2, 32, width=16, n_freq=16, skip=True, init_generator=torch.Generator().manual_seed(3), device="cpu")
    assert net.eval_rows("cpu") == 2**20 // (2 * 1072) and net.eval_rows("cuda") == 2**26 // (2 * 1072)
    with torch.no_grad():
        net.skip_weight.normal_(generator=torch.Generator().manual_seed(4))        # the skip path in play too
    x = torch.randn(2, 1000, 32, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.01, 0.5])
    one_pass = net(x, t)
    assert one_pass.requires_grad                                                    # autograd on: one pass
    with torch.no_grad():
        chunked = net(x, t)
    torch.testing.assert_close(chunked, one_pass.detach(), rtol=1e-6, atol=1e-6)
    assert ScoreNet(100, 32, n_freq=16, device="cpu").eval_rows("cpu") == 64         # never fewer than 64 rows
