"""Unit tests of the background chapters' modules: learnthy_nb.bg_besov (periodic wavelet transform, level norms),
learnthy_nb.bg_sde (Euler-Maruyama by sampling and by exact propagation of its 1-D law) and learnthy_nb.bg_wgf (the
reversible jump chain of a 1-D Fokker-Planck equation, its numerical log-Sobolev constant)."""
import math

import numpy as np
import pytest
import torch
from scipy.linalg import eigh_tridiagonal

from learnthy_nb.bg_besov import WAVELET_FILTERS, WAVELET_MOMENTS, level_norms, periodic_dwt
from learnthy_nb.bg_sde import euler_maruyama, euler_maruyama_law_1d
from learnthy_nb.bg_wgf import langevin_chain_1d, log_sobolev_constant_1d
from learnthy_nb.core import DivergenceError

F64 = torch.float64
WAVELETS = sorted(WAVELET_FILTERS)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _highpass(wavelet):
    """g_n = (-1)^n h_{L-1-n}, the high-pass filter the docstring of periodic_dwt defines."""
    h = torch.tensor(WAVELET_FILTERS[wavelet], dtype=F64)
    return h.flip(0) * (-1.0) ** torch.arange(h.numel(), dtype=F64)


def _dwt_matrix(n, wavelet, levels=None):
    """The transform as a matrix: row i = all coefficients (approximation then details, coarsest first) of e_i."""
    a, details = periodic_dwt(torch.eye(n, dtype=F64), wavelet, levels)
    return torch.cat([a, *details], -1)


# ---------------------------------------------------------------- WAVELET_FILTERS / WAVELET_MOMENTS
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_filters_are_orthonormal_lowpass(wavelet):
    h = torch.tensor(WAVELET_FILTERS[wavelet], dtype=F64)
    assert float(h.sum()) == pytest.approx(math.sqrt(2), abs=1e-14)            # low-pass: H(0) = sqrt 2
    assert float(h.square().sum()) == pytest.approx(1.0, abs=1e-14)
    for shift in range(2, h.numel(), 2):                                       # orthogonal to its even shifts
        assert float((h[:-shift] * h[shift:]).sum()) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_highpass_filter_has_exactly_the_stated_vanishing_moments(wavelet):
    g, R = _highpass(wavelet), WAVELET_MOMENTS[wavelet]
    n = torch.arange(g.numel(), dtype=F64)
    for k in range(R):
        assert abs(float((g * n**k).sum())) < 1e-14, k
    assert abs(float((g * n**R).sum())) > 0.1                                   # and not one more


def test_moments_and_filters_describe_the_same_wavelets():
    assert set(WAVELET_FILTERS) == set(WAVELET_MOMENTS) == {"haar", "db2"}
    assert WAVELET_MOMENTS == {"haar": 1, "db2": 2}
    assert all(len(WAVELET_FILTERS[w]) == 2 * WAVELET_MOMENTS[w] for w in WAVELETS)   # Daubechies: L = 2R


