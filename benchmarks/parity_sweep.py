"""Time one phase-diagram column of the parity chapter: batched torch MFLD against a plain numpy loop.

One column = one dimension d, every n of the grid and every seed (the book-scale sweep of
nbs/35_parity.ipynb: k = 3, M = 256, n = c * d). The torch path trains all runs in one batched tensor
computation (`train_mfld_parity` with a list of datasets); the baseline trains the same runs one after the
other with the same update written in numpy (float64, vectorised over particles, as a first implementation
would be; numpy's BLAS uses its default threads). Both are timed for the same number of steps; the script prints the ratio, the achieved GFLOP/s
of the torch step (counting the two matrix products only, 4 n M d flops per run and step) and this CPU's
measured float32 matmul GFLOP/s. Run: .venv/bin/python benchmarks/parity_sweep.py [--d 16] [--steps 200]
Timings on a shared machine are noisy; quote them with the machine they ran on.
"""
import argparse
import math
import time

import numpy as np
import torch

from learnthy_nb.core import machine_info
from learnthy_nb.parity import sparse_parity, train_mfld_parity


def numpy_mfld(Z, y, X, *, eta, lam, lam1, n_steps, rng, R=15.0):
    """The same MFLD update for one run in numpy: Z [n, d], y [n], X [M, d+2] (modified copy returned)."""
    X = X.copy()
    n, d = Z.shape
    for _ in range(n_steps):
        X1, x2, x3 = X[:, :d], X[:, d], X[:, d + 1]
        t = np.tanh(Z @ X1.T + x2)                                   # [n, M]
        t3 = np.tanh(x3)
        f = R / 3 * (t.mean(1) + 2 * t3.mean())
        g = -y / (1 + np.exp(y * f)) / n
        G = g[:, None] * (1 - t * t)
        v = np.empty_like(X)
        v[:, :d] = G.T @ Z
        v[:, d] = G.sum(0)
        v[:, d + 1] = 2 * (1 - t3 * t3) * g.sum()
        v = R / 3 * v + 2 * lam * lam1 * X
        X = X - eta * v + math.sqrt(2 * eta * lam) * rng.standard_normal(X.shape)
    return X


def matmul_gflops(size=1024, repeats=10):
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - t) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--particles", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded 2-core box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = args.d
    ns = [int(c * d) for c in (3, 4, 6, 8, 11, 16, 23, 32)]
    g = torch.Generator().manual_seed(0)
    data = [sparse_parity(n, d, args.k, generator=g, device=torch.device("cpu")) for n in ns for _ in range(args.seeds)]
    kw = dict(eta=0.5, lam=1e-3, lam1=1.0)
    train_mfld_parity([z for z, _ in data], [t for _, t in data], n_particles=args.particles, n_steps=5, generator=g, **kw)
    t0 = time.perf_counter()
    train_mfld_parity([z for z, _ in data], [t for _, t in data], n_particles=args.particles, n_steps=args.steps,
                      generator=g, **kw)
    t_torch = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for z, t in data:
        X0 = rng.standard_normal((args.particles, d + 2)) / math.sqrt(2 * kw["lam1"])
        numpy_mfld(z.numpy().astype(np.float64), t.numpy().astype(np.float64), X0, n_steps=args.steps, rng=rng, **kw)
    t_numpy = time.perf_counter() - t0
    chunk = 64                                                    # train_mfld_parity's default chunk of samples
    n_pad = sum(-(-n // chunk) * chunk for n in ns) * args.seeds  # the batched step also works on the padding
    flops_useful = 4 * sum(ns) * args.seeds * args.particles * d * args.steps
    flops_done = 4 * n_pad * args.particles * d * args.steps
    print(machine_info())
    print(f"column d={d}, k={args.k}: {len(data)} runs (n = {ns} x {args.seeds} seeds), M={args.particles}, "
          f"{args.steps} steps, torch threads {args.threads}")
    print(f"  numpy loop over runs : {t_numpy:8.2f} s")
    print(f"  batched torch (fp32) : {t_torch:8.2f} s   -> {t_numpy / t_torch:.1f}x faster")
    print(f"  torch step matmuls   : {flops_done / t_torch / 1e9:.1f} GFLOP/s executed "
          f"({flops_useful / t_torch / 1e9:.1f} on unpadded samples; padding overhead {n_pad / (sum(ns) * args.seeds):.2f}x)")
    print(f"  fp32 matmul 1024^2   : {matmul_gflops():.1f} GFLOP/s on this CPU with {args.threads} thread(s)")
    print(f"  particle-steps/s     : {len(data) * args.particles * args.steps / t_torch:.3g} (torch), "
          f"{len(data) * args.particles * args.steps / t_numpy:.3g} (numpy)")


if __name__ == "__main__":
    main()
