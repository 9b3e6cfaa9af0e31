"""Per-sample-gradient throughput of `learnthy_nb.federated` against Opacus' `GradSampleModule`, same model, one run.

Two models, both with per-sample gradients of a batch of N records:
  * the DIFF2 paper's network: one hidden layer of 10 softplus units, squared loss, input dimension 64 (d = 660);
    ours is `per_sample_grads(SoftplusNet(64), ...)` (torch.func: vmap of grad), Opacus' is
    GradSampleModule(nn.Sequential(Linear(64, 10), Softplus(), Linear(10, 1, bias=False))) with backward hooks;
  * the chapter's logistic regression with the non-convex regulariser (d = 64): ours in closed form
    (`LogisticNonconvex.per_sample_grad`) and by torch.func; Opacus' on nn.Linear(64, 1, bias=False) with the
    logistic loss (its per-sample gradients cover the data term; the regulariser's gradient, shared by all records,
    is added afterwards, as ours includes it).
Each measurement is the best of `--repeats` timings of `--iters` evaluations; printed: per-sample gradients per
second for each, and ours / Opacus. On a CPU use one thread for a like-for-like figure:

    OMP_NUM_THREADS=1 python benchmarks/dp_step.py --threads 1 [--n 2048] [--device cpu|cuda]
"""
import argparse
import time

import torch
from torch import nn

from learnthy_nb.federated import LogisticNonconvex, SoftplusNet, per_sample_grads

D_IN, HIDDEN, LAM = 64, 10, 0.05


def best_time(fn, iters: int, repeats: int, device: torch.device) -> float:
    fn()                                                     # warm-up (hooks, kernels, vmap tracing)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / iters)
    return best


def opacus_module(model: nn.Module):
    from opacus import GradSampleModule
    return GradSampleModule(model, loss_reduction="sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(args.n, D_IN, generator=g).to(device)
    X = X / X.norm(dim=1, keepdim=True).max()
    y = torch.where(torch.randn(args.n, generator=g) > 0, 1.0, -1.0).to(device)

    # ---- the softplus network
    seq = nn.Sequential(nn.Linear(D_IN, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, 1, bias=False)).to(device)
    net = SoftplusNet(D_IN, HIDDEN)
    flat = torch.cat([seq[0].weight.reshape(-1), seq[0].bias, seq[2].weight.reshape(-1)]).detach()[None]
    ours = per_sample_grads(net, flat, X, y)[0]
    gsm = opacus_module(seq)

    def opacus_net():
        gsm.zero_grad(set_to_none=True)
        out = gsm(X)[:, 0]
        (0.5 * (out - y) ** 2).sum().backward()
        return torch.cat([p.grad_sample.reshape(args.n, -1) for p in gsm.parameters()], dim=1)

    assert torch.allclose(ours, opacus_net(), atol=1e-4), "the two per-sample gradients differ"
    t_ours = best_time(lambda: per_sample_grads(net, flat, X, y), args.iters, args.repeats, device)
    t_opacus = best_time(opacus_net, args.iters, args.repeats, device)

    # ---- logistic regression with the non-convex regulariser
    loss = LogisticNonconvex(LAM)
    w = (0.1 * torch.randn(1, D_IN, generator=g)).to(device)
    lin = nn.Linear(D_IN, 1, bias=False).to(device)
    with torch.no_grad():
        lin.weight.copy_(w)
    gsl = opacus_module(lin)

    def opacus_logistic():
        gsl.zero_grad(set_to_none=True)
        nn.functional.softplus(-y * gsl(X)[:, 0]).sum().backward()
        return lin.weight.grad_sample[:, 0] + LAM * 2 * w / (1 + w**2) ** 2

    closed = per_sample_grads(loss, w, X, y)[0]
    assert torch.allclose(closed, opacus_logistic(), atol=1e-5), "the two per-sample gradients differ"
    t_closed = best_time(lambda: per_sample_grads(loss, w, X, y), args.iters, args.repeats, device)
    generic = lambda p, a, t: loss(p, a, t)                  # no closed form: the torch.func path
    t_func = best_time(lambda: per_sample_grads(generic, w, X, y), args.iters, args.repeats, device)
    t_opl = best_time(opacus_logistic, args.iters, args.repeats, device)

    rate = lambda t: args.n / t
    print(f"device {device}, torch threads {torch.get_num_threads()}, N = {args.n} records per batch")
    print(f"softplus net (d = {flat.shape[1]}): torch.func {rate(t_ours):12,.0f} /s | Opacus {rate(t_opacus):12,.0f} /s"
          f" | ours / Opacus {t_opacus / t_ours:5.2f}")
    print(f"logistic (d = {D_IN}):     closed form {rate(t_closed):10,.0f} /s | torch.func {rate(t_func):12,.0f} /s | "
          f"Opacus {rate(t_opl):12,.0f} /s | closed / Opacus {t_opl / t_closed:5.2f}, torch.func / Opacus "
          f"{t_opl / t_func:5.2f}")


if __name__ == "__main__":
    main()
