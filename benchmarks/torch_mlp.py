#!/usr/bin/python3
"""PyTorch reference for the MLP throughput benchmark: same model, batch, optimizer and threads.

Trains MLP 784-1024-1024-10 (ReLU, SGD momentum 0.9, cross entropy) on in-memory batches, and
prints one line: samples_per_s=<float>. Data loading is not included (it is, for paratrain: its
figure includes reading each batch from the HDF5 shards), so this favours PyTorch slightly.

usage: torch_mlp.py [--threads N] [--batch B] [--steps S] [--warmup W]
"""
import argparse
import time

import torch_common  # before torch: sets OMP_WAIT_POLICY (PASSIVE unless PT_TORCH_WAIT_POLICY)

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--warmup", type=int, default=30)
ap.add_argument("--dims", default="784-1024-1024-10")
a = ap.parse_args()
torch_common.setup(a.threads)
dims = [int(d) for d in a.dims.split("-")]
layers = []
for i in range(len(dims) - 1):
    layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
    if i < len(dims) - 2:
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x = torch.rand(16, a.batch, dims[0])
y = torch.randint(0, dims[-1], (16, a.batch))
loss_fn = torch.nn.CrossEntropyLoss()


def step(i):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x[i % 16]), y[i % 16])
    loss.backward()
    opt.step()


for i in range(a.warmup):
    step(i)
t0 = time.perf_counter()
for i in range(a.steps):
    step(i)
dt = time.perf_counter() - t0
print(f"samples_per_s={a.steps * a.batch / dt:.1f}")
