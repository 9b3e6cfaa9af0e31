"""learnthy_nb.audit: Clopper-Pearson bounds, the audited lower bound on eps, the honest split, mu_hat, errors."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from learnthy_nb.audit import (AuditResult, ShiftEstimate, audit, clopper_pearson_upper, empirical_roc, eps_cap,
                               eps_lower_bound, error_counts, gaussian_shift)
from learnthy_nb.privacy import epsilon_from_mu

DELTA = 1e-5


def _normal(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64) + shift


# ------------------------------------------------------------------------------------------- Clopper-Pearson
@pytest.mark.parametrize("k,n", [(0, 1), (0, 1000), (3, 50), (17, 200), (49, 50)])
def test_clopper_pearson_upper_solves_its_defining_equation(k, n):
    p = clopper_pearson_upper(k, n, 0.95)
    assert abs(binom.cdf(k, n, p) - 0.05) < 1e-9
    assert k / n < p < 1


def test_clopper_pearson_known_cases():
    assert abs(clopper_pearson_upper(0, 1000, 0.95) - (1 - 0.05 ** (1 / 1000))) < 1e-12
    assert abs(clopper_pearson_upper(0, 10, 0.9) - (1 - 0.1 ** (1 / 10))) < 1e-12
    assert clopper_pearson_upper(50, 50) == 1.0
    out = clopper_pearson_upper(np.array([0, 5, 10]), 10)
    assert out.shape == (3,) and out[-1] == 1.0 and np.all(np.diff(out) > 0)


def test_clopper_pearson_covers_at_its_confidence():
    # the bound is conservative: P(p <= p_hi) >= 0.95 exactly computed over all outcomes k of Bin(n, p)
    n = 40
    for p in (0.01, 0.1, 0.37):
        ks = np.arange(n + 1)
        covered = clopper_pearson_upper(ks, n, 0.95) >= p
        assert binom.pmf(ks, n, p)[covered].sum() >= 0.95 - 1e-12


@pytest.mark.parametrize("bad", [dict(errors=3, trials=2), dict(errors=-1, trials=5), dict(errors=0, trials=0),
                                 dict(errors=0.5, trials=5), dict(errors=1, trials=5, confidence=1.0),
                                 dict(errors=1, trials=5, confidence=0.0)])
def test_clopper_pearson_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        clopper_pearson_upper(**bad)


# ------------------------------------------------------------------------------------------- the lower bound
def test_error_counts_by_hand():
    so = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    si = torch.tensor([2.5, 3.5, 4.0, 5.0], dtype=torch.float64)
    fp, fn = error_counts(so, si, torch.tensor([-math.inf, 2.0, 3.0, 10.0], dtype=torch.float64))
    assert fp.tolist() == [4, 1, 0, 0] and fn.tolist() == [0, 0, 1, 4]


def test_eps_of_a_perfect_attack_equals_the_cap():
    n = 1000
    p = 1 - 0.025 ** (1 / n)                                # each bound at 97.5%: 95% jointly
    cap = math.log((1 - DELTA - p) / p)
    assert abs(eps_cap(n, n, DELTA) - cap) < 1e-9
    assert abs(eps_lower_bound(0, 0, n, n, DELTA) - cap) < 1e-9
    so, si = _normal(2 * n, 0), _normal(2 * n, 1, shift=100.0)
    res = audit(so, si, DELTA, generator=torch.Generator().manual_seed(3))
    assert isinstance(res, AuditResult) and res.eps_lower == res.cap and abs(res.cap - cap) < 1e-9
    assert res.fpr == 0 and res.fnr == 0 and res.n_out == n and res.n_in == n
    assert eps_cap(4 * n, 4 * n, DELTA) > cap                       # more runs certify more


def test_eps_of_a_random_statistic_is_about_zero():
    so, si = _normal(4000, 0), _normal(4000, 1)
    res = audit(so, si, DELTA, generator=torch.Generator().manual_seed(0))
    assert res.eps_lower < 0.2 and res.eps_optimistic < 0.3
    # a test that always says "in" (or never) proves nothing
    assert eps_lower_bound(2000, 0, 2000, 2000, DELTA) == 0.0 and eps_lower_bound(0, 2000, 2000, 2000, DELTA) == 0.0


def test_lower_bound_is_monotone_and_symmetric():
    fp = np.arange(0, 50, 5)
    eps = eps_lower_bound(fp, np.full_like(fp, 10), 1000, 1000, DELTA)
    assert np.all(np.diff(eps) <= 0)
    assert abs(eps_lower_bound(3, 40, 500, 500, DELTA) - eps_lower_bound(40, 3, 500, 500, DELTA)) < 1e-12


def test_lower_bound_stays_below_the_true_eps_of_a_gaussian_shift():
    # a statistic that is exactly a mu-GDP Gaussian shift: the honest bound must not exceed epsilon_from_mu
    for mu, seed in ((1.0, 0), (2.5, 1)):
        res = audit(_normal(4000, 10 + seed), _normal(4000, 20 + seed, shift=mu), DELTA,
                    generator=torch.Generator().manual_seed(seed))
        assert 0 < res.eps_lower <= epsilon_from_mu(mu, DELTA)
        assert res.eps_optimistic >= res.eps_lower - 1.0


def test_audit_picks_the_direction_of_the_test():
    so, si = _normal(2000, 0), _normal(2000, 1, shift=-3.0)        # "in" has the *smaller* scores
    res = audit(so, si, DELTA, generator=torch.Generator().manual_seed(0))
    assert res.sign == -1 and res.eps_lower > 2


def test_audit_is_deterministic_given_its_generator():
    so, si = _normal(600, 0), _normal(600, 1, shift=1.0)
    a = audit(so, si, DELTA, generator=torch.Generator().manual_seed(7))
    b = audit(so, si, DELTA, generator=torch.Generator().manual_seed(7))
    c = audit(so, si, DELTA)                                         # None: a fresh generator seeded 0
    d = audit(so, si, DELTA, generator=torch.Generator().manual_seed(0))
    assert a == b and c == d


def test_empirical_roc_endpoints_and_monotone():
    alpha, beta = empirical_roc(_normal(300, 0), _normal(300, 1, shift=1.0))
    assert alpha[0] == 1 and beta[0] == 0 and alpha[-1] == 0 and beta[-1] == 1
    assert np.all(np.diff(alpha) <= 0) and np.all(np.diff(beta) >= 0)


@pytest.mark.parametrize("bad", [
    lambda: audit(torch.zeros(10, 2, dtype=torch.float64), torch.zeros(10, dtype=torch.float64), DELTA),
    lambda: audit(torch.zeros(1, dtype=torch.float64), torch.zeros(10, dtype=torch.float64), DELTA),
    lambda: audit(torch.arange(10), torch.arange(10), DELTA),
    lambda: audit(torch.tensor([0.0, math.nan, 1.0]), torch.zeros(3), DELTA),
    lambda: audit(torch.zeros(4), torch.zeros(4), 1.0),
    lambda: audit(torch.zeros(4), torch.zeros(4), DELTA, confidence=1.5),
    lambda: audit(torch.zeros(4), torch.zeros(4), DELTA, generator=3),
    lambda: eps_lower_bound(0, 0, 0, 10, DELTA),
    lambda: eps_lower_bound(0, 0, 10, 10, -0.1),
    lambda: eps_cap(10, 10, DELTA, confidence=0.0),
    lambda: error_counts([0.0, 1.0], torch.zeros(2), torch.zeros(1)),
    lambda: empirical_roc(torch.zeros(0), torch.zeros(3)),
])
def test_bad_input_raises_value_error(bad):
    with pytest.raises(ValueError):
        bad()


# ------------------------------------------------------------------------------------------------------ mu_hat
def test_gaussian_shift_recovers_a_known_shift():
    est = gaussian_shift(_normal(5000, 0), _normal(5000, 1, shift=0.7), generator=torch.Generator().manual_seed(0))
    assert isinstance(est, ShiftEstimate) and est.ci_low < 0.7 < est.ci_high and est.ci_high - est.ci_low < 0.15
    assert est.samples.shape == (1000,) and est.samples.dtype == torch.float64
    # the sign says which side is larger, and the scale does not matter
    flipped = gaussian_shift(_normal(5000, 1, shift=0.7) * 3, _normal(5000, 0) * 3)
    assert abs(flipped.mu + est.mu) < 1e-9


def test_gaussian_shift_is_deterministic_and_validates():
    so, si = _normal(200, 0), _normal(200, 1, shift=1.0)
    a = gaussian_shift(so, si, n_boot=50, generator=torch.Generator().manual_seed(4))
    b = gaussian_shift(so, si, n_boot=50, generator=torch.Generator().manual_seed(4))
    assert a.mu == b.mu and torch.equal(a.samples, b.samples)
    with pytest.raises(ValueError):
        gaussian_shift(torch.ones(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError):
        gaussian_shift(so, si, n_boot=0)
    with pytest.raises(ValueError):
        gaussian_shift(so[:1], si)


# ------------------------------------------------------------------------------------------------ end to end
def test_canary_audit_of_dp_gd_and_its_non_private_control():
    """A canary orthogonal to the data against its mirror: the non-private control reaches the cap, DP-GD at
    eps = 2 stays below 2, and its final-iterate statistic realises roughly the accounted mu."""
    from learnthy_nb.federated import LogisticNonconvex, run_diff2
    from learnthy_nb.privacy import calibrate_dp_gd, mu_from_epsilon
    g = torch.Generator().manual_seed(0)
    n, d, R, B = 30, 4, 10, 300
    f = torch.cat([torch.randn(n, d - 1, generator=g), torch.zeros(n, 1)], 1)
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1.0)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    u = torch.zeros(d)
    u[-1] = 1.0
    loss = LogisticNonconvex(0.01)
    z = calibrate_dp_gd(2.0, DELTA, R)
    noise = [z] * B + [0.0] * B
    final = {}
    for label, seed in ((-1.0, 1), (1.0, 2)):
        f2, y2 = f.clone(), y.clone()
        f2[0], y2[0] = u, label
        xs = run_diff2(loss, [(f2[::2], y2[::2]), (f2[1::2], y2[1::2])], torch.zeros(2 * B, d), eta=1.0, rounds=R,
                       period=1, clip1=0.1, clip2=1.0, noise1=noise, noise2=noise,
                       generator=torch.Generator().manual_seed(seed), desc=None)
        final[label] = (xs[-1] @ u).double()
    private = audit(final[-1.0][:B], final[1.0][:B], DELTA)
    control = audit(final[-1.0][B:], final[1.0][B:], DELTA)
    assert private.eps_lower <= 2.0 and control.eps_lower == control.cap
    est = gaussian_shift(final[-1.0][:B], final[1.0][:B], n_boot=200)
    assert est.ci_low < mu_from_epsilon(2.0, DELTA) < est.ci_high
