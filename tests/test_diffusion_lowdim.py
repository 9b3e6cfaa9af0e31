"""Unit tests of learnthy_nb.diffusion_lowdim (a few seconds)."""
import pytest
import torch

from learnthy_nb.diffusion import GaussianMixture, LacunaryDensity, ou_mean_std
from learnthy_nb.diffusion_lowdim import embed_on_axis, kde_sample, quadrature_score_1d


@pytest.fixture(autouse=True)
def cpu_device(monkeypatch):
    """These are CPU tests (tests/test_cuda_diffusion.py runs the GPU): get_device() is the CPU here."""
    monkeypatch.setenv("LEARNTHY_DEVICE", "cpu")


@pytest.mark.parametrize("t", [1e-4, 1e-2, 0.5, 3.0])
def test_quadrature_score_matches_mixture_closed_form(t):
    gm = GaussianMixture(torch.tensor([[-0.5], [0.2], [0.6]]), 0.08, torch.tensor([0.2, 0.5, 0.3]))
    y = gm.sample(400, torch.Generator().manual_seed(1))
    m, s = (float(v) for v in ou_mean_std(torch.tensor(t, dtype=torch.float64)))
    y = m * y + s * torch.randn(400, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got, want = quadrature_score_1d(gm, y, t, grid_size=4096), gm.score(y, t)
    assert got.shape == (400, 1)
    assert torch.allclose(got, want, atol=1e-7 * (1 + want.abs().max()))


def test_quadrature_score_of_lacunary_density_converges_and_is_bounded():
    dens = LacunaryDensity(0.5)
    t = 1e-3
    m, s = (float(v) for v in ou_mean_std(torch.tensor(t, dtype=torch.float64)))
    y = m * dens.sample(300, torch.Generator().manual_seed(0)) + s * torch.randn(
        300, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # the midpoint rule converges at second order (p_0 jumps to 0 at the ends of the support, so not faster)
    q = {g: quadrature_score_1d(dens, y, t, grid_size=2**g) for g in (12, 13, 16)}
    e12, e13 = (float((q[g] - q[16]).abs().max()) for g in (12, 13))
    assert 3 < e12 / e13 < 5
    assert e13 < 1e-5 * float(q[16].abs().max())
    # score = (m E[x0 | y] - y) / sigma^2 with |x0| <= 1, so |score + y / sigma^2| <= m / sigma^2
    for t in (1e-3, 0.3, 4.0):
        m, s = (float(v) for v in ou_mean_std(torch.tensor(t, dtype=torch.float64)))
        yy = torch.linspace(-3, 3, 101, dtype=torch.float64)
        sc = quadrature_score_1d(dens, yy, t)[:, 0]
        assert bool(((sc + yy / s**2).abs() <= m / s**2 + 1e-9).all())


def test_embed_on_axis():
    u = torch.tensor([0.5, -0.25])
    x = embed_on_axis(u, 3)
    assert x.tolist() == [[0.5, 0.0, 0.0], [-0.25, 0.0, 0.0]]
    assert embed_on_axis(u[:, None], 1).shape == (2, 1)
    assert embed_on_axis(u[:, None], 1).tolist() == [[0.5], [-0.25]]       # dim = 1: the data themselves
    v = torch.randn(7, generator=torch.Generator().manual_seed(0))
    xv = embed_on_axis(v, 5)
    assert torch.equal(xv[:, 0], v) and not bool(xv[:, 1:].any())          # on the first axis, zeros elsewhere


def test_kde_sample_moments_reflection_and_generator():
    g = torch.Generator().manual_seed(3)
    x = torch.tensor([[-0.5, 0.0], [0.25, 1.0], [0.5, -1.0]], dtype=torch.float64)
    y = kde_sample(x, 0.1, 60_000, generator=g)
    assert y.shape == (60_000, 2) and y.dtype == torch.float64
    # a KDE draw is a training point plus h z: mean = mean of x, variance = variance of x (1/n) + h^2;
    # standard errors of the moments at M = 60000 are below 0.005
    assert torch.allclose(y.mean(0), x.mean(0), atol=0.01)
    assert torch.allclose(y.var(0), x.var(0, unbiased=False) + 0.01, atol=0.02)
    r = kde_sample(x, 0.3, 5000, generator=g, reflect=(-1.0, 1.0))
    assert bool((r.abs() <= 1).all())
    # the same generator state gives the same draws; generator=None is a fresh CPU generator seeded 0
    assert torch.equal(kde_sample(x, 0.1, 10, generator=torch.Generator().manual_seed(4)),
                       kde_sample(x, 0.1, 10, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(kde_sample(x, 0.1, 10), kde_sample(x, 0.1, 10, generator=torch.Generator().manual_seed(0)))
    assert kde_sample(x.float(), 0.1, 5, generator=g).dtype == torch.float64


def test_quadrature_score_keeps_the_device_and_float64():
    gm = GaussianMixture(torch.tensor([[-0.3], [0.4]], dtype=torch.float64), 0.1)
    y = gm.sample(50, torch.Generator().manual_seed(0), device="cpu")
    out = quadrature_score_1d(gm, y.float(), 0.1)
    assert out.dtype == torch.float64 and out.device == y.device


BAD_CALLS = [
    pytest.param(lambda: quadrature_score_1d(LacunaryDensity(1.0, d=2), torch.zeros(3), 0.1),
                 r"^quadrature_score_1d needs a 1-D density; got d = 2", id="quadrature_score_1d-density-2d"),
    pytest.param(lambda: quadrature_score_1d(LacunaryDensity(1.0), torch.zeros(3, 2), 0.1), r"^y must be a tensor",
                 id="quadrature_score_1d-y-shape"),
    pytest.param(lambda: quadrature_score_1d(LacunaryDensity(1.0), torch.tensor([float("nan")]), 0.1), r"^y contains NaN",
                 id="quadrature_score_1d-y-nan"),
    pytest.param(lambda: quadrature_score_1d(LacunaryDensity(1.0), torch.zeros(3), 0.0), r"^t must be finite and > 0",
                 id="quadrature_score_1d-t-zero"),
    pytest.param(lambda: quadrature_score_1d(LacunaryDensity(1.0), torch.zeros(3), 0.1, grid_size=4), r"^grid_size must be ",
                 id="quadrature_score_1d-grid_size-small"),
    pytest.param(lambda: embed_on_axis(torch.zeros(3), 0), r"^dim must be ", id="embed_on_axis-dim-zero"),
    pytest.param(lambda: embed_on_axis(torch.zeros(3, 2), 4), r"^u must be a tensor", id="embed_on_axis-u-shape"),
    pytest.param(lambda: embed_on_axis(torch.tensor([float("inf")]), 4), r"^u contains NaN", id="embed_on_axis-u-inf"),
    pytest.param(lambda: kde_sample(torch.zeros(3, 1), 0.0, 10), r"^bandwidth must be ", id="kde_sample-bandwidth-zero"),
    pytest.param(lambda: kde_sample(torch.zeros(3, 1), 0.1, 0), r"^n_samples must be ", id="kde_sample-n_samples-zero"),
    pytest.param(lambda: kde_sample(torch.zeros(3), 0.1, 10), r"^x must be a tensor of shape", id="kde_sample-x-1d"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_matched_bandwidth_starts_at_the_intrinsic_rule_and_shrinks_at_the_ambient_rate():
    from learnthy_nb.diffusion_lowdim import matched_bandwidth
    from learnthy_nb.diffusion import minimax_times
    for n in (300, 1000, 10_000):
        assert abs(matched_bandwidth(n, n, 0.5, 1, 1, 0.7) - minimax_times(n, 0.5, 1, 0.7)[0]) < 1e-12
    h = [matched_bandwidth(n, 300, 0.5, 32, 1, 0.7) for n in (300, 3000, 30_000)]
    assert abs(h[0] - minimax_times(300, 0.5, 1, 0.7)[0]) < 1e-12
    assert abs(h[1] / h[0] - 10 ** (-1 / 33)) < 1e-12 and abs(h[2] / h[1] - 10 ** (-1 / 33)) < 1e-12
    for kw, name in ((dict(n=0), "n"), (dict(s=0.0), "s"), (dict(dim=0), "dim"), (dict(const=-1.0), "const")):
        args = {**dict(n=100, n0=100, s=0.5, dim=2, dim0=1, const=0.7), **kw}
        with pytest.raises(ValueError, match=name):
            matched_bandwidth(**args)
