"""PyTorch's CPU matmul at the shapes of benchmarks/bench_lowp_gemm.sh, as a peer to pt-bench-lowp:
torch.matmul on fp32, bf16 and fp16 tensors (Debian's torch 1.13 runs bf16 through oneDNN, which
has AVX512-BF16 and AMX kernels where the CPU does). Same CSV rows as pt-bench-lowp:
    shape,ta,tb,m,n,k,method,gflops
Run with OMP_WAIT_POLICY=PASSIVE (without it torch runs 2-6x slower on these shared machines).
    OMP_WAIT_POLICY=PASSIVE python3 torch_lowp_matmul.py --threads 2 --reps 1 --ms 100"""
import argparse
import sys
import time

import torch

SHAPES = [  # name, ta, tb, m, n, k (as src/cli/pt_bench_lowp.c)
    ("mlp_fwd1", 0, 1, 128, 1024, 784), ("mlp_fwd2", 0, 1, 128, 1024, 1024),
    ("mlp_dx2", 0, 0, 128, 1024, 1024), ("mlp_dw2", 1, 0, 1024, 1024, 128),
    ("mlp_dx1", 0, 0, 128, 784, 1024), ("mlp_dw1", 1, 0, 1024, 784, 128),
    ("gpt_qkv", 0, 1, 2048, 768, 256), ("gpt_proj", 0, 1, 2048, 256, 256),
    ("gpt_up", 0, 1, 2048, 1024, 256), ("gpt_down", 0, 1, 2048, 256, 1024),
    ("square", 0, 0, 1024, 1024, 1024),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--ms", type=float, default=100)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(1)
    refused = set()
    for name, ta, tb, m, n, k in SHAPES:
        # stored like the row-major operands of pt_lowp_gemm: op() is a transposed view
        A32 = torch.rand((k, m) if ta else (m, k), generator=g) * 2 - 1
        B32 = torch.rand((n, k) if tb else (k, n), generator=g) * 2 - 1
        methods = []
        for label, dt in (("torch:fp32", torch.float32), ("torch:bf16", torch.bfloat16),
                          ("torch:fp16", torch.float16)):
            A, B = A32.to(dt), B32.to(dt)
            opA, opB = (A.t() if ta else A), (B.t() if tb else B)
            try:
                torch.matmul(opA, opB)  # warm-up; fp16 matmul may be unsupported on CPU
            except RuntimeError as e:  # torch 1.13: no fp16 matmul on the CPU
                if label not in refused:
                    print(f"torch_lowp_matmul: {label}: {e}", file=sys.stderr)
                refused.add(label)
                continue
            t0 = time.perf_counter()
            torch.matmul(opA, opB)
            dt1 = max(time.perf_counter() - t0, 1e-6)
            methods.append((label, opA, opB, int(a.ms * 1e-3 / dt1) + 1))
        flop = 2.0 * m * n * k
        for _ in range(a.reps):
            for label, opA, opB, iters in methods:
                t0 = time.perf_counter()
                for _ in range(iters):
                    torch.matmul(opA, opB)
                dt1 = time.perf_counter() - t0
                print(f"{name},{ta},{tb},{m},{n},{k},{label},{flop * iters / dt1 * 1e-9:.2f}", flush=True)


if __name__ == "__main__":
    main()
