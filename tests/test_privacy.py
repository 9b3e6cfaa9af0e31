"""learnthy_nb.privacy: GDP accounting (closed form vs PLD vs RDP), calibration, the Gaussian mechanism, errors."""
import math

import numpy as np
import pytest
import torch

from learnthy_nb.privacy import (calibrate_diff2, calibrate_dp_gd, calibrate_dp_sgd, clip_rows, clipped_mean,
                                 delta_from_mu, diff2_round_counts, empirical_delta, epsilon_from_mu,
                                 gaussian_mechanism, gaussian_privacy_loss, gdp_mu, gdp_tradeoff, mu_from_epsilon,
                                 pld_epsilon, rdp_epsilon, sample_privacy_loss)

DELTA = 1e-5


# --------------------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0, 8.0])
def test_dp_gd_calibration_reaches_the_target_by_pld(eps):
    z = calibrate_dp_gd(eps, DELTA, 2000)
    assert abs(z - math.sqrt(2000) / mu_from_epsilon(eps, DELTA)) < 1e-12
    assert abs(pld_epsilon(z, 2000, DELTA) - eps) < 1e-3


@pytest.mark.parametrize("eps,rounds,period,ratio", [(1.0, 2000, 10, 2.0), (3.0, 2000, 10, 0.5), (5.0, 500, 7, 3.0),
                                                     (8.0, 103, 10, 1.0)])
def test_diff2_calibration_reaches_the_target_by_pld(eps, rounds, period, ratio):
    z1, z2 = calibrate_diff2(eps, DELTA, rounds, period, ratio)
    anchors, differences = diff2_round_counts(rounds, period)
    assert anchors == math.ceil(rounds / period) and anchors + differences == rounds
    assert abs(z2 - ratio * z1) < 1e-12
    assert abs(pld_epsilon([z1, z2], [anchors, differences], DELTA) - eps) < 1e-3


def test_diff2_with_period_one_is_dp_gd():
    z = calibrate_dp_gd(3.0, DELTA, 2000)
    z1, z2 = calibrate_diff2(3.0, DELTA, 2000, 1, 0.3)
    assert z1 == z and abs(z2 - 0.3 * z) < 1e-15


def test_dp_sgd_full_batch_matches_the_closed_form():
    # sample rate 1: every step is a full-batch Gaussian round (add/remove neighbours, sensitivity = clip)
    z = calibrate_dp_sgd(3.0, DELTA, 100, 1.0)
    assert abs(z / calibrate_dp_gd(3.0, DELTA, 100) - 1) < 2e-3
    assert calibrate_dp_sgd(3.0, DELTA, 100, 0.05) < z                 # subsampling amplifies privacy


# ------------------------------------------------------------------------------------- composition, curves
def test_gdp_mu_composition():
    assert gdp_mu(2.5) == 1 / 2.5                                       # one round of z: mu = 1/z
    zs = [0.8, 2.0, 5.0, 1.3]
    assert gdp_mu(zs) == pytest.approx(gdp_mu(zs[::-1]), abs=1e-15)     # order invariance
    assert gdp_mu([2.0, 3.0], [4, 9]) == pytest.approx(gdp_mu([2.0] * 4 + [3.0] * 9), abs=1e-14)   # counts
    assert gdp_mu(4.0, 100) == pytest.approx(2.5, abs=1e-15)
    assert gdp_mu(np.array([2.0, 2.0])) == gdp_mu(torch.tensor([2.0, 2.0], dtype=torch.float64)) == gdp_mu(2.0, 2)


@pytest.mark.parametrize("mu", [0.05, 0.3, 1.0, 2.5, 7.0])
@pytest.mark.parametrize("delta", [1e-10, 1e-5, 1e-2])
def test_epsilon_and_mu_are_inverse(mu, delta):
    eps = epsilon_from_mu(mu, delta)
    if eps == 0.0:                                                      # mu so small that delta(0) <= delta
        assert delta_from_mu(mu, 0.0) <= delta
    else:
        assert abs(delta_from_mu(mu, eps) / delta - 1) < 1e-8
        assert abs(mu_from_epsilon(eps, delta) / mu - 1) < 1e-9


def test_delta_curve_is_monotone_and_bounded():
    eps = np.linspace(0, 20, 81)
    d = np.array([delta_from_mu(1.5, e) for e in eps])
    assert np.all(np.diff(d) <= 0) and d[0] <= 1 and d[-1] >= 0
    assert delta_from_mu(1.0, 0.0) == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=1e-14)


