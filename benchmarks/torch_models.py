#!/usr/bin/python3
"""PyTorch reference for bench_models.sh and bench_precision.sh speed: the same mlp / cnn / gpt as
paratrain's specs, trained with AdamW on random inputs of the same shape (throughput does not
depend on the values). Prints samples_per_s = batch / median step time (forward, backward,
optimizer step) after --warmup (5) steps. PyTorch runs through torch_common
(OMP_WAIT_POLICY=PASSIVE, --threads threads). --autocast bf16 runs forward and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (fp32 weights and optimizer, as paratrain's bf16).

  torch_models.py --model mlp --batch 128 --threads 2 --steps 40  (784-1024-1024-10, ReLU)
  torch_models.py --model cnn --batch 128 --threads 2 --steps 40
  torch_models.py --model gpt --batch 16 --threads 2 --steps 20   (d 256, 4 layers, 4 heads, ctx 128)
  torch_models.py --model gpt --d 512 ...                          (the gpt spec's d, layers, heads)
"""
import argparse
import math

import torch_common  # before torch: sets OMP_WAIT_POLICY

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(s, dims=(784, 1024, 1024, 10)):
        super().__init__()
        s.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def loss(s, x, y):
        x = x.flatten(1)
        for i, f in enumerate(s.fc):
            x = f(x) if i == len(s.fc) - 1 else F.relu(f(x))
        return F.cross_entropy(x, y)


class CNN(nn.Module):
    def __init__(s, c1=32, c2=64, hidden=512):
        super().__init__()
        s.conv1, s.conv2 = nn.Conv2d(1, c1, 5, padding=2), nn.Conv2d(c1, c2, 5, padding=2)
        s.fc1, s.fc2 = nn.Linear(c2 * 49, hidden), nn.Linear(hidden, 10)

    def loss(s, x, y):
        x = F.max_pool2d(F.relu(s.conv1(x)), 2)
        x = F.max_pool2d(F.relu(s.conv2(x)), 2)
        return F.cross_entropy(s.fc2(F.relu(s.fc1(x.flatten(1)))), y)


class GPT(nn.Module):
    def __init__(s, L=4, H=4, D=256, T=128, V=256):
        super().__init__()
        s.L, s.H, s.D, s.T, s.V = L, H, D, T, V
        s.wte, s.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
        s.h = nn.ModuleList()
        for _ in range(L):
            b = nn.Module()
            b.ln1, b.qkv, b.proj = nn.LayerNorm(D), nn.Linear(D, 3 * D), nn.Linear(D, D)
            b.ln2, b.fc, b.fc2 = nn.LayerNorm(D), nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
            s.h.append(b)
        s.ln_f = nn.LayerNorm(D)
        s.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def loss(s, tok, _):
        T, D, H = s.T, s.D, s.H
        x = s.wte(tok[:, :T]) + s.wpe.weight
        for b in s.h:
            q, k, v = b.qkv(b.ln1(x)).split(D, 2)
            q, k, v = [t.view(-1, T, H, D // H).transpose(1, 2) for t in (q, k, v)]
            att = ((q @ k.transpose(2, 3)) / math.sqrt(D // H)).masked_fill(~s.mask, float("-inf"))
            x = x + b.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(-1, T, D))
            x = x + b.fc2(F.gelu(b.fc(b.ln2(x))))
        logits = s.ln_f(x) @ s.wte.weight.T
        return F.cross_entropy(logits.reshape(-1, s.V), tok[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("mlp", "cnn", "gpt"), required=True)
    ap.add_argument("--autocast", choices=("none", "bf16"), default="none")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=128)
    a = ap.parse_args()
    torch_common.setup(a.threads)
    if a.model in ("mlp", "cnn"):
        model = MLP() if a.model == "mlp" else CNN()
        x, y = torch.rand(a.batch, 1, 28, 28), torch.randint(0, 10, (a.batch,))
    else:
        model = GPT(L=a.layers, H=a.heads, D=a.d, T=a.ctx)
        x, y = torch.randint(0, 256, (a.batch, a.ctx + 1)), None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(i):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss = model.loss(x, y)
        loss.backward()
        opt.step()

    print("samples_per_s=%.1f" % (a.batch / torch_common.median_step_seconds(step, a.steps, a.warmup)))


if __name__ == "__main__":
    main()
