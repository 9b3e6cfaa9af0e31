"""Tests of learnthy_nb.parity: k-sparse parity, the paper's mean-field network trained by MFLD, kernels."""
import math

import pytest
import torch

from learnthy_nb.core import DivergenceError, haar_orthogonal, rbf_kernel
from learnthy_nb.mfld import MeanFieldNet, run_mfld
from learnthy_nb.parity import (ParityMFLDModel, ParityNet, ParityRisk, kernel_ridge_error, mfld_parity_drift,
                                ntk_kernel, ntk_monte_carlo, sample_complexity, sparse_parity, train_mfld_parity)

CPU = torch.device("cpu")


def test_parity_labels_are_the_product_and_balanced():
    n, d, k = 20000, 12, 3
    Z, y = sparse_parity(n, d, k, generator=torch.Generator().manual_seed(0), device=CPU)
    assert Z.shape == (n, d) and y.shape == (n,)
    assert torch.allclose(Z.abs(), torch.full_like(Z, 1 / math.sqrt(d)))
    assert torch.equal(y, torch.sign(Z[:, :k]).prod(1))
    assert abs(float(y.mean())) < 4 / math.sqrt(n)
    # k-wise structure: no coordinate and no proper subset of the relevant ones correlates with y
    s = torch.sign(Z)
    assert float((s * y[:, None]).mean(0).abs().max()) < 4.5 / math.sqrt(n)
    assert abs(float((s[:, 0] * s[:, 1] * y).mean())) < 4 / math.sqrt(n)


def test_rotated_parity_is_a_rotation_of_the_same_sample():
    Z, y = sparse_parity(500, 8, 2, generator=torch.Generator().manual_seed(5), device=CPU)
    Q = haar_orthogonal(8, generator=torch.Generator().manual_seed(11))
    Zr, yr = sparse_parity(500, 8, 2, rotation=Q, generator=torch.Generator().manual_seed(5), device=CPU)
    assert torch.equal(y, yr)
    assert torch.allclose(Zr @ Zr.T, Z @ Z.T, atol=1e-5)
    assert not torch.allclose(Zr.abs(), Z.abs(), atol=1e-2)          # not axis-aligned any more


def test_ntk_is_psd_and_matches_a_wide_random_network():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(60, 5, generator=g, dtype=torch.float64)
    for bias in (0.0, 1.0):
        K = ntk_kernel(A, A, bias=bias)
        assert torch.allclose(K, K.T)
        assert float(torch.linalg.eigvalsh(K).min()) > -1e-10 * float(K.diagonal().max())
    B = A[:10]
    draws = torch.stack([ntk_monte_carlo(B, B, width=20000, generator=g) for _ in range(10)])
    se = draws.std(0) / math.sqrt(10)
    err = (draws.mean(0) - ntk_kernel(B, B)).abs()
    assert bool((err <= 5 * se).all()), float((err / se).max())
    # and the Monte-Carlo estimate is tight enough to tell a wrong closed form apart (here: bias dropped)
    assert bool(((draws.mean(0) - ntk_kernel(B, B, bias=0.0)).abs() > 5 * se).any())


def test_rbf_kernel_closed_form():
    A = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    K = rbf_kernel(A, A, bandwidth=5.0)
    assert torch.allclose(K, torch.tensor([[1.0, math.exp(-0.5)], [math.exp(-0.5), 1.0]], dtype=torch.float64))


def test_drift_is_mean_field_scaled_autograd_gradient():
    g = torch.Generator().manual_seed(2)
    Z, y = sparse_parity(25, 5, 2, generator=g, device=CPU)
    M = 40
    X = torch.randn(1, M, 7, generator=g, dtype=torch.float64)
    Xa = X.clone().requires_grad_(True)
    loss = torch.nn.functional.softplus(-y.double() * ParityNet(5).forward(Xa, Z.double())).mean()
    (grad,) = torch.autograd.grad(loss, Xa)
    v = mfld_parity_drift(X, Z.double()[None], y.double()[None], torch.full((1, 25), 1 / 25, dtype=torch.float64),
                          lam=0.1, lam1=2.0)
    assert torch.allclose(v, M * grad + 2 * 0.1 * 2.0 * X, atol=1e-12)