# ---------------------------------------------------------------- periodic_dwt
@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("n,levels", [(16, None), (16, 2), (32, 1), (8, 3)])
def test_dwt_is_an_orthogonal_map(wavelet, n, levels):
    W = _dwt_matrix(n, wavelet, levels)
    assert W.shape == (n, n)
    torch.testing.assert_close(W @ W.T, torch.eye(n, dtype=F64), atol=1e-13, rtol=0)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_dwt_preserves_norms_and_inner_products(wavelet):
    v = torch.randn(3, 2**9, generator=_gen(1), dtype=F64)
    a, details = periodic_dwt(v, wavelet)
    coeffs = torch.cat([a, *details], -1)
    torch.testing.assert_close(coeffs.square().sum(-1), v.square().sum(-1), rtol=1e-12, atol=0)
    torch.testing.assert_close(coeffs @ coeffs.T, v @ v.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("levels", [None, 1, 3])
def test_dwt_shapes_dtype_and_batch(wavelet, levels):
    J = 5
    v = torch.randn(2, 3, 2**J, generator=_gen(2), dtype=F64)
    a, details = periodic_dwt(v, wavelet, levels)
    k = J if levels is None else levels
    assert a.shape == (2, 3, 2 ** (J - k)) and a.dtype == F64
    assert [d.shape for d in details] == [(2, 3, 2 ** (J - k + i)) for i in range(k)]
    assert all(d.dtype == F64 for d in details)
    a1, d1 = periodic_dwt(v[1, 2], wavelet, levels)                              # batch rows are independent
    torch.testing.assert_close(a[1, 2], a1, rtol=0, atol=0)
    for d, e in zip(details, d1):
        torch.testing.assert_close(d[1, 2], e, rtol=0, atol=0)


def test_dwt_keeps_float32_and_agrees_with_float64():
    v = torch.randn(64, generator=_gen(3), dtype=F64)
    a32, d32 = periodic_dwt(v.float())
    a64, d64 = periodic_dwt(v)
    assert a32.dtype == torch.float32 and all(d.dtype == torch.float32 for d in d32)
    torch.testing.assert_close(a32.double(), a64, rtol=0, atol=1e-5)
    for d, e in zip(d32, d64):
        torch.testing.assert_close(d.double(), e, rtol=0, atol=1e-5)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_dwt_of_a_constant(wavelet):
    # each step multiplies a constant's approximation by sum h = sqrt 2 and its detail by sum g = 0
    J, c = 6, 1.7
    a, details = periodic_dwt(torch.full((2**J,), c, dtype=F64), wavelet)
    torch.testing.assert_close(a, torch.tensor([c * 2 ** (J / 2)], dtype=F64), rtol=1e-13, atol=0)
    assert max(float(d.abs().max()) for d in details) < 1e-12


def test_haar_closed_form_is_normalised_half_block_differences():
    J = 4
    v = torch.randn(2**J, generator=_gen(4), dtype=F64)
    a, details = periodic_dwt(v, "haar")
    assert float(a) == pytest.approx(float(v.sum()) / 2 ** (J / 2), rel=1e-12)
    for j, d in enumerate(details):                                             # level j: 2^j blocks of 2^{J-j}
        blocks = v.reshape(2**j, 2 ** (J - j))
        half = blocks.shape[1] // 2
        expected = (blocks[:, :half].sum(1) - blocks[:, half:].sum(1)) / math.sqrt(blocks.shape[1])
        torch.testing.assert_close(d, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_polynomials_below_the_moment_order_have_no_detail(wavelet):
    # away from the wrap-around (the last coefficient), a polynomial sequence of degree < R has zero detail and
    # n^R has the constant detail sum_n g_n n^R
    R, g = WAVELET_MOMENTS[wavelet], _highpass(wavelet)
    n = torch.arange(2**7, dtype=F64)
    for degree in range(R):
        _, (d,) = periodic_dwt(2.0 + (n / 10) ** degree, wavelet, levels=1)
        assert float(d[:-1].abs().max()) < 1e-10, degree
    _, (d,) = periodic_dwt(n**R, wavelet, levels=1)
    m = torch.arange(g.numel(), dtype=F64)
    torch.testing.assert_close(d[:-1], torch.full_like(d[:-1], float((g * m**R).sum())), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_dwt_is_shift_equivariant_by_two(wavelet):
    # periodic: shifting the input by 2^k shifts the coefficients of level J - k + i by 2^i (i < k)
    v = torch.randn(32, generator=_gen(5), dtype=F64)
    _, d = periodic_dwt(v, wavelet, levels=1)
    _, d_shift = periodic_dwt(torch.roll(v, -2), wavelet, levels=1)
    torch.testing.assert_close(d_shift[0], torch.roll(d[0], -1), rtol=0, atol=1e-13)
    _, d = periodic_dwt(v, wavelet, levels=3)
    _, d_shift = periodic_dwt(torch.roll(v, -8), wavelet, levels=3)
    for i, (e, f) in enumerate(zip(d, d_shift)):                                # level J-3+i moves by 2^i
        torch.testing.assert_close(f, torch.roll(e, -(2**i)), rtol=0, atol=1e-13)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_partial_transforms_compose(wavelet):
    v = torch.randn(2, 64, generator=_gen(6), dtype=F64)
    a_full, d_full = periodic_dwt(v, wavelet)
    a2, d2 = periodic_dwt(v, wavelet, levels=2)
    a_rest, d_rest = periodic_dwt(a2, wavelet)                                   # the remaining 4 levels
    torch.testing.assert_close(a_rest, a_full, rtol=0, atol=1e-13)
    for e, f in zip(d_rest + d2, d_full):
        torch.testing.assert_close(e, f, rtol=0, atol=1e-13)
    a_j, d_j = periodic_dwt(v, wavelet, levels=6)                               # levels = J is the default
    torch.testing.assert_close(a_j, a_full, rtol=0, atol=0)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_smooth_function_details_decay_at_rate_of_the_moments(wavelet):
    # for a smooth periodic f, sup_k |beta_jk| ~ 2^{-j (R + 1/2)}: R vanishing moments
    J = 11
    x = torch.arange(2**J, dtype=F64) / 2**J
    _, details = periodic_dwt(2 ** (-J / 2) * torch.sin(2 * math.pi * x), wavelet)
    norms = level_norms(details)
    ratios = norms[5:-1] / norms[6:]
    target = 2 ** (WAVELET_MOMENTS[wavelet] + 0.5)
    assert float((ratios / target - 1).abs().max()) < 0.01, ratios


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(wavelet="db9"), r"^wavelet", id="wavelet-unknown"),
    pytest.param(dict(values=torch.arange(8)), r"^values", id="values-integer"),
    pytest.param(dict(values=[0.0] * 8), r"^values", id="values-list"),
    pytest.param(dict(values=torch.tensor(1.0)), r"^values", id="values-0d"),
    pytest.param(dict(values=torch.zeros(6)), r"^values", id="values-not-power-of-two"),
    pytest.param(dict(values=torch.zeros(1)), r"^values", id="values-length-one"),
    pytest.param(dict(levels=0), r"^levels", id="levels-zero"),
    pytest.param(dict(levels=4), r"^levels", id="levels-above-J"),
    pytest.param(dict(levels=1.5), r"^levels", id="levels-fractional"),
    pytest.param(dict(levels=True), r"^levels", id="levels-bool"),
])
def test_dwt_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        periodic_dwt(**{"values": torch.zeros(8), **kwargs})