@pytest.mark.parametrize("eps", [1.0, 3.0, 8.0])
def test_closed_form_is_below_rdp(eps):
    z = calibrate_dp_gd(eps, DELTA, 2000)
    z1, z2 = calibrate_diff2(eps, DELTA, 2000, 10, 2.0)
    assert epsilon_from_mu(gdp_mu(z, 2000), DELTA) <= rdp_epsilon(z, 2000, DELTA)
    assert epsilon_from_mu(gdp_mu([z1, z2], [200, 1800]), DELTA) <= rdp_epsilon([z1, z2], [200, 1800], DELTA)
    assert rdp_epsilon(z, 2000, DELTA) > eps * 1.01


def test_tradeoff_function():
    a = np.linspace(0.01, 0.99, 9)
    assert np.allclose(gdp_tradeoff(a, 0.0), 1 - a)
    assert np.all(gdp_tradeoff(a, 2.0) < gdp_tradeoff(a, 1.0))


# ------------------------------------------------------------------------------- the mechanism (device, dtype)
def test_clipping_and_sensitivity_float64():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(40, 5, generator=g, dtype=torch.float64)
    c = clip_rows(x, 0.7)
    assert c.dtype == torch.float64 and c.norm(dim=1).max() <= 0.7 + 1e-12
    xp = x.clone()
    xp[3] = -x[3]
    gap = (clipped_mean(x, 0.7) - clipped_mean(xp, 0.7)).norm()
    assert abs(float(gap) - 2 * 0.7 / 40) < 1e-12                      # the sensitivity 2C/n is attained
    assert torch.equal(clip_rows(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))   # zero rows stay zero, no NaN


def _audit(device, generator, n_samples=40_000):
    """Quick configuration of the chapter's simulation on `device`: (losses under D, losses under D', mu)."""
    R, T, n = 20, 10, 100
    g_cpu = torch.Generator().manual_seed(5)
    X = (2 * torch.randn(n, 4, generator=g_cpu, dtype=torch.float64)).to(device)
    X[0] = 3 * X[0] / X[0].norm()
    Xp = X.clone()
    Xp[0] = -X[0]
    anchor = torch.arange(R, device=device) % T == 0
    z1, z2 = calibrate_diff2(3.0, DELTA, R, T, 2.0)
    clips = torch.tensor([1.0 if a else 0.05 for a in anchor.tolist()], dtype=torch.float64, device=device)
    z = torch.tensor([z1 if a else z2 for a in anchor.tolist()], dtype=torch.float64, device=device)
    mean, mean_p = clip_rows(X[None], clips[:, None]).mean(1), clip_rows(Xp[None], clips[:, None]).mean(1)
    sens = 2 * clips / n
    loss_d = sample_privacy_loss(mean, mean_p, sens, z, n_samples, chunk=10_000, generator=generator)
    loss_dp = -sample_privacy_loss(mean_p, mean, sens, z, n_samples, chunk=10_000, generator=generator)
    return loss_d, loss_dp, gdp_mu(z.tolist())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_simulated_mechanism_has_the_gdp_curve(device):
    # The CUDA case draws with a CUDA generator (other numbers, same distribution) and must stay on the GPU. Tolerance:
    # with 4e4 samples, 5 standard errors of the CLT keep a false failure below 1e-6 per check.
    gen = torch.Generator(device=device).manual_seed(1)
    loss_d, loss_dp, mu = _audit(device, gen)
    assert loss_d.device.type == device and loss_d.dtype == torch.float64
    n = loss_d.shape[0]
    assert abs(float(loss_d.mean()) - mu**2 / 2) < 5 * mu / math.sqrt(n)
    assert abs(float(loss_dp.mean()) + mu**2 / 2) < 5 * mu / math.sqrt(n)
    est, se = empirical_delta(loss_d, [0.0, 1.0, 2.0])
    assert est.device.type == device
    for e, d_hat, s in zip([0.0, 1.0, 2.0], est.tolist(), se.tolist()):
        assert abs(d_hat - delta_from_mu(mu, e)) < 5 * s + 1e-12


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_gaussian_mechanism_device_dtype_and_scale(device):
    gen = torch.Generator(device=device).manual_seed(3)
    v = torch.zeros(100_000, dtype=torch.float64, device=device)
    y = gaussian_mechanism(v, 0.01, 4.0, generator=gen)
    assert y.device.type == device and y.dtype == torch.float64
    assert abs(float(y.std()) / 0.04 - 1) < 0.02                        # 5 standard errors of a std estimate: 0.011
    y2 = gaussian_mechanism(v, 0.01, 4.0, generator=torch.Generator(device=device).manual_seed(3))
    assert torch.equal(y, y2)                                          # the generator fixes the draw


