#!/usr/bin/python3
"""PyTorch DistributedDataParallel (gloo, loopback) reference for the scaling benchmark: MLP
784-1024-1024-10, SGD momentum, the global batch split over `--procs` processes of `--threads`
threads. Prints samples_per_s=<float> (global samples per second, rank 0's clock, in-memory data).

usage: torch_ddp_mlp.py [--procs P] [--threads T] [--batch GLOBAL] [--steps S] [--warmup W]
"""
import argparse
import os
import time

import torch_common  # before torch: sets OMP_WAIT_POLICY=PASSIVE (the spawned workers inherit it)

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, a, q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(a.port)
    torch_common.setup(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    local = a.batch // a.procs
    x = torch.rand(16, local, 784)
    y = torch.randint(0, 10, (16, local))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss_fn(ddp(x[i % 16]), y[i % 16]).backward()
        opt.step()

    for i in range(a.warmup):
        step(i)
    dist.barrier()
    t0 = time.perf_counter()
    for i in range(a.steps):
        step(i)
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        q.put(a.steps * local * a.procs / dt)
    dist.destroy_process_group()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, a, q)) for r in range(a.procs)]
    for p in procs:
        p.start()
    sps = q.get()
    for p in procs:
        p.join()
    print(f"samples_per_s={sps:.1f}")
