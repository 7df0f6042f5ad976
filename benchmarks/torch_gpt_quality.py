#!/usr/bin/python3
"""PyTorch side of the gpt quality comparison (bench_gpt_quality.sh): the same gpt as paratrain's
`gpt` spec (benchmarks/torch_models.py's GPT, initialized as docs/MODELS.md states), trained on the
same pt-prep kjv-lm shards for the same number of steps and batch (so the same number of tokens),
with AdamW (lr, weight decay 0.01, betas 0.9/0.999) and paratrain's schedule (linear warm-up,
cosine to 0). Samples are drawn in a shuffled order of its own. Prints the validation loss over
every validation window in nats per byte and bits per byte.

  torch_gpt_quality.py --data data/kjv-lm --steps 800 --batch 16 --lr 1e-3 --warmup 50 --threads 2
"""
import argparse
import glob
import math
import time

import h5py
import numpy as np
import torch_common  # before torch: sets OMP_WAIT_POLICY=PASSIVE

import torch
import torch.nn.functional as F

from torch_models import GPT


def load(d, split):
    arrs = [h5py.File(f, "r")["images"][:] for f in sorted(glob.glob(f"{d}/{split}/shard_*.h5"))]
    x = np.concatenate(arrs).reshape(sum(a.shape[0] for a in arrs), -1)
    return torch.from_numpy(x.astype(np.int64))


def init(model, layers):
    for name, p in model.named_parameters():
        if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
            torch.nn.init.ones_(p)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(p)
        else:
            std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
            torch.nn.init.normal_(p, 0.0, std)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/kjv-lm")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch_common.setup(a.threads, a.seed)
    train, val = load(a.data, "train"), load(a.data, "val")
    model = GPT()
    init(model, model.L)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / a.warmup if s < a.warmup else
        0.5 * (1 + math.cos(math.pi * min(1.0, (s - a.warmup) / max(1, a.steps - a.warmup)))))
    g = torch.Generator().manual_seed(a.seed)
    perm, pos = torch.randperm(len(train), generator=g), 0
    t0 = time.time()
    for step in range(a.steps):
        if pos + a.batch > len(perm):
            perm, pos = torch.randperm(len(train), generator=g), 0
        x = train[perm[pos:pos + a.batch]]
        pos += a.batch
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, None)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(val), 64):
            x = val[i:i + 64]
            tot += model.loss(x, None).item() * len(x)
            n += len(x)
    v = tot / n
    print(f"tokens={a.steps * a.batch * model.T} val_loss_nats={v:.4f} val_bits_per_byte={v / math.log(2):.4f} "
          f"train_seconds={time.time() - t0:.0f}")


if __name__ == "__main__":
    main()