def test_lazy_drift_is_scaled_autograd_gradient_of_the_centred_model():
    """Chizat-Oyallon-Bach: model alpha (f - f_0), loss / alpha^2; the drift is M times its particle gradient."""
    g = torch.Generator().manual_seed(4)
    Z, y = sparse_parity(25, 5, 2, generator=g, device=CPU)
    M, alpha = 40, 13.0
    X, X0 = (torch.randn(1, M, 7, generator=g, dtype=torch.float64) for _ in range(2))
    f0 = ParityNet(5).forward(X0, Z.double())
    Xa = X.clone().requires_grad_(True)
    f = alpha * (ParityNet(5).forward(Xa, Z.double()) - f0)
    (grad,) = torch.autograd.grad(torch.nn.functional.softplus(-y.double() * f).mean() / alpha**2, Xa)
    v = mfld_parity_drift(X, Z.double()[None], y.double()[None], torch.full((1, 25), 1 / 25, dtype=torch.float64),
                          lam=0.0, lam1=1.0, alpha=alpha, offset=f0)
    assert torch.allclose(v, M * grad, atol=1e-12)


def test_lazy_scaling_starts_at_zero_and_pins_the_particles():
    Z, y = sparse_parity(64, 6, 2, generator=torch.Generator().manual_seed(5), device=CPU)
    moves = {}
    for alpha in (1.0, 100.0):
        model = train_mfld_parity(Z, y, n_particles=64, eta=0.5, lam=0.0, lam1=1.0, n_steps=200,
                                  generator=torch.Generator().manual_seed(6), lazy_alpha=alpha)
        assert model.reference is not None and model.alpha == alpha
        at_start = ParityMFLDModel(model.reference, reference=model.reference, alpha=alpha)
        assert float(at_start.decision(Z).abs().max()) == 0.0            # the centred model starts at f = 0
        moves[alpha] = float((model.particles - model.reference).norm() / model.reference.norm())
    assert moves[100.0] < 0.2 * moves[1.0]                              # alpha times less movement, to first order
    risk = ParityRisk(Z, y, lam=0.0, lam1=1.0, lazy_alpha=2.0)
    with pytest.raises(ValueError, match="set_reference"):
        risk(torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match="^set_reference needs lazy_alpha"):
        ParityRisk(Z, y, lam=0.0, lam1=1.0).set_reference(torch.zeros(1, 4, 8))

def test_padded_batch_equals_separate_runs():
    g = torch.Generator().manual_seed(3)
    data = [sparse_parity(n, 6, 2, generator=g, device=CPU) for n in (7, 19)]
    X = torch.randn(2, 30, 8, generator=g)
    Zs = torch.zeros(2, 19, 6); ys = torch.ones(2, 19); ws = torch.zeros(2, 19)
    for b, (z, t) in enumerate(data):
        Zs[b, :len(t)], ys[b, :len(t)], ws[b, :len(t)] = z, t, 1 / len(t)
    v = mfld_parity_drift(X, Zs, ys, ws, lam=0.01, lam1=1.0)
    for b, (z, t) in enumerate(data):
        vb = mfld_parity_drift(X[b:b + 1], z[None], t[None], torch.full((1, len(t)), 1 / len(t)), lam=0.01, lam1=1.0)
        assert torch.allclose(v[b], vb[0], atol=1e-5)


def test_chunked_layout_equals_padded_layout():
    from learnthy_nb.parity import _stack_runs
    g = torch.Generator().manual_seed(10)
    data = [sparse_parity(n, 5, 2, generator=g, device=CPU) for n in (3, 17, 40, 64)]
    Zs, ys = [z for z, _ in data], [t for _, t in data]
    X = torch.randn(4, 16, 7, generator=g)
    Zp, yp, wp, rp = _stack_runs(Zs, ys, None)
    Zc, yc, wc, rc = _stack_runs(Zs, ys, 16)
    assert rp is None and Zp.shape == (4, 64, 5)
    assert Zc.shape == (1 + 2 + 3 + 4, 16, 5) and rc.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    v_pad = mfld_parity_drift(X, Zp, yp, wp, lam=0.01, lam1=1.0)
    v_chunk = mfld_parity_drift(X, Zc, yc, wc, lam=0.01, lam1=1.0, run_index=rc)
    assert torch.allclose(v_pad, v_chunk, atol=1e-5)


