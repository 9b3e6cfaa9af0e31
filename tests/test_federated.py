"""learnthy_nb.federated: DP-GD, DIFF2 and DP-SGD on one client/server core; equalities between them, clipping,
noise calibration, the vectorised clients, generators and dtypes, and every ValueError path."""
import logging
import math

import pytest
import torch
from torch.func import grad

from learnthy_nb.core import gaussian, uniform
from learnthy_nb.federated import (Diff2Server, LogisticNonconvex, SoftplusNet, client_step, diff2, dp_gd, dp_sgd,
                                   parity_digits, per_sample_grads, run_diff2, server_step, split_clients, stack_clients,
                                   theory_schedule)
from learnthy_nb.privacy import diff2_round_counts, epsilon_from_mu, gdp_mu, mu_from_epsilon

logging.getLogger("absl").setLevel(logging.ERROR)
DELTA = 1e-5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n=40, d=6, seed=0, dtype=torch.float64):
    g = _gen(seed)
    A = gaussian((n, d), generator=g, dtype=dtype)
    A = A / A.norm(dim=1, keepdim=True).max()
    y = torch.where(uniform((n,), generator=g, dtype=dtype) < 0.5, -1.0, 1.0).to(dtype)
    return A, y


def _generic(loss):
    """The same loss without its closed forms: forces the torch.func path."""
    return lambda p, a, t: loss(p, a, t)


def _split(A, y, sizes):
    out, start = [], 0
    for s in sizes:
        out.append((A[start:start + s], y[start:start + s]))
        start += s
    return out


# ------------------------------------------------------------------------------------- per-sample gradients
def test_closed_form_gradients_equal_torch_func():
    A, y = _data()
    x = gaussian((3, 6), generator=_gen(1), dtype=torch.float64)
    loss = LogisticNonconvex(0.2)
    closed = per_sample_grads(loss, x, A, y)
    assert closed.shape == (3, 40, 6) and closed.dtype == torch.float64
    assert torch.allclose(closed, per_sample_grads(_generic(loss), x, A, y), atol=1e-12)
    G, _ = loss.bounds(1.0, 6)
    assert float(closed.norm(dim=-1).max()) <= G


def test_softplus_net_gradients_add_up_to_the_full_gradient():
    A, y = _data(n=12, d=5)
    net = SoftplusNet(5, hidden=3)
    w = gaussian((2, net.dim), generator=_gen(2), dtype=torch.float64)
    ps = per_sample_grads(net, w, A, y)
    full = torch.stack([grad(lambda p: sum(net(p, a, t) for a, t in zip(A, y)))(v) for v in w])
    assert ps.shape == (2, 12, net.dim) and torch.allclose(ps.sum(1), full, atol=1e-10)


@pytest.mark.parametrize("difference", [False, True])
@pytest.mark.parametrize("per_run_mask", [False, True])
def test_closed_clipped_sum_equals_torch_func(difference, per_run_mask):
    A, y = _data()
    C = stack_clients(_split(A, y, (15, 7, 18)))
    x = gaussian((3, 6), generator=_gen(3), dtype=torch.float64)
    prev = gaussian((3, 6), generator=_gen(4), dtype=torch.float64) if difference else None
    mask = C.mask & (uniform((3, *C.mask.shape), generator=_gen(5)) < 0.5) if per_run_mask else C.mask
    clip = torch.tensor([0.03, 0.3, math.inf], dtype=torch.float64)
    loss = LogisticNonconvex(0.1)
    a = client_step(loss, x, prev, C.features, C.targets, mask, clip)
    b = client_step(_generic(loss), x, prev, C.features, C.targets, mask, clip)
    assert a.shape == (3, 3, 6) and torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("difference", [False, True])
def test_clipping_bounds_every_contribution(difference):
    A, y = _data(n=30)
    C = stack_clients([(A[i:i + 1], y[i:i + 1]) for i in range(30)])          # one record per client
    x = 3 * gaussian((2, 6), generator=_gen(6), dtype=torch.float64)
    prev = -x if difference else None
    clip = torch.tensor([0.01, 0.2], dtype=torch.float64)
    for loss in (LogisticNonconvex(0.5), _generic(LogisticNonconvex(0.5))):
        msg = client_step(loss, x, prev, C.features, C.targets, C.mask, clip)     # [30, 2, 6]
        assert bool((msg.norm(dim=-1) <= clip + 1e-12).all())
        assert bool((msg.norm(dim=-1) > 0.999 * clip).any())                     # the clip is attained somewhere


