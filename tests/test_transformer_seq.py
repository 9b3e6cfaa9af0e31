"""Tests of learnthy_nb.transformer_seq: the seq-to-seq task, the sequence readout, the window MLP, the hand-set
selector at every position, attention masses, multi-output training and the length curriculum."""
import math

import pytest
import torch

from learnthy_nb.transformer import (SelectionTask, SelectiveTransformer, TokenSelectionTask, excess_risk, fit_ensemble,
                                     hand_set_selector)
from learnthy_nb.transformer_seq import (SequenceReadout, SequenceSelectionTask, WindowMLP, fit_length_curriculum,
                                         hand_set_second_selector, risk_and_mass, sequence_attention_mass,
                                         sequence_excess_risk, sequence_models)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _task(**kw):
    base = dict(L=4, T=10, k=3, smoothness=1.0, noise_std=0.3)
    base.update(kw)
    return SequenceSelectionTask(**base)


def test_shapes_bayes_risk_and_gap_in_every_window():
    task = _task(key_spacing=0.2)
    X, y = task.sample(100_000, torch.Generator().manual_seed(0))
    assert X.shape == (100_000, 10, 3) and y.shape == (100_000, 7) and task.P == 7
    resid2 = (y - task.regression_function(X)) ** 2
    se = resid2.std(dim=0) / math.sqrt(len(y))
    assert torch.all((resid2.mean(dim=0) - task.bayes_risk).abs() < 4 * se)
    keys = X[..., 0].sort(dim=1).values
    assert float((keys[:, 1:] - keys[:, :-1]).min()) >= 0.2 - 1e-5
    # without spacing some pairs of keys are closer than 0.2
    X0, _ = _task(key_spacing=0.0).sample(1000, torch.Generator().manual_seed(0))
    k0 = X0[..., 0].sort(dim=1).values
    assert float((k0[:, 1:] - k0[:, :-1]).min()) < 0.2


def test_ranked_index_and_second_term():
    task = _task(second_weight=0.5, key_offset=2.0)
    X, _ = task.sample(500, torch.Generator().manual_seed(1))
    for rank in (0, 1):
        idx = task.ranked_index(X, rank)
        for p in range(task.P):
            order = X[:, p:p + task.L, 0].argsort(dim=1, descending=True)
            assert torch.equal(idx[:, p], order[:, rank] + p)
    rows = torch.arange(500)[:, None]
    expected = task.g(X[rows, task.ranked_index(X, 0), 1]) + 0.5 * task.g(X[rows, task.ranked_index(X, 1), 1])
    torch.testing.assert_close(task.regression_function(X), expected)
    offsets = X[..., 0].min(dim=1).values
    assert float(offsets.max()) > 1.0                           # the common offset b ~ U[0, 2] moves the keys
    assert torch.equal(task.important_index(X), task.ranked_index(X, 0))


@pytest.mark.parametrize("kw,name", [
    pytest.param(dict(L=0), "L", id="L-zero"), pytest.param(dict(T=3), "T", id="T-below-L"),
    pytest.param(dict(k=1), "k", id="k-one"), pytest.param(dict(smoothness=0.0), "smoothness", id="smoothness-zero"),
    pytest.param(dict(noise_std=-1.0), "noise_std", id="noise_std-negative"),
    pytest.param(dict(key_spacing=-0.1), "key_spacing", id="key_spacing-negative"),
    pytest.param(dict(key_offset=-1.0), "key_offset", id="key_offset-negative"),
    pytest.param(dict(second_weight=-0.1), "second_weight", id="second_weight-negative"),
    pytest.param(dict(L=1, second_weight=0.5), "L", id="L-one-with-second_weight"),
])
def test_task_errors(kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        _task(**kw)


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda task, X: task.ranked_index(X[0]), r"^X must be a 3-D tensor", id="ranked_index-X-2d"),
    pytest.param(lambda task, X: task.ranked_index(X[:, :9]), r"^X must have shape \[n, T=10, k=3\]",
                 id="ranked_index-X-length"),
    pytest.param(lambda task, X: task.ranked_index(X, 4), r"^rank must be ", id="ranked_index-rank-above-L"),
    pytest.param(lambda task, X: task.sample(0), r"^n must be ", id="sample-n-zero"),
])
def test_task_input_errors(call, match):
    task = _task()
    X, _ = task.sample(4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        call(task, X)


def test_readout_shapes_and_shift_equivariance():
    net = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=2, window=4, positional=False, init_generator=_gen(0))
    seq = SequenceReadout(net, L=4)
    X = torch.rand(5, 12, 3, generator=_gen(10))
    out = seq(X)
    assert out.shape == (5, 9)
    torch.testing.assert_close(out, net.sequence(X)[:, 3:])
    shifted = seq(torch.roll(X, 2, dims=1))
    # two layers of width-4 windows see 7 tokens: outputs at t >= 2 + 6 are clear of the wrap-around
    torch.testing.assert_close(shifted[:, 5:], out[:, 3:-2])
    with pytest.raises(ValueError, match=r"^model must be a SelectiveTransformer"):
        SequenceReadout(torch.nn.Linear(3, 1), L=4)
    with pytest.raises(ValueError, match=r"^model\.window must be "):
        SequenceReadout(net, L=3)


