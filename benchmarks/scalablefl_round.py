"""Wall-clock time of one federated round of `learnthy_nb.scalablefl.run_federated`, per method, on the chapter's clients.

The clients are those of the ScalableFL chapter at book scale: 9 digit clients (image sides 8/16/32 crossed with
label sets of 2/5/10 categories, 8 to 128 training images each), 3 local SGD steps of minibatch 16 per round, every
client in every round. For each method the script times `--rounds` rounds (after one warm-up round) and prints the
seconds per round, the local steps per second, the parameters sent per round and the mean FLOPs of one local step,
with the ratio of each method's round time to FedAvg's. On a CPU use one thread for a like-for-like figure:

    OMP_NUM_THREADS=1 python benchmarks/scalablefl_round.py --threads 1 [--rounds 10] [--device cpu|cuda]
"""
import argparse
import time

import torch

from learnthy_nb.scalablefl import METHODS, TrainConfig, make_heterogeneous_clients, run_federated

SETS = ((0, 1), (2, 3), (4, 5), (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (0, 2, 4, 6, 8), 10, 10, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clients = make_heterogeneous_clients(len(SETS), (8, 16, 32), SETS, seed=0, n_test=40, device=device)
    config = TrainConfig(local_steps=3, batch_size=16, lr=0.05)
    steps = config.local_steps * len(clients)
    rows = {}
    for name in args.methods.split(","):
        run_federated(name, clients, 1, config=config)                                      # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        run = run_federated(name, clients, args.rounds, config=config, eval_every=args.rounds)
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_round = (time.perf_counter() - t) / args.rounds
        rows[name] = (per_round, run.params_per_round, sum(run.flops_per_step) / len(clients))
    base = rows.get("fedavg", next(iter(rows.values())))[0]
    print(f"{'method':30} {'s/round':>8} {'steps/s':>8} {'params/round':>13} {'MFLOP/step':>10} {'time / FedAvg':>13}")
    for name, (sec, params, flops) in rows.items():
        print(f"{METHODS[name].name:30} {sec:8.3f} {steps / sec:8.0f} {params:13,d} {flops / 1e6:10.2f} {sec / base:13.2f}")


if __name__ == "__main__":
    main()