# ------------------------------------------------------------------------------------------- the algorithms
def test_diff2_with_period_one_equals_dp_gd_iterate_by_iterate():
    A, y = _data()
    clients = _split(A, y, (25, 15))
    x0 = torch.zeros(3, 6, dtype=torch.float64)
    kw = dict(eps=2.0, delta=DELTA, rounds=20, eta=1.5)
    a = dp_gd(LogisticNonconvex(0.1), clients, x0, clip=0.4, generator=_gen(7), **kw)
    b = diff2(LogisticNonconvex(0.1), clients, x0, period=1, clip1=0.4, clip2=0.7, generator=_gen(7), **kw)
    assert torch.equal(a.iterates, b.iterates) and a.noise_multipliers[0] == b.noise_multipliers[0]
    assert abs(a.mu - b.mu) < 1e-12 and a.iterates.shape == (21, 3, 6)


def test_zero_noise_and_no_clipping_is_gradient_descent():
    A, y = _data()
    loss = LogisticNonconvex(0.3)
    x0 = gaussian((6,), generator=_gen(8), dtype=torch.float64)
    xs = run_diff2(loss, _split(A, y, (10, 30)), x0, eta=0.8, rounds=23, period=7, clip1=math.inf, clip2=math.inf,
                   noise1=0.0, noise2=0.0, generator=_gen(9), desc=None)
    ref = [x0]
    for _ in range(23):
        ref.append(ref[-1] - 0.8 * per_sample_grads(loss, ref[-1][None], A, y)[0].mean(0))
    assert xs.shape == (24, 6) and torch.allclose(xs, torch.stack(ref), atol=1e-12)


def test_vectorised_clients_equal_a_loop_over_clients():
    A, y = _data()
    sizes = (9, 20, 11)
    clients = _split(A, y, sizes)
    loss = LogisticNonconvex(0.1)
    kw = dict(eta=torch.tensor([0.5, 1.0]), clip1=0.3, clip2=0.4, noise1=[1.0, 2.0], noise2=3.0)
    vec = run_diff2(loss, clients, torch.zeros(2, 6, dtype=torch.float64), rounds=12, period=4, generator=_gen(10),
                    desc=None, **kw)
    g = _gen(10)                                      # the same server generator, clients one at a time
    x = x_prev = torch.zeros(2, 6, dtype=torch.float64)
    v = torch.zeros_like(x)
    ones = torch.ones(2, dtype=torch.float64)
    for r in range(12):
        anchor = r % 4 == 0
        clip = 0.3 * ones if anchor else 0.4 * torch.linalg.vector_norm(x - x_prev, dim=-1)
        msg = sum(client_step(loss, x, None if anchor else x_prev, f, t, torch.ones(len(t), dtype=torch.bool), clip)
                  for f, t in clients)
        z = torch.tensor([1.0, 2.0], dtype=torch.float64) if anchor else 3.0 * ones
        v = server_step(v, msg, sum(sizes), clip, z, torch.full((2,), anchor), g)
        x_prev, x = x, x - torch.tensor([0.5, 1.0], dtype=torch.float64)[:, None] * v
        assert torch.allclose(vec[r + 1], x, atol=1e-12)


def test_noise_std_matches_the_calibration():
    n, d, runs = 50, 40, 400
    zero = LogisticNonconvex(0.0)                      # zero features: every gradient is 0, only noise moves x
    clients = [(torch.zeros(n, d, dtype=torch.float64), torch.ones(n, dtype=torch.float64))]
    res = diff2(zero, clients, torch.zeros(runs, d, dtype=torch.float64), eps=1.0, delta=DELTA, rounds=4, period=4,
                eta=1.0, clip1=0.5, clip2=2.0, generator=_gen(11))
    z1, z2 = res.noise_multipliers
    x = res.iterates
    v0 = x[0] - x[1]                                   # anchor: v_0 = N(0, (z1 2 C1 / n)^2 I)
    assert abs(float(v0.std()) / (z1 * 2 * 0.5 / n) - 1) < 0.03
    step = torch.linalg.vector_norm(x[1] - x[0], dim=-1, keepdim=True)
    xi = ((x[1] - x[2]) - v0) / (z2 * 2 * 2.0 * step / n)    # difference round: noise std z2 2 C2 ||x_1 - x_0|| / n
    assert abs(float(xi.std()) - 1) < 0.03
    A, D = diff2_round_counts(4, 4)
    assert abs(res.mu - mu_from_epsilon(1.0, DELTA)) < 1e-9 and abs(res.eps - 1.0) < 1e-8
    assert abs(z2 / z1 - math.sqrt(D / A)) < 1e-12  # the equal split of the budget