def test_window_mlp_applies_one_mlp_to_every_window():
    mlp = WindowMLP(L=3, k=2, width=8, init_generator=_gen(1))
    X = torch.rand(4, 7, 2, generator=_gen(11))
    out = mlp(X)
    assert out.shape == (4, 5)
    for p in range(5):
        torch.testing.assert_close(out[:, p], mlp.net(X[:, p:p + 3].flatten(1)).squeeze(-1).clamp(-3, 3))
    with pytest.raises(ValueError, match=r"^X must be a 3-D tensor \[n, T >= L=3, k=2\]"):
        mlp(torch.rand(4, 2, 2))
    with pytest.raises(ValueError, match=r"^X must be a 3-D tensor \[n, T >= L=3, k=2\]"):
        mlp(torch.rand(4, 7, 3))
    with pytest.raises(ValueError, match=r"^width must be "):
        WindowMLP(L=3, k=2, width=0)


def test_hand_set_selector_attains_bayes_risk_at_every_position():
    task = _task(L=6, T=20, key_spacing=0.1)
    sharp = SequenceReadout(hand_set_selector(k=3, window=6, g=task.g, beta=2000.0), L=6)
    X, y = task.sample(50_000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        resid2 = (sharp(X) - y) ** 2
    se = float(resid2.std()) / math.sqrt(resid2.numel())
    assert abs(float(resid2.mean()) - task.bayes_risk) < 4 * se
    assert sequence_excess_risk(sharp, task, 5000) < 1e-6
    mass = sequence_attention_mass(sharp.model, task, 2000)
    assert mass.shape == (1,) and float(mass) > 0.999
    assert float(sequence_attention_mass(sharp.model, task, 2000, rank=1)) < 1e-3
    soft = SequenceReadout(hand_set_selector(k=3, window=6, g=task.g, beta=10.0), L=6)   # beta * delta / 2 = 0.5
    assert sequence_excess_risk(soft, task, 5000) > 1e-3
    assert float(sequence_attention_mass(soft.model, task, 2000)) < 0.9
    with pytest.raises(ValueError, match=r"^beta must be "):
        hand_set_selector(k=3, window=6, g=task.g, beta=0.0)


def test_excess_risk_checks_output_shape():
    task = _task()
    net = SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=4, positional=False)
    with pytest.raises(ValueError, match=r"^model must return \[n, P=7\] outputs"):
        sequence_excess_risk(net, task, 10)                     # forward returns [n], not [n, P]
    with pytest.raises(ValueError, match=r"^n_test must be "):
        sequence_excess_risk(SequenceReadout(net, 4), task, 0)


class _Last(torch.nn.Module):
    def __init__(self, model, keepdim):
        super().__init__()
        self.model, self.keepdim = model, keepdim

    def forward(self, X):
        out = self.model(X)
        return out[:, None] if self.keepdim else out


def test_multi_output_training_matches_single_output_and_learns():
    # y [S, N, 1] with a model returning [n, 1] trains exactly like y [S, N] with the model returning [n]
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.3)
    X, y = task.sample(256, torch.Generator().manual_seed(3))
    a = SelectiveTransformer(k=2, d_model=8, n_heads=2, n_layers=1, window=4, init_generator=_gen(0))
    b = SelectiveTransformer(k=2, d_model=8, n_heads=2, n_layers=1, window=4, init_generator=_gen(0))
    kw = dict(n_steps=60, lr=3e-3, batch_size=32, val_fraction=0.25)
    fit_ensemble([_Last(a, False)], X[None], y[None], [256], generator=torch.Generator().manual_seed(1), **kw)
    fit_ensemble([_Last(b, True)], X[None], y[None, :, None], [256], generator=torch.Generator().manual_seed(1), **kw)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    # a sequence readout trained on all P outputs improves on its initialisation
    seq_task = _task(L=4, T=8, k=2, noise_std=0.1, key_spacing=0.2)
    Xs, ys = seq_task.sample(512, torch.Generator().manual_seed(4))
    model = SequenceReadout(SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=4, positional=False,
                                                 init_generator=_gen(1)), L=4)
    before = sequence_excess_risk(model, seq_task, 1000)
    fit_ensemble([model], Xs[None], ys[None], [512], n_steps=300, lr=3e-3, batch_size=32,
                 generator=torch.Generator().manual_seed(5))
    assert sequence_excess_risk(model, seq_task, 1000) < 0.5 * before
    with pytest.raises(ValueError, match=r"^y must have shape \[S, N\]"):
        fit_ensemble([model], Xs[None], ys[None, :, :, None], [512], n_steps=1, lr=1e-3, batch_size=4)


