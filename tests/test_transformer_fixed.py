"""Tests of learnthy_nb.transformer_fixed: the fixed-importance task (Bayes risk, variance, irrelevant coordinates, errors)."""
import math

import pytest
import torch

from learnthy_nb.transformer import (SelectionTask, SelectiveTransformer, excess_risk, fit_regressor,
                                     kernel_ridge_excess_risk)
from learnthy_nb.transformer_fixed import FixedImportanceTask


def test_bayes_risk_variance_and_important_terms():
    task = FixedImportanceTask(L=6, k=4, smoothness=1.0, noise_std=0.4, n_important=3, decay=0.5)
    assert task.important == [(5, 0, 1.0), (4, 1, 0.5), (3, 2, 0.25)]
    X, y = task.sample(200_000, torch.Generator().manual_seed(0))
    assert X.shape == (200_000, 6, 4) and y.shape == (200_000,)
    f = task.regression_function(X)
    resid2 = (y - f) ** 2
    assert abs(float(resid2.mean()) - task.bayes_risk) < 4 * float(resid2.std()) / math.sqrt(len(y))
    var_g = float(task.g(torch.rand(1_000_000, generator=torch.Generator().manual_seed(1))).var())
    assert float(f.var()) == pytest.approx((1 + 0.25 + 0.0625) * var_g, rel=0.02)
    manual = task.g(X[:, 5, 0]) + 0.5 * task.g(X[:, 4, 1]) + 0.25 * task.g(X[:, 3, 2])
    torch.testing.assert_close(f, manual)


def test_target_ignores_all_other_coordinates():
    task = FixedImportanceTask(L=5, k=3, smoothness=0.5, noise_std=0.1, n_important=2, decay=1.0)
    X, _ = task.sample(1000, torch.Generator().manual_seed(2))
    X2 = torch.rand(X.shape, generator=torch.Generator().manual_seed(3))
    X2[:, 4, 0], X2[:, 3, 1] = X[:, 4, 0], X[:, 3, 1]
    torch.testing.assert_close(task.regression_function(X2), task.regression_function(X))
    X3 = X.clone()
    X3[:, 3, 1] = 1 - X3[:, 3, 1]                               # an important coordinate does move it
    assert not torch.allclose(task.regression_function(X3), task.regression_function(X))


@pytest.mark.parametrize("kw,name", [
    pytest.param(dict(L=0), "L", id="L-zero"), pytest.param(dict(k=0), "k", id="k-zero"),
    pytest.param(dict(smoothness=0.0), "smoothness", id="smoothness-zero"),
    pytest.param(dict(noise_std=-1.0), "noise_std", id="noise_std-negative"),
    pytest.param(dict(n_important=0), "n_important", id="n_important-zero"),
    pytest.param(dict(n_important=5), "n_important", id="n_important-above-L"),
    pytest.param(dict(decay=0.0), "decay", id="decay-zero"), pytest.param(dict(decay=1.5), "decay", id="decay-above-one"),
])
def test_errors(kw, name):
    base = dict(L=4, k=3, smoothness=1.0, noise_std=0.1)
    base.update(kw)
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        FixedImportanceTask(**base)


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda task: task.regression_function(torch.zeros(4, 3)), r"^X must be a 3-D tensor",
                 id="regression_function-X-2d"),
    pytest.param(lambda task: task.regression_function(torch.zeros(2, 4, 4)), r"^X must have shape \[n, L=4, k=3\]",
                 id="regression_function-X-k"),
    pytest.param(lambda task: task.sample(0), r"^n must be ", id="sample-n-zero"),
])
def test_input_errors(call, match):
    task = FixedImportanceTask(L=4, k=3, smoothness=1.0, noise_std=0.1)
    with pytest.raises(ValueError, match=match):
        call(task)


def test_transformer_and_kernel_ridge_learn_a_short_window():
    # with one important token and a short window, both estimators beat the constant predictor clearly
    task = FixedImportanceTask(L=2, k=2, smoothness=1.0, noise_std=0.1, n_important=1)
    X, y = task.sample(600, torch.Generator().manual_seed(4))
    Xt, _ = task.sample(20_000, torch.Generator().manual_seed(5))
    var_f = float(task.regression_function(Xt).var())
    assert kernel_ridge_excess_risk(task, X, y, n_test=2000) < 0.2 * var_f
    model = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=2,
                                 init_generator=torch.Generator().manual_seed(0))
    fit_regressor(model, X, y, n_steps=400, lr=3e-3, batch_size=64, generator=torch.Generator().manual_seed(6))
    assert excess_risk(model, task, 2000, torch.Generator().manual_seed(7)) < 0.5 * var_f


def test_fixed_task_shares_the_base_class_and_keeps_float64():
    task = FixedImportanceTask(L=4, k=3, smoothness=1.0, noise_std=0.2, n_important=2)
    assert isinstance(task, SelectionTask) and task.bayes_risk == pytest.approx(0.04)
    X, y = task.sample(128, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert X.dtype == y.dtype == task.regression_function(X).dtype == torch.float64
    X2, y2 = task.sample(128, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    risk = kernel_ridge_excess_risk(task, X, y, n_test=200, generator=torch.Generator().manual_seed(2))
    assert risk == kernel_ridge_excess_risk(task, X, y, n_test=200, generator=torch.Generator().manual_seed(2))