def test_privacy_spent_generators_and_dtypes():
    A, y = _data()
    clients = _split(A, y, (20, 20))
    loss = LogisticNonconvex(0.1)
    x0 = torch.zeros(6, dtype=torch.float64)
    kw = dict(eps=3.0, delta=DELTA, rounds=15, period=5, eta=1.0, clip1=0.5, clip2=0.35, noise_ratio=2.0)
    a, b, c = (diff2(loss, clients, x0, generator=_gen(seed), **kw) for seed in (12, 12, 13))
    assert torch.equal(a.iterates, b.iterates) and not torch.equal(a.iterates, c.iterates)
    assert a.iterates.dtype == torch.float64 and a.iterates.shape == (16, 6)
    z1, z2 = a.noise_multipliers
    assert abs(z2 - 2 * z1) < 1e-12 and abs(a.mu - gdp_mu([z1, z2], [3, 12])) < 1e-12
    assert abs(a.eps - epsilon_from_mu(a.mu, DELTA)) < 1e-12 and abs(a.eps - 3.0) < 1e-8
    g = dp_gd(loss, clients, x0.float(), eps=3.0, delta=DELTA, rounds=10, eta=1.0, clip=0.5, generator=_gen(14))
    assert g.iterates.dtype == torch.float32 and abs(g.eps - 3.0) < 1e-8
    sgd = dict(eps=3.0, delta=DELTA, n_steps=20, sample_rate=0.3, eta=1.0, clip=0.5)
    s, s2 = (dp_sgd(loss, clients, torch.zeros(2, 6, dtype=torch.float64), generator=_gen(15), **sgd) for _ in range(2))
    assert s.mu is None and s.eps == 3.0 and s.iterates.shape == (21, 2, 6) and s.iterates.dtype == torch.float64
    assert torch.equal(s.iterates, s2.iterates) and not torch.equal(s.iterates[:, 0], s.iterates[:, 1])
    assert bool(torch.isfinite(s.iterates).all())


def test_dp_sgd_step_is_the_clipped_poisson_sum_plus_noise():
    """One DP-SGD step by hand, with the draws of the same generator (Poisson mask, then the noise)."""
    A, y = _data()
    loss = LogisticNonconvex(0.1)
    s = dp_sgd(loss, [(A, y)], torch.zeros(6, dtype=torch.float64), eps=5.0, delta=DELTA, n_steps=1, sample_rate=0.5,
               eta=0.7, clip=0.2, generator=_gen(16))
    g = _gen(16)
    joined = uniform((1, 1, 40), generator=g, dtype=torch.float64) < 0.5
    noise = gaussian((1, 6), generator=g, dtype=torch.float64)
    msg = client_step(loss, torch.zeros(1, 6, dtype=torch.float64), None, A[None], y[None], joined,
                      torch.tensor([0.2], dtype=torch.float64)).sum(0)
    expected = -0.7 * (msg + s.noise_multipliers[0] * 0.2 * noise) / (0.5 * 40)
    assert torch.allclose(s.iterates[1], expected[0], atol=1e-12)


@pytest.mark.parametrize("mu", [0.05, 0.5, 3.0])
def test_theory_schedule_meets_its_conditions(mu):
    gd = theory_schedule("dp_gd", n=2000, dim=64, mu=mu, lipschitz=1.2, smoothness=0.35, gap=0.7)
    d2 = theory_schedule("diff2", n=2000, dim=64, mu=mu, lipschitz=1.2, smoothness=0.35, gap=0.7)
    assert gd.period == 1 and abs(gdp_mu(gd.noise1, gd.rounds) - mu) < 1e-9
    assert abs(gd.eta - 1 / 0.7) < 1e-12 and gd.clip1 == 1.2 and d2.clip2 == 0.35
    if d2.period > 1:
        assert d2.period * 64 * d2.noise2**2 / 2000**2 <= 0.5 + 1e-9
        assert abs(gdp_mu([d2.noise1, d2.noise2], list(diff2_round_counts(d2.rounds, d2.period))) - mu) < 1e-9
    else:
        assert abs(gdp_mu(d2.noise1, d2.rounds) - mu) < 1e-9
    assert d2.bound > 0 and gd.bound > 0


def test_diff2_is_better_above_the_condition_in_theory():
    """The bounds cross where n mu ~ sqrt(d L Delta) / G: below, DIFF2 has T = 1 and no advantage; far above it wins."""
    kw = dict(n=1000, dim=64, lipschitz=1.0, smoothness=0.3, gap=0.7)
    small = [theory_schedule(m, mu=0.002, **kw).bound for m in ("dp_gd", "diff2")]
    large = [theory_schedule(m, mu=5.0, **kw).bound for m in ("dp_gd", "diff2")]
    assert small[1] >= small[0] and large[1] < large[0]
    assert theory_schedule("diff2", mu=0.002, **kw).period == 1