def test_parity_net_is_a_mean_field_net_and_run_mfld_drives_it():
    """One MFLD step of the parity chapter (ParityRisk's fused drift in run_mfld) equals run_mfld driven by autograd of
    the network's loss (an independent gradient), with the same generator: the same engine, the same noise."""
    assert issubclass(ParityNet, MeanFieldNet) and ParityNet(6).particle_dim == 8
    g = torch.Generator().manual_seed(4)
    Z, y = sparse_parity(30, 6, 2, generator=g, device=CPU)
    Zd, yd = Z.double(), y.double()
    M, lam, lam1, eta = 20, 0.05, 1.0, 0.3
    X0 = torch.randn(M, 8, generator=g, dtype=torch.float64)
    net = ParityNet(6)

    def grad_first_variation(X):
        Xa = X.clone().requires_grad_(True)
        loss = torch.nn.functional.softplus(-yd * net.forward(Xa, Zd)).mean()
        (gr,) = torch.autograd.grad(loss, Xa)
        return M * gr + 2 * lam * lam1 * X

    X_run = run_mfld(grad_first_variation, X0, eta=eta, lam=lam, n_steps=3, generator=torch.Generator().manual_seed(9))
    problem = ParityRisk(Zd, yd, lam=lam, lam1=lam1, chunk=7)
    assert problem.Zs.dtype == torch.float64                       # the inputs' dtype is kept
    X_ours = run_mfld(problem, X0[None], eta=eta, lam=lam, n_steps=3, generator=torch.Generator().manual_seed(9))[0]
    assert torch.allclose(X_ours, X_run, atol=1e-12)


def test_training_takes_the_inputs_dtype_and_an_explicit_generator():
    g = torch.Generator().manual_seed(8)
    Z, y = sparse_parity(40, 5, 2, generator=g, device=CPU)
    model = train_mfld_parity(Z.double(), y.double(), n_particles=16, eta=0.5, lam=1e-3, lam1=1.0, n_steps=5,
                              generator=torch.Generator().manual_seed(1))
    again = train_mfld_parity(Z.double(), y.double(), n_particles=16, eta=0.5, lam=1e-3, lam1=1.0, n_steps=5,
                              generator=torch.Generator().manual_seed(1))
    assert model.particles.dtype == torch.float64 and torch.equal(model.particles, again.particles)
    assert isinstance(model.error(Z, y), float)


def test_mfld_learns_2_parity_in_d6_and_concentrates_on_relevant_coordinates():
    g = torch.Generator().manual_seed(0)
    Z, y = sparse_parity(200, 6, 2, generator=g, device=CPU)
    Zt, yt = sparse_parity(2000, 6, 2, generator=g, device=CPU)
    model = train_mfld_parity(Z, y, n_particles=256, eta=0.5, lam=1e-3, lam1=1.0, n_steps=400, generator=g)
    assert isinstance(model, ParityMFLDModel) and model.particles.shape == (256, 8)
    assert model.error(Zt, yt) < 0.03
    assert set(model.predict(Zt).unique().tolist()) <= {-1.0, 1.0}
    # feature learning: the 2 relevant coordinates carry most of E|x_1|^2 (2/6 at initialisation) ...
    assert model.relevant_mass(2) > 0.7
    # ... and an untrained network (0 steps) is at chance level with the uniform share
    untrained = train_mfld_parity(Z, y, n_particles=256, eta=0.5, lam=1e-3, lam1=1.0, n_steps=0, generator=g)
    assert untrained.error(Zt, yt) > 0.3 and untrained.relevant_mass(2) < 0.45


def test_batched_training_runs_of_different_n():
    g = torch.Generator().manual_seed(6)
    data = [sparse_parity(n, 5, 2, generator=g, device=CPU) for n in (10, 150)]
    Zt, yt = sparse_parity(1000, 5, 2, generator=g, device=CPU)
    model = train_mfld_parity([z for z, _ in data], [t for _, t in data], n_particles=128, eta=0.5, lam=1e-3,
                              lam1=1.0, n_steps=300, generator=g)
    err = model.error(Zt, yt)
    assert err.shape == (2,)
    assert float(err[1]) < 0.05 and float(err[1]) < float(err[0])   # 150 samples beat 10


def test_kernel_ridge_learns_2_parity_and_bias_free_ntk_cannot_learn_3_parity():
    g = torch.Generator().manual_seed(7)
    Z, y = sparse_parity(200, 6, 2, generator=g, device=CPU)
    Zt, yt = sparse_parity(1000, 6, 2, generator=g, device=CPU)
    err, ridge = kernel_ridge_error(ntk_kernel, Z, y, Zt, yt, [1e-6, 1e-3, 1e-1], generator=g, return_ridge=True)
    assert err < 0.05 and ridge in (1e-6, 1e-3, 1e-1)
    Z3, y3 = sparse_parity(400, 8, 3, generator=g, device=CPU)
    Z3t, y3t = sparse_parity(1000, 8, 3, generator=g, device=CPU)
    assert kernel_ridge_error(lambda a, b: ntk_kernel(a, b, bias=0.0), Z3, y3, Z3t, y3t, [1e-6, 1e-3],
                              generator=g) > 0.4


