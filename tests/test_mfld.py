"""Unit tests of learnthy_nb.mfld: the MFLD solver, its estimators, the reference solvers and validation."""
import itertools
import math

import numpy as np
import pytest
import torch

from learnthy_nb.core import DivergenceError
from learnthy_nb.mfld import (ESTIMATORS, FiniteSumGradient, MeanFieldNet, MeanFieldRegression, gibbs_fixed_point_grid,
                              gibbs_log_density, grid_points, knn_entropy, run_mfld, sample_from_grid, sarah_direction,
                              svrg_direction)


def small_problem(n=12, n_configs=1, loss="squared", dtype=torch.float64, **net_kwargs):
    x = torch.linspace(-2, 2, n, dtype=dtype)[:, None]
    y = 0.6 * torch.tanh(3 * x[:, 0] - 1)
    if loss == "logistic":
        y = torch.where(y >= 0, 1.0, -1.0).to(dtype)
    net = MeanFieldNet(1, **net_kwargs)
    return MeanFieldRegression(net, x, y, l2=0.2, loss=loss, n_configs=n_configs)


# ---------------------------------------------------------------- vanilla Langevin: discrete stationary law
@pytest.mark.parametrize("a,lam,eta", [(2.0, 0.5, 0.3), (1.0, 0.2, 0.8), (4.0, 1.0, 0.05)])
def test_gld_quadratic_reaches_discrete_stationary_variance(a, lam, eta):
    M = 40_000
    n_steps = int(math.ceil(12 / (eta * a)))   # (1 - eta a)^(2 n) < e^-24 of the initial variance 0 -> converged
    X = run_mfld(lambda x: a * x, torch.zeros(M, 1, dtype=torch.float64), eta=eta, lam=lam, n_steps=n_steps,
                 generator=torch.Generator().manual_seed(3))
    v_discrete = lam / (a * (1 - eta * a / 2))
    se = v_discrete * math.sqrt(2 / M)
    assert abs(float(X.var()) - v_discrete) < 4 * se
    if eta * a > 0.2:                             # then the continuous-time value lam / a is excluded
        assert abs(float(X.var()) - lam / a) > 8 * se


def test_per_column_step_sizes_give_per_column_stationary_laws():
    a, lam = 1.0, 0.5
    etas = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    M = 40_000
    X = run_mfld(lambda x: a * x, torch.zeros(M, 3, dtype=torch.float64), eta=etas, lam=lam, n_steps=150,
                 generator=torch.Generator().manual_seed(4))
    expected = lam / (a * (1 - etas * a / 2))
    se = expected * math.sqrt(2 / M)
    assert torch.all((X.var(0) - expected).abs() < 4 * se)


def test_zero_temperature_is_gradient_descent():
    X0 = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    X = run_mfld(lambda x: x, X0, eta=0.5, lam=0.0, n_steps=3)
    assert torch.allclose(X, X0 * 0.5 ** 3)


# ---------------------------------------------------------------- the grid fixed point
def test_grid_fixed_point_matches_closed_form_interacting_problem():
    # F(mu) = int a x^2/2 dmu + c/2 (int x dmu)^2 + b int x dmu: p_mu = N(-(c m + b)/a, lam/a), so m* = -b/(a + c)
    a, b, c, lam = 1.5, 0.7, 2.0, 0.3

    def first_variation(points, masses):
        m = (masses * points[:, 0]).sum()
        return 0.5 * a * points[:, 0] ** 2 + (c * m + b) * points[:, 0]

    sol = gibbs_fixed_point_grid(first_variation, [torch.linspace(-6, 6, 2401, dtype=torch.float64)], lam=lam, damping=0.5, tol=1e-12)
    mean = float((sol.masses * sol.points[:, 0]).sum())
    var = float((sol.masses * sol.points[:, 0] ** 2).sum()) - mean ** 2
    assert mean == pytest.approx(-b / (a + c), abs=1e-8)
    assert var == pytest.approx(lam / a, abs=1e-6)
    # and it is a fixed point: mu = p_mu
    log_p, _ = gibbs_log_density(first_variation(sol.points, sol.masses), lam, sol.cell_volume)
    assert float((log_p.exp() - sol.masses).abs().sum()) < 1e-11