# ---------------------------------------------------------------- level_norms
def test_level_norms_closed_forms():
    details = [torch.tensor([3.0, -4.0]), torch.tensor([0.0, 1.0, -2.0, 2.0])]
    torch.testing.assert_close(level_norms(details), torch.tensor([4.0, 2.0], dtype=F64))
    torch.testing.assert_close(level_norms(details, 1), torch.tensor([7.0, 5.0], dtype=F64))
    torch.testing.assert_close(level_norms(details, 2), torch.tensor([5.0, 3.0], dtype=F64))
    torch.testing.assert_close(level_norms(details, 3), torch.tensor([91.0 ** (1 / 3), 17.0 ** (1 / 3)], dtype=F64))


def test_level_norms_are_float64_batched_and_decrease_in_p():
    _, details = periodic_dwt(torch.randn(2, 3, 32, generator=_gen(7)))            # float32 input
    norms = {p: level_norms(details, p) for p in (1, 1.5, 2, 4, math.inf)}
    assert all(v.dtype == F64 and v.shape == (2, 3, 5) for v in norms.values())
    ps = sorted(norms)
    for p, q in zip(ps, ps[1:]):                                                      # ||.||_q <= ||.||_p, p < q
        assert bool((norms[q] <= norms[p] * (1 + 1e-6)).all()), (p, q)
    # l^p -> l^inf as p grows; the finest level has 2^4 entries: ||.||_p <= 16^{1/p} ||.||_inf
    assert bool((norms[4] <= 16 ** 0.25 * norms[math.inf] * (1 + 1e-6)).all())
    torch.testing.assert_close(level_norms([d.double() for d in details], 200.0), norms[math.inf], rtol=0.02, atol=0)


@pytest.mark.parametrize("details,p", [
    pytest.param([torch.tensor([1e-5, 2e-5])], 10.0, id="float32-small-coefficients"),
    pytest.param([torch.tensor([1e3, 2e3])], 20.0, id="float32-large-coefficients"),
    pytest.param([torch.tensor([1e-3, 2e-3], dtype=F64)], 150.0, id="float64-large-p"),
])
def test_level_norms_do_not_under_or_overflow(details, p):
    d = details[0].double()
    expected = float(d.abs().max()) * float(((d.abs() / d.abs().max()) ** p).sum() ** (1 / p))
    assert float(level_norms(details, p)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("p", [0.5, 0, -1, float("nan"), -math.inf,
                               pytest.param("abc", id="string"),
                               pytest.param(None, id="None")])
def test_level_norms_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"^p must be"):
        level_norms([torch.ones(2)], p)


