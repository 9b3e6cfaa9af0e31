"""Particle-steps per second of `run_mfld` against a plain numpy loop of the same MFLD update.

Mean-field two-layer tanh network, input dimension d = 20, neurons h(theta, x) = a * tanh(w.x + b) (particle
theta = (w, b, a), dimension 22), M = 1000 particles, n = 1000 data points, squared loss, l2 = 1e-2, full gradient:
    X_i <- X_i - eta * grad_theta (dF/dmu)(mu_X)(X_i) + sqrt(2 eta lam) xi_i.
Both implementations use analytic gradients and float32. Prints particle-steps per second (M x steps / seconds) for
each and their ratio, on the CPU and, when CUDA is available, on the GPU (torch only). Timings on a shared machine
are noisy: the best of `--repeats` runs is reported, both per second of wall-clock time and per second of CPU time of
this process (with one thread the CPU-time figure is what a dedicated core would give; it does not see the time the
process waited for a core on a loaded machine), next to the load average. numpy's BLAS threads follow
OMP_NUM_THREADS; for a like-for-like comparison run

    OMP_NUM_THREADS=1 python benchmarks/mfld_step.py --threads 1 [--steps 200] [--repeats 3]
"""
import argparse
import os
import time

import numpy as np
import torch

from learnthy_nb.mfld import MeanFieldNet, MeanFieldRegression, run_mfld

D, M, N, ETA, LAM, L2 = 20, 1000, 1000, 0.05, 1e-3, 1e-2


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((N, D)) / np.sqrt(D)).astype(np.float32)
    y = np.tanh(X[:, 0] - X[:, 1]).astype(np.float32)
    theta0 = rng.standard_normal((M, D + 2)).astype(np.float32)
    return X, y, theta0


def numpy_mfld(X, y, theta, n_steps, seed=0):
    """The same update, one numpy step per loop iteration."""
    rng = np.random.default_rng(seed)
    theta = theta.copy()
    noise_scale = np.float32(np.sqrt(2 * ETA * LAM))
    for _ in range(n_steps):
        w, b, a = theta[:, :D], theta[:, D], theta[:, D + 1]
        act = np.tanh(w @ X.T + b[:, None])                  # [M, n]
        f = a @ act / M                                      # [n]
        r = (f - y) / N                                      # dloss/df / n
        g_pre = (1 - act * act) * r[None, :]                 # [M, n]
        grad = np.empty_like(theta)
        grad[:, :D] = a[:, None] * (g_pre @ X)
        grad[:, D] = a * g_pre.sum(1)
        grad[:, D + 1] = act @ r
        grad += L2 * theta
        theta = theta - ETA * grad + noise_scale * rng.standard_normal(theta.shape, dtype=np.float32)
    return theta


def torch_mfld(X, y, theta, n_steps, device):
    net = MeanFieldNet(D, output_weight=True)
    problem = MeanFieldRegression(net, torch.as_tensor(X, device=device), torch.as_tensor(y, device=device), l2=L2)
    gen = torch.Generator(device=device).manual_seed(0)
    out = run_mfld(problem, torch.as_tensor(theta, device=device), eta=ETA, lam=LAM, n_steps=n_steps, generator=gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out


def best_time(fn, repeats):
    """(best wall-clock seconds, best CPU seconds of this process) over `repeats` runs."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y, theta0 = data()

    # the two implementations agree (noise-free, a few steps, float64 would be exact; float32 to 1e-4)
    global LAM
    saved, LAM = LAM, 0.0
    a = numpy_mfld(X, y, theta0, 5)
    b = torch_mfld(X, y, theta0, 5, torch.device("cpu")).numpy()
    LAM = saved
    assert np.allclose(a, b, atol=1e-4), float(np.abs(a - b).max())

    torch_mfld(X, y, theta0, 5, torch.device("cpu"))          # warm-up
    load_before = os.getloadavg()[0]
    t_np = best_time(lambda: numpy_mfld(X, y, theta0, args.steps), args.repeats)
    t_cpu = best_time(lambda: torch_mfld(X, y, theta0, args.steps, torch.device("cpu")), args.repeats)
    load_after = os.getloadavg()[0]
    rate_np = [M * args.steps / t for t in t_np]
    rate_cpu = [M * args.steps / t for t in t_cpu]
    print(f"MFLD step, tanh net d={D}, M={M}, n={N}, {args.steps} steps, torch threads {args.threads}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, best of {args.repeats}, "
          f"{os.cpu_count()} CPUs, 1-min load average {load_before:.2f} -> {load_after:.2f}")
    print(f"{'':16s}   per wall-clock s   per CPU s   (particle-steps)")
    print(f"numpy loop      : {rate_np[0]:10.3e}   {rate_np[1]:10.3e}")
    print(f"run_mfld (cpu)  : {rate_cpu[0]:10.3e}   {rate_cpu[1]:10.3e}   ratio to numpy {rate_cpu[0] / rate_np[0]:.2f} (wall), "
          f"{rate_cpu[1] / rate_np[1]:.2f} (CPU)")
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        torch_mfld(X, y, theta0, 5, dev)
        t_gpu = best_time(lambda: torch_mfld(X, y, theta0, args.steps, dev), args.repeats)[0]
        rate_gpu = M * args.steps / t_gpu
        print(f"run_mfld (cuda) : {rate_gpu:10.3e} particle-steps/s (wall)   ratio to numpy {rate_gpu / rate_np[0]:.2f}  "
              f"({torch.cuda.get_device_name(dev)})")


if __name__ == "__main__":
    main()
