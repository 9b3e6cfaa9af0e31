"""learnthy_nb.ood (nbs/51_ood.ipynb): coloured digits, the two-feature OOD model, ERM, IRMv1 / V-REx penalties,
FeAT (augmentation + retention rounds) and the OOD stage."""
import math

import pytest
import torch
import torch.nn.functional as F

from learnthy_nb import core
from learnthy_nb.ood import (FeatResult, Net, OODData, coloured_digits, erm_train, feat_train, init_net,
                             irm_penalty, masked_loss, ood_train, remove_colour, retention_loss, two_feature_ood,
                             vrex_penalty)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def small(seed=0, seeds=2, n=300):
    return two_feature_ood(n, (0.1, 0.2), gen(seed), seeds=seeds, n_test=200, device="cpu")


# ------------------------------------------------------------------------------------------------ data
def test_coloured_digits_shapes_colour_law_and_label_noise():
    D = coloured_digits(4, env_flips=(0.1, 0.3), test_flip=0.9, label_noise=0.25, generator=gen(1), device="cpu")
    assert D.X.shape == (4, 2, 700, 128) and D.y.shape == (4, 2, 700) and D.X_test.shape == (4, 397, 128)
    colour = lambda X: (X[..., 64:].sum(-1) > 0).float()
    # exactly one channel holds the image
    assert bool(((D.X[..., :64].sum(-1) > 0) != (D.X[..., 64:].sum(-1) > 0)).all())
    assert abs(float((colour(D.X[:, 0]) == D.y[:, 0]).float().mean()) - 0.9) < 0.03
    assert abs(float((colour(D.X[:, 1]) == D.y[:, 1]).float().mean()) - 0.7) < 0.03
    assert abs(float((colour(D.X_test) == D.y_test).float().mean()) - 0.1) < 0.03
    # the shape label (digit >= 5) agrees with y with probability 1 - label_noise: read it back from the pixels
    from sklearn.datasets import load_digits
    dg = load_digits()
    table = {tuple(r.tolist()): int(t >= 5) for r, t in zip(torch.as_tensor(dg.data / 16.0, dtype=torch.float32), dg.target)}
    G = remove_colour(D)
    img, y = G.X.reshape(-1, 64), G.y.reshape(-1)
    shape = torch.tensor([table[tuple(r.tolist())] for r in img], dtype=torch.float32)
    assert abs(float((shape == y).float().mean()) - 0.75) < 0.03


def test_coloured_digits_deterministic_and_seeded():
    a = coloured_digits(2, generator=gen(3), device="cpu")
    b = coloured_digits(2, generator=gen(3), device="cpu")
    c = coloured_digits(2, generator=gen(4), device="cpu")
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    assert torch.equal(coloured_digits(1, device="cpu").X, coloured_digits(1, device="cpu").X)   # generator=None: seed 0


def test_two_feature_label_law_and_coordinates():
    S = two_feature_ood(100_000, (0.1, 0.3), gen(2), seeds=1, n_test=100_000, sigma=0.0, device="cpu")
    assert S.X.shape == (1, 2, 100_000, 10) and S.invariant == [0] and S.spurious == [1]
    s = lambda v: (v > 0).float()
    assert abs(float((s(S.X[..., 0]) == S.y).float().mean()) - 0.75) < 0.01
    assert abs(float((s(S.X[0, 0, :, 1]) == S.y[0, 0]).float().mean()) - 0.9) < 0.01
    assert abs(float((s(S.X[0, 1, :, 1]) == S.y[0, 1]).float().mean()) - 0.7) < 0.01
    assert abs(float((s(S.X_test[0, :, 1]) == S.y_test[0]).float().mean()) - 0.1) < 0.01
    assert float(S.X[..., 2:].abs().max()) == 0.0                   # sigma = 0: noise coordinates vanish
    T = two_feature_ood(50_000, (0.1,), gen(2), sigma=0.5, device="cpu")
    assert abs(float(T.X[..., 2:].std()) - 0.5) < 0.01 and abs(float(T.y.mean()) - 0.5) < 0.01


def test_remove_colour_sums_channels_and_rejects_odd_width():
    D = small()
    with pytest.raises(ValueError, match="data"):
        remove_colour(OODData(torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2)))
    G = remove_colour(D)
    assert torch.equal(G.X, D.X[..., :5] + D.X[..., 5:])


# ------------------------------------------------------------------------------------------------ losses
def test_irm_penalty_matches_autograd_and_vrex_is_variance():
    z, y = torch.randn(3, 2, 50, generator=gen(5)), (torch.rand(3, 2, 50, generator=gen(6)) < 0.5).float()
    s = torch.ones(3, 2, 1, requires_grad=True)
    r = F.binary_cross_entropy_with_logits(z * s, y, reduction="none").mean(-1)
    (g,) = torch.autograd.grad(r.sum(), s)
    assert torch.allclose(irm_penalty(z, y), g[..., 0].square().sum(-1), atol=1e-6)
    assert torch.allclose(vrex_penalty(z, y), r.var(-1, unbiased=False).detach(), atol=1e-6)
    same = torch.cat([z[:, :1], z[:, :1]], 1), torch.cat([y[:, :1], y[:, :1]], 1)
    assert float(vrex_penalty(*same).abs().max()) < 1e-7             # equal risks: no variance


def test_masked_loss_empty_set_is_zero_and_full_set_is_mean():
    z, y = torch.randn(2, 9, generator=gen(7)), torch.ones(2, 9)
    assert float(masked_loss(z, y, torch.zeros(2, 9, dtype=torch.bool)).abs().max()) == 0
    assert torch.allclose(masked_loss(z, y, torch.ones(2, 9, dtype=torch.bool)), masked_loss(z, y))