# ---------------------------------------------------------------- euler_maruyama
def _ou(a=1.0, b=0.0):
    return lambda x, t: -a * x + b


def _em_moments(x0, a, b, sigma, times):
    """Exact mean and variance of the EM chain for the linear drift -a x + b (Gaussian recursion)."""
    m, v = float(x0), 0.0
    for h in torch.as_tensor(times, dtype=F64).diff().tolist():
        m, v = (1 - a * h) * m + b * h, (1 - a * h) ** 2 * v + sigma**2 * h
    return m, v


def test_em_is_deterministic_given_the_generator():
    times = torch.linspace(0, 1, 11)
    x0 = torch.zeros(50, 2, dtype=F64)
    run = lambda gen: euler_maruyama(_ou(), x0, times, generator=gen)             # noqa: E731
    assert torch.equal(run(_gen(3)), run(_gen(3)))
    assert not torch.equal(run(_gen(3)), run(_gen(4)))
    assert torch.equal(run(None), run(_gen(0)))                                   # None: a fresh generator seeded 0
    g = _gen(3)
    first, second = run(g), run(g)                                                # the generator's state advances
    assert not torch.equal(first, second)


def test_em_keeps_shape_dtype_and_does_not_modify_x0():
    for dtype in (torch.float32, F64):
        x0 = torch.randn(4, 3, 2, generator=_gen(1), dtype=dtype)
        before = x0.clone()
        x = euler_maruyama(_ou(), x0, torch.linspace(0, 0.5, 6), generator=_gen(2))
        assert x.shape == x0.shape and x.dtype == dtype
        assert torch.equal(x0, before)


def test_em_without_noise_is_the_explicit_euler_scheme():
    times = torch.tensor([0.0, 0.1, 0.25, 0.6, 1.0], dtype=F64)                   # a non-uniform grid
    h = times.diff()
    x0 = torch.tensor([[1.0], [-2.0]], dtype=F64)
    x = euler_maruyama(_ou(0.8), x0, times, diffusion=0.0)
    torch.testing.assert_close(x, x0 * float(torch.prod(1 - 0.8 * h)), rtol=1e-14, atol=0)
    # the drift is evaluated at the left end t_k of each step: x_N = x0 + sum_k h_k t_k for drift t
    x = euler_maruyama(lambda x, t: torch.full_like(x, t), torch.zeros(1, 1, dtype=F64), times, diffusion=0.0)
    assert float(x) == pytest.approx(float((h * times[:-1]).sum()), abs=1e-14)


def test_em_noise_enters_linearly_for_a_linear_drift():
    # with the same generator, the noise cancels in differences of starting points and scales with the diffusion
    times = torch.linspace(0, 1, 21, dtype=F64)
    a, prod = 1.3, float(torch.prod(1 - 1.3 * times.diff()))
    x0, y0 = torch.full((20, 1), 2.0, dtype=F64), torch.full((20, 1), -1.0, dtype=F64)
    x = euler_maruyama(_ou(a), x0, times, generator=_gen(5))
    y = euler_maruyama(_ou(a), y0, times, generator=_gen(5))
    torch.testing.assert_close(x - y, (x0 - y0) * prod, rtol=1e-12, atol=1e-12)
    noise = [euler_maruyama(_ou(a), x0, times, diffusion=s, generator=_gen(5)) - x0 * prod for s in (0.5, 1.5)]
    torch.testing.assert_close(noise[1], 3 * noise[0], rtol=1e-12, atol=1e-12)


