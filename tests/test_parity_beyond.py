"""Tests of learnthy_nb.parity_beyond: exponential-decay fits and lazy (NTK-parametrised) training."""
import math

import numpy as np
import pytest
import torch

from learnthy_nb.core import DivergenceError
from learnthy_nb.parity import mfld_error_grid, ntk_kernel, sparse_parity
from learnthy_nb.parity_beyond import (NSTAR_CERTIFY_TOL, fit_exponential_decay, lazy_gradients, mfld_error_path,
                                       nstar_budget_change, train_lazy_parity)

CPU = torch.device("cpu")


def test_exponential_fit_recovers_slope_and_covers_it_under_noise():
    x = np.linspace(0.1, 1.0, 8)
    exact = fit_exponential_decay(x, 0.3 * np.exp(-5 * x))
    assert exact.exponent == pytest.approx(-5, abs=1e-9) and exact.prefactor == pytest.approx(0.3, rel=1e-9)
    rng = np.random.default_rng(0)
    noisy = 0.3 * np.exp(-5 * x)[:, None] * np.exp(0.1 * rng.standard_normal((8, 4)))
    fit = fit_exponential_decay(x, noisy)
    assert fit.ci_low < -5 < fit.ci_high and fit.ci_high - fit.ci_low < 1.0 and fit.n_points == 32


def test_exponential_fit_drops_zero_errors():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    err = np.array([0.2, 0.1, 0.05, 0.0, 0.0])
    fit = fit_exponential_decay(x, err)
    assert fit.n_points == 3 and fit.exponent == pytest.approx(-10 * math.log(2), rel=1e-9)


@pytest.mark.parametrize("x, err, match", [
    pytest.param(np.arange(4.0), np.ones(3) * 0.1, r"^err must have shape", id="err-shape"),
    pytest.param(np.arange(4.0), np.array([0.1, 0.1, 0.0, 0.0]), r"^err needs at least 3 positive values",
                 id="err-too-few-positive"),
    pytest.param(np.arange(3.0), np.array([0.1, 1.5, 0.1]), r"^err must be in \[0, 1\]", id="err-above-one"),
    pytest.param(np.array([0.0, np.nan, 1.0]), np.array([0.1, 0.1, 0.1]), r"^x and err must be finite", id="x-nan"),
    pytest.param(np.array([0.0, 1.0, 800.0]), np.array([0.1, 0.1, 0.1]), r"^x spans more than 700 units", id="x-span"),
])
def test_exponential_fit_rejects_bad_input(x, err, match):
    with pytest.raises(ValueError, match=match):
        fit_exponential_decay(x, err)


def test_lazy_gradients_match_autograd():
    g = torch.Generator().manual_seed(1)
    Z, y = sparse_parity(12, 7, 3, generator=g, device=CPU)
    W, b, a = (torch.randn(2, 10, 7, generator=g, dtype=torch.float64), torch.randn(2, 10, generator=g, dtype=torch.float64),
               torch.randn(2, 10, generator=g, dtype=torch.float64))
    Zd, yd = Z.double().expand(2, -1, -1), y.double().expand(2, -1)
    w = torch.full((2, 12), 1 / 12, dtype=torch.float64)
    ps = [p.clone().requires_grad_() for p in (W, b, a)]
    f = ((Zd @ ps[0].transpose(1, 2) + ps[1][:, None]).relu() @ ps[2][..., None]).squeeze(-1) / math.sqrt(10)
    loss = (w * torch.nn.functional.softplus(-yd * f)).sum(1)
    loss.sum().backward()
    dW, db, da, L = lazy_gradients(W, b, a, Zd, yd, w)
    assert torch.allclose(L, loss.detach(), atol=1e-12)
    for an, p in zip((dW, db, da), ps):
        assert torch.allclose(an, p.grad, atol=1e-12)


