"""Unit tests of learnthy_nb.core: rate fitting, plotting, device/seed/scale conventions, validation."""
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from learnthy_nb import core
from learnthy_nb.core import (DivergenceError, PowerLawFit, by_scale, check_finite, check_range, fit_power_law,
                              get_device, get_scale, glue, machine_info, plot_rate, progress, seed_everything)

XS = np.array([10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0])


# ---------------------------------------------------------------- fit_power_law
@pytest.mark.parametrize("exponent,prefactor", [(-0.5, 1.0), (-1 / 3, 0.2), (1.7, 3.0), (0.0, 5.0)])
def test_exact_power_law_is_recovered(exponent, prefactor):
    fit = fit_power_law(XS, prefactor * XS**exponent)
    assert isinstance(fit, PowerLawFit)
    assert fit.exponent == pytest.approx(exponent, abs=1e-12)
    assert fit.prefactor == pytest.approx(prefactor, rel=1e-10)
    assert fit.ci_low == pytest.approx(exponent, abs=1e-10) and fit.ci_high == pytest.approx(exponent, abs=1e-10)
    assert fit.n_points == len(XS) and fit.level == 0.95
    np.testing.assert_allclose(fit.predict(XS), prefactor * XS**exponent, rtol=1e-10)


def test_accepts_lists_tensors_and_seed_columns():
    y = 2 * XS[:, None] ** -0.5 * np.exp(0.05 * np.random.default_rng(0).standard_normal((6, 4)))
    fit_np = fit_power_law(XS, y)
    fit_torch = fit_power_law(torch.tensor(XS), torch.tensor(y))
    fit_flat = fit_power_law(list(np.repeat(XS, 4)), list(y.reshape(-1)))       # one curve of 24 points
    assert fit_np == fit_torch
    assert fit_np.n_points == fit_flat.n_points == 24 and fit_np.n_seeds == 4 and fit_flat.n_seeds == 1
    assert (fit_np.method, fit_flat.method) == ("seeds", "points")             # >= 3 seed columns: t over seeds
    assert fit_np.exponent == pytest.approx(fit_flat.exponent, abs=1e-12)       # the same least-squares slope
    from dataclasses import replace
    assert replace(fit_power_law(XS, y, method="points"), n_seeds=1) == fit_flat   # the bootstrap on request


def test_noisy_fit_is_close_and_ci_brackets_estimate():
    rng = np.random.default_rng(3)
    y = 0.7 * XS[:, None] ** -0.75 * np.exp(0.2 * rng.standard_normal((6, 5)))
    fit = fit_power_law(XS, y)
    assert abs(fit.exponent + 0.75) < 0.1
    assert fit.ci_low < fit.exponent < fit.ci_high
    # the seeds interval is Student's t over the five per-seed least-squares slopes
    from scipy import stats
    slopes = np.array([np.polyfit(np.log(XS), np.log(y[:, j]), 1)[0] for j in range(5)])
    half = stats.t.ppf(0.975, 4) * slopes.std(ddof=1) / np.sqrt(5)
    assert fit.exponent == pytest.approx(slopes.mean(), abs=1e-12)
    assert (fit.ci_low, fit.ci_high) == pytest.approx((slopes.mean() - half, slopes.mean() + half), abs=1e-12)
    points = fit_power_law(XS, y, method="points")                              # 30 points: a narrow bootstrap
    assert points.ci_low < points.exponent < points.ci_high and points.ci_high - points.ci_low < 0.2


def test_seeds_method_needs_two_seeds_and_names_the_method():
    with pytest.raises(ValueError, match="^method 'seeds' needs"):
        fit_power_law(XS, XS**-0.5, method="seeds")
    with pytest.raises(ValueError, match="^method must be"):
        fit_power_law(XS, XS**-0.5, method="pairs")


def test_ci_covers_truth_at_about_the_nominal_rate():
    # 20 points (5 x values, 4 seeds), log-normal noise: the t interval over the four per-seed slopes is exact for
    # normal slopes (nominal 0.95); 0.88 is about 6 binomial s.d. below it, 0.99 about 4 above.
    xs = np.geomspace(100, 10_000, 5)
    hits = 0
    reps = 400
    for r in range(reps):
        y = 2 * xs[:, None] ** -0.5 * np.exp(0.3 * np.random.default_rng(r).standard_normal((5, 4)))
        hits += fit_power_law(xs, y, n_boot=500, seed=r).covers(-0.5)
    assert 0.88 <= hits / reps <= 0.99


