"""learnthy_nb.features, part 1 (nbs/50_anisotropic.ipynb): spiked single-index data, the
one-step two-layer network, spherical vs normalised dynamics, threshold reading."""
import math

import pytest
import torch

from learnthy_nb import core
from learnthy_nb.features import (LINK_DEGREES, LINKS, crossing_threshold, he3_population_loss,
                                  resolve_link, spherical_gd, spiked_single_index, train_two_layer)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ links
def test_links_have_unit_variance_and_stated_hermite_coefficients():
    z = torch.randn(400_000, generator=gen(0), dtype=torch.float64)
    for name, f in LINKS.items():
        assert abs(float(f(z).square().mean()) - 1) < 0.02, name
    he = {j: LINKS[f"he{j}"](z) for j in (1, 2, 3, 4)}
    for name, (p, k) in LINK_DEGREES.items():
        c = [float((LINKS[name](z) * he[j]).mean()) for j in (1, 2, 3, 4)]
        nonzero = [j for j, cj in zip((1, 2, 3, 4), c) if abs(cj) > 0.05]
        assert min(nonzero) == k and max(nonzero) == p, (name, c)


def test_resolve_link():
    assert resolve_link(torch.tanh) is torch.tanh and resolve_link("he2") is LINKS["he2"]
    with pytest.raises(ValueError, match="link"):
        resolve_link("relu")


# ------------------------------------------------------------------------------------------------ generator
@pytest.mark.parametrize("alignment", [1.0, 0.5, 0.0])
def test_generator_covariance_and_label_law(alignment):
    d, kappa, n = 5, 4.0, 200_000
    X, y, mu, u = spiked_single_index(n, d, kappa, alignment, "he1", gen(1), device="cpu", return_spike=True)
    assert X.shape == (n, d) and y.shape == (n,) and mu.shape == (d,) and X.dtype == torch.float32
    assert abs(float(mu.norm()) - 1) < 1e-5 and abs(float(u.norm()) - 1) < 1e-5
    assert abs(float(u @ mu) - alignment) < 1e-5
    cov = X.T.double() @ X.double() / n
    theory = torch.eye(d, dtype=torch.float64) + kappa * torch.outer(u.double(), u.double())
    assert (cov - theory).abs().max() < 0.06
    # the argument of the link is standard normal, and y is the link of it
    z = (X @ mu) / math.sqrt(1 + kappa * alignment**2)
    assert torch.allclose(y, z) and abs(float(z.double().var()) - 1) < 0.02


def test_generator_link_and_noise():
    X, y, mu = spiked_single_index(50_000, 8, 10.0, link="he1+he3", generator=gen(2), device="cpu")
    z = (X @ mu) / math.sqrt(11.0)
    assert torch.allclose(y, LINKS["he1+he3"](z), atol=1e-5)
    X2, y2, _ = spiked_single_index(50_000, 8, 10.0, link="he1+he3", generator=gen(2), noise=0.5, device="cpu")
    assert torch.equal(X, X2) and abs(float((y2 - y).var()) - 0.25) < 0.01