def test_grid_fixed_point_solves_self_consistency_for_network_2d():
    prob = small_problem()
    lam = 0.05
    sol = gibbs_fixed_point_grid(prob.first_variation, [torch.linspace(-5, 5, 81)] * 2, lam=lam, tol=1e-10)
    log_p, log_z = gibbs_log_density(prob.first_variation(sol.points, sol.masses), lam, sol.cell_volume)
    assert float((log_p.exp() - sol.masses).abs().sum()) < 1e-9
    assert sol.masses.sum().item() == pytest.approx(1.0, abs=1e-12)
    # strong duality at the optimum, weak duality elsewhere
    f_star = sol.masses @ prob.grid_neurons(sol.points)
    L_star = prob.grid_objective(sol)
    assert float(prob.dual(f_star[None], sol.points, sol.cell_volume, lam)) == pytest.approx(L_star, abs=1e-9)
    other = torch.stack([f_star + 0.1, 0.5 * f_star, torch.zeros_like(f_star)])
    assert torch.all(prob.dual(other, sol.points, sol.cell_volume, lam) < L_star)


def test_primal_dual_gap_is_lam_kl():
    for loss in ("squared", "logistic"):
        prob = small_problem(loss=loss)
        pts, vol = grid_points([torch.linspace(-4, 4, 61, dtype=torch.float64)] * 2)
        q = torch.exp(-((pts - torch.tensor([1.0, -0.5], dtype=torch.float64)) ** 2).sum(-1))
        q = q / q.sum()
        lam = 0.1
        f_q = q @ prob.grid_neurons(pts)
        ent = float((q * (q.log() - math.log(vol))).sum())
        primal = float(prob.loss_values(f_q, prob.y).mean() + 0.5 * prob.l2 * (q * (pts ** 2).sum(-1)).sum()) + lam * ent
        log_p, _ = gibbs_log_density(prob.first_variation(pts, q), lam, vol)
        kl = float((q * (q.log() - log_p)).sum())
        gap = primal - float(prob.dual(f_q[None], pts, vol, lam))
        assert gap == pytest.approx(lam * kl, abs=1e-9) and gap > 1e-3


