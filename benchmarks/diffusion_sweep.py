"""Time the batched score-matching sweep against training the same models one by one, and the sampler.

Usage: python benchmarks/diffusion_sweep.py [--models 6] [--n-steps 300] [--threads 1] [--repeats 3]
Prints the wall time of one batched training of B models (one network with [B, fan_in, fan_out] weights),
of B separate trainings with the same sizes, their ratio, the time of one reverse-SDE step per million
samples (per model), and one evaluation of 8 score networks in d = 32 on 15 000 points each (the curve experiment
of chapter 12) without autograd, in the cache-sized chunks of rows that `ScoreNet` uses, against one pass. Both paths are warmed up first: the first training in a process pays a one-time start-up
cost (about 2 s here) which, charged to whichever path runs first, made an earlier version of this script
report the batched sweep as *slower*. Each timing is the median of --repeats runs. The machine is shared:
read the ratio, not the absolute times.
"""
import argparse
import statistics
import time

import torch

from learnthy_nb.diffusion import LacunaryDensity, ScoreNet, _ou, sample, train_score_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--n-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dens = LacunaryDensity(1.0)
    g = torch.Generator().manual_seed(0)
    data = [dens.sample(n, g, device="cpu").float() for n in torch.linspace(300, 3000, args.models).long().tolist()]
    kw = dict(n_steps=args.n_steps, batch_size=256, lr=3e-3, width=48, n_freq=16, device="cpu", quiet=True)
    warm = dict(kw, n_steps=5)
    train_score_model(data, 1e-3, 2.0, generator=torch.Generator().manual_seed(1), **warm)     # start-up costs
    train_score_model(data[0], 1e-3, 2.0, generator=torch.Generator().manual_seed(1), **warm)
    batched, serial = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model = train_score_model(data, 1e-3, 2.0, generator=torch.Generator().manual_seed(1), **kw)
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for x in data:
            train_score_model(x, 1e-3, 2.0, generator=torch.Generator().manual_seed(1), **kw)
        serial.append(time.perf_counter() - t0)
    batched, serial = statistics.median(batched), statistics.median(serial)
    print(f"{args.models} models x {args.n_steps} steps (median of {args.repeats}): batched {batched:.2f} s, "
          f"one by one {serial:.2f} s, speed-up {serial / batched:.2f}x")
    n_steps = 10
    t0 = time.perf_counter()
    sample(model, args.samples, 1e-3, 2.0, n_steps=n_steps, generator=torch.Generator().manual_seed(2))
    per_step = (time.perf_counter() - t0) / n_steps / (args.models * args.samples / 1e6)
    print(f"reverse-SDE step: {per_step:.3f} s per million samples per model (width 48, {args.threads} thread(s))")

    net = ScoreNet(8, 32, width=64, n_freq=16, skip=True, device="cpu")
    x = torch.randn(8, 15_000, 32, generator=torch.Generator().manual_seed(3))
    t = torch.full((8, 15_000), 0.01)
    times = {"one pass": [], "chunks": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            one = -net.eps(x, t) / _ou(t)[1][..., None]
            times["one pass"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            chunked = net(x, t[:, 0])
            times["chunks"].append(time.perf_counter() - t0)
    one_pass, chunks = (statistics.median(v) for v in times.values())
    print(f"8 score networks, d = 32, 15 000 points each, no autograd: one pass {one_pass:.3f} s, chunks of "
          f"{net.eval_rows('cpu')} rows {chunks:.3f} s, speed-up {one_pass / chunks:.2f}x, "
          f"largest difference {float((one - chunked).abs().max()):.1e}")


if __name__ == "__main__":
    main()
