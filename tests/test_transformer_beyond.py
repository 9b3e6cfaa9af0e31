"""Tests of the baselines of the beyond chapter (parameter-matched MLP width and kernel ridge, exported by the
transformer chapter) and of learnthy_nb.transformer_beyond.run_config."""
import math

import numpy as np
import pytest
import torch

from learnthy_nb.transformer import FlatMLP, TokenSelectionTask, kernel_ridge_excess_risk, matched_mlp_width, n_parameters
from learnthy_nb.transformer_beyond import run_config


@pytest.mark.parametrize("L,k,budget,depth", [(8, 4, 9000, 2), (128, 64, 9000, 2), (32, 4, 5000, 2),
                                              (8, 4, 2000, 1), (16, 8, 20000, 3), (1, 1, 10, 2)])
def test_matched_width_is_the_largest_that_fits(L, k, budget, depth):
    w = matched_mlp_width(L, k, budget, depth)
    assert w >= 1
    assert n_parameters(FlatMLP(L, k, w, depth)) <= budget or w == 1
    assert n_parameters(FlatMLP(L, k, w + 1, depth)) > budget


def test_matched_width_shrinks_with_input_dimension():
    widths = [matched_mlp_width(8, k, 10_000) for k in (4, 16, 64)]
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize("kw,name", [pytest.param(dict(L=0, k=4, budget=100), "L", id="L-zero"),
                                     pytest.param(dict(L=4, k=0, budget=100), "k", id="k-zero"),
                                     pytest.param(dict(L=4, k=4, budget=0), "budget", id="budget-zero"),
                                     pytest.param(dict(L=4, k=4, budget=100, depth=0), "depth", id="depth-zero")])
def test_matched_width_errors(kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        matched_mlp_width(**kw)


def _var_f(task):
    X, _ = task.sample(20_000, torch.Generator().manual_seed(1))
    return float(task.regression_function(X).var())


def test_kernel_ridge_learns_a_low_dimensional_target():
    task = TokenSelectionTask(L=1, k=2, smoothness=1.0, noise_std=0.1)
    X, y = task.sample(400, torch.Generator().manual_seed(0))
    risk = kernel_ridge_excess_risk(task, X, y, n_test=2000)
    assert risk < 0.1 * _var_f(task)
    # deterministic given the test generator
    again = kernel_ridge_excess_risk(task, X, y, n_test=2000, generator=torch.Generator().manual_seed(0))
    assert risk == again                                        # None is the seed-0 CPU generator
    # float64 inputs and an explicit ridge grid
    risk64 = kernel_ridge_excess_risk(task, X.double(), y.double(), n_test=2000, ridges=(1e-4, 1e-3),
                                      generator=torch.Generator().manual_seed(3))
    assert math.isfinite(risk64) and risk64 < 0.1 * _var_f(task)


def test_kernel_ridge_fails_on_a_long_window():
    # The same kind of target read out of L = 32 tokens of dimension 4: the flattened input has 128
    # coordinates, and 300 samples leave the kernel near the constant predictor even with its bandwidth and
    # ridge tuned on held-out data over wide grids (core.rbf_kernel_ridge's defaults).
    task = TokenSelectionTask(L=32, k=4, smoothness=1.0, noise_std=0.1, key_gap=0.1)
    X, y = task.sample(300, torch.Generator().manual_seed(0))
    assert kernel_ridge_excess_risk(task, X, y, n_test=1000) > 0.5 * _var_f(task)


# each call gets (task, X, y): a task with L = 2, k = 3 and 50 samples of it
KERNEL_RIDGE_BAD_CALLS = [
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X[0], y, n_test=10), r"^X must be a 3-D tensor",
                 id="X-2d"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X[:, :, :2], y, n_test=10),
                 r"^X must have shape \[n, L=2, k=3\]", id="X-k"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X, y[:-1], n_test=10),
                 r"^y must be a tensor of shape \[n=50\]", id="y-length"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X, y, n_test=0), r"^n_test must be ", id="n_test-zero"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X, y, n_test=10, ridges=()),
                 r"^ridges must be a non-empty sequence", id="ridges-empty"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X, y, n_test=10, ridges=(0.1, -1.0)),
                 r"^ridges\[1\] must be ", id="ridges-negative"),
    pytest.param(lambda task, X, y: kernel_ridge_excess_risk(task, X[:5], y[:5], n_test=10),
                 r"^n \(X\.shape\[0\]\) must be an integer in \[10, inf\)", id="X-too-few-samples"),
]


