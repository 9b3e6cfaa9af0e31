"""learnthy_nb.federated on a CUDA GPU against the CPU (the `cuda` cases are skipped without a GPU).

Every test body takes `device` and runs twice: "cpu" everywhere, "cuda" (marked `cuda`) with a CUDA generator, so
the server's noise (and DP-SGD's Poisson sampling) is drawn on the GPU: other numbers than the CPU's, from the same
distributions. Noisy results are compared statistically over many runs batched in one call; the deterministic
closed forms (per-sample gradients, clipped sums, noise-free runs) are compared to rounding. Every output is checked
to live on the device.
"""
import logging
import math

import pytest
import torch

from devices import DEVICES, device_generator as _gen, on_device as _on
from learnthy_nb.core import gaussian, uniform
from learnthy_nb.federated import (LogisticNonconvex, SoftplusNet, client_step, diff2, dp_gd, dp_sgd, per_sample_grads,
                                   run_diff2, stack_clients, theory_schedule)

logging.getLogger("absl").setLevel(logging.ERROR)
DELTA = 1e-5




def _problem(device: str, n: int = 200, d: int = 10, dtype=torch.float32):
    """The chapter's problem in small: unit-norm-bounded features (drawn on the CPU, moved), labels +-1, 4 clients."""
    g = torch.Generator().manual_seed(0)
    A = gaussian((n, d), generator=g, dtype=dtype)
    A = A / A.norm(dim=1, keepdim=True).max()
    y = torch.where(A[:, 0] + 0.3 * gaussian((n,), generator=g, dtype=dtype) > 0, 1.0, -1.0).to(dtype)
    A, y = A.to(device), y.to(device)
    return A, y, [(A[p::4], y[p::4]) for p in range(4)]


def _grad_norm2(loss, x, A, y):
    return per_sample_grads(loss, x.reshape(-1, x.shape[-1]), A, y).mean(1).pow(2).sum(-1)


def _agree(a: torch.Tensor, b: torch.Tensor) -> None:
    """Means of two independent samples of runs agree within 4 standard errors of their difference (a false alarm
    has probability about 6e-5 for near-normal means of 64 runs)."""
    a, b = a.double().cpu(), b.double().cpu()
    se = math.sqrt(float(a.var()) / a.numel() + float(b.var()) / b.numel())
    assert abs(float(a.mean() - b.mean())) < 4 * se, (float(a.mean()), float(b.mean()), se)


@pytest.mark.parametrize("device", DEVICES)
def test_closed_forms_on_device_equal_the_cpu(device):
    A, y, clients = _problem(device, dtype=torch.float64)
    C = stack_clients(clients)
    loss = LogisticNonconvex(0.1)
    x = gaussian((3, 10), generator=_gen(device, 1), dtype=torch.float64)
    prev = gaussian((3, 10), generator=_gen(device, 2), dtype=torch.float64)
    clip = torch.tensor([0.01, 0.1, math.inf], dtype=torch.float64, device=device)
    for p in (None, prev):
        msg = client_step(loss, x, p, C.features, C.targets, C.mask, clip)
        ref = client_step(loss, x.cpu(), None if p is None else p.cpu(), C.features.cpu(), C.targets.cpu(),
                          C.mask.cpu(), clip.cpu())
        assert _on(msg, device) and torch.allclose(msg.cpu(), ref, atol=1e-12)
    net = SoftplusNet(10, hidden=4)
    w = gaussian((2, net.dim), generator=_gen(device, 3), dtype=torch.float64)
    g = per_sample_grads(net, w, A, y)
    assert _on(g, device) and torch.allclose(g.cpu(), per_sample_grads(net, w.cpu(), A.cpu(), y.cpu()), atol=1e-12)
    # noise-free DIFF2 is deterministic: the device's iterates equal the CPU's to rounding
    kw = dict(eta=1.0, rounds=30, period=5, clip1=math.inf, clip2=math.inf, noise1=0.0, noise2=0.0, desc=None)
    xs = run_diff2(loss, clients, torch.zeros(10, dtype=torch.float64, device=device), generator=_gen(device, 4), **kw)
    ref = run_diff2(loss, [(a.cpu(), t.cpu()) for a, t in clients], torch.zeros(10, dtype=torch.float64), **kw)
    assert _on(xs, device) and torch.allclose(xs.cpu(), ref, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_private_runs_on_device_agree_with_the_cpu(device):
    """The quick configuration of the chapter (theory schedules and a fixed tuned-style configuration), 64 runs batched,
    on the device with a device generator, against 64 CPU runs: ||grad f(x_R)||^2 agrees statistically."""
    A, y, clients = _problem(device)
    A_c, y_c, clients_c = _problem("cpu")
    loss = LogisticNonconvex(0.05)
    G, L = loss.bounds(1.0, 10)
    for method in ("dp_gd", "diff2"):
        s = theory_schedule(method, n=200, dim=10, mu=1.0, lipschitz=G, smoothness=L, gap=math.log(2))
        kw = dict(eta=s.eta, rounds=s.rounds, period=s.period, clip1=s.clip1, clip2=s.clip2, noise1=s.noise1,
                  noise2=s.noise2, desc=None)
        xs = run_diff2(loss, clients, torch.zeros(64, 10, device=device), generator=_gen(device, 5), **kw)
        ref = run_diff2(loss, clients_c, torch.zeros(64, 10), generator=_gen("cpu", 105), **kw)
        assert _on(xs, device) and xs.shape == (s.rounds + 1, 64, 10)
        _agree(_grad_norm2(loss, xs[-1], A, y), _grad_norm2(loss, ref[-1], A_c, y_c))
    runs = dict(eps=3.0, delta=DELTA, eta=2.0)
    for fn, extra in ((dp_gd, dict(rounds=40, clip=0.1)), (diff2, dict(rounds=40, period=4, clip1=0.1, clip2=L))):
        out = fn(loss, clients, torch.zeros(64, 10, device=device), generator=_gen(device, 6), **runs, **extra)
        ref = fn(loss, clients_c, torch.zeros(64, 10), generator=_gen("cpu", 106), **runs, **extra)
        assert _on(out.iterates, device) and abs(out.eps - 3.0) < 1e-8
        _agree(_grad_norm2(loss, out.iterates[-1], A, y), _grad_norm2(loss, ref.iterates[-1], A_c, y_c))


@pytest.mark.parametrize("device", DEVICES)
def test_dp_sgd_on_device_agrees_with_the_cpu(device):
    A, y, clients = _problem(device)
    A_c, y_c, clients_c = _problem("cpu")
    loss = LogisticNonconvex(0.05)
    kw = dict(eps=3.0, delta=DELTA, n_steps=40, sample_rate=0.2, eta=2.0, clip=0.1)
    out = dp_sgd(loss, clients, torch.zeros(64, 10, device=device), generator=_gen(device, 7), **kw)
    ref = dp_sgd(loss, clients_c, torch.zeros(64, 10), generator=_gen("cpu", 107), **kw)
    assert _on(out.iterates, device) and out.iterates.dtype == torch.float32
    _agree(_grad_norm2(loss, out.iterates[-1], A, y), _grad_norm2(loss, ref.iterates[-1], A_c, y_c))