def test_em_matches_the_exact_law_of_the_chain_for_a_linear_drift():
    # X_N is Gaussian with the mean and variance of the EM recursion (not the SDE's): a coarse grid shows the
    # difference, e.g. the OU variance 1 - e^{-2} = 0.865 vs the chain's 0.905 here
    a, b, sigma, n = 1.0, 0.5, math.sqrt(2.0), 100_000
    times = torch.tensor([0.0, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    x = euler_maruyama(_ou(a, b), torch.full((n, 1), 1.0, dtype=F64), times, diffusion=sigma, generator=_gen(6))
    m, v = _em_moments(1.0, a, b, sigma, times)
    assert abs(float(x.mean()) - m) < 5 * math.sqrt(v / n)
    assert abs(float(x.var()) - v) < 5 * v * math.sqrt(2 / n)
    standardised = ((x - m) / math.sqrt(v)).squeeze(1)                             # Gaussian: 4th moment 3
    assert abs(float(standardised.pow(4).mean()) - 3) < 5 * math.sqrt(96 / n)
    assert abs(v - (1 - math.exp(-2))) > 0.03                                      # the test can tell them apart


def test_em_raises_divergence_error_when_it_blows_up():
    with pytest.raises(DivergenceError, match="Euler-Maruyama iterate"):
        euler_maruyama(lambda x, t: x**3, torch.full((2, 1), 1e3), torch.linspace(0, 1, 6), generator=_gen(0))


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(x0=torch.zeros(3, 1, dtype=torch.long)), r"^x0", id="x0-integer"),
    pytest.param(dict(x0=[[0.0]]), r"^x0", id="x0-list"),
    pytest.param(dict(times=torch.tensor([0.0, 0.0])), r"^times", id="times-constant"),
    pytest.param(dict(times=torch.tensor([1.0, 0.5, 0.0])), r"^times", id="times-decreasing"),
    pytest.param(dict(times=torch.tensor([0.0])), r"^times", id="times-one-point"),
    pytest.param(dict(times=torch.zeros(2, 2)), r"^times", id="times-2d"),
    pytest.param(dict(diffusion=-1.0), r"^diffusion", id="diffusion-negative"),
    pytest.param(dict(diffusion=float("nan")), r"^diffusion", id="diffusion-nan"),
    pytest.param(dict(generator=0), r"^generator", id="generator-int"),
])
def test_em_rejects_bad_arguments(kwargs, match):
    args = {"x0": torch.zeros(3, 1), "times": torch.linspace(0, 1, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        euler_maruyama(_ou(), **args)


# ---------------------------------------------------------------- euler_maruyama_law_1d
GRID = torch.linspace(-8, 8, 801, dtype=F64)


def _moments(mass, grid=GRID):
    m = (mass * grid).sum(-1)
    return m, (mass * (grid - m[..., None]) ** 2).sum(-1)


def _gauss_mass(mean, var, grid=GRID):
    w = torch.exp(-0.5 * (grid - mean) ** 2 / var)
    return w / w.sum()


@pytest.mark.parametrize("a,b,sigma", [(1.0, 0.0, math.sqrt(2.0)), (0.5, 1.0, 0.7), (2.0, -0.5, 1.2)])
def test_law_follows_the_em_moment_recursion_for_a_linear_drift(a, b, sigma):
    times = torch.tensor([0.0, 0.05, 0.15, 0.3, 0.5, 0.6, 0.8, 1.0], dtype=F64)     # non-uniform
    mass0 = _gauss_mass(0.5, 0.3)
    mass = euler_maruyama_law_1d(_ou(a, b), GRID, mass0, times, diffusion=sigma)
    m0, v0 = _moments(mass0)
    m, v = float(m0), float(v0)
    for h in times.diff().tolist():
        m, v = (1 - a * h) * m + b * h, (1 - a * h) ** 2 * v + sigma**2 * h
    mt, vt = _moments(mass)
    assert float(mt) == pytest.approx(m, abs=1e-8) and float(vt) == pytest.approx(v, abs=1e-8)
    torch.testing.assert_close(mass, _gauss_mass(m, v), rtol=0, atol=1e-9)        # and it stays Gaussian


def test_law_conserves_mass_and_positivity_and_batches():
    mass0 = torch.stack([_gauss_mass(-1.0, 0.2), _gauss_mass(2.0, 0.5), 3 * _gauss_mass(0.0, 1.0)])
    drift = lambda x, t: -(x**3) + math.sin(3 * t)                               # noqa: E731
    times = torch.linspace(0, 0.5, 11)
    mass = euler_maruyama_law_1d(drift, GRID, mass0, times)
    assert mass.shape == (3, GRID.numel()) and mass.dtype == F64
    torch.testing.assert_close(mass.sum(-1), mass0.sum(-1), rtol=1e-12, atol=0)
    assert bool((mass >= 0).all())
    for i in range(3):                                                             # rows are independent
        torch.testing.assert_close(mass[i], euler_maruyama_law_1d(drift, GRID, mass0[i], times), rtol=1e-12, atol=0)


def test_law_of_a_point_mass_moved_by_a_time_dependent_drift():
    # drift t: the mean moves by the left Riemann sum sum_k h_k t_k, the variance grows by sigma^2 t_N
    times = torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=F64)
    mass0 = torch.zeros_like(GRID)
    mass0[400] = 1.0                                                               # an atom at 0
    mass = euler_maruyama_law_1d(lambda x, t: torch.full_like(x, t), GRID, mass0, times, diffusion=1.0)
    m, v = _moments(mass)
    assert float(m) == pytest.approx(float((times.diff() * times[:-1]).sum()), abs=1e-9)
    assert float(v) == pytest.approx(1.0, abs=1e-9)


def test_law_agrees_with_sampling_for_a_nonlinear_drift():
    drift = lambda x, t: x - x**3                                                  # noqa: E731  double well
    times = torch.linspace(0, 1, 21, dtype=F64)
    mass0 = torch.zeros_like(GRID)
    mass0[420] = 1.0                                                               # an atom at 0.4
    law = euler_maruyama_law_1d(drift, GRID, mass0, times, diffusion=0.8)
    n = 40_000
    x = euler_maruyama(drift, torch.full((n, 1), float(GRID[420]), dtype=F64), times, diffusion=0.8, generator=_gen(8))
    m, v = _moments(law)
    assert abs(float(x.mean()) - float(m)) < 5 * math.sqrt(float(v) / n)
    assert abs(float(x.var()) - float(v)) < 0.05 * float(v)
    p_right = float(law[GRID > 0].sum())                                            # mass in the right well
    assert abs(float((x > 0).double().mean()) - p_right) < 5 * math.sqrt(p_right * (1 - p_right) / n)


def test_law_accepts_lists_and_float32():
    grid, mass = GRID[::10].float(), _gauss_mass(0.0, 1.0, GRID[::10]).float()
    out = euler_maruyama_law_1d(_ou(), grid, mass, [0.0, 0.1, 0.2])
    ref = euler_maruyama_law_1d(_ou(), grid.double(), mass.double(), torch.tensor([0.0, 0.1, 0.2], dtype=F64))
    assert out.dtype == F64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-7)


