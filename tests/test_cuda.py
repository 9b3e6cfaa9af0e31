"""The device contract on a GPU: the toolkit, the MFLD engine and the parity chapters' code on CUDA.

Every test body runs twice: on the CPU (here, always) and on CUDA (marker `cuda`, skipped without a GPU; run by
`make gpu-check`). On CUDA the random numbers come from a CUDA generator, so the draws differ from the CPU run:
results are compared statistically (tolerances stated where they are checked), and every output must live on the
device it was asked for. The diffusion and transformer families have their own modules (test_cuda_diffusion.py,
test_cuda_transformer.py).
"""
import math

import pytest
import torch

from devices import DEVICES, device_generator as gen
from learnthy_nb.core import (gaussian, haar_orthogonal, integers, kernel_ridge, permutation, rbf_kernel, uniform)
from learnthy_nb.mfld import MeanFieldNet, MeanFieldRegression, run_mfld
from learnthy_nb.parity import (kernel_error_grid, kernel_ridge_error, mfld_error_grid, ntk_kernel, sparse_parity,
                                train_mfld_parity)
from learnthy_nb.parity_beyond import train_lazy_parity
from learnthy_nb.parity_phase import initial_gradient_snr, subspace_share




@pytest.mark.parametrize("device", DEVICES)
def test_draws_stay_on_the_generators_device(device):
    g = gen(device, 0)
    for x in (gaussian((100, 3), generator=g), uniform((100,), generator=g, dtype=torch.float64),
              integers(0, 5, (100,), generator=g), permutation(100, generator=g), haar_orthogonal(6, generator=g)):
        assert x.device.type == device
    # a CPU generator with a CUDA target: drawn on the CPU (the same numbers as on any machine), then moved
    cpu_draw = gaussian((4,), generator=gen("cpu", 1), device=device)
    assert cpu_draw.device.type == device and torch.equal(cpu_draw.cpu(), torch.randn(4, generator=gen("cpu", 1)))
    # moments of the device's draws: mean 0 and variance 1 within 5 standard errors
    z = gaussian((200_000,), generator=g, dtype=torch.float64)
    assert abs(float(z.mean())) < 5 / math.sqrt(2e5) and abs(float(z.var()) - 1) < 5 * math.sqrt(2 / 2e5)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_ridge_on_the_device_agrees_with_the_cpu(device):
    X = gaussian((200, 2), generator=gen("cpu", 0), dtype=torch.float64)
    y = torch.sin(3 * X[:, 0])
    # the same split (a CPU generator) on both devices: the fits agree to float64 rounding
    cpu = kernel_ridge(rbf_kernel, X, y, ridges=[1e-4, 1e-2], generator=gen("cpu", 1))
    dev = kernel_ridge(rbf_kernel, X.to(device), y.to(device), ridges=[1e-4, 1e-2], generator=gen("cpu", 1))
    assert dev.alpha.device.type == device and dev.ridge == cpu.ridge
    assert torch.allclose(dev.predict(X[:20].to(device)).cpu(), cpu.predict(X[:20]), atol=1e-8)
    # a generator on the device: another split, the same ridge on this easy problem
    dev2 = kernel_ridge(rbf_kernel, X.to(device), y.to(device), ridges=[1e-4, 1e-2], generator=gen(device, 1))
    assert dev2.ridge == cpu.ridge


@pytest.mark.parametrize("device", DEVICES)
def test_fused_mfld_gradient_on_the_device_equals_the_cpu_one(device):
    g = gen("cpu", 0)
    X, y = gaussian((300, 5), generator=g), gaussian((300,), generator=g)
    theta = gaussian((64, 7), generator=g)
    net = MeanFieldNet(5, output_weight=True)
    cpu = MeanFieldRegression(net, X, y, l2=1e-2)(theta)
    dev = MeanFieldRegression(net, X.to(device), y.to(device), l2=1e-2)(theta.to(device))
    assert dev.device.type == device
    assert torch.allclose(dev.cpu(), cpu, atol=1e-4, rtol=1e-4)          # float32 kernels of two devices