@pytest.mark.parametrize("call, match", KERNEL_RIDGE_BAD_CALLS)
def test_kernel_ridge_errors(call, match):
    task = TokenSelectionTask(L=2, k=3, smoothness=1.0, noise_std=0.1)
    X, y = task.sample(50, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        call(task, X, y)


def test_kernel_ridge_matches_the_sklearn_parametrisation():
    # sklearn's KernelRidge(kernel="rbf", gamma, alpha) solves (K + alpha I) a = y with exp(-gamma d^2): the same
    # kernel with bandwidth sqrt(1 / (2 gamma)) and core's ridge alpha / n give the same predictor
    from functools import partial
    from learnthy_nb.core import kernel_ridge, median_bandwidth, rbf_kernel
    X = torch.rand(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.sin(3 * X[:, 0])
    bw = median_bandwidth(X) / math.sqrt(2)
    gamma = 1 / (2 * bw ** 2)
    K = torch.exp(-gamma * torch.cdist(X, X) ** 2)
    alpha = 0.1
    direct = K @ torch.linalg.solve(K + alpha * torch.eye(60, dtype=torch.float64), y)
    fit = kernel_ridge(partial(rbf_kernel, bandwidth=bw), X, y, ridges=[alpha / 60])
    torch.testing.assert_close(fit.predict(X), direct)


def test_run_config_returns_every_estimator():
    task = TokenSelectionTask(L=3, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    args = dict(d_model=8, n_heads=2, n_steps=3, lr=1e-3, batch_size=8, val_fraction=0.2, n_test=30)
    out = run_config(task, 40, 2, **args)
    assert set(out) == {"transformer", "mlp", "krr", "oracle", "mass", "plateau_transformer", "plateau_mlp"}
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in out.values())
    again = run_config(task, 40, 2, **args)
    assert all(np.array_equal(out[k], again[k]) for k in out)


def test_lk_study_sweeps_fits_and_figure():
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    from learnthy_nb.transformer_beyond import LK_KINDS, fit_lk_study, lk_sweeps, plot_lk_study
    sweeps = lk_sweeps(8, 4, (8, 16, 32, 64, 128), (4, 8, 16, 32, 64))
    assert sweeps["k"][1][0] == sweeps["L"][1][0] == (8, 4)                 # the shared point
    rng = np.random.default_rng(0)
    # synthetic risks: risk ~ k^0.5 along k, flat along L, three seeds with small noise
    results = {}
    for (L, k) in {c for _, cs, _ in sweeps.values() for c in cs}:
        base = 0.1 * (k / 4) ** 0.5
        results[(L, k)] = {kind: base * np.exp(0.01 * rng.standard_normal(3)) for kind, _ in LK_KINDS}
    fits = fit_lk_study(results, sweeps, n_boot=200)
    assert abs(fits[("k", "transformer")].exponent - 0.5) < 0.02 and abs(fits[("L", "mlp")].exponent) < 0.02
    fig = plot_lk_study(results, sweeps, fits, var_f=0.2, n=100)
    assert len(fig.axes) == 2 and "slope 0.50" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_lk_study_runs_a_whole_study_from_a_config():
    import matplotlib
    matplotlib.use("Agg")
    from types import SimpleNamespace
    from learnthy_nb.transformer_beyond import lk_study
    cfg = SimpleNamespace(L0=3, k0=2, Ls=(3, 4), ks=(2, 3), n=30, seeds=2, n_boot=100, d_model=8, n_heads=2, n_steps=2,
                          lr=1e-3, batch_size=8, val_fraction=0.2, n_test=20)
    make_task = lambda L, k: TokenSelectionTask(L=L, k=k, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    results, sweeps, fits, var_f, fig = lk_study(make_task, cfg, torch.device("cpu"))
    assert set(results) == {(3, 2), (4, 2), (3, 3)}                       # the shared point (L0, k0) is trained once
    assert all(r["transformer"].shape == (2,) for r in results.values())
    assert set(fits) == {(s, kind) for s in ("k", "L") for kind in ("transformer", "mlp", "krr", "oracle")}
    assert 0 < var_f < 10 and len(fig.axes) == 2