def test_law_raises_divergence_error_on_non_finite_mass():
    mass0 = _gauss_mass(0.0, 1.0).clone()
    mass0[0] = float("nan")
    with pytest.raises(DivergenceError, match="Euler-Maruyama law"):
        euler_maruyama_law_1d(_ou(), GRID, mass0, torch.linspace(0, 0.1, 3))


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(grid=torch.zeros(2, 5)), r"^grid", id="grid-2d"),
    pytest.param(dict(grid=torch.linspace(0, 1, 2), mass=torch.ones(2) / 2), r"^grid", id="grid-two-points"),
    pytest.param(dict(grid=torch.tensor([0.0, 2.0, 1.0, 3.0, 4.0])), r"^grid", id="grid-not-increasing"),
    pytest.param(dict(mass=torch.ones(4) / 4), r"^mass", id="mass-wrong-length"),
    pytest.param(dict(mass=torch.tensor([0.5, 0.7, -0.2, 0.0, 0.0])), r"^mass", id="mass-negative"),
    pytest.param(dict(times=torch.tensor([0.0, 0.0])), r"^times", id="times-constant"),
    pytest.param(dict(times=torch.tensor([0.0])), r"^times", id="times-one-point"),
    pytest.param(dict(diffusion=0.0), r"^diffusion", id="diffusion-zero"),
    pytest.param(dict(diffusion=-1.0), r"^diffusion", id="diffusion-negative"),
    pytest.param(dict(diffusion=math.inf), r"^diffusion", id="diffusion-inf"),
])
def test_law_rejects_bad_arguments(kwargs, match):
    args = {"grid": torch.linspace(-1, 1, 5), "mass": torch.ones(5) / 5, "times": torch.linspace(0, 1, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        euler_maruyama_law_1d(_ou(), **args)


# ---------------------------------------------------------------- langevin_chain_1d
def _generator_matrix(up, down):
    """The rate matrix Q [G, G] of the birth-death chain: Q[g, g+1] = up_g, Q[g+1, g] = down_g, rows sum to 0."""
    Q = np.diag(up, 1) + np.diag(down, -1)
    return Q - np.diag(Q.sum(1))


def _spectral_gap(up, down):
    ev = eigh_tridiagonal(-(np.r_[up, 0] + np.r_[0, down]), np.sqrt(up * down), eigvals_only=True)
    return -np.sort(ev)[-2]


@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5])
def test_chain_is_reversible_with_the_gibbs_law(lam):
    x = np.linspace(-3, 3, 61)
    V = x**4 / 4 - x**2 + 0.3 * x
    pi, up, down = langevin_chain_1d(torch.tensor(V), float(x[1] - x[0]), lam)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in (pi, up, down))
    assert pi.shape == (61,) and up.shape == down.shape == (60,)
    gibbs = np.exp(-(V - V.min()) / lam)
    np.testing.assert_allclose(pi, gibbs / gibbs.sum(), rtol=1e-12)
    np.testing.assert_allclose(pi[:-1] * up, pi[1:] * down, rtol=1e-12)          # detailed balance
    Q = _generator_matrix(up, down)
    np.testing.assert_allclose(pi @ Q, 0, atol=1e-12 * np.abs(Q).max())         # pi is stationary
    np.testing.assert_allclose(up * down, (lam / (x[1] - x[0]) ** 2) ** 2, rtol=1e-12)