def test_sample_complexity():
    assert sample_complexity({100: 0.4, 200: 0.2, 400: 0.0}, 0.1) == pytest.approx(math.sqrt(200 * 400))
    assert sample_complexity({100: [0.0, 0.1], 200: [0.0, 0.0]}, 0.1) == 100.0
    assert sample_complexity({100: 0.05, 200: 0.3, 400: 0.02}, 0.1) > 200
    assert sample_complexity({100: 0.4, 200: 0.3}, 0.1) == math.inf


def test_divergence_error_on_non_finite_particles():
    g = torch.Generator().manual_seed(8)
    Z, y = sparse_parity(20, 4, 2, generator=g, device=CPU)
    # 2 * eta * lam * lam1 = 4000 > 2: the L2 term overshoots and the particles blow up to inf in float32
    with pytest.raises(DivergenceError, match="step"):
        train_mfld_parity(Z, y, n_particles=8, eta=1000.0, lam=1.0, lam1=2.0, n_steps=200, generator=g,
                          check_every=10)


@pytest.mark.parametrize("kwargs, name", [
    pytest.param(dict(n=10, d=3, k=4), "k", id="k-above-d"), pytest.param(dict(n=10, d=3, k=0), "k", id="k-zero"),
    pytest.param(dict(n=0, d=3, k=2), "n", id="n-zero"), pytest.param(dict(n=10, d=0, k=1), "d", id="d-zero"),
    pytest.param(dict(n=2.5, d=3, k=2), "n", id="n-float"),
])
def test_sparse_parity_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        sparse_parity(**kwargs)


def _data():
    """Z, y of a small 2-parity problem, and y with one label set to 0."""
    Z, y = sparse_parity(20, 4, 2, generator=torch.Generator().manual_seed(9), device=CPU)
    bad = y.clone()
    bad[0] = 0.0
    return Z, y, bad


_OK = dict(n_particles=8, eta=0.1, lam=1e-3, lam1=1.0, n_steps=1)

# each call gets (Z, y, bad) from `_data`
BAD_CALLS = [
    pytest.param(lambda Z, y, bad: train_mfld_parity(Z, bad, **_OK), r"^y must contain only labels",
                 id="train_mfld_parity-y-labels"),
    pytest.param(lambda Z, y, bad: kernel_ridge_error(ntk_kernel, Z, bad, Z, y, [1e-3]), r"^y must contain only labels",
                 id="kernel_ridge_error-y-labels"),
    pytest.param(lambda Z, y, bad: kernel_ridge_error(ntk_kernel, Z, y, Z, bad, [1e-3]), r"^y_test must contain only labels",
                 id="kernel_ridge_error-y_test-labels"),
    pytest.param(lambda Z, y, bad: train_mfld_parity(Z, y, **_OK).error(Z, bad), r"^y must contain only labels",
                 id="ParityMFLDModel.error-y-labels"),
    *[pytest.param((lambda Z, y, bad, key=key, value=value: train_mfld_parity(Z, y, **{**_OK, key: value})),
                   rf"^{key} must be ", id=f"train_mfld_parity-{key}")
      for key, value in [("n_particles", 0), ("eta", 0.0), ("lam", -1.0), ("lam1", 0.0), ("n_steps", -1), ("chunk", 0),
                                                   ("lazy_alpha", 0.0)]],
    pytest.param(lambda Z, y, bad: train_mfld_parity(Z, y[:10], **_OK), r"^y\[0\] must have shape \[20\]",
                 id="train_mfld_parity-y-shape"),
    pytest.param(lambda Z, y, bad: kernel_ridge_error(ntk_kernel, Z, y, Z, y, []), r"^ridges must hold at least one value",
                 id="kernel_ridge_error-ridges-empty"),
    pytest.param(lambda Z, y, bad: kernel_ridge_error(ntk_kernel, Z, y, Z, y, [-1.0]), r"^ridges must be ",
                 id="kernel_ridge_error-ridges-negative"),
    pytest.param(lambda Z, y, bad: sample_complexity({10: 0.1}, 1.5), r"^threshold must be ", id="sample_complexity-threshold"),
    pytest.param(lambda Z, y, bad: ntk_kernel(Z, Z[:, :2]), r"^A and B must be ", id="ntk_kernel-A-B-dimensions"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_labels_and_arguments(call, match):
    data = _data()
    with pytest.raises(ValueError, match=match):
        call(*data)