def test_lazy_training_is_lazier_when_wider_and_follows_the_ntk_at_init():
    g = torch.Generator().manual_seed(2)
    Z, y = sparse_parity(64, 6, 2, generator=g, device=CPU)
    moves = [float(train_lazy_parity(Z, y, width=m, lr=1.0, n_steps=50, generator=g).relative_movement())
             for m in (64, 4096)]
    assert moves[1] < moves[0] / 3          # relative movement ~ 1/sqrt(m): a factor 8 between these widths
    # the empirical NTK at initialisation converges to the closed form `ntk_kernel` (Monte-Carlo error ~ m^{-1/2})
    def ntk_gap(m):
        model = train_lazy_parity(Z, y, width=m, lr=1.0, n_steps=0, generator=g)
        W, b, a = model.W[0].double(), model.b[0].double(), model.a[0].double()
        P = Z.double() @ W.T + b
        emp = ((P > 0).double() * a**2) @ (P > 0).double().T * (Z.double() @ Z.double().T + 1) + P.relu() @ P.relu().T
        return float((emp / m - ntk_kernel(Z, Z)).abs().max())
    assert ntk_gap(32768) < ntk_gap(512) / 3    # a factor 8 expected between these widths


def test_lazy_training_learns_a_two_parity():
    g = torch.Generator().manual_seed(3)
    Z, y = sparse_parity(300, 6, 2, generator=g, device=CPU)
    Zt, yt = sparse_parity(2000, 6, 2, generator=g, device=CPU)
    model = train_lazy_parity(Z, y, width=512, lr=4.0, n_steps=400, generator=g)
    assert float(model.error(Zt, yt)) < 0.1
    assert float(model.error(Z, y)) < 0.05


def test_lazy_training_batches_runs_of_different_size():
    g = torch.Generator().manual_seed(4)
    data = [sparse_parity(n, 5, 2, generator=g, device=CPU) for n in (10, 30)]
    model = train_lazy_parity([z for z, _ in data], [t for _, t in data], width=16, lr=1.0, n_steps=3, generator=g)
    assert model.W.shape == (2, 16, 5) and model.error(*data[0]).shape == (2,)
    # each run is gradient descent on its own samples only (the padding has weight 0): replay it unpadded
    for r, (z, t) in enumerate(data):
        W, b, a = model.W0[r:r + 1].clone(), model.b0[r:r + 1].clone(), model.a0[r:r + 1].clone()
        w = torch.full((1, len(t)), 1 / len(t))
        for _ in range(3):
            dW, db, da, _ = lazy_gradients(W, b, a, z[None], t[None], w)
            W, b, a = W - dW, b - db, a - da
        for ours, theirs in ((W, model.W), (b, model.b), (a, model.a)):
            assert torch.allclose(ours[0], theirs[r], atol=1e-5)


def test_lazy_training_raises_on_divergence():
    g = torch.Generator().manual_seed(5)
    Z, y = sparse_parity(20, 5, 2, generator=g, device=CPU)
    with pytest.raises(DivergenceError):
        train_lazy_parity(Z, y, width=16, lr=1e38, n_steps=20, check_every=1, generator=g)


@pytest.mark.parametrize("kwargs, match", [
    pytest.param(dict(width=15), r"^width must be even", id="width-odd"),
    pytest.param(dict(width=0), r"^width must be ", id="width-zero"),
    pytest.param(dict(lr=0.0), r"^lr must be ", id="lr-zero"),
    pytest.param(dict(n_steps=-1), r"^n_steps must be ", id="n_steps-negative"),
    pytest.param(dict(bias=-1.0), r"^bias must be ", id="bias-negative"),
    pytest.param(dict(alpha=0.0), r"^alpha must be ", id="alpha-zero"),
])
def test_lazy_training_rejects_bad_arguments(kwargs, match):
    Z, y = sparse_parity(8, 4, 2, generator=torch.Generator().manual_seed(0), device=CPU)
    args = dict(width=8, lr=1.0, n_steps=1) | kwargs
    with pytest.raises(ValueError, match=match):
        train_lazy_parity(Z, y, **args)


@pytest.mark.parametrize("fit_with_bad_labels", [pytest.param(True, id="train_lazy_parity-y"),
                                                 pytest.param(False, id="LazyNetModel.error-y")])