@pytest.mark.parametrize("device", DEVICES)
def test_run_mfld_risk_on_the_device_matches_the_cpu_statistically(device):
    """Three seeds on each device (a CUDA generator on CUDA): the trained risk agrees within 10% of the CPU mean.
    The seed-to-seed spread of this risk is below 3% (M = 512 particles); 10% leaves room without hiding a bug
    (a wrong noise scale or a missing gradient term moves it by far more)."""
    X = gaussian((400, 3), generator=gen("cpu", 0))
    y = torch.tanh(2 * X[:, 0] - X[:, 1])
    net = MeanFieldNet(3, output_weight=True)

    def risks(dev):
        problem = MeanFieldRegression(net, X.to(dev), y.to(dev), l2=1e-3)
        out = []
        for s in range(3):
            g = gen(dev, s)
            theta = gaussian((512, net.particle_dim), generator=g, device=dev)
            theta = run_mfld(problem, theta, eta=0.2, lam=1e-4, n_steps=300, generator=g)
            assert theta.device.type == dev
            out.append(float(problem.risk(theta)))
        return torch.tensor(out)

    cpu, dev = risks("cpu"), risks(device)
    assert abs(float(dev.mean() - cpu.mean())) <= 0.1 * float(cpu.mean())


@pytest.mark.parametrize("device", DEVICES)
def test_parity_training_on_the_device_learns_like_on_the_cpu(device):
    """k = 2, d = 6, n = 200: MFLD reaches a test error below 0.05 on every seed, on both devices."""
    for s in range(2):
        g = gen(device, s)
        Z, y = sparse_parity(200, 6, 2, generator=g, device=device)
        Zt, yt = sparse_parity(2000, 6, 2, generator=g, device=device)
        assert Z.device.type == device
        model = train_mfld_parity(Z, y, n_particles=256, eta=0.5, lam=1e-3, lam1=1.0, n_steps=400, generator=g)
        assert model.particles.device.type == device
        assert model.error(Zt, yt) < 0.05 and model.relevant_mass(2) > 0.6


@pytest.mark.parametrize("device", DEVICES)
def test_parity_grids_and_kernels_run_on_the_device(device):
    g = gen(device, 3)
    Q = haar_orthogonal(5, generator=g)
    err, model = mfld_error_grid(5, [40, 160], 2, 2, n_test=500, n_particles=64, eta=0.5, lam=1e-3, lam1=1.0,
                                 n_steps=300, rotation=Q, generator=g, device=device)
    assert model.particles.device.type == device and err.shape == (2, 2)
    assert err[1].max() < 0.15                                        # n = 160 is enough in d = 5 (CPU: 0.0)
    share = subspace_share(model.particles, Q[:2].to(device))          # the label's directions: rows of Q
    assert share.shape == (4,) and float(share[2:].min()) > 2 / 5      # above the prior's share k/d = 0.4
    errs = kernel_error_grid(ntk_kernel, 5, [64, 512], 2, 2, n_test=500, ridges=(1e-6, 1e-3), generator=g, device=device)
    assert errs[-1].max() < 0.2                                       # the NTK learns a 2-parity in d = 5 at n = 512
    Z, y = sparse_parity(300, 5, 2, generator=g, device=device)
    assert kernel_ridge_error(ntk_kernel, Z, y, Z, y, [1e-6], generator=g) < 0.05
    lazy = train_lazy_parity(Z, y, width=64, lr=1.0, n_steps=20, generator=g)
    assert lazy.W.device.type == device
    signal, noise, n_equal = initial_gradient_snr(6, 2, n_particles=64, n_mc=2**14, generator=g, device=device)
    assert signal > 0 and noise > 0 and math.isfinite(n_equal)