def test_chain_converges_to_its_stationary_law():
    from scipy.linalg import expm
    x = np.linspace(-2, 2, 21)
    pi, up, down = langevin_chain_1d(torch.tensor((x**2 - 1) ** 2), float(x[1] - x[0]))
    start = np.zeros(21)
    start[0] = 1.0
    law = start @ expm(80.0 * _generator_matrix(up, down))
    np.testing.assert_allclose(law, pi, atol=1e-10)


def test_chain_of_a_flat_potential_is_the_symmetric_random_walk():
    pi, up, down = langevin_chain_1d(torch.zeros(5), 0.5, lam=2.0)
    np.testing.assert_allclose(pi, np.full(5, 0.2), rtol=1e-15)
    np.testing.assert_allclose(up, np.full(4, 8.0), rtol=1e-15)                  # lam / delta^2
    np.testing.assert_allclose(down, np.full(4, 8.0), rtol=1e-15)


def test_chain_ignores_constants_in_the_potential_and_accepts_other_inputs():
    V = torch.linspace(-1, 1, 9, dtype=F64) ** 2
    ref = langevin_chain_1d(V, 0.25)
    for other, rtol in ((V + 100.0, 1e-12), (V.tolist(), 0), (V.numpy(), 0), (V.clone().requires_grad_(), 0),
                        (V.float(), 1e-6)):
        for r, o in zip(ref, langevin_chain_1d(other, 0.25)):
            assert o.dtype == np.float64
            np.testing.assert_allclose(o, r, rtol=rtol)


@pytest.mark.parametrize("k,lam", [(1.0, 1.0), (4.0, 0.5)])
def test_chain_spectral_gap_of_a_gaussian_is_its_curvature(k, lam):
    # V = k x^2 / 2 at temperature lam: pi = N(0, lam / k), Fokker-Planck spectral gap k (independent of lam)
    s = math.sqrt(lam / k)
    x = np.linspace(-7 * s, 7 * s, 281)
    _, up, down = langevin_chain_1d(torch.tensor(k * x**2 / 2), float(x[1] - x[0]), lam)
    assert _spectral_gap(up, down) == pytest.approx(k, rel=5e-3)


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(potential=torch.zeros(2)), r"^potential", id="potential-two-points"),
    pytest.param(dict(potential=torch.zeros(3, 3)), r"^potential", id="potential-2d"),
    pytest.param(dict(potential=torch.tensor([0.0, math.inf, 0.0])), r"^potential", id="potential-inf"),
    pytest.param(dict(potential=torch.tensor([0.0, math.nan, 0.0])), r"^potential", id="potential-nan"),
    pytest.param(dict(spacing=0.0), r"^spacing", id="spacing-zero"),
    pytest.param(dict(spacing=-0.1), r"^spacing", id="spacing-negative"),
    pytest.param(dict(spacing=math.nan), r"^spacing", id="spacing-nan"),
    pytest.param(dict(lam=0.0), r"^lam", id="lam-zero"),
    pytest.param(dict(lam=-1.0), r"^lam", id="lam-negative"),
    pytest.param(dict(lam="1"), r"^lam", id="lam-string"),
])
def test_chain_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        langevin_chain_1d(**{"potential": torch.zeros(5), "spacing": 0.1, **kwargs})


# ---------------------------------------------------------------- log_sobolev_constant_1d
def _ratio(pi, up, u):
    """2 E(f, f) / Ent_pi(f^2) at f = exp(u), written out independently of the module."""
    f = np.exp(u)
    f2 = f * f
    ent = (pi * f2 * np.log(f2 / (pi * f2).sum())).sum()
    return 2 * (pi[:-1] * up * np.diff(f) ** 2).sum() / ent