# ------------------------------------------------------------------------------------------- bad input
A0, Y0 = _data(n=8)
CL = [(A0[:4], Y0[:4]), (A0[4:], Y0[4:])]
X0 = torch.zeros(6, dtype=torch.float64)
LOSS = LogisticNonconvex(0.1)
D2 = dict(eps=1.0, delta=DELTA, rounds=5, period=2, eta=1.0, clip1=0.5, clip2=0.3)
GD = dict(eps=1.0, delta=DELTA, rounds=5, eta=1.0, clip=0.5)
SGD = dict(eps=1.0, delta=DELTA, n_steps=5, sample_rate=0.5, eta=1.0, clip=0.5)
RUN = dict(eta=1.0, rounds=5, period=2, clip1=0.5, clip2=0.3, noise1=1.0, noise2=1.0)
TH = dict(n=100, dim=6, mu=1.0, lipschitz=1.0, smoothness=0.3, gap=0.7)


@pytest.mark.parametrize("call,name", [
    (lambda: diff2(LOSS, CL, X0, **{**D2, "eps": 0.0}), "eps"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "delta": 1.0}), "delta"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "clip1": 0.0}), "clip1"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "clip2": -1.0}), "clip2"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "period": 0}), "period"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "rounds": 0}), "rounds"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "noise_ratio": 0.0}), "noise_ratio"),
    (lambda: diff2(LOSS, CL, X0, **{**D2, "eta": 0.0}), "eta"),
    (lambda: diff2(LOSS, [(A0[:0], Y0[:0]), (A0, Y0)], X0, **D2), "clients"),
    (lambda: diff2(LOSS, [], X0, **D2), "clients"),
    (lambda: diff2(LOSS, [(A0, Y0[:3])], X0, **D2), "clients"),
    (lambda: diff2(LOSS, CL, torch.zeros(2, 3, 6), **D2), "x0"),
    (lambda: diff2(LOSS, CL, torch.zeros(6, dtype=torch.long), **D2), "x0"),
    (lambda: dp_gd(LOSS, CL, X0, **{**GD, "eps": -1.0}), "eps"),
    (lambda: dp_gd(LOSS, CL, X0, **{**GD, "delta": 0.0}), "delta"),
    (lambda: dp_gd(LOSS, CL, X0, **{**GD, "clip": 0.0}), "clip"),
    (lambda: dp_gd(LOSS, CL, X0, **{**GD, "rounds": 2.5}), "rounds"),
    (lambda: dp_gd(LOSS, CL, torch.zeros(3, 6), **{**GD, "eta": [1.0, 2.0]}), "eta"),
    (lambda: dp_gd(LOSS, CL, X0, **{**GD, "check_every": 0}), "check_every"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "eps": 0.0}), "eps"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "delta": 2.0}), "delta"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "n_steps": 0}), "n_steps"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "sample_rate": 0.0}), "sample_rate"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "sample_rate": 1.5}), "sample_rate"),
    (lambda: dp_sgd(LOSS, CL, X0, **{**SGD, "clip": 0.0}), "clip"),
    (lambda: dp_sgd(LOSS, [(A0[:0], Y0[:0])], X0, **SGD), "clients"),
    (lambda: run_diff2(LOSS, CL, X0, **{**RUN, "clip1": math.inf}), "clip1"),
    (lambda: run_diff2(LOSS, CL, X0, **{**RUN, "noise1": -1.0}), "noise1"),
    (lambda: run_diff2(LOSS, CL, X0, **{**RUN, "noise2": float("nan")}), "noise2"),
    (lambda: run_diff2(LOSS, CL, X0, **{**RUN, "period": [1, 2, 3]}), "period"),
    (lambda: run_diff2(LOSS, CL, X0, **{**RUN, "check_every": -1}), "check_every"),
    (lambda: run_diff2(LOSS, CL, X0, **RUN, replies=torch.ones(5, 3, dtype=torch.bool)), "replies"),
    (lambda: run_diff2(LOSS, CL, X0, **RUN, replies=torch.ones(5, len(CL))), "replies"),
    (lambda: parity_digits(0), "n_samples"),
    (lambda: parity_digits(1798), "n_samples"),
    (lambda: split_clients(A0, Y0, 0), "n_clients"),
    (lambda: split_clients(A0, Y0, len(Y0) + 1), "n_clients"),
    (lambda: theory_schedule("sgd", **TH), "method"),
    (lambda: theory_schedule("diff2", **{**TH, "mu": 0.0}), "mu"),
    (lambda: theory_schedule("diff2", **{**TH, "n": 0}), "n"),
    (lambda: theory_schedule("diff2", **{**TH, "dim": 1.5}), "dim"),
    (lambda: theory_schedule("diff2", **{**TH, "lipschitz": 0.0}), "lipschitz"),
    (lambda: theory_schedule("diff2", **{**TH, "smoothness": -1.0}), "smoothness"),
    (lambda: theory_schedule("dp_gd", **{**TH, "gap": 0.0}), "gap"),
    (lambda: LogisticNonconvex(-0.1), "lam"),
    (lambda: SoftplusNet(0), "n_features"),
    (lambda: SoftplusNet(3, hidden=0), "hidden"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def _server(x0, n, periods, seed=3, z=(0.7, 0.9)):
    full = lambda v: torch.full((x0.shape[0],), v, dtype=x0.dtype)
    return Diff2Server(x0, n, eta=full(1.0), periods=periods, clip1=full(0.5), clip2=full(0.3), noise1=full(z[0]),
                       noise2=full(z[1]), generator=_gen(seed))


@pytest.mark.parametrize("periods", [[1, 1], [3, 3], [1, 3]])
def test_server_driven_client_by_client_equals_the_batched_engine(periods):
    """The Flower path: Diff2Server fed by one client at a time (each with its own unpadded data) gives the batched
    engine's iterates; mixed periods send both queries."""
    A, y = _data()
    parts = _split(A, y, (15, 7, 18))
    x0 = 0.1 * gaussian((2, 6), generator=_gen(1), dtype=torch.float64)
    ref = run_diff2(LOSS, parts, x0, eta=1.0, rounds=7, period=periods, clip1=0.5, clip2=0.3, noise1=0.7, noise2=0.9,
                    generator=_gen(3), desc=None)
    srv = _server(x0, 40, periods)
    for r in range(7):
        queries = srv.queries()
        assert len(queries) == (2 if periods == [1, 3] and r % 3 else 1)
        sums = [sum(client_step(LOSS, srv.x, prev, f[None], t[None], torch.ones(1, len(t), dtype=torch.bool), clip)[0]
                    for f, t in parts) for prev, clip in queries]
        assert torch.allclose(srv.update(sums), ref[r + 1], atol=1e-12)
    with pytest.raises(ValueError, match="sums"):
        srv.update([])


def test_drop_out_rule_keeps_n_and_the_noise():
    """A missing reply: the server adds the others and divides by the planned n; the noise (hence the privacy) is the
    same draw as with every reply, so the difference from the full run in that round is exactly the missing share."""
    A, y = _data()
    parts = _split(A, y, (15, 7, 18))
    x0 = torch.zeros(1, 6, dtype=torch.float64)
    kw = dict(eta=1.0, rounds=3, period=1, clip1=0.5, clip2=0.3, noise1=0.7, noise2=0.7, desc=None)
    full = run_diff2(LOSS, parts, x0, generator=_gen(3), **kw)
    replies = torch.ones(3, 3, dtype=torch.bool)
    replies[0, 1] = False
    dropped = run_diff2(LOSS, parts, x0, generator=_gen(3), replies=replies, **kw)
    missing = client_step(LOSS, x0, None, parts[1][0], parts[1][1], torch.ones(7, dtype=torch.bool),
                          torch.tensor([0.5], dtype=torch.float64))
    assert torch.allclose(dropped[1] - full[1], 1.0 * missing / 40, atol=1e-12)   # x1 = x0 - eta (sum / n + noise)
    assert torch.equal(run_diff2(LOSS, parts, x0, generator=_gen(3), replies=torch.ones(3, 3, dtype=torch.bool), **kw),
                       full)


def test_parity_digits_and_round_robin_clients():
    f, t = parity_digits(200, dtype=torch.float64)
    assert f.shape == (200, 64) and f.dtype == torch.float64 and abs(float(f.norm(dim=1).max()) - 1) < 1e-12
    assert set(t.tolist()) == {-1.0, 1.0}
    parts = split_clients(f, t, 7)
    assert sorted(torch.cat([p[1] for p in parts]).tolist()) == sorted(t.tolist())
    assert [len(p[1]) for p in parts] == [29, 29, 29, 29, 28, 28, 28] and torch.equal(parts[3][0][1], f[10])
