"""Time the batched (vmapped) training of a sweep of SelectiveTransformers against training them one by one.

Usage: python benchmarks/transformer_sweep.py [--scale book|paper] [--models M] [--n-steps S]
Prints seconds for M models trained sequentially with fit_regressor and as one ensemble with fit_ensemble,
their ratio, and training samples per second. Timings on a shared machine are noisy: run it twice.
"""
import argparse
import time

import torch

from learnthy_nb.core import setup
from learnthy_nb.transformer import SelectiveTransformer, TokenSelectionTask, fit_ensemble, fit_regressor

SIZES = {"book": dict(L=32, k=4, d_model=32, n_heads=2, n=4000, batch_size=128),
         "paper": dict(L=128, k=64, d_model=64, n_heads=4, n=16000, batch_size=256)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SIZES), default="book")
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--n-steps", type=int, default=100)
    args = ap.parse_args()
    device, _ = setup(0)
    cfg = SIZES[args.scale]
    task = TokenSelectionTask(L=cfg["L"], k=cfg["k"], smoothness=1.0, noise_std=0.5, key_gap=0.1)
    X, y = task.sample(cfg["n"], torch.Generator().manual_seed(0), device=device)

    def make():
        return [SelectiveTransformer(cfg["k"], cfg["d_model"], cfg["n_heads"], 1, cfg["L"], device=device,
                                     init_generator=torch.Generator().manual_seed(m)) for m in range(args.models)]

    models = make()
    t0 = time.perf_counter()
    for m in models:
        fit_regressor(m, X, y, n_steps=args.n_steps, lr=3e-3, batch_size=cfg["batch_size"],
                      generator=torch.Generator().manual_seed(1))
    sequential = time.perf_counter() - t0
    models = make()
    t0 = time.perf_counter()
    fit_ensemble(models, X[None], y[None], [cfg["n"]] * args.models, data_index=[0] * args.models,
                 n_steps=args.n_steps, lr=3e-3, batch_size=cfg["batch_size"], generator=torch.Generator().manual_seed(1))
    batched = time.perf_counter() - t0
    samples = args.models * args.n_steps * cfg["batch_size"]
    print(f"scale={args.scale} device={device} models={args.models} n_steps={args.n_steps} L={cfg['L']} k={cfg['k']}")
    print(f"sequential: {sequential:.2f} s ({samples / sequential:,.0f} samples/s)")
    print(f"batched:    {batched:.2f} s ({samples / batched:,.0f} samples/s)")
    print(f"ratio sequential / batched: {sequential / batched:.2f}")


if __name__ == "__main__":
    main()