@pytest.mark.parametrize("k,lam", [(2.0, 1.0), (1.0, 0.5)])
def test_lsi_constant_of_a_gaussian_is_its_curvature(k, lam):
    # Gross / Bakry-Emery: N(0, lam / k) under the generator of dX = -k X dt + sqrt(2 lam) dB has alpha = k, attained
    # along f = e^{c x}
    s = math.sqrt(lam / k)
    x = np.linspace(-7 * s, 7 * s, 281)
    pi, up, _ = langevin_chain_1d(torch.tensor(k * x**2 / 2), float(x[1] - x[0]), lam)
    alpha = log_sobolev_constant_1d(pi, up, [0.3 * x / s, np.tanh(x / s)])
    assert alpha == pytest.approx(k, rel=2e-3)


def test_lsi_constant_of_the_symmetric_two_point_chain():
    # uniform pi on two points, jump rate r: alpha = 2 r (Gross), equal to the spectral gap
    alpha = log_sobolev_constant_1d(np.array([0.5, 0.5]), np.array([3.0]), [np.array([0.1, -0.1])])
    assert alpha == pytest.approx(6.0, rel=1e-6)


def test_lsi_constant_is_below_every_start_and_the_spectral_gap():
    x = np.linspace(-3, 3, 121)
    pi, up, down = langevin_chain_1d(torch.tensor(x**4 / 4), float(x[1] - x[0]))
    starts = [0.3 * x, np.tanh(x), 0.01 * x]
    alpha = log_sobolev_constant_1d(pi, up, starts)
    assert all(alpha <= _ratio(pi, up, u) for u in starts)                      # it minimises from each start
    assert alpha <= _spectral_gap(up, down) * (1 + 1e-3)                         # LSI implies Poincare: alpha <= gap
    assert 0.5 * _spectral_gap(up, down) < alpha
    assert log_sobolev_constant_1d(pi, up, starts[1:2]) >= alpha                  # more starts: never worse


def test_lsi_constant_is_deterministic_and_scale_invariant():
    x = np.linspace(-4, 4, 81)
    pi, up, _ = langevin_chain_1d(torch.tensor(x**2 / 2 + np.cos(2 * x)), float(x[1] - x[0]))
    starts = [0.4 * x]
    alpha = log_sobolev_constant_1d(pi, up, starts, max_iter=30)
    assert log_sobolev_constant_1d(pi, up, starts, max_iter=30) == alpha
    assert log_sobolev_constant_1d(pi.tolist(), list(up), [list(0.4 * x)], max_iter=30) == alpha
    # f -> e^5 f changes nothing (up to the rounding of u - max u)
    assert log_sobolev_constant_1d(pi, up, [0.4 * x + 5.0], max_iter=30) == pytest.approx(alpha, rel=1e-7)
    assert log_sobolev_constant_1d(pi, up, starts, max_iter=1) >= alpha          # fewer iterations: never lower


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(pi=np.full((2, 5), 0.1)), r"^pi", id="pi-2d"),
    pytest.param(dict(up=np.ones(5)), r"^up", id="up-wrong-length"),
    pytest.param(dict(starts=[]), r"^starts", id="starts-empty"),
    pytest.param(dict(starts=[np.zeros(4)]), r"^starts", id="start-wrong-shape"),
    pytest.param(dict(max_iter=0), r"^max_iter", id="max_iter-zero"),
    pytest.param(dict(max_iter=2.5), r"^max_iter", id="max_iter-fractional"),
])
def test_lsi_rejects_bad_arguments(kwargs, match):
    args = {"pi": np.full(5, 0.2), "up": np.ones(4), "starts": [np.linspace(-1, 1, 5)], **kwargs}
    with pytest.raises(ValueError, match=match):
        log_sobolev_constant_1d(**args)


def test_lsi_accepts_starts_stacked_in_an_array():
    x = np.linspace(-3, 3, 31)
    pi, up, _ = langevin_chain_1d(torch.tensor(x**2 / 2), float(x[1] - x[0]))
    starts = np.stack([0.3 * x, np.tanh(x)])
    assert log_sobolev_constant_1d(pi, up, starts) == log_sobolev_constant_1d(pi, up, list(starts))