def test_sample_from_grid_matches_grid_moments():
    sol = gibbs_fixed_point_grid(lambda p, m: 0.5 * (p ** 2).sum(-1), [torch.linspace(-6, 6, 241)] * 2, lam=0.5,
                                 damping=1.0)
    s = sample_from_grid(sol, 50_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert s.shape == (50_000, 2)
    assert torch.allclose(s.var(0), torch.full((2,), 0.5, dtype=torch.float64), rtol=0.03)


# ---------------------------------------------------------------- k-NN entropy
@pytest.mark.parametrize("p", [1, 2, 3])
def test_knn_entropy_of_gaussian_within_known_bias(p):
    gen = torch.Generator().manual_seed(p)
    A = torch.randn(p, p, generator=gen, dtype=torch.float64) + 2 * torch.eye(p, dtype=torch.float64)
    cov = A @ A.T
    h_true = 0.5 * math.log(float(torch.linalg.det(2 * math.pi * math.e * cov)))
    est = [knn_entropy(torch.randn(2000, p, generator=gen, dtype=torch.float64) @ A.T, k=k)
           for k in (1, 3) for _ in range(4)]
    # the KL estimator's bias at N = 2000 in dimension <= 3 is a few hundredths of a nat
    assert abs(np.mean(est) - h_true) < 0.05


def test_knn_entropy_of_uniform_cube():
    x = torch.rand(5000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
    assert knn_entropy(x, k=2) == pytest.approx(math.log(9.0), abs=0.05)


# ---------------------------------------------------------------- estimators
def test_svrg_and_sarah_directions_are_exactly_unbiased_over_all_minibatches():
    prob = small_problem(n=10)
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    X_old = X + 0.3 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    v_old = prob(X_old) + 0.1 * torch.randn(6, 2, generator=gen, dtype=torch.float64)   # any past direction
    subsets = [torch.tensor(s) for s in itertools.combinations(range(10), 3)]
    mean_svrg = torch.stack([svrg_direction(prob, X, X_old, prob(X_old), s) for s in subsets]).mean(0)
    mean_sarah = torch.stack([sarah_direction(prob, X, X_old, v_old, s) for s in subsets]).mean(0)
    mean_sgd = torch.stack([prob.component_grad(X, s) for s in subsets]).mean(0)
    assert torch.allclose(mean_svrg, prob(X), atol=1e-12)
    assert torch.allclose(mean_sgd, prob(X), atol=1e-12)
    assert torch.allclose(mean_sarah, prob(X) + (v_old - prob(X_old)), atol=1e-12)


@pytest.mark.parametrize("estimator", ["sgd", "svrg", "sarah"])
def test_estimators_inside_run_mfld_are_unbiased_over_draws(estimator):
    # lam = 0: step 0 is deterministic for svrg/sarah (exact gradient), so E[X_2] = X_1 - eta G(X_1) exactly
    prob = small_problem(n=12)
    X0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eta = 0.3
    X1 = X0 - eta * prob(X0)
    expected = X1 - eta * prob(X1)
    if estimator == "sgd":                   # both steps random: compare one step only
        expected, n_steps = X1, 1
    else:
        n_steps = 2
    draws = torch.stack([run_mfld(prob, X0, eta=eta, lam=0.0, n_steps=n_steps, estimator=estimator, batch_size=3,
                                  epoch_length=4, generator=torch.Generator().manual_seed(s)) for s in range(600)])
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert torch.all((draws.mean(0) - expected).abs() < 5 * se + 1e-12)
    assert float(draws.std(0).max()) > 1e-4          # the estimator is random, so the check is not vacuous


def test_gradient_budget_counts():
    prob = small_problem(n=12)
    X0 = torch.zeros(4, 2, dtype=torch.float64)
    for estimator, expected in (("full", 5 * 12), ("sgd", 5 * 3), ("svrg", 12 + 3 * 6 + 12), ("sarah", 12 + 3 * 6 + 12)):
        counts = []
        run_mfld(prob, X0, eta=0.1, lam=0.01, n_steps=5, estimator=estimator, batch_size=3, epoch_length=4,
                 callback=lambda k, X, n: counts.append(n))
        assert counts[-1] == expected and len(counts) == 5


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_seeded_runs_are_bit_reproducible(estimator):
    prob = small_problem(n=12, dtype=torch.float32)
    X0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(eta=0.1, lam=0.02, n_steps=30, estimator=estimator, batch_size=4)
    a = run_mfld(prob, X0, generator=torch.Generator().manual_seed(7), **kw)
    b = run_mfld(prob, X0, generator=torch.Generator().manual_seed(7), **kw)
    c = run_mfld(prob, X0, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(X0, torch.randn(64, 2, generator=torch.Generator().manual_seed(0)))   # input not modified


def test_configurations_side_by_side_equal_separate_problems():
    gen = torch.Generator().manual_seed(9)
    blocks = torch.randn(3, 8, 2, generator=gen, dtype=torch.float64)
    stacked = small_problem(n_configs=3)
    single = small_problem()
    X = blocks.transpose(0, 1).reshape(8, 6)
    G = stacked(X)
    idx = torch.tensor([1, 4, 7])
    Gi = stacked.component_grad(X, idx)
    for b in range(3):
        assert torch.allclose(G[:, 2 * b:2 * b + 2], single(blocks[b]), atol=1e-12)
        assert torch.allclose(Gi[:, 2 * b:2 * b + 2], single.component_grad(blocks[b], idx), atol=1e-12)
        assert torch.allclose(stacked.risk(X)[b], single.risk(blocks[b])[0])


# ---------------------------------------------------------------- the network
@pytest.mark.parametrize("kwargs,loss", [({}, "squared"), ({"output_weight": True, "scale": 2.0}, "logistic"),
                                         ({"activation": "relu", "output_weight": True}, "squared"),
                                         ({"bias": False}, "squared")])
def test_analytic_gradient_is_M_times_autograd(kwargs, loss):
    prob = small_problem(loss=loss, **kwargs)
    p = prob.net.particle_dim
    th = torch.randn(9, p, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    prob.risk(th)[0].backward()
    assert torch.allclose(prob(th.detach()), th.shape[0] * th.grad, atol=1e-12)


class _SameNeuronSubclass(MeanFieldNet):
    """The same neuron through the generic hooks (`_features`/`_pullback` overridden): no fused path."""

    def _features(self, particles, X):
        return MeanFieldNet._features(self, particles, X)

    def _pullback(self, particles, X, cache, weights):
        return MeanFieldNet._pullback(self, particles, X, cache, weights)


@pytest.mark.parametrize("kwargs", [{}, {"output_weight": True, "scale": 2.0}, {"activation": "relu", "output_weight": True},
                                    {"bias": False, "activation": "relu"}])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("n_configs", [1, 3])
def test_fused_gradient_equals_generic_pullback(kwargs, loss, n_configs):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = torch.sign(torch.randn(40, generator=gen, dtype=torch.float64))
    fused = MeanFieldRegression(MeanFieldNet(3, **kwargs), X, y, l2=0.1, loss=loss, n_configs=n_configs)
    generic = MeanFieldRegression(_SameNeuronSubclass(3, **kwargs), X, y, l2=0.1, loss=loss, n_configs=n_configs)
    assert fused.net._fused() and not generic.net._fused()
    th = torch.randn(11, n_configs * fused.net.particle_dim, generator=gen, dtype=torch.float64)
    idx = torch.tensor([0, 7, 8, 31])
    for _ in range(2):                                   # the second call reuses the workspace buffer
        assert torch.allclose(fused(th), generic(th), atol=1e-12)
        assert torch.allclose(fused.last_outputs, generic.last_outputs, atol=1e-12)
        assert torch.allclose(fused.component_grad(th, idx), generic.component_grad(th, idx), atol=1e-12)
    # the workspace does not leak into results the caller keeps
    g1 = fused(th).clone()
    fused(th + 1.0)
    assert torch.allclose(g1, generic(th), atol=1e-12)


def test_mean_field_net_forward_and_shapes():
    net = MeanFieldNet(3, output_weight=True, scale=1.5)
    assert net.particle_dim == 5
    th = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(0))
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    f = net(th, X)
    direct = (1.5 * th[..., 4:5] * torch.tanh(th[..., :3] @ X.T + th[..., 3:4])).mean(-2)
    assert f.shape == (2, 4) and torch.allclose(f, direct, atol=1e-6)
    masses = torch.full((2, 7), 1 / 7)
    assert torch.allclose(net.forward(th, X, masses), f, atol=1e-6)


# ---------------------------------------------------------------- validation
def _grad(x):
    return x


def _X():
    return torch.zeros(4, 2)


def _Xp():
    return torch.zeros(4, 2, dtype=torch.float64)


RUN_MFLD_BAD_CALLS = [
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.0, lam=0.1, n_steps=1), r"^eta must be ", id="eta-zero"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=-1.0, lam=0.1, n_steps=1), r"^eta must be ", id="eta-negative"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=float("nan"), lam=0.1, n_steps=1), r"^eta must be ", id="eta-nan"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=torch.tensor([0.1, 0.0]), lam=0.1, n_steps=1), r"^eta must be > 0",
                 id="eta-tensor-with-zero"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=torch.tensor([0.1, 0.1, 0.1]), lam=0.1, n_steps=1),
                 r"^eta as a tensor must broadcast to particles", id="eta-tensor-shape"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.1, lam=-0.1, n_steps=1), r"^lam must be ", id="lam-negative"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.1, lam=torch.tensor([0.1, -1.0]), n_steps=1), r"^lam must be >= 0",
                 id="lam-tensor-negative"),
    pytest.param(lambda: run_mfld(_grad, torch.zeros(4), eta=0.1, lam=0.1, n_steps=1),
                 r"^particles must be a tensor \[M, p\] or \[\.\.\., M, p\]", id="particles-1d"),
    pytest.param(lambda: run_mfld(_grad, torch.zeros(2, 0, 2), eta=0.1, lam=0.1, n_steps=1),
                 r"^particles must have M >= 1 rows", id="particles-empty"),
    pytest.param(lambda: run_mfld(_grad, np.zeros((4, 2)), eta=0.1, lam=0.1, n_steps=1),
                 r"^particles must be a tensor \[M, p\]", id="particles-numpy"),
    pytest.param(lambda: run_mfld(_grad, torch.zeros(4, 2), eta=0.1, lam=0.1, n_steps=1, check_every=0),
                 r"^check_every must be an integer in \[1, inf\)", id="check_every-zero"),
    pytest.param(lambda: run_mfld(_grad, torch.tensor([[0.0], [float("nan")]]), eta=0.1, lam=0.1, n_steps=1),
                 r"^particles must be finite", id="particles-nan"),
    pytest.param(lambda: run_mfld(lambda x: x[:, :1], _X(), eta=0.1, lam=0.1, n_steps=1),
                 r"^grad_first_variation must return a tensor shaped like particles", id="gradient-shape"),
    pytest.param(lambda: run_mfld(lambda x: x.numpy(), _X(), eta=0.1, lam=0.1, n_steps=1),
                 r"^grad_first_variation must return a tensor shaped like particles", id="gradient-numpy"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.1, lam=0.1, n_steps=-1), r"^n_steps must be ", id="n_steps-negative"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.1, lam=0.1, n_steps=1, estimator="adam"), r"^estimator must be one of",
                 id="estimator-unknown"),
    pytest.param(lambda: run_mfld(_grad, _X(), eta=0.1, lam=0.1, n_steps=1, estimator="svrg", batch_size=1),
                 r"^estimator='svrg' needs grad_first_variation to follow the FiniteSumGradient",
                 id="svrg-needs-finite-sum"),
    pytest.param(lambda: run_mfld(small_problem(n=12), _Xp(), eta=0.1, lam=0.1, n_steps=1, estimator="sgd"),
                 r"^estimator='sgd' needs batch_size", id="sgd-batch_size-missing"),
    pytest.param(lambda: run_mfld(small_problem(n=12), _Xp(), eta=0.1, lam=0.1, n_steps=1, estimator="sgd", batch_size=13),
                 r"^batch_size must be ", id="batch_size-above-n"),
    pytest.param(lambda: run_mfld(small_problem(n=12), _Xp(), eta=0.1, lam=0.1, n_steps=1, estimator="sarah", batch_size=2,
                                  epoch_length=0), r"^epoch_length must be ", id="epoch_length-zero"),
]