def test_privacy_loss_formula():
    m = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mp = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([0.5], dtype=torch.float64)
    y = torch.tensor([[[0.3, 7.0]]], dtype=torch.float64)
    expected = ((y - mp).pow(2).sum() - (y - m).pow(2).sum()) / (2 * 0.25)
    assert torch.allclose(gaussian_privacy_loss(y, m, mp, s), expected.reshape(1))


def test_cpu_generator_reproducible():
    a = _audit("cpu", torch.Generator().manual_seed(9), n_samples=2000)[0]
    b = _audit("cpu", torch.Generator().manual_seed(9), n_samples=2000)[0]
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------- bad input
BAD = [
    (lambda: calibrate_dp_gd(0.0, DELTA, 10), "eps"),
    (lambda: calibrate_dp_gd(-1.0, DELTA, 10), "eps"),
    (lambda: calibrate_dp_gd(1.0, 0.0, 10), "delta"),
    (lambda: calibrate_dp_gd(1.0, 1.0, 10), "delta"),
    (lambda: calibrate_dp_gd(1.0, DELTA, 0), "rounds"),
    (lambda: calibrate_dp_gd(1.0, DELTA, 2.5), "rounds"),
    (lambda: calibrate_diff2(0.0, DELTA, 10, 2, 1.0), "eps"),
    (lambda: calibrate_diff2(1.0, 1.5, 10, 2, 1.0), "delta"),
    (lambda: calibrate_diff2(1.0, DELTA, 0, 2, 1.0), "rounds"),
    (lambda: calibrate_diff2(1.0, DELTA, 10, 0, 1.0), "period"),
    (lambda: calibrate_diff2(1.0, DELTA, 10, 2, 0.0), "noise_ratio"),
    (lambda: calibrate_diff2(1.0, DELTA, 10, 2, -1.0), "noise_ratio"),
    (lambda: calibrate_dp_sgd(0.0, DELTA, 10, 0.1), "eps"),
    (lambda: calibrate_dp_sgd(1.0, 0.0, 10, 0.1), "delta"),
    (lambda: calibrate_dp_sgd(1.0, DELTA, 0, 0.1), "n_steps"),
    (lambda: calibrate_dp_sgd(1.0, DELTA, 10, 0.0), "sample_rate"),
    (lambda: calibrate_dp_sgd(1.0, DELTA, 10, 1.5), "sample_rate"),
    (lambda: gdp_mu(0.0), "noise_multipliers"),
    (lambda: gdp_mu([1.0, -2.0]), "noise_multipliers"),
    (lambda: gdp_mu([]), "noise_multipliers"),
    (lambda: gdp_mu([1.0, 2.0], [1, 0]), "counts"),
    (lambda: gdp_mu([1.0, 2.0], [1, 1.5]), "counts"),
    (lambda: gdp_mu([1.0, 2.0], [1]), "counts"),
    (lambda: pld_epsilon(0.0, 1, DELTA), "noise_multipliers"),
    (lambda: pld_epsilon(1.0, 0, DELTA), "counts"),
    (lambda: pld_epsilon(1.0, 1, 0.0), "delta"),
    (lambda: rdp_epsilon(-1.0, 1, DELTA), "noise_multipliers"),
    (lambda: rdp_epsilon(1.0, -3, DELTA), "counts"),
    (lambda: rdp_epsilon(1.0, 1, 2.0), "delta"),
    (lambda: epsilon_from_mu(0.0, DELTA), "mu"),
    (lambda: epsilon_from_mu(1.0, 0.0), "delta"),
    (lambda: mu_from_epsilon(0.0, DELTA), "eps"),
    (lambda: mu_from_epsilon(1.0, 1.0), "delta"),
    (lambda: delta_from_mu(-1.0, 1.0), "mu"),
    (lambda: delta_from_mu(1.0, -1.0), "eps"),
    (lambda: diff2_round_counts(0, 2), "rounds"),
    (lambda: diff2_round_counts(10, 0), "period"),
    (lambda: clip_rows(torch.ones(2, 2), 0.0), "clip"),
    (lambda: clipped_mean(torch.ones(0, 2), 1.0), "x"),
    (lambda: gaussian_mechanism(torch.zeros(3), 0.0, 1.0), "sensitivity"),
    (lambda: gaussian_mechanism(torch.zeros(3), 1.0, 0.0), "noise_multiplier"),
    (lambda: sample_privacy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1), 0), "n_samples"),
    (lambda: gdp_tradeoff(0.5, -1.0), "mu"),
]


@pytest.mark.parametrize("call,name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