def test_higher_level_gives_wider_interval():
    y = XS**-1.0 * np.exp(0.3 * np.random.default_rng(1).standard_normal(6))
    narrow, wide = fit_power_law(XS, y, level=0.5), fit_power_law(XS, y, level=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


def test_fit_is_deterministic_given_seed():
    y = XS**-1.0 * np.exp(0.3 * np.random.default_rng(1).standard_normal(6))
    assert fit_power_law(XS, y, seed=5) == fit_power_law(XS, y, seed=5)
    assert fit_power_law(XS, y, seed=5).ci_low != fit_power_law(XS, y, seed=6).ci_low


@pytest.mark.parametrize("x,y,match", [
    pytest.param([1, 2], [1, 2], r"^x and y need at least 3 points", id="too-few-points"),
    pytest.param([1, 2, 3], [1, 2], r"^y must have shape", id="y-shape"),
    pytest.param([[1, 2, 3]], [1, 2, 3], r"^x must be 1-D", id="x-not-1d"),
    pytest.param([1, 2, 3], [1, 0, 3], r"^y must be positive", id="y-zero"),
    pytest.param([1, -2, 3], [1, 2, 3], r"^x must be positive", id="x-negative"),
    pytest.param([1, 2, 3], [1, float("nan"), 3], r"^y must be finite", id="y-nan"),
    pytest.param([1, float("inf"), 3], [1, 2, 3], r"^x must be finite", id="x-inf"),
    pytest.param([2, 2, 2], [1, 2, 3], r"^x must take at least two distinct values", id="x-constant"),
    pytest.param(["a", "b", "c"], [1, 2, 3], r"^x must be an array of real numbers", id="x-strings"),
])
def test_fit_rejects_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


@pytest.mark.parametrize("kwargs,match", [
    pytest.param({"n_boot": 10}, r"^n_boot must be an integer >= 100", id="n_boot-too-small"),
    pytest.param({"n_boot": 1000.0}, r"^n_boot must be an integer >= 100", id="n_boot-float"),
    pytest.param({"level": 1.0}, r"^level must be in \(0, 1\)", id="level-one"),
    pytest.param({"level": 0}, r"^level must be in \(0, 1\)", id="level-zero"),
])
def test_fit_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(XS, XS**-1.0, **kwargs)


# ---------------------------------------------------------------- plot_rate
def test_plot_rate_draws_points_theory_and_fit():
    fig, ax = plt.subplots()
    y = XS[:, None] ** -0.5 * np.exp(0.1 * np.random.default_rng(0).standard_normal((6, 3)))
    fit = fit_power_law(XS, y)
    plot_rate(ax, XS, y, theory_exponent=-0.5, fit=fit, label="data")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    theory = next(line for label, line in lines.items() if label.startswith("theory"))
    tx, ty = theory.get_xdata(), theory.get_ydata()
    # slope of the drawn theory line is the theoretical exponent, and it passes through the geometric centre
    assert np.log(ty[-1] / ty[0]) / np.log(tx[-1] / tx[0]) == pytest.approx(-0.5)
    xc, yc = np.exp(np.log(XS).mean()), np.exp(np.log(y.mean(1)).mean())
    assert np.interp(np.log(xc), np.log(tx), np.log(ty)) == pytest.approx(np.log(yc), abs=1e-3)
    assert any(label.startswith("fit") for label in lines)
    plt.close(fig)


@pytest.mark.parametrize("lo,hi,expected", [
    (300, 2000, {2.0, 5.0}),          # under 1.3 decades: the mantissas 2 and 5 only (matplotlib: 2, 3, 4, 6)
    (30, 60, {2.0, 3.0, 5.0, 7.0}),   # under half a decade: a few more
    (10, 1e4, set()),                 # several decades: the decade labels suffice
])
def test_plot_rate_minor_labels_are_sparse(lo, hi, expected):
    fig, ax = plt.subplots()
    x = np.geomspace(lo, hi, 5)
    plot_rate(ax, x, x ** -0.5)
    ax.set_xlim(lo, hi)
    fig.canvas.draw()
    fmt = ax.xaxis.get_minor_formatter()
    ticks = [t for t in ax.xaxis.get_minorticklocs() if lo <= t <= hi]
    labelled = {round(t / 10 ** np.floor(np.log10(t) + 1e-9), 6) for t in ticks if fmt(t)}
    assert labelled == expected & {round(t / 10 ** np.floor(np.log10(t) + 1e-9), 6) for t in ticks}
    assert labelled or not expected
    plt.close(fig)


@pytest.mark.parametrize("y,match", [
    pytest.param(-XS, r"^x and y must be finite and positive", id="y-negative"),
    pytest.param(XS[:3], r"^y must have shape", id="y-shape"),
])
def test_plot_rate_rejects_bad_input(y, match):
    fig, ax = plt.subplots()
    try:
        with pytest.raises(ValueError, match=match):
            plot_rate(ax, XS, y)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- device, seeds, scales
def test_get_device_default_is_available(monkeypatch):
    monkeypatch.delenv("LEARNTHY_DEVICE", raising=False)
    device = get_device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if core._mps_available() else "cpu")
    assert device.type == expected