@pytest.mark.parametrize("call,match", RUN_MFLD_BAD_CALLS)
def test_value_errors_of_run_mfld(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_regression_problem_is_a_finite_sum():
    assert isinstance(small_problem(n=12), FiniteSumGradient)


def test_divergence_error_names_the_step():
    with pytest.raises(DivergenceError, match=r"at step \d+"):
        run_mfld(lambda x: -x * 1e30, torch.ones(3, 1), eta=10.0, lam=0.0, n_steps=50)
    with pytest.raises(DivergenceError, match="at step 3 "):
        run_mfld(lambda x: x * float("nan") if bool((x > 1.5).any()) else -torch.ones_like(x), torch.ones(3, 1),
                 eta=0.3, lam=0.0, n_steps=10)


def _line(p, m):
    return p[:, 0]


HELPER_BAD_CALLS = [
    pytest.param(lambda: knn_entropy(torch.zeros(10)), r"^samples must be a 2-D tensor", id="knn_entropy-samples-1d"),
    pytest.param(lambda: knn_entropy(torch.randn(10, 2), k=0), r"^k must be ", id="knn_entropy-k-zero"),
    pytest.param(lambda: knn_entropy(torch.randn(3, 2), k=3), r"^samples must have at least k \+ 1 = 4 rows",
                 id="knn_entropy-samples-fewer-than-k"),
    pytest.param(lambda: knn_entropy(torch.zeros(10, 2)), r"^samples contain repeated points", id="knn_entropy-samples-repeated"),
    pytest.param(lambda: gibbs_fixed_point_grid(_line, [torch.linspace(0, 1, 5)], lam=0.0), r"^lam must be ",
                 id="gibbs_fixed_point_grid-lam-zero"),
    pytest.param(lambda: gibbs_fixed_point_grid(_line, [torch.linspace(0, 1, 5)] * 3, lam=1.0), r"^axes must hold 1 or 2",
                 id="gibbs_fixed_point_grid-three-axes"),
    pytest.param(lambda: gibbs_fixed_point_grid(_line, [torch.tensor([0.0, 0.1, 0.5, 0.6])], lam=1.0),
                 r"^axes\[0\] must be increasing and uniformly spaced", id="gibbs_fixed_point_grid-axis-not-uniform"),
    pytest.param(lambda: gibbs_fixed_point_grid(_line, [torch.linspace(0, 1, 5)], lam=1.0, damping=1.5), r"^damping must be ",
                 id="gibbs_fixed_point_grid-damping-above-one"),
    pytest.param(lambda: MeanFieldNet(2, activation="gelu"), r"^activation must be ", id="MeanFieldNet-activation"),
    pytest.param(lambda: MeanFieldNet(0), r"^input_dim must be ", id="MeanFieldNet-input_dim-zero"),
    pytest.param(lambda: MeanFieldNet(2)(torch.zeros(4, 5), torch.zeros(3, 2)), r"^particles must have shape",
                 id="MeanFieldNet-particles-shape"),
    pytest.param(lambda: MeanFieldNet(2)(torch.zeros(4, 3), torch.zeros(3, 4)), r"^X must have shape", id="MeanFieldNet-X-shape"),
    pytest.param(lambda: MeanFieldRegression(MeanFieldNet(2), torch.zeros(3, 2), torch.tensor([1.0, 0.0, -1.0]), l2=0.1,
                                             loss="logistic"), r"^y must take values in \{-1, 1\}",
                 id="MeanFieldRegression-y-not-labels"),
    pytest.param(lambda: MeanFieldRegression(MeanFieldNet(2), torch.zeros(3, 2), torch.zeros(3), l2=0.1, loss="hinge"),
                 r"^loss must be one of", id="MeanFieldRegression-loss-unknown"),
    pytest.param(lambda: MeanFieldRegression(MeanFieldNet(2), torch.zeros(3, 2), torch.zeros(3), l2=-1.0), r"^l2 must be ",
                 id="MeanFieldRegression-l2-negative"),
    pytest.param(lambda: MeanFieldRegression(MeanFieldNet(2), torch.zeros(3, 2), torch.zeros(3), l2=0.1, n_configs=2)(
                 torch.zeros(4, 3)), r"^particles must have 2 \* 3 columns", id="MeanFieldRegression-particles-columns"),
]


@pytest.mark.parametrize("call,match", HELPER_BAD_CALLS)
def test_value_errors_of_helpers(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gibbs_fixed_point_grid_reports_no_convergence():
    with pytest.raises(RuntimeError, match="did not reach"):
        gibbs_fixed_point_grid(_line, [torch.linspace(0, 1, 5)], lam=1.0, damping=0.01, max_iter=3)


def test_last_outputs_are_the_outputs_of_the_last_full_gradient_call():
    prob = small_problem(n_configs=2)
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prob(X)
    assert torch.allclose(prob.last_outputs, prob.outputs(X))
    prob.component_grad(X + 1, torch.tensor([0, 1]))       # a minibatch call does not overwrite them
    assert torch.allclose(prob.last_outputs, prob.outputs(X))


def test_batched_systems_are_independent():
    """particles [B, M, p]: each system follows its own empirical measure (here the mean-field force pulls every
    particle towards the mean of its own system), and the noise is drawn in one tensor per step."""
    def towards_own_mean(X):
        return X - X.mean(-2, keepdim=True)
    X0 = torch.stack([torch.zeros(50, 1), torch.full((50, 1), 10.0)])
    X0 = X0 + torch.linspace(-1, 1, 50).reshape(1, 50, 1)
    out = run_mfld(towards_own_mean, X0, eta=0.1, lam=0.0, n_steps=200, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 50, 1)
    assert torch.allclose(out[0], torch.zeros(50, 1), atol=1e-6) and torch.allclose(out[1], torch.full((50, 1), 10.0), atol=1e-5)
    noisy = run_mfld(towards_own_mean, X0, eta=0.1, lam=0.5, n_steps=400, generator=torch.Generator().manual_seed(0))
    # Around its own mean each system is a discrete OU process, x <- 0.9 x + sqrt(0.1) xi: variance 0.1 / 0.19 = 0.53.
    # The mean has no restoring force: it diffuses with sd sqrt(400 * 0.1 / 50) = 0.89, so the two means stay
    # 10 apart up to sd 1.26 (4 is over 3 sd); pulled into one system they would merge.
    assert abs(float(noisy[1].mean() - noisy[0].mean()) - 10.0) < 4.0
    assert 0.35 < float(noisy[0].var()) < 0.75 and 0.35 < float(noisy[1].var()) < 0.75


def test_divergence_is_found_between_checks():
    """With check_every=5 the host looks every 5 steps, but the step named is still the first non-finite one."""
    calls = []
    def grad(X):
        calls.append(1)
        return X * float("nan") if len(calls) == 3 else -torch.ones_like(X)
    with pytest.raises(DivergenceError, match="at step 3 "):
        run_mfld(grad, torch.ones(3, 1), eta=0.3, lam=0.0, n_steps=10, check_every=5)
    assert len(calls) == 5                                   # it ran on to the check, then stopped


def test_fused_tanh_gradient_matches_autograd_float64():
    """The fused path (sigmoid form of tanh, transposed matmul) equals autograd of the averaged loss, in float64."""
    g = torch.Generator().manual_seed(0)
    net = MeanFieldNet(3, output_weight=True, scale=2.0)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, generator=g, dtype=torch.float64)
    problem = MeanFieldRegression(net, X, y, l2=0.0)
    theta = torch.randn(7, net.particle_dim, generator=g, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * ((net.forward(theta, X) - y) ** 2).mean()
    (auto,) = torch.autograd.grad(loss, theta)
    assert torch.allclose(problem(theta.detach()), 7 * auto, atol=1e-12)


def test_side_by_side_layout_round_trips_and_rejects_bad_shapes():
    from learnthy_nb.mfld import blocks_of, side_by_side
    X = torch.randn(4, 6, 3, dtype=torch.float64)
    S = side_by_side(X)
    assert S.shape == (6, 12) and torch.equal(S[:, 3:6], X[1]) and torch.equal(blocks_of(S, 3), X)
    with pytest.raises(ValueError, match=r"^blocks must be a tensor \[B, M, p\]"):
        side_by_side(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"^particles must be a tensor \[M, B \* p\] with p = 3"):
        blocks_of(torch.zeros(4, 7), 3)


def test_ergodic_averages_match_a_hand_accumulation_and_the_stationary_law():
    from learnthy_nb.mfld import blocks_of, ergodic_averages
    net = MeanFieldNet(1)
    x = torch.linspace(-1, 1, 12, dtype=torch.float64)[:, None]
    problem = MeanFieldRegression(net, x, torch.tanh(2 * x[:, 0]), l2=1.0, n_configs=2)
    X0 = torch.randn(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f, m2 = ergodic_averages(problem, X0, eta=0.05, lam=0.02, n_burn=3, n_avg=10,
                             generator=torch.Generator().manual_seed(1))
    kept_f, kept_m = [], []

    def keep(k, X, n):
        if k > 3:
            kept_f.append(problem.last_outputs.clone())
            kept_m.append(blocks_of(X, 2).square().sum(-1).mean(-1))

    run_mfld(problem, X0, eta=0.05, lam=0.02, n_steps=13, generator=torch.Generator().manual_seed(1), callback=keep)
    assert f.shape == (2, 12) and m2.shape == (2,) and f.dtype == m2.dtype == torch.float64
    assert torch.allclose(f, torch.stack(kept_f).mean(0)) and torch.allclose(m2, torch.stack(kept_m).mean(0))
    # ergodicity: after a long burn-in the averages forget the start (two starts far apart agree within 10%)
    far = X0 + 3.0
    _, m2_a = ergodic_averages(problem, X0, eta=0.05, lam=0.02, n_burn=600, n_avg=600,
                               generator=torch.Generator().manual_seed(2))
    _, m2_b = ergodic_averages(problem, far, eta=0.05, lam=0.02, n_burn=600, n_avg=600,
                               generator=torch.Generator().manual_seed(3))
    assert float(far.square().sum(-1).mean() / 2) > 3 * float(m2_a.max())        # the far start is far
    assert torch.allclose(m2_a, m2_b, rtol=0.1), (m2_a, m2_b)


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(n_burn=-1, n_avg=5), r"^n_burn must be an integer in \[0, inf\)", id="n_burn-negative"),
    pytest.param(dict(n_burn=0, n_avg=0), r"^n_avg must be an integer in \[1, inf\)", id="n_avg-zero"),
])
def test_ergodic_averages_reject_bad_lengths(kwargs, match):
    from learnthy_nb.mfld import ergodic_averages
    net = MeanFieldNet(1)
    x = torch.linspace(-1, 1, 4)[:, None]
    problem = MeanFieldRegression(net, x, x[:, 0], l2=0.1)
    with pytest.raises(ValueError, match=match):
        ergodic_averages(problem, torch.zeros(5, 2), eta=0.1, lam=0.01, **kwargs)