def test_generator_determinism_and_default_generator():
    a = spiked_single_index(10, 4, 1.0, generator=gen(3), device="cpu")
    b = spiked_single_index(10, 4, 1.0, generator=gen(3), device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = spiked_single_index(10, 4, 1.0, device="cpu")            # None -> fresh generator seeded 0
    e = spiked_single_index(10, 4, 1.0, generator=gen(0), device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(c, e))


@pytest.mark.parametrize("bad,name", [(dict(n=0), "n"), (dict(d=1), "d"), (dict(kappa=-1.0), "kappa"),
                                      (dict(alignment=1.5), "alignment"), (dict(link="nope"), "link"),
                                      (dict(noise=-0.1), "noise"), (dict(n=2.5), "n")])
def test_generator_errors(bad, name):
    with pytest.raises(ValueError, match=name):
        spiked_single_index(**{**dict(n=4, d=3, kappa=1.0), **bad})


# ------------------------------------------------------------------------------------------------ network
def test_network_recovers_direction_in_isotropic_case_at_large_n():
    d, n = 32, 1280
    X, y, mu = spiked_single_index(n + 1000, d, 0.0, generator=gen(7), device="cpu")
    net = train_two_layer(X[:n], y[:n], width=128, generator=gen(8))
    assert float(net.alignment(mu).mean()) > 0.8
    # the step's direction (top right singular vector of W1 - W0) is mu's
    v = torch.linalg.svd(net.W1 - net.W0).Vh[0]
    assert abs(float(v @ mu)) > 0.9
    err = float((net.predict(X[n:]) - y[n:].double()).square().mean())
    assert err < 0.35                          # below the best linear predictor's 1/2
    assert net.features(X[:5]).shape == (5, 128)


def test_network_without_step_is_random_features():
    X, y, mu = spiked_single_index(200, 16, 0.0, generator=gen(9), device="cpu")
    net = train_two_layer(X, y, width=32, step=0.0, generator=gen(10))
    assert torch.equal(net.W0, net.W1)


@pytest.mark.parametrize("kwargs,name", [(dict(width=0), "width"), (dict(step=-1.0), "step"),
                                         (dict(width=2.5), "width")])
def test_network_errors(kwargs, name):
    X, y, _ = spiked_single_index(20, 4, 1.0, device="cpu")
    with pytest.raises(ValueError, match=name):
        train_two_layer(X, y, **kwargs)
    with pytest.raises(ValueError, match="y"):
        train_two_layer(X, y[:5])
    with pytest.raises(ValueError, match="X"):
        train_two_layer(X[0], y)


# ------------------------------------------------------------------------------------------------ spherical dynamics
def test_population_loss_closed_form_and_spurious_minimum():
    m = torch.linspace(0, 1, 11, dtype=torch.float64)
    iso, iso_n = he3_population_loss(m, 0.0), he3_population_loss(m, 0.0, normalise=True)
    assert torch.allclose(iso, 1 - m**3) and torch.allclose(iso_n, 1 - m**3)
    for kappa in (0.5, 10.0, 1000.0):
        L = he3_population_loss(torch.tensor([0.0, 1e-3, 1.0], dtype=torch.float64), kappa)
        assert L[1] > L[0] and abs(float(L[2])) < 1e-12               # local minimum at 0, global at mu
        Ln = he3_population_loss(m, kappa, normalise=True)
        assert bool((Ln[1:] <= Ln[:-1]).all())
    with pytest.raises(ValueError, match="m"):
        he3_population_loss(torch.tensor([1.5]), 1.0)
    with pytest.raises(ValueError, match="kappa"):
        he3_population_loss(torch.tensor([0.5]), -1.0)


def test_population_loss_matches_monte_carlo():
    kappa, d = 5.0, 8
    X, y, mu = spiked_single_index(300_000, d, kappa, link="he3", generator=gen(11), device="cpu")
    X = X / math.sqrt(1 + kappa)
    e = torch.zeros(d)
    e[0] = 1.0
    e = e - (e @ mu) * mu
    e = e / e.norm()
    for m in (0.0, 0.5, 0.95):
        pre = X @ (m * mu + math.sqrt(1 - m * m) * e)
        for normalise in (False, True):
            p = pre / pre.square().mean().sqrt() if normalise else pre
            mc = 0.5 * float((LINKS["he3"](p) - y).square().mean())
            assert abs(mc - float(he3_population_loss(torch.tensor(m), kappa, normalise))) < 0.03


def test_spherical_fails_and_normalised_recovers_under_aligned_spike():
    d, n, runs = 64, 512, 4
    kappa = float(d) ** 0.5
    data = [spiked_single_index(n, d, kappa, link="he3", generator=gen(20 + r), device="cpu") for r in range(runs)]
    X = torch.stack([D[0] for D in data]) / math.sqrt(1 + kappa)
    y, mu = torch.stack([D[1] for D in data]), torch.stack([D[2] for D in data])
    w0 = torch.randn(runs, d, generator=gen(30))
    w0 = w0 / w0.norm(dim=1, keepdim=True)
    sph = spherical_gd(X, y, w0, link="he3", steps=150, lr=0.5, record_every=50)
    nrm = spherical_gd(X, y, w0, link="he3", normalise=True, steps=150, lr=0.5, record_every=50)
    assert sph.shape == (4, runs, d) and torch.allclose(sph.norm(dim=-1), torch.ones(4, runs), atol=1e-5)
    assert float((sph[-1] * mu).sum(-1).abs().max()) < 0.3
    assert float((nrm[-1] * mu).sum(-1).abs().median()) > 0.8


def test_spherical_gd_errors():
    X, y, w0 = torch.zeros(2, 5, 3), torch.zeros(2, 5), torch.ones(2, 3)
    for kwargs, name in ((dict(steps=-1), "steps"), (dict(lr=0.0), "lr"), (dict(record_every=0), "record_every"),
                         (dict(link="x"), "link")):
        with pytest.raises(ValueError, match=name):
            spherical_gd(X, y, w0, **kwargs)
    with pytest.raises(ValueError, match="X"):
        spherical_gd(X[0], y, w0)
    with pytest.raises(ValueError, match="y"):
        spherical_gd(X, y[0], w0)
    with pytest.raises(ValueError, match="w0"):
        spherical_gd(X, y, w0[0])


# ------------------------------------------------------------------------------------------------ thresholds
def test_crossing_threshold():
    t, c = crossing_threshold([0.0, 0.5, 1.0], torch.tensor([[1.0, 0.5, 0.1], [0.1, 0.1, 0.1], [1.0, 1.0, 1.0]],
                                                            dtype=torch.float64), 0.25)
    assert abs(float(t[0]) - (0.5 + 0.5 * math.log(2) / math.log(5))) < 1e-12
    assert t[1] == 0.0 and t[2] == 1.0 and c.tolist() == [False, True, True]
    t2, _ = crossing_threshold([0.0, 1.0], torch.full((2, 3, 2), 0.5), 1.0)
    assert t2.shape == (2, 3)
    with pytest.raises(ValueError, match="betas"):
        crossing_threshold([1.0, 0.0], torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="errors"):
        crossing_threshold([0.0, 1.0], torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="errors"):
        crossing_threshold([0.0, 1.0], torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="level"):
        crossing_threshold([0.0, 1.0], torch.ones(2), 0.0)
