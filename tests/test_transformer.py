"""Tests of learnthy_nb.transformer: masks, shapes, equivariance, a hand-set selector, Bayes risk, errors."""
import math

import pytest
import torch
from torch import nn

from learnthy_nb.core import DivergenceError
from learnthy_nb.transformer import (FlatMLP, SelectiveTransformer, TokenSelectionTask, attention_mass,
                                     excess_risk, fit_ensemble, fit_regressor, lacunary, window_mask)


def test_window_mask_band():
    m = window_mask(6, 3)
    assert m.shape == (6, 6) and m.dtype == torch.bool
    for t in range(6):
        for s in range(6):
            assert bool(m[t, s]) == (0 <= t - s < 3)
    assert torch.equal(window_mask(5, 5), torch.ones(5, 5, dtype=torch.bool).tril())
    assert torch.equal(window_mask(4, 1), torch.eye(4, dtype=torch.bool))


def test_shapes_and_attention_respects_window():
    torch.manual_seed(0)
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=4)
    X = torch.rand(5, 10, 3)
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


def test_sequence_output_depends_only_on_window():
    torch.manual_seed(1)
    model = SelectiveTransformer(k=2, d_model=8, n_heads=1, n_layers=1, window=3)
    X = torch.rand(4, 8, 2)
    X2 = X.clone()
    X2[:, 0] += 5.0                                             # token 0 is outside the windows of t >= 3
    out, out2 = model.sequence(X), model.sequence(X2)
    torch.testing.assert_close(out[:, 3:], out2[:, 3:])
    assert not torch.allclose(out[:, 0], out2[:, 0])


def test_permutation_equivariance_without_positional_encoding():
    torch.manual_seed(2)
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=7, positional=False)
    model_pe = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=7, positional=True)
    model_pe.load_state_dict(model.state_dict())
    X = torch.rand(4, 7, 3)
    perm = torch.tensor([3, 0, 5, 1, 2, 4, 6])                  # keeps the last (read-out) position
    torch.testing.assert_close(model(X[:, perm]), model(X))     # full window: invariant at the read-out
    assert not torch.allclose(model_pe(X[:, perm]), model_pe(X))
    # with a full (non-causal-limited) window the last layer's weights permute with the tokens
    w = model.attention_weights(X)[-1][:, :, 0]
    w_perm = model.attention_weights(X[:, perm])[-1][:, :, 0]
    torch.testing.assert_close(w_perm, w[..., perm])


def test_shift_equivariance_without_positional_encoding():
    torch.manual_seed(3)
    model = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=3, positional=False)
    X = torch.rand(4, 10, 3)
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


class _Link(nn.Module):
    """Token-wise map writing g(channel 2) into channel 3 (the FNN, set by hand to compute g exactly)."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, h):
        out = torch.zeros_like(h)
        out[..., 3] = self.g(h[..., 2])
        return out


def _hand_set_selector(task, beta):
    model = SelectiveTransformer(k=task.k, d_model=4, n_heads=1, n_layers=1, window=task.L, positional=False)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[0, 0] = 1.0                          # channel 0: key
        model.embed.weight[1, 1] = 1.0                          # channel 1: value v
        a = model.attn[0]
        a.q.bias[0] = 1.0                                       # constant query e_0
        a.k.weight[0, 0] = 1.0                                  # key reads channel 0: score = beta * key_s / 2
        a.v.weight[1, 1] = 1.0                                  # value reads v
        a.o.weight[2, 1] = 1.0                                  # attended v written to channel 2
        a.log_beta.fill_(math.log(beta))
        model.head.weight[0, 3] = 1.0
    model.ffn[0] = _Link(task.g)
    return model


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
    torch.manual_seed(0)
    model = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=4)
    twin = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=4)
    twin.load_state_dict(model.state_dict())
    before = excess_risk(model, task, 2000)
    hist = fit_regressor(model, X, y, steps=300, lr=3e-3, batch_size=64, generator=torch.Generator().manual_seed(1))
    assert len(hist) == 300 and all(math.isfinite(h) for h in hist)
    after = excess_risk(model, task, 2000)
    assert after < 0.5 * before
    # the batched trainer, given the same generator, gives the same model
    fit_ensemble([twin], X[None], y[None], [512], steps=300, lr=3e-3, batch_size=64,
                 generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(X[:50]), twin(X[:50]), rtol=1e-4, atol=1e-5)


def test_divergence_detected():
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1)
    X, y = task.sample(64, torch.Generator().manual_seed(6))
    y = y.clone()
    y[0] = float("nan")
    model = FlatMLP(L=4, k=2, width=8)
    with pytest.raises(DivergenceError):
        fit_regressor(model, X, y, steps=50, lr=1e-2, batch_size=64, generator=torch.Generator().manual_seed(0))


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
    args = dict(steps=1, lr=1e-3, batch_size=4) | kw
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
    pytest.param(lambda: _fit(steps=0), r"^steps must be ", id="fit_regressor-steps-zero"),
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
