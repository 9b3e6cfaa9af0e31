"""Tests of learnthy_nb.parity_phase: rotated parities, error grids, first-gradient signal-to-noise."""
import math

import numpy as np
import pytest
import torch

from learnthy_nb.core import haar_orthogonal as random_orthogonal, rbf_kernel
from learnthy_nb.parity import (ParityMFLDModel, kernel_error_grid, mfld_error_grid, mfld_parity_drift, ntk_kernel,
                                sparse_parity)
from learnthy_nb.parity_phase import initial_gradient_snr, subspace_share


def rotated_sparse_parity(n, d, k, rotation, **kw):
    return sparse_parity(n, d, k, rotation=rotation, **kw)

CPU = torch.device("cpu")


def test_random_orthogonal_is_orthogonal_seeded_and_haar_on_average():
    Q = random_orthogonal(9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(Q @ Q.T, torch.eye(9, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q, random_orthogonal(9, generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(1)
    # Haar: every entry has mean 0 and second moment 1/d; Q[0, 0] over 2000 draws (4 standard errors)
    q = torch.stack([random_orthogonal(4, generator=g)[0, 0] for _ in range(2000)])
    assert abs(float(q.mean())) < 4 * 0.5 / math.sqrt(2000)
    assert abs(float(q.square().mean()) - 0.25) < 4 * 0.2 / math.sqrt(2000)


def test_rotated_parity_shares_labels_and_is_the_hypercube_in_the_rotated_basis():
    Q = random_orthogonal(8, generator=torch.Generator().manual_seed(2))
    X, y = rotated_sparse_parity(300, 8, 3, Q, generator=torch.Generator().manual_seed(3), device=CPU)
    Z, y0 = sparse_parity(300, 8, 3, generator=torch.Generator().manual_seed(3), device=CPU)
    assert torch.equal(y, y0)
    back = X.double() @ Q.T                                            # Z = X Q^T
    assert torch.allclose(back, Z.double(), atol=1e-6)
    assert torch.equal(torch.sign(back[:, :3]).prod(1), y)            # parity along q_1..q_3
    assert not torch.allclose(X.abs(), Z.abs(), atol=1e-2)
    Xa, ya = rotated_sparse_parity(300, 8, 3, None, generator=torch.Generator().manual_seed(3), device=CPU)
    assert torch.equal(Xa, Z) and torch.equal(ya, y0)


@pytest.mark.parametrize("rotation, match", [
    pytest.param(torch.eye(7, dtype=torch.float64), r"^rotation must be an orthogonal tensor of shape \[d, d\] = \[8, 8\]", id="rotation-shape"),
    pytest.param(2 * torch.eye(8, dtype=torch.float64), r"^rotation must be an orthogonal matrix", id="rotation-not-orthogonal"),
])
def test_rotated_parity_rejects_bad_rotations(rotation, match):
    with pytest.raises(ValueError, match=match):
        rotated_sparse_parity(10, 8, 2, rotation, device=CPU)


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda: rotated_sparse_parity(10, 4, 5, None, device=CPU), r"^k must be ", id="rotated_sparse_parity-k-above-d"),
    pytest.param(lambda: random_orthogonal(0), r"^d must be ", id="random_orthogonal-d-zero"),
])
def test_rotated_parity_rejects_bad_sizes(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_kernels_and_kernel_ridge_do_not_see_the_rotation():
    g = torch.Generator().manual_seed(4)
    Q = random_orthogonal(6, generator=g)
    Z, _ = sparse_parity(50, 6, 2, generator=g, device=CPU)
    Zd = Z.double()
    for kern in (ntk_kernel, rbf_kernel):
        assert torch.allclose(kern(Zd @ Q, Zd @ Q), kern(Zd, Zd), atol=1e-12)
    common = dict(n_test=300, ridges=(1e-6, 1e-3, 1e-1), device=CPU)
    axes = kernel_error_grid(ntk_kernel, 6, [32, 128], 3, 2, generator=torch.Generator().manual_seed(5), **common)
    rotd = kernel_error_grid(ntk_kernel, 6, [32, 128], 3, 2, rotation=Q, generator=torch.Generator().manual_seed(5),
                             **common)
    assert np.array_equal(axes, rotd)
    assert axes[1].mean() < axes[0].mean()                           # more samples help the kernel


def test_mfld_drift_is_rotation_equivariant():
    g = torch.Generator().manual_seed(6)
    d = 7
    Q = random_orthogonal(d, generator=g)
    Z, y = sparse_parity(25, d, 3, generator=g, device=CPU)
    Zd, yd = Z.double()[None], y.double()[None]
    w = torch.full((1, 25), 1 / 25, dtype=torch.float64)
    P = torch.randn(1, 20, d + 2, generator=g, dtype=torch.float64)
    Pr = P.clone()
    Pr[..., :d] = P[..., :d] @ Q
    v = mfld_parity_drift(P, Zd, yd, w, lam=0.01, lam1=0.5)
    vr = mfld_parity_drift(Pr, Zd @ Q, yd, w, lam=0.01, lam1=0.5)
    assert torch.allclose(vr[..., :d], v[..., :d] @ Q, atol=1e-12)
    assert torch.allclose(vr[..., d:], v[..., d:], atol=1e-12)


def test_subspace_share():
    g = torch.Generator().manual_seed(7)
    P = torch.randn(3, 40, 10, generator=g)
    axes = torch.eye(8, dtype=torch.float64)[:3]
    share = subspace_share(P, axes)
    assert share.shape == (3,)
    assert torch.allclose(share.float(), ParityMFLDModel(P).relevant_mass(3), atol=1e-6)
    inside = torch.zeros(40, 10)
    inside[:, :3] = torch.randn(40, 3, generator=g)
    assert abs(subspace_share(inside, axes) - 1.0) < 1e-12
    assert subspace_share(torch.cat([inside, torch.zeros(40, 2)], 1)[:, [3, 4, 5, 6, 7, 0, 1, 2, 8, 9]], axes) < 1e-12
    with pytest.raises(ValueError, match=r"^basis must have shape \[k, 8\]"):
        subspace_share(P, torch.eye(7, dtype=torch.float64)[:3])
    with pytest.raises(ValueError, match=r"^basis must have orthonormal rows"):
        subspace_share(P, 2 * axes)


def test_mfld_error_grid_learns_a_rotated_two_parity_and_aligns_with_the_rotated_subspace():
    d = 6
    Q = random_orthogonal(d, generator=torch.Generator().manual_seed(8))
    err, model = mfld_error_grid(d, [8, 200], 2, 2, n_test=500, n_particles=96, eta=0.5, lam=1e-3, lam1=1.0,
                                 n_steps=600, rotation=Q, generator=torch.Generator().manual_seed(9), device=CPU)
    assert err.shape == (2, 2) and model.particles.shape == (4, 96, d + 2)
    assert err[1].max() < 0.05 < err[0].mean()
    share_rot = subspace_share(model.particles[2:], Q[:2])
    share_axes = subspace_share(model.particles[2:], torch.eye(d, dtype=torch.float64)[:2])
    assert float(share_rot.min()) > 0.5 > float(share_axes.max())


_MFLD_GRID = dict(n_particles=4, eta=0.5, lam=0.0, lam1=1.0, n_steps=1, device=CPU)


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda: kernel_error_grid(ntk_kernel, 5, [], 2, 1, n_test=10, ridges=(1e-3,), device=CPU),
                 r"^ns must hold at least one sample size", id="kernel_error_grid-ns-empty"),
    pytest.param(lambda: mfld_error_grid(5, [10], 2, 0, n_test=10, **_MFLD_GRID), r"^seeds must be ",
                 id="mfld_error_grid-seeds-zero"),
    pytest.param(lambda: mfld_error_grid(5, [10], 2, 1, n_test=0, **_MFLD_GRID), r"^n_test must be ",
                 id="mfld_error_grid-n_test-zero"),
])
def test_grids_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_grids_stop_early():
    err = kernel_error_grid(ntk_kernel, 4, [128, 256, 512], 2, 2, n_test=100, ridges=(1e-6, 1e-3),
                            generator=torch.Generator().manual_seed(10), device=CPU, stop_below=0.0)
    assert (err[0] == 0).all() and np.isnan(err[1:]).all()


def test_first_gradient_signal_scales_like_the_fourier_coefficient():
    """Label signal on a relevant coordinate ~ d^{-k/2}: d 8 -> 32 divides it by 4 at k = 2 and by 8 at k = 3."""
    def sig(d, k):
        return initial_gradient_snr(d, k, n_particles=256, n_mc=2**16, generator=torch.Generator().manual_seed(d + k))
    s2 = sig(8, 2)[0] / sig(32, 2)[0]
    s3 = sig(8, 3)[0] / sig(32, 3)[0]
    assert 3.0 < s2 < 5.5 and 6.0 < s3 < 12.0
    signal, noise, n_eq = sig(8, 1)
    assert n_eq < 3 and noise > 0 and math.isclose(n_eq, (noise / signal) ** 2)
    with pytest.raises(ValueError, match=r"^k must be "):
        initial_gradient_snr(4, 4)