def test_length_curriculum_carries_weights_to_long_windows():
    short = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    long = TokenSelectionTask(L=16, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    Xs, ys = short.sample(512, torch.Generator().manual_seed(6))
    Xl, yl = long.sample(512, torch.Generator().manual_seed(7))
    model = SelectiveTransformer(k=2, d_model=16, n_heads=2, n_layers=1, window=16, positional=False,
                                 init_generator=_gen(2))
    before = excess_risk(model, long, 1000)
    history = fit_length_curriculum([model], (Xs[None], ys[None]), (Xl[None], yl[None]), [512], n_steps_short=200,
                                    n_steps_long=100, lr=3e-3, batch_size=64, generator=torch.Generator().manual_seed(8))
    assert model.window == 16
    assert excess_risk(model, long, 1000) < 0.5 * before
    assert history.shape == (300, 1) and history.device.type == "cpu" and bool(torch.isfinite(history).all())


def test_length_curriculum_history_is_the_two_phases_of_fit_ensemble():
    """The returned losses are the two `fit_ensemble` histories in order, and returning them changes no training step:
    the same two calls made by hand (one generator, used by both phases in turn) give the same losses and weights."""
    short = TokenSelectionTask(L=2, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    long = TokenSelectionTask(L=6, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    Xs, ys = short.sample(64, torch.Generator().manual_seed(6))
    Xl, yl = long.sample(64, torch.Generator().manual_seed(7))
    nets = lambda: [SelectiveTransformer(k=2, d_model=8, n_heads=2, n_layers=1, window=6, positional=False,
                                         init_generator=_gen(i)) for i in range(2)]
    a, b = nets(), nets()
    history = fit_length_curriculum(a, (Xs[None].expand(2, -1, -1, -1), ys[None].expand(2, -1)),
                                    (Xl[None].expand(2, -1, -1, -1), yl[None].expand(2, -1)), [64, 32], n_steps_short=7,
                                    n_steps_long=5, lr=1e-3, batch_size=8, generator=_gen(3))
    g, parts = _gen(3), []
    for X, y, steps in ((Xs, ys, 7), (Xl, yl, 5)):
        for m in b:
            m.window, m.L = X.shape[1], None
            m.train()
        parts.append(fit_ensemble(b, X[None].expand(2, -1, -1, -1), y[None].expand(2, -1), [64, 32], n_steps=steps,
                                  lr=1e-3, batch_size=8, generator=g, val_fraction=0.2))
    assert history.shape == (12, 2) and torch.equal(history, torch.cat(parts))
    for ma, mb in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


def _curriculum(models, short_first=True, short_X=lambda X: X, **kw):
    """fit_length_curriculum on windows of 4 (short) and 6 (long) tokens; the arguments break one thing each."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(1, 8, 4, 2, generator=g), torch.rand(1, 8, generator=g)
    XL, yL = torch.rand(1, 8, 6, 2, generator=g), torch.rand(1, 8, generator=g)
    short, long = ((short_X(X), y), (XL, yL)) if short_first else ((XL, yL), (X, y))
    args = dict(n_steps_short=1, n_steps_long=1, lr=1e-3, batch_size=4) | kw
    fit_length_curriculum(models(), short, long, [8], **args)


def _net(positional):
    return [SelectiveTransformer(k=2, d_model=8, n_heads=2, n_layers=1, window=6, positional=positional)]


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda: _curriculum(lambda: _net(True)), r"^models\[0\] must be a SelectiveTransformer with positional=False",
                 id="models-positional"),
    pytest.param(lambda: _curriculum(lambda: []), r"^models must be a non-empty sequence", id="models-empty"),
    pytest.param(lambda: _curriculum(lambda: _net(False), short_first=False),
                 r"^short windows must not be longer than long ones", id="short-longer-than-long"),
    pytest.param(lambda: _curriculum(lambda: _net(False), short_X=lambda X: X[0]), r"^short\[0\] must be a 4-D tensor",
                 id="short-X-3d"),
    pytest.param(lambda: _curriculum(lambda: _net(False), n_steps_short=0), r"^n_steps_short must be ",
                 id="n_steps_short-zero"),
    pytest.param(lambda: _curriculum(lambda: _net(False), n_steps_long=0), r"^n_steps_long must be ",
                 id="n_steps_long-zero"),
    pytest.param(lambda: sequence_models("cnn", 2, 4, 8, [0]), r"^kind must be ", id="sequence_models-kind"),
    pytest.param(lambda: sequence_attention_mass(_net(False)[0], _task(L=6, T=8, k=2), 0), r"^n_test must be ",
                 id="sequence_attention_mass-n_test-zero"),
])
def test_length_curriculum_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()



def test_two_layers_can_select_the_second_ranked_token():
    # The second half of the chapter's proposition: a two-layer transformer represents g(v_i1) + c g(v_i2).
    task = _task(L=8, T=8, k=3, key_spacing=0.1, key_offset=1.0, second_weight=0.5)
    model = hand_set_second_selector(task)
    X, _ = task.sample(20_000, torch.Generator().manual_seed(9))
    X = X.double()
    with torch.no_grad():
        pred = model(X)
    err = float(((pred - task.regression_function(X).squeeze(-1)) ** 2).mean())
    assert err < 1e-8, err
    w2 = model.attention_weights()[-1][:, 0, -1, :]                        # layer 2, head 0, read-out row
    i2 = task.ranked_index(X, 1)[:, 0]
    assert float(w2[torch.arange(len(X)), i2].mean()) > 0.999
    # without the penalty (lam = 0) head 0 selects the top token instead, and the target is missed
    with torch.no_grad():
        model.attn[1].q.weight[1, 3] = 0.0
        err0 = float(((model(X) - task.regression_function(X).squeeze(-1)) ** 2).mean())
    assert err0 > 1e-3


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda: hand_set_second_selector(TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1)),
                 r"^task must be a SequenceSelectionTask", id="task-type"),
    pytest.param(lambda: hand_set_second_selector(_task(L=1, T=4)), r"^task\.L must be >= 2", id="task-L-one"),
    pytest.param(lambda: hand_set_second_selector(_task(), beta=0.0), r"^beta must be ", id="beta-zero"),
    pytest.param(lambda: hand_set_second_selector(_task(), K=1e4), r"^K must be ",          # exp(K key) would overflow float64
                 id="K-overflows"),
])
def test_second_selector_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sequence_task_is_a_selection_task_and_keeps_float64():
    task = _task(key_offset=1.0, second_weight=0.5)
    assert isinstance(task, SelectionTask) and task.target_shape(5) == (5, task.P)
    X, y = task.sample(64, _gen(3), dtype=torch.float64)
    assert X.dtype == y.dtype == torch.float64 and y.shape == (64, task.P)
    X1, y1 = task.sample(64, _gen(3), dtype=torch.float64)
    assert torch.equal(X, X1) and torch.equal(y, y1)
    X0, y0 = task.sample(8)                                      # None: the seed-0 CPU generator
    assert torch.equal(X0, task.sample(8, _gen(0))[0])
    model = SequenceReadout(SelectiveTransformer(k=3, d_model=8, n_heads=2, n_layers=1, window=4, positional=False,
                                                 init_generator=_gen(4)).double(), L=4)
    assert model(X).dtype == torch.float64
    assert math.isfinite(sequence_excess_risk(model, task, 32, _gen(5)))
    mass = sequence_attention_mass(model.model, task, 32, _gen(5), rank=1)
    assert mass.dtype == torch.float64 and mass.device.type == "cpu"
    two = hand_set_second_selector(task)
    assert next(two.parameters()).dtype == torch.float64


def test_sequence_models_and_risk_and_mass():
    seqs = sequence_models("transformer", 2, 4, 8, [1, 2])
    mlps = sequence_models("mlp", 2, 4, 8, [1])
    assert all(isinstance(m, SequenceReadout) for m in seqs) and isinstance(mlps[0], WindowMLP)
    again = sequence_models("transformer", 2, 4, 8, [1])[0]
    assert all(torch.equal(p, q) for p, q in zip(seqs[0].parameters(), again.parameters()))
    assert not torch.equal(seqs[0].model.embed.weight, seqs[1].model.embed.weight)
    task = TokenSelectionTask(L=4, k=2, smoothness=1.0, noise_std=0.1, key_gap=0.2)
    models = [SelectiveTransformer(2, 8, 2, 1, 4, positional=False, init_generator=_gen(s)) for s in (0, 1)]
    risk, mass = risk_and_mass(models, task, 50)
    assert risk.shape == mass.shape == (2,) and ((mass > 0) & (mass < 1)).all()
    assert risk[0] == excess_risk(models[0], task, 50, _gen(999))
