"""Tests of learnthy_nb.transformer: masks, shapes, equivariance, a hand-set selector, Bayes risk, errors."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from learnthy_nb.core import DivergenceError
from learnthy_nb.transformer import (PLATEAU_TOL, FlatMLP, SelectionTask, SweepResult, SelectiveTransformer, TokenSelectionTask, attention_mass,
                                     excess_risk, fit_ensemble, fit_regressor, fit_sweep, hand_set_selector,
                                     init_linear_layers, init_seeds, lacunary, loss_plateau, n_parameters, sinusoidal_encoding, training_sets,
                                     warmup_cosine_schedule, window_mask)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_window_mask_band():
    m = window_mask(6, 3)
    assert m.shape == (6, 6) and m.dtype == torch.bool
    for t in range(6):
        for s in range(6):
            assert bool(m[t, s]) == (0 <= t - s < 3)
    assert torch.equal(window_mask(5, 5), torch.ones(5, 5, dtype=torch.bool).tril())
    assert torch.equal(window_mask(4, 1), torch.eye(4, dtype=torch.bool))


def test_shapes_and_attention_respects_window():
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=4, init_generator=_gen(0))
    X = torch.rand(5, 10, 3, generator=_gen(10))
    assert model(X).shape == (5,)
    assert model.sequence(X).shape == (5, 10)
    w = model.attention_weights()
    assert len(w) == 2 and w[0].shape == (5, 2, 10, 10)
    mask = window_mask(10, 4)
    assert torch.all(w[0][..., ~mask] == 0)
    torch.testing.assert_close(w[0].sum(-1), torch.ones(5, 2, 10))
    w_last = model.attention_weights(X)[-1]
    assert w_last.shape == (5, 2, 1, 10)
    assert torch.all(w_last[..., :6] == 0)                      # last position sees only tokens 6..9
    # forward (last position only) agrees with the full sequence map at the last position
    torch.testing.assert_close(model(X), model.sequence(X)[:, -1])
    # sequence(X, first) evaluates the last layer at positions >= first only: the tail of the full map
    full = model.sequence(X)
    torch.testing.assert_close(model.sequence(X, first=4), full[:, 4:])
    assert model.attention_weights()[-1].shape == (5, 2, 6, 10)
    with pytest.raises(ValueError, match="first"):
        model.sequence(X, first=10)


def test_sequence_output_depends_only_on_window():
    model = SelectiveTransformer(k=2, d_model=8, n_heads=1, n_layers=1, window=3, init_generator=_gen(1))
    X = torch.rand(4, 8, 2, generator=_gen(11))
    X2 = X.clone()
    X2[:, 0] += 5.0                                             # token 0 is outside the windows of t >= 3
    out, out2 = model.sequence(X), model.sequence(X2)
    torch.testing.assert_close(out[:, 3:], out2[:, 3:])
    assert not torch.allclose(out[:, 0], out2[:, 0])


def test_permutation_equivariance_without_positional_encoding():
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=7, positional=False, init_generator=_gen(2))
    model_pe = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=7, positional=True)
    model_pe.load_state_dict(model.state_dict())
    X = torch.rand(4, 7, 3, generator=_gen(12))
    perm = torch.tensor([3, 0, 5, 1, 2, 4, 6])                  # keeps the last (read-out) position
    torch.testing.assert_close(model(X[:, perm]), model(X))     # full window: invariant at the read-out
    assert not torch.allclose(model_pe(X[:, perm]), model_pe(X))
    # with a full (non-causal-limited) window the last layer's weights permute with the tokens
    w = model.attention_weights(X)[-1][:, :, 0]
    w_perm = model.attention_weights(X[:, perm])[-1][:, :, 0]
    torch.testing.assert_close(w_perm, w[..., perm])


def test_shift_equivariance_without_positional_encoding():
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=3, positional=False, init_generator=_gen(3))
    X = torch.rand(4, 10, 3, generator=_gen(13))
    shifted = torch.roll(X, 1, dims=1)                          # token t moves to t + 1
    out, out_shifted = model.sequence(X), model.sequence(shifted)
    # two layers of width-3 windows: position t sees tokens t-4..t, so t >= 5 is unaffected by the wrap-around
    torch.testing.assert_close(out_shifted[:, 6:], out[:, 5:-1])
    model_pe = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=3, positional=True)
    model_pe.load_state_dict(model.state_dict())
    assert not torch.allclose(model_pe.sequence(shifted)[:, 6:], model_pe.sequence(X)[:, 5:-1])


def test_bayes_risk_is_noise_variance():
    for dynamic in (True, False):
        task = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.3, dynamic=dynamic, key_gap=0.05)
        X, y = task.sample(200_000, torch.Generator().manual_seed(0))
        resid2 = (y - task.regression_function(X)) ** 2
        se = float(resid2.std()) / math.sqrt(len(y))
        assert abs(float(resid2.mean()) - task.bayes_risk) < 4 * se
        assert task.bayes_risk == pytest.approx(0.09)


def test_task_gap_and_important_index():
    task = TokenSelectionTask(L=16, k=4, smoothness=0.5, noise_std=0.1, key_gap=0.2)
    X, _ = task.sample(1000, torch.Generator().manual_seed(3))
    assert X.shape == (1000, 16, 4)
    keys = X[..., 0].sort(dim=1, descending=True).values
    assert float((keys[:, 0] - keys[:, 1]).min()) >= 0.2 - 1e-6
    assert torch.equal(task.important_index(X), X[..., 0].argmax(1))
    fixed = TokenSelectionTask(L=16, k=4, smoothness=0.5, noise_std=0.1, dynamic=False)
    assert torch.all(fixed.important_index(X) == 0)
    v = torch.rand(1000)
    assert float(lacunary(v, 1.0).abs().max()) <= 1.0


def _hand_set_selector(task, beta):
    return hand_set_selector(task.k, task.L, task.g, beta)


def test_hand_set_attention_attains_bayes_risk():
    task = TokenSelectionTask(L=16, k=3, smoothness=1.0, noise_std=0.5, key_gap=0.1)
    model = _hand_set_selector(task, beta=2000.0)              # beta * gap / 2 = 100: softmax = hardmax
    X, y = task.sample(100_000, torch.Generator().manual_seed(4))
    with torch.no_grad():
        pred = model(X)
    assert attention_mass(model, task, 5000) > 0.999
    resid2 = (pred - y) ** 2
    se = float(resid2.std()) / math.sqrt(len(y))
    assert abs(float(resid2.mean()) - task.bayes_risk) < 4 * se
    assert excess_risk(model, task, 20_000) < 1e-6
    # a soft selector (small beta) mixes tokens and pays an excess risk: the gap condition matters
    soft = _hand_set_selector(task, beta=20.0)
    assert attention_mass(soft, task, 5000) < 0.9
    assert excess_risk(soft, task, 20_000) > 1e-3


def test_fit_regressor_learns_and_matches_ensemble():
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.3)
    X, y = task.sample(512, torch.Generator().manual_seed(5))
    model = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=4, init_generator=_gen(0))
    twin = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=4, init_generator=_gen(0))
    torch.testing.assert_close(model(X[:50]), twin(X[:50]))      # the init generator alone fixes the weights
    before = excess_risk(model, task, 2000)
    hist = fit_regressor(model, X, y, n_steps=300, lr=3e-3, batch_size=64, generator=torch.Generator().manual_seed(1))
    assert hist.shape == (300,) and hist.device.type == "cpu" and bool(torch.isfinite(hist).all())
    after = excess_risk(model, task, 2000)
    assert after < 0.5 * before
    # the batched trainer, given the same generator, gives the same model
    fit_ensemble([twin], X[None], y[None], [512], n_steps=300, lr=3e-3, batch_size=64,
                 generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(X[:50]), twin(X[:50]), rtol=1e-4, atol=1e-5)


def test_divergence_detected():
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1)
    X, y = task.sample(64, torch.Generator().manual_seed(6))
    y = y.clone()
    y[0] = float("nan")
    model = FlatMLP(L=4, k=2, width=8, init_generator=_gen(0))
    with pytest.raises(DivergenceError, match="at step 9"):       # checked every check_every = 10 steps
        fit_regressor(model, X, y, n_steps=50, lr=1e-2, batch_size=64, generator=_gen(0), check_every=10)


@pytest.mark.parametrize("kwargs, name", [
    pytest.param(dict(L=0, k=3, smoothness=1.0, noise_std=0.1), "L", id="L-zero"),
    pytest.param(dict(L=4, k=1, smoothness=1.0, noise_std=0.1), "k", id="k-one"),
    pytest.param(dict(L=4, k=3, smoothness=0.0, noise_std=0.1), "smoothness", id="smoothness-zero"),
    pytest.param(dict(L=4, k=3, smoothness=1.0, noise_std=-0.1), "noise_std", id="noise_std-negative"),
    pytest.param(dict(L=4, k=3, smoothness=1.0, noise_std=0.1, key_gap=-1.0), "key_gap", id="key_gap-negative"),
])
def test_task_value_errors(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        TokenSelectionTask(**kwargs)


def _model():
    return SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=6)


def _task():
    return TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.1)


def _fit(X=None, y=None, **kw):
    X0, y0 = _task().sample(16, torch.Generator().manual_seed(0))
    args = dict(n_steps=1, lr=1e-3, batch_size=4) | kw
    return fit_regressor(_model(), X0 if X is None else X(X0), y0 if y is None else y(y0), **args)


MODEL_BAD_CALLS = [
    pytest.param(lambda: SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=9, L=8), r"^window must be ",
                 id="SelectiveTransformer-window-above-L"),
    pytest.param(lambda: SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=2, L=0), r"^L must be ",
                 id="SelectiveTransformer-L-zero"),
    pytest.param(lambda: SelectiveTransformer(k=3, d_model=9, n_heads=2, n_layers=1, window=2),
                 r"^d_model must be a multiple of n_heads", id="SelectiveTransformer-d_model"),
    pytest.param(lambda: _model()(torch.zeros(2, 5, 3)), r"^window must be in \[1, L=5\]",
                 id="SelectiveTransformer.forward-window-above-X-length"),
    pytest.param(lambda: _model()(torch.zeros(5, 3)), r"^X must be a 3-D tensor", id="SelectiveTransformer.forward-X-2d"),
    pytest.param(lambda: _model()(torch.zeros(2, 8, 4)), r"^X must have k=3 coordinates", id="SelectiveTransformer.forward-X-k"),
    pytest.param(lambda: _task().important_index(torch.zeros(8, 3)), r"^X must be a 3-D tensor",
                 id="TokenSelectionTask.important_index-X-2d"),
    pytest.param(lambda: _task().important_index(torch.zeros(2, 8, 4)), r"^X must have shape \[n, L=8, k=3\]",
                 id="TokenSelectionTask.important_index-X-k"),
    pytest.param(lambda: window_mask(4, 5), r"^window must be ", id="window_mask-window-above-L"),
    pytest.param(lambda: _fit(n_steps=0), r"^n_steps must be ", id="fit_regressor-n_steps-zero"),
    pytest.param(lambda: _fit(check_every=0), r"^check_every must be ", id="fit_regressor-check_every-zero"),
    pytest.param(lambda: warmup_cosine_schedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), 0, 1),
                 r"^n_steps must be ", id="warmup_cosine_schedule-n_steps-zero"),
    pytest.param(lambda: warmup_cosine_schedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), 10, 0),
                 r"^warmup must be ", id="warmup_cosine_schedule-warmup-zero"),
    pytest.param(lambda: training_sets(_task(), 0, 10), r"^n_sets must be ", id="training_sets-n_sets-zero"),
    pytest.param(lambda: _task().sample(0), r"^n must be ", id="sample-n-zero"),
    pytest.param(lambda: fit_sweep("cnn", _task(), *training_sets(_task(), 1, 16), [16], [0], [0], **_SWEEP),
                 r"^kind must be ", id="fit_sweep-kind"),
    pytest.param(lambda: fit_sweep("mlp", _task(), *training_sets(_task(), 1, 16), [16], [0], [0, 1], **_SWEEP),
                 r"^init_seeds must have one entry per model", id="fit_sweep-init_seeds"),
    pytest.param(lambda: attention_mass(_model(), _task(), 0), r"^n_test must be ", id="attention_mass-n_test-zero"),
    pytest.param(lambda: _fit(lr=-1.0), r"^lr must be ", id="fit_regressor-lr-negative"),
    pytest.param(lambda: _fit(batch_size=0), r"^batch_size must be ", id="fit_regressor-batch_size-zero"),
    pytest.param(lambda: _fit(X=lambda X: X[0]), r"^X must be a 3-D tensor", id="fit_regressor-X-2d"),
    pytest.param(lambda: _fit(y=lambda y: y[:3]), r"^y must be a tensor of shape \[n=16\]", id="fit_regressor-y-length"),
    pytest.param(lambda: excess_risk(_model(), _task(), 0), r"^n_test must be ", id="excess_risk-n_test-zero"),
]


@pytest.mark.parametrize("call, match", MODEL_BAD_CALLS)
def test_model_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_SWEEP = dict(d_model=8, n_heads=2, n_steps=2, lr=1e-3, batch_size=4, val_fraction=0.25, n_test=20, train_seed=0)


def _lr_closed_form(step, n_steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, n_steps - warmup)))


@pytest.mark.parametrize("n_steps, warmup", [(100, 5), (1, 1), (10, 1), (800, 40), (7, 3), (3, 5)])
def test_warmup_cosine_schedule_matches_closed_form(n_steps, warmup):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=3e-3)
    schedule = warmup_cosine_schedule(opt, n_steps, warmup)
    for step in range(n_steps):
        assert opt.param_groups[0]["lr"] == pytest.approx(_lr_closed_form(step, n_steps, 3e-3, warmup), abs=1e-15)
        opt.step()
        schedule.step()


def test_init_generator_fixes_the_weights_and_leaves_global_state_alone():
    state = torch.get_rng_state()
    a = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=4, init_generator=_gen(5))
    torch.manual_seed(123)                                       # the global state does not matter
    b = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=4, init_generator=_gen(5))
    c = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=4, init_generator=_gen(6))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        if pa.dim() == 2:
            assert not torch.equal(pa, pc), name
            assert float(pa.detach().abs().max()) <= 1 / math.sqrt(pa.shape[1])       # torch's default law U(+-1/sqrt(fan_in))
    torch.set_rng_state(state)
    # None: a fresh CPU generator seeded 0
    m0, m1 = FlatMLP(4, 2, 8), FlatMLP(4, 2, 8, init_generator=_gen(0))
    assert all(torch.equal(p, q) for p, q in zip(m0.parameters(), m1.parameters()))
    lin = init_linear_layers(nn.Linear(3, 2).double(), _gen(1))
    assert lin.weight.dtype == torch.float64


def test_float64_paths_keep_dtype():
    task = TokenSelectionTask(L=6, k=3, smoothness=1.0, noise_std=0.1, key_gap=0.1)
    X, y = task.sample(64, _gen(0), dtype=torch.float64)
    assert X.dtype == y.dtype == torch.float64
    assert task.regression_function(X).dtype == torch.float64
    assert lacunary(X[..., 1], 0.7).dtype == torch.float64
    assert sinusoidal_encoding(6, 8, dtype=torch.float64).dtype == torch.float64
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=6, init_generator=_gen(1)).double()
    assert model(X).dtype == torch.float64
    hist = fit_regressor(model, X, y, n_steps=5, lr=1e-3, batch_size=8, generator=_gen(2))
    assert bool(torch.isfinite(hist).all())
    assert math.isfinite(excess_risk(model, task, 50, _gen(3)))
    assert 0 <= attention_mass(model, task, 50, _gen(3)) <= 1
    sel = hand_set_selector(3, 6, task.g, 2000.0).double()
    assert excess_risk(sel, task, 2000, _gen(4)) < 1e-10


def test_sample_draws_with_the_generator_and_none_is_seed_zero():
    task = TokenSelectionTask(L=5, k=3, smoothness=1.0, noise_std=0.2, key_gap=0.1)
    X1, y1 = task.sample(32, _gen(7))
    X2, y2 = task.sample(32, _gen(7))
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    X0, y0 = task.sample(32)
    Xz, yz = task.sample(32, _gen(0))
    assert torch.equal(X0, Xz) and torch.equal(y0, yz)
    assert isinstance(task, SelectionTask)
    # the risk helpers with generator=None use the seed-0 generator too
    model = FlatMLP(5, 3, 8, init_generator=_gen(1))
    assert excess_risk(model, task, 100) == excess_risk(model, task, 100, _gen(0))


def test_training_sets_are_nested_and_seeded():
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1)
    X, y = training_sets(task, 3, 20, seed0=50)
    assert X.shape == (3, 20, 4, 2) and y.shape == (3, 20)
    X2, y2 = training_sets(task, 2, 20, seed0=51)
    assert torch.equal(X2[0], X[1]) and torch.equal(y2[1], y[2])
    assert torch.equal(X[0], task.sample(20, _gen(50))[0])


def test_fit_sweep_trains_and_measures():
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.3)
    X, y = training_sets(task, 2, 64)
    res = fit_sweep("transformer", task, X, y, [32, 64], [0, 1], [1, 2], **_SWEEP)
    assert isinstance(res, SweepResult)
    models, risks, mass, plateau = res
    assert len(models) == 2 and risks.shape == (2,) and mass.shape == (2,) and ((mass >= 0) & (mass <= 1)).all()
    assert plateau.shape == (2,) and plateau.dtype == np.float64 and np.isfinite(plateau).all()
    models, risks, mass, plateau = fit_sweep("mlp", task, X, y, [64], [1], [3], **_SWEEP)
    assert isinstance(models[0], FlatMLP) and mass is None and risks.shape == (1,) and plateau.shape == (1,)
    tf = SelectiveTransformer(2, 8, 2, 1, 4)
    assert n_parameters(models[0]) <= n_parameters(tf)


def test_init_seeds_formula():
    assert init_seeds([0, 0, 1]) == [10_000, 10_001, 20_002]
    assert init_seeds(range(2), seed0=5) == [10_005, 20_006]


def test_key_shift_keeps_the_selection_and_the_target():
    from learnthy_nb.transformer import TokenSelectionTask
    plain = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.0, key_gap=0.1)
    shifted = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.0, key_gap=0.1, key_shift=2.0)
    X, y = shifted.sample(4000, torch.Generator().manual_seed(0), device="cpu")
    offset = X[..., 0].min(1).values
    assert float(offset.min()) >= 0 and float(X[..., 0].max()) > 2.0                  # keys moved, per sample
    assert torch.equal(shifted.important_index(X), X[..., 0].argmax(1))
    assert torch.allclose(y, shifted.regression_function(X))
    # key_shift = 0 draws nothing extra: the same data as before the option existed
    Xa, ya = plain.sample(50, torch.Generator().manual_seed(1), device="cpu")
    Xb, yb = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.0, key_gap=0.1,
                                key_shift=0.0).sample(50, torch.Generator().manual_seed(1), device="cpu")
    assert torch.equal(Xa, Xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="key_shift"):
        TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.0, key_shift=-1.0)


def test_threshold_selection_works_with_a_gap_and_fails_with_shifted_keys():
    from learnthy_nb.transformer import TokenSelectionTask, threshold_selection_excess_risk
    plain = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.2, key_gap=0.3)
    shifted = TokenSelectionTask(L=8, k=3, smoothness=1.0, noise_std=0.2, key_gap=0.3, key_shift=1.0)
    risk = {name: threshold_selection_excess_risk(t, *t.sample(600, torch.Generator().manual_seed(2), device="cpu"),
                                                  n_test=2000, generator=torch.Generator().manual_seed(3))
            for name, t in (("plain", plain), ("shifted", shifted))}
    Xv, _ = plain.sample(20_000, torch.Generator().manual_seed(4), device="cpu")
    var_f = float(plain.regression_function(Xv).var())
    assert risk["plain"] < 0.35 * var_f and risk["plain"] < 0.6 * risk["shifted"], (risk, var_f)
    X, y = plain.sample(100, torch.Generator().manual_seed(5), device="cpu")
    for bad in ((1.0,), (0.0, 0.5), ()):
        with pytest.raises(ValueError, match="quantiles"):
            threshold_selection_excess_risk(plain, X, y, n_test=10, quantiles=bad)


def test_attention_mass_of_the_best_head_and_of_the_head_average():
    from learnthy_nb.transformer import SelectiveTransformer, TokenSelectionTask, attention_mass, hand_set_selector
    task = TokenSelectionTask(L=6, k=3, smoothness=1.0, noise_std=0.1, key_gap=0.3)
    sel = hand_set_selector(task.k, task.L, task.g, 200.0, device="cpu")
    assert attention_mass(sel, task, 500) > 0.99                            # the hand-set selector puts all on i*
    net = SelectiveTransformer(task.k, 8, 2, 1, task.L).to("cpu")
    best, mean = (attention_mass(net, task, 300, torch.Generator().manual_seed(0), heads=h) for h in ("best", "mean"))
    assert 0 < mean <= best <= 1
    with pytest.raises(ValueError, match="heads"):
        attention_mass(net, task, 10, heads="max")


def test_loss_plateau_constant_linear_and_errors():
    assert PLATEAU_TOL == 0.02
    const = torch.full((40, 3), 0.5)
    p = loss_plateau(const)
    assert isinstance(p, np.ndarray) and p.dtype == np.float64 and np.array_equal(p, np.zeros(3))
    # h_t = 200 - t, t < 100, window 0.1: last window t = 90..99 (mean 105.5), previous t = 80..89 (mean 115.5)
    lin = (200.0 - torch.arange(100.0))[:, None]
    np.testing.assert_allclose(loss_plateau(lin), [10.0 / 105.5], rtol=1e-12)
    # window 0.25 on 8 steps: last = steps 6, 7 (mean 2.5 of 200 - t -> 193.5), previous = steps 4, 5 (195.5)
    np.testing.assert_allclose(loss_plateau(lin[:8], window=0.25), [2.0 / 193.5], rtol=1e-12)
    assert loss_plateau(torch.zeros(10, 1))[0] == 0.0
    rising = torch.arange(1.0, 21.0)[:, None]
    assert loss_plateau(rising)[0] < 0


@pytest.mark.parametrize("window", [0.0, -0.1, 0.51, 1.0, float("nan")])
def test_loss_plateau_rejects_bad_window(window):
    with pytest.raises(ValueError, match=r"^window must be "):
        loss_plateau(torch.ones(20, 2), window=window)


@pytest.mark.parametrize("history", [torch.ones(20), torch.ones(20, 2, 1), torch.ones(20, 0), torch.ones(1, 2)])
def test_loss_plateau_rejects_bad_history(history):
    with pytest.raises(ValueError, match=r"^history must "):
        loss_plateau(history)