# ------------------------------------------------------------------------------------------------ training
def test_erm_learns_the_training_signal_and_is_deterministic():
    D = small(seed=8, n=500)
    a = erm_train(D, width=8, n_steps=150, generator=gen(1))
    b = erm_train(D, width=8, n_steps=150, generator=gen(1))
    assert torch.equal(a.W, b.W)
    assert float(a.accuracy(*D.pooled()).min()) > 0.8


def test_feat_with_one_round_equals_erm():
    D = small(seed=9)
    e = erm_train(D, width=8, n_steps=40, generator=gen(2))
    f = feat_train(D, rounds=1, width=8, n_steps=40, generator=gen(2))
    assert isinstance(f, FeatResult)
    for u, v in zip((e.W, e.b, e.h, e.c), (f.net.W, f.net.b, f.net.h, f.net.c)):
        assert torch.equal(u, v)
    assert f.W_rounds.shape == (1, 2, 8, 10) and torch.equal(f.W_rounds[0], e.W)


def test_feat_rounds_record_history_and_stay_finite():
    D = small(seed=10)
    f = feat_train(D, rounds=3, width=8, n_steps=40, gamma=1.0, generator=gen(3))
    assert f.W_rounds.shape == (3, 2, 8, 10) and f.n_wrong.shape == (3, 2) and f.train_acc.shape == (3, 2)
    assert bool(torch.isfinite(f.W_rounds).all())
    n = D.X.shape[1] * D.X.shape[2]
    assert torch.allclose(f.train_acc, 1 - f.n_wrong.float() / n)
    assert not torch.equal(f.W_rounds[1], f.W_rounds[0])           # later rounds move the featuriser


def test_retention_term_is_zero_when_previous_head_is_right_on_nothing():
    D = small(seed=11)
    net = init_net(2, 10, 6, gen(4), device="cpu")
    X, y = D.pooled()
    prev = (net.h * 2, net.c - 1)
    none = torch.zeros_like(y, dtype=torch.bool)
    out = retention_loss(net, prev, X, y, none)
    assert out.shape == (2,) and float(out.abs().max()) == 0
    full = retention_loss(net, prev, X, y, ~none)
    assert torch.allclose(full, masked_loss(net.logits(X, prev), y))
    # gradient reaches the featuriser only: the previous head is frozen
    W = net.W.clone().requires_grad_()
    h = prev[0].clone().requires_grad_()
    net2 = Net(W, net.b, net.h, net.c)
    retention_loss(net2, (h, prev[1]), X, y, ~none).sum().backward()
    assert W.grad is not None and h.grad is None


def test_ood_train_changes_the_net_and_zero_steps_copy():
    D = small(seed=12)
    e = erm_train(D, width=8, n_steps=30, generator=gen(5))
    same = ood_train(D, e, n_steps=0)
    assert torch.equal(same.W, e.W) and same.W is not e.W
    for obj in ("irm", "vrex"):
        o = ood_train(D, e, objective=obj, penalty=1e3, n_steps=30, anneal_steps=5)
        assert bool(torch.isfinite(o.W).all()) and not torch.equal(o.W, e.W)


def test_divergence_raises():
    D = small(seed=13)
    D.X[0, 0, 0, 0] = float("nan")
    with pytest.raises(core.DivergenceError):
        erm_train(D, width=4, n_steps=5, generator=gen(0))


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw, name", [
    (dict(seeds=0), "seeds"), (dict(env_flips=(1.5,)), "env_flips"), (dict(env_flips=()), "env_flips"),
    (dict(test_flip=-0.1), "test_flip"), (dict(label_noise=0.6), "label_noise"), (dict(n_test=0), "n_test"),
    (dict(generator=3), "generator")])
def test_coloured_digits_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        coloured_digits(**kw)


@pytest.mark.parametrize("kw, name", [
    (dict(n=0), "n"), (dict(envs=(2.0,)), "envs"), (dict(envs=()), "envs"), (dict(seeds=0), "seeds"),
    (dict(inv_noise=0.7), "inv_noise"), (dict(test_flip=2.0), "test_flip"), (dict(n_test=0), "n_test"),
    (dict(d_noise=-1), "d_noise"), (dict(sigma=-1.0), "sigma")])
def test_two_feature_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        two_feature_ood(**{"n": 10, **kw})


@pytest.mark.parametrize("kw, name", [(dict(seeds=0), "seeds"), (dict(d=0), "d"), (dict(width=0), "width")])
def test_init_net_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        init_net(**{**dict(seeds=1, d=2, width=3), **kw})


@pytest.mark.parametrize("kw, name", [(dict(n_steps=-1), "n_steps"), (dict(lr=0.0), "lr"), (dict(l2=-1.0), "l2"),
                                      (dict(width=0), "width")])
def test_erm_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        erm_train(small(), **kw)


@pytest.mark.parametrize("kw, name", [(dict(rounds=0), "rounds"), (dict(n_steps=-1), "n_steps"), (dict(lr=-1.0), "lr"),
                                      (dict(l2=-1.0), "l2"), (dict(gamma=-0.1), "gamma")])
def test_feat_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        feat_train(small(), **kw)


@pytest.mark.parametrize("kw, name", [(dict(objective="dro"), "objective"), (dict(penalty=-1.0), "penalty"),
                                      (dict(n_steps=-1), "n_steps"), (dict(lr=0.0), "lr"), (dict(l2=-1.0), "l2"),
                                      (dict(anneal_steps=-1), "anneal_steps")])
def test_ood_train_errors(kw, name):
    D = small()
    with pytest.raises(ValueError, match=name):
        ood_train(D, init_net(2, 10, 4, gen(0), device="cpu"), **kw)