def test_get_device_env_overrides_prefer(monkeypatch):
    monkeypatch.setenv("LEARNTHY_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device(prefer="cuda") == torch.device("cpu")
    monkeypatch.delenv("LEARNTHY_DEVICE")
    assert get_device(prefer="cpu") == torch.device("cpu")


@pytest.mark.parametrize("choice,match", [("gpu0", "not a torch device"), ("meta", "allowed device types")])
def test_get_device_rejects_bad_names(monkeypatch, choice, match):
    monkeypatch.setenv("LEARNTHY_DEVICE", choice)
    with pytest.raises(ValueError, match=rf"^LEARNTHY_DEVICE='{choice}'.*{match}"):
        get_device()
    monkeypatch.delenv("LEARNTHY_DEVICE")
    with pytest.raises(ValueError, match=rf"^prefer='{choice}'.*{match}"):
        get_device(prefer=choice)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_get_device_rejects_missing_cuda(monkeypatch):
    monkeypatch.setenv("LEARNTHY_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"^LEARNTHY_DEVICE='cuda' asks for CUDA"):
        get_device()


def test_seed_everything_is_deterministic():
    a = torch.randn(100, generator=seed_everything(7))
    b = torch.randn(100, generator=seed_everything(7))
    c = torch.randn(100, generator=seed_everything(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    seed_everything(3)
    first = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, "3", True, None])
def test_seed_everything_rejects_bad_seed(seed):
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*63\)"):
        seed_everything(seed)


@pytest.mark.parametrize("value,expected", [(None, "book"), ("", "book"), ("quick", "quick"), ("Paper ", "paper")])
def test_get_scale(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LEARNTHY_SCALE", raising=False)
    else:
        monkeypatch.setenv("LEARNTHY_SCALE", value)
    assert get_scale() == expected
    assert by_scale(quick=1, book=2, paper=3) == {"quick": 1, "book": 2, "paper": 3}[expected]


def test_get_scale_rejects_unknown(monkeypatch):
    monkeypatch.setenv("LEARNTHY_SCALE", "huge")
    with pytest.raises(ValueError, match=r"^LEARNTHY_SCALE='huge' is not allowed; use one of quick, book, paper"):
        get_scale()
    with pytest.raises(ValueError, match=r"^scale='huge' is not allowed; use one of quick, book, paper"):
        by_scale(quick=1, book=2, paper=3, scale="huge")


# ---------------------------------------------------------------- helpers
def test_progress_quiet_and_loud(monkeypatch):
    monkeypatch.setenv("LEARNTHY_QUIET", "1")
    assert progress(range(3)).disable
    monkeypatch.setenv("LEARNTHY_QUIET", "0")
    monkeypatch.delenv("CI", raising=False)
    bar = progress(range(3))
    assert not bar.disable and list(bar) == [0, 1, 2]
    bar.close()
    assert progress(range(3), quiet=True).disable


def test_glue_returns_value_and_machine_info_mentions_torch():
    assert glue("answer", 42) == 42
    info = machine_info()
    assert torch.__version__ in info and "device" in info


def test_check_range():
    assert check_range("eta", 0.5, 0, 1, low_inclusive=False) == 0.5
    assert check_range("n", 3, 1, integer=True) == 3


@pytest.mark.parametrize("value,kwargs,message", [
    pytest.param(0, dict(low=0, low_inclusive=False), "eta must be a number in (0, inf), got 0", id="at-open-low"),
    pytest.param(2, dict(high=1), "eta must be a number in (-inf, 1], got 2", id="above-high"),
    pytest.param(1.5, dict(integer=True), "eta must be an integer in (-inf, inf), got 1.5", id="not-integer"),
    pytest.param(float("nan"), {}, "eta must be a number in (-inf, inf), got nan", id="nan"),
    pytest.param("1", {}, "eta must be a number in (-inf, inf), got '1'", id="string"),
    pytest.param(True, {}, "eta must be a number in (-inf, inf), got True", id="bool"),
])
def test_check_range_rejects(value, kwargs, message):
    # the message names the argument and the allowed range: every package ValueError built on it does too
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        check_range("eta", value, **kwargs)


def test_check_finite_names_the_step():
    check_finite("particles", torch.ones(3))
    with pytest.raises(DivergenceError, match="particles became non-finite at step 17"):
        check_finite("particles", torch.tensor([1.0, float("nan")]), step=17)


# ---------------------------------------------------------------- the device-and-randomness contract
from learnthy_nb.core import (KernelRidgeFit, gaussian, haar_orthogonal, integers, kernel_ridge, median_bandwidth,
                              permutation, rbf_kernel, resolve_generator, setup, uniform)


def test_resolve_generator_none_is_a_fresh_seed_zero_cpu_generator():
    a, b = resolve_generator(None), resolve_generator(None)
    assert a is not b and a.device.type == "cpu"
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(5)
    assert resolve_generator(g) is g
    with pytest.raises(ValueError, match="^generator must be a torch.Generator or None"):
        resolve_generator(5)


@pytest.mark.parametrize("draw", [
    lambda g, dt: gaussian((3, 4), generator=g, dtype=dt),
    lambda g, dt: uniform((3, 4), generator=g, dtype=dt),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draws_follow_the_generator_and_the_dtype(draw, dtype):
    x = draw(torch.Generator().manual_seed(1), dtype)
    assert x.shape == (3, 4) and x.dtype == dtype and x.device.type == "cpu"
    assert torch.equal(x, draw(torch.Generator().manual_seed(1), dtype))
    assert not torch.equal(x, draw(torch.Generator().manual_seed(2), dtype))
    assert torch.equal(draw(None, dtype), draw(torch.Generator().manual_seed(0), dtype))


def test_draws_consume_the_generator_like_torch():
    """The helpers are torch's own draws on the generator's device: the same numbers and the same stream."""
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(gaussian((5,), generator=g1), torch.randn(5, generator=g2))
    assert torch.equal(uniform((5,), generator=g1, dtype=torch.float64), torch.rand(5, generator=g2, dtype=torch.float64))
    assert torch.equal(integers(0, 3, (6,), generator=g1), torch.randint(0, 3, (6,), generator=g2))
    assert torch.equal(permutation(9, generator=g1), torch.randperm(9, generator=g2))


def test_integers_and_permutation_ranges():
    g = torch.Generator().manual_seed(0)
    x = integers(-2, 3, (5000,), generator=g)
    assert x.dtype == torch.int64 and int(x.min()) == -2 and int(x.max()) == 2
    assert abs(float((x == 0).double().mean()) - 0.2) < 0.03
    assert sorted(permutation(10, generator=g).tolist()) == list(range(10))
    assert permutation(0, generator=g).numel() == 0


@pytest.mark.parametrize("call,match", [
    pytest.param(lambda: integers(3, 3, (2,)), r"^high must be > low", id="integers-empty-range"),
    pytest.param(lambda: permutation(-1), r"^n must be an integer in \[0, inf\)", id="permutation-negative"),
    pytest.param(lambda: permutation(2.5), r"^n must be an integer", id="permutation-float"),
    pytest.param(lambda: haar_orthogonal(0), r"^d must be an integer in \[1, inf\)", id="haar-d-zero"),
    pytest.param(lambda: haar_orthogonal(3, 4), r"^k must be an integer in \[1, 3\]", id="haar-k-above-d"),
    pytest.param(lambda: median_bandwidth(torch.zeros(1, 2)), r"^X must be a tensor \[n, d\] with n >= 2", id="median-one-point"),
    pytest.param(lambda: median_bandwidth(torch.zeros(5, 2)), r"^X must contain at least two distinct points", id="median-all-equal"),
    pytest.param(lambda: rbf_kernel(torch.zeros(2, 1), torch.zeros(2, 1), bandwidth=0), r"^bandwidth must be ", id="rbf-bandwidth-zero"),
])
def test_contract_helpers_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_setup_returns_the_device_and_a_seeded_cpu_generator(monkeypatch):
    monkeypatch.setenv("LEARNTHY_DEVICE", "cpu")
    old = torch.get_num_threads()
    try:
        device, g = setup(3)
        assert device.type == "cpu" and g.device.type == "cpu" and torch.get_num_threads() == 1
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(3)))
    finally:
        torch.set_num_threads(old)


def test_haar_orthogonal_is_orthonormal_seeded_and_uniform():
    Q = haar_orthogonal(7, generator=torch.Generator().manual_seed(0))
    assert Q.dtype == torch.float64 and torch.allclose(Q @ Q.T, torch.eye(7, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q, haar_orthogonal(7, generator=torch.Generator().manual_seed(0)))
    F = haar_orthogonal(30, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    assert F.shape == (30, 3) and F.dtype == torch.float32
    assert torch.allclose(F.T @ F, torch.eye(3), atol=1e-5)
    # uniform: for a Haar matrix, det is +1 and -1 equally often (without the sign fix of R this fails: QR
    # routines return a fixed sign pattern), and E[Q_11^2] = 1/d
    g = torch.Generator().manual_seed(2)
    mats = torch.stack([haar_orthogonal(3, generator=g) for _ in range(3000)])
    assert abs(float(torch.linalg.det(mats).mean())) < 0.06                      # sd 1/sqrt(3000) = 0.018
    assert abs(float(mats[:, 0, 0].square().mean()) - 1 / 3) < 0.02


def test_kernel_ridge_matches_the_closed_form_and_scikit_learn():
    sklearn_kr = pytest.importorskip("sklearn.kernel_ridge")
    g = torch.Generator().manual_seed(0)
    X = gaussian((120, 2), generator=g, dtype=torch.float64)
    y = torch.cos(2 * X[:, 0]) + 0.05 * gaussian((120,), generator=g, dtype=torch.float64)
    fit = kernel_ridge(lambda a, b: rbf_kernel(a, b, bandwidth=0.7), X, y, ridges=[1e-3], generator=g)
    assert isinstance(fit, KernelRidgeFit) and fit.ridge == 1e-3 and len(fit.val_scores) == 1
    K = rbf_kernel(X, X, bandwidth=0.7)
    alpha = torch.linalg.solve(K + 120 * 1e-3 * torch.eye(120, dtype=torch.float64), y)
    assert torch.allclose(fit.alpha, alpha, atol=1e-9)
    Xn = gaussian((50, 2), generator=g, dtype=torch.float64)
    sk = sklearn_kr.KernelRidge(kernel="rbf", gamma=1 / (2 * 0.7**2), alpha=120 * 1e-3).fit(X.numpy(), y.numpy())
    assert np.allclose(fit.predict(Xn).numpy(), sk.predict(Xn.numpy()), atol=1e-8)


def test_kernel_ridge_picks_the_ridge_the_data_need():
    g = torch.Generator().manual_seed(1)
    X = gaussian((400, 1), generator=g, dtype=torch.float64)
    noisy = torch.sign(X[:, 0]) + 2.0 * gaussian((400,), generator=g, dtype=torch.float64)   # noise: a large ridge
    clean = torch.sin(4 * X[:, 0])                                                           # no noise: a small one
    kern = lambda a, b: rbf_kernel(a, b, bandwidth=0.3)
    grid = [1e-6, 1e-3, 1e-1, 10.0]
    assert kernel_ridge(kern, X, noisy, ridges=grid, generator=g).ridge >= 1e-1
    assert kernel_ridge(kern, X, clean, ridges=grid, generator=g).ridge <= 1e-3
    sign_fit = kernel_ridge(kern, X, torch.sign(X[:, 0]), ridges=grid, score="sign", generator=g)
    assert all(isinstance(s, tuple) and len(s) == 2 for s in sign_fit.val_scores)


@pytest.mark.parametrize("kwargs,match", [
    pytest.param(dict(ridges=[]), r"^ridges must hold at least one value", id="ridges-empty"),
    pytest.param(dict(ridges=[-1.0]), r"^ridges must be ", id="ridges-negative"),
    pytest.param(dict(ridges=[1.0], val_fraction=1.0), r"^val_fraction must be ", id="val_fraction-one"),
    pytest.param(dict(ridges=[1.0], score="auc"), r"^score must be 'mse' or 'sign'", id="score-unknown"),
])
def test_kernel_ridge_rejects_bad_arguments(kwargs, match):
    X = torch.randn(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        kernel_ridge(rbf_kernel, X, X[:, 0], **kwargs)


def test_kernel_ridge_rejects_bad_shapes():
    X = torch.randn(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^y must be a tensor of shape \[n=10\]"):
        kernel_ridge(rbf_kernel, X, X[:5, 0], ridges=[1.0])
    with pytest.raises(ValueError, match=r"^n \(X.shape\[0\]\) must be an integer in \[2, inf\)"):
        kernel_ridge(rbf_kernel, X[:1], X[:1, 0], ridges=[1.0])


# ---------------------------------------------------------------- the tuned Gaussian kernel ridge (one baseline)
def test_rbf_kernel_ridge_tunes_bandwidth_and_ridge_with_the_core_solver():
    from learnthy_nb.core import kernel_ridge, median_bandwidth, rbf_kernel, rbf_kernel_ridge, KernelRidgeFit
    g = torch.Generator().manual_seed(4)
    X = torch.randn(300, 2, generator=g)
    fit = rbf_kernel_ridge(X, torch.sin(2 * X[:, 0]), bandwidth_factors=(0.25, 1.0, 16.0), ridges=RIDGES9,
                           generator=g)
    assert isinstance(fit.fit, KernelRidgeFit) and fit.bandwidth in fit.bandwidths
    assert len(fit.val_scores) == 3 and all(len(v) == 9 for v in fit.val_scores)
    best = min(min(v) for v in fit.val_scores)
    assert min(fit.val_scores[fit.bandwidths.index(fit.bandwidth)]) == best
    Xt = torch.randn(400, 2, generator=g)
    assert float((fit.predict(Xt) - torch.sin(2 * Xt[:, 0]).double()).square().mean()) < 0.02
    # one bandwidth: the same as core's kernel_ridge with the same split
    one = rbf_kernel_ridge(X, X[:, 0], bandwidth_factors=(1.0,), ridges=(1e-3,), generator=torch.Generator().manual_seed(5))
    h = median_bandwidth(X)
    ref = kernel_ridge(lambda A, B: rbf_kernel(A, B, bandwidth=h), X, X[:, 0], ridges=(1e-3,))
    assert torch.allclose(one.fit.alpha, ref.alpha)


def test_rbf_kernel_ridge_above_tune_max_searches_a_subsample_then_the_shortlist_on_all_rows():
    from learnthy_nb.core import kernel_ridge, rbf_kernel, rbf_kernel_ridge
    g = torch.Generator().manual_seed(7)
    X = torch.randn(500, 3, generator=g, dtype=torch.float64)
    y = torch.cos(X[:, 1]) + 0.05 * torch.randn(500, generator=g, dtype=torch.float64)
    fit = rbf_kernel_ridge(X, y, tune_max=200, shortlist=2, generator=torch.Generator().manual_seed(1))
    sub = rbf_kernel_ridge(X[:200], y[:200], generator=torch.Generator().manual_seed(1))
    assert fit.bandwidths == sub.bandwidths and fit.val_scores == sub.val_scores   # the search is the first 200 rows'
    shortlisted = [i for i, v in enumerate(fit.final_scores) if v is not None]
    assert sorted(shortlisted) == sorted(sorted(range(len(sub.val_scores)), key=lambda i: min(sub.val_scores[i]))[:2])
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(1)))
    for i in shortlisted:                                    # ... scored again on all 500 rows, same split seed
        ref = kernel_ridge(lambda A, B, h=fit.bandwidths[i]: rbf_kernel(A, B, bandwidth=h), X, y, ridges=RIDGES11,
                           generator=torch.Generator().manual_seed(seed))
        assert fit.final_scores[i] == pytest.approx(ref.val_scores)
    best = min(shortlisted, key=lambda i: min(fit.final_scores[i]))
    assert fit.bandwidth == fit.bandwidths[best] and fit.fit.X.shape[0] == 500


@pytest.mark.parametrize("kwargs,name", [(dict(bandwidth_factors=()), "bandwidth_factors"),
                                         (dict(bandwidth_factors=(0.0,)), "bandwidth_factors"),
                                         (dict(ridges=()), "ridges"), (dict(val_fraction=1.0), "val_fraction"),
                                         (dict(tune_max=2), "tune_max"), (dict(shortlist=0), "shortlist")])
def test_rbf_kernel_ridge_errors(kwargs, name):
    from learnthy_nb.core import rbf_kernel_ridge
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match=f"^{name}"):
        rbf_kernel_ridge(X, X[:, 0], **kwargs)
    with pytest.raises(ValueError, match="^X must"):
        rbf_kernel_ridge(X[:, 0], X[:, 0])


RIDGES9 = tuple(10.0**k for k in range(-7, 2))
RIDGES11 = tuple(10.0**k for k in range(-9, 2))


def test_label_log_shows_two_plain_labels_on_any_span():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from learnthy_nb.core import label_log
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    for lim in ((0.11, 0.25), (3.0, 4.5), (1, 1e4), (0.02, 0.9)):
        ax.set_xlim(*lim)
        label_log(ax.xaxis)
        ticks = [v for v in ax.xaxis.get_major_locator()() if lim[0] <= v <= lim[1]]
        labels = [ax.xaxis.get_major_formatter()(v) for v in ticks]
        assert len(set(labels)) >= 2 and all(abs(float(t) - v) < 1e-6 * v for t, v in zip(labels, ticks)), (lim, labels)
    ax.set_xscale("linear")
    ax.set_xlim(-1, 1)
    with pytest.raises(ValueError, match="axis"):
        label_log(ax.xaxis)
    plt.close(fig)


def test_legend_by_series_puts_each_series_lines_after_its_points():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from learnthy_nb.core import legend_by_series
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0, 1], color="C1", label="b theory")
    ax.errorbar([1, 2], [0, 1], yerr=0.1, color="C0", label="a points")
    ax.axhline(0.5, color="gray", label="level")
    ax.errorbar([1, 2], [1, 2], yerr=0.1, color="C1", label="b points")
    ax.plot([1, 2], [0, 1], color="C0", label="a fit")
    assert legend_by_series(ax)[1] == ["a points", "a fit", "b points", "b theory", "level"]
    plt.close(fig)


def test_claim_margin_and_the_edge_rule():
    from learnthy_nb.core import claim_agrees, claim_at_edge, claim_margin, claim_verdict
    base = dict(key="t.x", theory=-0.5, relation="=", tolerance=0.1, measured=-0.8, ci_low=-1.0, ci_high=-0.55,
                reproduce_tol=0.45, verdict="reproduced")
    assert abs(claim_margin(base) - 0.05) < 1e-12 and claim_at_edge(base)
    # the verdict of each relation (theory -0.5, tolerance 0.1), worked out by hand, and the margin's sign agrees
    intervals = ((-1.0, -0.55), (-0.7, -0.2), (-0.45, -0.3), (-2.0, -0.7))
    expected = {"=": (True, True, True, False), "<=": (True, False, False, True), ">=": (False, False, True, False)}
    for rel, wants in expected.items():
        for (lo, hi), want in zip(intervals, wants):
            c = {**base, "relation": rel, "ci_low": lo, "ci_high": hi, "measured": (lo + hi) / 2}
            assert claim_verdict(-0.5, rel, 0.1, c["measured"], lo, hi) == ("reproduced" if want else "not reproduced")
            assert (claim_margin(c) >= 0) == want
    # without an interval the point decides
    assert claim_verdict(-0.5, "=", 0.1, -0.61) == "not reproduced" and claim_verdict(-0.5, "=", 0.1, -0.59) == "reproduced"
    far = {**base, "ci_low": -0.9, "ci_high": -0.2, "measured": -0.5}
    assert not claim_at_edge(far) and not claim_agrees(far, {**far, "verdict": "not reproduced"})[0]
    assert claim_agrees(base, {**base, "ci_high": -0.65, "verdict": "not reproduced"})[0]
    assert not claim_agrees(base, {**base, "ci_high": 0.0, "verdict": "not reproduced"})[0]   # moved beyond tolerance
    with pytest.raises(ValueError, match="relation"):
        claim_margin({**base, "relation": "<"})