def test_lazy_training_rejects_bad_labels(fit_with_bad_labels):
    Z, y = sparse_parity(8, 4, 2, generator=torch.Generator().manual_seed(0), device=CPU)
    if fit_with_bad_labels:
        with pytest.raises(ValueError, match=r"^y must contain only labels"):
            train_lazy_parity(Z, 0.5 * y, width=8, lr=1.0, n_steps=1)
    else:
        model = train_lazy_parity(Z, y, width=8, lr=1.0, n_steps=1)
        with pytest.raises(ValueError, match=r"^y must contain only labels"):
            model.error(Z, 2 * y)


def test_lazy_gradients_with_output_scale_match_autograd():
    g = torch.Generator().manual_seed(6)
    Z, y = sparse_parity(9, 5, 2, generator=g, device=CPU)
    W, b, a = (torch.randn(1, 6, 5, generator=g, dtype=torch.float64), torch.randn(1, 6, generator=g, dtype=torch.float64),
               torch.randn(1, 6, generator=g, dtype=torch.float64))
    Zd, yd, w, alpha = Z.double()[None], y.double()[None], torch.full((1, 9), 1 / 9, dtype=torch.float64), 7.0
    ps = [p.clone().requires_grad_() for p in (W, b, a)]
    f = alpha * ((Zd @ ps[0].transpose(1, 2) + ps[1][:, None]).relu() @ ps[2][..., None]).squeeze(-1) / math.sqrt(6)
    ((w * torch.nn.functional.softplus(-yd * f)).sum() / alpha**2).backward()
    for an, p in zip(lazy_gradients(W, b, a, Zd, yd, w, alpha)[:3], ps):
        assert torch.allclose(an, p.grad, atol=1e-12)


def test_output_scale_makes_training_lazy_without_changing_the_function_much():
    g = torch.Generator().manual_seed(7)
    Z, y = sparse_parity(64, 6, 2, generator=g, device=CPU)
    Zt, _ = sparse_parity(500, 6, 2, generator=g, device=CPU)
    runs = {}
    for alpha in (1.0, 10.0, 100.0):
        g.manual_seed(8)                     # the same initialisation for every alpha
        runs[alpha] = train_lazy_parity(Z, y, width=256, lr=1.0, n_steps=30, alpha=alpha, generator=g)
    move = {a: float(m.relative_movement()) for a, m in runs.items()}
    assert move[10.0] == pytest.approx(move[1.0] / 10, rel=0.2) and move[100.0] == pytest.approx(move[1.0] / 100, rel=0.05)
    # the function converges as alpha grows (to the linearised dynamics): the gap shrinks by about 10x
    gap = lambda a1, a2: float((runs[a1].decision(Zt) - runs[a2].decision(Zt)).abs().max())
    assert gap(10.0, 100.0) < gap(1.0, 100.0) / 4


_PATH = dict(n_test=200, n_particles=16, eta=0.5, lam=1e-3, lam1=1.0)


def test_error_path_equals_runs_stopped_at_each_budget():
    errors, losses, model = mfld_error_path(5, [20, 40], 2, 2, budgets=[10, 30], generator=torch.Generator().manual_seed(1),
                                            **_PATH)
    assert errors.shape == losses.shape == (2, 2, 2) and model.particles.shape == (4, 16, 7)
    for j, T in enumerate([10, 30]):
        grid, _ = mfld_error_grid(5, [20, 40], 2, 2, n_steps=T, generator=torch.Generator().manual_seed(1), **_PATH)
        assert np.array_equal(errors[j], grid)
    assert np.all(losses > 0) and np.all(np.isfinite(losses))


@pytest.mark.parametrize("budgets", [[], [30, 10], [10, 10], [0, 5], [2.5]])
def test_error_path_rejects_bad_budgets(budgets):
    with pytest.raises(ValueError, match="^budgets must be"):
        mfld_error_path(5, [20], 2, 1, budgets=budgets, **_PATH)


def test_nstar_budget_change():
    assert 0 < NSTAR_CERTIFY_TOL < 1
    assert nstar_budget_change([100, 100], [90, 90]) == pytest.approx(1 / 9)
    assert nstar_budget_change([50], [50]) == 0.0
    assert nstar_budget_change([math.inf], [50]) == math.inf
